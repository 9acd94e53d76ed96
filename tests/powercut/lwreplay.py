#!/usr/bin/env python3
"""Replays a dm-log-writes log the way a disk with a volatile write cache
comes back from a power cut (tests/powercut.sh --log-writes).

    lwreplay.py --log LOG --base BASE --out OUT

LOG is the log device image (dm-log-writes, Documentation/admin-guide/
device-mapper/log-writes.rst; layout from drivers/md/dm-log-writes.c: a
super block in sector 0, then per entry one header sector - struct
log_write_entry { le64 sector, nr_sectors, flags, data_len } - followed by
the entry's nr_sectors data sectors; the log device has 512-byte sectors),
written on a freshly zeroed file.  BASE is the device's content when the
log was created.  OUT becomes BASE plus every logged write up to the last
FLUSH, plus the FUA writes after it (each one durable by itself); the other
writes after the last FLUSH were in the volatile cache and are lost.

The log can end in a torn tail (the guest restarted while the log's own
writes were in flight): the entries are taken up to the first all-zero
header, and a write whose logged data is not the power-cut writer's blocks
(tests/powercut/blocks.h: the journal scenario writes nothing else to
production) ends the log there too, unless --any-data (a snapshot store:
the harness then gives the log time to be written before the reset).
Prints one summary line.
"""
import argparse
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocks import MAGIC, SEC, say  # noqa: E402
import pc  # noqa: E402

LOG_MAGIC = 0x6A736677736872
FLUSH, FUA, DISCARD, MARK = 1, 2, 4, 8
ENTRY = struct.Struct('<QQQQ')


def valid_data(sector, data):
    """Every sector is the writer's pattern for its place (any seq)."""
    pat = {}
    for k in range(len(data) // SEC):
        sec = data[k * SEC:(k + 1) * SEC]
        magic, b, seq, i = struct.unpack_from('<QQQQ', sec, 0)
        s = sector + k
        if magic != MAGIC or b != s // 8 or i != s % 8:
            return False
        if (b, seq) not in pat:
            pat[(b, seq)] = pc.pattern(b, seq)
        if pat[(b, seq)][i * SEC:(i + 1) * SEC] != sec:
            return False
    return True


def entries(log, check_data=True):
    """(index, sector, nr_sectors, flags, data or None) in log order, up to
    the end of the log or a torn tail; and why it stopped."""
    out = []
    with open(log, 'rb') as f:
        sup = f.read(SEC)
        magic = struct.unpack_from('<Q', sup, 0)[0]
        if magic not in (0, LOG_MAGIC):
            return out, 'bad super block magic %#x' % magic
        pos = SEC
        size = os.fstat(f.fileno()).st_size
        while pos + SEC <= size:
            f.seek(pos)
            hdr = f.read(SEC)
            if hdr == bytes(SEC):
                return out, 'end of log'
            sector, nr, flags, _ = ENTRY.unpack_from(hdr, 0)
            if nr > (1 << 21) or flags & ~0x1F:
                return out, 'torn header at log sector %d' % (pos // SEC)
            data = None
            pos += SEC
            if not flags & (DISCARD | MARK) and nr:
                data = f.read(nr * SEC)
                if len(data) != nr * SEC or (check_data and not valid_data(sector, data)):
                    return out, 'torn or foreign data at log sector %d (entry %d)' % (
                        pos // SEC, len(out))
                pos += nr * SEC
            out.append((len(out), sector, nr, flags, data))
    return out, 'end of the log device'


def tail_has_data(log, es):
    """Anything but zeros in the 1 MiB after the last good entry?"""
    pos = SEC + sum(SEC + (nr * SEC if data is not None else 0) for _, _, nr, _, data in es)
    with open(log, 'rb') as f:
        f.seek(pos + SEC)
        after = f.read(1 << 20)
        # the bad entry's own data may follow its header: look past it
        return after.strip(b'\0') != b'' and len(es) > 0 and _later_header(f, pos)


def _later_header(f, pos):
    """A plausible entry header in the next 1 MiB after pos."""
    f.seek(pos + SEC)
    buf = f.read(1 << 20)
    for off in range(0, len(buf) - SEC + 1, SEC):
        sector, nr, flags, dlen = ENTRY.unpack_from(buf, off)
        if (flags and not flags & ~0x1F and nr <= (1 << 21) and dlen <= SEC
                and buf[off + 32:off + SEC] == bytes(SEC - 32)):
            return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--log', required=True)
    ap.add_argument('--base', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--any-data', action='store_true',
                    help='the device holds other data than the writer\'s blocks (a snapshot '
                         'store): only an all-zero header ends the log')
    a = ap.parse_args()
    es, why = entries(a.log, not a.any_data)
    last_flush = max((e[0] for e in es if e[3] & FLUSH), default=-1)
    with open(a.base, 'rb') as f, open(a.out + '.tmp', 'wb') as o:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            o.write(b)
    kept = lost = fua = 0
    with open(a.out + '.tmp', 'r+b') as o:
        for i, sector, nr, flags, data in es:
            if data is None:
                continue
            if i < last_flush or flags & FUA:
                o.seek(sector * SEC)
                o.write(data)
                kept += 1
                fua += i > last_flush
            else:
                lost += 1
    os.replace(a.out + '.tmp', a.out)
    if why.startswith('torn') and tail_has_data(a.log, es):
        say('not ok - lwreplay: the log stops at %s with more entries after it: not a torn tail '
            '(a write the replay cannot place?)' % why)
        return 1
    say('# lwreplay: %d entries (%s), %d flushes; last flush at entry %d: %d writes replayed '
        '(%d FUA after it), %d written after it lost with the volatile cache' % (
            len(es), why, sum(1 for e in es if e[3] & FLUSH), last_flush, kept, fua, lost))
    return 0


if __name__ == '__main__':
    sys.exit(main())
