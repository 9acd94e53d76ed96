#!/usr/bin/env bash
# scripts/manifest.sh: what a test run must contain (tests/manifest).
#
#   scripts/manifest.sh observed LOG...
#       print the suites that ran in LOG (the output of `make check`, or of
#       tests/run-guest.sh) with their check counts, in the manifest's
#       format ("SUITE =N"), for a deliberate edit of tests/manifest
#   scripts/manifest.sh check [--scope all|guest|selected] LOG...
#       compare LOG with tests/manifest; prints `ok - manifest: ...` or one
#       `not ok - manifest: ...` line per problem; exits non-zero on any.
#
# Scopes: `all` (scripts/check.sh): every suite of the manifest;
# `guest` (tests/run-guest.sh, full run): every guest/* suite;
# `selected` (tests/run-guest.sh FILTER): only the guest tests the runner
# selected (it says so).  In every scope a guest test file present on disk
# (and selected) but absent from the manifest is a failure, and so is a
# suite that ran but is not in the manifest.
#
# A log is split into suites by the stage headers of scripts/check.sh
# ("==== [suite NAME] ..."); text before any header is the suite "guest".
# Inside "guest", each check line `ok - NN-name: ...` belongs to the suite
# guest/NN-name, the runner's own lines (insmod, rmmod, ...) to
# guest/runner.  "host-cargo" and "host-cargo-*" count cargo's `test
# result:` lines (passed + failed); every other suite counts its `ok - ` /
# `not ok - ` lines.
#
# Also failures, from the log alone: a guest test that exited non-zero
# without a `not ok` line, a guest run without the runner's final
# "# runner: done" line (the VM died), a selected guest test that never ran.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MANIFEST=${MANIFEST_FILE:-$top/tests/manifest}
GUEST_DIR=${MANIFEST_GUEST_DIR:-$top/tests/guest}

# parse LOG...: lines "count SUITE N FAILS", "exit SUITE RC",
# "selected SUITE", "ran SUITE", "done", "header SUITE"
parse() {
	cat "$@" | awk '
	function add(s, bad) { n[s] += 1; f[s] += bad; if (!(s in seen)) { seen[s] = 1; order[++k] = s } }
	function touch(s) { if (!(s in seen)) { seen[s] = 1; order[++k] = s; n[s] += 0 } }
	BEGIN { suite = "guest" }
	/^==== \[suite [^]]+\]/ {
		suite = $0; sub(/^==== \[suite /, "", suite); sub(/\].*/, "", suite)
		print "header " suite; if (suite != "guest") touch(suite); next
	}
	suite ~ /^host-cargo/ && /^test result: / {
		if (match($0, /[0-9]+ passed; [0-9]+ failed/)) {
			split(substr($0, RSTART, RLENGTH), a, " ")
			n[suite] += a[1] + a[3]; f[suite] += a[3]; touch(suite)
		}
		next
	}
	suite == "guest" && /^# runner: tests:/ {
		for (i = 4; i <= NF; i++) print "selected guest/" $i
		next
	}
	suite == "guest" && /^# runner: done/ { print "done"; next }
	suite == "guest" && /^# ---- [0-9]/ { touch("guest/" $3); print "ran guest/" $3; next }
	suite == "guest" && /^# [0-9][0-9][^ ]*: exit [0-9]+ after / {
		s = $2; sub(/:$/, "", s); print "exit guest/" s " " $4; next
	}
	suite == "guest" && /^(not )?ok - manifest: / { next } # (run-guest.sh appends its own check)
	/^(not )?ok - / {
		bad = /^not ok/ ? 1 : 0
		if (suite == "guest") {
			rest = $0; sub(/^(not )?ok - /, "", rest)
			if (match(rest, /^[0-9][0-9][-A-Za-z0-9_.]*:/))
				add("guest/" substr(rest, 1, RLENGTH - 1), bad)
			else
				add("guest/runner", bad)
		} else
			add(suite, bad)
	}
	END { for (i = 1; i <= k; i++) print "count " order[i] " " n[order[i]] " " f[order[i]] }'
}

# manifest: lines "SUITE OP N" (OP = or >=) from tests/manifest
manifest() {
	sed -E 's/#.*//' "$MANIFEST" | awk 'NF >= 2 {
		op = $2; sub(/[0-9]+$/, "", op); num = $2; sub(/^[^0-9]*/, "", num)
		if (op == "") op = "="
		print $1, op, num }'
}

cmd=${1:-}
shift || true
case $cmd in
observed)
	[[ $# -ge 1 ]] || { echo "usage: $0 observed LOG..." >&2; exit 2; }
	parse "$@" | awk '$1 == "count" { printf "%-28s =%d\n", $2, $3 }'
	exit 0
	;;
check) ;;
*)
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac

scope=all
if [[ ${1:-} == --scope ]]; then scope=${2:?}; shift 2; fi
[[ $scope =~ ^(all|guest|selected)$ ]] || { echo "manifest: unknown scope $scope" >&2; exit 2; }
[[ $# -ge 1 ]] || { echo "usage: $0 check [--scope S] LOG..." >&2; exit 2; }
[[ -f $MANIFEST ]] || { echo "not ok - manifest: $MANIFEST missing"; exit 1; }

p=$(parse "$@")
declare -A cnt=() bad=() rc=() sel=() ran=() inman=()
while read -r kind a b c; do
	case $kind in
	count) cnt[$a]=$b bad[$a]=$c ;;
	exit) rc[$a]=$b ;;
	selected) sel[$a]=1 ;;
	ran) ran[$a]=1 ;;
	esac
done <<<"$p"
guest_done=0
grep -qx done <<<"$p" && guest_done=1

problems=0
problem() { echo "not ok - manifest: $*"; problems=$((problems + 1)); }
checked=0 skipped=0

# in scope?  (selected: only the guest tests the runner selected, plus
# the runner itself)
in_scope() {
	case $scope in
	all) return 0 ;;
	guest) [[ $1 == guest/* ]] ;;
	selected) [[ $1 == guest/runner || -n ${sel[$1]:-} ]] ;;
	esac
}

while read -r suite op num; do
	inman[$suite]=1
	if ! in_scope "$suite"; then skipped=$((skipped + 1)); continue; fi
	checked=$((checked + 1))
	n=${cnt[$suite]:-}
	if [[ -z $n ]]; then
		problem "$suite ran -- missing from the log (expected $op$num checks)"
	elif [[ $op == "=" && $n != "$num" ]]; then
		problem "$suite check count -- $n checks, the manifest says exactly $num"
	elif [[ $op == ">=" ]] && ((n < num)); then
		problem "$suite check count -- $n checks, the manifest says at least $num"
	fi
done < <(manifest)

# suites that ran but are not in the manifest
for s in "${!cnt[@]}"; do
	[[ -n ${inman[$s]:-} ]] || problem "$s is in the manifest -- it ran ($((cnt[$s])) checks) but tests/manifest has no line for it"
done
# guest test files on disk (selected ones, in a selected run)
for t in "$GUEST_DIR"/[0-9]*.sh; do
	[[ -e $t ]] || continue
	s=guest/$(basename "$t" .sh)
	[[ $scope == selected && -z ${sel[$s]:-} ]] && continue
	[[ -n ${inman[$s]:-} ]] || problem "$s is in the manifest -- $t exists but tests/manifest has no line for it"
done
# a test that failed without saying so
for s in "${!rc[@]}"; do
	if [[ ${rc[$s]} != 0 && ${bad[$s]:-0} == 0 ]]; then
		problem "$s exit status -- exited ${rc[$s]} without a 'not ok' line"
	fi
done
# the guest run finished (the runner's last line), and ran what it selected
if [[ $scope != all || -n ${cnt[guest/runner]:-} || ${#sel[@]} -gt 0 ]]; then
	((guest_done)) || problem "guest runner finished -- no '# runner: done' line (the VM or the runner died)"
	for s in "${!sel[@]}"; do
		[[ -n ${ran[$s]:-} ]] || problem "$s ran -- selected but never started"
	done
fi

if [[ $scope == selected ]]; then
	echo "# manifest: subset run: checked $checked suites, $skipped not selected (not checked)"
fi
if ((problems == 0)); then
	echo "ok - manifest: $checked suites ran with the expected check counts"
	exit 0
fi
exit 1
