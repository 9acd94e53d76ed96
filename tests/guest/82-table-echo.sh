#!/usr/bin/env bash
# `dmsetup table` (DESIGN.md §2.1): device arguments as major:minor, and
# `format` no longer echoed once this table has formatted the journal (the
# feature count shrinks; with `format` alone the feature part disappears).
# So `dmsetup table | dmsetup reload` keeps a journal that holds
# acknowledged, not yet destaged writes.  jsnap-view prints the jsnap
# device as major:minor too.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=16
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
P=$(dev_mm "$PROD")
Jm=$(dev_mm "$PMEM")
S=$(dev_mm "$STORE")
note "prod=$P pmem=$Jm store=$S"

# echo_case FEATURES EXPECTED_FEATURE_PART [STORE_ARG]
echo_case() {
	local feat=$1 want=$2 st=${3:-$STORE} stm
	[[ $st == - ]] && stm=- || stm=$(dev_mm "$st")
	# shellcheck disable=SC2086
	if dm_create te "$(jsnap_table $LEN "$PROD" "$PMEM" "$st" "$CHUNK" $feat)" >/dev/null; then
		check_eq "table of '$feat' (store $st)" "0 $LEN jsnap $P $Jm $stm $CHUNK${want:+ $want}" "$(dmsetup table te)"
		dm_remove te || fail "remove ($feat)"
	else
		fail "create with '$feat' (store $st)"
	fi
}
echo_case "format" ""
echo_case "format no_destage" "1 no_destage"
echo_case "no_destage format" "1 no_destage"
echo_case "format high_watermark 80 low_watermark 20" "4 high_watermark 80 low_watermark 20"
echo_case "high_watermark 70 format destage_batch 16" "4 high_watermark 70 destage_batch 16"
echo_case "" "" # (journal already formatted: no format needed)
echo_case "no_destage" "1 no_destage"
echo_case "format" "" -
echo_case "format no_destage" "1 no_destage" -
# a table given with major:minor is echoed the same way
if dm_create te "0 $LEN jsnap $P $Jm $S $CHUNK 2 no_destage format" >/dev/null; then
	check_eq "table given as major:minor" "0 $LEN jsnap $P $Jm $S $CHUNK 1 no_destage" "$(dmsetup table te)"
	dm_remove te
else
	fail "create with major:minor arguments"
fi

# ---- dmsetup table | dmsetup reload keeps un-destaged data ------------------------
head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
dev=$(mk_jsnap te $LEN format no_destage) || { fail "create (format no_destage)"; finish; }
for ((i = 0; i < 40; i++)); do
	n=$((RANDOM % 200 + 1))
	wr1 "$dev" 0 $(((RANDOM * 32768 + RANDOM) % (LEN - n))) $n "$REF" || { fail "write $i"; break; }
done
same "data in the journal" "$dev" "$REF"
pending=$(status_get te pending)
if ((pending > 0)); then ok "journal holds the writes (pending=$pending)"; else fail "journal holds the writes" "pending=$pending"; fi
table=$(dmsetup table te)
note "table: $table"
check_eq "table before reload" "0 $LEN jsnap $P $Jm $S $CHUNK 1 no_destage" "$table"
dmesg_mark
check_cmd "dmsetup table | dmsetup reload" bash -c 'dmsetup table te | dmsetup reload te'
check_cmd "suspend" timeout 60 dmsetup suspend te
check_cmd "resume" timeout 60 dmsetup resume te
same "data after table|reload + suspend/resume" "$dev" "$REF"
# Not formatted: the log says the records were replayed, never "formatted",
# and nothing was destaged.  (`pending` may drop: a record that later writes
# superseded wholly retires once the worker runs after the resume.)
log=$(dmesg_since_mark | grep dm-jsnap)
check_eq "journal not formatted by the reload" "" "$(grep -i 'journal formatted' <<<"$log")"
check_match "journal replayed by the reload" "replayed [0-9]+ journal records" "$log"
check_eq "nothing destaged (no_destage)" 0 "$(status_get te destaged_bytes)"
after=$(status_get te pending)
if ((after > 0 && after <= pending)); then ok "journal still holds the writes (pending $pending -> $after)"; else
	fail "journal still holds the writes" "pending $pending -> $after"
fi
check_eq "table after reload" "$table" "$(dmsetup table te)"
# and once more, through remove and create from the saved table
check_cmd "remove" dm_remove te
dev=$(dm_create te "$table") || fail "re-create from the saved table"
same "data after re-create from the saved table" "$dev" "$REF"

# ---- jsnap-view -----------------------------------------------------------------
check_cmd "snapshot" msg te snapshot
if view=$(dm_create tev "0 $LEN jsnap-view $dev ro"); then
	check_eq "view table" "0 $LEN jsnap-view $(dev_mm "$dev") ro" "$(dmsetup table tev)"
	same "view = snapshot" "$view" "$REF"
	vt=$(dmsetup table tev)
	dm_remove tev
	if view=$(dm_create tev "$vt"); then
		ok "view re-created from its own table"
		same "view (from its table) = snapshot" "$view" "$REF"
		dm_remove tev
	else
		fail "view re-created from its own table" "$vt"
	fi
	for mode in rw mirror; do
		if dm_create tev "0 $LEN jsnap-view $dev $mode" >/dev/null; then
			check_eq "view table ($mode)" "0 $LEN jsnap-view $(dev_mm "$dev") $mode" "$(dmsetup table tev)"
			dm_remove tev
		else
			fail "create $mode view"
		fi
	done
else
	fail "create view"
fi
check_cmd "drop" msg te drop
check_cmd "drain" timeout 120 dmsetup message te 0 drain
same "production after drain" "$PROD" "$REF"
dm_remove te
no_splat_since_start "no kernel splat"
finish
