#!/usr/bin/env bash
# One-way mirror (seeds 002/004, DESIGN.md M1/M2, issue 5): model-based.
#
# Volume B is the jsnap device, volume A the `jsnap-view ... mirror`.
# Writes to A reach A and B; writes to B never reach A.  Two reference
# files model what each volume must hold; after every phase (random
# interleavings, drain, hydration, reload) both volumes are compared with
# them byte for byte.  The seed's flows (Figures 22-27 of seed 004) are
# named cases.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=32
LEN=$((MIB * 2048))
C=$CHUNK
MA=$SCRATCH/a # model of volume A
MB=$SCRATCH/b # model of volume B

same_range() { # same_range NAME DEV MODEL SECTOR COUNT
	local a b
	a=$(dd if="$2" bs=512 skip="$4" count="$5" iflag=direct status=none | sha256sum | cut -c1-16)
	b=$(dd if="$3" bs=512 skip="$4" count="$5" status=none | sha256sum | cut -c1-16)
	check_eq "$1" "$b" "$a"
}
both() { same "$1: A" "$A" "$MA"; same "$1: B" "$B" "$MB"; }
# W CMD...: a write (wr, one_write, dd); its failure is a failed check at
# once, and the totals are compared at the end
n_w=0 n_wok=0
W() {
	local rc=0
	n_w=$((n_w + 1))
	"$@" || rc=$?
	if [[ $rc == 0 ]]; then n_wok=$((n_wok + 1)); else fail "write $n_w succeeded" "rc=$rc: $*"; fi
	return $rc
}

head -c $((MIB << 20)) /dev/urandom >"$MB"
W dd if="$MB" of="$PROD" bs=1M oflag=direct status=none
B=$(mk_jsnap mirB $LEN format) || { fail "create B"; finish; }
# In-flight work before the split: some still in the journal.
for ((i = 0; i < 20; i++)); do W wr "$B" $((RANDOM * 2 % (LEN - 64))) $((RANDOM % 64 + 1)) "$MB"; done
check_cmd "split (snapshot)" msg mirB snapshot
cp "$MB" "$MA"
A=$(dm_create mirA "0 $LEN jsnap-view $B mirror") || { fail "attach A (mirror)"; finish; }
ok "attach A (mirror)"
both "after split"

# Seed 004 flows, on chunks nobody touched yet (k*C for distinct k).
# Fig. 22/23: write to A, no table entry (chunk not yet preserved):
# preserve, then write A and B.
W wr "$A" $((10 * C + 3)) 5 "$MA" "$MB"
same_range "fig22 write A without entry: A" "$A" "$MA" $((10 * C)) "$C"
same_range "fig22 write A without entry: B" "$B" "$MB" $((10 * C)) "$C"
# Fig. 24: write to A with an entry (chunk already preserved).
W wr "$A" $((10 * C + 20)) 4 "$MA" "$MB"
same_range "fig24 write A with entry: A" "$A" "$MA" $((10 * C)) "$C"
same_range "fig24 write A with entry: B" "$B" "$MB" $((10 * C)) "$C"
# Fig. 25: write to B, no entry: B only; A keeps the split-time data,
# also after destage (which must preserve first).
W wr "$B" $((11 * C + 1)) 9 "$MB"
check_cmd "drain (fig25)" msg mirB drain
same_range "fig25 write B without entry: A unchanged" "$A" "$MA" $((11 * C)) "$C"
same_range "fig25 write B without entry: B" "$B" "$MB" $((11 * C)) "$C"
# Fig. 26: write to B with an entry (chunk preserved by an A write).
W wr "$B" $((10 * C + 2)) 3 "$MB"
check_cmd "drain (fig26)" msg mirB drain
same_range "fig26 write B with entry: A unchanged" "$A" "$MA" $((10 * C)) "$C"
same_range "fig26 write B with entry: B" "$B" "$MB" $((10 * C)) "$C"
# Fig. 27: reads of A from either image (unpreserved: production + journal;
# preserved: store).
same_range "fig27 read A from production image" "$A" "$MA" $((12 * C)) "$C"
same_range "fig27 read A from store image" "$A" "$MA" $((11 * C)) "$C"
# Partial chunk: B changed other parts of the chunk, then A writes part of
# it: A shows its own bytes plus split-time bytes, never B's.
W wr "$B" $((13 * C + 0)) 8 "$MB"
W wr "$A" $((13 * C + 16)) 8 "$MA" "$MB"
same_range "partial chunk: A has its bytes + split-time bytes" "$A" "$MA" $((13 * C)) "$C"
same_range "partial chunk: B has both writes" "$B" "$MB" $((13 * C)) "$C"

# A write to A covering whole unpreserved chunks (no copy needed).
W wr "$B" $((15 * C + 4)) 4 "$MB"
W wr "$A" $((14 * C)) $((2 * C)) "$MA" "$MB"
same_range "whole-chunk write to A: A" "$A" "$MA" $((14 * C)) $((2 * C))
same_range "whole-chunk write to A: B" "$B" "$MB" $((14 * C)) $((2 * C))

# Random interleavings (mixed sizes, overlapping chunks, partial chunks).
for phase in 1 2 3; do
	for ((i = 0; i < 60; i++)); do
		n=$((RANDOM % (3 * C) + 1))
		off=$(((RANDOM * 32768 + RANDOM) % (LEN - n)))
		if ((RANDOM % 2)); then W wr "$A" $off $n "$MA" "$MB"; else W wr "$B" $off $n "$MB"; fi
	done
	both "interleaving phase $phase"
done
check_cmd "drain" msg mirB drain
both "after drain"
same "production after drain = B" "$PROD" "$MB"

# Hydrate: A becomes a full copy in the store.
check_cmd "hydrate on" msg mirB hydrate on
for ((i = 0; i < 300; i++)); do
	[[ $(status_get mirB hydration) == done ]] && break
	sleep 1
done
check_eq "hydration done" done "$(status_get mirB hydration)"
both "after hydration"
same "store alone = A (the backup)" "$STORE" "$MA"

# Reload both volumes.
dm_remove mirA
dm_remove mirB
B=$(mk_jsnap mirB $LEN) || fail "re-create B"
A=$(dm_create mirA "0 $LEN jsnap-view $B mirror") || fail "re-attach A"
both "after reload"
for ((i = 0; i < 30; i++)); do
	n=$((RANDOM % (2 * C) + 1))
	off=$(((RANDOM * 32768 + RANDOM) % (LEN - n)))
	if ((RANDOM % 2)); then W wr "$A" $off $n "$MA" "$MB"; else W wr "$B" $off $n "$MB"; fi
done
both "writes after reload"
dm_remove mirA
check_cmd "drop" msg mirB drop
check_cmd "final drain" msg mirB drain
same "production at end = B" "$PROD" "$MB"
check_eq "errors=0" 0 "$(status_get mirB errors)"
dm_remove mirB

# Regression (found by tests/powercut.sh --scenario mirror): a B-write over part of a
# pre-snapshot journal extent spanning a preserved and an unpreserved chunk
# kept the carved piece for the snapshot although its own chunk was
# preserved; nothing freed it, its record never retired, and `drain` (and
# every writer, once the journal was full) waited forever.
one_write() { # one_write DEV SECTOR COUNT [MODEL...]: one bio of COUNT sectors
	local dev=$1 off=$2 n=$3 m
	shift 3
	local blk=$SCRATCH/one.$BASHPID
	head -c $((n * 512)) /dev/urandom >"$blk"
	dd if="$blk" of="$dev" bs=$((n * 512)) count=1 seek=$((off * 512)) \
		oflag=direct,seek_bytes status=none || return 1
	for m in "$@"; do
		dd if="$blk" of="$m" bs=512 seek="$off" count="$n" conv=notrunc status=none || return 1
	done
}
B=$(mk_jsnap mirB $LEN no_destage) || { fail "re-create B (no_destage)"; finish; }
W one_write "$B" $((30 * C + C / 2)) "$C" "$MB" # across chunks 30 and 31, left in the journal
check_cmd "snapshot (piece in a preserved chunk)" msg mirB snapshot
cp "$MB" "$MA"
A=$(dm_create mirA "0 $LEN jsnap-view $B mirror") || { fail "attach A (piece in a preserved chunk)"; finish; }
W one_write "$A" $((30 * C)) 8 "$MA" "$MB"            # preserves chunk 30 only
W one_write "$B" $((30 * C + C / 2)) $((C / 4)) "$MB" # inside chunk 30, over the pre-snapshot extent
if ! check_cmd "drain returns (superseded piece in a preserved chunk)" timeout 60 dmsetup message mirB 0 drain; then
	note "status: $(jsnap_status mirB)"
	finish # (removing the device would wait for the worker)
fi
both "superseded piece in a preserved chunk"
dm_remove mirA
check_cmd "drop (piece in a preserved chunk)" msg mirB drop
dm_remove mirB
check_eq "every write succeeded ($n_w writes)" "$n_w" "$n_wok"
no_splat_since_start "no kernel splat"
finish
