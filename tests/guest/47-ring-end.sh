#!/usr/bin/env bash
# A journal record that ends exactly at the end of the ring (DESIGN.md §2.3
# "Back-pressure"): after `format`, exactly journal_size bytes of 4 KiB
# O_DIRECT writes fill the ring to its last sector.  Every record must still
# retire: the writers finish, `drain` returns, and production holds the data.
# Twice per round (the second lap ends at the ring end again), with
# `format no_destage` (the ring fills completely) and with `format` only
# (destage runs while writing).  The journal is a 4 MiB dm-linear slice of
# the pmem, so that it destages wholly in a few seconds.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=16
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
REGION=$SCRATCH/region

J=$(dm_create rej "0 8192 linear $PMEM $((160 * 2048))") || { fail "journal slice"; finish; }

# fill NAME DEV BYTES: write BYTES with 4 KiB O_DIRECT writes, in passes over
# the first min(BYTES, LEN) bytes of DEV, each pass new random data (REF
# follows).  Bounded: 120 s per pass.
fill() {
	local name=$1 dev=$2 left=$3 region=$((LEN * 512)) n
	while ((left > 0)); do
		n=$((left < region ? left : region))
		head -c "$n" /dev/urandom >"$REGION"
		if ! bounded 120 dd if="$REGION" of="$dev" bs=4096 oflag=direct status=none; then
			return 1
		fi
		dd if="$REGION" of="$REF" conv=notrunc status=none
		left=$((left - n))
	done
}

round() {
	local feat=$1 lap js used
	dd if=/dev/zero of="$J" bs=1M count=1 oflag=direct status=none
	head -c $((LEN * 512)) /dev/urandom >"$REF"
	dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
	# shellcheck disable=SC2086
	dev=$(dm_create re "0 $LEN jsnap $PROD $J $STORE $CHUNK $(wc -w <<<"$feat") $feat") ||
		{ fail "$feat: create"; return; }
	ok "$feat: create"
	js=$(status_get re journal_size)
	if ((js > 0 && js % 4096 == 0)); then ok "$feat: journal_size=$js, a 4 KiB multiple"; else
		fail "$feat: journal_size" "journal_size=$js"
	fi
	for lap in 1 2; do
		if fill "$feat" "$dev" "$js"; then ok "$feat: lap $lap: $js bytes of 4 KiB writes complete"; else
			fail "$feat: lap $lap: $js bytes of 4 KiB writes complete" "writer failed or timed out"
			note "status: $(jsnap_status re)"
			return 1
		fi
		used=$(status_get re journal_used)
		note "$feat: lap $lap: journal_used=$used pending=$(status_get re pending)"
		if ! check_cmd "$feat: lap $lap: drain returns" timeout 120 dmsetup message re 0 drain; then
			note "status: $(jsnap_status re)"
			return 1
		fi
		check_eq "$feat: lap $lap: pending=0" 0 "$(status_get re pending)"
		check_eq "$feat: lap $lap: journal_used=0" 0 "$(status_get re journal_used)"
		same_at "$feat: lap $lap: production = model" "$PROD" 0 "$REF" 0 $LEN
		same_at "$feat: lap $lap: jsnap = model" "$dev" 0 "$REF" 0 $LEN
	done
	# one more write after the laps: the ring goes on from its start
	wr1 "$dev" 0 8 8 "$REF" || fail "$feat: write after the laps"
	check_cmd "$feat: final drain" timeout 120 dmsetup message re 0 drain
	same_at "$feat: production at end" "$PROD" 0 "$REF" 0 $LEN
	check_eq "$feat: errors=0" 0 "$(status_get re errors)"
	check_cmd "$feat: remove" dm_remove re
	return 0
}

round "format no_destage" || { finish; } # (a hung device cannot be removed)
round "format" || { finish; }
dm_remove rej
no_splat_since_start "no kernel splat"
finish
