#!/usr/bin/env bash
# 50-snapshot: snapshot / jsnap-view (ro, rw, mirror) / drop / hydrate
# against the contract (DESIGN.md §2.1-2.3).  Skipped if the module does not
# register jsnap-view.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

if ! dmsetup targets | grep -q '^jsnap-view '; then
	note "jsnap-view target not registered: skipped"
	finish
fi

SL=32768 # 16 MiB slices
MIB=16
dm_create sn_p "0 $SL linear $PROD 0" >/dev/null || { fail "setup linear sn_p"; finish; }
dm_create sn_s "0 $SL linear $STORE 0" >/dev/null || { fail "setup linear sn_s"; finish; }
J=/dev/mapper/sn
V=/dev/mapper/sv

dmesg_mark
if dm_create sn "0 $SL jsnap /dev/mapper/sn_p $PMEM /dev/mapper/sn_s $CHUNK 1 format" >/dev/null; then
	ok "create jsnap"
else
	fail "create jsnap" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
	finish
fi
check_eq "snapshot=none initially" none "$(status_get sn snapshot)"
dmesg_mark
check_fails "view without snapshot refused" dmsetup create sv --table "0 $SL jsnap-view $J ro"
dmsetup remove sv >/dev/null 2>&1

# Pattern A everywhere, then the snapshot.
dd if=/dev/urandom of=$J bs=1M count=$MIB oflag=direct status=none
A=$(dev_sum $J $MIB)
check_cmd "message snapshot" msg sn snapshot
check_eq "snapshot=active" active "$(status_get sn snapshot)"

# Pattern B over parts of production (partial chunks, chunk-straddling).
dd if=/dev/urandom of=$J bs=512 seek=0 count=2048 oflag=direct status=none
dd if=/dev/urandom of=$J bs=512 seek=5000 count=77 oflag=direct status=none
dd if=/dev/urandom of=$J bs=1M seek=8 count=2 oflag=direct status=none
B=$(dev_sum $J $MIB)
[[ $A != "$B" ]] && ok "production changed after snapshot" || fail "production changed after snapshot"

if dm_create sv "0 $SL jsnap-view $J ro" >/dev/null; then ok "create ro view"; else
	fail "create ro view" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
fi
if [[ -b $V ]]; then
	check_eq "ro view reads the snapshot (data in journal)" "$A" "$(dev_sum $V $MIB)"
	check_fails "write to ro view fails" dd if=/dev/zero of=$V bs=4k count=1 oflag=direct status=none
	check_fails "snapshot refused while a view is open" msg sn snapshot
	check_fails "drop refused while a view is open" msg sn drop
	check_cmd "drain with view open" msg sn drain
	check_eq "pending=0 after drain" 0 "$(status_get sn pending)"
	p=$(status_get sn preserved)
	if [[ $p =~ ^[0-9]+$ ]] && ((p > 0)); then ok "preserved>0 after drain ($p)"; else fail "preserved>0 after drain" "preserved=$p"; fi
	check_eq "ro view still reads the snapshot after destage" "$A" "$(dev_sum $V $MIB)"
	check_eq "production reads B after destage" "$B" "$(dev_sum $J $MIB)"
	check_cmd "remove ro view" dm_remove sv
fi

# Hydration: the whole snapshot copied to the store.
check_cmd "hydrate on" msg sn hydrate on
h=
for _ in $(seq 120); do
	h=$(status_get sn hydration)
	[[ $h == done ]] && break
	sleep 0.5
done
check_eq "hydration done" done "$h"
check_eq "preserved == chunks after hydration" "$(status_get sn chunks)" "$(status_get sn preserved)"
check_eq "store holds the snapshot after hydration" "$A" "$(dev_sum /dev/mapper/sn_s $MIB)"
msg sn hydrate off >/dev/null 2>&1

check_cmd "drop" msg sn drop
check_eq "snapshot=none after drop" none "$(status_get sn snapshot)"

# rw view: writes change only the snapshot.
check_cmd "snapshot (for rw)" msg sn snapshot
C=$(dev_sum $J $MIB)
if dm_create sv "0 $SL jsnap-view $J rw" >/dev/null; then
	ok "create rw view"
	head -c $((64 * 1024 + 512)) /dev/urandom >"$SCRATCH/w"
	check_cmd "write to rw view" dd if="$SCRATCH/w" of=$V bs=512 seek=100 oflag=direct status=none
	if cmp -s "$SCRATCH/w" <(read_range $V 100 $((129))); then ok "rw view reads its own write"; else fail "rw view reads its own write"; fi
	check_eq "production unaffected by rw view write" "$C" "$(dev_sum $J $MIB)"
	check_cmd "remove rw view" dm_remove sv
else
	fail "create rw view"
fi
check_cmd "drop (rw)" msg sn drop

# mirror view (volume A): its writes reach production too; production
# writes never reach it.
check_cmd "snapshot (for mirror)" msg sn snapshot
if dm_create sv "0 $SL jsnap-view $J mirror" >/dev/null; then
	ok "create mirror view"
	head -c 8192 /dev/urandom >"$SCRATCH/m"
	check_cmd "write to mirror view" dd if="$SCRATCH/m" of=$V bs=4096 seek=10 oflag=direct status=none
	if cmp -s "$SCRATCH/m" <(read_range $V 80 16); then ok "mirror view reads its own write"; else fail "mirror view reads its own write"; fi
	if cmp -s "$SCRATCH/m" <(read_range $J 80 16); then ok "mirror view write reached production"; else fail "mirror view write reached production"; fi
	before=$(read_range $V 4000 8 | sum_stream)
	dd if=/dev/urandom of=$J bs=512 seek=4000 count=8 oflag=direct status=none
	check_eq "production write does not reach the mirror view" "$before" "$(read_range $V 4000 8 | sum_stream)"
	check_cmd "remove mirror view" dm_remove sv
else
	fail "create mirror view"
fi
check_cmd "drop (mirror)" msg sn drop
check_cmd "drain" msg sn drain
check_cmd "remove jsnap" dm_remove sn
for d in sn_s sn_p; do dm_remove "$d" >/dev/null 2>&1 || fail "remove $d"; done
no_splat_since_start "no kernel splat"
finish
