# shellcheck shell=bash
# Windows scenario, guest part (tests/powercut/guest.sh windows MODE ...):
#
#   a-cut   full|partial S   boot 1 of case a (fault module)
#   a-check full|partial S   boot 2 of case a (normal module)
#   b-cut   S T              boot 1 of case b (fault module)
#   b-check S T              boot 2 of case b (normal module);
#                            PCW_SUMS: the "# pcw-sum" line of boot 1
#   c-cut   1|2              boot 1 of case c1/c2 (fault module)
#   c-check 1|2              boot 2 of case c1/c2 (normal module)
#   d-cut   S                boot 1 of case d (fault module)
#   d-check S                boot 2 of case d (normal module)
#   e-cut   4|5 S            boot 1 of case e4/e5 (fault module)
#   e-check 4|5 S            boot 2 of case e4/e5 (normal module)
#
# Env: PC_FAULT_MODULE (fault-injection build), JSNAP_MODULE (normal
# build), PCW_HOLD_MS (fault_copy_ms).  A `*-cut` mode ends with a power
# cut (`echo b > /proc/sysrq-trigger`: reboot without sync; QEMU exits).
# Prints `ok - powercut-windows ...` / `not ok - powercut-windows ...` lines
# (tests/guest/lib.sh, whose ok/fail/finish replace those of guest-lib.sh
# here) and `# ...` notes.
mode=$1
shift
export TEST_NAME="powercut-windows $mode"
export SCRATCH=/tmp/pcw.$$
# shellcheck source=../guest/lib.sh
. "$here/../guest/lib.sh"

NAME=pcw
DEV=/dev/mapper/$NAME
LEN=$((32 * 2048)) # 32 MiB volume
HOLD=${PCW_HOLD_MS:-30000}
FAULT_KO=${PC_FAULT_MODULE:-}
KO=$JSNAP_MODULE

# pat TAG NSECT: NSECT self-describing sectors ("TAG sector i", padded)
pat() {
	python3 -c 'import sys
t = sys.argv[1].encode()
sys.stdout.buffer.write(b"".join((t + b" sector %d " % i).ljust(512, t[:1]) for i in range(int(sys.argv[2]))))' "$1" "$2"
}
# put FILE DEV SECTOR: the file as ONE O_DIRECT write bio at SECTOR
put() {
	local n
	n=$(stat -c %s "$1")
	dd if="$1" of="$2" bs="$n" count=1 seek=$(($3 * 512)) oflag=direct,seek_bytes conv=notrunc status=none
}
# sum DEV SECTOR COUNT
sum() { rd "$1" "$2" "$3" | sum_stream; }
fsum() { sum_stream <"$1"; }
# fpart FILE SECTOR COUNT: sectors of a file
fpart() { dd if="$1" bs=512 skip="$2" count="$3" status=none; }

table() {
	local store=$1
	shift
	jsnap_table $LEN "$PROD" "$PMEM" "$store" "$CHUNK" "$@"
}
load() { # load WHAT STORE FEATURES...: insmod done; dmsetup create
	local what=$1 out
	shift
	if out=$(dm_create "$NAME" "$(table "$@")" 2>&1); then ok "$what"; else
		fail "$what" "$(tr '\n' ' ' <<<"$out")"
		dmesg_tail
		finish
	fi
}
# insmod_fault PARAM=VALUE...: the fault-injection build with these parameters
insmod_fault() {
	local out
	[[ -n $FAULT_KO && -f $FAULT_KO ]] || { fail "fault module" "not found: '$FAULT_KO'"; finish; }
	if out=$(insmod "$FAULT_KO" "$@" 2>&1); then
		ok "insmod the fault module ($*)"
	else
		fail "insmod the fault module" "$out"
		finish
	fi
}
insmod_normal() {
	local out
	if out=$(insmod "$KO" 2>&1); then ok "insmod the normal module"; else
		fail "insmod the normal module" "$out"
		finish
	fi
}
# holds: how many copy holds of sector $1 the kernel log shows
holds() { dmesg | grep -c "fault: holding the copy of sector $1\$"; }
# wait_hold S N: until the Nth hold of sector S is logged (10 s at most)
wait_hold() {
	local i
	for ((i = 0; i < 50; i++)); do
		(($(holds "$1") >= $2)) && return 0
		sleep 0.2
	done
	return 1
}
# cut: power cut (sysrq b: immediate reboot, no sync; QEMU exits)
cut() {
	note "t=$(rel) power cut (sysrq b)"
	sleep 1 # let the console carry our last lines out
	echo b >/proc/sysrq-trigger
	sleep 10
	fail "power cut" "sysrq b did not reboot the guest"
	finish
}

# others: acknowledged writes elsewhere, before the window (pattern files
# kept under $SCRATCH only for the boot that writes them; boot 2 regenerates)
OTHERS=("64 8 O1" "10000 16 O2" "40000 8 O3")
write_others() {
	local o s n t
	for o in "${OTHERS[@]}"; do
		read -r s n t <<<"$o"
		pat "$t" "$n" >"$SCRATCH/$t"
		put "$SCRATCH/$t" "$DEV" "$s" || { fail "acknowledged write $t at $s"; return 1; }
	done
	ok "acknowledged writes elsewhere (${#OTHERS[@]})"
}
check_others() {
	local o s n t
	for o in "${OTHERS[@]}"; do
		read -r s n t <<<"$o"
		pat "$t" "$n" >"$SCRATCH/$t"
		check_eq "$1: acknowledged write $t at sector $s readable" "$(fsum "$SCRATCH/$t")" "$(sum "$DEV" "$s" "$n")"
	done
}

# ---- case a: an acknowledged write superseded by one being copied -----------------
# full:    W1 = 8 sectors A at S, W2 = 8 sectors B at S
# partial: W1 = 16 sectors A at S-8, W2 = 8 sectors B at S (the second half)
a_geom() {
	case $1 in
	full) W1_AT=$2 W1_N=8 ;;
	partial) W1_AT=$(($2 - 8)) W1_N=16 ;;
	*) echo "guest-windows.sh: bad variant $1" >&2; exit 2 ;;
	esac
	W2_AT=$2 W2_N=8
	pat A $W1_N >"$SCRATCH/A"
	pat B $W2_N >"$SCRATCH/B"
}

a_cut() {
	local var=$1 S=$2
	a_geom "$var" "$S"
	insmod_fault fault_copy_sector="$S" fault_copy_ms="$HOLD"
	load "create jsnap (format, no store)" - format
	write_others || finish
	local h=0
	[[ $W1_AT == "$S" ]] && h=1 # W1 itself is held too (it starts at S)
	((h)) && note "t=$(rel) W1 starts at S: it waits out the hold ($HOLD ms)"
	if put "$SCRATCH/A" "$DEV" "$W1_AT"; then ok "W1 ($W1_N sectors A at $W1_AT) acknowledged"; else
		fail "W1 acknowledged"
		finish
	fi
	check_eq "W1 reads back" "$(fsum "$SCRATCH/A")" "$(sum "$DEV" "$W1_AT" "$W1_N")"
	note "t=$(rel) W2 ($W2_N sectors B at $W2_AT) in the background"
	put "$SCRATCH/B" "$DEV" "$W2_AT" &
	local w2=$!
	if wait_hold "$S" $((h + 1)); then ok "W2 held between the table insert and the pmem copy"; else
		fail "W2 held between the table insert and the pmem copy" "no hold logged"
		dmesg_tail
	fi
	note "t=$(rel) drain in the background: $(jsnap_status $NAME)"
	(
		if out=$(msg "$NAME" drain 2>&1); then echo "# drain returned"; else echo "# drain failed: $out"; fi
	) &
	local dr=$!
	sleep 3
	local st
	st=$(jsnap_status "$NAME")
	note "t=$(rel) status before the cut: $st"
	if kill -0 "$w2" 2>/dev/null && kill -0 "$dr" 2>/dev/null; then
		ok "at the cut: W2 still in its copy window, drain waiting for it"
	else
		fail "at the cut: W2 still in its copy window, drain waiting for it" \
			"W2 $(kill -0 "$w2" 2>/dev/null && echo running || echo done), drain $(kill -0 "$dr" 2>/dev/null && echo running || echo done)"
	fi
	# the drain destaged the other writes (and, partial, W1's first half)
	# meanwhile, so retirement ran inside the window
	local dsect=$((8 + 16 + 8))
	[[ $var == partial ]] && dsect=$((dsect + 8))
	check_eq "drain destaged the other writes before the cut (destaged_bytes)" "$((dsect * 512))" \
		"$(sed -nE 's/.* destaged_bytes=([0-9]+).*/\1/p' <<<"$st")"
	cut
}

a_check() {
	local var=$1 S=$2 r1 r2
	a_geom "$var" "$S"
	insmod_normal
	load "replay (create without format)" -
	check_eq "state=ok errors=0 after replay" "ok 0" "$(status_get $NAME state) $(status_get $NAME errors)"
	note "status after replay: $(jsnap_status $NAME)"
	local zero
	zero=$(head -c $((W2_N * 512)) /dev/zero | sum_stream)
	r1=$(rd "$DEV" "$W1_AT" "$W1_N" | od -An -c | head -n 2 | tr -s ' ' | head -c 100)
	note "W1 range after replay begins: $r1"
	local a b got
	if [[ $var == partial ]]; then
		check_eq "non-overlapped half of W1 (sectors $W1_AT+8) is A" \
			"$(fpart "$SCRATCH/A" 0 8 | sum_stream)" "$(sum "$DEV" "$W1_AT" 8)"
		a=$(fpart "$SCRATCH/A" 8 8 | sum_stream)
	else
		a=$(fsum "$SCRATCH/A")
	fi
	b=$(fsum "$SCRATCH/B")
	got=$(sum "$DEV" "$W2_AT" "$W2_N")
	if [[ $got == "$a" ]]; then ok "overlapped sectors $W2_AT+$W2_N hold A or B (A: W2 was lost in flight)"
	elif [[ $got == "$b" ]]; then ok "overlapped sectors $W2_AT+$W2_N hold A or B (B)"
	elif [[ $got == "$zero" ]]; then
		fail "overlapped sectors $W2_AT+$W2_N hold A or B" "they hold zeroes (the old content): acknowledged W1 was lost"
	else
		fail "overlapped sectors $W2_AT+$W2_N hold A or B" "they hold something else"
	fi
	check_others "after replay"
	r1=$(sum "$DEV" 0 $LEN)
	dm_remove "$NAME" || fail "remove"
	load "second recovery (create without format)" -
	r2=$(sum "$DEV" 0 $LEN)
	check_eq "second recovery gives the same content" "$r1" "$r2"
	check_cmd "drain" msg "$NAME" drain
	check_eq "journal empty after drain" "0 0" "$(status_get $NAME pending) $(status_get $NAME journal_used)"
	check_eq "jsnap content unchanged by drain" "$r1" "$(sum "$DEV" 0 $LEN)"
	dm_remove "$NAME" || fail "remove"
	check_eq "production after drain equals the recovered content" "$r1" "$(sum "$PROD" 0 $LEN)"
	check_cmd "rmmod" rmmod dm_jsnap
}

# ---- case b: power cut right after `snapshot`, a write below the boundary in flight --
WS_N=8 # sectors of the held write at S, and of W' at T
b_pats() {
	pat S-NEW $WS_N >"$SCRATCH/snew"
	pat T-PRE $WS_N >"$SCRATCH/tpre"
	pat T-POST $WS_N >"$SCRATCH/tpost"
}

b_cut() {
	local S=$1 T=$2
	b_pats
	# production: known random content
	head -c $((LEN * 512)) /dev/urandom | dd of="$PROD" bs=1M iflag=fullblock oflag=direct status=none
	insmod_fault fault_copy_sector="$S" fault_copy_ms="$HOLD"
	load "create jsnap (format, store)" "$STORE" format
	write_others || finish
	# pre-snapshot data at T, in the journal; and next to S, in its chunk
	put "$SCRATCH/tpre" "$DEV" "$T" || fail "write at T"
	head -c 4096 /dev/urandom >"$SCRATCH/near"
	put "$SCRATCH/near" "$DEV" $((S + WS_N)) || fail "write next to S"
	ok "pre-snapshot writes at T=$T and next to S acknowledged"
	local lo s_old hi tsum
	lo=$(sum "$DEV" 0 "$S")
	s_old=$(sum "$DEV" "$S" $WS_N)
	hi=$(sum "$DEV" $((S + WS_N)) $((LEN - S - WS_N)))
	tsum=$(sum "$DEV" "$T" $WS_N)
	check_eq "T holds the pre-snapshot write" "$(fsum "$SCRATCH/tpre")" "$tsum"
	note "t=$(rel) write at S in the background (held: its seq is below the snapshot boundary)"
	put "$SCRATCH/snew" "$DEV" "$S" &
	local ws=$!
	if wait_hold "$S" 1; then ok "write at S held in its copy window"; else
		fail "write at S held in its copy window" "no hold logged"
		dmesg_tail
	fi
	local t0 t1 ms
	t0=$(date +%s%N)
	check_cmd "snapshot" msg "$NAME" snapshot
	t1=$(date +%s%N)
	ms=$(((t1 - t0) / 1000000))
	if ((ms < 5000)); then ok "snapshot returns at once (${ms} ms) with a write in flight"; else
		fail "snapshot returns at once with a write in flight" "took $ms ms"
	fi
	check_eq "snapshot=active" active "$(status_get $NAME snapshot)"
	if kill -0 "$ws" 2>/dev/null; then ok "at the cut: the write at S is still in flight"; else
		fail "at the cut: the write at S is still in flight" "it completed (hold too short?)"
	fi
	note "t=$(rel) status before the cut: $(jsnap_status $NAME)"
	echo "# pcw-sum lo=$lo s_old=$s_old s_new=$(fsum "$SCRATCH/snew") hi=$hi t=$tsum"
	cut
}

b_check() {
	local S=$1 T=$2 kv lo= s_old= s_new= hi= t=
	b_pats
	for kv in ${PCW_SUMS:-}; do
		case $kv in
		lo=* | s_old=* | s_new=* | hi=* | t=*) printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
		esac
	done
	[[ -n $lo && -n $s_old && -n $s_new && -n $hi && -n $t ]] || { fail "checksums of boot 1" "PCW_SUMS='${PCW_SUMS:-}'"; finish; }
	insmod_normal
	dmesg_mark
	load "replay (create without format)" "$STORE"
	check_eq "snapshot=active after replay" active "$(status_get $NAME snapshot)"
	check_eq "state=ok errors=0 after replay" "ok 0" "$(status_get $NAME state) $(status_get $NAME errors)"
	dmesg_since_mark | grep -a 'dm-jsnap' | sed 's/^/#   dmesg: /'
	check_others "after replay"
	put "$SCRATCH/tpost" "$DEV" "$T" || fail "write W' at T"
	check_eq "jsnap reads W' at T" "$(fsum "$SCRATCH/tpost")" "$(sum "$DEV" "$T" $WS_N)"
	local view
	view=$(dm_create v$NAME "0 $LEN jsnap-view $DEV ro") || { fail "create ro view"; finish; }
	ok "create ro view"
	local vs
	# view_checks LABEL DEV: the snapshot's content; sets vs (content at S)
	view_checks() {
		local what=$1 d=$2
		check_eq "$what: T shows the pre-snapshot content (not W')" "$t" "$(sum "$d" "$T" $WS_N)"
		check_eq "$what: sectors 0..S equal the snapshot" "$lo" "$(sum "$d" 0 "$S")"
		check_eq "$what: sectors S+$WS_N..end equal the snapshot" "$hi" "$(sum "$d" $((S + WS_N)) $((LEN - S - WS_N)))"
		vs=$(sum "$d" "$S" $WS_N)
		if [[ $vs == "$s_old" ]]; then ok "$what: S holds the old content or the in-flight write (old)"
		elif [[ $vs == "$s_new" ]]; then ok "$what: S holds the old content or the in-flight write (new)"
		else fail "$what: S holds the old content or the in-flight write" "it holds something else"
		fi
	}
	view_checks "view" "$view"
	local vs0=$vs
	check_cmd "drain" msg "$NAME" drain
	check_eq "pending=0 after drain" 0 "$(status_get $NAME pending)"
	note "status after drain: $(jsnap_status $NAME)"
	view_checks "view after drain" "$view"
	check_eq "view after drain: S unchanged" "$vs0" "$vs"
	check_eq "production at T holds W' after drain" "$(fsum "$SCRATCH/tpost")" "$(sum "$PROD" "$T" $WS_N)"
	check_cmd "hydrate on" msg "$NAME" hydrate on
	if wait_hydrated "$NAME" 200; then ok "hydration done"; else fail "hydration done" "$(jsnap_status $NAME)"; fi
	view_checks "view after hydration" "$view"
	dm_remove "v$NAME" || fail "remove the view"
	dm_remove "$NAME" || fail "remove jsnap"
	view_checks "store alone after hydration" "$STORE"
	check_eq "store alone: S as the view showed it" "$vs0" "$vs"
	check_cmd "rmmod" rmmod dm_jsnap
}

# ---- case c: power cuts inside snapshot's changed-block flip -----------------------
# W0 before snapshot 1, W1 after it; `drop`; then snapshot 2, held at stage
# 1 of its changed-block flip (the previous interval forgotten on pmem and
# its map zeroed, the boundary not taken yet) or at stage 2 (the new
# intervals committed with the snapshot, the message not returned); W2
# acknowledged during the hold; cut.  After replay:
#   stage 1: no snapshot; `changed` = W1 + W2 (the flip never happened:
#            the writes of the hold are in the old interval); `changed
#            previous` refused (ENODATA: forgotten before its map was zeroed);
#   stage 2: snapshot active; previous = W1; current = W2.
# The same after a second recovery; every write readable.
CBT="python3 $here/../guest/cbt.py"
c_lists() {
	printf '0 8\n5000 300\n20000 64\n' >"$SCRATCH/w0"
	printf '100 16\n9000 200\n40000 8\n' >"$SCRATCH/w1"
	printf '200 8\n30000 128\n' >"$SCRATCH/w2"
}
# c_write LIST: each "sector count" of LIST as one write of its own pattern
c_write() {
	local s n
	while read -r s n; do
		pat "W$s" "$n" >"$SCRATCH/p" && put "$SCRATCH/p" "$DEV" "$s" || return 1
	done <"$1"
}
# c_readable LIST...: every write of the LISTs reads back (no later write overlaps them)
c_readable() {
	local f s n bad=0
	for f in "$@"; do
		while read -r s n; do
			pat "W$s" "$n" >"$SCRATCH/p"
			[[ $(fsum "$SCRATCH/p") == "$(sum "$DEV" "$s" "$n")" ]] || bad=$((bad + 1))
		done <"$f"
	done
	return $bad
}
# c_expect WHICH:SNAPSHOTS LIST...: the exact answer of `changed WHICH`
# after SNAPSHOTS snapshots since the format
c_expect() {
	local which=$1
	shift
	$CBT expect "$which" "$CHUNK" $(((LEN + CHUNK - 1) / CHUNK)) -- "$@"
}
c_answers() { # c_answers LABEL STAGE
	local what=$1 stage=$2 out
	if ((stage == 1)); then
		check_eq "$what: snapshot=none (cut before the flip's commit)" none "$(status_get $NAME snapshot)"
		check_eq "$what: changed = W1 + W2 (since snapshot 1)" "$(c_expect current:1 "$SCRATCH/w1" "$SCRATCH/w2")" "$(msg $NAME changed 2>&1)"
		out=$(msg $NAME changed previous 2>&1)
		check_eq "$what: changed previous refused (ENODATA)" 1 "$(grep -c 'No data available' <<<"$out")"
	else
		check_eq "$what: snapshot=active (cut after the flip's commit)" active "$(status_get $NAME snapshot)"
		check_eq "$what: changed previous = W1 (snapshots 1 to 2)" "$(c_expect previous:2 "$SCRATCH/w1")" "$(msg $NAME changed previous 2>&1)"
		check_eq "$what: changed = W2 (since snapshot 2)" "$(c_expect current:2 "$SCRATCH/w2")" "$(msg $NAME changed 2>&1)"
	fi
	if c_readable "$SCRATCH/w0" "$SCRATCH/w1" "$SCRATCH/w2"; then ok "$what: every acknowledged write readable"; else
		fail "$what: every acknowledged write readable" "$? writes differ"
	fi
}
# held ERE WHAT: the fault build logged a hold matching ERE (waited for 10 s
# at most)
held() {
	local i
	for ((i = 0; i < 50; i++)); do
		dmesg | grep -qE "fault: holding $1" && break
		sleep 0.2
	done
	if ((i < 50)); then ok "$2"; else
		fail "$2" "no hold logged"
		dmesg_tail
	fi
}
# flip_held STAGE WHAT: the hold at flip stage STAGE
flip_held() { held "the changed-block flip at stage $1\$" "$2"; }
c_cut() {
	local stage=$1 sp
	c_lists
	insmod_fault fault_flip_stage="$stage" fault_flip_ms="$HOLD"
	load "create jsnap (format, store)" "$STORE" format
	if c_write "$SCRATCH/w0"; then ok "W0 acknowledged"; else fail "W0 acknowledged"; fi
	check_cmd "snapshot 1" msg "$NAME" snapshot
	if c_write "$SCRATCH/w1"; then ok "W1 acknowledged"; else fail "W1 acknowledged"; fi
	check_cmd "drop" msg "$NAME" drop
	check_eq "before the cut: changed = W1 (since snapshot 1)" "$(c_expect current:1 "$SCRATCH/w1")" "$(msg $NAME changed 2>&1)"
	note "t=$(rel) snapshot 2 in the background (held at stage $stage of its flip)"
	msg "$NAME" snapshot &
	sp=$!
	flip_held "$stage" "snapshot 2 held at stage $stage"
	if c_write "$SCRATCH/w2"; then ok "W2 acknowledged during the hold"; else fail "W2 acknowledged during the hold"; fi
	if kill -0 "$sp" 2>/dev/null; then ok "at the cut: the snapshot message has not returned"; else
		fail "at the cut: the snapshot message has not returned" "it returned (hold too short?)"
	fi
	cut
}
c_check() {
	local stage=$1
	c_lists
	insmod_normal
	load "replay (create without format)" "$STORE"
	check_eq "state=ok errors=0 after replay" "ok 0" "$(status_get $NAME state) $(status_get $NAME errors)"
	c_answers "after replay" "$stage"
	dm_remove "$NAME" || fail "remove jsnap"
	load "second recovery (create without format)" "$STORE"
	c_answers "after a second recovery" "$stage"
	dm_remove "$NAME" || fail "remove jsnap"
	check_cmd "rmmod" rmmod dm_jsnap
}

# Case d: `drop` held before its superblock commit (fault_flip_stage=3)
# while destage writes a post-snapshot write B over chunks whose snapshot
# data A is not preserved yet, then a power cut.  The superblock still says
# `active`: after the reload the snapshot must read A (destage must have
# preserved it first), the volume B.
d_cut() {
	local S=$1 dp
	insmod_fault fault_flip_stage=3 fault_flip_ms="$HOLD"
	load "create jsnap (format, store)" "$STORE" format
	pat A 2048 >"$SCRATCH/a"
	pat B 2048 >"$SCRATCH/b"
	put "$SCRATCH/a" "$DEV" "$S" || fail "write A"
	check_cmd "drain A to production" msg "$NAME" drain
	check_cmd "snapshot" msg "$NAME" snapshot
	put "$SCRATCH/b" "$DEV" "$S" || fail "write B"
	check_eq "B journaled, its chunks not preserved" "1 0" "$(status_get $NAME pending) $(status_get $NAME preserved)"
	note "t=$(rel) drop in the background (held before its superblock commit)"
	msg "$NAME" drop &
	dp=$!
	flip_held 3 "drop held before its commit"
	check_cmd "drain during the hold (destages B)" msg "$NAME" drain
	if kill -0 "$dp" 2>/dev/null; then ok "at the cut: the drop message has not returned"; else
		fail "at the cut: the drop message has not returned" "it returned (hold too short?)"
	fi
	cut
}
d_check() {
	local S=$1 v
	pat A 2048 >"$SCRATCH/a"
	pat B 2048 >"$SCRATCH/b"
	insmod_normal
	load "replay (create without format)" "$STORE"
	check_eq "the snapshot whose drop was cut is active" active "$(status_get $NAME snapshot)"
	check_eq "the volume reads B" "$(fsum "$SCRATCH/b")" "$(sum "$DEV" "$S" 2048)"
	if v=$(dm_create pcwv "0 $LEN jsnap-view $DEV ro" 2>&1); then
		ok "view of the snapshot"
		check_eq "the snapshot reads A" "$(fsum "$SCRATCH/a")" "$(sum "$v" "$S" 2048)"
		dm_remove pcwv || fail "remove the view"
	else
		fail "view of the snapshot" "$v"
	fi
	check_cmd "drop now" msg "$NAME" drop
	check_eq "dropped" none "$(status_get $NAME snapshot)"
	dm_remove "$NAME" || fail "remove jsnap"
	check_cmd "rmmod" rmmod dm_jsnap
}

# Case e4/e5: compaction of the journal tail (no snapshot, watermarks 2/1 so
# that 32 MiB of pmem compacts after about a megabyte).  A hot region of
# E_NB 4 KiB blocks at S: round 1 writes every block, rounds 2..E_ROUNDS
# every block but the last E_KEEP (one 4 KiB write each): the tail then
# holds round-1 records of which only the last E_KEEP blocks are live, and
# destage copies them to the head of the journal.  The first copy is held
# (fault_flip_stage 4: after its data is fenced, before its descriptor;
# 5: after the descriptor is durable, before the table switches to it),
# then the power is cut.  After replay, twice, and after drain (production
# itself): blocks 0..E_NB-E_KEEP-1 hold the last round, the others round 1.
E_NB=64 E_KEEP=8 E_ROUNDS=8
e_rounds() { # e_rounds DEV S FIRST LAST: rounds FIRST..LAST of case e
	python3 - "$@" "$E_NB" "$E_KEEP" <<'PYEOF'
import mmap, os, sys
dev, s, first, last, nb, keep = sys.argv[1], *map(int, sys.argv[2:])
buf = mmap.mmap(-1, 4096)
fd = os.open(dev, os.O_WRONLY | (os.O_DIRECT if dev.startswith("/dev/") else 0))
for r in range(first, last + 1):
    for b in range(nb if r == 1 else nb - keep):
        buf.seek(0)
        buf.write(b"".join((b"R%d block %d sector %d " % (r, b, i)).ljust(512, b".") for i in range(8)))
        os.pwrite(fd, buf, s * 512 + b * 4096)
os.close(fd)
PYEOF
}
e_expect() { # e_expect FILE: what the hot region must hold (rounds 1..E_ROUNDS)
	local f=$SCRATCH/e-expect.img
	rm -f "$f"
	truncate -s $((E_NB * 4096)) "$f"
	e_rounds "$f" 0 1 "$E_ROUNDS" && cat "$f"
}
e_cut() {
	local stage=$1 S=$2
	insmod_fault fault_flip_stage="$stage" fault_flip_ms="$HOLD"
	load "create jsnap (format, no store, watermarks 2/1)" - format high_watermark 2 low_watermark 1
	write_others || true
	if e_rounds "$DEV" "$S" 1 "$E_ROUNDS"; then ok "rounds 1..$E_ROUNDS of the hot region acknowledged"; else
		fail "rounds of the hot region acknowledged" "python"
	fi
	held "a compaction copy at stage $((stage - 3))\$" "the first compaction copy held at stage $stage"
	check_eq "at the cut: nothing destaged to production" 0 "$(status_get $NAME destaged_bytes)"
	cut
}
e_answers() { # e_answers LABEL DEV S
	check_eq "$1: the hot region" "$(e_expect | sum_stream)" "$(sum "$2" "$3" $((E_NB * 8)))"
	check_others "$1"
}
e_check() {
	local stage=$1 S=$2
	insmod_normal
	load "replay (create without format)" - high_watermark 2 low_watermark 1
	check_eq "state=ok errors=0 after replay" "ok 0" "$(status_get $NAME state) $(status_get $NAME errors)"
	e_answers "after replay" "$DEV" "$S"
	dm_remove "$NAME" || fail "remove jsnap"
	load "second recovery (create without format)" - high_watermark 2 low_watermark 1
	e_answers "after a second recovery" "$DEV" "$S"
	check_cmd "drain" msg "$NAME" drain
	e_answers "after drain: production" "$PROD" "$S"
	dm_remove "$NAME" || fail "remove jsnap"
	check_cmd "rmmod" rmmod dm_jsnap
}

case $mode in
a-cut) a_cut "$@" ;;
a-check) a_check "$@" ;;
b-cut) b_cut "$@" ;;
b-check) b_check "$@" ;;
c-cut) c_cut "$@" ;;
c-check) c_check "$@" ;;
d-cut) d_cut "$@" ;;
d-check) d_check "$@" ;;
e-cut) e_cut "$@" ;;
e-check) e_check "$@" ;;
*) echo "guest-windows.sh: bad mode $mode" >&2; exit 2 ;;
esac
no_splat_since_start "no kernel splat"
finish
