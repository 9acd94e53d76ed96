#!/usr/bin/env bash
# `make check-debug`: the guest suite on the debug kernel (lockdep, spinlock
# and mutex debugging, list debugging, slab poisoning and red zones,
# KFENCE; see qemu/kernel-debug.config), with the stress test run longer
# and the fuzzer run wider than in `make check`.
#
#   1. set-up of the debug kernel (a second cached tree, built once)
#   2. dm-jsnap.ko and dm-jsnap-fault.ko built against it
#   3. one VM: KUnit + every guest test; any lockdep report, warning or
#      KFENCE/slab report in the kernel log fails the run (the runner's
#      splat check)
#   4. the modules rebuilt for the normal kernel (whatever the outcome)
#
# Ends with one line "N passed, M failed" and exits non-zero if anything
# failed.  Knobs: JSNAP_STRESS_SECS (default here 600), JSNAP_FUZZ_CASES
# (default here 1500).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

restore() {
	echo "# check-debug: rebuilding the modules for the normal kernel"
	JSNAP_KVARIANT= bash scripts/build-module.sh >/dev/null 2>&1 \
		&& JSNAP_KVARIANT= bash scripts/build-module.sh --fault >/dev/null 2>&1 \
		|| echo "# check-debug: the normal rebuild failed: run scripts/build-module.sh"
}
trap restore EXIT

export JSNAP_KVARIANT=debug
fail=0
if ! bash scripts/setup.sh; then
	echo "not ok - debug kernel set-up failed"
	echo "0 passed, 1 failed"
	exit 1
fi
if ! bash scripts/build-module.sh >/tmp/check-debug-build.$$ 2>&1; then
	tail -n 40 /tmp/check-debug-build.$$
	rm -f /tmp/check-debug-build.$$
	echo "not ok - module build against the debug kernel failed"
	echo "0 passed, 1 failed"
	exit 1
fi
rm -f /tmp/check-debug-build.$$
if bash scripts/build-module.sh --fault >/dev/null 2>&1; then
	export JSNAP_FAULT_MODULE=$top/dm-jsnap-fault.ko JSNAP_REQUIRE_FAULT=1
else
	echo "not ok - fault-injection module build against the debug kernel failed"
	fail=1
fi
# (tests/guest/88-jsnapctl.sh runs the user-space tool)
if ! bash scripts/build-jsnapctl.sh >/dev/null 2>&1; then
	echo "not ok - jsnapctl build failed (scripts/build-jsnapctl.sh)"
	fail=1
fi

export JSNAP_STRESS_SECS=${JSNAP_STRESS_SECS:-600}
export JSNAP_FUZZ_CASES=${JSNAP_FUZZ_CASES:-1500}
# lockdep and the slab checks slow everything down: longer limits
export JSNAP_TEST_TIMEOUT=${JSNAP_TEST_TIMEOUT:-2400}
export JSNAP_GUEST_TIMEOUT=${JSNAP_GUEST_TIMEOUT:-10800}
# (the manifest's counts are those of the normal run's knobs)
export JSNAP_MANIFEST_CHECK=0
log=$(mktemp "${TMPDIR:-/tmp}/jsnap-check-debug.XXXXXX")
bash tests/run-guest.sh 2>&1 | tee "$log"
src=${PIPESTATUS[0]}
pass=$(grep -c '^ok - ' "$log")
nfail=$(grep -c '^not ok - ' "$log")
if ! grep -q '^guest: ' "$log"; then nfail=$((nfail + 1)); echo "not ok - debug guest run gave no summary"; fi
if [[ $src != 0 && $nfail == 0 ]]; then nfail=1; echo "not ok - debug guest run exited $src without a 'not ok' line"; fi
rm -f "$log"
echo
echo "$pass passed, $((nfail + fail)) failed"
[[ $((nfail + fail)) == 0 ]]
