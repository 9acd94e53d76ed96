#!/usr/bin/env python3
"""Overwrite a hot region of a block device, keeping a model file.

hotwrite.py DEV MODEL FIRST_SECTOR REGION_SECTORS COUNT SEED [MAX_BLOCKS]

COUNT writes (O_DIRECT, one pwrite each) of 1..MAX_BLOCKS (default 4)
random 4 KiB blocks at random 4 KiB-aligned offsets inside
FIRST_SECTOR..FIRST_SECTOR+REGION_SECTORS; MODEL (a file of the device's
size, or at least covering the region) receives the same bytes at the same
offsets.  Deterministic for a SEED.  MAX_BLOCKS 0: instead, every 4 KiB
block of the region once, in order, one write each (COUNT is ignored).
"""
import mmap
import os
import random
import sys


def main():
    dev, model = sys.argv[1], sys.argv[2]
    first, region, count, seed = (int(x) for x in sys.argv[3:7])
    max_blocks = int(sys.argv[7]) if len(sys.argv) > 7 else 4
    rng = random.Random(seed)
    blocks = region // 8
    buf = mmap.mmap(-1, max(max_blocks, 1) * 4096)
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    md = os.open(model, os.O_WRONLY)
    try:
        if max_blocks == 0:
            plan = [(1, b) for b in range(blocks)]
        else:
            plan = []
            for _ in range(count):
                n = rng.randint(1, max_blocks)
                plan.append((n, rng.randrange(0, blocks - n + 1)))
        for n, b in plan:
            data = rng.randbytes(n * 4096)
            buf.seek(0)
            buf.write(data)
            off = first * 512 + b * 4096
            view = memoryview(buf)[: n * 4096]
            if os.pwrite(fd, view, off) != n * 4096:
                sys.exit("short write at %d" % off)
            view.release()
            os.pwrite(md, data, off)
    finally:
        os.close(fd)
        os.close(md)


if __name__ == "__main__":
    main()
