#!/usr/bin/env bash
# Host check of the power-cut writer and oracle (make check, host stage):
# `pc.py selftest` (hand-made histories), then 8 pctool writer threads on a
# plain file for 2 s, killed: the oracle must accept what is there, and
# must reject it once an acknowledged block is zeroed (a lost write) or
# holds an older write (stale data).  Needs a file system with O_DIRECT
# (not tmpfs): the work directory is made beside the repository.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
w=$(mktemp -d "$here/../../.pc-selftest.XXXXXX")
done_all=0
trap 'rm -rf "$w"; [[ $done_all == 1 ]] || echo "not ok - pc host selftest: ran to the end"' EXIT
say() { echo "$*"; }
cd "$here" || exit 1
python3 pc.py selftest
gcc -O2 -Wall -pthread -o "$w/pctool" pctool.c -lz || { say "not ok - pc host selftest: build pctool"; exit 1; }
truncate -s 256M "$w/dev" && truncate -s 64M "$w/ack"
python3 pc.py init --acklog "$w/ack" --seed 7 --nblk 32768 >/dev/null
{ timeout -s KILL 2 "$w/pctool" write "$w/dev" "$w/ack" 1 7 32768 0 8 >/dev/null 2>&1; } 2>/dev/null
v() { # v LABEL: verify the file (no checkpoint written)
	"$w/pctool" scan "$w/dev" 0 "$w/scan" &&
		python3 pc.py verify --scan "$w/scan" --dev "$w/dev" --acklog "$w/ack" --label "$1" \
			--threads 8 --no-checkpoint --zero-tail >"$w/out" 2>&1
}
if v host-run; then say "ok - pc host selftest: 8 writer threads killed: the oracle accepts the file"; else
	say "not ok - pc host selftest: 8 writer threads killed: the oracle accepts the file -- $(grep '^not ok' "$w/out" | head -n1)"
fi
# the newest acknowledged write's first block: zeroed, then an older pattern
read -r b seq < <(python3 - "$w/ack" <<'PY'
import os, sys
sys.path.insert(0, '.')
import pc
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
_, base, seed, m, _ = pc.ck_read(fd)
acks, _ = pc.acks_read(fd, seed, base, pc.dev_size(fd), 8)
seq, start = acks[-1][0], acks[-1][1]
print(start, seq)
PY
)
cp "$w/dev" "$w/dev.good"
dd if=/dev/zero of="$w/dev" bs=4096 seek="$b" count=1 conv=notrunc status=none
if v lost; then say "not ok - pc host selftest: a zeroed acknowledged block is rejected -- accepted"; else
	grep -q 'lost=1 ' "$w/out" && say "ok - pc host selftest: a zeroed acknowledged block is rejected" ||
		say "not ok - pc host selftest: a zeroed acknowledged block is rejected -- $(grep '^not ok' "$w/out" | head -n1)"
fi
cp "$w/dev.good" "$w/dev"
python3 -c "
import sys; sys.path.insert(0, '.')
import pc, os
fd = os.open('$w/dev', os.O_WRONLY)
os.pwrite(fd, pc.pattern($b, 1), $b * pc.BS)
" # seq 1: older than any write acknowledged after it
if v stale; then say "not ok - pc host selftest: an older write in an acknowledged block is rejected -- accepted"; else
	grep -qE 'stale=1 |unexpected=1\)' "$w/out" && say "ok - pc host selftest: an older write in an acknowledged block is rejected" ||
		say "not ok - pc host selftest: an older write in an acknowledged block is rejected -- $(grep '^not ok' "$w/out" | head -n1)"
fi
done_all=1
