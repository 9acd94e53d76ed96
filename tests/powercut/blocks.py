"""Helpers shared by the power-cut verifiers (tests/powercut/pc.py,
tests/powercut/mc.py): block constants, O_DIRECT I/O with page-aligned
buffers, the scans of pctool/mctool `scan` (per block: le64 seq, le64 hash)
and their comparison, and the command runner.  The block format itself is
in blocks.h."""
import argparse
import array
import mmap
import os
import struct
import traceback
import zlib

BS = 4096
SEC = 512
MAGIC = 0x4A534E4150504331  # "JSNAPPC1"


def say(*a):
    print(*a, flush=True)


def abuf(size):
    return mmap.mmap(-1, (size + 4095) // 4096 * 4096)


def pread_direct(fd, off, size):
    m = abuf(size)
    got = os.preadv(fd, [memoryview(m)[:size]], off)
    if got != size:
        raise OSError('short read at %d: %d/%d' % (off, got, size))
    return m


def pwrite_direct(fd, off, data):
    m = abuf(len(data))
    m[:len(data)] = data
    n = os.pwrite(fd, memoryview(m)[:len(data)], off)
    if n != len(data):
        raise OSError('short write at %d: %d/%d' % (off, n, len(data)))


def read_scan(path):
    """A scan file: (seqs, hashes), one entry per block."""
    with open(path, 'rb') as f:
        d = f.read()
    a = array.array('Q')
    a.frombytes(d[:len(d) // 16 * 16])
    return a[0::2], a[1::2]


def scancmp(pfx, a, fmt, size):
    """The check "scans a.a and a.b are identical" (a.label, a.what): one
    ok / not ok line starting with PFX; fmt(seq) shows a seq, size(n) the
    size of n blocks."""
    (x, hx), (y, hy) = read_scan(a.a), read_scan(a.b)
    if len(x) != len(y):
        say('not ok - %s %s: %s -- size differs: %d vs %d blocks' % (pfx, a.label, a.what, len(x), len(y)))
        return 1
    diff = [b for b in range(len(x)) if x[b] != y[b] or hx[b] != hy[b]]
    if not diff:
        say('ok - %s %s: %s (%s identical)' % (pfx, a.label, a.what, size(len(x))))
        return 0
    say('not ok - %s %s: %s -- %d blocks differ, first: %s' % (
        pfx, a.label, a.what, len(diff), '; '.join(
            'block %d: seq %s hash %016x vs seq %s hash %016x' % (
                b, fmt(x[b]), hx[b], fmt(y[b]), hy[b]) for b in diff[:5])))
    return 1


def run_cmd(pfx, cmds, a, tool):
    """Runs cmds[a.cmd](a); an exception (an I/O error) is a failed check,
    not a crash."""
    try:
        return cmds[a.cmd](a)
    except Exception as e:
        traceback.print_exc()
        say('not ok - %s %s: %s -- %s: %s' % (pfx, getattr(a, 'label', tool), a.cmd, type(e).__name__, e))
        return 1


def arg_parser():
    """The parser of a verifier's commands, with the two they share: init
    (--acklog --seed --nblk) and scancmp (--a --b --label --what); returns
    it and its subparsers."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('init')
    s.add_argument('--acklog', required=True)
    s.add_argument('--seed', type=int, required=True)
    s.add_argument('--nblk', type=int, required=True)
    s = sub.add_parser('scancmp')
    for o in ('--a', '--b', '--label', '--what'):
        s.add_argument(o, required=True)
    return p, sub


def ck_best(fd, slots, fmt, magic, map_len):
    """The newest valid checkpoint of an acklog's checkpoint slots: (the
    header's fields, the map's bytes, the slot's offset), or None.  A slot
    is a BS header - fmt (magic, gen, ..., crc32 of the map) and the crc32
    of those bytes - followed by the map, map_len(fields) bytes (None: a
    header out of range)."""
    hs = struct.calcsize(fmt)
    best = None
    for off in slots:
        try:
            h = pread_direct(fd, off, BS)
        except OSError:
            continue
        f = struct.unpack_from(fmt, h, 0)
        (hcrc,) = struct.unpack_from('<I', h, hs)
        n = map_len(f)
        if f[0] != magic or zlib.crc32(h[:hs]) != hcrc or n is None:
            continue
        mb = pread_direct(fd, off + BS, n)[:n]
        if zlib.crc32(mb) != f[-1]:
            continue
        if best is None or f[1] > best[0][1]:
            best = (f, mb, off)
    return best


def describe_sectors(buf, b, name):
    """Which (block, seq, sector) each 512-byte sector of block b's content
    buf holds: the seq as name(seq), 'z' for zeros, '?' for foreign data."""
    out = []
    for i in range(8):
        sec = buf[i * SEC:(i + 1) * SEC]
        if sec == bytes(SEC):
            out.append('z')
            continue
        magic, bb, ss, ii = struct.unpack_from('<QQQQ', sec, 0)
        if magic != MAGIC:
            out.append('?')
            continue
        tag = name(ss)
        if bb != b or ii != i:
            tag += '(blk%d.%d)' % (bb, ii)
        out.append(tag)
    return '[' + ' '.join(out) + ']'
