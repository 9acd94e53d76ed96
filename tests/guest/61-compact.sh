#!/usr/bin/env bash
# Compaction of the journal tail (feature `compact <0..90>`, default 50):
# with no snapshot, when at most that share of the oldest records is still
# live, destage copies their live pieces to the head of the journal instead
# of writing them to production.  On a 4 MiB journal (a dm-linear slice of
# the pmem), a writer overwrites a 512 KiB hot region many times over:
#   - default table: the journal compacts (`compacted_bytes` > 0); a cold
#     4 KiB block written once before the hot writes is copied at most
#     twice and then destaged (production holds it), and destage writes
#     less than a quarter of what it writes with `compact 0`; the volume
#     reads the model;
#     a reload replays the compacted journal to the same content; `drain`
#     then writes it all to production (exact), and the journal empties;
#   - `compact 0`: no compaction, destage writes production, same content;
#   - a snapshot: no compaction while it exists; the view reads the
#     snapshot's content, the volume the model;
#   - bad values are refused and leave the journal as it was;
#   - geometry: chunk 8 with the jsnap target at table start 2056, chunk
#     4096 at start 24 with a partial last chunk: compaction, the volume,
#     the zero prefix, the cold block on production, a reload, `drain`;
#   - fault build: the first copy is held after it is durable and before
#     the table switches to it (fault_flip_stage=5) while newer 4 KiB
#     writes cover every block of the hot region: the newer data wins (the
#     switch leaves newer extents alone), also after a reload, and on
#     production after `drain`.
. "$(dirname "$0")/lib.sh"

NAME=j61
VNAME=v61
MIB=16
LEN=$((MIB * 2048))
HOT=1024       # hot region: 512 KiB at sector 0
COLD=8192      # a cold 4 KiB block
WRITES=${COMPACT_WRITES:-3000}
ORIG=$SCRATCH/orig
MODEL=$SCRATCH/model
SNAP=$SCRATCH/snap
HOTW=$JSNAP_TOP/tests/guest/hotwrite.py

cleanup_dm
# 4 MiB of pmem at 176 MiB (away from the superblock area and test 45's slice)
journal() {
	J=$(dm_create j61j "0 8192 linear $PMEM $((176 * 2048))") || { fail "journal slice" "dm_create"; return 1; }
	dd if=/dev/zero of="$J" bs=1M count=1 oflag=direct status=none
}
fresh() {
	dd if=/dev/urandom of="$PROD" bs=1M count=$MIB oflag=direct status=none
	dd if="$PROD" of="$ORIG" bs=1M count=$MIB iflag=direct status=none
	cp "$ORIG" "$MODEL"
}
# hot SEED [COUNT [MAX_BLOCKS]]: overwrite the hot region (the model gets
# the same); MAX_BLOCKS 0: every 4 KiB block once, in order
hot() {
	python3 "$HOTW" "$DEV" "$MODEL" 0 $HOT "${2:-$WRITES}" "$1" "${3:-4}" || fail "hot writes (seed $1)" "hotwrite.py"
}
st() { status_get $NAME "$1"; }
table() { jsnap_table $LEN "$PROD" "$J" "$STORE" "$CHUNK" "$@"; }
# recreate: remove the volume and create it again without format (replay)
recreate() {
	dmsetup remove $NAME || fail "remove $NAME" "dmsetup"
	DEV=$(dm_create $NAME "$(table "$@")") || fail "create $NAME again (replay)" "dm_create"
}

# ---- refused values: nothing changes ----------------------------------------
journal || finish
fresh
for v in 91 -1 50% x; do
	check_fails "compact $v is refused" dmsetup create j61bad --table "$(table format compact "$v")"
done
check_fails "compact without a value is refused" dmsetup create j61bad --table "$(table format compact)"
check_eq "refused: the journal is still blank" \
	"$(head -c 8192 /dev/zero | sha256sum)" "$(dd if="$J" bs=4096 count=2 iflag=direct status=none | sha256sum)"

# ---- default table ----------------------------------------------------------
DEV=$(dm_create $NAME "$(table format)") || { fail "create" "dm_create"; finish; }
check_eq "nothing compacted yet" 0 "$(st compacted_bytes)"
wr1 "$DEV" 0 $COLD 8 "$MODEL" || fail "write the cold block" "dd"
hot 61
compacted=$(st compacted_bytes) destaged=$(st destaged_bytes) written=$(st written_bytes)
destaged_default=$destaged
note "default: written=$written compacted=$compacted destaged=$destaged journal_used=$(st journal_used)"
if ((written > 4 * 4194304 && compacted > 0)); then
	ok "the journal was compacted (written=$written compacted=$compacted)"
else
	fail "the journal was compacted" "written=$written compacted=$compacted"
fi
check_eq "errors=0" 0 "$(st errors)"
same "the volume reads the model" "$DEV" "$MODEL"
same_at "the cold block was destaged after its copies: production holds it" "$PROD" $COLD "$MODEL" $COLD 8
same_at "production outside the hot region and the cold block: unchanged" "$PROD" $HOT "$ORIG" $HOT $((COLD - HOT))
recreate
same "after a reload (replay of the compacted journal): the model" "$DEV" "$MODEL"
hot 62 500
same "more writes after the reload: the model" "$DEV" "$MODEL"
check_cmd "drain" msg $NAME drain
check_eq "drained: pending=0" 0 "$(st pending)"
same "drained: production holds the model" "$PROD" "$MODEL"
same "drained: the volume reads the model" "$DEV" "$MODEL"
dmsetup remove $NAME

# ---- compact 0: destage as before -------------------------------------------
fresh
DEV=$(dm_create $NAME "$(table format compact 0)") || { fail "create compact 0" "dm_create"; finish; }
check_match "table echoes compact 0" "2 compact 0\$" "$(dmsetup table $NAME)"
wr1 "$DEV" 0 $COLD 8 "$MODEL" || fail "compact 0: write the cold block" "dd"
hot 61
check_eq "compact 0: nothing compacted" 0 "$(st compacted_bytes)"
destaged=$(st destaged_bytes)
if ((destaged > 0 && destaged_default * 4 < destaged)); then
	ok "compact 0: destage wrote production, over 4x what it wrote with compaction ($destaged against $destaged_default bytes)"
else
	fail "compact 0: destage wrote over 4x what it wrote with compaction" "destaged_bytes=$destaged, with compaction $destaged_default"
fi
same "compact 0: the volume reads the model" "$DEV" "$MODEL"
check_cmd "compact 0: drain" msg $NAME drain
same "compact 0: production holds the model" "$PROD" "$MODEL"
dmsetup remove $NAME

# ---- a snapshot: no compaction while it exists --------------------------------
fresh
DEV=$(dm_create $NAME "$(table format)") || { fail "create (snapshot)" "dm_create"; finish; }
dd if=/dev/zero of="$STORE" bs=1M count=$MIB oflag=direct status=none
hot 64 500
cp "$MODEL" "$SNAP"
check_cmd "snapshot" msg $NAME snapshot
c0=$(st compacted_bytes)
hot 65
check_eq "with a snapshot: nothing more compacted" "$c0" "$(st compacted_bytes)"
VDEV=$(dm_create $VNAME "0 $LEN jsnap-view $DEV ro") || fail "view" "create"
same "the view reads the snapshot" "$VDEV" "$SNAP"
same "the volume reads the model" "$DEV" "$MODEL"
dmsetup remove $VNAME
check_cmd "drop" msg $NAME drop
c1=$(st compacted_bytes)
hot 66
c2=$(st compacted_bytes)
if ((c2 > c1)); then ok "after drop: compaction again ($c1 -> $c2)"; else
	fail "after drop: compaction again" "compacted_bytes $c1 -> $c2"
fi
same "after drop: the volume reads the model" "$DEV" "$MODEL"
check_cmd "drain after drop" msg $NAME drain
same "after drop and drain: production holds the model" "$PROD" "$MODEL"
cleanup_dm

# ---- geometry: chunk 8 and 4096, the jsnap target behind a zero target -------
# Compaction works on sectors and ring positions; chunks enter only through
# the changed-block interval.  Each case: the jsnap target at table start JO
# (a zero target before it), length L (chunk 4096: a partial last chunk),
# the cold block and the hot writes through the table; the volume, a reload,
# and production after `drain` against the model.
geom() {
	local C=$1 JO=$2 L=$3 P="chunk $1, jsnap at table start $2, length $3"
	local DM=$SCRATCH/dmodel
	journal || finish
	fresh
	{ head -c $((JO * 512)) /dev/zero; head -c $((L * 512)) "$MODEL"; } >"$DM"
	local line="$JO $L jsnap $PROD $J $STORE $C 1 format"
	DEV=$(dm_create_lines $NAME "0 $JO zero" "$line") || { fail "$P: create" "dm_create_lines"; return; }
	check_eq "$P: size" $((JO + L)) "$(dev_sectors "$DEV")"
	wr1 "$DEV" 0 $((JO + COLD)) 8 "$DM" || fail "$P: the cold block" "dd"
	python3 "$HOTW" "$DEV" "$DM" $JO $HOT "$WRITES" 91 4 || fail "$P: hot writes" "hotwrite.py"
	# the last sectors of the volume (a partial chunk for chunk 4096)
	wr1 "$DEV" 0 $((JO + L - 8)) 8 "$DM" || fail "$P: the last block" "dd"
	local c
	c=$(st compacted_bytes)
	if ((c > 0)); then ok "$P: the journal was compacted ($c bytes)"; else
		fail "$P: the journal was compacted" "compacted_bytes=$c"
	fi
	check_eq "$P: errors=0" 0 "$(st errors)"
	same_at "$P: the volume reads the model" "$DEV" $JO "$DM" $JO $L
	same_at "$P: the zero prefix reads zero" "$DEV" 0 /dev/zero 0 $JO
	same_at "$P: the cold block reached production after its copies" "$PROD" $COLD "$DM" $((JO + COLD)) 8
	dmsetup remove $NAME || fail "$P: remove" "dmsetup"
	line="$JO $L jsnap $PROD $J $STORE $C"
	DEV=$(dm_create_lines $NAME "0 $JO zero" "$line") || { fail "$P: create again (replay)" "dm_create_lines"; return; }
	same_at "$P: after a reload: the model" "$DEV" $JO "$DM" $JO $L
	python3 "$HOTW" "$DEV" "$DM" $JO $HOT 500 92 4 || fail "$P: hot writes after the reload" "hotwrite.py"
	check_cmd "$P: drain" dmsetup message $NAME $JO drain
	check_eq "$P: drained: pending=0" 0 "$(st pending)"
	same_at "$P: drained: production holds the model" "$PROD" 0 "$DM" $JO $L
	same_at "$P: drained: the volume reads the model" "$DEV" $JO "$DM" $JO $L
	dmsetup remove $NAME
	cleanup_dm
}
geom 8 2056 $LEN
geom 4096 24 $((LEN - 8))

# ---- fault build: a newer write inside the window of the first copy ---------
if [[ -n ${JSNAP_FAULT_MODULE:-} && -f ${JSNAP_FAULT_MODULE:-} ]]; then
	HOLD=${FAULT_HOLD_MS:-8000}
	load_module "$JSNAP_FAULT_MODULE" fault_flip_stage=5 fault_flip_ms=$HOLD || finish
	journal || finish
	fresh
	# `high_watermark 28`: the ring bound is 50% (compact::ring_high) while
	# the hot region (12.5% live) stays below 28%, so the worker reclaims
	# the ring while some hot records at the tail are still live and copies
	# them (with the default 50 it waits for 90%, and by then every hot
	# record at the tail is dead and retires without a copy).
	DEV=$(dm_create $NAME "$(table format high_watermark 28)") || { fail "create (fault)" "dm_create"; finish; }
	dmesg_mark
	# Overwrites until the worker compacts (2 MiB crosses the ring bound).
	for i in $(seq 50); do
		hot $((70 + i)) 40
		log_count 'holding a compaction copy at stage 2' | grep -qv '^0$' && break
	done
	note "after $i rounds of hot writes: $(jsnap_status $NAME)"
	check_eq "the first copy is held after it is durable" 1 "$(log_count 'holding a compaction copy at stage 2')"
	# Inside the hold: newer data over every block of the hot region.
	hot 69 0 0
	same "during the hold: the volume reads the newer data" "$DEV" "$MODEL"
	sleep $((HOLD / 1000 + 1))
	c=$(st compacted_bytes)
	if ((c > 0)); then ok "the held copy completed ($c bytes compacted)"; else
		fail "the held copy completed" "compacted_bytes=$c"
	fi
	same "after the hold: the newer data won" "$DEV" "$MODEL"
	recreate
	same "after a reload: the newer data" "$DEV" "$MODEL"
	check_cmd "drain (fault)" msg $NAME drain
	same "after drain: production holds the newer data" "$PROD" "$MODEL"
	no_splat_since_mark "no kernel splat (fault)"
	reload_normal_module
else
	note "$TEST_NAME: fault cases skipped (no fault module)"
fi
cleanup_dm
no_splat_since_start "no kernel splat"
finish
