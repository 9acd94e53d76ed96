#!/usr/bin/env python3
"""Model and verifier of tests/powercut.sh --scenario mirror (runs in the guest).

Volume B is the jsnap device, volume A its `jsnap-view ... mirror`.  The
test area is the first NBLK 4 KiB blocks; every block holds a
self-describing pattern (tests/powercut/pctool.c): the seq of the write
that wrote it, checked by `mctool scan`.  Seq 1 is the initial content of
production; writer 0 (volume A) writes seqs BASE+2i, writer 1 (volume B)
BASE+2i+1, BASE being a new even number for each burst of writes.

The acklog disk holds
  - two checkpoint slots (0 and 1 MiB): header (magic, gen, seed, nblk,
    next_base, split state, crc of the maps, crc of the header) + two maps
    of u64 per block: the seq that A and that B hold (UNKNOWN = anything
    accepted, after an earlier failure).  Split state: 0 none (no snapshot
    is expected; A is not checked), 1 pending (the snapshot message may or
    may not have been taken; if a snapshot exists, A = the map), 2 active (a
    snapshot must exist and A = the map);
  - the ack areas of writer 0 (from 2 MiB) and writer 1 (from 33 MiB):
    512-byte records written O_DSYNC by `mctool write` (see there).

The model of one burst, per block x, after a power cut:
  B: any acknowledged write covering x (of either writer: every A-write is
     also journaled to B) that no other acknowledged write covering x
     provably follows (submitted after it completed), the checkpoint's
     value if no acknowledged write covers x, or a write in flight at the
     cut (at most one per writer);
  A: the latest acknowledged A-write covering x, else the checkpoint's
     value (the split-time content), or the A-write in flight;
  and the in-flight A-write may be on A only, on both or on neither, but
  never on B without being on A (the store half precedes the journal half).

Subcommands (TAP-like output `ok - powercut-mirror LABEL: ...`):
  init     --acklog D --seed S --nblk N
  show     --acklog D                 prints "NEXT_BASE SEED NBLK SPLIT"
  setsplit --acklog D --state none|pending|active [--a-from-b]
  verify   --acklog D --label L --scan-b F [--scan-a F] --snapshot STATE
           [--dev-a D] [--dev-b D] [--between-halves]
           checks the scans against the model, then writes the next
           checkpoint (maps = what the volumes hold now, next base).
  scancmp  --a F --b F --label L --what TEXT
"""

import array
import os
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocks import (BS, arg_parser, ck_best, describe_sectors, pread_direct,  # noqa: E402
                    pwrite_direct, read_scan, run_cmd, say, scancmp)

CKMAGIC = 0x4A534D4952434B31  # "JSMIRCK1"
ACKMAGIC = 0x4A534D4952414B31  # "JSMIRAK1"
UNKNOWN = (1 << 64) - 1
CK_SLOTS = (0, 1 << 20)
ACK_SIZE = 512
ACK_AREA0 = 2 << 20
ACK_AREA_SIZE = 31 << 20
K_START, K_ACK = 1, 2
SPLIT = {'none': 0, 'pending': 1, 'active': 2}
SPLIT_NAME = {v: k for k, v in SPLIT.items()}
FILL_SEQ = 1
WNAME = 'AB'


# ---------------------------------------------------------------- checkpoint

class Ckpt:
    def __init__(self, gen, seed, nblk, next_base, split, ma, mb):
        self.gen, self.seed, self.nblk = gen, seed, nblk
        self.next_base, self.split, self.ma, self.mb = next_base, split, ma, mb


def ck_read(fd):
    ck = ck_best(fd, CK_SLOTS, '<QQQQQQI', CKMAGIC,
                 lambda f: 16 * f[3] if 0 < f[3] <= 65280 else None)
    if ck is None:
        return None
    (_, gen, seed, nblk, nb, split, _), mbytes, _ = ck
    ma, mb = array.array('Q'), array.array('Q')
    ma.frombytes(mbytes[:8 * nblk])
    mb.frombytes(mbytes[8 * nblk:])
    return Ckpt(gen, seed, nblk, nb, split, ma, mb)


def ck_write(fd, ck):
    mbytes = ck.ma.tobytes() + ck.mb.tobytes()
    hdr = struct.pack('<QQQQQQI', CKMAGIC, ck.gen, ck.seed, ck.nblk, ck.next_base, ck.split,
                      zlib.crc32(mbytes))
    hdr += struct.pack('<I', zlib.crc32(hdr))
    data = hdr.ljust(BS, b'\0') + mbytes
    data = data.ljust((len(data) + BS - 1) // BS * BS, b'\0')
    pwrite_direct(fd, CK_SLOTS[ck.gen % 2], data)
    os.fsync(fd)


def ck_open(path, flags, label):
    """The acklog opened with flags, and its checkpoint (None: a not ok)."""
    fd = os.open(path, flags | os.O_DIRECT)
    ck = ck_read(fd)
    if ck is None:
        say('not ok - powercut-mirror %s: checkpoint -- no valid checkpoint in the acklog' % label)
    return fd, ck


# ---------------------------------------------------------------- ack areas

_ACK = struct.Struct('<14Q')


class Write:
    __slots__ = ('w', 'i', 'seq', 'start', 'n', 't_sub', 't_ack')

    def __init__(self, w, i, seq, start, n, t_sub=None, t_ack=None):
        self.w, self.i, self.seq, self.start, self.n = w, i, seq, start, n
        self.t_sub, self.t_ack = t_sub, t_ack

    def blocks(self):
        return range(self.start, self.start + self.n)

    def __str__(self):
        return '%s-write seq %d blocks [%d,%d)' % (WNAME[self.w], self.seq, self.start,
                                                    self.start + self.n)


def acks_read(fd, w, seed, base, nblk):
    """(acknowledged writes, in-flight write or None, problems) of writer w
    in the burst that started at `base`."""
    acked, problems = [], []
    nslots = ACK_AREA_SIZE // ACK_SIZE
    nxt = None  # (seq, start, n) named by the previous record
    area = ACK_AREA0 + w * ACK_AREA_SIZE
    chunk = 1 << 20
    slot = 0
    while slot < nslots:
        cnt = min(chunk // ACK_SIZE, nslots - slot)
        buf = pread_direct(fd, area + slot * ACK_SIZE, cnt * ACK_SIZE)
        for k in range(cnt):
            r = buf[k * ACK_SIZE:(k + 1) * ACK_SIZE]
            (magic, sd, b, ww, sl, kind, seq, start, n, ts, ta, nseq, nstart,
             nn) = _ACK.unpack_from(r, 0)
            (crc,) = struct.unpack_from('<I', r, ACK_SIZE - 4)
            if (magic != ACKMAGIC or zlib.crc32(r[:ACK_SIZE - 4]) != crc or sd != seed
                    or b != base or ww != w or sl != slot + k):
                return acked, nxt_write(w, nxt, len(acked)), problems
            if sl == 0:
                if kind != K_START:
                    problems.append('slot 0 is not a start record')
            else:
                if kind != K_ACK:
                    problems.append('slot %d is not an ack record' % sl)
                i = sl - 1
                if nxt is None or (seq, start, n) != nxt or seq != base + 2 * i + w:
                    problems.append('slot %d: write %s does not match the one announced (%s)'
                                    % (sl, (seq, start, n), nxt))
                if not (0 < n <= 16 and start + n <= nblk and ts < ta):
                    problems.append('slot %d: bad write %s' % (sl, (seq, start, n, ts, ta)))
                acked.append(Write(w, i, seq, start, n, ts, ta))
            nxt = (nseq, nstart, nn) if nn else None
        slot += cnt
    return acked, nxt_write(w, nxt, len(acked)), problems


def nxt_write(w, nxt, i):
    if nxt is None:
        return None
    return Write(w, i, nxt[0], nxt[1], nxt[2])


def describe(dev, b, names):
    """Per-sector description of block b of dev: which (block, seq, sector)
    each 512-byte sector holds."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        buf = pread_direct(fd, b * BS, BS)[:BS]
        os.close(fd)
    except OSError as e:
        return '(cannot read: %s)' % e
    return describe_sectors(buf, b, lambda ss: names.get(ss, 's%d' % ss))


def fmt(s):
    return '?' if s == UNKNOWN else 'zeros' if s == 0 else str(s)


# ---------------------------------------------------------------- commands

def cmd_init(a):
    fd = os.open(a.acklog, os.O_RDWR | os.O_DIRECT)
    for w in (0, 1):  # nothing stale can be taken for an ack
        pwrite_direct(fd, ACK_AREA0 + w * ACK_AREA_SIZE, bytes(1 << 20))
    m = array.array('Q', [FILL_SEQ]) * a.nblk
    for gen in (1, 2):
        ck_write(fd, Ckpt(gen, a.seed, a.nblk, 2, 0, m, m))
    say('# powercut-mirror: acklog initialised: seed=%d nblk=%d' % (a.seed, a.nblk))
    return 0


def cmd_show(a):
    _, ck = ck_open(a.acklog, os.O_RDONLY, 'show')
    if ck is None:
        return 1
    print(ck.next_base, ck.seed, ck.nblk, SPLIT_NAME.get(ck.split, '?'))
    return 0


def cmd_setsplit(a):
    fd, ck = ck_open(a.acklog, os.O_RDWR, 'setsplit')
    if ck is None:
        return 1
    ck.gen += 1
    ck.split = SPLIT[a.state]
    if a.a_from_b:
        ck.ma = array.array('Q', ck.mb)
    ck_write(fd, ck)
    say('# powercut-mirror: checkpoint gen=%d split=%s next_base=%d' % (ck.gen, a.state,
                                                                       ck.next_base))
    return 0


def cmd_verify(a):
    t0 = time.time()
    lab = a.label
    fd, ck = ck_open(a.acklog, os.O_RDWR, lab)
    if ck is None:
        return 1
    nblk, base = ck.nblk, ck.next_base
    nfail = 0

    def bad(msg):
        nonlocal nfail
        nfail += 1
        say('not ok - powercut-mirror %s: %s' % (lab, msg))

    def good(msg):
        say('ok - powercut-mirror %s: %s' % (lab, msg))

    acked, infl = [None, None], [None, None]
    for w in (0, 1):
        acked[w], infl[w], probs = acks_read(fd, w, ck.seed, base, nblk)
        if probs:
            bad('ack log of writer %s consistent -- %s' % (WNAME[w], '; '.join(probs[:3])))
    say('# powercut-mirror %s: checkpoint gen=%d split=%s base=%d; acknowledged A-writes %d, '
        'B-writes %d; in flight: %s; %s' % (
            lab, ck.gen, SPLIT_NAME.get(ck.split, '?'), base, len(acked[0]), len(acked[1]),
            infl[0] or 'no A-write', infl[1] or 'no B-write'))

    # Which volumes are checked.
    check_a = False
    if ck.split == SPLIT['active']:
        if a.snapshot == 'active':
            good('the snapshot (split) survived')
            check_a = True
        else:
            bad('the snapshot (split) survived -- status says snapshot=%s' % a.snapshot)
    elif ck.split == SPLIT['pending']:
        check_a = a.snapshot == 'active'
        say('# powercut-mirror %s: the cut came around the split; snapshot=%s' % (lab, a.snapshot))
    if check_a and not a.scan_a:
        bad('volume A attached and scanned')
        check_a = False

    sb, _ = read_scan(a.scan_b)
    sa = read_scan(a.scan_a)[0] if check_a else None
    if len(sb) < nblk or (check_a and len(sa) < nblk):
        bad('scan complete -- %d/%s blocks, need %d' % (len(sb), len(sa) if check_a else '-', nblk))
        return 1

    # Index the writes.
    by_seq = {}
    for w in (0, 1):
        for x in acked[w]:
            by_seq[x.seq] = x
    infl_seqs = {x.seq: x for x in infl if x is not None}
    # B: latest submit time of an acknowledged write covering each block.
    msub = [-1] * nblk
    for w in (0, 1):
        for x in acked[w]:
            for b in x.blocks():
                if x.t_sub > msub[b]:
                    msub[b] = x.t_sub
    # A: latest acknowledged A-write covering each block.
    last_a = [None] * nblk
    for x in acked[0]:
        for b in x.blocks():
            last_a[b] = x

    def covers(x, b):
        return x is not None and x.start <= b < x.start + x.n

    found_b = array.array('Q', sb[:nblk])
    found_a = array.array('Q', sa[:nblk]) if check_a else array.array('Q', ck.ma)
    names = {}
    for w in (0, 1):
        if infl[w] is not None:
            names[infl[w].seq] = 'I' + WNAME[w]

    # ---- volume B
    errs = []
    n_infl_b = [0, 0]
    for b in range(nblk):
        f, e = sb[b], ck.mb[b]
        if msub[b] < 0 and (f == e or e == UNKNOWN):
            continue
        x = by_seq.get(f)
        if x is not None and covers(x, b) and x.t_ack >= msub[b]:
            continue
        y = infl_seqs.get(f)
        if covers(y, b):
            n_infl_b[y.w] += 1
            continue
        if f == 0:
            kind = 'zeros (acknowledged data lost)'
        elif f == UNKNOWN:
            kind = 'garbage/torn'
        elif x is not None and covers(x, b):
            kind = 'stale: %s superseded by an acknowledged write submitted after it completed' % x
        elif f == e:
            kind = 'stale: the content before this burst, overwritten by an acknowledged write'
        elif f < base:
            kind = 'stale: data of an earlier burst'
        else:
            kind = 'unexpected seq (not a write to this block)'
        errs.append((b, f, kind))
    if errs:
        bad('volume B -- %d bad blocks; first: %s' % (len(errs), '; '.join(
            'block %d: found %s: %s' % (b, fmt(f), k) for b, f, k in errs[:3])))
        for b, f, k in errs[:8]:
            say('#   B block %d: found %s (%s), checkpoint %s, latest acked covering %s %s' % (
                b, fmt(f), k, fmt(ck.mb[b]), [str(x) for x in acked[0] + acked[1]
                                              if covers(x, b)][-2:],
                describe(a.dev_b, b, names) if a.dev_b else ''))
    else:
        good('volume B = model (%d blocks; in-flight blocks present: A-write %d, B-write %d)' % (
            nblk, n_infl_b[0], n_infl_b[1]))

    # ---- volume A
    if check_a:
        errs = []
        n_infl_a = 0
        for b in range(nblk):
            f = sa[b]
            x = last_a[b]
            e = x.seq if x is not None else ck.ma[b]
            if f == e or (x is None and e == UNKNOWN):
                continue
            if covers(infl[0], b) and f == infl[0].seq:
                n_infl_a += 1
                continue
            y = by_seq.get(f) or infl_seqs.get(f)
            if f == 0:
                kind = 'zeros (data lost)'
            elif f == UNKNOWN:
                kind = 'garbage/torn'
            elif x is not None and f == ck.ma[b]:
                kind = 'stale: the content before this burst (acknowledged %s lost)' % x
            elif f == FILL_SEQ:
                kind = 'the initial fill: the split-time content (%s) lost' % fmt(e)
            elif f % 2 == 1:
                # A-writes have even seqs (even bases), B-writes odd ones
                kind = 'B-only data on A (a write to volume B reached A)'
            elif y is not None:
                kind = 'stale: %s, superseded by acknowledged A-write seq %s' % (y, fmt(e))
            elif f < base:
                kind = 'stale: data of an earlier burst'
            else:
                kind = 'unexpected seq'
            errs.append((b, f, e, kind))
        if errs:
            bad('volume A -- %d bad blocks; first: %s' % (len(errs), '; '.join(
                'block %d: expected %s, found %s: %s' % (b, fmt(e), fmt(f), k)
                for b, f, e, k in errs[:3])))
            for b, f, e, k in errs[:8]:
                say('#   A block %d: expected %s found %s (%s) %s' % (
                    b, fmt(e), fmt(f), k, describe(a.dev_a, b, names) if a.dev_a else ''))
        else:
            good('volume A = model (%d blocks; in-flight A-write blocks present: %d)' % (
                nblk, n_infl_a))

        # ---- the in-flight A-write: never on B without being on A
        x = infl[0]
        if x is not None:
            on_a = [b for b in x.blocks() if sa[b] == x.seq]
            on_b = [b for b in x.blocks() if sb[b] == x.seq]
            b_only = [b for b in on_b if b not in on_a]
            a_only = [b for b in on_a if b not in on_b]
            if b_only:
                bad('in-flight %s not on B without A -- blocks %s on B only' % (x, b_only[:8]))
            else:
                good('in-flight %s not on B without A (on A: %d blocks, on B: %d)' % (
                    x, len(on_a), len(on_b)))
            if a_only:
                say('# between halves: the cut came between the store half and the journal '
                    'half of %s (blocks on A only: %s)' % (x, a_only[:16]))
            if a.between_halves:
                if len(on_a) == x.n and not on_b:
                    good('deterministic cut between the halves: %s on A, not on B, '
                         'never acknowledged' % x)
                else:
                    bad('deterministic cut between the halves: %s on A, not on B -- '
                        'on A: %s, on B: %s' % (x, on_a, on_b))
                # The B-write waiting for journal space: dm splits writes at
                # 1 MiB boundaries (MAX_RECORD), the pieces queue in order,
                # so its last piece at least was deferred, never journaled.
                y = infl[1]
                if y is not None:
                    last = range(max(y.start, (y.start + y.n - 1) // 256 * 256), y.start + y.n)
                    got = [b for b in last if sb[b] == y.seq]
                    what = 'the deferred %s (last piece: blocks [%d,%d)) did not reach B' % (
                        y, last[0], last[-1] + 1)
                    if got:
                        bad('%s -- blocks %s on B' % (what, got))
                    else:
                        good(what)
        elif a.between_halves:
            bad('deterministic cut between the halves -- no A-write was in flight')
    elif a.between_halves:
        bad('deterministic cut between the halves -- volume A not checked')

    # Next checkpoint: what the volumes hold now.
    for arr in (found_a, found_b):
        for b in range(nblk):
            if arr[b] == 0:  # lost data: keep accepting anything there
                arr[b] = UNKNOWN
    ck.gen += 1
    ck.mb, ck.ma = found_b, found_a
    ck.split = SPLIT['active'] if check_a else SPLIT['none']
    ck.next_base = base + 2 * (max(len(acked[0]), len(acked[1])) + 2)
    ck_write(fd, ck)
    say('# powercut-mirror %s: verified in %.1fs; checkpoint gen=%d split=%s next_base=%d' % (
        lab, time.time() - t0, ck.gen, SPLIT_NAME[ck.split], ck.next_base))
    return 1 if nfail else 0


def cmd_scancmp(a):
    return scancmp('powercut-mirror', a, fmt, lambda n: '%d blocks' % n)


def main():
    p, sub = arg_parser()
    s = sub.add_parser('show')
    s.add_argument('--acklog', required=True)
    s = sub.add_parser('setsplit')
    s.add_argument('--acklog', required=True)
    s.add_argument('--state', choices=SPLIT.keys(), required=True)
    s.add_argument('--a-from-b', action='store_true')
    s = sub.add_parser('verify')
    s.add_argument('--acklog', required=True)
    s.add_argument('--label', required=True)
    s.add_argument('--scan-b', required=True)
    s.add_argument('--scan-a')
    s.add_argument('--snapshot', required=True)
    s.add_argument('--dev-a')
    s.add_argument('--dev-b')
    s.add_argument('--between-halves', action='store_true')
    a = p.parse_args()
    return run_cmd('powercut-mirror', {'init': cmd_init, 'show': cmd_show, 'setsplit': cmd_setsplit,
                                       'verify': cmd_verify, 'scancmp': cmd_scancmp}, a, 'mc.py')

if __name__ == '__main__':
    sys.exit(main())
