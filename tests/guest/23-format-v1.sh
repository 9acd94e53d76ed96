#!/usr/bin/env bash
# A journal written in format version 1 (every record carries a crc32c of
# its data, no DESC_ORDERED flag) is read by this module, and upgraded.
#   - Records are journaled with `no_destage` (so they stay in the ring), the
#     device is removed, and the journal is rewritten as version 1 would
#     have left it: each live descriptor without DESC_ORDERED and with the
#     crc32c of its data, the live superblock slot with version 1.
#   - Loading it replays every record (jsnap reads the model, `pending` is
#     the number of records), logs the upgrade once, and commits the same
#     superblock as version 3 in the other slot, one generation later, still
#     without changed-block maps (`changed` is refused, EOPNOTSUPP); after
#     `drain`, production equals the model.
#   - A version-1 record whose data no longer matches its crc is not
#     replayed (its range reads what was there before it; it stays counted
#     in `pending` as a hole until the tail passes it), every other record
#     is: the data check still applies to version-1 records.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=8
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
OLD=$SCRATCH/old
JSLICE=$((4 * 2048)) # a 4 MiB journal slice of the pmem
J=$(dm_create v1j "0 $JSLICE linear $PMEM $((200 * 2048))") || { fail "journal slice"; finish; }

# convert [CORRUPT_SECTOR]: rewrite the journal J as format version 1; with
# CORRUPT_SECTOR, flip a byte of the data of the record written there after
# its crc is taken.
# Prints "records=N live_gen=G live_slot=S".
convert() {
	PYTHONPATH=$JSNAP_TOP/tests/guest python3 - "$J" "${1:-}" <<'EOF'
import os, struct, sys
from jformat import crc32c, live_slot, seal_slot
dev, corrupt = sys.argv[1], sys.argv[2]
fd = os.open(dev, os.O_RDWR)
j = bytearray(os.pread(fd, 4 << 20, 0))
live = live_slot(bytes(j[:8192]))
base = live * 4096
gen = struct.unpack_from("<Q", j, base + 16)[0]
assert struct.unpack_from("<I", j, base + 8)[0] == 3, "journal is not version 3"
desc_off = struct.unpack_from("<Q", j, base + 88)[0]
desc_count = struct.unpack_from("<I", j, base + 96)[0]
ring_off = struct.unpack_from("<Q", j, base + 104)[0]
tail = struct.unpack_from("<Q", j, base + 120)[0]
n = 0
for i in range(desc_count):
    o = desc_off + 64 * i
    d = j[o:o + 64]
    if struct.unpack_from("<I", d, 0)[0] != 0x4353444A:
        continue
    if crc32c(bytes(d[:60])) != struct.unpack_from("<I", d, 60)[0]:
        continue
    flags, seq, sector, pos, nr, dcrc = struct.unpack_from("<IQQQII", d, 4)
    if seq < tail:
        continue
    assert flags == 1, f"record {seq}: flags {flags}, expected DESC_ORDERED"
    assert dcrc == 0, f"record {seq}: data_crc {dcrc}, expected 0"
    start = ring_off + pos * 512
    data = j[start:start + nr * 512]
    struct.pack_into("<I", j, o + 4, 0)
    struct.pack_into("<I", j, o + 36, crc32c(bytes(data)))
    struct.pack_into("<I", j, o + 60, crc32c(bytes(j[o:o + 60])))
    if corrupt and sector == int(corrupt):
        j[start + 100] ^= 0x5A
    n += 1
slot = bytearray(j[base:base + 4096])
struct.pack_into("<I", slot, 8, 1)
# a version-1 header: 164 bytes, no changed-block fields after it
struct.pack_into("<I", slot, 12, 164)
slot[164:192] = bytes(28)
seal_slot(slot)
j[base:base + 4096] = slot
os.pwrite(fd, bytes(j), 0)
os.fsync(fd)
os.close(fd)
print(f"records={n} live_gen={gen} live_slot={live}")
EOF
}

# slot_info: "slot=S version=V gen=G" of the live superblock slot of J
slot_info() {
	PYTHONPATH=$JSNAP_TOP/tests/guest python3 - "$J" <<'EOF'
import os, struct, sys
from jformat import live_slot
fd = os.open(sys.argv[1], os.O_RDONLY)
j = os.pread(fd, 8192, 0)
best = live_slot(j)
b = best * 4096
print(f"slot={best} version={struct.unpack_from('<I', j, b + 8)[0]} "
      f"gen={struct.unpack_from('<Q', j, b + 16)[0]}")
EOF
}

# Eight non-overlapping writes of mixed sizes (sector, count), one bio each.
WRITES="0:1 100:8 300:128 1000:2048 4000:7 5000:64 9000:255 12000:16"

round() {
	local tag=$1 corrupt=$2 w s c dev out recs gen slot info
	dd if=/dev/zero of="$J" bs=1M count=1 oflag=direct status=none
	head -c $((MIB << 20)) /dev/urandom >"$REF"
	dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
	cp "$REF" "$OLD"
	dev=$(dm_create v1 "0 $LEN jsnap $PROD $J $STORE $CHUNK 2 format no_destage") ||
		{ fail "$tag: create"; return; }
	for w in $WRITES; do
		s=${w%%:*} c=${w##*:}
		wr1 "$dev" 0 "$s" "$c" "$REF" || { fail "$tag: write $w"; return; }
	done
	check_eq "$tag: 8 records pending before removal" 8 "$(status_get v1 pending)"
	dm_remove v1 || { fail "$tag: remove"; return; }
	out=$(convert "$corrupt") || { fail "$tag: convert to version 1" "$out"; return; }
	note "$tag: $out"
	recs=$(sed -E 's/.*records=([0-9]+).*/\1/' <<<"$out")
	gen=$(sed -E 's/.*live_gen=([0-9]+).*/\1/' <<<"$out")
	slot=$(sed -E 's/.*live_slot=([0-9]+).*/\1/' <<<"$out")
	check_eq "$tag: 8 version-1 records written" 8 "$recs"
	dmesg_mark
	dev=$(dm_create v1 "0 $LEN jsnap $PROD $J $STORE $CHUNK 1 no_destage") ||
		{ fail "$tag: load the version-1 journal"; return; }
	ok "$tag: load the version-1 journal"
	check_eq "$tag: the upgrade is logged once" 1 \
		"$(log_count 'journal format upgraded from version 1 to 3')"
	info=$(slot_info)
	check_eq "$tag: superblock committed as version 3 in the other slot" \
		"slot=$((1 - slot)) version=3 gen=$((gen + 1))" "$info"
	out=$(dmsetup message v1 0 changed 2>&1)
	check_eq "$tag: changed refused on a journal without changed-block maps (EOPNOTSUPP, logged)" \
		"1 1" "$(grep -c 'Operation not supported' <<<"$out") $(log_count 'changed refused: this journal was formatted without changed-block maps')"
	if [[ -n $corrupt ]]; then
		# What the corrupted record overwrote (the fifth write, 7 sectors).
		dd if="$OLD" of="$REF" bs=512 skip="$corrupt" seek="$corrupt" count=7 conv=notrunc status=none
		same_at "$tag: the record failing its crc is not replayed" "$dev" "$corrupt" "$OLD" "$corrupt" 7
	else
		check_eq "$tag: every record replayed" 8 "$(status_get v1 pending)"
	fi
	same "$tag: jsnap reads the model" "$dev" "$REF"
	check_cmd "$tag: drain" timeout 120 dmsetup message v1 0 drain
	check_eq "$tag: nothing pending after drain" 0 "$(status_get v1 pending)"
	dm_remove v1 || fail "$tag: remove after drain"
	same "$tag: production equals the model" "$PROD" "$REF"
	no_splat_since_mark "$tag: no kernel warning"
}

round intact ""
round corrupt 4000

dm_remove v1j
finish
