#!/usr/bin/env bash
# tests/powercut.sh --scenario journal|snap|mirror|fs|windows [--cuts N] [--seed S] [--keep]
#                   [--log-writes] [--chunk C] [--start S] [--bypass N] [CASE...]
#
# Crash-consistency ("power cut") tests for dm-jsnap: one harness, the
# scenarios as data (the SCENARIOS table below: media, memory, tool, fault
# module, the disks --log-writes puts behind dm-log-writes, the options it
# takes) plus one schedule function each (sched_SCENARIO: what each boot
# does and where its power is cut).  Shared: the work directory with a copy
# of the harness and the modules, one VM runner, one report (the guest's
# check lines, the console scanned for kernel splats, vm.sh's exit status),
# one tally, one log-writes rebuild.  The guest side is
# tests/powercut/guest.sh SCENARIO ..., the helpers tests/powercut/guest-lib.sh.
#
#   journal  (default 20 cuts; --chunk C --start S --bypass N)  a checksummed writer
#            (tests/powercut/pctool.c, oracle pc.py) of 1, 4 or 8 threads,
#            acknowledgement log on a separate disk, snapshots while the
#            writers run, cuts at random moments (also during recovery);
#            every other round on shadow pmem, cut at a pmem fence.
#   snap     (default 5 cuts; --chunk C)  cuts during copy-on-write and
#            hydration; the snapshot taken before a cut must come back with
#            its recorded content (view, store alone after hydration).
#   mirror   (default 4 cuts + 1 between the halves; --chunk C)  writers on
#            both volumes of the one-way mirror (tests/powercut/mctool.c,
#            oracle mc.py), a deterministic cut between the two halves of
#            an A-write.
#   fs       (default 6 cuts)  ext4 on jsnap, a file workload that fsyncs
#            (tests/powercut/fsw.py), e2fsck, the frozen file system's
#            snapshot.
#   windows  (CASE: a-full a-partial b c1 c2 d e4 e5, default all)  deterministic cuts in
#            windows held open by the fault-injection build.
#
# --log-writes (journal, snap, mirror; needs $JSNAP_FAULT_MODULE): a volatile
# disk cache, the xfstests dm-log-writes method.  The scenario's disks of the
# table's LOG-WRITES column (journal: production; snap: the store; mirror:
# production and the store) are dm-log-writes devices in the guest, each
# logging to a fresh disk lw-NAME every boot; every round runs on shadow
# pmem and is cut at a pmem fence, the cutting task waiting 1.5 s before the
# reset (fault_pmem_cut_ms) so that the logs hold every completed write.
# Before the next boot each disk is rebuilt as a disk with a volatile write
# cache would hold it: its content at the start of the boot plus the logged
# writes up to the last FLUSH, and FUA writes after it
# (tests/powercut/lwreplay.py); whatever was written after the last flush
# is lost.  A boot cut by the host or by sysrq keeps its disks as written.
#
# Output: one `ok - SUMMARY ...` / `not ok - SUMMARY ...` line per check
# (SUMMARY: powercut, powercut-snap, powercut-mirror, powercut-fs,
# powercut-windows), progress notes (`# ...`), and finally
# `SUMMARY: N passed, M failed`.  Exit status non-zero if anything failed.
# The logs of every boot are kept in the work directory when something
# failed (or with --keep).
# (The whole script is one brace group, which bash reads to its end before
# running it: an edit of this file during a run cannot break the run.)
{
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/env.sh
. "$top/scripts/env.sh"

# ---- the scenarios ---------------------------------------------------------------
# NAME | SUMMARY | CUTS | MEMORY | VM TIMEOUT (s) | PMEM | DISKS (NAME:SIZE:BUS, in
# this order every boot: the journal records device numbers) | TOOL (compiled
# from tests/powercut/TOOL.c) | FAULT (optional or required) | LOG-WRITES
# (DISK:LOG SIZE[:any]; any: lwreplay.py --any-data) | OPTIONS it takes |
# NOTES (the guest's `# ` lines shown)
SCENARIOS=(
	"journal|powercut|20|1G|400|32M|prod:256M:nvme acklog:64M:virtio store:256M:virtio|pctool|optional|prod:2G|chunk start bypass|^(#   |# powercut .*: checkpoint gen=.* base_seq)"
	"snap|powercut-snap|5|2G|900|32M|prod:64M:nvme store:64M:virtio|-|optional|store:1G:any|chunk|^#   "
	"mirror|powercut-mirror|4|1G|400|16M|prod:32M:nvme store:32M:virtio acklog:64M:virtio|mctool|optional|prod:1G:any store:1G:any|chunk|^(# between halves|#   |# powercut-mirror [^ ]+: (checkpoint|the cut))"
	"fs|powercut-fs|6|2G|600|32M|prod:256M:nvme store:256M:virtio acklog:1G:virtio|-|optional|-|-|^#   "
	"windows|powercut-windows|-|1G|300|32M|prod:32M:nvme store:32M:virtio|-|required|-|cases|^# "
)

usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; }
scenario= cuts= seed= keep=0 LW=0 chunk= start= bypass= cases=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--scenario) scenario=${2:?}; shift 2 ;;
	--cuts) cuts=${2:?}; shift 2 ;;
	--seed) seed=${2:?}; shift 2 ;;
	--keep) keep=1; shift ;;
	--log-writes) LW=1; shift ;;
	--chunk) chunk=${2:?}; shift 2 ;;
	--start) start=${2:?}; shift 2 ;;
	--bypass) bypass=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	a-full | a-partial | b | c1 | c2 | d | e4 | e5) cases+=("$1"); shift ;;
	*) usage >&2; exit 2 ;;
	esac
done
row=
for r in "${SCENARIOS[@]}"; do [[ ${r%%|*} == "$scenario" ]] && row=$r; done
[[ -n $row ]] || { echo "powercut.sh: --scenario journal|snap|mirror|fs|windows" >&2; usage >&2; exit 2; }
IFS='|' read -r _ SUM CUTS0 MEMORY VM_TIMEOUT PMEM_SIZE DISKS TOOL FAULT LWDISKS OPTS NOTES <<<"$row"
die() { echo "$SUM: $*" >&2; exit 2; }
takes() { [[ " $OPTS " == *" $1 "* ]]; }
[[ -z $chunk ]] || takes chunk || die "--chunk is not an option of the $scenario scenario"
[[ -z $start ]] || takes start || die "--start is not an option of the $scenario scenario"
[[ -z $bypass ]] || takes bypass || die "--bypass is not an option of the $scenario scenario"
[[ -z $bypass || $bypass =~ ^[0-9]+$ ]] || die "--bypass takes a number of sectors"
((${#cases[@]} == 0)) || takes cases || die "CASEs belong to the windows scenario"
((LW == 0)) || [[ $LWDISKS != - ]] || die "--log-writes is not an option of the $scenario scenario"
cuts=${cuts:-$CUTS0}
[[ $cuts == - ]] || [[ $cuts =~ ^[0-9]+$ && $cuts -ge 1 && $cuts -le 500 ]] || die "--cuts must be 1-500"
[[ -z $seed ]] && seed=$(((RANDOM << 15 | RANDOM)))
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a number"
RANDOM=$seed # the schedule (features, cut moments, splits) follows from the seed
chunk=${chunk:-${PC_CHUNK:-64}} start=${start:-${PC_START:-0}}
[[ $chunk =~ ^[0-9]+$ && $start =~ ^[0-9]+$ ]] || die "--chunk and --start take numbers"
VM_TIMEOUT=${PC_VM_TIMEOUT:-$VM_TIMEOUT}
[[ $scenario == journal ]] && PMEM_SIZE=${PC_PMEM:-$PMEM_SIZE}

KO=${JSNAP_MODULE:-$top/dm-jsnap.ko}
FKO=${JSNAP_FAULT_MODULE:-}
[[ $FAULT == required ]] && FKO=${FKO:-$top/dm-jsnap-fault.ko}
[[ -f $KO ]] || die "module not found: $KO"
[[ -z $FKO || -f $FKO ]] || die "fault module not found: $FKO (fault build: scripts/build-module.sh --fault)"
((LW)) && [[ -z $FKO ]] && die "--log-writes needs JSNAP_FAULT_MODULE"

# The work directory (visible in the guest, which sees the host's root file
# system and /tmp, but not /var/tmp) holds the media, the logs, and a copy
# of the VM harness, of the guest scripts and of the modules: bash reads a
# script while it runs it, so an edit of qemu/vm.sh during a run (seen:
# "vm.sh: line 314: syntax error") or a rebuild must not change a boot.
work=$(mktemp -d "${PC_WORKDIR:-/tmp}/jsnap-$SUM.XXXXXX")
snap=$work/top
mkdir -p "$snap/qemu" "$snap/scripts" "$snap/tests/guest"
cp "$top"/qemu/{vm.sh,guest-init.sh,guest-lib.sh,shm-shim.sh,kernel.config} "$snap/qemu/" &&
	cp "$top/scripts/env.sh" "$snap/scripts/" &&
	cp "$top/tests/guest/lib.sh" "$top/tests/guest/cbt.py" "$snap/tests/guest/" &&
	cp -r "$top/tests/powercut" "$snap/tests/" &&
	cp "$KO" "$work/dm-jsnap.ko" && { [[ -z $FKO ]] || cp "$FKO" "$work/dm-jsnap-fault.ko"; } ||
	die "cannot copy the harness to $snap"
export JSNAP_MODULE=$work/dm-jsnap.ko
FAULT_MODULE=
[[ -n $FKO ]] && FAULT_MODULE=$work/dm-jsnap-fault.ko
if [[ $TOOL != - ]]; then
	gcc -O2 -Wall -pthread -o "$work/$TOOL" "$top/tests/powercut/$TOOL.c" -lz ||
		die "cannot compile tests/powercut/$TOOL.c"
fi
echo "# $SUM: scenario $scenario, seed=$seed cuts=$cuts work=$work module=$KO${FKO:+ fault=$FKO}$( ((LW)) && echo ', log-writes')"

SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
npass=0 nfail=0 failed_lines=()
pass() { echo "ok - $SUM $*"; npass=$((npass + 1)); }
failc() { echo "not ok - $SUM $*"; nfail=$((nfail + 1)); failed_lines+=("not ok - $SUM $*"); }
# tail_log TAG: the end of a boot's log, as notes
tail_log() { tail -n 15 "$work/$1.log" | sed 's/^/#   log: /'; }

# run_vm TAG KILL_AFTER GUEST-ARGS...: one boot running
# `tests/powercut/guest.sh SCENARIO GUEST-ARGS...`, its output in
# $work/TAG.log, the console in $work/TAG.console; sets vm_rc.  The
# guest's environment: genv (NAME=VALUE...), pcut (PC_PMEM_CUT: a
# shadow-pmem round), dpfx (a prefix of the disk image names).
genv=() pcut= dpfx=
run_vm() {
	local tag=$1 kill=$2 d n s bus any opt=()
	shift 2
	[[ $kill != 0 ]] && opt+=(--kill-after "$kill")
	for d in $DISKS; do
		IFS=: read -r n s bus <<<"$d"
		opt+=(--disk "$n:$s:$work/$dpfx$n.img:$bus")
	done
	if ((LW)); then
		for d in $LWDISKS; do
			IFS=: read -r n s any <<<"$d"
			# a fresh log; the disk as it is now is the log's base
			rm -f "$work/lw-$n.img" && truncate -s "$s" "$work/lw-$n.img"
			[[ -e $work/$dpfx$n.img ]] || truncate -s "$(disk_size "$n")" "$work/$dpfx$n.img"
			cp --sparse=always "$work/$dpfx$n.img" "$work/base-$n.img"
			opt+=(--disk "lw-$n:$s:$work/lw-$n.img:virtio")
		done
	fi
	JSNAP_VM_CONSOLE=$work/$tag.console JSNAP_VM_DMESG=$work/$tag.dmesg \
		"$snap/qemu/vm.sh" --memory "$MEMORY" --cpus 2 --timeout "$VM_TIMEOUT" "${opt[@]}" \
		--pmem "$PMEM_SIZE:$work/pmem.img" \
		-- env PC_CHUNK="$chunk" PC_LW="$LW" PC_TOOL="$work/$TOOL" PC_FAULT_MODULE="$FAULT_MODULE" \
		PC_PMEM_CUT="$pcut" "${genv[@]}" bash "$snap/tests/powercut/guest.sh" "$scenario" "$@" \
		>"$work/$tag.log" 2>&1
	vm_rc=$?
}
disk_size() { local d; for d in $DISKS; do [[ ${d%%:*} == "$1" ]] && { d=${d#*:}; echo "${d%%:*}"; }; done; }

# report TAG: the guest's check lines into our tally, the notes that matter
# (NOTES), and the console scanned for kernel splats (vm.sh does not scan
# the log of a killed VM).
report() {
	local tag=$1 line s
	while IFS= read -r line; do
		case $line in
		"ok - "*) echo "$line"; npass=$((npass + 1)) ;;
		"not ok - "*) echo "$line"; nfail=$((nfail + 1)); failed_lines+=("$line") ;;
		*) [[ $line =~ $NOTES ]] && echo "$line" ;;
		esac
	done < <(tr -d '\r' <"$work/$tag.log")
	s=$(grep -aE "$SPLAT_RE" "$work/$tag.console" 2>/dev/null | grep -avE 'jsnap-test-(mark|start)' || true)
	if [[ -n $s ]]; then
		failc "$tag: no kernel splat -- $(head -n1 <<<"$s")"
		grep -aE -B2 -A25 "$SPLAT_RE" "$work/$tag.console" | head -n 60 | sed 's/^/#   console: /'
	else
		pass "$tag: no kernel splat in the console log"
	fi
}

# fence_cut TAG: the console line of a pmem fence cut, if there was one
fence_cut() { grep -ao 'fault: pmem power cut at fence.*' "$work/$1.console" 2>/dev/null | head -n1; }
# vm_exit TAG cut|final|sysrq PATTERN: vm.sh's status as the boot expects:
# cut: killed by the host (137) or, in a shadow-pmem round ($pcut), the
# fence cut (255 and the console line); final: 0; sysrq: the guest cut
# the power itself (255) after logging PATTERN.  Returns 1 on a harness
# error (125: give up).
n_fence_cut=0
vm_exit() {
	local tag=$1 kind=$2 f
	f=$(fence_cut "$tag")
	case $kind in
	cut)
		if [[ $vm_rc == 137 ]]; then
			pass "$tag: VM killed by the power cut (vm.sh 137)"
		elif [[ -n $pcut && $vm_rc == 255 && -n $f ]]; then
			pass "$tag: power cut at pmem fence ${pcut#*:} (${f#fault: pmem power cut at fence [0-9]*: })"
			n_fence_cut=$((n_fence_cut + 1))
			# A fence after the cut that cannot sleep spins until the
			# reset, and every vCPU with it: dm-log-writes' log thread
			# does not run, and the logs miss flushed writes (a false
			# loss, seen once as stale blocks on the mirror view).
			if grep -aq 'fault: a fence after the cut waits where it cannot sleep' "$work/$tag.console"; then
				failc "$tag: every pmem fence after the cut could sleep (else the disks' logs are incomplete)"
			else
				pass "$tag: every pmem fence after the cut could sleep"
			fi
		else
			failc "$tag: VM killed by the power cut -- vm.sh exited $vm_rc (expected 137${pcut:+, or 255 at a pmem fence})"
			tail_log "$tag"
		fi
		;;
	final)
		if [[ $vm_rc == 0 ]]; then pass "$tag: VM exit 0"; else
			failc "$tag: VM exit 0 -- vm.sh exited $vm_rc"
			tail_log "$tag"
		fi
		;;
	sysrq)
		if [[ $vm_rc == 255 ]] && grep -aq -- "$3" "$work/$tag.log"; then
			pass "$tag: power cut from inside the guest (sysrq b; vm.sh 255)"
		else
			failc "$tag: power cut from inside the guest -- vm.sh exited $vm_rc, '$3' $(grep -ac -- "$3" "$work/$tag.log") times in the log"
			tail_log "$tag"
		fi
		;;
	esac
	if [[ $vm_rc == 125 ]]; then
		failc "$tag: harness/setup error (vm.sh 125); giving up"
		return 1
	fi
}

# lw_rebuild TAG: after a cut boot with --log-writes, every disk behind
# dm-log-writes as a volatile write cache leaves it (a fence cut), or as
# written (killed by the host or sysrq: the log may lack its last entries)
lw_rebuild() {
	local tag=$1 d n any out aa
	((LW)) || return 0
	if grep -aqE 'Ran out of space on the logdev|Error writing log block' "$work/$tag.console"; then
		failc "$tag: dm-log-writes logged every write -- $(grep -aoE 'Ran out of space on the logdev|Error writing log block' "$work/$tag.console" | head -n1)"
	elif [[ -n $(fence_cut "$tag") ]]; then
		for d in $LWDISKS; do
			IFS=: read -r n _ any <<<"$d"
			aa=()
			[[ $any == any ]] && aa=(--any-data)
			if out=$(python3 "$top/tests/powercut/lwreplay.py" "${aa[@]}" --log "$work/lw-$n.img" \
				--base "$work/base-$n.img" --out "$work/$dpfx$n.img" 2>&1); then
				echo "${out/#\# lwreplay:/#   lwreplay $n:}"
			else
				failc "$tag: replay the log of $n -- $(tail -n1 <<<"$out")"
			fi
		done
	else
		echo "#   $tag: not a fence cut: the disks kept as written (no volatile-cache loss this boot)"
	fi
}

# ready_at TAG PATTERN: the "ready" moment (s) the guest logged in a line
# matching PATTERN (… ready t=X), rounded up
ready_at() {
	local r
	r=$(grep -a "$2" "$work/$1.log" | sed -E 's/.*ready t=([0-9.]+).*/\1/' | head -n1)
	[[ -n $r ]] && awk -v x="$r" 'BEGIN { printf "%d", x + 1 }'
}

# ---- journal ---------------------------------------------------------------------
# Media: pmem 32M (small, so the journal fills and writers meet back-pressure
# and destage), prod 256M (NVMe), acklog 64M, store 256M (virtio).
#   boot 0:    format the journal, initialise the acklog, run writer round 0,
#              power cut at a random moment.
#   boot i:    replay, verify round i-1 against its ack log (and the
#              snapshot its writers saw taken), second recovery (same
#              content, state ok), run writer round i, power cut.
#   last boot: verify the last round, drain, compare production with the
#              jsnap device and with the model (zeros outside the test
#              area), rmmod.
# The writer writes self-describing 4 KiB blocks with O_DIRECT (some
# O_DSYNC, some followed by fdatasync), 1 to 256 blocks per write, from 1, 4
# or 8 threads per round (one write in flight each, over overlapping ranges
# and a hot 8 MiB region) and, once a write returned, records it in the
# acklog (O_DIRECT|O_DSYNC, with its submit and completion times).  After
# the cut every block must hold an acknowledged write covering it that no
# acknowledged write submitted after its completion covers, or a write that
# was in flight; never-written blocks stay zero (pc.py `oracle`).  Each
# round uses different features and a different cut moment (3-15 s into
# the writer, now and then during recovery itself); about every other round
# a snapshot while the writers run; with $JSNAP_FAULT_MODULE every other
# round (--log-writes: every round) runs on shadow pmem (fault_pmem_shadow=1)
# and is cut at a random pmem fence, the host kill being the fallback.
# --chunk C (default 64) is the jsnap chunk size; --start S (default 0)
# puts the jsnap target at sector S of its table, behind a zero target,
# with the writer and the scans going through a dm-linear window over it.
# --bypass N adds the feature `bypass N` (the journal bypass for writes of
# at least N sectors) to every boot's features.
JOURNAL_FEATS=(
	""
	"high_watermark 5 low_watermark 1"
	"no_destage"
	"high_watermark 90 low_watermark 60"
	"high_watermark 30 low_watermark 10 destage_batch 4"
	"destage_batch 1"
	"compact 90 high_watermark 20 low_watermark 10"
)
THREADS=(1 4 8)

# journal_cut_summary TAG KILL: what the writer was doing when the power went
journal_cut_summary() {
	local tag=$1 kill=$2 log=$work/$1.log ws wl lst
	ws=$(grep -a '^# powercut .*: writer start t=' "$log" | sed -E 's/.*writer start t=([0-9.]+).*/\1/' | head -n1)
	wl=$(grep -a '^# powercut writer: t=' "$log" | tail -n1)
	lst=$(grep -a '^# st t=' "$log" | tail -n1)
	if [[ -z $ws ]]; then
		echo "#   cut at ${kill}s: during recovery/verify (writer not started)"
		n_cut_recovery=$((n_cut_recovery + 1))
		# a boot aimed at the writer whose writer never started: a hung
		# (or far too slow) recovery; a failure, not a note
		if [[ $what != "during recovery" && -z $(fence_cut "$tag") ]]; then
			failc "$tag: writer started before the cut -- not started ${kill}s into the boot (aimed at ${wat}s; ready $(r=$(ready_at "$tag" '^# powercut .*: ready t=') && echo "at ${r}s" || echo never)): recovery hung or far too slow"
		fi
		return
	fi
	n_cut_writer=$((n_cut_writer + 1))
	local pct
	pct=$(sed -nE 's/.* journal_used=([0-9]+) journal_size=([0-9]+) .*/\1 \2/p' <<<"$lst" |
		awk '{ printf "%d", $2 ? 100 * $1 / $2 : 0 }')
	[[ -n $pct ]] && ((pct >= 80)) && n_cut_full=$((n_cut_full + 1))
	grep -q 'destaged_bytes=[1-9]' <<<"$lst" && n_cut_destage=$((n_cut_destage + 1))
	grep -q 'bypassed_bytes=[1-9]' <<<"$lst" && n_cut_bypassed=$((n_cut_bypassed + 1))
	echo "#   cut at ${kill}s: writer started at ${ws}s; last writer line: ${wl:-none}"
	echo "#   last status: ${lst:-none}"
	local ds dd df
	ds=$(grep -ac '^# drain t=.* start' "$log")
	if ((ds > 0)); then
		dd=$(grep -ac '^# drain t=.* done' "$log")
		df=$(grep -ac '^# drain t=.* failed' "$log")
		echo "#   concurrent drains: $ds started, $dd returned ($df with an error)"
	fi
	# a writer that made no progress for a long time before the cut = hang?
	local tl tw
	tl=$(sed -E 's/^# st t=([0-9.]+).*/\1/' <<<"$lst")
	tw=$(sed -E 's/^# powercut writer: t=([0-9.]+).*/\1/' <<<"$wl")
	[[ -z $wl ]] && tw=$ws
	if [[ -n $tl && -n $tw ]] && awk -v a="$tl" -v b="$tw" 'BEGIN { exit !(a - b > 10) }'; then
		failc "$tag: writer progress -- no write completed in the last $(awk -v a="$tl" -v b="$tw" 'BEGIN { printf "%.0f", a - b }') s before the cut (hung writes?)"
	fi
}

# Cut moments are measured from the start of the guest command.  The guest
# starts the writer at a moment we choose (PC_WRITER_AT), a little after the
# time recovery + verification took in recent boots (it varies with the host
# load), so that the cut lands the chosen number of seconds into the writer.
max_recent() {
	local m=0 k n=${#recent[@]}
	for ((k = n > 4 ? n - 4 : 0; k < n; k++)); do
		((recent[k] > m)) && m=${recent[k]}
	done
	echo "$m"
}
sched_journal() {
	local i f r est snap_boot kill what drain thr snapat label tag prev= prev_thr=1 prev_snap= m
	local est_init=6 init_retry=0 n_shadow=0 s_ts s_done
	recent=(8) # "ready" offsets of recent recovery boots
	n_cut_recovery=0 n_cut_writer=0 n_cut_full=0 n_cut_destage=0 n_cut_bypassed=0
	echo "# $SUM: chunk $chunk, jsnap at table start $start"
	for ((i = 0; i <= cuts; i++)); do
		if ((i == cuts)); then
			f=${JOURNAL_FEATS[RANDOM % ${#JOURNAL_FEATS[@]}]}
			[[ -n $bypass ]] && f="${f:+$f }bypass $bypass"
			# (with the last round's snapshot, as every other boot: a
			# snapshot whose message returned before the cut must be back)
			pcut= genv=(PC_START="$start" PC_PREV_THREADS="$prev_thr" PC_PREV_SNAP="$prev_snap")
			echo "# [$(elapsed) s] final boot: features='${f:-default}', verify $prev${prev_snap:+ and its snapshot}, drain, compare production"
			run_vm final 0 final "$prev" $f
			report final
			vm_exit final final
			break
		fi
		f=${JOURNAL_FEATS[RANDOM % ${#JOURNAL_FEATS[@]}]}
		[[ -n $bypass ]] && f="${f:+$f }bypass $bypass"
		r=$((RANDOM % 100))
		if ((i == 0)); then est=$est_init; else est=$(max_recent); fi
		# checking the last round's snapshot (a scan through its view)
		# takes longer than a recovery
		snap_boot=0
		[[ -n $prev_snap ]] && snap_boot=1 est=$((est + 30))
		wat=$((est + 2)) # writer start
		if ((i > 1 && r < 10)); then
			# now and then: cut during replay/verify/second recovery
			kill=$((1 + RANDOM % (est > 1 ? est : 1)))
			what="during recovery"
		else
			kill=$((wat + 3 + RANDOM % 13))
			what="writer ~$((kill - wat))s"
		fi
		# now and then: `drain` messages every 2 s while the writer runs
		drain=0
		((RANDOM % 4 == 0)) && drain=1
		# writer threads (one write in flight each), overlapping ranges
		thr=${THREADS[RANDOM % ${#THREADS[@]}]}
		# every other round or so: a snapshot while the writers run, at a
		# moment that may come after the cut
		snapat=
		[[ $what != "during recovery" ]] && ((RANDOM % 2)) && snapat=$((1 + RANDOM % (kill - wat)))
		label=cut$i tag=boot$i pcut=
		if [[ -n $FAULT_MODULE ]] && ((i % 2 == 1 || LW)); then
			pcut=$((1 + RANDOM % 3000))
			n_shadow=$((n_shadow + 1))
		fi
		echo "# [$(elapsed) s] boot $i/$cuts: features='${f:-default}'$( ((drain)) && echo ' + drain loop'), $thr writer thread(s)${snapat:+, snapshot ${snapat}s into the writers}, power cut after ${kill}s ($what)${pcut:+, or at the ${pcut}th pmem fence (shadow pmem)}"
		genv=(PC_START="$start" PC_DRAIN_LOOP="$drain" PC_WRITER_AT="$wat" PC_THREADS="$thr"
			PC_PREV_THREADS="$prev_thr" PC_SNAP_AT="$snapat" PC_PREV_SNAP="$prev_snap")
		if ((i == 0)); then
			run_vm "$tag" "$kill" init "$label" "$seed" $f
		else
			run_vm "$tag" "$kill" cut "$prev" "$label" $f
		fi
		report "$tag"
		vm_exit "$tag" cut || break
		journal_cut_summary "$tag" "$kill"
		lw_rebuild "$tag"
		m=$(ready_at "$tag" '^# powercut .*: ready t=')
		if [[ -n $m ]]; then
			if ((i == 0)); then est_init=$m; elif ((!snap_boot)); then recent+=("$m"); fi
		elif [[ $what != "during recovery" ]]; then
			# recovery was slower than we aimed for (host load): aim later
			if ((i == 0)); then est_init=$((kill + 5)); else recent+=($((kill + 5))); fi
		fi
		# "label" is verified in the next boot only if its writer ran;
		# otherwise the next boot verifies the same data again (still prev).
		if grep -aq "^# powercut $label: writer start" "$work/$tag.log"; then
			prev=$label prev_thr=$thr
			# its snapshot, as the next boot must find it
			s_ts=$(sed -n "s/^# powercut $label: snap SENT \([0-9]*\).*/\1/p" "$work/$tag.log" | head -n1)
			s_done=$(sed -n "s/^# powercut $label: snap DONE \([0-9]*\) \([0-9]*\).*/\1 \2/p" "$work/$tag.log" | head -n1)
			prev_snap=
			if [[ -n $s_done ]]; then
				[[ ${s_done#* } == 0 ]] || failc "$tag: snapshot message with writes in flight -- exit ${s_done#* }"
				[[ ${s_done#* } == 0 ]] && prev_snap="must $s_ts ${s_done% *}"
			elif [[ -n $s_ts ]]; then
				prev_snap="maybe $s_ts"
			fi
			[[ -n $prev_snap ]] && echo "#   snapshot of $label: $prev_snap"
		elif [[ -n $prev_snap ]] && grep -aq "^# powercut $prev: snapshot dropped" "$work/$tag.log"; then
			prev_snap= # checked and dropped before this boot was cut
		elif [[ -n $prev_snap ]]; then
			prev_snap="maybe ${prev_snap#* }" # it may have been dropped
		fi
		if [[ -z $prev ]]; then
			# the init boot was cut before its writer started (slow host):
			# once more, from the format
			if ((init_retry++ == 0)); then i=-1; continue; fi
			failc "$tag: init did not complete; giving up"
			break
		fi
	done
	# --bypass: the writes the cuts hit must have bypassed the journal
	if [[ -n $bypass ]]; then
		if ((n_cut_bypassed > 0)); then
			pass "bypass: $n_cut_bypassed cut(s) came after writes had bypassed the journal (bypassed_bytes > 0)"
		else
			failc "bypass: writes bypassed the journal before a cut -- bypassed_bytes was 0 at every cut"
		fi
	fi
	SUMMARY="cuts while writing: $n_cut_writer (journal >= 80% full: $n_cut_full, destage had run: $n_cut_destage${bypass:+, writes had bypassed: $n_cut_bypassed}), during recovery: $n_cut_recovery; shadow-pmem rounds: $n_shadow, cut at a pmem fence: $n_fence_cut"
}

# ---- snap ------------------------------------------------------------------------
# Power cuts while a snapshot is being preserved (copy-on-write at destage)
# and hydrated.  Each boot verifies the snapshot taken in the previous boot
# against the hash recorded before it was taken - through the view, and
# through the store alone once hydration (persisted, resumed after reload)
# completes - then takes a new one, starts hydration every other round, and
# runs a writer that keeps destage busy until QEMU is killed 35-54 s into
# the boot.  A snapshot whose message returned before the cut must come
# back `active` with that content (`none` or `invalid` fail), and resumed
# hydration must reach `done`.  With $JSNAP_FAULT_MODULE, rounds 1-4 of
# every 5 (--log-writes: every round) run on shadow pmem and cut the power
# at a pmem fence: the 1st to 4th after `snapshot` returned, a random one
# while the writer runs (preservation and hydration), or (round 4) the
# first fence after a destage batch overwrote chunks it preserved, with no
# unfenced store persisted (fault_cut_after_cow=1 after `snapshot`,
# fault_pmem_cut_how=2: the validity bits must be durable before
# production is overwritten).  Production is NVMe and the store virtio
# (two NVMe namespaces may swap device numbers between boots).
# --log-writes: the store behind dm-log-writes: a preservation copy the
# store never flushed is gone after the rebuild.

# snap_boot MODE ROUND KILL: one boot; expect (none, must:HASH, maybe:HASH)
# is what it must find, and becomes what the next boot must find
snap_boot() {
	local mode=$1 round=$2 kill=$3 tag=round$2 h log
	log=$work/round$2.log
	genv=()
	run_vm "$tag" "$kill" "$mode" "$expect" "$round"
	report "$tag"
	if [[ $mode == final ]]; then vm_exit "$tag" final; return; fi
	vm_exit "$tag" cut
	lw_rebuild "$tag"
	# The snapshot of this round must exist after the cut if its message
	# returned (SNAPPED reached us), may exist if it was sent (SNAPHASH: the
	# hash recorded before it), and must not exist otherwise (the previous
	# one was dropped).  A snapshot that exists must hold that content.
	h=$(sed -n 's/^SNAPHASH //p' "$log" | tr -d '\r' | tail -n1)
	if [[ -n $h ]] && grep -q '^SNAPPED' "$log"; then
		expect=must:$h
	elif [[ -n $h ]]; then
		expect=maybe:$h
	elif grep -q '^DROPPED' "$log"; then
		expect=none
	elif grep -q '^DROPPING' "$log"; then
		# cut while the drop was in flight: either way
		expect=maybe:${expect#*:}
	fi
	if ! grep -q '^WRITER' "$log"; then
		echo "# round $round: cut before the writer started"
		# killed by the host's timer (not a fence cut) before the writer:
		# a hung or far too slow recovery
		[[ $vm_rc == 137 ]] && failc "round $round: writer started before the cut (vm.sh 137 with no WRITER line)"
	fi
}
sched_snap() {
	local r
	expect=none
	echo "# $SUM: chunk $chunk"
	# (--log-writes: every boot that is cut is a fence cut, which leaves
	# the log time to be written)
	pcut=
	((LW)) && pcut=writer:$((50 + RANDOM % 3000))
	snap_boot init 0 $((RANDOM % 10 + 25))
	for ((r = 1; r <= cuts; r++)); do
		echo "# [$(elapsed) s] $SUM: boot $r/$cuts (expect ${expect:0:12})"
		pcut=
		if [[ -n $FAULT_MODULE ]] && ((r % 5 != 0 || LW)); then
			# right after the snapshot, during copy-on-write / hydration,
			# or at the first fence after a batch overwrote preserved
			# chunks (round 4: no hydration, whose store flushes would
			# cover a preservation's)
			case $((r % 5)) in
			1) pcut=snapped:$((1 + RANDOM % 4)) ;;
			4) pcut=cow:1 ;;
			*) pcut=writer:$((50 + RANDOM % 3000)) ;;
			esac
		fi
		snap_boot cut "$r" $((RANDOM % 20 + 35))
	done
	echo "# [$(elapsed) s] $SUM: final verification boot"
	pcut=
	snap_boot final final 0
	SUMMARY="cut at a pmem fence: $n_fence_cut"
}

# ---- mirror ----------------------------------------------------------------------
# Power cuts under the one-way mirror: volume B = the jsnap device, volume
# A = `jsnap-view B mirror` (every A-write goes to the store with FUA, then
# through B's journal; B-writes never reach A).  Media: pmem 16M (a small
# journal: back-pressure and destage), production 32M (NVMe, under a
# dm-linear that the guest always creates first, so that its device number
# never changes), store 32M and acklog 64M (virtio).
#   boot 0 (init):   fill production with known blocks, format B, split,
#                    then a QD1 O_DIRECT writer on A and one on B with mixed
#                    sizes (1-16 blocks of 4 KiB, across chunks), acks
#                    logged O_DSYNC on the acklog; the power cut 6-14 s later.
#   boots 1..N-1:    replay B, re-attach A if the snapshot survived, verify
#                    both against the model (mc.py), second recovery;
#                    sometimes a new split, sometimes `hydrate on`; the
#                    writers again; the power cut.
#   boot N (between): the deterministic cut between the two halves of an
#                    A-write (B with no_destage over a production whose
#                    writes are delayed by dm-delay; B-writes fill the
#                    journal until they are deferred; the A-write seen on
#                    the store device while its journal half waits; sysrq
#                    b).  The next boot checks that A holds it, B does not,
#                    and it was never acknowledged.
#   final boot:      verify, drain, hydrate to done, the store read directly
#                    = A, production read directly = B, rmmod.
# Model, per 4 KiB block: B = an acknowledged write (to A or to B) that no
# acknowledged write provably follows, or a write in flight at the cut; A =
# the latest acknowledged A-write, else the split-time content, or the
# A-write in flight.  Never torn, never stale, never B-writes on A, and the
# in-flight A-write never on B without being on A.  A random cut that lands
# between the halves is noted (`# between halves`).
# --log-writes: production and the store behind dm-log-writes, every random
# cut a shadow-pmem fence cut (the host kill a minute later the fallback), both
# rebuilt before the next boot; the `between` boot's sysrq cut keeps them.
MIRROR_FEATS=(
	""
	"no_destage"
	"high_watermark 5 low_watermark 1"
	"high_watermark 90 low_watermark 60"
	"destage_batch 4"
)
# mirror_cut_summary TAG KILL: where the power cut landed
mirror_cut_summary() {
	local tag=$1 kill=$2 ws wl lst
	ws=$(grep -a "^# $tag: writers start t=" "$work/$tag.log" | sed -E 's/.*start t=([0-9.]+).*/\1/' | head -n1)
	if [[ -z $ws ]]; then
		echo "#   cut at ${kill}s: before the writers started (recovery/split)"
		# aimed at the writers: a hung or far too slow recovery
		failc "$tag: writers started before the cut -- not started ${kill}s into the boot (aimed at ${wat}s; ready $(r=$(ready_at "$tag" "^# $tag: ready t=") && echo "at ${r}s" || echo never))"
		return
	fi
	wl=$(grep -a '^# powercut-mirror writer' "$work/$tag.log" | tail -n 2 | tr '\n' ' ')
	lst=$(grep -a '^# st t=' "$work/$tag.log" | tail -n1)
	echo "#   cut at ${kill}s, writers started at ${ws}s; last writer lines: ${wl:-none}"
	echo "#   last status: ${lst:-none}"
}
sched_mirror() {
	local i k f tag resplit hydrate kill r prev_between=0 n_between=0
	# When the guest will be ready for the writers: init (fill, format,
	# split) about 15-40 s, a recovery 8-20 s depending on the load, a new
	# split some 10 s more; learned from each boot.
	local RESPLIT_S=10 recent=(16)
	echo "# $SUM: chunk $chunk; $cuts random cuts + 1 between the halves"
	for ((i = 0; i <= cuts + 1; i++)); do
		tag=boot$i resplit=0 hydrate=0 wat=0 pcut=
		genv=(PCM_LABEL="$tag" PCM_PREV_BETWEEN="$prev_between")
		if ((i == cuts + 1)); then
			echo "# [$(elapsed) s] final boot: recover + verify, drain, hydrate, store = A, production = B"
			run_vm "$tag" 0 final
			report "$tag"
			vm_exit "$tag" final
			break
		fi
		if ((i == cuts)); then
			echo "# [$(elapsed) s] boot $i: recover + verify, then the deterministic cut between the halves of an A-write (no_destage, sysrq-b)"
			run_vm "$tag" 0 between no_destage
			report "$tag"
			grep -aq '^# between halves: the cut' "$work/$tag.log" && n_between=$((n_between + 1))
			vm_exit "$tag" sysrq '^SYSRQ-CUT' || break
			prev_between=0
			# the next boot checks the A-write between the halves
			[[ $vm_rc == 255 ]] && grep -aq '^SYSRQ-CUT' "$work/$tag.log" && prev_between=1
			lw_rebuild "$tag"
			continue
		fi
		f=${MIRROR_FEATS[RANDOM % ${#MIRROR_FEATS[@]}]}
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
		# --log-writes: a fence cut, the host kill a minute later the
		# fallback (a slow recovery or split must not meet it first)
		((LW)) && pcut=$((20 + RANDOM % 1000)) kill=$((kill + 60))
		genv+=(PC_WRITER_AT="$wat" PCM_RESPLIT="$resplit" PCM_HYDRATE="$hydrate")
		echo "# [$(elapsed) s] boot $i: $( ((i == 0)) && echo init || echo 'recover + verify'), features='${f:-default}'$( ((resplit)) && echo ', new split')$( ((hydrate)) && echo ', hydrate on'), writers at ${wat}s, power cut at ${kill}s${pcut:+ or at the ${pcut}th pmem fence (shadow pmem)}"
		if ((i == 0)); then
			run_vm "$tag" "$kill" init "$seed" $f
		else
			run_vm "$tag" "$kill" cut $f
		fi
		report "$tag"
		((i > 0)) && grep -aq '^# between halves: the cut' "$work/$tag.log" && n_between=$((n_between + 1))
		vm_exit "$tag" cut || break
		mirror_cut_summary "$tag" "$kill"
		lw_rebuild "$tag"
		if ((i > 0)); then
			r=$(ready_at "$tag" "^# $tag: ready t=")
			[[ -n $r ]] || r=$((kill + 5)) # (cut before the writers: aim later)
			((resplit)) && r=$((r - RESPLIT_S))
			recent+=("$r")
		fi
		prev_between=0
	done
	SUMMARY="$cuts random cuts + 1 between the halves; random cuts that landed between the halves: $n_between$( ((LW)) && echo "; cut at a pmem fence: $n_fence_cut")"
}

# ---- fs --------------------------------------------------------------------------
# Power cuts under ext4 on jsnap.  Media: pmem 32M, prod 256M (NVMe), store
# 256M and an acklog 1G (virtio).  Boot 0 formats the journal and makes the
# file system; every boot then runs a single-threaded file workload
# (tests/powercut/fsw.py): numbered files whose content follows from
# (file, version), created (write, fsync, fsync dir), replaced atomically
# (tmp, fsync, rename, fsync dir), appended (fsync) or deleted, each step
# logged O_DIRECT|O_DSYNC on the acklog before it starts and once it is
# durable; at a step chosen by the seed it freezes the file system, sends
# `snapshot`, thaws, and logs the files at the freeze.  The power goes at
# a random moment 3-12 s into the workload (host kill) or, on odd rounds
# with $JSNAP_FAULT_MODULE, at a random pmem fence with shadow pmem.  The
# next boot replays, mounts (ext4 journal replay), unmounts, requires
# `e2fsck -fn` clean, mounts again and checks every file: acknowledged ones
# exact, the step in flight either way (a create or an append: a prefix of
# its content), nothing no step created.  A snapshot whose `snapshot`
# returned must be `active`; its view must be fsck-clean and hold exactly
# the files of the freeze.  The last boot drains and checks production read
# directly (e2fsck -fn, the same files).
FS_FEATS=("" "high_watermark 5 low_watermark 1" "destage_batch 4" "high_watermark 30 low_watermark 10")
sched_fs() {
	local r mode kill snapstep f info m ready=20 # ready: seconds to the workload in a recovery boot, measured
	python3 "$snap/tests/powercut/fsw.py" selftest >/dev/null || die "fsw.py selftest failed"
	for ((r = 0; r <= cuts; r++)); do
		mode=cut kill=0 pcut= snapstep=-1 wat=0 genv=()
		((r == 0)) && mode=init
		((r == cuts)) && mode=final
		if [[ $mode != final ]]; then
			wat=$((ready + 4))
			((r == 0)) && wat=16 # (the init boot: ~8 s under TCG)
			kill=$((wat + 3 + RANDOM % 10))
			((RANDOM % 4)) && snapstep=$((RANDOM % 40))
			# (~400 fences a second under TCG: 0.1-7 s into the workload;
			# the host kill is the fallback)
			[[ -n $FAULT_MODULE ]] && ((r % 2)) && pcut=$((30 + RANDOM % 3000)) kill=$((wat + 25))
		fi
		f=${FS_FEATS[RANDOM % ${#FS_FEATS[@]}]}
		echo "# [$(elapsed) s] boot $r ($mode): features '${f:-default}', workload at ${wat}s, snapshot at step $snapstep, cut at ${kill}s${pcut:+ or at pmem fence $pcut}"
		run_vm "boot$r" "$kill" "$mode" "$r" "$seed" "$snapstep" "$wat" "${pcut:-0}" $f
		report "boot$r"
		if [[ $mode == final ]]; then
			vm_exit "boot$r" final
			break
		fi
		vm_exit "boot$r" cut || break
		info=$(python3 "$snap/tests/powercut/fsw.py" info "$work/acklog.img" "$r")
		echo "#   ack log: $info; $(grep -a '^# \(ready\|snapped\|step\)' "$work/boot$r.log" | tail -n 2 | tr '\n' ' ')"
		if grep -q 'workload=1' <<<"$info"; then pass "boot$r: the workload started before the cut"; else
			failc "boot$r: the workload started before the cut"
		fi
		m=$(sed -n 's/^# ready t=\([0-9]*\).*/\1/p' "$work/boot$r.log" | head -n1)
		if ((r == 0)); then :; elif [[ -n $m ]]; then ready=$((m > ready - 3 ? m : ready - 3)); else ready=$((ready + 10)); fi
		((vm_rc == 124)) && { tail_log "boot$r"; break; }
	done
	SUMMARY="cut at a pmem fence: $n_fence_cut"
}

# ---- windows ---------------------------------------------------------------------
# Deterministic power cuts inside two windows of the write path, reached
# with the fault-injection build (fault_copy_sector/fault_copy_ms hold
# journal writes starting at a sector between the changes-table insert and
# the pmem copy).  Boot 1 loads the fault module, sets up the window and
# cuts the power inside it (`echo b > /proc/sysrq-trigger`: reboot without
# sync, QEMU exits, vm.sh 255); boot 2 loads the normal module, reloads the
# same table (no format) and checks the contract (DESIGN.md §2.3 "Crash",
# "Snapshot content").  Media: pmem 32M, prod 32M on NVMe, store 32M on
# virtio (one disk per bus: device numbers stay the same across boots),
# fresh for each case.
#   a-full     W1 = 8 sectors A at S acknowledged; W2 = B at S held in its
#              copy window; `drain` running (destage and retirement run);
#              cut.  After replay S holds A or B, never the old content;
#              other acknowledged writes are there; a second recovery gives
#              the same content; drain -> production.
#   a-partial  the same with W1 = 16 sectors at S-8, W2 = its second half:
#              the first half is A, the second A or B.
#   b          acknowledged writes, a write at S held (its sequence number
#              is below the boundary), `snapshot` (must return at once),
#              cut.  After replay: snapshot active; W' at T; a ro view shows
#              the snapshot (checksums taken in boot 1; S: the old content
#              or the in-flight write), T the pre-snapshot content; again
#              after drain, after hydration, and on the store alone.
#   c1, c2     changed-block tracking: writes W0, snapshot, W1, drop, then a
#              snapshot held inside its changed-block flip (fault_flip_stage
#              1: previous interval forgotten and zeroed, boundary not taken;
#              2: new intervals committed), W2 during the hold, cut.  After
#              replay (twice) `changed` is exact: c1 no snapshot, current =
#              W1 + W2, previous refused; c2 snapshot active, previous = W1,
#              current = W2.
#   e4, e5     compaction of the journal tail (no snapshot, watermarks 2/1):
#              rounds of 4 KiB writes over a hot region leave a few live
#              round-1 blocks at the tail; the first compaction copy is held
#              (e4: data fenced, no descriptor; e5: descriptor durable,
#              table not switched), cut.  After replay (twice) and on
#              production after drain: the last round, and round 1 where
#              only it wrote.
# Env: PCW_HOLD_FLIP_MS (hold of cases c1, c2, d, e4, e5, default 15000: W2 takes a
# few seconds), PCW_HOLD_MS (hold of cases a-partial and b, default 30000),
# PCW_HOLD_FULL_MS (a-full, default 15000: W1 starts at S and waits the
# hold out too), PC_VM_TIMEOUT (per boot, default 300).
# two_boots C WHAT1 WHAT2 CUT CHECK ARGS...: case C in two boots, guest mode
# CUT (fault module; ends with the power cut) then CHECK (normal module),
# both with ARGS; fails once a boot did not end as it should.
two_boots() {
	local c=$1 w1=$2 w2=$3 m1=$4 m2=$5
	shift 5
	echo "# [$(elapsed) s] $c: boot 1 ($w1)"
	run_vm "$c-1" 0 "$m1" "$@"
	report "$c-1"
	vm_exit "$c-1" sysrq 'power cut (sysrq b)' || return 1
	echo "# [$(elapsed) s] $c: boot 2 ($w2)"
	run_vm "$c-2" 0 "$m2" "$@"
	report "$c-2"
	vm_exit "$c-2" final
}
sched_windows() {
	local c v h sums S=4096 T=8192 # S: the window's sector (chunk 64 of 64 sectors); T: another chunk
	local HOLD=${PCW_HOLD_MS:-30000} HOLD_FULL=${PCW_HOLD_FULL_MS:-15000}
	((${#cases[@]})) || cases=(a-full a-partial b c1 c2 d e4 e5)
	for c in "${cases[@]}"; do
		dpfx=$c- pcut=
		rm -f "$work/$c-prod.img" "$work/$c-store.img"
		case $c in
		a-full | a-partial)
			v=${c#a-} h=$HOLD
			[[ $v == full ]] && h=$HOLD_FULL
			genv=(PCW_HOLD_MS="$h")
			two_boots "$c" "fault module, hold $h ms at sector $S, drain, cut" \
				"normal module, replay, verify" a-cut a-check "$v" $S || break
			;;
		b)
			genv=(PCW_HOLD_MS="$HOLD")
			echo "# [$(elapsed) s] b: boot 1 (fault module, hold $HOLD ms at sector $S, snapshot, cut)"
			run_vm b-1 0 b-cut $S $T
			report b-1
			vm_exit b-1 sysrq 'power cut (sysrq b)' || break
			sums=$(grep -a '^# pcw-sum ' "$work/b-1.log" | tail -n1 | sed 's/^# pcw-sum //' | tr -d '\r')
			if [[ -z $sums ]]; then
				failc "b-1: checksums of the snapshot reported before the cut"
				continue
			fi
			genv=(PCW_HOLD_MS="$HOLD" PCW_SUMS="$sums")
			echo "# [$(elapsed) s] b: boot 2 (normal module, replay, view, drain, hydrate)"
			run_vm b-2 0 b-check $S $T
			report b-2
			vm_exit b-2 final || break
			;;
		c1 | c2)
			h=${PCW_HOLD_FLIP_MS:-15000}
			genv=(PCW_HOLD_MS="$h")
			two_boots "$c" "fault module, snapshot held $h ms at stage ${c#c} of its changed-block flip, writes, cut" \
				"normal module, replay, changed" c-cut c-check "${c#c}" || break
			;;
		d)
			h=${PCW_HOLD_FLIP_MS:-15000}
			genv=(PCW_HOLD_MS="$h")
			two_boots d "fault module, drop held $h ms before its superblock commit, drain, cut" \
				"normal module, replay, the snapshot and the volume" d-cut d-check $S || break
			;;
		e4 | e5)
			h=${PCW_HOLD_FLIP_MS:-15000}
			genv=(PCW_HOLD_MS="$h")
			two_boots "$c" "fault module, first compaction copy held $h ms at stage ${c#e}, cut" \
				"normal module, replay twice, drain" e-cut e-check "${c#e}" $S || break
			;;
		esac
	done
	SUMMARY="cases ${cases[*]}"
}

# ---- run the scenario ------------------------------------------------------------
t_start=$(date +%s)
elapsed() { echo $(($(date +%s) - t_start)); }
SUMMARY=
"sched_$scenario"
echo "# $SUM: seed=$seed, $(elapsed) s; $SUMMARY"
if ((nfail > 0)); then
	echo "# failed checks:"
	printf '#   %s\n' "${failed_lines[@]}"
fi
if ((nfail > 0 || keep)); then
	echo "# $SUM: logs kept in $work"
else
	rm -rf "$work"
fi
echo "$SUM: $npass passed, $nfail failed"
((nfail == 0))
exit
}
