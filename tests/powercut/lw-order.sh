#!/usr/bin/env bash
# The power-cut tests' volatile-cache model (dm-log-writes, replayed by
# lwreplay.py) against its one known limit: dm-log-writes logs a write only
# when a flush mapped after it completes, and logs flushes in the order
# they complete, so with two flushes in flight an older write can be
# logged after a newer one to the same sector.  The tests therefore issue
# the driver's flushes one at a time (fault_flush_serial=1).  This checks
# that with the flushes one at a time the log keeps the order of the
# writes (every rewrite of a block logged after the write before it), in
# a 2-vCPU guest whose data disk has a queue per vCPU, and reports how
# many rewrites the log puts out of order with the flushes concurrent.
#   tests/powercut/lw-order.sh [N]      (N rewrite pairs, default 3000)
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-3000}
SUM=powercut-lw-order
npass=0 nfail=0
pass() { echo "ok - $SUM: $*"; npass=$((npass + 1)); }
failc() { echo "not ok - $SUM: $*"; nfail=$((nfail + 1)); }
work=$(mktemp -d "${PC_WORKDIR:-/tmp}/jsnap-lw-order.XXXXXX")
trap 'rm -rf "$work"' EXIT
run() { # run SERIAL: one guest; prints the parse of its log
	rm -f "$work/data.img" "$work/lw.img"
	truncate -s 64M "$work/data.img" && truncate -s 512M "$work/lw.img"
	"$top/qemu/vm.sh" --cpus 2 --memory 1G --timeout 600 \
		--disk "data:64M:$work/data.img:virtio" --disk "lw:512M:$work/lw.img:virtio" \
		-- env N="$N" SERIAL="$1" bash "$top/tests/powercut/lw-order-guest.sh" >"$work/vm-$1.log" 2>&1
	local rc=$?
	grep -a '^# ' "$work/vm-$1.log" | grep -v '^# lw-order: guest done' >&2
	if ((rc != 0)) || ! grep -aq '^# lw-order: guest done' "$work/vm-$1.log"; then
		failc "guest run (SERIAL=$1) -- vm.sh exited $rc: $(tail -n 3 "$work/vm-$1.log" | tr '\n' ' ')"
		return 1
	fi
	python3 - "$work/lw.img" <<'PY'
import os, struct, sys
sys.path.insert(0, os.path.join(os.environ.get('TOP', '.'), 'tests', 'powercut'))
import lwreplay
es, why = lwreplay.entries(sys.argv[1], False)
vals = [struct.unpack_from('<Q', d, 0)[0] for _, s, _, _, d in es if d is not None and s == 0]
inv = sum(1 for a, b in zip(vals, vals[1:]) if b < a)
print(len(vals), inv, vals[-1] if vals else 0, why.replace(' ', '_'))
PY
}
export TOP=$top
if out=$(run 1 | tail -n 1) && read -r n inv last why <<<"$out" && [[ -n ${inv:-} ]]; then
	echo "# flushes one at a time: $n block writes logged, $inv logged before an older one, last $last ($why)"
	[[ $n == $((2 * N)) && $last == $((2 * N + 1)) ]] && pass "flushes one at a time: every write logged ($n), the last one last" ||
		failc "flushes one at a time: every write logged, the last one last -- $n logged, last $last"
	[[ $inv == 0 ]] && pass "flushes one at a time: the log keeps the order of the writes" ||
		failc "flushes one at a time: the log keeps the order of the writes -- $inv of $n writes logged before an older write to the same block"
fi
if out=$(run 0 | tail -n 1) && read -r n inv last why <<<"$out" && [[ -n ${inv:-} ]]; then
	# not a check: how often the model breaks without fault_flush_serial
	echo "# flushes concurrent: $inv of $n writes logged before an older write to the same block (why the tests issue flushes one at a time)"
	pass "flushes concurrent: the guest ran and its log was read ($n writes)"
fi
echo "$SUM: $npass passed, $nfail failed"
((nfail == 0))
