#!/usr/bin/env bash
# The destage watermarks are about live data (README, `high_watermark`):
# dead records (overwritten data) are left in the ring until it is
# `compact::ring_high` full (90% for the default 50), then destage reclaims
# them by itself; live data reaching the high watermark starts destage as
# before.  8 MiB journal slice, default watermarks (50/45), `compact 0` so
# that every reclamation shows as production writes, `destage_batch 4`
# (256 KiB batches), 64 KiB writes (records far fewer than descriptor
# slots):
#   (a) a region of 10% of the journal overwritten 6 times (60% of the
#       journal in use, 10% live; every other pass shifted by half a write,
#       so that writes carve older extents as well as replace them):
#       nothing is destaged, journal_used is exactly what was written;
#   (b) overwritten on until the ring is 90% full: destage brings it to
#       85% or below by itself (no drain), and at most the live pieces at
#       the tail reach production (dead records retire without a write);
#   (c) drained, then 54% live data: destage runs by itself and stops
#       with the live data between the watermarks, records left;
#   (d) remove, create again (replay): the volume equals the model; drain,
#       pending=0, production equals the model.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=32
LEN=$((MIB * 2048))
MODEL=$SCRATCH/model
NAME=wm46

# 8 MiB of pmem at 160 MiB (tests 45, 47 and 62 use the same slice, each
# formatting it)
J=$(dm_create wm46j "0 16384 linear $PMEM $((160 * 2048))") || { fail "journal slice"; finish; }
dd if=/dev/zero of="$J" bs=1M count=1 oflag=direct status=none
dd if=/dev/urandom of="$PROD" bs=1M count=$MIB oflag=direct status=none
dd if="$PROD" of="$MODEL" bs=1M count=$MIB iflag=direct status=none
table() { jsnap_table $LEN "$PROD" "$J" "$STORE" "$CHUNK" "$@"; }
DEV=$(dm_create $NAME "$(table format compact 0 destage_batch 4)") || { fail "create jsnap (compact 0)"; finish; }
ok "create jsnap on an 8 MiB journal, compact 0, destage_batch 4"
st() { status_get $NAME "$1"; }
JSZ=$(st journal_size)
# the hot region: 10% of the journal in 64 KiB blocks, from sector 0
HOTB=$((JSZ / 10 / 65536))
HOT=$((HOTB * 128))
# pass P: the hot region written once, 64 KiB per write, into the model
# too; odd passes are shifted by 32 KiB (one write fewer), so that each
# write carves two older extents instead of replacing one
pass() {
	if (($1 % 2)); then wr_blocks 0 $((HOTB - 1)) 64; else wr_blocks 0 "$HOTB"; fi
}
# wr_blocks FIRST N [SHIFT]: N 64 KiB writes from 64 KiB block FIRST, SHIFT
# sectors further
wr_blocks() {
	local b
	for ((b = $1; b < $1 + $2; b++)); do
		wr1 "$DEV" 0 $((b * 128 + ${3:-0})) 128 "$MODEL" || return 1
	done
}
# the bytes of P passes
passes_bytes() { echo $(((($1 + 1) / 2 * HOTB + $1 / 2 * (HOTB - 1)) * 65536)); }
used_pct() { echo $(($(st journal_used) * 100 / JSZ)); }
note "journal_size=$JSZ hot region $HOTB x 64 KiB ($((HOT / 2048)) MiB)"

# ---- (a) dead records are left in the ring below its bound ------------------
for ((p = 0; p < 6; p++)); do
	pass $p || fail "a: pass $p of the hot region"
done
sleep 2 # time for a destage that should not happen
written=$(st written_bytes)
check_eq "a: 6 passes written" "$(passes_bytes 6)" "$written"
check_eq "a: nothing destaged at $(used_pct)% in use, 10% live (default watermarks 50/45)" 0 "$(st destaged_bytes)"
check_eq "a: journal_used is all that was written (no reclamation)" "$written" "$(st journal_used)"
check_eq "a: pending = every record" $((3 * HOTB + 3 * (HOTB - 1))) "$(st pending)"

# ---- (b) the ring bound: destage reclaims the dead records by itself --------
p=6
while (($(st journal_used) * 100 < JSZ * 90 && p < 20)); do
	pass $p || fail "b: pass $p of the hot region"
	p=$((p + 1))
done
note "b: $p passes, $(used_pct)% in use"
ok=0
for ((i = 0; i < 60; i++)); do
	if (($(st journal_used) * 100 <= JSZ * 85)); then ok=1; break; fi
	sleep 1
done
if ((ok)); then ok "b: $((p - 6)) more passes: the ring reclaimed by itself to 85% or below ($(used_pct)%)"; else
	fail "b: destage at the ring bound" "$(jsnap_status $NAME)"
fi
d=$(st destaged_bytes)
if ((d <= HOT * 512)); then
	ok "b: at most the live pieces reached production ($d bytes, hot region $((HOT * 512)))"
else
	fail "b: at most the live pieces reached production" "destaged_bytes=$d hot region $((HOT * 512))"
fi
same_at "b: the hot region reads the model" "$DEV" 0 "$MODEL" 0 $HOT

# ---- (c) live data at the high watermark starts destage, the low stops it ----
check_cmd "c: drain (the journal empty)" msg $NAME drain
d0=$(st destaged_bytes)
# the hot region again (10% live) and fresh blocks after it (45% more)
FRESH=$((JSZ * 45 / 100 / 65536))
pass 0 || fail "c: the hot region again"
wr_blocks "$HOTB" "$FRESH" || fail "c: fresh writes"
note "c: $(used_pct)% in use, all of it live"
ok=0
for ((i = 0; i < 60; i++)); do
	if (($(st destaged_bytes) > d0)); then ok=1; break; fi
	sleep 1
done
if ((ok)); then ok "c: 54% live: destage ran by itself"; else
	fail "c: 54% live starts destage" "$(jsnap_status $NAME)"
fi
# until it stops (destaged_bytes the same for 3 s)
prev=-1
for ((i = 0; i < 60; i++)); do
	cur=$(st destaged_bytes)
	((cur == prev)) && break
	prev=$cur
	sleep 3
done
# Each record is one whole 64 KiB block, all of it live: the live data is
# pending x 64 KiB.  Destage ran from 50% down to below 46% (whole batches
# of 4 blocks), the writes that came after added to it, and nothing started
# it again below 50%.
live=$(($(st pending) * 65536))
if ((live * 100 < JSZ * 50 && live * 100 >= JSZ * 45 - 4 * 65536 * 100)); then
	ok "c: destage stopped between the watermarks (live data $((live * 100 / JSZ))%, $(($(st destaged_bytes) - d0)) bytes destaged)"
else
	fail "c: destage stopped between the watermarks" "live data $live bytes, journal $JSZ: $(jsnap_status $NAME)"
fi
pending=$(st pending)
if ((pending > 0)); then ok "c: records left in the journal ($pending)"; else fail "c: records left in the journal" "pending=0"; fi

# ---- (d) replay, drain, production ------------------------------------------
dmsetup remove $NAME || fail "d: remove"
DEV=$(dm_create $NAME "$(table compact 0 destage_batch 4)") || { fail "d: create again (replay)"; cleanup_dm; finish; }
same "d: after replay the volume equals the model" "$DEV" "$MODEL"
check_cmd "d: drain" msg $NAME drain
check_eq "d: pending=0" 0 "$(st pending)"
check_eq "d: errors=0" 0 "$(st errors)"
dmsetup remove $NAME || fail "d: remove after drain"
same "d: production equals the model" "$PROD" "$MODEL"
dm_remove wm46j
no_splat_since_start "no kernel splat"
finish
