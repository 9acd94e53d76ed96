#!/usr/bin/env bash
# Guest part of tests/powercut/lw-order.sh: DATA behind dm-log-writes
# (log on LOG); task X (CPU 0) writes one 4 KiB block twice (value 2i, then
# 2i+1, each O_DIRECT and complete before the next) and flushes, N times;
# task Y (CPU 1) flushes in a loop, with a 64 KiB write every 8th time.
# SERIAL=1: the two tasks' flushes go one at a time (a file lock).
set -eu
D=/dev/disk/jsnap/data
L=/dev/disk/jsnap/lw
modprobe dm-log-writes 2>/dev/null || true
echo "# hardware queues of the data disk: $(ls /sys/block/"$(basename "$(readlink -f $D)")"/mq | wc -l)"
dmsetup create lwo --table "0 $(blockdev --getsz $D) log-writes $D $L"
dmsetup mknodes >/dev/null 2>&1 || true
cat >/tmp/lwo.py <<'PY'
import fcntl, mmap, os, struct, sys
fd = os.open('/dev/mapper/lwo', os.O_WRONLY | os.O_DIRECT)
lock = open('/tmp/lwo.lock', 'a')
serial = os.environ.get('SERIAL') == '1'
def flush():
    if serial:
        fcntl.flock(lock, fcntl.LOCK_EX)
    os.fsync(fd)  # a block device: a FLUSH
    if serial:
        fcntl.flock(lock, fcntl.LOCK_UN)
buf = mmap.mmap(-1, 4096)
if sys.argv[1] == 'x':
    for i in range(1, int(sys.argv[2]) + 1):
        for v in (2 * i, 2 * i + 1):
            buf.seek(0)
            buf.write(struct.pack('<Q', v) * 512)
            os.pwrite(fd, buf, 0)
        flush()
else:
    big = mmap.mmap(-1, 65536)
    k = 0
    while not os.path.exists('/tmp/lwo.stop'):
        if k % 8 == 0:
            os.pwrite(fd, big, (1 << 20) + (k % 64) * 65536)
        flush()
        k += 1
PY
taskset -c 1 python3 /tmp/lwo.py y &
y=$!
taskset -c 0 python3 /tmp/lwo.py x "$N"
touch /tmp/lwo.stop
wait $y
dmsetup remove lwo
echo "# lw-order: guest done"
