#!/usr/bin/env bash
# 20-bad-table: malformed or inconsistent table lines are refused, with a
# reason in the kernel log, no splat, and nothing written to any device.
#
# To keep checksumming cheap under TCG the target is built over small
# dm-linear slices of the test disks: production = first 16 MiB of prod,
# store = first 16 MiB of store, a too-small store = the next 8 MiB of store.
# Checksums cover those slices, the first 16 MiB of pmem and of the spare.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

SL=32768 # 16 MiB in sectors
dm_create bt_p "0 $SL linear $PROD 0" >/dev/null || { fail "setup linear bt_p"; finish; }
dm_create bt_s "0 $SL linear $STORE 0" >/dev/null || { fail "setup linear bt_s"; finish; }
dm_create bt_ss "0 $((SL / 2)) linear $STORE $SL" >/dev/null || { fail "setup linear bt_ss"; finish; }
P=/dev/mapper/bt_p
S=/dev/mapper/bt_s
SS=/dev/mapper/bt_ss
J=$PMEM
C=$CHUNK

sums() {
	echo "prod=$(dev_sum $P 64) store=$(dev_sum "$STORE" 24) pmem=$(dev_sum "$J" 16) spare=$(dev_sum "$SPARE" 16)"
}

# A valid baseline: the journal is formatted for (bt_p, len SL, chunk C).
dmesg_mark
if dm_create bt "0 $SL jsnap $P $J $S $C 1 format" >/dev/null; then
	ok "baseline: valid table with 1 format accepted"
	check_cmd "baseline: remove" dm_remove bt
else
	fail "baseline: valid table with 1 format accepted" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
fi
before=$(sums)

# refuse NAME TABLE: dmsetup create must fail, log "jsnap: <reason>",
# leave no device, no splat, no change to any device.
refuse() {
	local name=$1 table=$2 out rc=0 reason after
	dmesg_mark
	out=$(dmsetup create bt --table "$table" 2>&1) || rc=$?
	if [[ $rc != 0 ]]; then ok "$name: refused"; else
		fail "$name: refused" "table accepted: $table"
		dm_remove bt >/dev/null 2>&1 || dmsetup remove --force bt >/dev/null 2>&1
	fi
	reason=$(dmesg_since_mark | grep -E 'jsnap: *[^ ]' | head -n 1 || true)
	if [[ -n $reason ]]; then ok "$name: reason logged (${reason#*] })"; else
		fail "$name: reason logged" "no 'jsnap: <reason>' line in the kernel log"
		dmesg_since_mark | tail -n 5 | sed 's/^/#   /'
	fi
	if dmsetup info bt >/dev/null 2>&1; then
		fail "$name: no device left" "bt still exists"
		dmsetup remove --force bt >/dev/null 2>&1
	else ok "$name: no device left"; fi
	after=$(sums)
	if [[ $after == "$before" ]]; then ok "$name: devices unchanged"; else
		fail "$name: devices unchanged" "before: $before after: $after"
		before=$after
	fi
	no_splat_since_mark "$name: no splat"
	: "$out"
}

refuse "no arguments" "0 $SL jsnap"
refuse "1 argument" "0 $SL jsnap $P"
refuse "2 arguments" "0 $SL jsnap $P $J"
refuse "3 arguments (no chunk)" "0 $SL jsnap $P $J $S"
refuse "chunk 0" "0 $SL jsnap $P $J $S 0"
refuse "chunk 7" "0 $SL jsnap $P $J $S 7"
refuse "chunk 12" "0 $SL jsnap $P $J $S 12"
refuse "chunk abc" "0 $SL jsnap $P $J $S abc"
refuse "chunk -8" "0 $SL jsnap $P $J $S -8"
refuse "chunk 8x" "0 $SL jsnap $P $J $S 8x"
refuse "chunk 4 (too small)" "0 $SL jsnap $P $J $S 4"
refuse "chunk 2^40" "0 $SL jsnap $P $J $S 1099511627776"
refuse "feature count 2 with 1 feature" "0 $SL jsnap $P $J $S $C 2 format"
refuse "feature count abc" "0 $SL jsnap $P $J $S $C abc format"
refuse "feature count 0 with extra arg" "0 $SL jsnap $P $J $S $C 0 format"
refuse "unknown feature" "0 $SL jsnap $P $J $S $C 1 bogus"
refuse "duplicate feature" "0 $SL jsnap $P $J $S $C 2 format format"
refuse "high_watermark without value" "0 $SL jsnap $P $J $S $C 1 high_watermark"
refuse "high_watermark 0" "0 $SL jsnap $P $J $S $C 2 high_watermark 0"
refuse "high_watermark 101" "0 $SL jsnap $P $J $S $C 2 high_watermark 101"
refuse "high_watermark abc" "0 $SL jsnap $P $J $S $C 2 high_watermark abc"
refuse "low_watermark 100" "0 $SL jsnap $P $J $S $C 2 low_watermark 100"
refuse "low_watermark -1" "0 $SL jsnap $P $J $S $C 2 low_watermark -1"
refuse "low == high" "0 $SL jsnap $P $J $S $C 4 high_watermark 50 low_watermark 50"
refuse "low > high" "0 $SL jsnap $P $J $S $C 4 low_watermark 70 high_watermark 50"
refuse "destage_batch 0" "0 $SL jsnap $P $J $S $C 2 destage_batch 0"
refuse "destage_batch 4097" "0 $SL jsnap $P $J $S $C 2 destage_batch 4097"
refuse "hydrate_batch 0" "0 $SL jsnap $P $J $S $C 2 hydrate_batch 0"
refuse "hydrate_batch 1025" "0 $SL jsnap $P $J $S $C 2 hydrate_batch 1025"
refuse "duplicate watermark" "0 $SL jsnap $P $J $S $C 4 high_watermark 80 high_watermark 90"
# The following carry `format`: a refused table must not format anything.
refuse "nonexistent production" "0 $SL jsnap /dev/nonexistent $J $S $C 1 format"
refuse "nonexistent journal" "0 $SL jsnap $P /dev/nonexistent $S $C 1 format"
refuse "nonexistent store" "0 $SL jsnap $P $J /dev/nonexistent $C 1 format"
refuse "production smaller than len" "0 $((SL + C)) jsnap $P $J $S $C 1 format"
refuse "store smaller than len" "0 $SL jsnap $P $J $SS $C 1 format"
refuse "non-DAX journal (spare disk)" "0 $SL jsnap $P $SPARE $S $C 1 format"
refuse "production == journal" "0 $SL jsnap $J $J $S $C 1 format"
refuse "production == store" "0 $SL jsnap $P $J $P $C 1 format"
refuse "journal == store" "0 $SL jsnap $P $J $J $C 1 format"
# Journal formatted for (bt_p, SL, C): other geometry without format.
refuse "journal formatted for another length" "0 $((SL / 2)) jsnap $P $J $S $C"
refuse "journal formatted for another chunk size" "0 $SL jsnap $P $J $S $((C * 2))"

# Foreign journal: random bytes in the superblock area.
dd if=/dev/urandom of="$J" bs=4096 count=2 oflag=direct status=none
before=$(sums)
refuse "foreign journal without format" "0 $SL jsnap $P $J $S $C"
dmesg_mark
if dm_create bt "0 $SL jsnap $P $J $S $C 1 format" >/dev/null; then
	ok "foreign journal with 1 format accepted"
	check_cmd "foreign journal: remove" dm_remove bt
else
	fail "foreign journal with 1 format accepted" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
fi
# A zeroed superblock area is formatted without asking.
zero_journal_sb
dmesg_mark
if dm_create bt "0 $SL jsnap $P $J $S $C" >/dev/null; then
	ok "zeroed journal accepted without format"
	check_cmd "zeroed journal: remove" dm_remove bt
else
	fail "zeroed journal accepted without format" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
fi

for d in bt_ss bt_s bt_p; do dm_remove "$d" >/dev/null 2>&1 || fail "remove $d"; done
no_splat_since_start "no kernel splat"
finish
