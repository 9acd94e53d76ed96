#!/usr/bin/env bash
# Guest side of tests/run-guest.sh: insmod the module once, run every
# tests/guest/[0-9]*.sh in order, rmmod.  Prints TAP-like lines.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export JSNAP_TOP=${JSNAP_TOP:-$(cd "$here/../.." && pwd)}
# shellcheck source=../../qemu/guest-lib.sh
. "$JSNAP_TOP/qemu/guest-lib.sh"
SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
per_test_timeout=${JSNAP_TEST_TIMEOUT:-420}

tests=()
for t in "$here"/[0-9]*.sh; do
	n=$(basename "$t" .sh)
	if [[ -n ${JSNAP_TEST_FILTER:-} && ! $n =~ $JSNAP_TEST_FILTER ]]; then continue; fi
	tests+=("$t")
done

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

rc=0
for t in "${tests[@]}"; do
	n=$(basename "$t" .sh)
	mark="jsnap-runner $n $RANDOM$RANDOM"
	echo "$mark" >/dev/kmsg
	echo "# ---- $n"
	t0=$(date +%s)
	trc=0
	TEST_NAME=$n timeout -k 10 "$per_test_timeout" bash "$t" || trc=$?
	echo "# $n: exit $trc after $(($(date +%s) - t0)) s"
	if [[ $trc == 124 || $trc == 137 ]]; then
		echo "not ok - $n: timed out after ${per_test_timeout}s"
	fi
	[[ $trc == 0 ]] || rc=1
	s=$(dmesg | awk -v m="$mark" 'f { print } index($0, m) { f = 1 }' | grep -E "$SPLAT_RE" || true)
	if [[ -n $s ]]; then
		echo "not ok - $n: kernel splat during the test"
		sed 's/^/#   /' <<<"$s" | head -n 40
		rc=1
	fi
	# leftovers from a failed test must not break the next one
	left=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }')
	if [[ -n $left ]]; then
		echo "# $n left dm devices behind: $left (removing)"
		for d in $left; do dmsetup remove --force "$d" >/dev/null 2>&1 || true; done
		dm_mknodes
	fi
done

if out=$(rmmod dm_jsnap 2>&1); then
	echo "ok - rmmod dm_jsnap"
else
	echo "not ok - rmmod dm_jsnap -- $out"
	rc=1
fi
exit $rc
