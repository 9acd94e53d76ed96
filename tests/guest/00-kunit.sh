#!/usr/bin/env bash
# KUnit suites compiled into dm-jsnap.ko run when the runner insmods it.
# Count every test case of the dm_jsnap_* suites from the KTAP in the
# kernel log; a missing suite or any "not ok" fails.
. "$(dirname "$0")/lib.sh"

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
done
finish
