#!/usr/bin/env bash
# `snapshot` is O(1) and drains nothing (DESIGN.md §2.1):
#   (a) production behind dm-delay (writes and flushes 1 s, reads not):
#       while a destage batch is in flight (`drain` running), `snapshot`
#       returns in < 500 ms and does not destage; the view holds exactly
#       the data as of the message.
#   (b) its time does not grow with the volume: median of 5 on 1 TiB <
#       3 x median on 1 GiB + 20 ms (production and store are dm-zero).
. "$(dirname "$0")/lib.sh"
cleanup_dm

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# timed_ms CMD...: run CMD, print its wall time in ms; fails as CMD fails
timed_ms() {
	local t0 t1 rc=0
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1 || rc=$?
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
	return $rc
}
median() { tr ' ' '\n' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# ---- (a) snapshot while a destage batch is in flight ------------------------------
MIB=16
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
SNAP=$SCRATCH/snap
head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
D=$(dm_create o1d "0 $LEN delay $PROD 0 0 $PROD 0 1000") || { fail "a: dm-delay"; finish; }
dev=$(dm_create o1 "0 $LEN jsnap $D $PMEM $STORE $CHUNK 2 format no_destage") ||
	{ fail "a: create jsnap over dm-delay"; cleanup_dm; finish; }
ok "a: create jsnap over dm-delay"
# 512 scattered 4 KiB writes (every other 8 KiB: no two merge), so that the
# drain needs several batches of (1 s write + 1 s flush).
blk=$SCRATCH/blk
head -c $((512 * 4096)) /dev/urandom >"$blk"
for ((i = 0; i < 512; i++)); do
	dd if="$blk" of="$dev" bs=4096 skip=$i seek=$((i * 2)) count=1 oflag=direct status=none || { fail "a: write $i"; break; }
	dd if="$blk" of="$REF" bs=4096 skip=$i seek=$((i * 2)) count=1 conv=notrunc status=none
done
same "a: jsnap = model before snapshot" "$dev" "$REF"
p0=$(status_get o1 pending)
note "a: pending=$p0 before drain"
(timeout 300 dmsetup message o1 0 drain >"$SCRATCH/drain.out" 2>&1; echo $? >"$SCRATCH/drain.rc") &
dpid=$!
sleep 0.5
pb=$(status_get o1 pending)
db=$(status_get o1 destaged_bytes)
ms=$(timed_ms dmsetup message o1 0 snapshot)
src=$?
pa=$(status_get o1 pending)
da=$(status_get o1 destaged_bytes)
cp "$REF" "$SNAP"
note "a: snapshot took $ms ms; pending $pb -> $pa, destaged_bytes $db -> $da"
check_eq "a: snapshot message succeeds" 0 $src
if ((ms < 500)); then ok "a: snapshot during an in-flight destage batch returns in < 500 ms ($ms ms)"; else
	fail "a: snapshot during an in-flight destage batch returns in < 500 ms" "$ms ms"
fi
if ((pa > 0)); then ok "a: snapshot drained nothing (pending=$pa after it)"; else
	fail "a: snapshot drained nothing" "pending $pb -> $pa"
fi
if [[ -e $SCRATCH/drain.rc ]]; then
	fail "a: drain still running after the snapshot" "drain returned $(cat "$SCRATCH/drain.rc") already"
else
	ok "a: drain still running after the snapshot"
fi
# writes after the message go to the jsnap device only
for ((i = 0; i < 20; i++)); do
	wr1 "$dev" 0 $((RANDOM % (LEN - 64))) $((RANDOM % 64 + 1)) "$REF" || fail "a: post-snapshot write $i"
done
if view=$(dm_create o1v "0 $LEN jsnap-view $dev ro"); then
	same "a: view = data as of the snapshot message (drain in flight)" "$view" "$SNAP"
else
	fail "a: create view"
fi
wait $dpid
check_eq "a: background drain succeeded" 0 "$(cat "$SCRATCH/drain.rc" 2>/dev/null)"
check_cmd "a: drain after the post-snapshot writes" timeout 300 dmsetup message o1 0 drain
[[ -n ${view:-} ]] && same "a: view = snapshot after drain" "$view" "$SNAP"
same "a: jsnap = model after drain" "$dev" "$REF"
same "a: production = model after drain" "$PROD" "$REF"
dm_remove o1v
check_cmd "a: drop" msg o1 drop
dm_remove o1 || fail "a: remove jsnap"
dm_remove o1d || fail "a: remove dm-delay"
cleanup_dm

# ---- (b) snapshot time vs. volume size -------------------------------------------
# time_snapshots NAME N_SECTORS: prints the median of 5 timed snapshots
time_snapshots() {
	local name=$1 n=$2 times=() base=() t i
	dm_create o1zp "0 $n zero" >/dev/null || { fail "b: zero production ($n)"; return 1; }
	dm_create o1zs "0 $n zero" >/dev/null || { fail "b: zero store ($n)"; return 1; }
	dmesg_mark
	if ! dm_create o1z "0 $n jsnap /dev/mapper/o1zp $PMEM /dev/mapper/o1zs 8 1 format" >/dev/null; then
		fail "b: jsnap of $name over the 256M pmem (chunk 8)" "$(dmesg_since_mark | grep jsnap | tail -n 2)"
		return 1
	fi
	ok "b: jsnap of $name over the 256M pmem (chunk 8, chunks=$(status_get o1z chunks))"
	msg o1z snapshot && msg o1z drop || { fail "b: $name: first snapshot/drop"; return 1; }
	for ((i = 0; i < 5; i++)); do
		# (the same dmsetup round trip doing nothing: an empty drain)
		t=$(timed_ms dmsetup message o1z 0 drain) || { fail "b: $name: drain $i"; return 1; }
		base+=("$t")
		t=$(timed_ms dmsetup message o1z 0 snapshot) || { fail "b: $name: snapshot $i"; return 1; }
		times+=("$t")
		msg o1z drop || { fail "b: $name: drop $i"; return 1; }
	done
	note "b: $name: snapshot times (ms): ${times[*]}; empty drain (dmsetup round trip): ${base[*]}"
	dm_remove o1z && dm_remove o1zs && dm_remove o1zp
	echo "${times[*]}" | median >"$SCRATCH/median"
	echo "${base[*]}" | median >"$SCRATCH/median.base"
}
if time_snapshots 1GiB $((1 << 21)); then
	m1=$(cat "$SCRATCH/median")
	b1=$(cat "$SCRATCH/median.base")
	cleanup_dm
	if time_snapshots 1TiB $((1 << 31)); then
		m2=$(cat "$SCRATCH/median")
		note "b: medians: 1 GiB $m1 ms (round trip $b1 ms), 1 TiB $m2 ms (round trip $(cat "$SCRATCH/median.base") ms)"
		if ((m2 < 3 * m1 + 20)); then ok "b: snapshot O(1): median 1 TiB $m2 ms < 3 x $m1 + 20 ms (1 GiB)"; else
			fail "b: snapshot O(1)" "median 1 TiB $m2 ms >= 3 x $m1 + 20 ms (1 GiB)"
		fi
	fi
fi
cleanup_dm
no_splat_since_start "no kernel splat"
finish
