#!/usr/bin/env bash
# `make check`: every test, from nothing.
#
#   1. set-up (idempotent; builds and caches the kernel on first use)
#   2. host `cargo test` of the pure logic (rust/host)
#   3. build dm-jsnap.ko
#   4. one VM: KUnit suites of the module + in-guest integration tests
#   5. power-cut tests (several VM boots on the same file-backed NVRAM):
#      journal, windows held open by fault injection (dm-jsnap-fault.ko),
#      copy-on-write/hydration, one-way mirror
#
# Ends with one line "N passed, M failed" and exits non-zero if anything
# failed or could not run.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pass=0 fail=0
log=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-check.XXXXXX")
trap 'rm -rf "$log"' EXIT
stage() { printf '\n==== %s (%(%H:%M:%S)T)\n' "$*" -1; }
count() { # count FILE PASS_RE FAIL_RE
	local p f
	p=$(grep -cE "$2" "$1" || true)
	f=$(grep -cE "$3" "$1" || true)
	pass=$((pass + p)) fail=$((fail + f))
}

stage "set-up"
if ! bash scripts/setup.sh; then
	echo "not ok - setup failed"
	echo "0 passed, 1 failed"
	exit 1
fi

stage "host tests (cargo test)"
if (cd rust/host && cargo test 2>&1) | tee "$log/host.log"; then :; fi
h_pass=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\1/p' "$log/host.log" | paste -sd+ | bc)
h_fail=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\2/p' "$log/host.log" | paste -sd+ | bc)
if [[ -z $h_pass ]]; then h_pass=0 h_fail=1; echo "not ok - host tests did not run"; fi
pass=$((pass + h_pass)) fail=$((fail + h_fail))

stage "host tests (the power-cut writer and oracle)"
bash tests/powercut/host-selftest.sh 2>&1 | tee "$log/pc-selftest.log"
count "$log/pc-selftest.log" '^ok - ' '^not ok - '

stage "build dm-jsnap.ko"
if ! bash scripts/build-module.sh >"$log/build.log" 2>&1; then
	tail -n 40 "$log/build.log"
	echo "not ok - module build failed"
	echo "$pass passed, $((fail + 1)) failed"
	exit 1
fi
grep -E '^(warning|error)' "$log/build.log" | sort | uniq -c | head -5
pass=$((pass + 1))

stage "build dm-jsnap-fault.ko (fault-injection build for the tests)"
if bash scripts/build-module.sh --fault >"$log/build-fault.log" 2>&1; then
	echo "ok - fault-injection module built"
	pass=$((pass + 1))
	export JSNAP_FAULT_MODULE=$top/dm-jsnap-fault.ko JSNAP_REQUIRE_FAULT=1
else
	tail -n 40 "$log/build-fault.log"
	echo "not ok - fault-injection module build failed"
	fail=$((fail + 1))
fi

stage "guest tests (KUnit + integration)"
bash tests/run-guest.sh 2>&1 | tee "$log/guest.log"
count "$log/guest.log" '^ok - ' '^not ok - '
if ! grep -q '^guest: ' "$log/guest.log"; then fail=$((fail + 1)); echo "not ok - guest run gave no summary"; fi

if [[ -x tests/powercut.sh ]]; then
	stage "power-cut tests"
	bash tests/powercut.sh 2>&1 | tee "$log/powercut.log"
	count "$log/powercut.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut: ' "$log/powercut.log"; then fail=$((fail + 1)); echo "not ok - power-cut run gave no summary"; fi
fi

if [[ -x tests/powercut.sh && -n ${JSNAP_FAULT_MODULE:-} ]]; then
	stage "power cuts with a volatile disk cache (dm-log-writes under production)"
	bash tests/powercut.sh --log-writes --cuts 5 2>&1 | tee "$log/powercut-lw.log"
	count "$log/powercut-lw.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut: ' "$log/powercut-lw.log"; then fail=$((fail + 1)); echo "not ok - log-writes power-cut run gave no summary"; fi
fi

if [[ -f tests/powercut-windows.sh ]]; then
	stage "power cuts inside the windows held open by fault injection"
	bash tests/powercut-windows.sh 2>&1 | tee "$log/pcwin.log"
	count "$log/pcwin.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-windows: ' "$log/pcwin.log"; then fail=$((fail + 1)); echo "not ok - powercut-windows gave no summary"; fi
fi

if [[ -x tests/powercut-snap.sh ]]; then
	stage "power cuts during copy-on-write and hydration"
	bash tests/powercut-snap.sh --cuts 5 2>&1 | tee "$log/pcsnap.log"
	count "$log/pcsnap.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-snap: ' "$log/pcsnap.log"; then fail=$((fail + 1)); echo "not ok - powercut-snap gave no summary"; fi
fi

if [[ -x tests/powercut-mirror.sh ]]; then
	stage "power cuts under the one-way mirror"
	bash tests/powercut-mirror.sh 2>&1 | tee "$log/pcmirror.log"
	count "$log/pcmirror.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-mirror: ' "$log/pcmirror.log"; then fail=$((fail + 1)); echo "not ok - powercut-mirror gave no summary"; fi
fi

stage "benchmark harness smoke test (bench/run.sh --smoke)"
bash bench/run.sh --smoke 2>&1 | tee "$log/bench.log"
count "$log/bench.log" '^ok - ' '^not ok - '
if ! grep -q '^ok - bench smoke' "$log/bench.log"; then fail=$((fail + 1)); echo "not ok - bench smoke gave no result"; fi

echo
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
