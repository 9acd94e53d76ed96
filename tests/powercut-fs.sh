#!/usr/bin/env bash
# tests/powercut-fs.sh [--cuts N] [--seed S] [--keep]     (issue 11 item 7)
#
# Power cuts under ext4 on jsnap.  File-backed media that survive killing
# QEMU: pmem 32M, prod 256M (NVMe), store 256M and an acklog 1G (virtio).
# Boot 0 formats the journal and makes the file system; every boot then runs
# a single-threaded file workload (tests/powercut-fs/fsw.py): numbered files
# whose content follows from (file, version), created (write, fsync, fsync
# dir), replaced atomically (tmp, fsync, rename, fsync dir), appended
# (fsync) or deleted, each step logged O_DIRECT|O_DSYNC on the acklog before
# it starts and once it is durable; at a step chosen by the seed it freezes
# the file system, sends `snapshot`, thaws, and logs the files at the
# freeze.  The power goes at a random moment 3-12 s into the workload
# (vm.sh --kill-after) or, on odd rounds with $JSNAP_FAULT_MODULE, at a
# random pmem fence of the fault module with shadow pmem.  The next boot
# replays, mounts (ext4 journal replay), unmounts, requires `e2fsck -fn`
# clean, mounts again and checks every file: acknowledged ones exact, the
# step in flight either way (a create or an append: a prefix of its
# content), nothing no step created.  A snapshot whose `snapshot` returned
# must be `active`; its view must be fsck-clean and hold exactly the files
# of the freeze.  The last boot drains and checks production read directly
# (e2fsck -fn, the same files).
#
# Output: `ok - powercut-fs ...` / `not ok - powercut-fs ...` per check and
# a last line `powercut-fs: N passed, M failed`; exit non-zero on failure.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/scripts/env.sh"
cuts=6 seed= keep=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--cuts) cuts=${2:?}; shift 2 ;;
	--seed) seed=${2:?}; shift 2 ;;
	--keep) keep=1; shift ;;
	*) sed -n 2p "$0" >&2; exit 2 ;;
	esac
done
[[ $cuts =~ ^[0-9]+$ && $cuts -ge 1 && $cuts -le 500 ]] || { echo "powercut-fs: --cuts 1-500" >&2; exit 2; }
[[ -z $seed ]] && seed=$((RANDOM << 15 | RANDOM))
RANDOM=$seed
export JSNAP_MODULE=${JSNAP_MODULE:-$top/dm-jsnap.ko}
fault=${JSNAP_FAULT_MODULE:-}
[[ -f $JSNAP_MODULE && (-z $fault || -f $fault) ]] || { echo "powercut-fs: module not found" >&2; exit 2; }
work=$(mktemp -d /tmp/jsnap-pcfs.XXXXXX)
# run a copy of the harness (bash reads scripts while running them)
snap=$work/top
mkdir -p "$snap/qemu" "$snap/scripts" "$snap/tests"
cp "$top"/qemu/{vm.sh,guest-init.sh,guest-lib.sh,kernel.config} "$snap/qemu/" &&
	cp "$top/scripts/env.sh" "$snap/scripts/" && cp -r "$top/tests/powercut-fs" "$snap/tests/" ||
	{ echo "powercut-fs: cannot copy the harness" >&2; exit 2; }
python3 "$snap/tests/powercut-fs/fsw.py" selftest >/dev/null || { echo "powercut-fs: fsw.py selftest failed" >&2; exit 2; }
echo "# powercut-fs: seed=$seed cuts=$cuts work=$work module=$JSNAP_MODULE${fault:+ fault=$fault}"
FEATS=("" "high_watermark 5 low_watermark 1" "destage_batch 4" "high_watermark 30 low_watermark 10")
SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
pass=0 fail=0
ck() { # ck OK|"" TEXT: one check
	if [[ -n $1 ]]; then echo "ok - powercut-fs $2"; pass=$((pass + 1)); else
		echo "not ok - powercut-fs $2"; fail=$((fail + 1)); fi
}
ready=20 # seconds from the guest command's start to the workload in a recovery boot, measured
t_start=$(date +%s)
for ((r = 0; r <= cuts; r++)); do
	mode=cut kill=0 pcut=0 snapstep=-1 wat=0
	((r == 0)) && mode=init
	((r == cuts)) && mode=final
	if [[ $mode != final ]]; then
		wat=$((ready + 4))
		((r == 0)) && wat=16 # (the init boot: ~8 s under TCG)
		kill=$((wat + 3 + RANDOM % 10))
		((RANDOM % 4)) && snapstep=$((RANDOM % 40))
		# (~400 fences a second under TCG: 0.1-7 s into the workload; the
		# host kill is the fallback)
		[[ -n $fault ]] && ((r % 2)) && pcut=$((30 + RANDOM % 3000)) kill=$((wat + 25))
	fi
	f=${FEATS[RANDOM % ${#FEATS[@]}]}
	echo "# [$(($(date +%s) - t_start)) s] boot $r ($mode): features '${f:-default}', workload at ${wat}s, snapshot at step $snapstep, cut at ${kill}s$( ((pcut)) && echo " or at pmem fence $pcut")"
	JSNAP_VM_CONSOLE=$work/$r.console bash "$snap/qemu/vm.sh" --memory 2G --cpus 2 --timeout 600 \
		$( ((kill)) && echo "--kill-after $kill") --pmem "32M:$work/pmem.img" \
		--disk "prod:256M:$work/prod.img:nvme" --disk "store:256M:$work/store.img:virtio" \
		--disk "acklog:1G:$work/acklog.img:virtio" \
		-- env PCFS_FAULT_MODULE="$fault" bash "$snap/tests/powercut-fs/guest.sh" "$mode" "$r" "$seed" "$snapstep" "$wat" "$pcut" $f \
		>"$work/$r.log" 2>&1
	rc=$?
	grep -aE '^(ok|not ok) - ' "$work/$r.log"
	pass=$((pass + $(grep -ac '^ok - ' "$work/$r.log"))) fail=$((fail + $(grep -ac '^not ok - ' "$work/$r.log")))
	s=$(grep -aE "$SPLAT_RE" "$work/$r.console" | head -n1)
	ck "$([[ -z $s ]] && echo y)" "boot $r: no kernel splat${s:+ -- $s}"
	if [[ $mode == final ]]; then
		ck "$([[ $rc == 0 ]] && echo y)" "final boot: VM exit 0 (vm.sh $rc)"
		break
	fi
	cut=$(grep -ao 'fault: pmem power cut at fence.*' "$work/$r.console" | head -n1)
	ck "$([[ $rc == 137 || ($pcut != 0 && $rc == 255 && -n $cut) ]] && echo y)" \
		"boot $r: power cut (vm.sh $rc${cut:+: $cut})"
	info=$(python3 "$snap/tests/powercut-fs/fsw.py" info "$work/acklog.img" "$r")
	echo "#   ack log: $info; $(grep -a '^# \(ready\|snapped\|step\)' "$work/$r.log" | tail -n 2 | tr '\n' ' ')"
	ck "$(grep -q 'workload=1' <<<"$info" && echo y)" "boot $r: the workload started before the cut"
	m=$(sed -n 's/^# ready t=\([0-9]*\).*/\1/p' "$work/$r.log" | head -n1)
	if ((r == 0)); then :; elif [[ -n $m ]]; then ready=$((m > ready - 3 ? m : ready - 3)); else ready=$((ready + 10)); fi
	((rc == 124 || rc == 125)) && { tail -n 15 "$work/$r.log" | sed 's/^/#   /'; break; }
done
echo "# powercut-fs: seed=$seed, $cuts cuts, $(($(date +%s) - t_start)) s"
((fail || keep)) && echo "# powercut-fs: logs kept in $work" || rm -rf "$work"
echo "powercut-fs: $pass passed, $fail failed"
((fail == 0))
