"""Helpers shared by the power-cut verifiers (tests/powercut/pc.py,
tests/powercut-mirror/mc.py): block constants and O_DIRECT I/O with
page-aligned buffers.  The block format itself is in blocks.h."""
import mmap
import os

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
