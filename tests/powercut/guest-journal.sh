# shellcheck shell=bash
# Journal scenario, guest part (tests/powercut/guest.sh journal MODE ...):
#
#   init  LABEL SEED [FEATURE ARGS...]
#       format the journal, create + remove, initialise the acklog, then
#       re-create without format and run the writer of round LABEL.
#   cut   PREV LABEL [FEATURE ARGS...]
#       replay (create without format), verify round PREV against its ack
#       log, second recovery (remove + create: same content), then run the
#       writer of round LABEL until the host cuts the power.
#   final PREV [FEATURE ARGS...]
#       as `cut` for PREV, then drain, verify the production disk itself
#       against the model (zeros outside the test area), and compare the
#       jsnap device with the production disk read directly.
#
# Prints `ok - powercut ...` / `not ok - powercut ...` lines and `# ...`
# notes; the writer never returns (the host cuts the power).
# Env: PC_TOOL (pctool), PC_START, PC_THREADS, PC_PREV_THREADS,
# PC_DRAIN_LOOP, PC_SNAP_AT, PC_PREV_SNAP (see tests/powercut.sh).
PFX="powercut "
PC=(python3 "$here/pc.py")
PCTOOL=${PC_TOOL:?PC_TOOL: path of pctool (compiled from pctool.c) not set}
PROD=/dev/disk/jsnap/prod
ACK=/dev/disk/jsnap/acklog
STORE=/dev/disk/jsnap/store
PMEM=/dev/pmem0
NAME=pc
DEV=/dev/mapper/$NAME
[[ ${PC_START:-0} != 0 ]] && DEV=/dev/mapper/pcio
CHUNK=${PC_CHUNK:-64}
# PC_START > 0: the jsnap target sits at that start of its table, behind a
# zero target; the writer and the scans use a dm-linear window over it
# ($IO_NAME), so that every block lands at target sector = production sector.
START=${PC_START:-0}
IO_NAME=pcio
NBLK=${PC_NBLK:-32768}
SCRATCH=/tmp/powercut.$$
mkdir -p "$SCRATCH"
mode=$1
shift

LEN=$(blockdev --getsz "$PROD")
table() { # the jsnap target's line
	local t="$START $LEN jsnap $PROD $PMEM $STORE $CHUNK"
	[[ $# -gt 0 ]] && t="$t $# $*"
	echo "$t"
}
status() { jstatus "$NAME"; }
# jmsg WORDS...: a message to the jsnap target
jmsg() { dmsetup message "$NAME" "$START" "$@"; }
skey() { jkey "$NAME" "$1"; }

# create LABEL WHAT FEATURES...: dmsetup create; on failure print the reason
# and the kernel log and give up (nothing else can be checked).
create() {
	local label=$1 what=$2 out
	shift 2
	local lines=("$(table "$@")")
	((START > 0)) && lines=("0 $START zero" "${lines[@]}")
	if out=$(dm_create_lines "$NAME" "${lines[@]}" 2>&1) &&
		{ ((START == 0)) || out=$(dm_create "$IO_NAME" "0 $LEN linear /dev/mapper/$NAME $START" 2>&1); }; then
		ok "$label: $what"
	else
		notok "$label: $what -- $(tr '\n' ' ' <<<"$out")"
		dmesg_tail
		end
	fi
}
remove() {
	local label=$1 out
	if ((START > 0)) && ! out=$(dm_remove "$IO_NAME" 2>&1); then
		notok "$label: dmsetup remove $IO_NAME -- $(tr '\n' ' ' <<<"$out")"
		dmesg_tail
		end
	fi
	if ! out=$(dm_remove "$NAME" 2>&1); then
		notok "$label: dmsetup remove -- $(tr '\n' ' ' <<<"$out")"
		dmesg_tail
		end
	fi
}
# status_loop: a status line every second (shows journal fill and destage
# at the moment of the cut)
status_loop() {
	while sleep 1; do
		echo "# st t=$(rel) $(status)"
	done
}

writer() {
	local label=$1
	# Start the writer at a fixed moment (PC_WRITER_AT seconds after the
	# command started), so that the host's --kill-after lands where it aimed
	# even though recovery takes a variable time.
	echo "# powercut $label: ready t=$(rel)"
	wait_until "${PC_WRITER_AT:-0}"
	echo "# powercut $label: writer start t=$(rel) table: $(dmsetup table "$NAME")"
	[[ -n ${PC_PMEM_CUT:-} ]] && { arm_fence "$PC_PMEM_CUT" || end; }
	status_loop &
	local sl=$!
	if [[ -n ${PC_SNAP_AT:-} ]]; then
		# a snapshot while the writers run, PC_SNAP_AT s after they start:
		# its send and return times (the ack clock) go to the host, which
		# has the next boot check its view
		(
			sleep "$PC_SNAP_AT"
			"$PCTOOL" snapshot "$NAME" "$START" | while read -r w x y; do echo "# powercut $label: snap $w $x $y"; done
		) &
	fi
	if [[ ${PC_DRAIN_LOOP:-0} == 1 ]]; then
		# drain concurrently with the writer (cut while draining)
		while sleep 2; do
			echo "# drain t=$(rel) start"
			jmsg drain || echo "# drain t=$(rel) failed rc=$?"
			echo "# drain t=$(rel) done"
		done &
	fi
	local base seed nblk
	read -r base seed nblk <"$SCRATCH/next" || { notok "$label: writer: no next seq"; end; }
	if [[ -x $PCTOOL ]]; then
		"$PCTOOL" write "$DEV" "$ACK" "$base" "$seed" "$nblk" "$T0" "${PC_THREADS:-1}"
	else
		"${PC[@]}" write --dev "$DEV" --acklog "$ACK" --t0 "$T0"
	fi
	local rc=$?
	kill "$sl" 2>/dev/null
	# the writer only ends on an error: the host expected to kill us first
	notok "$label: writer ended before the power cut (rc=$rc)"
	dmesg_tail
	end
}

echo "# t=$(rel) insmod"
pc_insmod
# --log-writes: production behind dm-log-writes (the first dm device: the
# same device number in every boot, which the journal records)
[[ ${PC_LW:-0} == 1 ]] && lw_over pclw "$PROD" PROD

# scan DEV NBLK OUT: per-block seq + crc of DEV (pctool.c)
scan() {
	local out
	if ! out=$("$PCTOOL" scan "$@" 2>&1); then
		notok "$LABEL: read $1 -- $out"
		dmesg_tail 15
		return 1
	fi
}
# same_scan LABEL WHAT A B: the two scans are identical
same_scan() {
	if cmp -s "$3" "$4"; then
		ok "$1: $2 ($(($(stat -c %s "$3") / 16 * 4096 >> 20)) MiB identical)"
	else
		"${PC[@]}" scancmp --a "$3" --b "$4" --label "$1" --what "$2"
		nfail=$((nfail + 1))
	fi
}

# snap_check PREV: the snapshot the previous round took while its writers
# ran (PC_PREV_SNAP "must TS TR": the message returned before the cut;
# "maybe TS [TR]": sent, or checked by a boot cut before it dropped it;
# empty: none may exist).  Its view must hold, as of one instant between TS
# and TR, every write completed before TS, none submitted after TR, and
# each write in flight whole or not at all (pc.py verify --window).  Then
# drop it.  (Runs before the verify that moves the acklog's checkpoint.)
snap_check() {
	local prev=$1 need ts tr st
	read -r need ts tr <<<"${PC_PREV_SNAP:-}"
	st=$(skey snapshot)
	echo "# $prev: snapshot=$st (expected: ${PC_PREV_SNAP:-none})"
	if [[ $st == none ]]; then
		if [[ $need == must ]]; then notok "$prev: the snapshot whose message returned before the cut survives -- snapshot=none"
		elif [[ -n $need ]]; then ok "$prev: no snapshot (its message was cut in flight, or it was dropped)"; fi
		return 0
	fi
	if [[ -z $need ]]; then
		notok "$prev: no snapshot exists that nobody took -- snapshot=$st"
	elif [[ $st != active ]]; then
		notok "$prev: the snapshot is active after the cut -- snapshot=$st"
	else
		ok "$prev: the snapshot taken with writes in flight is active after the cut"
		if out=$(dm_create pcv "0 $LEN jsnap-view /dev/mapper/$NAME ro" 2>&1); then
			if scan /dev/mapper/pcv "$NBLK" "$SCRATCH/scanv"; then
				"${PC[@]}" verify --scan "$SCRATCH/scanv" --dev /dev/mapper/pcv --acklog "$ACK" \
					--label "$prev: snapshot view" --threads "${PC_PREV_THREADS:-1}" --no-checkpoint \
					--window "$ts" "${tr:-9223372036854775807}" || { nfail=$((nfail + 1)); dmesg_tail 15; }
			fi
			dm_remove pcv || notok "$prev: remove the view"
		else
			notok "$prev: create a view of the snapshot -- $(tr '\n' ' ' <<<"$out")"
		fi
	fi
	if out=$(jmsg drop 2>&1); then echo "# powercut $prev: snapshot dropped"; else notok "$prev: drop -- $out"; fi
}

# recover PREV FEATURES...: replay, verify, second recovery
recover() {
	local prev=$1
	shift
	LABEL=$prev
	echo "# t=$(rel) replay"
	create "$prev" "replay (create without format)" "$@"
	check_state "$NAME" "$prev: after replay"
	snap_check "$prev"
	echo "# t=$(rel) scan + verify"
	scan "$DEV" "$NBLK" "$SCRATCH/scan1" || end
	"${PC[@]}" verify --scan "$SCRATCH/scan1" --dev "$DEV" --acklog "$ACK" --label "$prev" \
		--threads "${PC_PREV_THREADS:-1}" \
		--next-out "$SCRATCH/next" || { nfail=$((nfail + 1)); dmesg_tail 15; }
	[[ -s $SCRATCH/next ]] || end
	echo "# t=$(rel) remove"
	remove "$prev"
	echo "# t=$(rel) second recovery"
	create "$prev" "second recovery (create without format)" "$@"
	scan "$DEV" "$NBLK" "$SCRATCH/scan2" &&
		same_scan "$prev" "second recovery gives the same content" "$SCRATCH/scan1" "$SCRATCH/scan2"
	check_state "$NAME" "$prev: after second recovery"
	echo "# t=$(rel) recovery checks done"
}

case $mode in
init)
	label=$1 seed=$2
	shift 2
	LABEL=$label
	create init "create with 1 format" format
	check_state "$NAME" "init: after format"
	remove init
	"${PC[@]}" init --acklog "$ACK" --seed "$seed" --nblk "$NBLK" || { notok "init: acklog init"; end; }
	echo "1 $seed $NBLK" >"$SCRATCH/next"
	create init "create without format (empty journal)" "$@"
	LABEL=$label
	writer "$label"
	;;
cut)
	prev=$1 label=$2
	shift 2
	recover "$prev" "$@"
	LABEL=$label
	writer "$label"
	;;
final)
	prev=$1
	shift
	recover "$prev" "$@"
	LABEL=final
	if out=$(jmsg drain 2>&1); then ok "final: drain"; else
		notok "final: drain -- $out"
		dmesg_tail
	fi
	st=$(status)
	echo "# final: status after drain: $st"
	if [[ $st =~ (^| )journal_used=0( |$) && $st =~ (^| )pending=0( |$) ]]; then
		ok "final: journal empty after drain"
	else
		notok "final: journal empty after drain -- $st"
	fi
	check_state "$NAME" "final: after drain"
	# whole device through jsnap, then the production disk read directly
	scan "$DEV" 0 "$SCRATCH/all-jsnap"
	remove final
	scan "$PROD" 0 "$SCRATCH/all-prod" &&
		same_scan final "production disk after drain equals the jsnap device" \
			"$SCRATCH/all-jsnap" "$SCRATCH/all-prod"
	# the production disk itself against the verified model (the checkpoint
	# the last recovery wrote: no write came after it), zeros elsewhere
	"${PC[@]}" verify --scan "$SCRATCH/all-prod" --dev "$PROD" --acklog "$ACK" \
		--label final-production --threads "${PC_PREV_THREADS:-1}" --no-checkpoint --zero-tail ||
		nfail=$((nfail + 1))
	if out=$(rmmod dm-jsnap 2>&1); then ok "final: rmmod"; else notok "final: rmmod -- $out"; fi
	end
	;;
*)
	echo "guest-journal.sh: bad mode $mode" >&2
	exit 2
	;;
esac
