#!/usr/bin/env python3
"""Block-device helpers for the two-host test (tests/twohost/), O_DIRECT reads.

  blk.py sha DEV OFF_MIB LEN_MIB        sha256 of LEN_MIB MiB at OFF_MIB
  blk.py mibs DEV OFF_MIB LEN_MIB       one sha256 per MiB (index sha)
  blk.py reader DEV MIBS START DONE SECS   case (d): read the MiBs listed
      in MIBS (index sha, as `mibs` prints) in a loop until the file DONE
      exists and then at most SECS more seconds (or 8 errors in a row
      after it); prints counts of the reads started before the file START
      existed (before), between START and DONE (during) and after DONE
      (after) that were good, wrong (a successful read whose data is not
      the expected) or failed (err).
"""
import hashlib
import mmap
import os
import sys
import time

MIB = 1 << 20


def open_direct(dev):
    return os.open(dev, os.O_RDONLY | os.O_DIRECT)


def read_mib(fd, buf, idx):
    n = os.preadv(fd, [buf], idx * MIB)
    if n != MIB:
        raise OSError(5, "short read (%d bytes)" % n)
    return hashlib.sha256(buf).hexdigest()


def main():
    cmd = sys.argv[1]
    if cmd in ("sha", "mibs"):
        dev, off, length = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        fd = open_direct(dev)
        buf = mmap.mmap(-1, MIB)
        if cmd == "mibs":
            for i in range(off, off + length):
                print(i, read_mib(fd, buf, i))
            return 0
        # (4 MiB reads: fewer round trips over NVMe/TCP)
        big = mmap.mmap(-1, 4 * MIB)
        h = hashlib.sha256()
        pos, end = off * MIB, (off + length) * MIB
        while pos < end:
            n = min(4 * MIB, end - pos)
            view = memoryview(big)[:n]
            got = os.preadv(fd, [view], pos)
            if got != n:
                raise OSError(5, "short read (%d bytes at %d)" % (got, pos))
            h.update(view)
            pos += n
        print(h.hexdigest())
        return 0
    if cmd == "reader":
        dev, mibs, start, flag, secs = sys.argv[2:6] + [float(sys.argv[6])]
        want = {}
        for line in open(mibs):
            i, s = line.split()
            want[int(i)] = s
        idx = sorted(want)
        c = {"%s_%s" % (r, p): 0 for p in ("before", "during", "after")
             for r in ("good", "wrong", "err")}
        first_err = ""
        fd = None
        buf = mmap.mmap(-1, MIB)
        t_flag = None
        run = 0
        k = 0
        while True:
            if t_flag is None and os.path.exists(flag):
                t_flag = time.time()
            after = t_flag is not None
            if after and (time.time() - t_flag > secs or run >= 8):
                break
            phase = "after" if after else ("during" if os.path.exists(start) else "before")
            i = idx[k % len(idx)]
            k += 1
            try:
                if fd is None:
                    fd = open_direct(dev)
                s = read_mib(fd, buf, i)
            except OSError as e:
                c["err_" + phase] += 1
                if not first_err:
                    first_err = "%s: %s" % (phase, e)
                run += 1
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                    fd = None
                time.sleep(0.2)
                continue
            run = 0
            c[("good_" if s == want[i] else "wrong_") + phase] += 1
        print(" ".join("%s=%d" % kv for kv in c.items()), "first_error=%r" % first_err)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
