# shellcheck shell=bash
# Mirror scenario, guest part: one boot (tests/powercut/guest.sh mirror MODE).
#
#   init SEED [FEATURES...]
#       fill production, format B, split (see resplit), run the writers of
#       A and B until the host cuts the power.
#   cut [FEATURES...]
#       recover (replay B, re-attach A if the snapshot survived, verify both
#       against the model, second recovery), re-split if asked
#       (PCM_RESPLIT=1) or if there is no split, `hydrate on` if asked
#       (PCM_HYDRATE=1), run the writers until the host cuts the power.
#   between [FEATURES...]
#       recover, then the deterministic cut between the two halves of an
#       A-write: production's writes delayed (dm-delay under B), the journal
#       filled by B-writes until they are deferred, one A-write whose store
#       half is seen on the store device while its journal half waits, then
#       `echo b > /proc/sysrq-trigger` (prints SYSRQ-CUT first).
#   final [FEATURES...]
#       recover, drain, hydrate to done, store alone = A, production = B.
#
# B = pcmB (jsnap over pcmp, a dm-linear of the production disk: its
# number is the same in every boot; the `between` boot reloads it as
# dm-delay), A = pcmA (jsnap-view pcmB mirror).  --log-writes (PC_LW=1):
# production and the store behind dm-log-writes (pcmlp under pcmp, pcmls),
# created in the same order in every boot; a shadow-pmem round
# (PC_PMEM_CUT=K) cuts the power at the K-th pmem fence after the writers
# start.  Env: PC_TOOL (mctool), PC_WRITER_AT, PC_CHUNK, PCM_LABEL,
# PCM_RESPLIT, PCM_HYDRATE, PCM_PREV_BETWEEN.
MC=(python3 "$here/mc.py")
TOOL=${PC_TOOL:?PC_TOOL not set}
LABEL=${PCM_LABEL:-boot}
CHUNK=${PC_CHUNK:-64}
DISK=/dev/disk/jsnap/prod
STORE=/dev/disk/jsnap/store
ACK=/dev/disk/jsnap/acklog
PMEM=/dev/pmem0
PD=/dev/mapper/pcmp
B=/dev/mapper/pcmB
A=/dev/mapper/pcmA
SCR=/tmp/pcmirror.$LABEL.$$ # (the host file system is read-only in the guest)
rm -rf "$SCR"
mkdir -p "$SCR"
PFX="powercut-mirror $LABEL: "
END_LABEL= # (PFX names the boot)

mode=$1
shift

LEN=$(blockdev --getsz "$DISK")
NBLK=$((LEN / 8))
FEATS=("$@")
table_b() {
	local t="0 $LEN jsnap $PD $PMEM $STORE $CHUNK" f=("$@" "${FEATS[@]}")
	[[ ${#f[@]} -gt 0 ]] && t="$t ${#f[@]} ${f[*]}"
	echo "$t"
}
status() { jstatus pcmB; }
skey() { jkey pcmB "$1"; }
msg() { dmsetup message pcmB 0 "$@"; }
# drain, but not forever (a hang is a failure, not a VM timeout)
drain() {
	local rc=0
	timeout 120 dmsetup message pcmB 0 drain || rc=$?
	((rc == 124)) && echo "drain did not return within 120 s; status: $(status)"
	return $rc
}

# run WHAT CMD...: ok or not ok (with the output and the kernel log)
run() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$what"
	else
		notok "$what -- $(tr '\n' ' ' <<<"$out" | cut -c1-300)"
		dmesg_tail 15
		return 1
	fi
}
create_b() { # create_b WHAT [EXTRA FEATURES...]
	local what=$1
	shift
	run "$what: $(table_b "$@" | cut -d' ' -f3-)" dm_create pcmB "$(table_b "$@")" || end
}
attach_a() { run "$1: attach A (jsnap-view mirror)" dm_create pcmA "0 $LEN jsnap-view $B mirror"; }
remove() {
	local out
	out=$(dm_remove "$1" 2>&1) || { notok "remove $1 -- $(tr '\n' ' ' <<<"$out")"; dmesg_tail 15; end; }
}
# quiet CMD...: run CMD, show its output except the `# ` notes
quiet() {
	local rc=0
	"$@" >"$SCR/quiet.out" 2>&1 || rc=$?
	grep -v '^# ' "$SCR/quiet.out"
	return $rc
}
scan() { # scan DEV OUT
	local out
	if ! out=$("$TOOL" scan "$1" "$NBLK" "$2" 2>&1); then
		notok "read $1 -- $out"
		dmesg_tail 15
		return 1
	fi
}
ck_show() { read -r BASE SEED _ SPLIT < <("${MC[@]}" show --acklog "$ACK"); }

# recover: replay B, re-attach A if a snapshot survived, verify both,
# second recovery (remove + create: the same content).
recover() {
	echo "# t=$(rel) replay"
	create_b "replay (create without format)"
	check_state pcmB "after replay"
	local snap hb=()
	snap=$(skey snapshot)
	echo "# $LABEL: snapshot=$snap after replay"
	[[ $snap == active ]] && attach_a "after replay"
	echo "# t=$(rel) scan + verify"
	scan "$B" "$SCR/b1" || end
	local sa=()
	if [[ -b $A ]]; then
		scan "$A" "$SCR/a1" || end
		sa=(--scan-a "$SCR/a1" --dev-a "$A")
	fi
	[[ ${PCM_PREV_BETWEEN:-0} == 1 ]] && hb=(--between-halves)
	"${MC[@]}" verify --acklog "$ACK" --label "$LABEL" --scan-b "$SCR/b1" --dev-b "$B" \
		"${sa[@]}" --snapshot "$snap" "${hb[@]}" || { nfail=$((nfail + 1)); dmesg_tail 15; }
	echo "# t=$(rel) second recovery"
	[[ -b $A ]] && remove pcmA
	remove pcmB
	create_b "second recovery (create without format)"
	[[ $snap == active ]] && attach_a "second recovery"
	scan "$B" "$SCR/b2" &&
		"${MC[@]}" scancmp --a "$SCR/b1" --b "$SCR/b2" --label "$LABEL" \
			--what "second recovery: B unchanged" || nfail=$((nfail + 1))
	if [[ -b $A ]]; then
		AREF=$SCR/a2
		scan "$A" "$SCR/a2" &&
			"${MC[@]}" scancmp --a "$SCR/a1" --b "$SCR/a2" --label "$LABEL" \
				--what "second recovery: A unchanged" || nfail=$((nfail + 1))
	fi
	check_state pcmB "after second recovery"
	echo "# t=$(rel) recovery checks done"
}

# resplit: a new split.  B-only writes (left in the journal), B verified
# and recorded, checkpoint "pending" (A = B), `snapshot`, checkpoint
# "active", attach A, A = B.  A cut anywhere in between is handled by the
# checkpoint state (see mc.py).
resplit() {
	echo "# t=$(rel) re-split"
	"${MC[@]}" setsplit --acklog "$ACK" --state none >/dev/null || end
	[[ -b $A ]] && remove pcmA
	[[ $(skey snapshot) != none ]] && { run "drop the old snapshot" msg drop || end; }
	ck_show
	quiet "$TOOL" write 1 "$B" "$ACK" "$BASE" "$SEED" "$NBLK" "$T0" --count 150 ||
		{ notok "split: B-writes before the split"; end; }
	scan "$B" "$SCR/split-b" || end
	quiet "${MC[@]}" verify --acklog "$ACK" --label "$LABEL split" --scan-b "$SCR/split-b" \
		--dev-b "$B" --snapshot none || { nfail=$((nfail + 1)); end; }
	"${MC[@]}" setsplit --acklog "$ACK" --state pending --a-from-b >/dev/null || end
	run "split (snapshot message)" msg snapshot || end
	"${MC[@]}" setsplit --acklog "$ACK" --state active >/dev/null || end
	attach_a "split" || end
	AREF=$SCR/split-a
	scan "$A" "$SCR/split-a" &&
		"${MC[@]}" scancmp --a "$SCR/split-b" --b "$SCR/split-a" --label "$LABEL" \
			--what "split: A = B at the split" || nfail=$((nfail + 1))
	echo "# t=$(rel) split done; status: $(status)"
}

# status_loop: a status line every half second while the writers run; a
# status that does not change (nothing journaled, destaged, preserved or
# retired; the count of deferred bios aside, which moves while the worker
# retries them) for STALL_S seconds while writes are deferred is a hang,
# reported at once (the power cut may come any moment).
STALL_S=${PCM_STALL_S:-3}
status_loop() {
	local st t key prev= since= said=0
	while sleep 0.5; do
		st=$(status)
		t=$(rel)
		echo "# st t=$t $st"
		key=$(sed -E 's/ deferred=[0-9]+//' <<<"$st")
		if [[ $key != "$prev" || ! $st =~ deferred=[1-9] ]]; then
			prev=$key since=$t
		elif ((!said)) && awk -v a="$t" -v b="$since" -v s="$STALL_S" 'BEGIN { exit !(a - b >= s) }'; then
			notok "writers make progress -- status frozen with deferred writes since t=$since: $st"
			said=1
		fi
	done
}

# writers: both writers (A and B), QD1 each, until the power is cut
writers() {
	ck_show
	echo "# $LABEL: ready t=$(rel)"
	wait_until "${PC_WRITER_AT:-0}"
	echo "# $LABEL: writers start t=$(rel) base=$BASE table: $(dmsetup table pcmB)"
	[[ -n ${PC_PMEM_CUT:-} ]] && { arm_fence "$PC_PMEM_CUT" || end; }
	status_loop &
	"$TOOL" write 0 "$A" "$ACK" "$BASE" "$SEED" "$NBLK" "$T0" &
	local wa=$!
	"$TOOL" write 1 "$B" "$ACK" "$BASE" "$SEED" "$NBLK" "$T0" &
	local wb=$!
	wait -n "$wa" "$wb"
	local rc=$?
	# the writers only end on an error: the host expected to cut first
	notok "writers ended before the power cut (rc=$rc)"
	dmesg_tail
	end
}

# between: the deterministic cut between the store half and the journal
# half of an A-write
between() {
	local st
	run "between: drain (empty journal)" drain || end
	# Production writes (destage) delayed by 10 min; reads are not delayed,
	# so preservation (reads production, writes the store) still works.
	run "between: production writes delayed (dm-delay under B)" \
		dmsetup reload pcmp --table "0 $LEN delay $PDISK 0 0 $PDISK 0 600000" || end
	run "between: resume the delayed production" dmsetup resume pcmp || end
	ck_show
	# B-writes to the first half until the journal is full and they wait
	"$TOOL" write 1 "$B" "$ACK" "$BASE" "$SEED" "$NBLK" "$T0" --lo 0 --hi $((NBLK / 2)) &
	local wb=$! i
	for ((i = 0; i < 600; i++)); do
		st=$(status)
		[[ $st =~ deferred=([1-9][0-9]*) ]] && break
		kill -0 "$wb" 2>/dev/null || break
		sleep 0.2
	done
	if [[ $st =~ deferred=[1-9] ]]; then ok "between: journal full, B-writes deferred (t=$(rel))"; else
		notok "between: journal full, B-writes deferred -- status: $st"
		end
	fi
	echo "# $LABEL: status: $st"
	# One A-write of 3 blocks inside a chunk of the second half (partial
	# chunk: preserved first), seq BASE.
	local cb=$((CHUNK / 8)) x
	x=$((NBLK / 2 + (RANDOM % (NBLK / 2 / cb - 1)) * cb + 2))
	"$TOOL" write 0 "$A" "$ACK" "$BASE" "$SEED" "$NBLK" "$T0" --script "$x:3" &
	local wa=$!
	if "$TOOL" waitdata "$STORE" "$x" 3 "$BASE" 120; then
		ok "between: the A-write (seq $BASE, blocks [$x,$((x + 3)))) is on the store device"
	else
		notok "between: the A-write (seq $BASE, blocks [$x,$((x + 3)))) is on the store device -- not after 120 s"
		dmesg_tail
		end
	fi
	sleep 1
	st=$(status)
	if [[ $st =~ deferred=([0-9]+) ]] && ((BASH_REMATCH[1] >= 2)); then
		ok "between: the A-write's journal half is deferred (${BASH_REMATCH[0]})"
	else
		notok "between: the A-write's journal half is deferred -- status: $st"
	fi
	if kill -0 "$wa" 2>/dev/null; then ok "between: the A-write is not acknowledged"; else
		notok "between: the A-write is not acknowledged -- the writer ended"
	fi
	echo "# between halves: deterministic cut after the store half of the A-write seq $BASE (blocks [$x,$((x + 3)))), journal half deferred; status: $st"
	local s
	s=$(dmesg | grep -E "$SPLAT_RE" || true)
	[[ -n $s ]] && notok "no kernel splat -- $(head -n1 <<<"$s")"
	echo "SYSRQ-CUT t=$(rel) failed=$nfail"
	sleep 0.5
	echo b >/proc/sysrq-trigger
	sleep 30
	notok "between: sysrq-b did not stop the machine"
	end
}

final() {
	local st i
	ck_show
	[[ $SPLIT == active && -b $A ]] || resplit
	run "final: drain" drain || end
	st=$(status)
	if [[ $st =~ (^| )journal_used=0( |$) && $st =~ (^| )pending=0( |$) ]]; then
		ok "final: journal empty after drain"
	else
		notok "final: journal empty after drain -- $st"
	fi
	run "final: hydrate on" msg hydrate on
	for ((i = 0; i < 480; i++)); do
		[[ $(skey hydration) == done ]] && break
		sleep 0.5
	done
	st=$(status)
	if [[ $(skey hydration) == done ]]; then ok "final: hydration done (t=$(rel))"; else
		notok "final: hydration done -- $st"
	fi
	check_state pcmB "final: after drain + hydration"
	scan "$A" "$SCR/a3" &&
		"${MC[@]}" scancmp --a "$AREF" --b "$SCR/a3" --label "$LABEL" \
			--what "final: A unchanged by drain + hydration" || nfail=$((nfail + 1))
	scan "$STORE" "$SCR/store" &&
		"${MC[@]}" scancmp --a "$SCR/a3" --b "$SCR/store" --label "$LABEL" \
			--what "final: store device read directly = A after hydration" || nfail=$((nfail + 1))
	scan "$B" "$SCR/b3" || end
	remove pcmA
	run "final: drop" msg drop
	remove pcmB
	scan "$PD" "$SCR/prod" &&
		"${MC[@]}" scancmp --a "$SCR/b3" --b "$SCR/prod" --label "$LABEL" \
			--what "final: production read directly = B after drain" || nfail=$((nfail + 1))
	remove pcmp
	run "final: rmmod" rmmod dm-jsnap
	end
}

echo "# t=$(rel) insmod"
pc_insmod
# (--log-writes: production and the store behind dm-log-writes)
PDISK=$DISK
[[ ${PC_LW:-0} == 1 ]] && lw_over pcmlp "$DISK" PDISK
dm_create pcmp "0 $LEN linear $PDISK 0" >/dev/null || { notok "create pcmp (dm-linear production)"; end; }
[[ ${PC_LW:-0} == 1 ]] && lw_over pcmls "$STORE" STORE

case $mode in
init)
	seed=$1
	FEATS=("${@:2}")
	run "init: fill production (seq 1)" "$TOOL" fill "$PD" "$NBLK" 1 || end
	create_b "init: create with format" format
	check_state pcmB "init: after format"
	remove pcmB
	"${MC[@]}" init --acklog "$ACK" --seed "$seed" --nblk "$NBLK" || { notok "init: acklog"; end; }
	create_b "init: create without format (empty journal)"
	resplit
	writers
	;;
cut)
	recover
	ck_show
	if [[ ${PCM_RESPLIT:-0} == 1 || $SPLIT != active || ! -b $A ]]; then resplit; fi
	if [[ ${PCM_HYDRATE:-0} == 1 ]]; then run "hydrate on" msg hydrate on; fi
	writers
	;;
between)
	recover
	ck_show
	[[ $SPLIT == active && -b $A ]] || resplit
	between
	;;
final)
	recover
	final
	;;
*)
	echo "guest-mirror.sh: bad mode $mode" >&2
	exit 2
	;;
esac
