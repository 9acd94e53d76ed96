#!/usr/bin/env python3
"""Changed-block tracking model for 64-changed.sh.

  cbt.py gen SEED N MAXSEC LEN [SPREAD]  N random writes "sector count" (1..MAXSEC
                                       sectors, inside LEN sectors; SPREAD: every
                                       other chunk of size SPREAD, one sector each)
  cbt.py write DEV LIST                do the writes of LIST (O_DIRECT, random data)
  cbt.py expect WHICH[:SNAPS] CHUNK NCHUNKS [FIRST [COUNT]] -- LIST...
                                       the exact answer of `changed WHICH [FIRST
                                       [COUNT]]` when the interval holds the writes
                                       of the LISTs and SNAPS snapshots were taken
                                       since the format (default 0; no `next`: the
                                       whole answer)
  cbt.py join                          stdin: the answers of a paged query, first
                                       to last; prints them as one answer
"""
import mmap
import os
import random
import sys


def read_list(path):
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                s, n = line.split()
                out.append((int(s), int(n)))
    return out


def gen(seed, n, maxsec, length, spread=0):
    r = random.Random(seed)
    if spread:
        # one sector in every other chunk: as many runs as possible
        for c in range(0, length // spread, 2):
            print(c * spread + r.randrange(spread), 1)
        return
    for _ in range(n):
        cnt = r.randint(1, maxsec)
        print(r.randrange(0, length - cnt + 1), cnt)


def write(dev, path):
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    try:
        for s, n in read_list(path):
            buf = mmap.mmap(-1, n * 512)
            buf.write(os.urandom(n * 512))
            if os.pwritev(fd, [buf], s * 512) != n * 512:
                sys.exit(f"short write at sector {s}")
            buf.close()
    finally:
        os.close(fd)


def expect(which, snaps, chunk, nchunks, first, count, lists):
    end = nchunks if count is None else min(nchunks, first + count)
    marked = set()
    for path in lists:
        for s, n in read_list(path):
            marked.update(range(s // chunk, (s + n - 1) // chunk + 1))
    runs = []
    for c in sorted(x for x in marked if first <= x < end):
        if runs and runs[-1][0] + runs[-1][1] == c:
            runs[-1][1] += 1
        else:
            runs.append([c, 1])
    since = f"since={snaps}" if which == "current" else f"since={snaps - 1} until={snaps}"
    print(f"{which} {since} chunk_sectors={chunk} first={first} end={end} next=- "
          f"runs={len(runs)} changed={sum(l for _, l in runs)}")
    for s, l in runs:
        print(s, l)


def join():
    """Pages of one query (each answer's `next` is the next page's `first`)
    -> the answer a single page would give.  Runs are taken as they are
    (a page ends before a run, so no run is split across pages: one split
    in two shows as two)."""
    pages = sys.stdin.read().strip().split("\n\n")
    runs = []
    head = None
    for p in pages:
        lines = p.strip().split("\n")
        words = lines[0].split()
        h = dict(kv.split("=") for kv in words[1:])
        if head is None:
            head = (words[0], h)
        assert h["since"] == head[1]["since"], "pages of two intervals"
        assert int(h["runs"]) == len(lines) - 1, "runs= differs from the lines"
        for ln in lines[1:]:
            s, l = map(int, ln.split())
            runs.append([s, l])
        last = h
    which, h = head
    since = f"since={h['since']}" + (f" until={h['until']}" if "until" in h else "")
    print(f"{which} {since} chunk_sectors={h['chunk_sectors']} first={h['first']} "
          f"end={last['end']} next={last['next']} runs={len(runs)} "
          f"changed={sum(l for _, l in runs)}")
    for s, l in runs:
        print(s, l)


def main():
    a = sys.argv[1:]
    if a[0] == "gen":
        gen(int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]) if len(a) > 5 else 0)
    elif a[0] == "write":
        write(a[1], a[2])
    elif a[0] == "expect":
        k = a.index("--")
        pos = a[1:k]
        first = int(pos[3]) if len(pos) > 3 else 0
        count = int(pos[4]) if len(pos) > 4 else None
        which, _, snaps = pos[0].partition(":")
        expect(which, int(snaps or 0), int(pos[1]), int(pos[2]), first, count, a[k + 1:])
    elif a[0] == "join":
        join()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
