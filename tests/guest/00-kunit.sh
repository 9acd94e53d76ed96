#!/usr/bin/env bash
# KUnit suites compiled into dm-jsnap.ko run when the runner insmods it.
# Count every test case of the dm_jsnap_* suites from the KTAP in the
# kernel log; a missing suite or any "not ok" fails.  The number of cases
# each suite reported must equal the number defined in the source
# (dm_jsnap_logic: the names `for_each_case!` lists in
# rust/logic/kunit_cases.rs, which make both `CASES` and the KUnit suite;
# others: the `#[test]` functions of rust/kunit.rs per
# `#[kunit_tests(SUITE)]`), and every listed case must have run in
# dm_jsnap_logic.
. "$(dirname "$0")/lib.sh"

KUNIT_RS=$JSNAP_TOP/rust/kunit.rs
CASES_RS=$JSNAP_TOP/rust/logic/kunit_cases.rs
# defined SUITE: the number of cases SUITE has in the source
defined() {
	if [[ $1 == dm_jsnap_logic ]]; then
		case_names | wc -l
		return
	fi
	awk -v s="$1" '
		/^[[:space:]]*\/\// { next }
		/#\[kunit_tests\(/ { on = ($0 ~ "#\\[kunit_tests\\(" s "\\)\\]"); next }
		on && /^[[:space:]]*#\[test\]/ { n++ }
		END { print n + 0 }' "$KUNIT_RS"
}
# the names `for_each_case!` lists (rust/logic/kunit_cases.rs)
case_names() {
	awk '/^macro_rules! for_each_case/ { on = 1; next } on && /^}/ { exit }
		on && /^[[:space:]]+[a-z0-9_]+,$/ { v = $1; sub(/,$/, "", v); print v }' "$CASES_RS"
}
reported_logic=

log=$(dmesg)
for suite in dm_jsnap_logic dm_jsnap_kernel; do
	# The suite's block: from its "# Subtest:" line to its summary line.
	block=$(awk -v s="$suite" '
		$0 ~ "# Subtest: " s "$" { on = 1; next }
		on && $0 ~ "^\\[[ 0-9.]+\\] (not )?ok [0-9]+ " s "$" { print "SUITE " $0; exit }
		on { print }' <<<"$log")
	if [[ -z $block ]]; then
		fail "kunit suite $suite" "suite did not run (no KTAP in the kernel log)"
		continue
	fi
	cases=0
	while read -r line; do
		name=${line##* }
		if [[ $line =~ \]\ +ok\ [0-9]+\ ([a-z0-9_]+)$ ]]; then
			ok "kunit $suite.${BASH_REMATCH[1]}"
			[[ $suite == dm_jsnap_logic ]] && reported_logic+="${BASH_REMATCH[1]} "
			cases=$((cases + 1))
		elif [[ $line =~ \]\ +not\ ok\ [0-9]+\ ([a-z0-9_]+) ]]; then
			fail "kunit $suite.${BASH_REMATCH[1]}" "$(grep -B5 "not ok.* $name\$" <<<"$block" | sed 's/^\[[^]]*\] *//' | tr '\n' ' ')"
			cases=$((cases + 1))
		fi
	done < <(grep -E '^\[[ 0-9.]+\] +(not )?ok [0-9]+ ' <<<"$block" | grep -v '^SUITE')
	if grep -q '^SUITE .*not ok' <<<"$block"; then
		fail "kunit suite $suite" "suite reported failure"
	elif [[ $cases == 0 ]]; then
		fail "kunit suite $suite" "no test cases found"
	else
		ok "kunit suite $suite ($cases cases)"
	fi
	check_eq "kunit suite $suite: cases reported = cases defined in the source" "$(defined "$suite")" "$cases"
done
missing=
n_cases=0
for c in $(case_names); do
	n_cases=$((n_cases + 1))
	[[ " $reported_logic" == *" $c "* ]] || missing+="$c "
done
if ((n_cases == 0)); then
	fail "every CASES entry of rust/logic/kunit_cases.rs passed in dm_jsnap_logic" "no CASES found in $CASES_RS"
else
	check_eq "every CASES entry of rust/logic/kunit_cases.rs ($n_cases) passed in dm_jsnap_logic" "" "${missing% }"
fi
finish
