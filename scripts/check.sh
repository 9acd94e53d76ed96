#!/usr/bin/env bash
# `make check`: every test, from nothing.
#
#   1. set-up (idempotent; builds and caches the kernel on first use)
#   2. host `cargo test` of the pure logic (rust/host)
#   3. build dm-jsnap.ko (and the fault-injection build), build jsnapctl
#      (tools/jsnapctl) and run its host unit tests (cargo test)
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

stage build "build jsnapctl (tools/jsnapctl, the user-space tool)"
if bash scripts/build-jsnapctl.sh >"$log/build-jsnapctl.log" 2>&1; then
	echo "ok - jsnapctl built"
	pass=$((pass + 1))
else
	tail -n 40 "$log/build-jsnapctl.log"
	echo "not ok - jsnapctl built"
	fail=$((fail + 1))
fi

# (counted as host-cargo is: cargo's `test result:` lines)
stage host-cargo-jsnapctl "host tests of jsnapctl (cargo test in tools/jsnapctl)"
bash scripts/build-jsnapctl.sh --test 2>&1 | tee "$log/host-jsnapctl.log"
j_pass=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\1/p' "$log/host-jsnapctl.log" | paste -sd+ | bc)
j_fail=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\2/p' "$log/host-jsnapctl.log" | paste -sd+ | bc)
if [[ -z $j_pass ]]; then
	j_pass=0 j_fail=1
	echo "not ok - jsnapctl host tests did not run" | tee -a "$log/host-jsnapctl.log"
fi
pass=$((pass + j_pass)) fail=$((fail + j_fail))
suite host-cargo-jsnapctl "$log/host-jsnapctl.log"

# run_stage SUITE SUMMARY_RE TEXT CMD...: runs CMD as stage SUITE, counts
# its ok / not ok lines, and fails the stage if no line matches SUMMARY_RE
# (it died before its summary) or it exited non-zero without a `not ok`
run_stage() {
	local s=$1 sum=$2 text=$3 src
	shift 3
	stage "$s" "$text"
	"$@" 2>&1 | tee "$log/$s.log"
	src=${PIPESTATUS[0]}
	count "$log/$s.log" '^ok - ' '^not ok - '
	if ! grep -qE "$sum" "$log/$s.log"; then
		fail=$((fail + 1))
		echo "not ok - $s: no summary (no line matching $sum)" | tee -a "$log/$s.log"
	fi
	suite "$s" "$log/$s.log" "$src"
}

run_stage guest '^guest: ' "guest tests (KUnit + integration)" \
	bash tests/run-guest.sh
run_stage powercut '^powercut: ' "power-cut tests" \
	bash tests/powercut.sh --chunk 8 --start 16
if [[ -n ${JSNAP_FAULT_MODULE:-} ]]; then
	run_stage powercut-log-writes '^powercut: ' \
		"power cuts with a volatile disk cache (dm-log-writes under production)" \
		bash tests/powercut.sh --log-writes --cuts 5 --chunk 4096
else
	echo "not ok - powercut-log-writes: not run (it needs dm-jsnap-fault.ko)"
	fail=$((fail + 1))
fi
run_stage powercut-windows '^powercut-windows: ' \
	"power cuts inside the windows held open by fault injection" \
	bash tests/powercut-windows.sh
run_stage powercut-snap '^powercut-snap: ' "power cuts during copy-on-write and hydration" \
	bash tests/powercut-snap.sh --cuts 5
run_stage powercut-fs '^powercut-fs: ' \
	"power cuts under ext4 (fsync'd files, e2fsck, the frozen file system's snapshot)" \
	bash tests/powercut-fs.sh --cuts 4
run_stage powercut-mirror '^powercut-mirror: ' "power cuts under the one-way mirror" \
	bash tests/powercut-mirror.sh
run_stage bench-smoke '^ok - bench smoke' "benchmark harness smoke test (bench/run.sh --smoke)" \
	bash bench/run.sh --smoke

stage manifest "the run against tests/manifest"
bash scripts/manifest.sh check --scope all "$log/all.log" 2>&1 | tee "$log/manifest.log"
count "$log/manifest.log" '^ok - ' '^not ok - '
if ! grep -qE '^(not )?ok - manifest' "$log/manifest.log"; then fail=$((fail + 1)); echo "not ok - manifest check gave no result"; fi

echo
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
