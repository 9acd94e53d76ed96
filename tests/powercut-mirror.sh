#!/usr/bin/env bash
# tests/powercut-mirror.sh [--cuts N] [--seed S] [--keep] [--chunk C (default 64)]
#
# Power cuts under the one-way mirror (issue 5): volume B = the jsnap
# device, volume A = `jsnap-view B mirror` (every A-write goes to the store
# with FUA, then through B's journal; B-writes never reach A).  File-backed
# media survive killing QEMU: pmem 16M (small journal: back-pressure and
# destage), production 32M (NVMe, under a dm-linear that the guest always
# creates first, so that its device number never changes), store 32M and
# acklog 64M (virtio).
#
#   boot 0 (init):   fill production with known blocks, format B, split,
#                    then a QD1 O_DIRECT writer on A and one on B with mixed
#                    sizes (1-16 blocks of 4 KiB, across 32 KiB chunks), acks
#                    logged O_DSYNC on the acklog; QEMU killed 6-14 s later.
#   boots 1..N-1:    replay B, re-attach A if the snapshot survived, verify
#                    both against the model (tests/powercut-mirror/mc.py),
#                    second recovery (same content); sometimes a new split
#                    (B-writes left in the journal, B scanned and recorded,
#                    then `snapshot`), sometimes `hydrate on`; the writers
#                    again; QEMU killed.
#   boot N (between): the deterministic cut between the two halves of an
#                    A-write: B loaded with no_destage, production writes
#                    delayed (dm-delay), B-writes fill the journal until they
#                    are deferred, one A-write is seen on the store device
#                    while its journal half is deferred, `echo b >
#                    /proc/sysrq-trigger`.  The next boot checks that A holds
#                    it, B does not, and it was never acknowledged.
#   final boot:      verify, drain, hydrate to done, the store read directly
#                    = A, production read directly = B, rmmod.
#
# Model, per 4 KiB block: B = an acknowledged write (to A or to B) that no
# acknowledged write provably follows, or a write in flight at the cut; A =
# the latest acknowledged A-write, else the split-time content, or the
# A-write in flight.  Never torn, never stale, never B-writes on A, and the
# in-flight A-write never on B without being on A.  A random cut that lands
# between the halves is noted (`# between halves`).
#
# Output: `ok - powercut-mirror ...` / `not ok - powercut-mirror ...` per
# check, notes (`# ...`), and last `powercut-mirror: N passed, M failed`;
# non-zero exit on failure.  Logs are kept (in tmp/ of the repository) when
# something failed or with --keep.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/env.sh
. "$top/scripts/env.sh"

cuts=4
seed=
keep=0
chunk=64
usage() { sed -n '2p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--cuts) cuts=${2:?}; shift 2 ;;
	--seed) seed=${2:?}; shift 2 ;;
	--keep) keep=1; shift ;;
	--chunk) chunk=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $cuts =~ ^[0-9]+$ && $cuts -ge 1 ]] || { echo "powercut-mirror: --cuts must be >= 1" >&2; exit 2; }
[[ -z $seed ]] && seed=$(( (RANDOM << 15 | RANDOM) ))
[[ $seed =~ ^[0-9]+$ ]] || { echo "powercut-mirror: --seed must be a number" >&2; exit 2; }
RANDOM=$seed # the schedule (features, cut moments, splits) follows from the seed

export JSNAP_MODULE=${JSNAP_MODULE:-$top/dm-jsnap.ko}
[[ -f $JSNAP_MODULE ]] || { echo "powercut-mirror: module not found: $JSNAP_MODULE" >&2; exit 2; }

# The guest sees the host's file system: the work directory is in the
# repository's (ignored) tmp/.
mkdir -p "${PCM_WORKDIR:-$top/tmp}"
work=$(mktemp -d "${PCM_WORKDIR:-$top/tmp}/pcmirror.XXXXXX")
# Run a copy of the harness (an edit during the run must not break a boot).
snap=$work/top
mkdir -p "$snap/qemu" "$snap/scripts" "$snap/tests"
cp "$top"/qemu/{vm.sh,guest-init.sh,guest-lib.sh,shm-shim.sh,kernel.config} "$snap/qemu/" &&
	cp "$top/scripts/env.sh" "$snap/scripts/" &&
	cp -r "$top/tests/powercut-mirror" "$snap/tests/" &&
	mkdir -p "$snap/tests/powercut" && cp "$top/tests/powercut/blocks.py" "$snap/tests/powercut/" ||
	{ echo "powercut-mirror: cannot copy the harness to $snap" >&2; exit 2; }
gcc -O2 -Wall -o "$work/mctool" "$top/tests/powercut-mirror/mctool.c" -lz ||
	{ echo "powercut-mirror: cannot compile tests/powercut-mirror/mctool.c" >&2; exit 2; }
echo "# powercut-mirror: seed=$seed cuts=$cuts (+ 1 between the halves) work=$work module=$JSNAP_MODULE"

SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
VM_TIMEOUT=${PCM_VM_TIMEOUT:-400}
FEATS=(
	""
	"no_destage"
	"high_watermark 5 low_watermark 1"
	"high_watermark 90 low_watermark 60"
	"destage_batch 4"
)

npass=0
nfail=0
failed_lines=()
pass() { echo "ok - powercut-mirror $*"; npass=$((npass + 1)); }
failc() { echo "not ok - powercut-mirror $*"; nfail=$((nfail + 1)); failed_lines+=("not ok - powercut-mirror $*"); }

# run_vm TAG KILL_AFTER GUEST-ARGS...: one boot; log in $work/TAG.log
run_vm() {
	local tag=$1 kill=$2
	shift 2
	local kopt=()
	[[ $kill != 0 ]] && kopt=(--kill-after "$kill")
	JSNAP_VM_CONSOLE=$work/$tag.console JSNAP_VM_DMESG=$work/$tag.dmesg \
		"$snap/qemu/vm.sh" --memory 1G --cpus 2 --timeout "$VM_TIMEOUT" "${kopt[@]}" \
		--pmem "16M:$work/pmem.img" \
		--disk "prod:32M:$work/prod.img:nvme" \
		--disk "store:32M:$work/store.img:virtio" \
		--disk "acklog:64M:$work/acklog.img:virtio" \
		-- env PCM_CHUNK="$chunk" PCM_TOOL="$work/mctool" PCM_LABEL="$tag" \
		PCM_WRITER_AT="${wat:-0}" PCM_RESPLIT="${resplit:-0}" PCM_HYDRATE="${hydrate:-0}" \
		PCM_PREV_BETWEEN="${prev_between:-0}" \
		bash "$snap/tests/powercut-mirror/guest.sh" "$@" >"$work/$tag.log" 2>&1
	vm_rc=$?
}

# report TAG: the guest's ok/not ok lines and notes that matter; splats in
# the console log (vm.sh does not scan the log of a killed VM)
report() {
	local tag=$1 line s
	while IFS= read -r line; do
		case $line in
		"ok - powercut-mirror "*) echo "$line"; npass=$((npass + 1)) ;;
		"not ok - powercut-mirror "*) echo "$line"; nfail=$((nfail + 1)); failed_lines+=("$line") ;;
		"# between halves"* | "#   "* | "# powercut-mirror $tag: checkpoint"* | "# powercut-mirror $tag: the cut"*) echo "$line" ;;
		esac
	done <"$work/$tag.log"
	s=$(grep -aE "$SPLAT_RE" "$work/$tag.console" 2>/dev/null | grep -av 'jsnap-test-mark' || true)
	if [[ -n $s ]]; then
		failc "$tag: no kernel splat -- $(head -n1 <<<"$s")"
		grep -aE -B2 -A25 "$SPLAT_RE" "$work/$tag.console" | head -n 60 | sed 's/^/#   console: /'
	else
		pass "$tag: no kernel splat in the console log"
	fi
}

# cut_summary TAG KILL: where the power cut landed
cut_summary() {
	local tag=$1 kill=$2 ws lw lst
	ws=$(grep -a "^# $tag: writers start t=" "$work/$tag.log" | sed -E 's/.*start t=([0-9.]+).*/\1/' | head -n1)
	if [[ -z $ws ]]; then
		echo "#   cut at ${kill}s: before the writers started (recovery/split)"
		# aimed at the writers: a hung or far too slow recovery (issue 12 item 8)
		failc "$tag: writers started before the cut -- not started ${kill}s into the boot (aimed at ${wat}s; ready at $(ready_of "$tag" || echo never)s)"
		return
	fi
	lw=$(grep -a '^# powercut-mirror writer' "$work/$tag.log" | tail -n 2 | tr '\n' ' ')
	lst=$(grep -a '^# st t=' "$work/$tag.log" | tail -n1)
	echo "#   cut at ${kill}s, writers started at ${ws}s; last writer lines: ${lw:-none}"
	echo "#   last status: ${lst:-none}"
}

ready_of() { # the guest's "ready" moment in the log, rounded up
	local r
	r=$(grep -a "^# $1: ready t=" "$work/$1.log" | sed -E 's/.*ready t=([0-9.]+).*/\1/' | head -n1)
	[[ -n $r ]] && awk -v x="$r" 'BEGIN { printf "%d", x + 1 }'
}

t_start=$(date +%s)
# When the guest will be ready for the writers: init (fill, format, split)
# about 15-40 s, a recovery 8-20 s depending on the load, a new split
# some 10 s more; learned from each boot.
RESPLIT_S=10
recent=(16) # "ready" moments of recent recovery boots (without a new split)
prev_between=0
n_between=0
for ((i = 0; i <= cuts + 1; i++)); do
	elapsed=$(($(date +%s) - t_start))
	tag=boot$i
	resplit=0 hydrate=0 wat=0
	if ((i < cuts)); then
		f=${FEATS[RANDOM % ${#FEATS[@]}]}
		((i > 0 && RANDOM % 3 == 0)) && resplit=1
		((i > 0 && RANDOM % 3 == 0)) && hydrate=1
		if ((i == 0)); then
			wat=40
		else
			wat=0 # a little after the slowest of the last 3 recoveries
			for ((k = ${#recent[@]} > 3 ? ${#recent[@]} - 3 : 0; k < ${#recent[@]}; k++)); do
				((recent[k] + 2 > wat)) && wat=$((recent[k] + 2))
			done
			((resplit)) && wat=$((wat + RESPLIT_S))
		fi
		kill=$((wat + 6 + RANDOM % 9))
		echo "# [$elapsed s] boot $i: $( ((i == 0)) && echo init || echo 'recover + verify'), features='${f:-default}'$( ((resplit)) && echo ', new split')$( ((hydrate)) && echo ', hydrate on'), writers at ${wat}s, power cut at ${kill}s"
		if ((i == 0)); then
			run_vm "$tag" "$kill" init "$seed" $f
		else
			run_vm "$tag" "$kill" cut $f
		fi
		report "$tag"
		((i > 0)) && grep -aq '^# between halves: the cut' "$work/$tag.log" && n_between=$((n_between + 1))
		if [[ $vm_rc == 137 ]]; then pass "$tag: VM killed by the power cut (vm.sh 137)"; else
			failc "$tag: VM killed by the power cut -- vm.sh exited $vm_rc (expected 137)"
			tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
			[[ $vm_rc == 125 ]] && { failc "$tag: harness/setup error (vm.sh 125); giving up"; break; }
		fi
		cut_summary "$tag" "$kill"
		if ((i > 0)); then
			r=$(ready_of "$tag")
			[[ -n $r ]] || r=$((kill + 5)) # (cut before the writers: aim later)
			((resplit)) && r=$((r - RESPLIT_S))
			recent+=("$r")
		fi
		prev_between=0
	elif ((i == cuts)); then
		echo "# [$elapsed s] boot $i: recover + verify, then the deterministic cut between the halves of an A-write (no_destage, sysrq-b)"
		run_vm "$tag" 0 between no_destage
		report "$tag"
		grep -aq '^# between halves: the cut' "$work/$tag.log" && n_between=$((n_between + 1))
		prev_between=0
		if grep -aq '^SYSRQ-CUT' "$work/$tag.log" && [[ $vm_rc == 255 ]]; then
			pass "$tag: power cut from inside the guest (sysrq-b; vm.sh 255)"
			prev_between=1 # the next boot checks the A-write between the halves
		else
			failc "$tag: power cut from inside the guest -- vm.sh exited $vm_rc, $(grep -ac '^SYSRQ-CUT' "$work/$tag.log") SYSRQ-CUT lines"
			tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
		fi
	else
		echo "# [$elapsed s] final boot: recover + verify, drain, hydrate, store = A, production = B"
		run_vm "$tag" 0 final
		report "$tag"
		if [[ $vm_rc == 0 ]]; then pass "final: VM exit 0"; else
			failc "final: VM exit 0 -- vm.sh exited $vm_rc"
			tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
		fi
	fi
done

echo "# powercut-mirror: seed=$seed, $cuts random cuts + 1 between the halves, $(($(date +%s) - t_start)) s;" \
	"random cuts that landed between the halves: $n_between"
if ((nfail > 0)); then
	echo "# failed checks:"
	printf '#   %s\n' "${failed_lines[@]}"
fi
if ((nfail > 0 || keep)); then
	echo "# powercut-mirror: logs kept in $work"
else
	rm -rf "$work"
fi
echo "powercut-mirror: $npass passed, $nfail failed"
((nfail == 0))
