#!/usr/bin/env bash
# Host self-test of the harness (no VM): scripts/manifest.sh and the
# environment scrubbing of scripts/check.sh are fed synthetic logs and
# environments; each way a run could hide a failure must become one.
# One `ok - manifest selftest: ...` / `not ok - ...` line per case.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
w=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-manifest-selftest.XXXXXX")
trap 'rm -rf "$w"' EXIT
M=$top/scripts/manifest.sh
nfail=0
ok() { echo "ok - manifest selftest: $1"; }
notok() { echo "not ok - manifest selftest: $1${2:+ -- $2}"; nfail=$((nfail + 1)); }

mkdir -p "$w/guest"
touch "$w/guest/10-a.sh" "$w/guest/20-b.sh"
cat >"$w/manifest" <<'M'
host-cargo    >=3   # a minimum
guest/runner  =3
guest/10-a    =2
guest/20-b    >=2
powercut      >=1
M
export MANIFEST_FILE=$w/manifest MANIFEST_GUEST_DIR=$w/guest

# a complete, passing run in the layout of scripts/check.sh
good() {
	cat <<'L'
==== [suite host-cargo] host tests (cargo test) (10:00:00)
test result: ok. 2 passed; 0 failed; 0 ignored
test result: ok. 1 passed; 0 failed; 0 ignored
==== [suite guest] guest tests (10:00:01)
# runner: tests: 10-a 20-b
ok - insmod dm-jsnap.ko
ok - target jsnap registered
# ---- 10-a
ok - 10-a: one
ok - 10-a: two
# 10-a: exit 0 after 1 s
# ---- 20-b
ok - 20-b: one
ok - 20-b: two
ok - 20-b: three
# 20-b: exit 0 after 1 s
ok - rmmod dm_jsnap
# runner: done (2 tests, exit 0)
guest: 8 passed, 0 failed
==== [suite powercut] power-cut tests (10:00:02)
ok - powercut boot0: no kernel splat in the console log
powercut: 1 passed, 0 failed
L
}
# expect_fail NAME REGEX LOG [ARGS...]: the check must fail with a
# `not ok - manifest:` line matching REGEX
expect_fail() {
	local name=$1 re=$2 log=$3 out rc=0
	shift 3
	out=$(bash "$M" check "$@" "$log" 2>&1) || rc=$?
	if [[ $rc != 0 ]] && grep -qE "^not ok - manifest: .*$re" <<<"$out"; then ok "$name"; else
		notok "$name" "exit $rc, output: $(tr '\n' '|' <<<"$out")"
	fi
}
expect_pass() {
	local name=$1 log=$2 out rc=0
	shift 2
	out=$(bash "$M" check "$@" "$log" 2>&1) || rc=$?
	if [[ $rc == 0 ]] && grep -q '^ok - manifest: ' <<<"$out" && ! grep -q '^not ok' <<<"$out"; then ok "$name"; else
		notok "$name" "exit $rc, output: $(tr '\n' '|' <<<"$out")"
	fi
}

good >"$w/good.log"
expect_pass "a complete run passes" "$w/good.log"

good | grep -v '^ok - powercut' | sed '/suite powercut/d' >"$w/missing.log"
expect_fail "a missing suite fails" 'powercut ran -- missing' "$w/missing.log"

good | sed '/^ok - 10-a: two/d' >"$w/short.log"
expect_fail "a suite with fewer checks than its exact count fails" 'guest/10-a check count -- 1 checks' "$w/short.log"

good | sed '/^ok - 20-b: t/d' >"$w/short-min.log"
expect_fail "a suite below its minimum fails" 'guest/20-b check count -- 1 checks, the manifest says at least 2' "$w/short-min.log"

good | sed 's/^# 20-b: exit 0 after/# 20-b: exit 3 after/' >"$w/exit.log"
expect_fail "a test exiting non-zero without 'not ok' fails" 'guest/20-b exit status -- exited 3' "$w/exit.log"

good | sed '/^ok - 20-b/,$d' >"$w/died.log"
expect_fail "a guest that died (no final runner line) fails" "no '# runner: done' line" "$w/died.log"

touch "$w/guest/30-new.sh"
expect_fail "a test file on disk without a manifest line fails" 'guest/30-new is in the manifest -- .*30-new.sh exists' "$w/good.log"
rm -f "$w/guest/30-new.sh"

good | sed 's/^ok - 20-b: one/&\nok - 25-extra: x/' >"$w/extra.log"
expect_fail "a suite that ran but is not in the manifest fails" 'guest/25-extra is in the manifest -- it ran' "$w/extra.log"

good | sed 's/^test result: ok. 2 passed; 0 failed/test result: ok. 1 passed; 0 failed/' >"$w/cargo.log"
expect_fail "fewer host cargo tests than the manifest's minimum fails" 'host-cargo check count -- 2 checks' "$w/cargo.log"

# a host-cargo-* suite (jsnapctl's cargo test) counts cargo's result lines too
{ cat "$w/manifest"; echo "host-cargo-x  =3"; } >"$w/manifest-x"
{ good; printf '%s\n' "==== [suite host-cargo-x] host tests of x" "running 3 tests" \
	"test result: ok. 3 passed; 0 failed; 0 ignored"; } >"$w/cargo-x.log"
MANIFEST_FILE=$w/manifest-x expect_pass "a host-cargo-* suite is counted from cargo's result lines" "$w/cargo-x.log"
sed 's/^test result: ok. 3 passed; 0 failed/test result: FAILED. 1 passed; 1 failed/' "$w/cargo-x.log" >"$w/cargo-x-short.log"
MANIFEST_FILE=$w/manifest-x expect_fail "a host-cargo-* suite with fewer tests fails" \
	'host-cargo-x check count -- 2 checks, the manifest says exactly 3' "$w/cargo-x-short.log"

# a subset run (tests/run-guest.sh FILTER): only what was selected counts,
# and it says so; but a selected test that never started fails
good | sed -n '/suite guest/,/^guest:/p' | sed 's/^# runner: tests: .*/# runner: tests: 10-a/; /20-b/d' >"$w/subset.log"
out=$(bash "$M" check --scope selected "$w/subset.log" 2>&1)
if [[ $? == 0 ]] && grep -q '^# manifest: subset run: checked 2 suites, 3 not selected' <<<"$out"; then
	ok "a subset run checks only the selected tests and says so"
else
	notok "a subset run checks only the selected tests and says so" "$(tr '\n' '|' <<<"$out")"
fi
sed 's/^# runner: tests: 10-a/# runner: tests: 10-a 20-b/' "$w/subset.log" >"$w/subset-lost.log"
expect_fail "a selected test that never started fails" 'guest/20-b ran -- missing' "$w/subset-lost.log" --scope selected

# `observed` prints the manifest format: its output as the manifest passes
bash "$M" observed "$w/good.log" >"$w/observed"
MANIFEST_FILE=$w/observed expect_pass "observed counts, used as the manifest, pass the same run" "$w/good.log"

# scripts/check.sh drops the caller's test knobs (its scrubbing block)
scrub=$(sed -n '/^keep_re=/,/^export JSNAP_MANIFEST_CHECK/p' "$top/scripts/check.sh")
out=$(env JSNAP_TEST_FILTER=10 JSNAP_TEST_TIMEOUT=5 JSNAP_FAULT_MODULE=/x.ko JSNAP_MODULE=/y.ko PC_VM_TIMEOUT=1 \
	JSNAP_STRESS_SECS=1 FAULT_CASES=1 CHUNK=8 JSNAP_CACHE=/keep bash -c "$scrub"'
	echo "left: ${JSNAP_TEST_FILTER-}${JSNAP_TEST_TIMEOUT-}${JSNAP_FAULT_MODULE-}${JSNAP_MODULE-}${PC_VM_TIMEOUT-}${JSNAP_STRESS_SECS-}${FAULT_CASES-}${CHUNK-} cache=$JSNAP_CACHE"' 2>&1)
if [[ -n $scrub ]] && grep -qx 'left:  cache=/keep' <<<"$out" && grep -q "ignoring the caller's JSNAP_TEST_FILTER=10" <<<"$out"; then
	ok "check.sh drops the caller's filter, timeout, module and cut knobs (and says so)"
else
	notok "check.sh drops the caller's filter, timeout, module and cut knobs (and says so)" "$(tr '\n' '|' <<<"$out")"
fi
[[ $nfail == 0 ]]
