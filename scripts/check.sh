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
#   6. the run against tests/manifest (scripts/manifest.sh): every suite
#      ran, each with its expected number of checks
#
# Ends with one line "N passed, M failed" and exits non-zero if anything
# failed or could not run.  Always the full set: the caller's test knobs
# (filters, timeouts, cut counts, other modules) are removed first.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# No caller variable may shrink the run: drop every test knob (JSNAP_*,
# power-cut PC*_*, bench BENCH_*, fault FAULT_*), keeping only where the
# cache lives and how the VM is accelerated/logged.
keep_re='^(JSNAP_CACHE|JSNAP_VM_ACCEL|JSNAP_VM_VERBOSE|JSNAP_TEST_VERBOSE|PC_WORKDIR|PCM_WORKDIR)$'
for v in $(compgen -e); do
	if [[ $v =~ ^(JSNAP_|PC_|PCS_|PCW_|PCM_|BENCH_|FAULT_|MANIFEST_) && ! $v =~ $keep_re ]]; then
		echo "# check: ignoring the caller's $v=${!v} (make check always runs everything)"
		unset "$v"
	fi
done
for v in CHUNK PROD STORE SPARE PMEM VPMEM KDIR; do
	if [[ -n ${!v+x} ]]; then echo "# check: ignoring the caller's $v=${!v}"; unset "$v"; fi
done
export JSNAP_MANIFEST_CHECK=0 # (run-guest.sh: the whole run is compared below)

pass=0 fail=0
log=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-check.XXXXXX")
trap 'rm -rf "$log"' EXIT
# stage SUITE TEXT: a stage header; SUITE names the suite of tests/manifest
# whose output follows (scripts/manifest.sh splits a log at these lines)
stage() {
	local s=$1
	shift
	printf '\n==== [suite %s] %s (%(%H:%M:%S)T)\n' "$s" "$*" -1
}
# suite SUITE FILE [RC]: add FILE, as suite SUITE, to the log the manifest
# check reads; a stage that exited non-zero (RC) without a `not ok` line
# is a failure
suite() {
	{ echo "==== [suite $1]"; cat "$2"; } >>"$log/all.log"
	if [[ ${3:-0} != 0 ]] && ! grep -q '^not ok - ' "$2"; then
		echo "not ok - $1: exit status -- exited $3 without a 'not ok' line" | tee -a "$log/all.log"
		fail=$((fail + 1))
	fi
}
count() { # count FILE PASS_RE FAIL_RE
	local p f
	p=$(grep -cE "$2" "$1" || true)
	f=$(grep -cE "$3" "$1" || true)
	pass=$((pass + p)) fail=$((fail + f))
}

stage setup "set-up"
if ! bash scripts/setup.sh; then
	echo "not ok - setup failed"
	echo "0 passed, 1 failed"
	exit 1
fi

stage host-cargo "host tests (cargo test)"
if (cd rust/host && cargo test 2>&1) | tee "$log/host.log"; then :; fi
h_pass=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\1/p' "$log/host.log" | paste -sd+ | bc)
h_fail=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\2/p' "$log/host.log" | paste -sd+ | bc)
if [[ -z $h_pass ]]; then h_pass=0 h_fail=1; echo "not ok - host tests did not run"; fi
pass=$((pass + h_pass)) fail=$((fail + h_fail))
suite host-cargo "$log/host.log"

stage manifest-selftest "host self-test of the harness (manifest and counting)"
bash tests/manifest-selftest.sh 2>&1 | tee "$log/manifest-selftest.log"
src=${PIPESTATUS[0]}
count "$log/manifest-selftest.log" '^ok - ' '^not ok - '
suite manifest-selftest "$log/manifest-selftest.log" "$src"

stage powercut-host-selftest "host tests (the power-cut writer and oracle)"
bash tests/powercut/host-selftest.sh 2>&1 | tee "$log/pc-selftest.log"
src=${PIPESTATUS[0]}
count "$log/pc-selftest.log" '^ok - ' '^not ok - '
suite powercut-host-selftest "$log/pc-selftest.log" "$src"

stage build "build dm-jsnap.ko"
if ! bash scripts/build-module.sh >"$log/build.log" 2>&1; then
	tail -n 40 "$log/build.log"
	echo "not ok - module build failed"
	echo "$pass passed, $((fail + 1)) failed"
	exit 1
fi
grep -E '^(warning|error)' "$log/build.log" | sort | uniq -c | head -5
pass=$((pass + 1))

stage build "build dm-jsnap-fault.ko (fault-injection build for the tests)"
if bash scripts/build-module.sh --fault >"$log/build-fault.log" 2>&1; then
	echo "ok - fault-injection module built"
	pass=$((pass + 1))
	export JSNAP_FAULT_MODULE=$top/dm-jsnap-fault.ko JSNAP_REQUIRE_FAULT=1
else
	tail -n 40 "$log/build-fault.log"
	echo "not ok - fault-injection module build failed"
	fail=$((fail + 1))
fi

stage guest "guest tests (KUnit + integration)"
bash tests/run-guest.sh 2>&1 | tee "$log/guest.log"
src=${PIPESTATUS[0]}
count "$log/guest.log" '^ok - ' '^not ok - '
if ! grep -q '^guest: ' "$log/guest.log"; then fail=$((fail + 1)); echo "not ok - guest run gave no summary"; fi
suite guest "$log/guest.log" "$src"

if [[ -x tests/powercut.sh ]]; then
	stage powercut "power-cut tests"
	bash tests/powercut.sh --chunk 8 --start 16 2>&1 | tee "$log/powercut.log"
	src=${PIPESTATUS[0]}
	count "$log/powercut.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut: ' "$log/powercut.log"; then fail=$((fail + 1)); echo "not ok - power-cut run gave no summary"; fi
	suite powercut "$log/powercut.log" "$src"
fi

if [[ -x tests/powercut.sh && -n ${JSNAP_FAULT_MODULE:-} ]]; then
	stage powercut-log-writes "power cuts with a volatile disk cache (dm-log-writes under production)"
	bash tests/powercut.sh --log-writes --cuts 5 --chunk 4096 2>&1 | tee "$log/powercut-lw.log"
	src=${PIPESTATUS[0]}
	count "$log/powercut-lw.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut: ' "$log/powercut-lw.log"; then fail=$((fail + 1)); echo "not ok - log-writes power-cut run gave no summary"; fi
	suite powercut-log-writes "$log/powercut-lw.log" "$src"
fi

if [[ -f tests/powercut-windows.sh ]]; then
	stage powercut-windows "power cuts inside the windows held open by fault injection"
	bash tests/powercut-windows.sh 2>&1 | tee "$log/pcwin.log"
	src=${PIPESTATUS[0]}
	count "$log/pcwin.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-windows: ' "$log/pcwin.log"; then fail=$((fail + 1)); echo "not ok - powercut-windows gave no summary"; fi
	suite powercut-windows "$log/pcwin.log" "$src"
fi

if [[ -x tests/powercut-snap.sh ]]; then
	stage powercut-snap "power cuts during copy-on-write and hydration"
	bash tests/powercut-snap.sh --cuts 5 2>&1 | tee "$log/pcsnap.log"
	src=${PIPESTATUS[0]}
	count "$log/pcsnap.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-snap: ' "$log/pcsnap.log"; then fail=$((fail + 1)); echo "not ok - powercut-snap gave no summary"; fi
	suite powercut-snap "$log/pcsnap.log" "$src"
fi

if [[ -x tests/powercut-fs.sh ]]; then
	stage powercut-fs "power cuts under ext4 (fsync'd files, e2fsck, the frozen file system's snapshot)"
	bash tests/powercut-fs.sh --cuts 4 2>&1 | tee "$log/pcfs.log"
	src=${PIPESTATUS[0]}
	count "$log/pcfs.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-fs: ' "$log/pcfs.log"; then fail=$((fail + 1)); echo "not ok - powercut-fs gave no summary"; fi
	suite powercut-fs "$log/pcfs.log" "$src"
fi

if [[ -x tests/powercut-mirror.sh ]]; then
	stage powercut-mirror "power cuts under the one-way mirror"
	bash tests/powercut-mirror.sh 2>&1 | tee "$log/pcmirror.log"
	src=${PIPESTATUS[0]}
	count "$log/pcmirror.log" '^ok - ' '^not ok - '
	if ! grep -q '^powercut-mirror: ' "$log/pcmirror.log"; then fail=$((fail + 1)); echo "not ok - powercut-mirror gave no summary"; fi
	suite powercut-mirror "$log/pcmirror.log" "$src"
fi

stage bench-smoke "benchmark harness smoke test (bench/run.sh --smoke)"
bash bench/run.sh --smoke 2>&1 | tee "$log/bench.log"
src=${PIPESTATUS[0]}
count "$log/bench.log" '^ok - ' '^not ok - '
if ! grep -q '^ok - bench smoke' "$log/bench.log"; then fail=$((fail + 1)); echo "not ok - bench smoke gave no result"; fi
suite bench-smoke "$log/bench.log" "$src"

stage manifest "the run against tests/manifest"
bash scripts/manifest.sh check --scope all "$log/all.log" 2>&1 | tee "$log/manifest.log"
count "$log/manifest.log" '^ok - ' '^not ok - '
if ! grep -qE '^(not )?ok - manifest' "$log/manifest.log"; then fail=$((fail + 1)); echo "not ok - manifest check gave no result"; fi

echo
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
