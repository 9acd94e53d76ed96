#!/usr/bin/env bash
# The journal bypass for large writes (feature `bypass <sectors>`), with
# `no_destage` so that only a bypassed write reaches production by itself:
#   - a 1 MiB write with no snapshot goes to production (read there
#     directly), nothing is journaled, `bypassed_bytes` counts it;
#   - a write below the threshold is journaled;
#   - a large write over a record still in the journal is journaled (replay
#     would write the older record over it), and so is one while a
#     snapshot is active (the view keeps the old data); after `drain`
#     (records retired) or `drop`, the same writes bypass again;
#   - changed-block tracking has the bypassed chunks, also after a reload
#     (no record replays them);
#   - a reload gives back every write;
#   - fault build: a bypassed write held before it is submitted
#     (fault_copy_sector) while `snapshot` runs: the snapshot waits for it,
#     and the view reads the same data before and after it lands; a newer
#     journaled write inside a held one: `drain` waits, the newer data
#     wins; a write held longer than `snapshot` waits: EBUSY, then taken.
. "$(dirname "$0")/lib.sh"

NAME=j59
VNAME=v59
MIB=16
LEN=$((MIB * 2048))
TH=256                    # bypass threshold: 128 KiB
ORIG=$SCRATCH/orig
MODEL=$SCRATCH/model

cleanup_dm
zero_journal_sb
dd if=/dev/urandom of="$PROD" bs=1M count=$MIB oflag=direct status=none
dd if="$PROD" of="$ORIG" bs=1M count=$MIB iflag=direct status=none
cp "$ORIG" "$MODEL"

# bypassed NAME: bypassed_bytes of the status
bypassed() { status_get "$NAME" bypassed_bytes; }
# pmem_cbt FIRST_BYTE N: N bytes (hex) of the current changed-block map as it
# is on pmem (with no_destage nothing retires: only the bypass writes it)
pmem_cbt() {
	blockdev --flushbufs "$PMEM"
	PYTHONPATH=$JSNAP_TOP/tests/guest python3 - "$PMEM" "$1" "$2" <<'EOF'
import os, struct, sys
from jformat import live_slot
dev, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(dev, os.O_RDONLY)
sbs = os.pread(fd, 8192, 0)
sb = sbs[live_slot(sbs) * 4096:][:4096]
map_bytes, = struct.unpack_from("<Q", sb, 80)
cbt_off, = struct.unpack_from("<Q", sb, 164)
cur = struct.unpack_from("<I", sb, 188)[0] & 1
print(os.pread(fd, n, cbt_off + cur * map_bytes + first).hex())
EOF
}

# Refused: a threshold below one 4 KiB block, or above the largest write
# (2048 sectors); the journal is left as it was (blank).
check_fails "bypass 7 is refused" dmsetup create j59bad --table "$(jsnap_table $LEN "$PROD" "$PMEM" "$STORE" "$CHUNK" bypass 7)"
check_fails "bypass 4096 is refused" dmsetup create j59bad --table "$(jsnap_table $LEN "$PROD" "$PMEM" "$STORE" "$CHUNK" format bypass 4096)"
check_eq "refused: the journal's superblock area is still zero" \
	"$(head -c 8192 /dev/zero | sha256sum)" "$(dd if="$PMEM" bs=4096 count=2 iflag=direct status=none | sha256sum)"

DEV=$(mk_jsnap $NAME $LEN format no_destage bypass $TH) || { fail "create" "mk_jsnap"; finish; }
check_match "table echoes bypass" "3 no_destage bypass $TH\$" "$(dmsetup table $NAME)"
check_eq "nothing bypassed yet" 0 "$(bypassed)"
# (chunks 2048/CHUNK .. 4096/CHUNK-1: whole bytes of the map for CHUNK <= 256)
cb=$((2048 / CHUNK / 8)) cn=$((2048 / CHUNK / 8))
zeros=$(printf '00%.0s' $(seq $cn)) ones=$(printf 'ff%.0s' $(seq $cn))
check_eq "changed-block map on pmem: clear before" "$zeros" "$(pmem_cbt $cb $cn)"

# 1 MiB at sector 2048: straight to production.
wr1 "$DEV" 0 2048 2048 "$MODEL" || fail "write 1 MiB at 2048" "dd"
check_eq "1 MiB bypassed" 1048576 "$(bypassed)"
check_eq "nothing journaled" 0 "$(status_get $NAME pending)"
check_eq "changed-block map on pmem: the bypassed chunks" "$ones" "$(pmem_cbt $cb $cn)"
same_at "production holds the bypassed write" "$PROD" 2048 "$MODEL" 2048 2048
same "the volume reads the model" "$DEV" "$MODEL"

# Below the threshold: journaled (production keeps the old data).
wr1 "$DEV" 0 8200 8 "$MODEL" || fail "write 4 KiB at 8200" "dd"
check_eq "4 KiB journaled" 1 "$(status_get $NAME pending)"
check_eq "4 KiB not bypassed" 1048576 "$(bypassed)"
same_at "production: 4 KiB not there" "$PROD" 8200 "$ORIG" 8200 8

# 1 MiB over that live record: journaled.
wr1 "$DEV" 0 8192 2048 "$MODEL" || fail "write 1 MiB at 8192" "dd"
check_eq "over a live record: not bypassed" 1048576 "$(bypassed)"
check_eq "over a live record: journaled" 2 "$(status_get $NAME pending)"
same_at "production: 1 MiB over the record not there" "$PROD" 8192 "$ORIG" 8192 2048
same "the volume reads the model (journaled)" "$DEV" "$MODEL"

# Drained, the records retire: the same range bypasses.
check_cmd "drain" msg $NAME drain
check_eq "drained" 0 "$(status_get $NAME pending)"
wr1 "$DEV" 0 8192 2048 "$MODEL" || fail "write 1 MiB at 8192 again" "dd"
check_eq "after drain: bypassed" 2097152 "$(bypassed)"
same_at "production holds it" "$PROD" 8192 "$MODEL" 8192 2048

# Changed-block tracking (chunks of $CHUNK sectors) has the bypassed chunks.
c1=$((2048 / CHUNK)) c2=$((8192 / CHUNK)) n=$((2048 / CHUNK))
cur=$(msg $NAME changed current)
check_eq "changed: first bypassed run" 1 "$(grep -cx "$c1 $n" <<<"$cur")"
check_eq "changed: second run" 1 "$(grep -cx "$c2 $n" <<<"$cur")"

# With a snapshot: journaled; the view keeps the old data.
check_cmd "snapshot" msg $NAME snapshot
cp "$MODEL" "$SCRATCH/snap"
wr1 "$DEV" 0 12288 2048 "$MODEL" || fail "write 1 MiB at 12288" "dd"
check_eq "with a snapshot: not bypassed" 2097152 "$(bypassed)"
check_eq "with a snapshot: journaled" 1 "$(status_get $NAME pending)"
VDEV=$(dm_create $VNAME "0 $LEN jsnap-view $DEV ro") || fail "view" "create"
same "the view reads the snapshot" "$VDEV" "$SCRATCH/snap"
same "the volume reads the model (snapshot)" "$DEV" "$MODEL"
check_cmd "remove the view" dmsetup remove $VNAME
check_cmd "drop" msg $NAME drop
check_cmd "drain after drop" msg $NAME drain
wr1 "$DEV" 0 12288 2048 "$MODEL" || fail "write 1 MiB at 12288 again" "dd"
check_eq "after drop: bypassed" 3145728 "$(bypassed)"
same_at "production holds the last write" "$PROD" 12288 "$MODEL" 12288 2048

# Reload: every write, and the changed chunks, come back.
cur=$(msg $NAME changed current)
check_cmd "remove" dmsetup remove $NAME
DEV=$(mk_jsnap $NAME $LEN no_destage bypass $TH) || fail "reload" "mk_jsnap"
same "after reload: the volume reads the model" "$DEV" "$MODEL"
check_eq "after reload: changed-block map unchanged" "$cur" "$(msg $NAME changed current)"
check_cmd "remove after reload" dmsetup remove $NAME
no_splat_since_start "no kernel splat (normal module)"

# ---- fault build: snapshot while a bypassed write is held -----------------
need_fault_module
HOLD=${FAULT_HOLD_MS:-3000}
S=4096
load_module "$JSNAP_FAULT_MODULE" fault_copy_sector=$S fault_copy_ms=$HOLD
zero_journal_sb
dd if="$ORIG" of="$PROD" bs=1M oflag=direct status=none
DEV=$(mk_jsnap $NAME $LEN format no_destage bypass $TH) || { fail "create (fault)" "mk_jsnap"; finish; }
new=$SCRATCH/new
# held_write NAME: write $new (1 MiB) at $S in the background (pid $wpid);
# check that the fault build holds it (once, since a fresh log mark)
held_write() {
	dmesg_mark
	dd if="$new" of="$DEV" bs=1M count=1 seek=$((S * 512)) oflag=direct,seek_bytes \
		conv=notrunc status=none &
	wpid=$!
	for ((i = 0; i < 100; i++)); do
		[[ $(log_count "holding the copy of sector $S") -gt 0 ]] && break
		sleep 0.05
	done
	check_eq "$1" 1 "$(log_count "holding the copy of sector $S")"
}
head -c 1048576 /dev/urandom >"$new"
held_write "the bypassed write is held"
t0=$(date +%s%N)
check_cmd "snapshot while it is held" msg $NAME snapshot
t1=$(date +%s%N)
# (the hold is $HOLD ms from the log line; the snapshot waited for the rest)
check_eq "snapshot waited for the held write" 1 "$(((t1 - t0) / 1000000 >= HOLD / 3 ? 1 : 0))"
VDEV=$(dm_create $VNAME "0 $LEN jsnap-view $DEV ro") || fail "view (fault)" "create"
a=$(rd "$VDEV" $S 2048 | sha256sum | cut -c1-16)
wait $wpid
check_eq "the write completed" 0 "$?"
b=$(rd "$VDEV" $S 2048 | sha256sum | cut -c1-16)
check_eq "the view is stable across the write's completion" "$a" "$b"
check_eq "the snapshot holds the write" "$(sha256sum <"$new" | cut -c1-16)" "$a"
check_eq "bypassed (fault)" 1048576 "$(bypassed)"

# Destage holds back a newer journaled write W over a bypassed write X in
# flight: `drain` waits for X, and W, not X, ends up at W's blocks.
cleanup_dm
zero_journal_sb
dd if="$ORIG" of="$PROD" bs=1M oflag=direct status=none
cp "$ORIG" "$MODEL"
DEV=$(mk_jsnap $NAME $LEN format no_destage bypass $TH) || { fail "create (hold-back)" "mk_jsnap"; finish; }
head -c 1048576 /dev/urandom >"$new"
dd if="$new" of="$MODEL" bs=512 seek=$S conv=notrunc status=none
held_write "hold-back: X is held"
wr1 "$DEV" 0 $((S + 8)) 8 "$MODEL" || fail "hold-back: write W" "dd"
check_eq "hold-back: W journaled" 1 "$(status_get $NAME pending)"
t0=$(date +%s%N)
check_cmd "hold-back: drain" msg $NAME drain
t1=$(date +%s%N)
check_eq "hold-back: drain waited for X" 1 "$(((t1 - t0) / 1000000 >= HOLD / 3 ? 1 : 0))"
wait $wpid
check_eq "hold-back: X completed" 0 "$?"
same_at "hold-back: the volume holds X with W over it" "$DEV" $S "$MODEL" $S 2048
same_at "hold-back: production holds X with W over it" "$PROD" $S "$MODEL" $S 2048

# Production stalls longer than `snapshot` waits for it (5 s): the message
# is refused and says why, nothing changes, and once the write completed
# the snapshot is taken.
load_module "$JSNAP_FAULT_MODULE" fault_copy_sector=$S fault_copy_ms=9000
zero_journal_sb
DEV=$(mk_jsnap $NAME $LEN format no_destage bypass $TH) || { fail "create (stall)" "mk_jsnap"; finish; }
head -c 1048576 /dev/urandom >"$new"
held_write "stall: the write is held"
check_fails "stall: snapshot refused while it is held" msg $NAME snapshot
check_eq "stall: the refusal is logged" 1 "$(log_count 'snapshot refused: 1 write\(s\) bypassing the journal still in flight after 5000 ms')"
check_eq "stall: no snapshot" none "$(status_get $NAME snapshot)"
wait $wpid
check_eq "stall: the write completed" 0 "$?"
check_cmd "stall: snapshot once it completed" msg $NAME snapshot
check_eq "stall: snapshot active" active "$(status_get $NAME snapshot)"
same_at "stall: the volume holds the write" "$DEV" $S "$new" 0 2048
reload_normal_module
no_splat_since_start "no kernel splat"
finish
