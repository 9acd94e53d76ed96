#!/usr/bin/env bash
# tests/twohost/guest-b.sh SHARED_DIR — host B of tests/twohost.sh (see
# there): connects to A's ro and rw jsnap-views over NVMe/TCP, checks the
# snapshot's file system against the freeze-time hashes, writes the rw
# view's raw tail with fio, disconnects/reconnects mid-hydration, measures
# read throughput, and reads on while A removes the ro view.
set -uo pipefail
# shellcheck disable=SC2034 # (used by lib.sh)
SIDE=B SH=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

check_decl connect "nvme connect -t tcp to $IP_A:$PORT: both subsystems found by NQN, namespaces of the volume's size"
check_decl ro_sha "the ro view over NVMe/TCP reads the freeze-time image (sha256 of the file-system region)"
check_decl c_same "(c) disconnect + reconnect mid-hydration: the ro view unchanged (sha256 before = after = freeze-time)"
check_decl files "every file of the ro view's ext4 (mounted ro) has its freeze-time sha256"
check_decl b_never "(b) after A's post-snapshot writes (drained on A): every file still the freeze-time hash, none of A's new files, region sha256 unchanged"
check_decl ro_write "a write to the ro view's namespace fails and changes nothing"
check_decl fio_rw "fio --verify=crc32c writes and verifies the rw view's raw tail"
check_decl rw_visible "B's writes visible on the rw view (fio --verify_only, a new run)"
check_decl rw_fs "the rw view's file-system region is still the freeze-time image"
check_decl perf "throughput: the same fio read jobs on the ro view over NVMe/TCP"
check_decl d_errors "(d) the ro view removed on A while B reads: every read good before, only I/O errors after, never wrong data"
check_decl d_disc "(d) nvme disconnect of both controllers returns in bounded time"

MNT=/tmp/twohost-b/mnt
W=/tmp/twohost-b
mkdir -p "$MNT" "$W"
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:6a736e61-7000-4000-8000-0000000000b2
HOSTID=6a736e61-7000-4000-8000-0000000000b2
finish() {
	mountpoint -q "$MNT" && bounded 30 umount "$MNT"
	for n in "$NQN_RO" "$NQN_RW"; do [[ -n $(ctrl_of "$n") ]] && bounded 60 nvme disconnect -n "$n" >/dev/null 2>&1; done
	post B.exit "$(date +%s)"
	print_checks
	# (the guest's exit status says whether it ran to the end; the checks
	# say the rest)
	[[ -n ${completed:-} ]] || exit 1
	exit 0
}
trap finish EXIT
fail_out() { abort_run "$1"; exit 1; }

ctrl_of() { # ctrl_of NQN: the live controller (nvmeN) of that subsystem
	local c
	for c in /sys/class/nvme/nvme*; do
		[[ -r $c/subsysnqn && $(cat "$c/subsysnqn") == "$1" ]] && { echo "${c##*/}"; return; }
	done
}
dev_of() { # dev_of NQN: /dev/nvmeNnM of the subsystem's namespace (waits up to 20 s)
	local c n _
	for _ in $(seq 100); do
		c=$(ctrl_of "$1")
		if [[ -n $c ]]; then
			for n in /sys/class/nvme/$c/nvme*n*; do
				[[ -e $n && -b /dev/${n##*/} ]] && { echo "/dev/${n##*/}"; return 0; }
			done
		fi
		sleep 0.2
	done
	return 1
}
connect_both() {
	local n
	for n in "$NQN_RO" "$NQN_RW"; do
		bounded 60 nvme connect -t tcp -a $IP_A -s $PORT -n "$n" --hostnqn=$HOSTNQN --hostid=$HOSTID \
			--ctrl-loss-tmo=20 --reconnect-delay=2 >"$W/connect.out" 2>&1 ||
			{ note "nvme connect $n: $(cat "$W/connect.out")"; return 1; }
	done
	RO=$(dev_of "$NQN_RO") && RW=$(dev_of "$NQN_RW")
}
disconnect_both() {
	local n rc=0
	for n in "$NQN_RO" "$NQN_RW"; do
		bounded 60 nvme disconnect -n "$n" >"$W/disc.out" 2>&1 || { rc=1; note "nvme disconnect $n: $(cat "$W/disc.out")"; }
	done
	return $rc
}
sha() { python3 "$BLK" sha "$@" 2>"$W/sha.err" || echo "read-error:$(tail -n1 "$W/sha.err")"; }

net_up $IP_B || fail_out "no private NIC"
await A.ready 900 || exit 1
NS=$(get A.ready)
fs0=$(get freeze/fs.sha) tail0=$(get freeze/tail.sha)

# ---- connect, by subsystem NQN ---------------------------------------------------------
if connect_both; then
	res_eq connect "$NS $NS" "$(blockdev --getsz "$RO") $(blockdev --getsz "$RW")" "ro $RO, rw $RW; sectors"
else
	res connect fail "no namespace (ro '${RO:-}', rw '${RW:-}'); $(dmesg | grep -i nvme | tail -n 3 | tr '\n' ' ')"
	fail_out "nvme connect"
fi
ro1=$(sha "$RO" 0 $FS_MB)
res_eq ro_sha "$fs0" "$ro1" "sha256 of $FS_MB MiB"

# ---- (c) disconnect and reconnect while A hydrates ----------------------------------------
post B.c_want
await A.c_go 300 || exit 1
note "A at the disconnect: hydration=$(get A.c_go)"
disconnect_both && note "disconnected: controllers left: $(ls /sys/class/nvme 2>/dev/null | tr '\n' ' ')"
sleep 1
if connect_both; then
	ro2=$(sha "$RO" 0 $FS_MB)
	if [[ $ro1 == "$fs0" && $ro2 == "$ro1" ]]; then res c_same ok "reconnected as ro $RO, rw $RW"
	else res c_same fail "before ${ro1:0:16}, after ${ro2:0:16}, freeze-time ${fs0:0:16}"; fi
else
	res c_same fail "reconnect failed"
	fail_out "reconnect"
fi
post B.c_done

# ---- the snapshot's file system ------------------------------------------------------------
verify_files() { # every freeze-time file: prints "N ok" or the mismatches
	(cd "$MNT" && sha256sum -c --quiet "$SH/freeze/hashes" 2>&1) >"$W/sumc.out"
	local rc=$?
	if [[ $rc == 0 ]]; then echo "$(wc -l <"$SH/freeze/hashes") ok"; else head -n 3 "$W/sumc.out" | tr '\n' ' '; fi
}
if mount -t ext4 -o ro,noload "$RO" "$MNT"; then
	v=$(verify_files)
	if [[ $v == *" ok" ]]; then res files ok "$v"; else res files fail "$v"; fi
else
	res files fail "mount -o ro,noload $RO failed"
fi
bounded 60 umount "$MNT"
await A.wrote 600 || exit 1
echo 3 >/proc/sys/vm/drop_caches
if mount -t ext4 -o ro,noload "$RO" "$MNT"; then
	v=$(verify_files)
	newseen=0
	while read -r n; do [[ -e $MNT/new/$n ]] && newseen=$((newseen + 1)); done < <(get A.newfiles)
	[[ -e $MNT/new ]] && newseen="$newseen (and the directory new/)"
	bounded 60 umount "$MNT"
	ro3=$(sha "$RO" 0 $FS_MB)
	if [[ $v == *" ok" && $newseen == 0 && $ro3 == "$fs0" ]]; then res b_never ok "$v; $(get A.newfiles | wc -l) new files absent"
	else res b_never fail "files: $v; A's new files seen: $newseen; region ${ro3:0:16} vs ${fs0:0:16}"; fi
else
	res b_never fail "mount -o ro,noload $RO failed"
fi

# ---- writes: refused on ro, the raw tail on rw --------------------------------------------------
if dd if=/dev/urandom of="$RO" bs=4096 count=1 seek=$((20 * 256)) oflag=direct status=none 2>"$W/dd.err"; then
	res ro_write fail "the write succeeded"
else
	res_eq ro_write "$(sed -n '21p' "$SH/freeze/mibs")" "$(python3 "$BLK" mibs "$RO" 20 1)" "refused ($(tail -n1 "$W/dd.err")); MiB 20"
fi
FIO=(--name=rwtail --filename="$RW" --offset="${FS_MB}M" --size="${TAIL_MB}M" --rw=randwrite --bs=16k
	--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 --randrepeat=1 --output-format=json)
fio_ok() { # fio_ok JSON rw|read: the job ran without error over the whole tail
	python3 - "$1" "$2" $((TAIL_MB << 20)) <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
sys.exit(0 if j["error"] == 0 and j[sys.argv[2]]["io_bytes"] >= int(sys.argv[3]) else 1)
PY
}
bounded 400 fio "${FIO[@]}" --do_verify=1 --output="$W/fio-w.json" >/dev/null 2>"$W/fio-w.err"; frc=$?
if [[ $frc == 0 ]] && fio_ok "$W/fio-w.json" write && fio_ok "$W/fio-w.json" read; then res fio_rw ok "$TAIL_MB MiB of 16 KiB random writes, verified"
else res fio_rw fail "fio rc=$frc: $(tail -n 3 "$W/fio-w.err" | tr '\n' ' ')"; fi
bounded 300 fio "${FIO[@]}" --verify_only --output="$W/fio-v.json" >/dev/null 2>"$W/fio-v.err"; frc=$?
if [[ $frc == 0 ]] && fio_ok "$W/fio-v.json" read; then res rw_visible ok
else res rw_visible fail "fio --verify_only rc=$frc: $(tail -n 3 "$W/fio-v.err" | tr '\n' ' ')"; fi
res_eq rw_fs "$fs0" "$(sha "$RW" 0 $FS_MB)" "sha256 of $FS_MB MiB"
rwtail=$(sha "$RW" $FS_MB $TAIL_MB) rotail=$(sha "$RO" $FS_MB $TAIL_MB)
note "raw tail: rw view ${rwtail:0:16}, ro view ${rotail:0:16}, freeze-time ${tail0:0:16} (the ro view $( [[ $rotail == "$rwtail" ]] && echo "shows the rw view's writes: one snapshot, one store" || { [[ $rotail == "$tail0" ]] && echo "keeps the freeze-time tail" || echo "shows neither"; }))"
post B.rw_done "$rwtail"

# ---- throughput --------------------------------------------------------------------------------
await A.perf_go 300 || exit 1
if perf=$(fio_read "$RO" "$W/fioB"); then
	res perf ok "4k randread ${perf% *} IOPS, 1M read ${perf#* } MB/s"
	post B.perf_done "$perf"
else
	res perf fail "$(tail -n 2 "$W"/fioB.*.err 2>/dev/null | tr '\n' ' ')"
	post B.perf_done "0 0"
fi

# ---- (d) A removes the ro view while B reads it -----------------------------------------------------
await A.d_ready 600 || exit 1
python3 "$BLK" reader "$RO" "$SH/freeze/mibs" "$SH/A.d_removing" "$SH/A.d_removed" 30 >"$W/reader.out" 2>&1 &
rpid=$!
sleep 3
post B.d_reading
t=$SECONDS
while kill -0 "$rpid" 2>/dev/null && ((SECONDS - t < 240)); do sleep 0.5; done
if kill -0 "$rpid" 2>/dev/null; then kill -KILL "$rpid"; wrc=124; else wait "$rpid"; wrc=$?; fi
r=$(cat "$W/reader.out")
note "reader (rc=$wrc): $r"
declare -A R=()
for kv in $r; do [[ $kv == *=* ]] && R[${kv%%=*}]=${kv#*=}; done
# before A's removal every read good; after it only errors; never wrong data
if [[ $wrc == 0 && ${R[good_before]:-0} -gt 0 && ${R[err_before]:-1} == 0 && ${R[wrong_before]:-1} == 0 &&
	${R[wrong_during]:-1} == 0 && ${R[wrong_after]:-1} == 0 && ${R[good_after]:-1} == 0 && ${R[err_after]:-0} -gt 0 ]]; then
	res d_errors ok "$r"
else
	res d_errors fail "rc=$wrc $r"
fi
t=$SECONDS
disconnect_both; drc=$?
res_eq d_disc "0 0" "$drc $(ls /sys/class/nvme 2>/dev/null | wc -l)" "rc and controllers left, after $((SECONDS - t)) s"
post B.d_done
completed=1
exit 0
