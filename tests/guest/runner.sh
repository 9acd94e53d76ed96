#!/usr/bin/env bash
# Guest side of tests/run-guest.sh: insmod the module once, run every
# tests/guest/[0-9]*.sh in order, rmmod.  Prints TAP-like lines.
# "# runner: tests: N..." first (what was selected) and "# runner: done"
# last; scripts/manifest.sh checks both.  A test that exits non-zero
# without printing a `not ok` line, or prints no check at all, gets a
# `not ok` line here.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export JSNAP_TOP=${JSNAP_TOP:-$(cd "$here/../.." && pwd)}
# shellcheck source=../../qemu/guest-lib.sh
. "$JSNAP_TOP/qemu/guest-lib.sh"
SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
per_test_timeout=${JSNAP_TEST_TIMEOUT:-600}

tests=()
for t in "$here"/[0-9]*.sh; do
	n=$(basename "$t" .sh)
	if [[ -n ${JSNAP_TEST_FILTER:-} && ! $n =~ $JSNAP_TEST_FILTER ]]; then continue; fi
	tests+=("$t")
done

echo "# runner: tests: $(for t in "${tests[@]}"; do basename "$t" .sh; done | tr '\n' ' ')"
if [[ -n ${JSNAP_TEST_FILTER:-} ]]; then echo "# runner: subset (JSNAP_TEST_FILTER=$JSNAP_TEST_FILTER): ${#tests[@]} tests"; fi
outdir=$(mktemp -d /tmp/jsnap-runner.XXXXXX)

mod=${JSNAP_MODULE:-$JSNAP_TOP/dm-jsnap.ko}
if [[ ! -f $mod ]]; then
	echo "not ok - insmod: module not found: $mod"
	for t in "${tests[@]}"; do echo "not ok - $(basename "$t" .sh): not run (no module)"; done
	exit 1
fi
if out=$(insmod "$mod" 2>&1); then
	echo "ok - insmod $(basename "$mod")"
else
	echo "not ok - insmod $(basename "$mod") -- $out"
	dmesg | tail -n 20 | sed 's/^/#   /'
	for t in "${tests[@]}"; do echo "not ok - $(basename "$t" .sh): not run (insmod failed)"; done
	exit 1
fi
dm_mknodes
if dmsetup targets | grep -q '^jsnap '; then echo "ok - target jsnap registered"; else echo "not ok - target jsnap registered -- $(dmsetup targets | tr '\n' ' ')"; fi

# dump_hung: where are the tasks stuck in D state?  (no sysrq in the test
# kernel; /proc/PID/stack needs CONFIG_STACKTRACE)
dump_hung() {
	local p st
	echo "# tasks in D state:"
	for p in /proc/[0-9]*; do
		st=$(awk '/^State:/ { print $2 }' "$p/status" 2>/dev/null)
		[[ $st == D ]] || continue
		echo "#   pid ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) wchan=$(cat "$p/wchan" 2>/dev/null)"
		sed 's/^/#     /' "$p/stack" 2>/dev/null
	done
	echo "# dm devices:"
	timeout 5 dmsetup info -c 2>/dev/null | sed 's/^/#   /'
	echo "# last kernel log lines:"
	dmesg | tail -n 30 | sed 's/^/#   /'
}

# kill_tree PID: SIGKILL PID and all its descendants (children first
# collected, so that none is re-parented away before it is found)
kill_tree() {
	local p=$1 c
	kill -STOP "$p" 2>/dev/null
	for c in $(pgrep -P "$p" 2>/dev/null); do kill_tree "$c"; done
	kill -KILL "$p" 2>/dev/null
}

# After a hang the kernel state is unusable (stuck I/O): report, save the
# log for the host, and power off at once (no sync, which could block).
give_up() {
	local t2
	for t2 in "${tests[@]:$1}"; do echo "not ok - $(basename "$t2" .sh): not run (an earlier test hung)"; done
	echo "not ok - rmmod dm_jsnap: skipped (a test hung)"
	if [[ -n ${JSNAP_VM_OUT:-} && -d ${JSNAP_VM_OUT:-} ]]; then
		dmesg >"$JSNAP_VM_OUT/dmesg" 2>/dev/null
		echo 1 >"$JSNAP_VM_OUT/rc"
	fi
	busybox poweroff -n -f 2>/dev/null || poweroff -f
	exit 1
}

# bounded_rm NAME [--force]: dmsetup remove; the run gives up if it is
# stuck in the kernel (`bounded`, qemu/guest-lib.sh)
bounded_rm() {
	local d=$1
	shift
	bounded 20 dmsetup remove "$@" "$d" >/dev/null 2>&1
	[[ $? != 124 ]]
}

rc=0
idx=0
for t in "${tests[@]}"; do
	idx=$((idx + 1))
	n=$(basename "$t" .sh)
	mark="jsnap-runner $n $RANDOM$RANDOM"
	echo "$mark" >/dev/kmsg
	echo "# ---- $n"
	t0=$(date +%s)
	# own session, so that a timeout can kill the whole test; its output
	# goes to a file (counted below) and is streamed from there
	tout=$outdir/$n.out
	: >"$tout"
	TEST_NAME=$n setsid -w bash "$t" >"$tout" 2>&1 &
	tp=$!
	tail -s 0.2 -n +1 -f --pid="$tp" "$tout" &
	tailp=$!
	hung=
	while kill -0 "$tp" 2>/dev/null; do
		if (($(date +%s) - t0 >= per_test_timeout)); then hung=1; break; fi
		sleep 0.5
	done
	trc=0
	if [[ -n $hung ]]; then
		echo "not ok - $n: timed out after ${per_test_timeout}s"
		dump_hung
		kill_tree "$tp"
		sleep 1
		# still there (uninterruptible)?  Then nothing else can run.
		if kill -0 "$tp" 2>/dev/null || [[ -n $(for p in /proc/[0-9]*; do awk '/^State:/ && $2 == "D" { print }' "$p/status" 2>/dev/null; done) ]]; then
			echo "# $n: tasks stuck in the kernel; giving up"
			give_up "$idx"
		fi
		trc=124
	else
		wait "$tp" || trc=$?
	fi
	wait "$tailp" 2>/dev/null
	echo "# $n: exit $trc after $(($(date +%s) - t0)) s"
	[[ $trc == 0 ]] || rc=1
	nbad=$(grep -c '^not ok - ' "$tout")
	if [[ $trc != 0 && $nbad == 0 && -z $hung ]]; then
		echo "not ok - $n: exit status -- exited $trc without a 'not ok' line"
	elif ! grep -qE '^(not )?ok - ' "$tout"; then
		echo "not ok - $n: printed no check"
		rc=1
	fi
	s=$(dmesg | awk -v m="$mark" 'f { print } index($0, m) { f = 1 }' | grep -E "$SPLAT_RE" || true)
	if [[ -n $s ]]; then
		echo "not ok - $n: kernel splat during the test"
		sed 's/^/#   /' <<<"$s" | head -n 40
		rc=1
	fi
	# leftovers from a failed test must not break the next one: remove in
	# dependency order (several passes), --force only as a last resort
	left=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }')
	if [[ -n $left ]]; then
		echo "# $n left dm devices behind: $(tr '\n' ' ' <<<"$left")(removing)"
		for _pass in 1 2 3 4; do
			for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }'); do
				bounded_rm "$d" || give_up "$idx"
			done
		done
		for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }'); do
			echo "# could not remove $d: forcing"
			bounded_rm "$d" --force || give_up "$idx"
		done
		dm_mknodes
	fi
done

if out=$(rmmod dm_jsnap 2>&1); then
	echo "ok - rmmod dm_jsnap"
else
	echo "not ok - rmmod dm_jsnap -- $out"
	rc=1
fi
rm -rf "$outdir"
echo "# runner: done (${#tests[@]} tests, exit $rc)"
exit $rc
