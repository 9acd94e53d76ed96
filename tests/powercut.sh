#!/usr/bin/env bash
# tests/powercut.sh [--cuts N] [--seed S] [--keep] [--log-writes] [--chunk C] [--start S]
#
# Crash-consistency ("power cut") test for dm-jsnap.  File-backed media that
# survive killing QEMU: pmem 32M (small, so the journal fills and writers meet
# back-pressure and destage), prod 256M (NVMe), acklog 64M (virtio).
#
#   boot 0:    format the journal, initialise the acklog, run writer round 0,
#              power cut (vm.sh --kill-after) at a random moment.
#   boot i:    replay (create without format), verify round i-1 against its
#              ack log, second recovery (remove + create: same content, state
#              ok), run writer round i, power cut.
#   last boot: verify the last round, drain, compare production with the
#              jsnap device, rmmod.
#
# The writer (tests/powercut/pctool.c) writes self-describing 4 KiB blocks with
# O_DIRECT (some O_DSYNC, some followed by fdatasync), 1 to 256 blocks (4 KiB
# to 1 MiB) per write, from 1, 4 or 8 threads per round (one write in flight
# each, over overlapping ranges and a hot 8 MiB region) and, once a write
# returned, records it in the acklog (O_DIRECT|O_DSYNC, one checksummed
# 512-byte record per write, with its submit and completion times).  After
# the cut every block must hold an acknowledged write covering it that no
# acknowledged write submitted after its completion covers, or a write that
# was in flight (never older data, never a torn block); never-written blocks
# stay zero (tests/powercut/pc.py `oracle`, `pc.py selftest`).
#
# Each round uses different features (default watermarks, constant destage,
# no_destage, high watermarks, small destage batches) and a different cut
# moment (3-15 s into the writer, and now and then during recovery itself).
#
# --log-writes (volatile disk cache, the xfstests dm-log-writes method; needs
# $JSNAP_FAULT_MODULE): production is dm-log-writes over the NVMe disk with
# its log on a fresh 2G disk each boot; every round runs on shadow pmem and
# is cut at a random pmem fence, the cutting task waiting 1.5 s before the
# reset (fault_pmem_cut_ms) so that the log holds every completed write
# (no fence completes meanwhile: pmem stays as at the cut).  Before the next
# boot the host rebuilds production as a disk with a volatile write cache
# would hold it: the content at the start of the boot plus the logged writes
# up to the last FLUSH, and FUA writes after it (tests/powercut/lwreplay.py);
# whatever jsnap wrote after its last flush is lost.
#
# --chunk C (default 64) is the jsnap chunk size; --start S (default 0) puts
# the jsnap target at sector S of its table, behind a zero target, with the
# writer and the scans going through a dm-linear window over it (issue 12
# item 6: every geometry).
#
# Output: one `ok - powercut ...` / `not ok - powercut ...` line per check,
# progress notes (`# ...`), and finally `powercut: N passed, M failed`.
# Exit status non-zero if anything failed.  Logs of every boot are kept in
# the work directory when something fails (or with --keep).
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/env.sh
. "$top/scripts/env.sh"

cuts=20
seed=
keep=0
lw=0
usage() { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--cuts) cuts=${2:?}; shift 2 ;;
	--seed) seed=${2:?}; shift 2 ;;
	--keep) keep=1; shift ;;
	--log-writes) lw=1; shift ;;
	--chunk) PC_CHUNK=${2:?}; shift 2 ;;
	--start) PC_START=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ $cuts =~ ^[0-9]+$ && $cuts -ge 1 ]] || { echo "powercut: --cuts must be >= 1" >&2; exit 2; }
[[ -z $seed ]] && seed=$(( (RANDOM << 15 | RANDOM) ))
[[ $seed =~ ^[0-9]+$ ]] || { echo "powercut: --seed must be a number" >&2; exit 2; }
RANDOM=$seed # the schedule (features, cut moments) follows from the seed

export JSNAP_MODULE=${JSNAP_MODULE:-$top/dm-jsnap.ko}
[[ -f $JSNAP_MODULE ]] || { echo "powercut: module not found: $JSNAP_MODULE" >&2; exit 2; }

# (the work directory must be visible in the guest, which sees the host's
# root file system and /tmp, but not /var/tmp)
work=$(mktemp -d "${PC_WORKDIR:-/tmp}/jsnap-powercut.XXXXXX")
# Run a snapshot of the VM harness and of our guest scripts: bash reads a
# script while it runs it, so an edit of qemu/vm.sh during our 10+ minutes
# (seen: "vm.sh: line 314: syntax error") would break a boot.
snap=$work/top
mkdir -p "$snap/qemu" "$snap/scripts" "$snap/tests"
cp "$top"/qemu/{vm.sh,guest-init.sh,guest-lib.sh,kernel.config} "$snap/qemu/" &&
	cp "$top/scripts/env.sh" "$snap/scripts/" &&
	cp -r "$top/tests/powercut" "$snap/tests/" ||
	{ echo "powercut: cannot copy the harness to $snap" >&2; exit 2; }
gcc -O2 -Wall -pthread -o "$work/pctool" "$top/tests/powercut/pctool.c" -lz ||
	{ echo "powercut: cannot compile tests/powercut/pctool.c" >&2; exit 2; }
echo "# powercut: seed=$seed cuts=$cuts work=$work module=$JSNAP_MODULE"

PMEM_SIZE=${PC_PMEM:-32M}
CHUNK=${PC_CHUNK:-64}
export PC_CHUNK=$CHUNK
START=${PC_START:-0}
[[ $CHUNK =~ ^[0-9]+$ && $START =~ ^[0-9]+$ ]] || { echo "powercut: --chunk and --start take numbers" >&2; exit 2; }
echo "# powercut: chunk $CHUNK, jsnap at table start $START"
SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
VM_TIMEOUT=${PC_VM_TIMEOUT:-400}

npass=0
nfail=0
failed_lines=()
pass() { echo "ok - powercut $*"; npass=$((npass + 1)); }
failc() { echo "not ok - powercut $*"; nfail=$((nfail + 1)); failed_lines+=("not ok - powercut $*"); }

# Writer threads per round, chosen at random.
THREADS=(1 4 8)
prev_thr=1

# pmem ordering rounds (issue 11 item 2): with the fault-injection module
# ($JSNAP_FAULT_MODULE, built by make check), every other round loads it with
# fault_pmem_shadow=1, so pmem holds only what its writer fenced, and sets
# fault_pmem_cut=K as the writer starts: the K-th fence cuts the power, with
# every unfenced cache line persisted or not at random (the guest restarts:
# vm.sh 255 and the cut line on the console).  The host kill stays the
# fallback and is a fenced-only cut as well.
FAULT_MODULE=${JSNAP_FAULT_MODULE:-}
[[ -n $FAULT_MODULE && ! -f $FAULT_MODULE ]] && { echo "powercut: fault module not found: $FAULT_MODULE" >&2; exit 2; }
n_shadow=0 n_fence_cut=0
if ((lw)) && [[ -z $FAULT_MODULE ]]; then echo "powercut: --log-writes needs JSNAP_FAULT_MODULE" >&2; exit 2; fi

# Feature sets, chosen at random per round (always without `format`).
FEATS=(
	""
	"high_watermark 5 low_watermark 1"
	"no_destage"
	"high_watermark 90 low_watermark 60"
	"high_watermark 30 low_watermark 10 destage_batch 4"
	"destage_batch 1"
)

# run_vm TAG KILL_AFTER GUEST-ARGS...: boot, run tests/powercut/guest.sh,
# leave the log in $work/TAG.log (+ console); sets vm_rc.
run_vm() {
	local tag=$1 kill=$2
	shift 2
	local drain=${drain:-0} wat=${wat:-0} thr=${thr:-1} pthr=${prev_thr:-1} pcut=${pcut:-}
	local kopt=() lwopt=()
	[[ $kill != 0 ]] && kopt=(--kill-after "$kill")
	if ((lw)); then
		# a fresh log; production as it is now is the log's base
		rm -f "$work/lw.img" && truncate -s 2G "$work/lw.img"
		[[ -e $work/prod.img ]] || truncate -s 256M "$work/prod.img"
		cp --sparse=always "$work/prod.img" "$work/base.img"
		lwopt=(--disk "lw:2G:$work/lw.img:virtio")
	fi
	JSNAP_VM_CONSOLE=$work/$tag.console JSNAP_VM_DMESG=$work/$tag.dmesg \
		"$snap/qemu/vm.sh" --memory 1G --cpus 2 --timeout "$VM_TIMEOUT" "${kopt[@]}" \
		--pmem "$PMEM_SIZE:$work/pmem.img" \
		--disk "prod:256M:$work/prod.img:nvme" \
		--disk "acklog:64M:$work/acklog.img:virtio" --disk "store:256M:$work/store.img:virtio" "${lwopt[@]}" \
		-- env PC_CHUNK="$CHUNK" PC_START="$START" PC_LW="$lw" PC_TOOL="$work/pctool" PC_DRAIN_LOOP="$drain" PC_WRITER_AT="$wat" \
		PC_THREADS="$thr" PC_PREV_THREADS="$pthr" PC_FAULT_MODULE="$FAULT_MODULE" PC_PMEM_CUT="$pcut" PC_SNAP_AT="${snapat:-}" PC_PREV_SNAP="${prev_snap:-}" bash "$snap/tests/powercut/guest.sh" "$@" \
		>"$work/$tag.log" 2>&1
	vm_rc=$?
}

# report TAG: copy the guest's ok/not ok lines into our tally, show notes
# that matter, check for splats in the console log (vm.sh does not scan the
# log of a killed VM).
report() {
	local tag=$1 line
	while IFS= read -r line; do
		case $line in
		"ok - powercut "*) echo "$line"; npass=$((npass + 1)) ;;
		"not ok - powercut "*) echo "$line"; nfail=$((nfail + 1)); failed_lines+=("$line") ;;
		"#   "* | "# powercut "*": checkpoint gen="*" base_seq"*) echo "$line" ;;
		esac
	done <"$work/$tag.log"
	local s
	s=$(grep -aE "$SPLAT_RE" "$work/$tag.console" 2>/dev/null | grep -av 'jsnap-test-mark' || true)
	if [[ -n $s ]]; then
		failc "$tag: no kernel splat -- $(head -n1 <<<"$s")"
		grep -aE -B2 -A25 "$SPLAT_RE" "$work/$tag.console" | head -n 60 | sed 's/^/#   console: /'
	else
		pass "$tag: no kernel splat in the console log"
	fi
}

# cut_summary TAG KILL: what the writer was doing when the power went
cut_summary() {
	local tag=$1 kill=$2 ws lw lst
	ws=$(grep -a '^# powercut .*: writer start t=' "$tag_log" | sed -E 's/.*writer start t=([0-9.]+).*/\1/' | head -n1)
	lw=$(grep -a '^# powercut writer: t=' "$tag_log" | tail -n1)
	lst=$(grep -a '^# st t=' "$tag_log" | tail -n1)
	if [[ -z $ws ]]; then
		echo "#   cut at ${kill}s: during recovery/verify (writer not started)"
		n_cut_recovery=$((n_cut_recovery + 1))
		# a boot aimed at the writer whose writer never started: a hung
		# (or far too slow) recovery; a failure, not a note (issue 12 item 8)
		if [[ $what != "during recovery" ]] && ! grep -aq 'fault: pmem power cut at fence' "$work/$tag.console" 2>/dev/null; then
			failc "$tag: writer started before the cut -- not started ${kill}s into the boot (aimed at ${wat}s; ready at $(grep -a '^# powercut .*: ready t=' "$tag_log" | sed -E 's/.*ready t=//' | head -n1)s): recovery hung or far too slow"
		fi
	else
		n_cut_writer=$((n_cut_writer + 1))
		local pct
		pct=$(sed -nE 's/.* journal_used=([0-9]+) journal_size=([0-9]+) .*/\1 \2/p' <<<"$lst" |
			awk '{ printf "%d", $2 ? 100 * $1 / $2 : 0 }')
		[[ -n $pct ]] && ((pct >= 80)) && n_cut_full=$((n_cut_full + 1))
		grep -q 'destaged_bytes=[1-9]' <<<"$lst" && n_cut_destage=$((n_cut_destage + 1))
		echo "#   cut at ${kill}s: ready at $(grep -a '^# powercut .*: ready t=' "$tag_log" | sed -E 's/.*ready t=//' | head -n1)s, writer started at ${ws}s; last writer line: ${lw:-none}"
		echo "#   last status: ${lst:-none}"
		local ds dd df
		ds=$(grep -ac '^# drain t=.* start' "$tag_log")
		if ((ds > 0)); then
			dd=$(grep -ac '^# drain t=.* done' "$tag_log")
			df=$(grep -ac '^# drain t=.* failed' "$tag_log")
			echo "#   concurrent drains: $ds started, $dd returned ($df with an error)"
		fi
		# a writer that made no progress for a long time before the cut = hang?
		local tl tw
		tl=$(sed -E 's/^# st t=([0-9.]+).*/\1/' <<<"$lst")
		tw=$(sed -E 's/^# powercut writer: t=([0-9.]+).*/\1/' <<<"$lw")
		[[ -z $lw ]] && tw=$ws
		if [[ -n $tl && -n $tw ]] && awk -v a="$tl" -v b="$tw" 'BEGIN { exit !(a - b > 10) }'; then
			failc "$tag: writer progress -- no write completed in the last $(awk -v a="$tl" -v b="$tw" 'BEGIN { printf "%.0f", a - b }') s before the cut (hung writes?)"
		fi
	fi
}

# Cut moments are measured from the start of the guest command.  The guest
# starts the writer at a moment we choose (PC_WRITER_AT), a little after the
# time recovery + verification took in recent boots (it varies with the host
# load), so that the cut lands the chosen number of seconds into the writer.
est_init=6 # "ready" offset in the init boot (measured afterwards)
recent=(8) # "ready" offsets of recent recovery boots
measure() {
	local r
	r=$(grep -a '^# powercut .*: ready t=' "$tag_log" | sed -E 's/.*ready t=([0-9.]+).*/\1/' | head -n1)
	[[ -n $r ]] && printf '%.0f' "$(awk -v x="$r" 'BEGIN { print x + 0.5 }')"
}
max_recent() {
	local m=0 k n=${#recent[@]}
	for ((k = n > 4 ? n - 4 : 0; k < n; k++)); do
		((recent[k] > m)) && m=${recent[k]}
	done
	echo "$m"
}

n_cut_recovery=0 n_cut_writer=0 n_cut_full=0 n_cut_destage=0 init_retry=0
t_start=$(date +%s)
prev=
for ((i = 0; i <= cuts; i++)); do
	elapsed=$(($(date +%s) - t_start))
	if ((i < cuts)); then
		f=${FEATS[RANDOM % ${#FEATS[@]}]}
		r=$((RANDOM % 100))
		if ((i == 0)); then est=$est_init; else est=$(max_recent); fi
		# checking the last round's snapshot (a scan through its view)
		# takes longer than a recovery
		snap_boot=0
		[[ -n ${prev_snap:-} ]] && snap_boot=1 est=$((est + 30))
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
		# every other round or so: a snapshot while the writers run
		# (issue 11 item 3), at a moment that may come after the cut
		snapat=
		[[ $what != "during recovery" ]] && ((RANDOM % 2)) && snapat=$((1 + RANDOM % (kill - wat)))
		label=cut$i
		tag=boot$i
		pcut=
		if [[ -n $FAULT_MODULE ]] && ((i % 2 == 1 || lw)); then
			pcut=$((1 + RANDOM % 3000))
			n_shadow=$((n_shadow + 1))
		fi
		echo "# [$elapsed s] boot $i/$cuts: features='${f:-default}'$( ((drain)) && echo ' + drain loop'), $thr writer thread(s)${snapat:+, snapshot ${snapat}s into the writers}, power cut after ${kill}s ($what)${pcut:+, or at the ${pcut}th pmem fence (shadow pmem)}"
		if ((i == 0)); then
			run_vm "$tag" "$kill" init "$label" "$seed" $f
		else
			run_vm "$tag" "$kill" cut "$prev" "$label" $f
		fi
		tag_log=$work/$tag.log
		report "$tag"
		if [[ $vm_rc == 137 ]]; then
			pass "$tag: VM killed by the power cut (vm.sh 137)"
		elif [[ -n $pcut && $vm_rc == 255 ]] && grep -aq 'fault: pmem power cut at fence' "$work/$tag.console"; then
			pass "$tag: power cut at pmem fence $pcut ($(grep -ao 'fault: pmem power cut at fence.*' "$work/$tag.console" | head -n1 | sed 's/fault: pmem power cut at fence [0-9]*: //'))"
			n_fence_cut=$((n_fence_cut + 1))
		else
			failc "$tag: VM killed by the power cut -- vm.sh exited $vm_rc (expected 137)"
			tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
		fi
		if [[ $vm_rc == 125 ]]; then
			failc "$tag: harness/setup error (vm.sh 125); giving up"
			break
		fi
		cut_summary "$tag" "$kill"
		if ((lw)) && grep -aqE 'Ran out of space on the logdev|Error writing log block' "$work/$tag.console"; then
			failc "$tag: dm-log-writes logged every write -- $(grep -aoE 'Ran out of space on the logdev|Error writing log block' "$work/$tag.console" | head -n1)"
		elif ((lw)) && grep -aq 'fault: pmem power cut at fence' "$work/$tag.console"; then
			if out=$(python3 "$top/tests/powercut/lwreplay.py" --log "$work/lw.img" --base "$work/base.img" \
				--out "$work/prod.img" 2>&1); then
				echo "$out"
			else
				failc "$tag: replay the production log -- $(tail -n1 <<<"$out")"
			fi
		elif ((lw)); then
			# killed by the host: the log may lack its last entries; the
			# disk keeps what QEMU wrote (a cut without cache loss)
			echo "#   host kill, not a fence cut: production kept as written (no volatile-cache loss this boot)"
		fi
		m=$(measure)
		if [[ -n $m ]]; then
			if ((i == 0)); then est_init=$m; elif ((!snap_boot)); then recent+=("$m"); fi
		elif [[ $what != "during recovery" ]]; then
			# recovery was slower than we aimed for (host load): aim later
			if ((i == 0)); then est_init=$((kill + 5)); else recent+=($((kill + 5))); fi
		fi
		# "label" is verified in the next boot only if its writer ran;
		# otherwise the next boot verifies the same data again (still prev).
		if grep -aq "^# powercut $label: writer start" "$tag_log"; then
			prev=$label prev_thr=$thr
			# its snapshot, as the next boot must find it
			s_ts=$(sed -n "s/^# powercut $label: snap SENT \([0-9]*\).*/\1/p" "$tag_log" | head -n1)
			s_done=$(sed -n "s/^# powercut $label: snap DONE \([0-9]*\) \([0-9]*\).*/\1 \2/p" "$tag_log" | head -n1)
			prev_snap=
			if [[ -n $s_done ]]; then
				[[ ${s_done#* } == 0 ]] || failc "$tag: snapshot message with writes in flight -- exit ${s_done#* }"
				[[ ${s_done#* } == 0 ]] && prev_snap="must $s_ts ${s_done% *}"
			elif [[ -n $s_ts ]]; then
				prev_snap="maybe $s_ts"
			fi
			[[ -n $prev_snap ]] && echo "#   snapshot of $label: $prev_snap"
		elif [[ -n ${prev_snap:-} ]] && grep -aq "^# powercut $prev: snapshot dropped" "$tag_log"; then
			prev_snap= # checked and dropped before this boot was cut
		elif [[ -n ${prev_snap:-} ]]; then
			prev_snap="maybe ${prev_snap#* }" # it may have been dropped
		fi
		if [[ -z $prev ]]; then
			# the init boot was cut before its writer started (slow host):
			# once more, from the format
			if ((init_retry++ == 0)); then i=-1; continue; fi
			failc "$tag: init did not complete; giving up"
			break
		fi
	else
		f=${FEATS[RANDOM % ${#FEATS[@]}]}
		tag=final
		drain=0 pcut=
		echo "# [$elapsed s] final boot: features='${f:-default}', verify $prev, drain, compare production"
		run_vm "$tag" 0 final "$prev" $f
		tag_log=$work/$tag.log
		report "$tag"
		if [[ $vm_rc == 0 ]]; then pass "final: VM exit 0"; else
			failc "final: VM exit 0 -- vm.sh exited $vm_rc"
			tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
		fi
	fi
done

echo "# powercut: seed=$seed, $cuts cuts, $(($(date +%s) - t_start)) s; cuts while writing: $n_cut_writer" \
	"(journal >= 80% full: $n_cut_full, destage had run: $n_cut_destage), during recovery: $n_cut_recovery;" \
	"shadow-pmem rounds: $n_shadow, cut at a pmem fence: $n_fence_cut"
if ((nfail > 0)); then
	echo "# failed checks:"
	printf '#   %s\n' "${failed_lines[@]}"
fi
if ((nfail > 0 || keep)); then
	echo "# powercut: logs kept in $work"
else
	rm -rf "$work"
fi
echo "powercut: $npass passed, $nfail failed"
((nfail == 0))
