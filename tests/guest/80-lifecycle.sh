#!/usr/bin/env bash
# Table life cycle (DESIGN.md §2.3 "Suspend/resume/reload", "Bad input"):
#   - suspend/resume and a live table reload (dmsetup reload + resume) keep
#     every acknowledged write, also while data is still in the journal;
#   - a reload of the jsnap table is refused while a view is attached;
#   - `dmsetup remove --force` of a jsnap device with an open view (its
#     table is replaced by `error`) must not crash: the view then fails I/O
#     cleanly, and everything can be removed.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=16
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
table="0 $LEN jsnap $PROD $PMEM $STORE $CHUNK"
dev=$(dm_create lc "$table 2 format no_destage") || { fail "create"; finish; }
head -c $((2 << 20)) /dev/urandom >"$SCRATCH/w"
dd if="$SCRATCH/w" of="$dev" bs=64k seek=3 oflag=direct status=none
dd if="$SCRATCH/w" of="$REF" bs=64k seek=3 conv=notrunc status=none
check_cmd "suspend" dmsetup suspend lc
check_cmd "resume" dmsetup resume lc
same "data after suspend/resume" "$dev" "$REF"
check_cmd "reload same table (without format)" dmsetup reload lc --table "$table 1 no_destage"
check_cmd "resume after reload" dmsetup resume lc
same "data after live reload (journal replayed)" "$dev" "$REF"
pending=$(status_get lc pending)
if ((pending > 0)); then ok "journal still holds the data after reload ($pending)"; else fail "journal holds data after reload" "pending=$pending"; fi
check_eq "table after reload" "0 $LEN jsnap $(dev_mm "$PROD") $(dev_mm "$PMEM") $(dev_mm "$STORE") $CHUNK 1 no_destage" \
	"$(dmsetup table lc)"
check_cmd "snapshot" msg lc snapshot
view=$(dm_create lcv "0 $LEN jsnap-view $dev ro") || fail "create view"
check_fails "reload refused while a view is attached" dmsetup reload lc --table "$table"
dmsetup clear lc >/dev/null 2>&1 || true
same "view = data at snapshot" "$view" "$REF"

dmesg_mark
dmsetup remove --force lc >/dev/null 2>&1 || true
dm_mknodes
check_fails "view read fails after forced removal of jsnap" timeout 60 dd if="$view" of=/dev/null bs=64k count=4 iflag=direct status=none
check_cmd "remove view" dm_remove lcv
dmsetup remove lc >/dev/null 2>&1 || true
dm_mknodes
check_eq "no device left" "" "$(dmsetup ls | grep -E '^lc' || true)"
no_splat_since_mark "no splat after forced removal"

# The journal survived: a new table replays it.
dev=$(dm_create lc "$table") || fail "re-create after forced removal"
same "data after forced removal and re-create" "$dev" "$REF"
check_eq "snapshot still recorded" active "$(status_get lc snapshot)"
check_cmd "drop" msg lc drop
check_cmd "drain" msg lc drain
same "production after drain" "$PROD" "$REF"
dm_remove lc

# The journal belongs to PROD: another production device of the same size
# is refused (and nothing is written), unless told it was renumbered.
before=$(dd if="$STORE" bs=1M count=$MIB iflag=direct status=none | sha256sum)
pbefore=$(dd if="$PMEM" bs=1M count=16 iflag=direct status=none | sha256sum)
dmesg_mark
check_fails "journal of another production device refused" dmsetup create lc2 --table "0 $LEN jsnap $STORE $PMEM $PROD $CHUNK"
dm_mknodes
check_match "reason logged" "jsnap: Journal belongs to another production device" "$(dmesg_since_mark | grep 'jsnap:' | tail -n1)"
check_eq "other device untouched" "$before" "$(dd if="$STORE" bs=1M count=$MIB iflag=direct status=none | sha256sum)"
check_eq "journal untouched" "$pbefore" "$(dd if="$PMEM" bs=1M count=16 iflag=direct status=none | sha256sum)"
dev=$(dm_create lc "$table") || fail "the right production device is still accepted"
dm_remove lc
no_splat_since_start "no kernel splat"
finish
