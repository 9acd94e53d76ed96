#!/usr/bin/env python3
"""Power-cut test tool for dm-jsnap (runs in the guest; see tests/powercut.sh).

Data layout
-----------
The test area is the first NBLK 4 KiB blocks of the jsnap device.  Write number
`seq` (global, increasing over the whole run) writes blocks
[start, start+n) where (start, n, flags) are derived from (seed, seq) alone, so
the verifier can recompute the range of a write whose ack was lost.

Each 4 KiB block written by seq s at block b holds pattern(b, s): 8 sectors of
512 bytes, each starting with (MAGIC, b, s, sector index), filled with a word
derived from (b, s); the last 4 bytes of the block are a crc32 of the rest.  A
block that was never written is all zeros.

The acklog disk holds
  - two checkpoint slots (A at 0, B at 1 MiB): header (magic, gen, next_seq,
    seed, nblk, crc of map, crc of header) + map (u64 per block: the seq whose
    pattern the block holds, 0 = zeros, UNKNOWN = anything accepted),
  - from 2 MiB on: one 512-byte ack record per write of the current round,
    slot = seq - next_seq(checkpoint), written with O_DIRECT|O_DSYNC after the
    data pwrite returned: (magic, seed, seq, start, n, flags, submit time,
    completion time (CLOCK_MONOTONIC ns), threads, crc32).  With K writer
    threads, thread t writes seq next_seq+t, next_seq+t+K, ... one at a
    time; after a cut, each block may hold any acknowledged write covering
    it that no acknowledged write submitted after its completion covers,
    or a write that was in flight (see `oracle`).

Subcommands (all print TAP-like lines `ok - powercut LABEL: ...`):
  init    --acklog D --seed S --nblk N
  verify  --scan F --dev D --acklog D --label L [--threads K] [--next-out F]
          [--no-checkpoint] [--zero-tail]
          F is the output of `pctool scan D NBLK F` (pctool.c: reading and
          checking 32768 blocks is too slow in Python under TCG); D is only
          re-read for the blocks that are wrong, to describe them.
  scancmp --a F --b F --label L --what TEXT
  write   --dev D --acklog D   (slow fallback for pctool write, one thread)
  selftest                     (the oracle on hand-made histories)
"""

import array
import os
import struct
import sys
import time
import zlib

from blocks import (BS, MAGIC, abuf, arg_parser, ck_best, describe_sectors, pread_direct,
                    pwrite_direct, read_scan, run_cmd, say, scancmp)

ACKMAGIC = 0x4A534E41505F41434B  # truncated to 64 bits below
ACKMAGIC &= (1 << 64) - 1
CKMAGIC = 0x4A534E4150434B50  # "JSNAPCKP"
UNKNOWN = (1 << 64) - 1
CK_SLOTS = (0, 1 << 20)
ACK_BASE = 2 << 20
ACK_SIZE = 512
HOT_BLOCKS = 2048  # 8 MiB hot region: lots of overwrites
MAX_BLOCKS = 256  # 1 MiB, the largest write
M64 = (1 << 64) - 1

F_DSYNC = 1      # written through an O_DSYNC fd (REQ_FUA)
F_FDATASYNC = 2  # followed by fdatasync (REQ_PREFLUSH)


def mix64(x):
    x &= M64
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


_PAT = struct.Struct('<' + '4Q480s' * 8)


def pattern(b, s):
    """4 KiB written by seq s at block b (= pattern() in pctool.c)."""
    w = struct.pack('<Q', mix64(b * 0x9E3779B97F4A7C15 + s)) * 60  # 480 bytes
    out = bytearray(_PAT.pack(*[v for i in range(8) for v in (MAGIC, b, s, i, w)]))
    out[BS - 4:] = struct.pack('<I', zlib.crc32(memoryview(out)[:BS - 4]))
    return bytes(out)


ZERO = bytes(BS)


def write_params(seed, seq, nblk):
    """(start, nblocks, flags) of write number seq: a pure function of
    (seed, seq, nblk); writer.c implements the same."""
    x = mix64((seed * 0xD1B54A32D192ED03 + seq) & M64)

    def r(k):
        return mix64((x + k * 0x9E3779B97F4A7C15) & M64)
    sizes = (1, 1, 2, 4, 8, 16, 32, 64, 1 + r(2) % 64, MAX_BLOCKS)
    n = sizes[r(1) % 10]
    if r(3) % 2 == 0 and nblk >= HOT_BLOCKS:
        lo, hi = 0, HOT_BLOCKS
    else:
        lo, hi = 0, nblk
    start = lo + r(4) % (hi - n + 1 - lo)
    f = r(5) % 100
    flags = F_DSYNC if f < 10 else F_FDATASYNC if f < 15 else 0
    return start, n, flags


# ---------------------------------------------------------------- checkpoint

def ck_encode(gen, next_seq, seed, m):
    mb = m.tobytes()
    hdr = struct.pack('<QQQQQI', CKMAGIC, gen, next_seq, seed, len(m), zlib.crc32(mb))
    hdr += struct.pack('<I', zlib.crc32(hdr))
    hdr = hdr.ljust(BS, b'\0')
    data = hdr + mb
    return data.ljust((len(data) + BS - 1) // BS * BS, b'\0')


def ck_read(fd):
    ck = ck_best(fd, CK_SLOTS, '<QQQQQI', CKMAGIC,
                 lambda f: f[4] * 8 if 0 < f[4] <= (1 << 20) else None)
    if ck is None:
        return None
    (_, gen, next_seq, seed, _, _), mb, off = ck
    m = array.array('Q')
    m.frombytes(mb)
    return (gen, next_seq, seed, m, off)


def ck_write(fd, gen, next_seq, seed, m):
    off = CK_SLOTS[gen % 2]
    pwrite_direct(fd, off, ck_encode(gen, next_seq, seed, m))
    os.fsync(fd)


# ---------------------------------------------------------------- ack log

ACK = struct.Struct('<QQQQQQQQQ')  # magic seed seq start n flags t_submit t_complete threads


def ack_encode(seed, seq, start, n, flags, ts, tc, k):
    r = ACK.pack(ACKMAGIC, seed, seq, start, n, flags, ts, tc, k).ljust(ACK_SIZE - 4, b'\0')
    return r + struct.pack('<I', zlib.crc32(r))


def ack_threads(fd, seed, base, disk_size):
    """The thread count the round's writer logged (None: no ack at all)."""
    for slot in range(min(64, (disk_size - ACK_BASE) // ACK_SIZE)):
        r = pread_direct(fd, ACK_BASE + slot * ACK_SIZE, ACK_SIZE)[:ACK_SIZE]
        magic, sd, seq, _, _, _, _, _, kk = ACK.unpack_from(r, 0)
        (crc,) = struct.unpack_from('<I', r, ACK_SIZE - 4)
        if (magic == ACKMAGIC and zlib.crc32(r[:ACK_SIZE - 4]) == crc and sd == seed
                and seq == base + slot):
            return kk
    return None


def acks_read(fd, seed, base, disk_size, k):
    """The acknowledged writes of this round, by writer thread: thread t
    wrote seq base+t, base+t+k, ... and logged write i in slot i*k+t; its
    valid records are contiguous from its first slot.  Returns (acks,
    inflight): acks as (seq, start, n, flags, t_submit, t_complete), and
    the seq each thread had in flight (its next one)."""
    nslots = (disk_size - ACK_BASE) // ACK_SIZE
    raw = {}
    chunk = 1 << 20
    idx = 0
    live = set(range(k))
    while idx < nslots and live:
        cnt = min(chunk // ACK_SIZE, nslots - idx)
        buf = pread_direct(fd, ACK_BASE + idx * ACK_SIZE, cnt * ACK_SIZE)
        for q in range(cnt):
            slot = idx + q
            t = slot % k
            if t not in live:
                continue
            r = buf[q * ACK_SIZE:(q + 1) * ACK_SIZE]
            magic, sd, seq, start, n, flags, ts, tc, kk = ACK.unpack_from(r, 0)
            (crc,) = struct.unpack_from('<I', r, ACK_SIZE - 4)
            if (magic != ACKMAGIC or zlib.crc32(r[:ACK_SIZE - 4]) != crc or sd != seed
                    or seq != base + slot or kk != k):
                live.discard(t)
                continue
            raw[slot] = (seq, start, n, flags, ts, tc)
        idx += cnt
    acks = [raw[x] for x in sorted(raw)]
    inflight = []
    for t in range(k):
        i = 0
        while i * k + t in raw:
            i += 1
        inflight.append(base + i * k + t)
    return acks, inflight


def dev_size(fd):
    return os.lseek(fd, 0, os.SEEK_END)


# ---------------------------------------------------------------- commands

def cmd_init(a):
    if a.nblk < MAX_BLOCKS:
        say('not ok - powercut: init -- nblk must be at least %d' % MAX_BLOCKS)
        return 1
    fd = os.open(a.acklog, os.O_RDWR | os.O_DIRECT)
    m = array.array('Q', bytes(8 * a.nblk))
    # zero the first ack slots so that nothing stale can be taken for an ack
    pwrite_direct(fd, ACK_BASE, bytes(1 << 20))
    ck_write(fd, 1, 1, a.seed, m)
    ck_write(fd, 2, 1, a.seed, m)
    say('# powercut: acklog initialised: seed=%d nblk=%d' % (a.seed, a.nblk))
    return 0


def describe(buf, b, cands):
    """Per-sector description of a bad block: which (block, seq, sector)
    each 512-byte sector holds (a seq of cands by its name, the last one
    given)."""
    names = {s: name for name, s in cands}
    return describe_sectors(buf, b, lambda ss: names.get(ss, 's%d' % ss))


def oracle(acks, inflight):
    """Which seqs each block may hold after the cut.

    acks: (seq, start, n, flags, t_submit, t_complete) of acknowledged
    writes; inflight: (seq, start, n) of writes submitted, not acknowledged.
    An acknowledged write X may be what block b holds unless another
    acknowledged write covering b was submitted after X completed (that one,
    or a later one, must have won); a write in flight may always be (it
    could reach the disk at the last moment).  Returns ({block: set of
    seqs}, set of blocks some acknowledged write covers: those may not hold
    the content from before the round)."""
    last_submit = {}
    for seq, start, n, _, ts, _ in acks:
        for b in range(start, start + n):
            if ts > last_submit.get(b, -1):
                last_submit[b] = ts
    allowed = {}
    for seq, start, n, _, _, tc in acks:
        for b in range(start, start + n):
            if tc >= last_submit[b]:
                allowed.setdefault(b, set()).add(seq)
    for seq, start, n in inflight:
        for b in range(start, start + n):
            allowed.setdefault(b, set()).add(seq)
    return allowed, set(last_submit)


def all_or_nothing(holds, acks, window):
    """What a snapshot taken while the writes in `window` were in flight
    holds that no single instant explains.  holds(b) is the seq block b
    holds; acks the writes completed before the snapshot, window those in
    flight, both as (seq, start, n, flags, t_submit, t_complete) (t_complete
    2^63 for a write never acknowledged).  A block of write V may instead
    hold a write X that can be ordered after V: one not completed before V
    was submitted.  Where a write W is seen in some of its blocks, each other
    block of W must hold such a write (W whole or not at all), and so must
    every block of each window write completed before W was submitted (it
    came first).  Returns [(seq of W, seq missing, block, what it holds)]."""
    tc_of = {q[0]: q[5] for q in acks}
    tc_of.update((q[0], q[5]) for q in window)

    def after(x, v_ts):
        return x in tc_of and tc_of[x] >= v_ts

    # per window write: seen at all, and its first block holding neither
    # it nor a write that may come after it
    seen, miss = set(), {}
    for v, vs, vn, _, vts, _ in window:
        for b in range(vs, vs + vn):
            x = holds(b)
            if x == v:
                seen.add(v)
            elif v not in miss and not after(x, vts):
                miss[v] = b
    bad = []
    for seq, _, _, _, ts, _ in window:
        if seq not in seen:
            continue
        need = [seq] + [v for v, _, _, _, _, vtc in window if v != seq and vtc < ts]
        v = next((v for v in need if v in miss), None)
        if v is not None:
            bad.append((seq, v, miss[v], holds(miss[v])))
    return bad


def check_all_or_nothing(scan, acks, window, label):
    torn = all_or_nothing(lambda b: scan[b][0], acks, window)
    if torn:
        seq, v, b, x = torn[0]
        what = ('seq %d is seen in part' % seq if v == seq else
                'seq %d is seen but seq %d, completed before it was submitted, is not' % (seq, v))
        say('not ok - powercut %s: writes in flight across the snapshot are all or nothing, '
            'as of one instant -- %d writes seen against it; first: %s: block %d holds %s' %
            (label, len(torn), what, b, 'seq %d' % x if x != UNKNOWN else '?'))
        return 1
    say('ok - powercut %s: writes in flight across the snapshot are all or nothing (%d writes in '
        'flight, %d seen)' % (label, len(window),
                              sum(1 for q in window if any(scan[b][0] == q[0]
                                                           for b in range(q[1], q[1] + q[2])))))
    return 0


def cmd_selftest(_a):
    """The oracle on hand-made histories (make check runs it on the host)."""
    ok = True

    def check(name, got, want):
        nonlocal ok
        if got != want:
            ok = False
            say('not ok - pc.py selftest: %s -- got %r, want %r' % (name, got, want))
        else:
            say('ok - pc.py selftest: %s' % name)
    # one thread: only the last acknowledged write, or the one in flight
    al, cov = oracle([(1, 0, 2, 0, 10, 20), (2, 1, 2, 0, 30, 40)], [(3, 2, 1)])
    check('sequential: last ack wins', (al[0], al[1], al[2]), ({1}, {2}, {2, 3}))
    check('sequential: covered blocks', cov, {0, 1, 2})
    # overlapping in time: either may win; one submitted after the other
    # completed must win
    al, _ = oracle([(1, 0, 1, 0, 10, 50), (2, 0, 1, 0, 20, 30), (3, 1, 1, 0, 10, 20),
                    (4, 1, 1, 0, 25, 30)], [])
    check('concurrent: both allowed', al[0], {1, 2})
    check('concurrent: ordered, the later only', al[1], {4})
    # X completed (pwrite returned) at 20, Y submitted at 25 covering the
    # same block: X may no longer be there, whatever X's fdatasync did
    al, _ = oracle([(1, 0, 1, 2, 10, 20), (2, 0, 1, 0, 25, 40)], [])
    check('completion is the pwrite return', al[0], {2})
    # a write in flight never makes an acknowledged one disallowed
    al, cov = oracle([(1, 0, 1, 0, 10, 20)], [(2, 0, 1), (3, 5, 1)])
    check('in flight: either way', (al[0], al[5], 5 in cov), ({1, 2}, {3}, False))
    # across a snapshot: write 5 (blocks 0-1, in flight) seen in block 0
    # only, block 1 holding acknowledged write 1 completed before 5 began
    held = {0: 5, 1: 1}
    acks = [(1, 0, 2, 0, 10, 20)]
    check('snapshot: a write seen in part is torn',
          all_or_nothing(held.get, acks, [(5, 0, 2, 0, 30, 1 << 63)]), [(5, 5, 1, 1)])
    # block 1 holds window write 4, which completed before 5 was submitted
    check('snapshot: an earlier write in flight does not excuse a torn one',
          all_or_nothing({0: 5, 1: 4}.get, acks, [(4, 1, 1, 0, 21, 25), (5, 0, 2, 0, 30, 1 << 63)]),
          [(5, 5, 1, 4)])
    # 6 (block 3) completed before 7 (block 4) was submitted: 7 without 6
    # is no instant
    check('snapshot: seen writes imply the ones before them',
          all_or_nothing({3: 0, 4: 7}.get, [], [(6, 3, 1, 0, 10, 20), (7, 4, 1, 0, 25, 1 << 63)]),
          [(7, 6, 3, 0)])
    check('snapshot: the ones before them seen too',
          all_or_nothing({3: 6, 4: 7}.get, [], [(6, 3, 1, 0, 10, 20), (7, 4, 1, 0, 25, 1 << 63)]),
          [])
    check('snapshot: all of it is not',
          all_or_nothing({0: 5, 1: 5}.get, acks, [(5, 0, 2, 0, 30, 1 << 63)]), [])
    check('snapshot: a later write in flight may cover part of it',
          all_or_nothing({0: 5, 1: 6}.get, acks, [(5, 0, 2, 0, 30, 1 << 63),
                                                   (6, 1, 1, 0, 31, 1 << 63)]), [])
    check('snapshot: an acknowledged write concurrent with it may too',
          all_or_nothing({0: 5, 1: 1}.get, [(1, 0, 2, 0, 10, 35)], [(5, 0, 2, 0, 30, 1 << 63)]), [])
    return 0 if ok else 1


def cmd_verify(a):
    t0 = time.time()
    afd = os.open(a.acklog, os.O_RDWR | os.O_DIRECT)
    ck = ck_read(afd)
    if ck is None:
        say('not ok - powercut %s: verify -- no valid checkpoint in the acklog' % a.label)
        return 1
    gen, base, seed, m, _ = ck
    nblk = len(m)
    logged = ack_threads(afd, seed, base, dev_size(afd))
    if logged is not None and logged != a.threads:
        say('not ok - powercut %s: writer threads -- the acks say %d, the harness %d' %
            (a.label, logged, a.threads))
        return 1
    acks, inflight = acks_read(afd, seed, base, dev_size(afd), a.threads)
    bad_ack = sum(1 for seq, start, n, flags, _, _ in acks
                  if (start, n, flags) != write_params(seed, seq, nblk))
    window = None
    if a.window:
        # A snapshot, not a cut: the message was sent at TS and returned at
        # TR.  Writes completed before TS count as acknowledged, writes
        # submitted after TR must not be seen, the others were in flight.
        ts, tr = a.window
        last_tc = {}
        for q in acks:
            t = (q[0] - base) % a.threads
            last_tc[t] = max(last_tc.get(t, 0), q[5])
        window = [q for q in acks if q[5] >= ts and q[4] <= tr]
        # a write never acknowledged was submitted after its thread's last
        # completion
        window += [(q,) + write_params(seed, q, nblk) + (last_tc.get((q - base) % a.threads, 0),
                                                        1 << 63)
                   for q in inflight if last_tc.get((q - base) % a.threads, 0) <= tr]
        acks = [q for q in acks if q[5] < ts]
        inflight = [q[0] for q in window] or [base - 1]
    allowed, covered = oracle(acks, [(q,) + write_params(seed, q, nblk)[:2] for q in inflight])
    infl = max(inflight)
    say('# powercut %s: checkpoint gen=%d base_seq=%d threads=%d acked writes this round=%d '
        'in flight: %s%s' % (a.label, gen, base, a.threads, len(acks), ' '.join(
            'seq %d [%d,%d)' % (q, write_params(seed, q, nblk)[0],
                                sum(write_params(seed, q, nblk)[:2])) for q in inflight[:8]),
            ' ... (%d in all)' % len(inflight) if len(inflight) > 8 else ''))
    if bad_ack:
        say('not ok - powercut %s: ack records consistent -- %d records do not match the '
            'derived write parameters (test tool bug?)' % (a.label, bad_ack))

    scan = read_scan_pairs(a.scan)
    if len(scan) < nblk:
        say('not ok - powercut %s: verify -- scan has %d blocks, need %d' % (a.label, len(scan), nblk))
        return 1
    found = array.array('Q', m)
    nfail = 0
    first = []
    n_infl = 0
    n_old = n_zero_lost = n_garbage = n_unexp = 0
    bad = []
    for b in range(nblk):
        f = scan[b][0]
        ok_vals = allowed.get(b)
        if ok_vals is not None and f in ok_vals:
            found[b] = f
            n_infl += f in inflight
            continue
        e = m[b]
        if b not in covered and (f == e or e == UNKNOWN):
            # no acknowledged write covers it: the content before the round
            # (UNKNOWN: unknown since an earlier failure)
            found[b] = f
            continue
        nfail += 1
        found[b] = f
        want = sorted(ok_vals) if ok_vals else [e]
        e = want[-1]
        if f == 0:
            kind = 'zeros (acked write lost)'
            n_zero_lost += 1
        elif f == UNKNOWN:
            kind = 'garbage/torn'
            n_garbage += 1
        elif f < min(want):
            kind = 'older generation (stale data)'
            n_old += 1
        else:
            kind = 'a seq that no acknowledged or in-flight write allows here'
            n_unexp += 1
        bad.append((b, e, f, kind))
    if bad:
        dfd = os.open(a.dev, os.O_RDONLY | os.O_DIRECT)
        for b, e, f, kind in bad[:10]:
            blk = pread_direct(dfd, b * BS, BS)[:BS]
            first.append('block %d (byte %d): allowed %s, found %s: %s %s' % (
                b, b * BS, ' '.join(str(x) for x in sorted(allowed.get(b, {e}))),
                'seq %d' % f if f != UNKNOWN else '?', kind,
                describe(blk, b, [('E', e), ('I', infl)])))
        os.close(dfd)
    n_torn = 0 if window is None else check_all_or_nothing(scan, acks, window, a.label)
    if a.zero_tail:
        # Outside the test area nothing was ever written: zeros only.
        tail = [b for b in range(nblk, len(scan)) if scan[b][0] != 0]
        if tail:
            say('not ok - powercut %s: blocks outside the test area are zero -- %d are not, '
                'first block %d' % (a.label, len(tail), tail[0]))
            nfail += 1
        else:
            say('ok - powercut %s: blocks outside the test area are zero (%d blocks)' %
                (a.label, len(scan) - nblk))
    dt = time.time() - t0
    if nfail == 0:
        say('ok - powercut %s: verify (%d blocks, %d acked writes this round by %d threads, '
            '%d blocks of in-flight writes present, %.1fs)' %
            (a.label, nblk, len(acks), a.threads, n_infl, dt))
    else:
        say('not ok - powercut %s: verify -- %d bad blocks (lost=%d stale=%d garbage/torn=%d '
            'unexpected=%d); first: %s' % (a.label, nfail, n_zero_lost, n_old, n_garbage,
                                          n_unexp, first[0]))
        for line in first:
            say('#   ' + line)
        say('#   (sectors: E=expected seq, I=in-flight seq, z=zeros, ?=not a pattern, '
            'sN=seq N, (blkB.i)=sector i of block B)')
    if not a.no_checkpoint:
        # The next round continues from what is really on the device.
        ck_write(afd, gen + 1, infl + 1, seed, found)
        say('# powercut %s: checkpoint gen=%d next_seq=%d written' % (a.label, gen + 1, infl + 1))
        if a.next_out:
            with open(a.next_out, 'w') as f:
                f.write('%d %d %d\n' % (infl + 1, seed, nblk))
    os.close(afd)
    return 1 if nfail or n_torn else 0


def read_scan_pairs(path):
    return list(zip(*read_scan(path)))


def cmd_scancmp(a):
    return scancmp('powercut', a, fmt_seq, lambda n: '%d MiB' % (n * BS >> 20))


def fmt_seq(s):
    return '?' if s == UNKNOWN else str(s)


def cmd_write(a):
    afd = os.open(a.acklog, os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
    ck = ck_read(afd)
    if ck is None:
        say('not ok - powercut writer: no valid checkpoint')
        return 1
    _, base, seed, m, _ = ck
    nblk = len(m)
    nslots = (dev_size(afd) - ACK_BASE) // ACK_SIZE
    fd = os.open(a.dev, os.O_WRONLY | os.O_DIRECT)
    sfd = os.open(a.dev, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    buf = abuf(MAX_BLOCKS * BS)
    abf = abuf(ACK_SIZE)
    seq = base
    t0 = time.time()
    tp = t0
    g0 = a.t0 or t0
    nbytes = 0
    lat_max = 0.0
    say('# powercut writer: start base_seq=%d nblk=%d' % (base, nblk))
    while True:
        if seq - base >= nslots:
            say('# powercut writer: acklog full, idling')
            while True:
                time.sleep(10)
        start, n, flags = write_params(seed, seq, nblk)
        for k in range(n):
            buf[k * BS:(k + 1) * BS] = pattern(start + k, seq)
        t1 = time.time()
        ts = time.monotonic_ns()
        w = os.pwrite(sfd if flags & F_DSYNC else fd, memoryview(buf)[:n * BS], start * BS)
        if w != n * BS:
            say('not ok - powercut writer: short write seq %d: %d/%d' % (seq, w, n * BS))
            return 1
        tc = time.monotonic_ns()  # completed when pwrite returns
        if flags & F_FDATASYNC:
            os.fdatasync(fd)
        lat = time.time() - t1
        lat_max = max(lat_max, lat)
        # acknowledged: record it durably
        abf[:ACK_SIZE] = ack_encode(seed, seq, start, n, flags, ts, tc, 1)
        os.pwrite(afd, memoryview(abf)[:ACK_SIZE], ACK_BASE + (seq - base) * ACK_SIZE)
        nbytes += n * BS
        seq += 1
        now = time.time()
        if now - tp >= 1.0:
            say('# powercut writer: t=%.1f acked seq=%d writes=%d %.1f MiB (%.2f MiB/s) '
                'max write latency %.0f ms' % (now - g0, seq - 1, seq - base, nbytes / 1048576,
                                                nbytes / 1048576 / (now - t0), lat_max * 1000))
            tp = now
            lat_max = 0.0


def main():
    p, sub = arg_parser()
    s = sub.add_parser('verify')
    s.add_argument('--scan', required=True)
    s.add_argument('--dev', required=True)
    s.add_argument('--acklog', required=True)
    s.add_argument('--label', required=True)
    s.add_argument('--no-checkpoint', action='store_true')
    s.add_argument('--threads', type=int, default=1, help='writer threads of the round')
    s.add_argument('--zero-tail', action='store_true',
                   help='blocks of the scan beyond the test area must be zero')
    s.add_argument('--next-out', help='write "NEXT_SEQ SEED NBLK" here')
    s.add_argument('--window', type=int, nargs=2, metavar=('TS', 'TR'),
                   help='verify a snapshot taken between these CLOCK_MONOTONIC ns instead '
                        'of a cut')
    sub.add_parser('selftest')
    s = sub.add_parser('write')
    s.add_argument('--dev', required=True)
    s.add_argument('--acklog', required=True)
    s.add_argument('--t0', type=float, default=0.0)
    a = p.parse_args()
    return run_cmd('powercut', {'init': cmd_init, 'verify': cmd_verify, 'scancmp': cmd_scancmp,
                                'write': cmd_write, 'selftest': cmd_selftest}, a, 'pc.py')

if __name__ == '__main__':
    sys.exit(main())
