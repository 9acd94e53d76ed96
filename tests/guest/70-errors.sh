#!/usr/bin/env bash
# Underlying I/O errors (DESIGN.md §2.3 "Errors"), injected by swapping the
# table of a dm device under production or under the store to `error`:
#   - destage errors keep the data in the journal, show in status
#     (errors, state=degraded), make `drain` fail instead of hang, and are
#     retried: once the device is back, drain succeeds and the data is exact;
#   - reads of sectors whose production copy cannot be read fail;
#   - a store that cannot take preserved chunks never lets production be
#     overwritten while retrying; when it stays impossible the snapshot
#     becomes explicitly invalid, the view returns errors, and destage goes
#     on without losing production data.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=16
LEN=$((MIB * 2048))
REF=$SCRATCH/ref


head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
P=$(dm_create ep "0 $LEN linear $PROD 0") || { fail "linear over production"; finish; }
S=$(dm_create es "0 $LEN linear $STORE 0") || { fail "linear over store"; finish; }
dev=$(dm_create ej "0 $LEN jsnap $P $PMEM $S $CHUNK 2 format no_destage") || { fail "create jsnap"; finish; }
ok "create jsnap over dm-linear"

# --- destage errors ---------------------------------------------------------
head -c $((4 << 20)) /dev/urandom >"$SCRATCH/w"
dd if="$SCRATCH/w" of="$dev" bs=64k seek=16 oflag=direct status=none
dd if="$SCRATCH/w" of="$REF" bs=64k seek=16 conv=notrunc status=none
check_cmd "production -> error target" swap_table ep "0 $LEN error"
check_fails "drain fails while production fails" timeout 60 dmsetup message ej 0 drain
errs=$(status_get ej errors)
if ((errs > 0)); then ok "errors counted ($errs)"; else fail "errors counted" "errors=$errs"; fi
check_eq "state=degraded" degraded "$(status_get ej state)"
pending=$(status_get ej pending)
if ((pending > 0)); then ok "data kept in the journal (pending=$pending)"; else fail "data kept in the journal" "pending=$pending"; fi
# Journaled data is still served; production-only data cannot be read.
same_part=$(dd if="$dev" bs=64k skip=16 count=64 iflag=direct status=none | sha256sum | cut -c1-16)
check_eq "journal data readable while production fails" "$(sha256sum <"$SCRATCH/w" | cut -c1-16)" "$same_part"
check_fails "read of production-only sectors fails" dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
check_cmd "production back" swap_table ep "0 $LEN linear $PROD 0"
check_cmd "drain after recovery" timeout 120 dmsetup message ej 0 drain
check_eq "state=ok after retry" ok "$(status_get ej state)"
check_eq "pending=0" 0 "$(status_get ej pending)"
same "jsnap data exact after retried destage" "$dev" "$REF"
same "production exact after retried destage" "$PROD" "$REF"

# --- store errors during preservation ---------------------------------------
check_cmd "snapshot" msg ej snapshot
cp "$REF" "$SCRATCH/snap"
head -c $((1 << 20)) /dev/urandom >"$SCRATCH/w2"
dd if="$SCRATCH/w2" of="$dev" bs=64k seek=40 oflag=direct status=none
dd if="$SCRATCH/w2" of="$REF" bs=64k seek=40 conv=notrunc status=none
ev0=$(dm_events ej)
check_cmd "store -> error target" swap_table es "0 $LEN error"
check_fails "drain fails while the store fails" timeout 60 dmsetup message ej 0 drain
# Production must still hold the snapshot-time data of those chunks.
pr=$(dd if="$PROD" bs=64k skip=40 count=16 iflag=direct status=none | sha256sum | cut -c1-16)
sr=$(dd if="$SCRATCH/snap" bs=64k skip=40 count=16 status=none | sha256sum | cut -c1-16)
check_eq "production not overwritten while preservation fails" "$sr" "$pr"
# Keep failing until the snapshot is declared invalid.
for ((i = 0; i < 60; i++)); do
	[[ $(status_get ej snapshot) == invalid ]] && break
	timeout 30 dmsetup message ej 0 drain >/dev/null 2>&1 || true
	sleep 1
done
check_eq "snapshot=invalid after repeated store errors" invalid "$(status_get ej snapshot)"
# The event follows the superblock commit, after the status says invalid.
check_cmd "dmsetup wait returns at invalidation" timeout 10 dmsetup wait ej "$ev0"
check_eq "one device-mapper event at invalidation" $((ev0 + 1)) "$(dm_events ej)"
check_cmd "drain proceeds without the snapshot" timeout 120 dmsetup message ej 0 drain
same "production exact after invalidation" "$PROD" "$REF"
same "jsnap exact after invalidation" "$dev" "$REF"
check_fails "view refused on an invalid snapshot" dmsetup create ev --table "0 $LEN jsnap-view $dev ro"
dm_mknodes
check_cmd "drop invalid snapshot" msg ej drop
check_eq "snapshot=none" none "$(status_get ej snapshot)"
check_cmd "store back" swap_table es "0 $LEN linear $STORE 0"
dm_remove ej
dm_remove ep
dm_remove es
no_splat_since_start "no kernel splat"
finish
