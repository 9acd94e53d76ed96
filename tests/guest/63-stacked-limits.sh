#!/usr/bin/env bash
# Stacked queue limits: the jsnap device sends I/O to production AND to the
# store, so it must advertise limits that suit both (as every stock target
# does through iterate_devices).  A store with 4096-byte logical blocks
# (loop device, -b 4096) over a 512-byte production device: the jsnap
# device and its view report 4096; 4 KiB writes, snapshot, ro view, drain,
# hydration to done give exact content.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=32
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
SNAP=$SCRATCH/snap

L=$(losetup -b 4096 --show -f "$SPARE") || { fail "losetup -b 4096"; finish; }
cleanup() { cleanup_dm; losetup -d "$L" 2>/dev/null; }
check_eq "loop store has 4096-byte logical blocks" 4096 "$(blockdev --getss "$L")"
check_eq "production has 512-byte logical blocks" 512 "$(blockdev --getss "$PROD")"

# w4 DEV BLOCK COUNT MODEL...: one write of COUNT 4 KiB blocks at BLOCK
w4() {
	local dev=$1 b=$2 n=$3 m
	shift 3
	head -c $((n * 4096)) /dev/urandom >"$SCRATCH/blk"
	timeout 60 dd if="$SCRATCH/blk" of="$dev" bs=$((n * 4096)) count=1 seek=$((b * 4096)) \
		oflag=direct,seek_bytes status=none || return 1
	for m in "$@"; do dd if="$SCRATCH/blk" of="$m" bs=4096 seek="$b" conv=notrunc status=none; done
}
NB=$((LEN / 8)) # 4 KiB blocks
rand_writes() { # rand_writes DEV N MODEL...
	local dev=$1 k=$2 i n
	shift 2
	for ((i = 0; i < k; i++)); do
		n=$((RANDOM % 24 + 1))
		w4 "$dev" $(((RANDOM * 32768 + RANDOM) % (NB - n))) $n "$@" || return 1
	done
}

head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
dev=$(dm_create sl "0 $LEN jsnap $PROD $PMEM $L $CHUNK 1 format") || { fail "create jsnap with a 4K store"; cleanup; finish; }
ok "create jsnap with a 4K store"
check_eq "jsnap logical block size = 4096 (the store's)" 4096 "$(blockdev --getss "$dev")"
check_fails "512-byte O_DIRECT write to jsnap refused" timeout 60 dd if=/dev/urandom of="$dev" bs=512 count=1 seek=1 oflag=direct status=none
# (if it was accepted, the model follows what the device now holds)
rd "$dev" 0 8 | dd of="$REF" bs=4096 count=1 conv=notrunc status=none
rand_writes "$dev" 30 "$REF" || fail "pre-snapshot writes"
check_cmd "snapshot" msg sl snapshot
cp "$REF" "$SNAP"
rand_writes "$dev" 40 "$REF" || fail "post-snapshot writes"
same "jsnap = model" "$dev" "$REF"
if view=$(dm_create slv "0 $LEN jsnap-view $dev ro"); then
	ok "create ro view"
	check_eq "view logical block size = 4096" 4096 "$(blockdev --getss "$view")"
	same "view = snapshot" "$view" "$SNAP"
	check_cmd "drain" timeout 120 dmsetup message sl 0 drain
	same "production after drain = model" "$PROD" "$REF"
	same "view after drain = snapshot" "$view" "$SNAP"
	check_cmd "hydrate on" msg sl hydrate on
	if wait_hydrated sl 300; then ok "hydration done"; else fail "hydration done" "$(jsnap_status sl)"; fi
	same "store (4K loop) alone = snapshot" "$L" "$SNAP"
	same "view after hydration = snapshot" "$view" "$SNAP"
	same "jsnap after hydration = model" "$dev" "$REF"
	dm_remove slv || fail "remove view"
else
	fail "create ro view"
fi
check_eq "errors=0" 0 "$(status_get sl errors)"
check_eq "state=ok" ok "$(status_get sl state)"
msg sl drop || fail "drop"
dm_remove sl || fail "remove jsnap"
cleanup
no_splat_since_start "no kernel splat"
finish
