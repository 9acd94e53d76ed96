#!/usr/bin/env python3
"""File workload, ack log and oracle of tests/powercut.sh --scenario fs
(issue 11 item 7).

Files f000..f047 in the file system's root.  A file's state is (version V,
length L); its content is SHAKE-128("N:V") cut to L bytes, so an append
keeps V and a prefix of any state is recognisable.

The ack log is a raw disk written O_DIRECT|O_DSYNC, one region of 2 MiB per
round (boot): checksummed records of whole sectors, appended in order, so
the first invalid record ends a region.  Records (JSON, key "t"):
  BASE     {files, snap}  the state verified at the start of the round (and
                          the listing of the snapshot then active, or null)
  DROPPED                 that snapshot was dropped (or there was none)
  READY / WORKLOAD        the workload is about to start / started
  INTENT   {op, ...}      an operation is about to start (one at a time)
  ACK                     ... and its fsyncs returned
  SNAPPING {files}        freeze + `snapshot` start; the files at the freeze
  SNAPPED                 the `snapshot` message returned (fs thawed)
The model of a round is its BASE plus every acknowledged INTENT; an INTENT
without ACK was in flight at the cut and may have happened or not (or, for
a create or an append, in part: a prefix of its content).

  fsw.py verify ACKDEV ROUND MNT OUTDIR  check MNT against the newest round
        before ROUND with a BASE; write OUTDIR/state.json (what is there) and
        OUTDIR/snap.json {need: must|maybe|none, files}; remove the temporary
        file of a replace in flight.
  fsw.py same LISTING.json MNT [WHAT]   MNT holds exactly those files
  fsw.py round ACKDEV ROUND MNT OUTDIR SEED SNAPSTEP T0 WAT PCUT JSDEV
        BASE, drop the snapshot, wait until T0+WAT, then the workload (never
        returns); SNAPSTEP < 0: no snapshot this round; PCUT > 0: write it to
        fault_pmem_cut as the workload starts.
  fsw.py info ACKIMG ROUND              (host) what round ROUND logged
  fsw.py selftest                       the oracle on made-up cases
"""
import hashlib
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import time
import zlib

NF = 48
SECT = 512
REGION = 2 << 20
MAGIC = b"FSW1"
HDR = struct.Struct("<4sIIII")  # magic, round, sectors, payload len, crc
PFX = "ok - powercut-fs"


def content(n, v, length):
    return hashlib.shake_128(b"%d:%d" % (n, v)).digest(length) if length else b""


def fname(n):
    return "f%03d" % n


class AckLog:
    def __init__(self, path, rnd, write=False):
        self.rnd = rnd
        self.base = rnd * REGION
        self.off = 0
        flags = os.O_RDWR | os.O_DIRECT | os.O_DSYNC if write else os.O_RDONLY
        self.fd = os.open(path, flags)
        self.buf = mmap.mmap(-1, 1 << 16)

    def append(self, rec):
        p = json.dumps(rec, separators=(",", ":")).encode()
        nsect = (HDR.size + len(p) + SECT - 1) // SECT
        assert nsect * SECT <= len(self.buf) and self.off + nsect * SECT <= REGION
        h = HDR.pack(MAGIC, self.rnd, nsect, len(p), 0)
        crc = zlib.crc32(h[:16] + p)
        self.buf[:nsect * SECT] = (HDR.pack(MAGIC, self.rnd, nsect, len(p), crc) + p).ljust(nsect * SECT, b"\0")
        n = os.pwritev(self.fd, [memoryview(self.buf)[:nsect * SECT]], self.base + self.off)
        assert n == nsect * SECT
        self.off += nsect * SECT

    def scan(self):
        with open("/proc/self/fd/%d" % self.fd, "rb", buffering=0) as f:
            f.seek(self.base)
            data = f.read(REGION)
        recs, off = [], 0
        while off + HDR.size <= len(data):
            magic, rnd, nsect, ln, crc = HDR.unpack_from(data, off)
            if magic != MAGIC or rnd != self.rnd or nsect == 0 or HDR.size + ln > nsect * SECT:
                break
            p = data[off + HDR.size:off + HDR.size + ln]
            if zlib.crc32(data[off:off + 16] + p) != crc:
                break
            recs.append(json.loads(p))
            off += nsect * SECT
        return recs


def model_of(recs):
    """(files {n: [v, L]}, op in flight or None, snapshot expectation)"""
    if not recs or recs[0]["t"] != "BASE":
        return None
    base = recs[0]
    files = {int(k): tuple(s) for k, s in base["files"].items()}
    pending = None
    snap = {"need": "maybe" if base["snap"] is not None else "none", "files": base["snap"]}
    for r in recs[1:]:
        t = r["t"]
        if t == "DROPPED":
            snap = {"need": "none", "files": None}
        elif t == "SNAPPING":
            snap = {"need": "maybe", "files": r["files"]}
        elif t == "SNAPPED":
            snap["need"] = "must"
        elif t == "INTENT":
            pending = r
        elif t == "ACK":
            apply_op(files, pending)
            pending = None
    return files, pending, snap


def apply_op(files, op):
    n = op["n"]
    if op["op"] in ("create", "replace"):
        files[n] = (op["v"], op["l"])
    elif op["op"] == "append":
        files[n] = (op["v"], op["to"])
    elif op["op"] == "delete":
        del files[n]


def observe(mnt):
    """{name: bytes} of every regular file; other entries by kind"""
    out, odd = {}, []
    for e in sorted(os.listdir(mnt)):
        p = os.path.join(mnt, e)
        if e == "lost+found" and os.path.isdir(p) and not os.path.islink(p):
            continue
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                out[e] = f.read()
        else:
            odd.append(e)
    return out, odd


def is_state(n, data, v):
    return data == content(n, v, len(data))


def check(files, pending, seen, odd):
    """Problems (list of str) and the observed state {n: (v, L)}."""
    bad = ["unexpected entry %s" % e for e in odd]
    state = {}
    pn = pending["n"] if pending else None
    tmp_ok = pending and pending["op"] == "replace"
    for name, data in seen.items():
        if tmp_ok and name == fname(pn) + ".tmp":
            if len(data) > pending["l"] or not is_state(pn, data, pending["v"]):
                bad.append("%s: %d bytes, not a prefix of the replacement in flight" % (name, len(data)))
            continue
        if not (len(name) == 4 and name[0] == "f" and name[1:].isdigit()) or int(name[1:]) >= NF:
            bad.append("unexpected file %s (%d bytes): no step created it" % (name, len(data)))
            continue
        n = int(name[1:])
        old = files.get(n)
        ok = []  # acceptable states
        if old is not None:
            ok.append(("exact", old[0], old[1], old[1]))
        if n == pn:
            op = pending["op"]
            if op == "create":
                ok.append(("prefix", pending["v"], 0, pending["l"]))
            elif op == "replace":
                ok.append(("exact", pending["v"], pending["l"], pending["l"]))
            elif op == "append":
                ok = [("prefix", pending["v"], pending["from"], pending["to"])]
        hit = None
        for _, v, lo, hi in ok:
            if lo <= len(data) <= hi and is_state(n, data, v):
                hit = v
                break
        if hit is None:
            if not ok:
                bad.append("%s exists (%d bytes) but no step created it (or it was deleted)" % (name, len(data)))
            else:
                bad.append("%s: %d bytes match none of %s" % (name, len(data), ok))
        else:
            state[n] = (hit, len(data))
    for n, s in files.items():
        if n not in state and fname(n) not in seen:
            if n == pn and pending["op"] == "delete":
                continue
            bad.append("%s (acknowledged version %d, %d bytes) is missing" % (fname(n), s[0], s[1]))
    return bad, state


def pick_model(ackdev, rnd):
    for r in range(rnd - 1, -1, -1):
        m = model_of(AckLog(ackdev, r).scan())
        if m:
            return r, m
    return None, None


def cmd_verify(ackdev, rnd, mnt, outdir):
    rnd = int(rnd)
    r, m = pick_model(ackdev, rnd)
    if m is None:
        print("not ok - powercut-fs round %d: an ack log region with a BASE record" % rnd)
        return 1
    files, pending, snap = m
    print("# model: round %d's log, %d files, in flight: %s, snapshot %s" % (r, len(files), pending, snap["need"]))
    seen, odd = observe(mnt)
    bad, state = check(files, pending, seen, odd)
    acked = len(files)
    if bad:
        for b in bad[:10]:
            print("#   " + b)
        print("not ok - powercut-fs round %d: every acknowledged file exact, nothing else -- %d problem(s): %s" % (rnd, len(bad), bad[0]))
    else:
        print("%s round %d: every acknowledged file exact, nothing else (%d files, op in flight: %s)" % (
            PFX, rnd, acked, pending["op"] if pending else "none"))
    if pending and pending["op"] == "replace" and fname(pending["n"]) + ".tmp" in seen:
        os.unlink(os.path.join(mnt, fname(pending["n"]) + ".tmp"))
        dfd = os.open(mnt, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    with open(os.path.join(outdir, "state.json"), "w") as f:
        json.dump({str(n): s for n, s in state.items()}, f)
    with open(os.path.join(outdir, "snap.json"), "w") as f:
        json.dump(snap, f)
    return 1 if bad else 0


def cmd_same(listing, mnt, what="snapshot view"):
    with open(listing) as f:
        want = json.load(f)
    if "need" in want:
        want = want["files"]
    files = {int(k): tuple(s) for k, s in want.items()}
    seen, odd = observe(mnt)
    bad, _ = check(files, None, seen, odd)
    if bad:
        for b in bad[:10]:
            print("#   " + b)
        print("not ok - powercut-fs: %s holds exactly the recorded files -- %s" % (what, bad[0]))
        return 1
    print("%s: %s holds exactly the recorded files (%d)" % (PFX, what, len(files)))
    return 0


def dirsync(mnt):
    fd = os.open(mnt, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def write_file(path, data, flags):
    fd = os.open(path, flags, 0o644)
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]
    os.fsync(fd)
    os.close(fd)


def field(jsdev, key):
    st = subprocess.run(["dmsetup", "status", jsdev], capture_output=True, text=True).stdout
    for tok in st.split():
        if tok.startswith(key + "="):
            return tok[len(key) + 1:]
    return None


def cmd_round(ackdev, rnd, mnt, outdir, seed, snapstep, t0, wat, pcut, jsdev):
    rnd, snapstep, pcut = int(rnd), int(snapstep), int(pcut)
    with open(os.path.join(outdir, "state.json")) as f:
        files = {int(k): tuple(s) for k, s in json.load(f).items()}
    with open(os.path.join(outdir, "snap.json")) as f:
        snap = json.load(f)
    log = AckLog(ackdev, rnd, write=True)
    active = field(jsdev, "snapshot")
    log.append({"t": "BASE", "files": {str(n): s for n, s in files.items()},
                "snap": snap["files"] if active == "active" else None})
    if active != "none":
        r = subprocess.run(["dmsetup", "message", jsdev, "0", "drop"])
        if r.returncode:
            print("not ok - powercut-fs round %d: drop the snapshot" % rnd)
    log.append({"t": "DROPPED"})
    wait = float(t0) + float(wat) - time.time()
    print("# ready t=%.1f (workload at %s s)" % (time.time() - float(t0), wat), flush=True)
    if wait > 0:
        time.sleep(wait)
    log.append({"t": "READY"})
    if pcut > 0:
        with open("/sys/module/dm_jsnap/parameters/fault_pmem_cut", "w") as f:
            f.write("%d\n" % pcut)
    log.append({"t": "WORKLOAD", "pcut": pcut})
    print("# workload start t=%.1f" % (time.time() - float(t0)), flush=True)
    rng = random.Random(int(seed) * 1000 + rnd)
    step = 0
    while True:
        if step == snapstep:
            log.append({"t": "SNAPPING", "files": {str(n): s for n, s in files.items()}})
            ok = subprocess.run(["fsfreeze", "-f", mnt]).returncode == 0
            ok = subprocess.run(["dmsetup", "message", jsdev, "0", "snapshot"]).returncode == 0 and ok
            ok = subprocess.run(["fsfreeze", "-u", mnt]).returncode == 0 and ok
            if ok:
                log.append({"t": "SNAPPED"})
                print("# snapped at step %d t=%.1f" % (step, time.time() - float(t0)), flush=True)
            else:
                print("not ok - powercut-fs round %d: freeze, snapshot, thaw" % rnd, flush=True)
        step += 1
        n = rng.randrange(NF)
        v = rnd * 100000 + step
        path = os.path.join(mnt, fname(n))
        ln = rng.choice((rng.randrange(4096), rng.randrange(65536), rng.randrange(262144)))
        if n not in files:
            op = {"t": "INTENT", "op": "create", "n": n, "v": v, "l": ln}
            log.append(op)
            write_file(path, content(n, v, ln), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            dirsync(mnt)
        else:
            k = rng.randrange(10)
            ov, ol = files[n]
            if k < 4 or (k < 8 and ol > 512 << 10):
                op = {"t": "INTENT", "op": "replace", "n": n, "v": v, "l": ln}
                log.append(op)
                write_file(path + ".tmp", content(n, v, ln), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.rename(path + ".tmp", path)
                dirsync(mnt)
            elif k < 8:
                to = ol + 1 + rng.randrange(32768)
                op = {"t": "INTENT", "op": "append", "n": n, "v": ov, "from": ol, "to": to}
                log.append(op)
                write_file(path, content(n, ov, to)[ol:], os.O_WRONLY | os.O_APPEND)
            else:
                op = {"t": "INTENT", "op": "delete", "n": n}
                log.append(op)
                os.unlink(path)
                dirsync(mnt)
        log.append({"t": "ACK"})
        apply_op(files, op)
        if step % 50 == 0:
            left = ""
            if pcut > 0:
                with open("/sys/module/dm_jsnap/parameters/fault_pmem_cut") as f:
                    left = ", %d fences to the cut" % int(f.read())
            print("# step %d t=%.1f%s" % (step, time.time() - float(t0), left), flush=True)


def cmd_info(ackimg, rnd):
    recs = AckLog(ackimg, int(rnd)).scan()
    kinds = [r["t"] for r in recs]
    print("base=%d workload=%d acks=%d snapping=%d snapped=%d inflight=%d" % (
        kinds.count("BASE"), kinds.count("WORKLOAD"), kinds.count("ACK"), kinds.count("SNAPPING"),
        kinds.count("SNAPPED"), int(bool(kinds) and kinds[-1] == "INTENT")))
    return 0


def cmd_selftest():
    files = {1: (7, 100), 2: (8, 5000)}
    c = lambda n, v, l: content(n, v, l)
    cases = [  # (pending, seen, problems expected?)
        (None, {"f001": c(1, 7, 100), "f002": c(2, 8, 5000)}, False),
        (None, {"f001": c(1, 7, 100)}, True),  # lost
        (None, {"f001": c(1, 7, 99), "f002": c(2, 8, 5000)}, True),  # short
        (None, {"f001": c(1, 7, 100), "f002": c(2, 8, 5000), "f003": b""}, True),  # nobody created it
        (None, {"f001": c(1, 7, 100), "f002": c(2, 9, 5000)}, True),  # other version
        (None, {"f001": b"\0" * 100, "f002": c(2, 8, 5000)}, True),  # garbage
        ({"op": "create", "n": 3, "v": 9, "l": 50}, {"f001": c(1, 7, 100), "f002": c(2, 8, 5000), "f003": c(3, 9, 20)}, False),
        ({"op": "create", "n": 3, "v": 9, "l": 50}, {"f001": c(1, 7, 100), "f002": c(2, 8, 5000)}, False),
        ({"op": "create", "n": 3, "v": 9, "l": 50}, {"f001": c(1, 7, 100), "f002": c(2, 8, 5000), "f003": b"\0" * 20}, True),
        ({"op": "replace", "n": 1, "v": 9, "l": 50}, {"f001": c(1, 9, 50), "f002": c(2, 8, 5000), "f001.tmp": c(1, 9, 10)}, False),
        ({"op": "replace", "n": 1, "v": 9, "l": 50}, {"f001": c(1, 9, 49), "f002": c(2, 8, 5000)}, True),
        ({"op": "replace", "n": 1, "v": 9, "l": 50}, {"f002": c(2, 8, 5000)}, True),
        ({"op": "append", "n": 2, "v": 8, "from": 5000, "to": 6000}, {"f001": c(1, 7, 100), "f002": c(2, 8, 5500)}, False),
        ({"op": "append", "n": 2, "v": 8, "from": 5000, "to": 6000}, {"f001": c(1, 7, 100), "f002": c(2, 8, 4999)}, True),
        ({"op": "delete", "n": 2}, {"f001": c(1, 7, 100)}, False),
        ({"op": "delete", "n": 2}, {"f001": c(1, 7, 100), "f002": c(2, 8, 5000)}, False),
    ]
    fails = 0
    for i, (p, seen, want) in enumerate(cases):
        bad, _ = check(dict(files), p, seen, [])
        if bool(bad) != want:
            print("selftest case %d: problems %s, expected %s" % (i, bad, want))
            fails += 1
    print("fsw selftest: %d cases, %d failed" % (len(cases), fails))
    return 1 if fails else 0


if __name__ == "__main__":
    cmds = {"verify": cmd_verify, "same": cmd_same, "round": cmd_round, "info": cmd_info, "selftest": cmd_selftest}
    sys.exit(cmds[sys.argv[1]](*sys.argv[2:]))
