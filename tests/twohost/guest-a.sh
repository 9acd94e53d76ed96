#!/usr/bin/env bash
# tests/twohost/guest-a.sh SHARED_DIR — host A of tests/twohost.sh (see
# there): jsnap with ext4 on it, the frozen file system's snapshot, a ro
# and a rw jsnap-view exported over NVMe/TCP (nvmet through configfs),
# writes to the base volume and hydration while host B works.
# Env: TWOHOST_BREAK=a (deliberately write into production's raw tail, so
# that case (a) must fail).
set -uo pipefail
# shellcheck disable=SC2034 # (used by lib.sh)
SIDE=A SH=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
export DM_DISABLE_UDEV=1

check_decl setup "jsnap (chunk 64) over prod/pmem/store, ext4 on it, files written"
check_decl snap "fsfreeze -f, snapshot, file hashes, fsfreeze -u: snapshot=active, ro and rw views created"
check_decl export "both views exported through nvmet (configfs, tcp $IP_A:$PORT)"
check_decl writes "post-snapshot writes on A changed the files (modified files differ from the freeze hashes, new files made) and were drained"
check_decl c_hyd "(c) hydration=running on A while B disconnected and reconnected"
check_decl a_tail "(a) B's writes reach only the view: production's raw tail unchanged (sha256 before/after)"
check_decl perf "throughput: fio 4k randread + 1M read on the ro view on A directly"
check_decl e_done "(e) hydration reaches done"
check_decl e_store "(e) the store equals the snapshot: file-system region = freeze-time image, raw tail = B's rw view tail"
check_decl e_view "(e) the ro view reads exactly the store after hydration"
check_decl d_remove "(d) dmsetup remove --force of the exported ro view returns in bounded time and detaches it (views 2 -> 1)"
check_decl d_teardown "(d) nvmet teardown and view removal in bounded time; jsnap answers, views=0"
check_decl fsck "production's ext4 clean (e2fsck -fn) and A's last writes on it"

MNT=/tmp/twohost-a/mnt
W=/tmp/twohost-a # (the guest's own /tmp)
mkdir -p "$MNT" "$W"
CFG=/sys/kernel/config/nvmet
# teardown_views: nvmet off, the views removed (bounded: nothing here may
# hang the run)
teardown_views() {
	local s d
	for s in "$NQN_RO" "$NQN_RW"; do
		rm -f "$CFG/ports/1/subsystems/$s" 2>/dev/null
		[[ -e $CFG/subsystems/$s/namespaces/1/enable ]] && bounded 30 sh -c "echo 0 >$CFG/subsystems/$s/namespaces/1/enable"
		rmdir "$CFG/subsystems/$s/namespaces/1" "$CFG/subsystems/$s" 2>/dev/null
	done
	rmdir "$CFG/ports/1" 2>/dev/null
	for d in snap_ro snap_rw; do [[ -e /dev/mapper/$d ]] && bounded 30 dmsetup remove "$d" 2>/dev/null; done
	dmsetup mknodes
}
cleanup() {
	[[ -n ${wpid:-} ]] && { touch "$W/stop"; wait "$wpid" 2>/dev/null; }
	teardown_views
	mountpoint -q "$MNT" && { fsfreeze -u "$MNT" 2>/dev/null; bounded 60 umount "$MNT"; }
	for d in prod sdelay; do [[ -e /dev/mapper/$d ]] && bounded 60 dmsetup remove "$d" 2>/dev/null; done
}
finish() {
	cleanup
	post A.exit "$(date +%s)"
	print_checks
	# (the guest's exit status says whether it ran to the end; the checks
	# say the rest)
	[[ -n ${completed:-} ]] || exit 1
	exit 0
}
trap finish EXIT
st() { dmsetup status prod | tr ' ' '\n' | sed -n "s/^$1=//p"; }
msg() { bounded 120 dmsetup message prod 0 "$@"; }
fail_out() { abort_run "$1"; exit 1; }

# ---- set-up ----------------------------------------------------------------
net_up $IP_A || fail_out "no private NIC"
PROD=/dev/disk/jsnap/prod STORE=/dev/disk/jsnap/store
NS=$((DEV_MB * 2048))
mount -t configfs none /sys/kernel/config 2>/dev/null
insmod "$JSNAP_MODULE" || fail_out "insmod $JSNAP_MODULE failed"
# The store behind dm-delay (writes 40 ms; 2 chunks per hydration step) while B works, so that hydration
# is still running when B reconnects; replaced by a plain mapping for (e).
dmsetup create sdelay --table "0 $NS delay $STORE 0 0 $STORE 0 40" && dmsetup mknodes
dmsetup create prod --table "0 $NS jsnap $PROD $PMEM /dev/mapper/sdelay 64 3 format hydrate_batch 2" && dmsetup mknodes
[[ -b /dev/mapper/prod ]] || fail_out "cannot create jsnap: $(dmesg | grep -i jsnap | tail -n 2)"
J=/dev/mapper/prod
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 "$J" $((FS_MB * 256)) || fail_out "mkfs.ext4"
# the raw tail: a random pattern A never writes again (before the mount: a
# mounted device refuses other writers)
dd if=/dev/urandom of="$J" bs=1M seek=$FS_MB count=$TAIL_MB oflag=direct status=none || fail_out "cannot write the raw tail"
tail0=$(python3 "$BLK" sha "$J" $FS_MB $TAIL_MB)
mount -t ext4 "$J" "$MNT" || fail_out "mount"
nf=0
for d in 0 1 2 3; do
	mkdir -p "$MNT/d$d"
	for i in $(seq 10); do
		head -c $(((RANDOM % 128 + 1) * 4096 + RANDOM % 4096)) /dev/urandom >"$MNT/d$d/f$i" && nf=$((nf + 1))
	done
done
sync
res_eq setup 40 "$nf" "files written: $nf, $(du -sm "$MNT" | cut -f1) MiB"

# ---- the snapshot of the frozen file system ------------------------------------------
mkdir -p "$SH/freeze"
fsfreeze -f "$MNT"
msg snapshot; src=$?
(cd "$MNT" && find . -type f | sort | xargs sha256sum) >"$SH/freeze/hashes.tmp"
python3 "$BLK" sha "$J" 0 $FS_MB >"$SH/freeze/fs.sha.tmp"
python3 "$BLK" mibs "$J" 0 $FS_MB >"$SH/freeze/mibs.tmp"
fsfreeze -u "$MNT"
echo "$tail0" >"$SH/freeze/tail.sha.tmp"
for f in hashes fs.sha mibs tail.sha; do mv "$SH/freeze/$f.tmp" "$SH/freeze/$f"; done
fs0=$(cat "$SH/freeze/fs.sha")
for m in ro rw; do
	dmsetup create snap_$m --table "0 $NS jsnap-view $J $m" && dmsetup mknodes
done
if [[ $src == 0 && $(st snapshot) == active && -b /dev/mapper/snap_ro && -b /dev/mapper/snap_rw && $(st views) == 2 ]]; then
	res snap ok "$(wc -l <"$SH/freeze/hashes") file hashes; views=2"
else
	res snap fail "message rc=$src snapshot=$(st snapshot) views=$(st views); $(dmesg | grep -i jsnap | tail -n 2)"
	fail_out "snapshot/views"
fi

# ---- nvmet: one subsystem per view, one tcp port on the private address -----------------
export_view() { # export_view NQN DEV
	local s=$CFG/subsystems/$1
	mkdir "$s" && echo 1 >"$s/attr_allow_any_host" &&
		mkdir "$s/namespaces/1" && echo -n "$2" >"$s/namespaces/1/device_path" &&
		echo 1 >"$s/namespaces/1/enable" && ln -s "$s" "$CFG/ports/1/subsystems/$1"
}
if mkdir "$CFG/ports/1" && echo tcp >"$CFG/ports/1/addr_trtype" && echo ipv4 >"$CFG/ports/1/addr_adrfam" &&
	echo $IP_A >"$CFG/ports/1/addr_traddr" && echo $PORT >"$CFG/ports/1/addr_trsvcid" &&
	export_view $NQN_RO /dev/mapper/snap_ro && export_view $NQN_RW /dev/mapper/snap_rw; then
	res export ok "$NQN_RO, $NQN_RW"
else
	res export fail "configfs: $(dmesg | grep -i nvmet | tail -n 2)"
	fail_out "nvmet export"
fi
post A.ready "$NS"

# ---- A keeps writing the base volume, and hydrates ---------------------------------------
msg hydrate on
note "hydrate on: $(dmsetup status prod)"
# the first round: every freeze-time file modified (4 KiB in place, an
# append), 20 new files, then drain (the old data lives on only in the store)
for f in "$MNT"/d*/f*; do
	dd if=/dev/urandom of="$f" bs=4096 count=1 seek=$((RANDOM % 4)) conv=notrunc status=none
	head -c 5000 /dev/urandom >>"$f"
done
mkdir -p "$MNT/new"
for i in $(seq 20); do head -c $((RANDOM * 8 + 1)) /dev/urandom >"$MNT/new/n$i"; done
sync
msg drain
(cd "$MNT" && find . -type f | sort | xargs sha256sum) >"$W/after1"
changed=$(join -v1 <(sort "$SH/freeze/hashes") <(sort "$W/after1") | wc -l)
nnew=$(find "$MNT/new" -type f | wc -l)
ls "$MNT/new" >"$SH/A.newfiles"
if [[ $changed == 40 && $nnew == 20 ]]; then res writes ok "40 files modified, 20 new, drained"
else res writes fail "modified $changed of 40, new $nnew of 20"; fi
post A.wrote
# ... and goes on writing (new and modified files) until the throughput phase
writer() {
	local i=0
	while [[ ! -e $W/stop ]]; do
		i=$((i + 1))
		head -c $((RANDOM * 4 + 1)) /dev/urandom >"$MNT/new/w$i"
		rm -f "$MNT/new/w$((i - 50))" # (bounded space)
		dd if=/dev/urandom of="$MNT/d$((i % 4))/f$((i % 10 + 1))" bs=4096 count=2 seek=$((i % 3)) conv=notrunc status=none
		((i % 5)) || sync
		sleep 0.2
	done
	sync
	echo "$i" >"$W/writer.n"
}
writer &
wpid=$!

# ---- (c) B disconnects and reconnects while hydration is running --------------------------
await B.c_want 600 || exit 1
h1=$(st hydration) p1=$(st preserved)
post A.c_go "$h1 preserved=$p1"
await B.c_done 600 || exit 1
h2=$(st hydration) p2=$(st preserved)
if [[ $h1 == running && $h2 == running ]]; then res c_hyd ok "preserved $p1 -> $p2 of $(st chunks)"
else res c_hyd fail "hydration=$h1 at B's disconnect, $h2 after its reconnect (preserved $p1 -> $p2)"; fi

# ---- B verifies the files and writes the rw view's tail; then the throughput phase ---------------
await B.rw_done 900 || exit 1
if [[ ${TWOHOST_BREAK:-} == a ]]; then
	# (on the production disk under jsnap: the jsnap device itself, mounted,
	# refuses other writers)
	note "TWOHOST_BREAK=a: writing 1 MiB into production's raw tail (case (a) must fail)"
	dd if=/dev/urandom of="$PROD" bs=1M seek=$((FS_MB + 3)) count=1 oflag=direct status=none || note "the break write failed"
fi
touch "$W/stop"; wait "$wpid"; wpid=
note "writer stopped after $(cat "$W/writer.n") more steps"
msg hydrate off
sync; echo 3 >/proc/sys/vm/drop_caches
post A.perf_go
await B.perf_done 300 || exit 1
if perfA=$(fio_read /dev/mapper/snap_ro "$W/fioA"); then
	read -r iA bA <<<"$perfA"
	read -r iB bB <<<"$(get B.perf_done)"
	res perf ok "A: 4k randread $iA IOPS, 1M read $bA MB/s"
	note "PERF view on A directly: 4k randread QD16 $iA IOPS, 1M read QD4 $bA MB/s"
	note "PERF view over NVMe/TCP on B: 4k randread QD16 ${iB:-?} IOPS, 1M read QD4 ${bB:-?} MB/s"
	python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print('# twohost PERF ratio B/A: 4k randread %.2f, 1M read %.2f' % (c/a, d/b))" \
		"$iA" "$bA" "${iB:-0}" "${bB:-0}"
else
	res perf fail "fio on A: $(tail -n 2 "$W"/fioA.*.err 2>/dev/null)"
fi

# ---- (a) production's raw tail ------------------------------------------------------------------
msg drain
res_eq a_tail "$tail0" "$(python3 "$BLK" sha "$J" $FS_MB $TAIL_MB)" "production raw tail sha256"

# ---- (e) hydration to done, the store = the snapshot ----------------------------------------------
msg hydrate on
# the store without the delay now (suspend waits for the delayed writes)
dmsetup suspend sdelay && dmsetup reload sdelay --table "0 $NS linear $STORE 0" && dmsetup resume sdelay
note "store delay removed: $(dmsetup table sdelay)"
t=$SECONDS
while [[ $(st hydration) != 'done' ]] && ((SECONDS - t < 300)); do sleep 1; done
res_eq e_done 'done' "$(st hydration)" "after $((SECONDS - t)) s, preserved=$(st preserved) chunks=$(st chunks)"
rwtail=$(get B.rw_done)
sfs=$(python3 "$BLK" sha "$STORE" 0 $FS_MB) stail=$(python3 "$BLK" sha "$STORE" $FS_MB $TAIL_MB)
if [[ $sfs == "$fs0" && $stail == "$rwtail" ]]; then res e_store ok
else res e_store fail "store fs region ${sfs:0:12} (freeze ${fs0:0:12}), tail ${stail:0:12} (B's rw view tail ${rwtail:0:12})"; fi
res_eq e_view "$(python3 "$BLK" sha "$STORE" 0 $DEV_MB)" "$(python3 "$BLK" sha /dev/mapper/snap_ro 0 $DEV_MB)" "sha256 of the whole device"
[[ $(st hydration) == 'done' ]] || msg hydrate off

# ---- (d) the ro view removed under B ------------------------------------------------------------------
post A.d_ready
await B.d_reading 300 || exit 1
sleep 2
post A.d_removing
t=$SECONDS
bounded 60 dmsetup remove --force snap_ro >"$W/rm.out" 2>&1; rrc=$?
dt=$((SECONDS - t)) v=$(st views)
post A.d_removed "$dt"
note "dmsetup remove --force snap_ro: rc=$rrc in $dt s ($(tr '\n' ' ' <"$W/rm.out")); views=$v; table now: $(dmsetup table snap_ro 2>&1)"
if [[ $rrc != 124 && $v == 1 ]]; then res d_remove ok "rc=$rrc in $dt s"
else res d_remove fail "rc=$rrc after $dt s, views=$v"; fi
await B.d_done 300
t=$SECONDS
teardown_views
dt=$((SECONDS - t))
left=$(find /dev/mapper -name "snap_*" | wc -l) v=$(st views)
if [[ $left == 0 && $v == 0 && ! -e $CFG/subsystems/$NQN_RO ]] && ((dt < 120)); then res d_teardown ok "$dt s"
else res d_teardown fail "after $dt s: views=$v, view devices left: $left, $(ls $CFG/subsystems 2>&1)"; fi

# ---- production's file system ------------------------------------------------------------------------
(cd "$MNT" && find . -type f | sort | xargs sha256sum) >"$W/last"
bounded 60 umount "$MNT"
fsck_out=$(bounded 120 e2fsck -fn "$J" 2>&1); frc=$?
mount -o ro -t ext4 "$J" "$MNT" && same=$(cd "$MNT" && find . -type f | sort | xargs sha256sum | cmp -s - "$W/last" && echo same)
umount "$MNT" 2>/dev/null
if [[ $frc == 0 && ${same:-} == same ]]; then res fsck ok "$(wc -l <"$W/last") files"
else res fsck fail "e2fsck rc=$frc ${same:-files differ}: $(tail -n 3 <<<"$fsck_out" | tr '\n' ' ')"; fi
note "final status: $(dmsetup status prod)"
completed=1
exit 0
