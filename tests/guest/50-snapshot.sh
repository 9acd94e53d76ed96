#!/usr/bin/env bash
# Snapshot content (DESIGN.md §2.1/§2.2/§2.3, issue 4), checked against
# reference files that model what each volume must contain:
#   - pre-snapshot data partly still in the journal, post-snapshot
#     overwrites of mixed sizes and alignments (partial chunks);
#   - the ro view returns exactly the snapshot, before and after drain,
#     while a writer races with view reads, and after a table reload;
#   - writes to a ro view fail; snapshot/drop refused while a view is open;
#   - hydration to completion: the store ALONE holds the snapshot;
#   - rw view: writes are visible on the view only, production unchanged;
#   - hydration concurrent with writes on both volumes;
#   - drop.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=32
LEN=$((MIB * 2048))
REF=$SCRATCH/ref      # what the jsnap device must return
SNAP=$SCRATCH/snap    # what the snapshot must return
VIEWM=$SCRATCH/view   # what an rw view must return

# random_writes DEV N [MODEL...]: N writes of 1..300 sectors anywhere
random_writes() {
	local dev=$1 n=$2 i off len
	shift 2
	for ((i = 0; i < n; i++)); do
		len=$((RANDOM % 300 + 1))
		off=$(((RANDOM * 32768 + RANDOM) % (LEN - len)))
		wr "$dev" "$off" "$len" "$@" || return 1
	done
}

# Production starts with known content.
head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M oflag=direct status=none
dev=$(mk_jsnap snap0 $LEN format) || { fail "create jsnap"; finish; }
ok "create jsnap"

# Pre-snapshot writes: they stay in the journal (default watermarks).
random_writes "$dev" 40 "$REF" || fail "pre-snapshot writes"
same "jsnap before snapshot" "$dev" "$REF"
check_eq "snapshot none before" none "$(status_get snap0 snapshot)"
check_fails "view refused without snapshot" dmsetup create v0 --table "0 $LEN jsnap-view $dev ro"
dm_mknodes

check_cmd "snapshot message" msg snap0 snapshot
cp "$REF" "$SNAP"
check_eq "status snapshot=active" active "$(status_get snap0 snapshot)"
check_eq "status preserved=0" 0 "$(status_get snap0 preserved)"
check_fails "second snapshot refused" msg snap0 snapshot

# Post-snapshot overwrites, many, partial chunks.
random_writes "$dev" 80 "$REF" || fail "post-snapshot writes"
wr "$dev" 1 7 "$REF"
wr "$dev" 130 1 "$REF"
same "jsnap after overwrites" "$dev" "$REF"

view=$(dm_create v0 "0 $LEN jsnap-view $dev ro") || { fail "create ro view"; finish; }
ok "create ro view"
check_eq "view status" "mode=ro snapshot_active=1" "$(dmsetup status v0 | cut -d' ' -f4-)"
check_eq "status views=1" 1 "$(status_get snap0 views)"
same "ro view = snapshot (journal holds data)" "$view" "$SNAP"
check_fails "write to ro view fails" dd if=/dev/zero of="$view" bs=4k count=1 oflag=direct status=none
check_fails "snapshot refused while view open" msg snap0 snapshot
check_fails "drop refused while view open" msg snap0 drop

# A writer races with view reads and with destage (low watermarks).
(random_writes "$dev" 60 "$REF") &
wpid=$!
for i in 1 2 3; do same "ro view = snapshot during writes ($i)" "$view" "$SNAP"; done
wait $wpid || fail "racing writer"
check_cmd "drain" msg snap0 drain
check_eq "pending=0 after drain" 0 "$(status_get snap0 pending)"
same "ro view = snapshot after drain" "$view" "$SNAP"
same "jsnap after drain" "$dev" "$REF"
same "production after drain" "$PROD" "$REF"
pres=$(status_get snap0 preserved)
if ((pres > 0)); then ok "copy-on-write preserved $pres chunks"; else fail "copy-on-write preserved chunks" "preserved=$pres"; fi

# Reload with the view removed: the snapshot survives.
dm_remove v0
dm_remove snap0
dev=$(mk_jsnap snap0 $LEN) || fail "re-create jsnap"
check_eq "snapshot active after reload" active "$(status_get snap0 snapshot)"
check_eq "preserved kept after reload" "$pres" "$(status_get snap0 preserved)"
view=$(dm_create v0 "0 $LEN jsnap-view $dev ro") || fail "re-create ro view"
same "ro view = snapshot after reload" "$view" "$SNAP"
same "jsnap after reload" "$dev" "$REF"

# Hydration to completion; the store alone then holds the snapshot.  The
# last chunk preserved raises one device-mapper event (as dm-clone's
# hydration does), so `dmsetup wait` needs no polling.
ev0=$(dm_events snap0)
check_cmd "hydrate on" msg snap0 hydrate on
chunks=$(status_get snap0 chunks)
for ((i = 0; i < 300; i++)); do
	[[ $(status_get snap0 hydration) == done ]] && break
	sleep 1
done
check_eq "hydration=done" done "$(status_get snap0 hydration)"
check_cmd "dmsetup wait returns once hydration is done" timeout 10 dmsetup wait snap0 "$ev0"
check_eq "one event at hydration done" $((ev0 + 1)) "$(dm_events snap0)"
check_eq "preserved=chunks" "$chunks" "$(status_get snap0 preserved)"
same "store alone = snapshot" "$STORE" "$SNAP"
same "ro view = snapshot after hydration" "$view" "$SNAP"
check_fails "hydrate bad arg" msg snap0 hydrate maybe

# rw view: writes land on the view only.
dm_remove v0
view=$(dm_create v0 "0 $LEN jsnap-view $dev rw") || fail "create rw view"
cp "$SNAP" "$VIEWM"
random_writes "$view" 30 "$VIEWM" || fail "rw view writes"
# Whole-chunk writes to unpreserved chunks skip the copy (seed 003).
wr "$view" $((700 * CHUNK)) "$CHUNK" "$VIEWM" || fail "rw view whole-chunk write"
wr "$view" $((702 * CHUNK)) $((3 * CHUNK)) "$VIEWM" || fail "rw view 3-chunk write"
same "rw view reads its writes" "$view" "$VIEWM"
same "jsnap unchanged by rw view" "$dev" "$REF"
check_cmd "drain after rw view writes" msg snap0 drain
same "production unchanged by rw view" "$PROD" "$REF"
dm_remove v0
check_cmd "drop" msg snap0 drop
check_eq "snapshot=none after drop" none "$(status_get snap0 snapshot)"
check_fails "drop without snapshot" msg snap0 drop

# A new snapshot, hydrated while both volumes are written.
check_cmd "snapshot #2" msg snap0 snapshot
cp "$REF" "$SNAP"
cp "$REF" "$VIEWM"
view=$(dm_create v0 "0 $LEN jsnap-view $dev rw") || fail "create rw view #2"
check_cmd "hydrate on #2" msg snap0 hydrate on
(random_writes "$dev" 40 "$REF") &
p1=$!
random_writes "$view" 20 "$VIEWM" || fail "view writes during hydration"
wait $p1 || fail "jsnap writes during hydration"
for ((i = 0; i < 300; i++)); do
	[[ $(status_get snap0 hydration) == done ]] && break
	sleep 1
done
check_eq "hydration #2 done" done "$(status_get snap0 hydration)"
same "rw view after concurrent hydration" "$view" "$VIEWM"
same "jsnap after concurrent hydration" "$dev" "$REF"
same "store alone = view after hydration" "$STORE" "$VIEWM"
dm_remove v0
check_cmd "drop #2" msg snap0 drop
check_cmd "drain at end" msg snap0 drain
same "production at end" "$PROD" "$REF"
check_eq "errors=0" 0 "$(status_get snap0 errors)"
check_eq "state=ok" ok "$(status_get snap0 state)"
dm_remove snap0
no_splat_since_start "no kernel splat"
finish
