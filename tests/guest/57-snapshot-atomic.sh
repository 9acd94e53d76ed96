#!/usr/bin/env bash
# Snapshot atomicity with writers in flight (issue 12 item 2).  The
# power-cut writer (tests/powercut/pctool.c: 4 or 8 threads, one write in
# flight each, 4 KiB to 1 MiB, overlapping ranges) runs on jsnap and logs
# each write's submit and completion time (CLOCK_MONOTONIC); `snapshot` is
# sent at TS and returns at TR while it runs.  Then the view must hold, per
# block, a write completed before TS that no write submitted after it
# completed covers, or a write in flight across [TS, TR] - never one
# submitted after TR, never the content from before a write completed
# before TS - and each write in flight is seen whole or not at all
# (tests/powercut/pc.py verify --window).  Each round takes NSNAP (3)
# snapshots, one after another, while the same writers go on (view, check,
# drop); the last view is read again after drain (copy-on-write of
# everything since) and the store after hydration: the same.
#
#   (a) no_destage, 4 threads: destaged_bytes is the same before and after
#       the message and pending did not drop (nothing was drained);
#   (b) destage running all the time (watermarks 5/1), 8 threads: the
#       snapshot lands among destage batches;
#   (c) as (a) with 8 threads and chunk 8.
. "$(dirname "$0")/lib.sh"
cleanup_dm

PCDIR=$JSNAP_TOP/tests/powercut
TOOL=$SCRATCH/pctool
PC=(python3 "$PCDIR/pc.py")
gcc -O2 -Wall -pthread -o "$TOOL" "$PCDIR/pctool.c" -lz || { fail "compile pctool"; finish; }
ACK=$SPARE
MIB=64
LEN=$((MIB * 2048))
NBLK=8192 # the writer's area: the first 32 MiB
NSNAP=${NSNAP:-3} # snapshots per round
# snap_when NAME BYTES READY: creates the file READY once it polls, then,
# once NAME has written BYTES, its status, then
# `snapshot`, then its status again, in one process (a python start under
# TCG takes longer than the message): prints "TS TR RC", the status before
# and the status after; TS and TR are CLOCK_MONOTONIC ns just before
# dmsetup message started and just after it returned.
snap_when() {
	python3 -c 'import subprocess, sys, time
name, want, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def status():
    return subprocess.run(["dmsetup", "status", name], capture_output=True, text=True).stdout.strip()
status()
open(ready, "w").close()
for _ in range(600):
    st = status()
    if int(dict(w.split("=", 1) for w in st.split() if "=" in w).get("written_bytes", 0)) >= want:
        break
    time.sleep(0.02)
before = status()
t = time.monotonic_ns()
r = subprocess.run(["dmsetup", "message", name, "0", "snapshot"]).returncode
t2 = time.monotonic_ns()
after = status()
print(t, t2, r)
print(before)
print(after)' "$@"
}

# view_check TAG K TS TR: a view of snapshot K (taken between TS and TR),
# scanned to $SCRATCH/scan1 and checked by pc.py verify --window
view_check() {
	local tag=$1 k=$2 out line
	dm_create sav "0 $LEN jsnap-view /dev/mapper/sa ro" >/dev/null || { fail "$tag: view $k"; return 1; }
	"$TOOL" scan /dev/mapper/sav $NBLK "$SCRATCH/scan1" || { fail "$tag: scan view $k"; return 1; }
	local rc=0
	out=$("${PC[@]}" verify --scan "$SCRATCH/scan1" --dev /dev/mapper/sav --acklog "$ACK" \
		--label "$tag: snapshot $k" --threads "$thr" --no-checkpoint --window "$3" "$4" 2>&1) || rc=$?
	if [[ $out != *"powercut $tag: snapshot $k: verify"* ]]; then
		fail "$tag: snapshot $k: pc.py verify ran (rc=$rc)" "$(tail -n 3 <<<"$out" | tr '\n' ' ')"
	fi
	# pc.py prints ok/not ok lines of the power-cut format: count them here
	while IFS= read -r line; do
		case $line in
		"ok - powercut "*) ok "${line#ok - powercut }" ;;
		"not ok - powercut "*) fail "${line#not ok - powercut }" "" ;;
		*) echo "$line" ;;
		esac
	done <<<"$out"
}

# round TAG THREADS CHUNK FEATURES...
round() {
	local tag=$1 thr=$2 chunk=$3 seed=$((RANDOM << 15 | RANDOM))
	shift 3
	dd if=/dev/zero of="$PROD" bs=1M count=$MIB oflag=direct status=none
	local dev
	dev=$(dm_create sa "$(jsnap_table $LEN "$PROD" "$PMEM" "$STORE" "$chunk" format "$@")") ||
		{ fail "$tag: create jsnap"; return; }
	"${PC[@]}" init --acklog "$ACK" --seed "$seed" --nblk $NBLK >/dev/null ||
		{ fail "$tag: acklog init"; cleanup_dm; return; }
	# The snapshot once 16 MiB are written: writers in flight, and the
	# journal far from full (writers that wait for space make destage run,
	# also with no_destage).  The poller starts first (python is slow to
	# start under TCG).
	rm -f "$SCRATCH/snap.ready"
	snap_when sa $((16 << 20)) "$SCRATCH/snap.ready" >"$SCRATCH/snap.out" &
	local sp=$!
	# the writer starts once the poller polls (not after a guess at how
	# long python takes to start: on a loaded host the writer could fill
	# the journal first)
	local i
	for ((i = 0; i < 600; i++)); do [[ -e $SCRATCH/snap.ready ]] && break; sleep 0.05; done
	"$TOOL" write "$dev" "$ACK" 1 "$seed" $NBLK "$(date +%s.%N)" "$thr" >"$SCRATCH/w.log" 2>&1 &
	local wp=$!
	local ts tr src p0 d0 p1 d1 u1 sz out
	wait "$sp"
	out=$(cat "$SCRATCH/snap.out")
	read -r ts tr src <<<"$(sed -n 1p <<<"$out")"
	sget() { sed -n "$1p" <<<"$out" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
	p0=$(sget 2 pending) d0=$(sget 2 destaged_bytes)
	p1=$(sget 3 pending) d1=$(sget 3 destaged_bytes)
	u1=$(sget 3 journal_used) sz=$(sget 3 journal_size)
	check_eq "$tag: snapshot with $thr writers in flight" 0 "$src"
	note "$tag: snapshot 1 in $(((tr - ts) / 1000000)) ms; pending $p0 -> $p1, destaged_bytes $d0 -> $d1, journal_used $u1 of $sz"
	if [[ " $* " == *" no_destage "* ]] && ((u1 * 10 > sz * 9)); then
		fail "$tag: the journal stays below 90% while the snapshot is taken" "journal_used=$u1 of $sz: writers waited for space, which destages (this host writes faster than the test assumes)"
	elif [[ " $* " == *" no_destage "* ]]; then
		check_eq "$tag: destaged_bytes unchanged across the message (nothing drained)" "$d0" "$d1"
		if ((p1 >= p0)); then ok "$tag: pending did not drop across the message ($p0 -> $p1)"; else
			fail "$tag: pending did not drop across the message" "$p0 -> $p1"
		fi
	fi
	view_check "$tag" 1 "$ts" "$tr" || { kill "$wp"; wait "$wp"; cleanup_dm; return; }
	# More snapshots while the same writers go on (each lands among other
	# writes in flight: a write cut in two records shows in few of them).
	local k w
	for ((k = 2; k <= NSNAP; k++)); do
		dm_remove sav
		msg sa drop || { fail "$tag: drop $k"; break; }
		w=$(status_get sa written_bytes)
		out=$(snap_when sa $((w + (8 << 20))) /dev/null)
		read -r ts tr src <<<"$(sed -n 1p <<<"$out")"
		check_eq "$tag: snapshot $k with $thr writers in flight" 0 "$src"
		view_check "$tag" $k "$ts" "$tr" || break
	done
	kill "$wp" 2>/dev/null
	wait "$wp" 2>/dev/null
	note "$tag: writer: $(tail -n1 "$SCRATCH/w.log")"
	check_cmd "$tag: drain" msg sa drain
	if ! "$TOOL" scan /dev/mapper/sav $NBLK "$SCRATCH/scan2"; then
		fail "$tag: view unchanged after drain (copy-on-write)" "scan of the view failed"
	elif cmp -s "$SCRATCH/scan1" "$SCRATCH/scan2"; then ok "$tag: view unchanged after drain (copy-on-write)"; else
		fail "$tag: view unchanged after drain" "$(cmp "$SCRATCH/scan1" "$SCRATCH/scan2" | head -n1)"
	fi
	msg sa hydrate on
	if wait_hydrated sa; then
		if ! "$TOOL" scan "$STORE" $NBLK "$SCRATCH/scan3"; then
			fail "$tag: store alone = the view after hydration" "scan of the store failed"
		elif cmp -s "$SCRATCH/scan1" "$SCRATCH/scan3"; then ok "$tag: store alone = the view after hydration"; else
			fail "$tag: store alone = the view after hydration" "$(cmp "$SCRATCH/scan1" "$SCRATCH/scan3" | head -n1)"
		fi
	else
		fail "$tag: hydration completes" "$(jsnap_status sa)"
	fi
	local st
	st=$(jsnap_status sa)
	if [[ $st =~ (^| )state=ok( |$) && $st =~ (^| )errors=0( |$) ]]; then ok "$tag: state=ok errors=0"; else
		fail "$tag: state=ok errors=0" "$st"
	fi
	dm_remove sav
	msg sa drop
	dm_remove sa
}

round a 4 "$CHUNK" no_destage
round b 8 "$CHUNK" high_watermark 5 low_watermark 1
round c 8 8 no_destage
no_splat_since_start "no kernel splat"
cleanup_dm
finish
