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
keep_re='^(JSNAP_CACHE|JSNAP_VM_ACCEL|JSNAP_VM_VERBOSE|JSNAP_TEST_VERBOSE|PC_WORKDIR)$'
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

# ---- the kinds of stage -------------------------------------------------------
# cargo_stage SUITE TEXT CMD...: a cargo test run, counted from cargo's
# `test result:` lines (passed + failed)
cargo_stage() {
	local s=$1 text=$2 p f src
	shift 2
	stage "$s" "$text"
	"$@" 2>&1 | tee "$log/$s.log"
	src=${PIPESTATUS[0]}
	p=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\1/p' "$log/$s.log" | paste -sd+ | bc)
	f=$(sed -nE 's/^test result: .* ([0-9]+) passed; ([0-9]+) failed.*/\2/p' "$log/$s.log" | paste -sd+ | bc)
	if [[ -z $p ]]; then
		p=0 f=1
		echo "not ok - $s: the tests did not run" | tee -a "$log/$s.log"
	fi
	pass=$((pass + p)) fail=$((fail + f))
	# (a test binary that died after others printed their results)
	if [[ $src != 0 && $f == 0 ]] && ! grep -q '^not ok - ' "$log/$s.log"; then
		echo "not ok - $s: cargo exited $src with no failed test" | tee -a "$log/$s.log"
		fail=$((fail + 1))
	fi
	suite "$s" "$log/$s.log"
}
# build_stage NAME TEXT CMD...: a build, one check; its log is shown if it
# fails
build_stage() {
	local name=$1 text=$2
	shift 2
	stage build "$text"
	if "$@" >"$log/build-$name.log" 2>&1; then
		grep -E '^(warning|error)' "$log/build-$name.log" | sort | uniq -c | head -5
		echo "ok - $name built"
		pass=$((pass + 1))
	else
		tail -n 40 "$log/build-$name.log"
		echo "not ok - $name built"
		fail=$((fail + 1))
		return 1
	fi
}
# run_stage SUITE SUMMARY_RE TEXT CMD...: runs CMD as stage SUITE, counts
# its ok / not ok lines, and fails the stage if no line matches SUMMARY_RE
# (it died before its summary; empty: no summary line expected) or it
# exited non-zero without a `not ok`
run_stage() {
	local s=$1 sum=$2 text=$3 src
	shift 3
	stage "$s" "$text"
	"$@" 2>&1 | tee "$log/$s.log"
	src=${PIPESTATUS[0]}
	count "$log/$s.log" '^ok - ' '^not ok - '
	if [[ -n $sum ]] && ! grep -qE "$sum" "$log/$s.log"; then
		fail=$((fail + 1))
		echo "not ok - $s: no summary (no line matching $sum)" | tee -a "$log/$s.log"
	fi
	suite "$s" "$log/$s.log" "$src"
}

# ---- every stage, in order ------------------------------------------------------
# KIND | SUITE or NAME | SUMMARY_RE (run stages) | TEXT | COMMAND
# kinds: cargo, build, build! (a failure ends the run), run, run+fault
# (needs dm-jsnap-fault.ko: without it, one failure).  Commands are split
# at spaces (no argument has one).
STAGES=(
	"cargo|host-cargo||host tests (cargo test)|cargo test --manifest-path rust/host/Cargo.toml"
	"run|manifest-selftest||host self-test of the harness (manifest and counting)|bash tests/manifest-selftest.sh"
	"run|powercut-host-selftest||host tests (the power-cut writer and oracle)|bash tests/powercut/host-selftest.sh"
	"build!|dm-jsnap.ko||build dm-jsnap.ko|bash scripts/build-module.sh"
	"build|dm-jsnap-fault.ko||build dm-jsnap-fault.ko (fault-injection build for the tests)|bash scripts/build-module.sh --fault"
	"build|jsnapctl||build jsnapctl (tools/jsnapctl, the user-space tool)|bash scripts/build-jsnapctl.sh"
	"cargo|host-cargo-jsnapctl||host tests of jsnapctl (cargo test in tools/jsnapctl)|bash scripts/build-jsnapctl.sh --test"
	"run|guest|^guest: |guest tests (KUnit + integration)|bash tests/run-guest.sh"
	"run|powercut|^powercut: |power-cut tests|bash tests/powercut.sh --scenario journal --chunk 8 --start 16"
	"run|powercut-lw-order|^powercut-lw-order: |the volatile-cache model: dm-log-writes keeps the order of writes when flushes go one at a time|bash tests/powercut/lw-order.sh"
	"run+fault|powercut-log-writes|^powercut: |power cuts with a volatile disk cache (dm-log-writes under production)|bash tests/powercut.sh --scenario journal --log-writes --cuts 5 --chunk 4096"
	"run+fault|powercut-bypass-log-writes|^powercut: |power cuts with the journal bypass for large writes and a volatile disk cache (dm-log-writes under production)|bash tests/powercut.sh --scenario journal --log-writes --cuts 3 --bypass 64"
	"run|powercut-windows|^powercut-windows: |power cuts inside the windows held open by fault injection|bash tests/powercut.sh --scenario windows"
	"run|powercut-snap|^powercut-snap: |power cuts during copy-on-write and hydration|bash tests/powercut.sh --scenario snap --cuts 5"
	"run|powercut-fs|^powercut-fs: |power cuts under ext4 (fsync'd files, e2fsck, the frozen file system's snapshot)|bash tests/powercut.sh --scenario fs --cuts 4"
	"run|powercut-mirror|^powercut-mirror: |power cuts under the one-way mirror|bash tests/powercut.sh --scenario mirror"
	"run+fault|powercut-mirror-log-writes|^powercut-mirror: |power cuts under the one-way mirror with volatile disk caches (dm-log-writes under production and the store)|bash tests/powercut.sh --scenario mirror --log-writes --cuts 3"
	"run|twohost|^twohost: |two hosts over NVMe/TCP (ro and rw jsnap-views exported through nvmet to a second guest)|bash tests/twohost.sh"
	"run|bench-smoke|^ok - bench smoke|benchmark harness smoke test (bench/run.sh --smoke)|bash bench/run.sh --smoke"
)
for row in "${STAGES[@]}"; do
	IFS='|' read -r kind name sum text cmdline <<<"$row"
	read -ra cmd <<<"$cmdline"
	case $kind in
	cargo) cargo_stage "$name" "$text" "${cmd[@]}" ;;
	build | build!)
		if build_stage "$name" "$text" "${cmd[@]}"; then
			# (the fault-injection runs use the module just built, never an
			# older file)
			if [[ $name == dm-jsnap-fault.ko ]]; then
				export JSNAP_FAULT_MODULE=$top/dm-jsnap-fault.ko JSNAP_REQUIRE_FAULT=1
			fi
		elif [[ $kind == build! ]]; then
			echo "$pass passed, $fail failed"
			exit 1
		fi
		;;
	run) run_stage "$name" "$sum" "$text" "${cmd[@]}" ;;
	run+fault)
		if [[ -n ${JSNAP_FAULT_MODULE:-} ]]; then
			run_stage "$name" "$sum" "$text" "${cmd[@]}"
		else
			echo "not ok - $name: not run (it needs dm-jsnap-fault.ko)"
			fail=$((fail + 1))
		fi
		;;
	*) echo "check.sh: unknown stage kind $kind" >&2; exit 2 ;;
	esac
done

stage manifest "the run against tests/manifest"
bash scripts/manifest.sh check --scope all "$log/all.log" 2>&1 | tee "$log/manifest.log"
count "$log/manifest.log" '^ok - ' '^not ok - '
if ! grep -qE '^(not )?ok - manifest' "$log/manifest.log"; then fail=$((fail + 1)); echo "not ok - manifest check gave no result"; fi

echo
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]
