#!/usr/bin/env bash
# Suspend quiesces everything, and the store's identity is checked
# (issue 10 items 15 and 8; DESIGN.md §2.3 "Suspend/resume/reload").
#   - while the jsnap device is suspended, with hydration on and a writer on
#     an rw view, production, store and the pmem journal are unchanged
#     between two checksums taken two seconds apart; after resume the
#     writer's writes complete and every volume matches its model;
#   - a journal holding a snapshot refuses another store device (and says
#     so), accepts it with `relocated`, and refuses nothing without a
#     snapshot;
#   - a ro view refuses writes issued while jsnap is suspended, without
#     changing the snapshot (content, validity map, store).
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=16
LEN=$((MIB * 2048))
REF=$SCRATCH/ref     # production (the jsnap device)
SNAP=$SCRATCH/snap   # the rw view
head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
cp "$REF" "$SNAP"

# ---- item 15: suspend quiesces ---------------------------------------------------
dev=$(mk_jsnap sq $LEN format) || { fail "create jsnap"; finish; }
ok "create jsnap"
check_cmd "snapshot" msg sq snapshot
view=$(dm_create sqv "0 $LEN jsnap-view $dev rw") || { fail "create rw view"; finish; }
ok "create rw view"
check_cmd "hydrate on" msg sq hydrate on

# A writer on the view: 4 KiB writes at random 4 KiB offsets, each also
# applied to the model; it records how many it completed.
(
	for ((i = 0; i < 400; i++)); do
		off=$(((RANDOM * 32768 + RANDOM) % (LEN / 8) * 8))
		wr "$view" "$off" 8 "$SNAP" || exit 1
	done
) &
wpid=$!
sleep 2
check_cmd "suspend jsnap with view writes and hydration running" timeout 60 dmsetup suspend sq
sums() { echo "$(dev_sum "$PROD" $MIB) $(dev_sum "$STORE" $MIB) $(dev_sum "$PMEM")"; }
s1=$(sums)
sleep 2
s2=$(sums)
check_eq "production, store and pmem unchanged while suspended" "$s1" "$s2"
check_cmd "resume" timeout 60 dmsetup resume sq
if timeout 300 tail --pid=$wpid -f /dev/null; then wait $wpid; rc=$?; else rc=124; kill $wpid 2>/dev/null; fi
check_eq "view writer completed after resume" 0 "$rc"
same "rw view = its model after resume" "$view" "$SNAP"
same "jsnap = production model (view writes never reach it)" "$dev" "$REF"
for ((i = 0; i < 600; i++)); do
	[[ $(status_get sq hydration) == done ]] && break
	sleep 0.5
done
check_eq "hydration done after resume" done "$(status_get sq hydration)"
same "store alone = rw view model after hydration" "$STORE" "$SNAP"
check_eq "errors=0" 0 "$(status_get sq errors)"
dm_remove sqv || fail "remove view"

# ---- a ro view refuses the writes that reach it while jsnap is suspended ----------
# They used to be deferred to the view's worker, which made their chunk the
# view's own before refusing them: a whole-chunk write put its refused data
# into the snapshot (store + validity bit), a partial one preserved the chunk.
check_cmd "drop the hydrated snapshot" msg sq drop
check_cmd "snapshot again (nothing preserved)" msg sq snapshot
rov=$(dm_create sqr "0 $LEN jsnap-view $dev ro") || { fail "create ro view"; finish; }
ok "create ro view"
store0=$(dev_sum "$STORE" $MIB)
CB=$((CHUNK * 512))
check_cmd "suspend jsnap" timeout 60 dmsetup suspend sq
timeout 120 dd if=/dev/urandom of="$rov" bs=$CB seek=3 count=1 oflag=direct status=none 2>/dev/null &
w1=$!
timeout 120 dd if=/dev/urandom of="$rov" bs=512 seek=$((5 * CHUNK + 1)) count=1 oflag=direct status=none 2>/dev/null &
w2=$!
sleep 2
check_cmd "resume" timeout 60 dmsetup resume sq
wait $w1
r1=$?
wait $w2
r2=$?
check_eq "whole-chunk write to the ro view refused (not hung)" refused "$( ((r1 != 0 && r1 != 124)) && echo refused || echo "exit $r1")"
check_eq "partial write to the ro view refused (not hung)" refused "$( ((r2 != 0 && r2 != 124)) && echo refused || echo "exit $r2")"
same "ro view = the snapshot's content after the refused writes" "$rov" "$REF"
check_eq "no chunk preserved by a refused write" 0 "$(status_get sq preserved)"
check_eq "store unchanged by the refused writes" "$store0" "$(dev_sum "$STORE" $MIB)"
dm_remove sqr || fail "remove ro view"

# ---- item 8: the store's identity ------------------------------------------------
# The journal holds an active snapshot on $STORE.  A table naming another
# store of the right size ($SPARE, 64 MiB) must be refused.
dm_remove sq || fail "remove jsnap"
table_spare="0 $LEN jsnap $PROD $PMEM $SPARE $CHUNK"
s_before=$(dev_sum "$SPARE")
dmesg_mark
check_fails "another store refused while a snapshot exists" dmsetup create sq2 --table "$table_spare"
dm_mknodes
check_match "the refusal names the store" "another store device" "$(dmesg_since_mark | grep jsnap | tail -n 1)"
check_eq "the other store is untouched" "$s_before" "$(dev_sum "$SPARE")"
# The right store still works, with the snapshot intact.
dev=$(mk_jsnap sq $LEN) || fail "re-create with the right store"
check_eq "snapshot still active" active "$(status_get sq snapshot)"
check_cmd "drop" msg sq drop
dm_remove sq || fail "remove jsnap"
# Without a snapshot the store may change.
if dev=$(dm_create sq2 "$table_spare"); then ok "another store accepted without a snapshot"; else
	fail "another store accepted without a snapshot"
fi
dm_remove sq2 2>/dev/null
no_splat_since_start "no kernel splat"
cleanup_dm
finish
