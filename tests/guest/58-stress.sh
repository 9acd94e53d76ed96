#!/usr/bin/env bash
# Concurrency stress with a control loop (issue 12 items 1 and 4).
#
# Writers, all the time:
#   - fio with --verify=crc32c: 4 jobs, QD 16, 4-128 KiB writes at random
#     offsets (norandommap, serialize_overlap), each job writing 32 MiB into
#     its own 16 MiB (rewrites, partial overwrites), run after run with a new
#     seed each, on the first 64 MiB;
#   - a model-checked writer (one write of 1-300 sectors at a time, every
#     completed write copied into a reference file) on the next 16 MiB.
# Production sits behind dm-delay (writes 2 ms; 1 s while the writers are to
# wait for journal space) and the journal is a 16 MiB slice of the pmem, so
# destage lags and writers wait for journal space.
# The control loop, cycle after cycle for $JSNAP_STRESS_SECS seconds (at
# least 2 cycles; default 120, `make check-debug` runs it longer):
#   snapshot (the model writer paused around it: the reference is exact) ->
#   ro view: its model region = the reference at the snapshot, its fio
#   region checksummed -> hydrate on -> suspend with writes in flight and
#   hydration running: production, store and journal checksummed twice 2 s
#   apart, identical -> resume -> hydrate off -> suspend while writers wait
#   for journal space (status deferred>0) -> resume -> hydrate on -> drain ->
#   live reload of the same table with the view open: refused with its
#   reason, nothing changed (README "Limits") -> the view again: both
#   regions as at the snapshot -> (last cycle: hydration to done, the store
#   alone = the snapshot) -> remove the view -> live reload of the same
#   table (accepted, table unchanged) -> drop.
# At the end: every fio run verified, the model writer never failed, drain,
# production = the model, fio's last run verifies on production read
# directly, status state=ok errors=0 all along.
. "$(dirname "$0")/lib.sh"
cleanup_dm
command -v fio >/dev/null || { fail "fio is installed in the guest"; finish; }

SECS=${JSNAP_STRESS_SECS:-120}
MIB=96
LEN=$((MIB * 2048))
FIO_MIB=64                   # fio: [0, 64 MiB)
MOFF=$((FIO_MIB * 2048))     # the model writer: [64 MiB, 80 MiB)
MLEN=$((16 * 2048))
JLEN=$((16 * 2048))          # the journal: 16 MiB of the pmem
MB=$SCRATCH/model            # the model region as the jsnap device holds it
SNAPM=$SCRATCH/snapmodel     # ... as the snapshot holds it
STOP=$SCRATCH/stop PAUSE=$SCRATCH/pause PAUSED=$SCRATCH/paused
IO_TIMEOUT=120

head -c $((MLEN * 512)) /dev/urandom >"$MB"
dd if="$MB" of="$PROD" bs=1M seek=$((MOFF / 2048)) oflag=direct status=none
J=$(dm_create stj "0 $JLEN linear $PMEM $((64 * 2048))") || { fail "journal slice"; finish; }
P=$(dm_create stp "0 $LEN delay $PROD 0 0 $PROD 0 2") || { fail "production behind dm-delay"; cleanup_dm; finish; }
# (hydrate_batch 16: many small hydration steps, so that suspends find it running)
TABLE="0 $LEN jsnap $P $J $STORE $CHUNK 7 format high_watermark 80 low_watermark 60 hydrate_batch 16"
DEV=$(dm_create st "$TABLE") || { fail "create jsnap"; cleanup_dm; finish; }
ok "create jsnap (16 MiB journal, production behind dm-delay)"

state_ok() { # state_ok WHAT
	local st
	st=$(jsnap_status st)
	if [[ $st =~ (^| )state=ok( |$) && $st =~ (^| )errors=0( |$) ]]; then ok "$1: state=ok errors=0"; else
		fail "$1: state=ok errors=0" "$st"
	fi
}

# ---- writers ---------------------------------------------------------------------
fio_args=(--name=stress --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite
	--bsrange=4k-128k --numjobs=4 --size=16M --offset_increment=16M --io_size=32M --norandommap
	--serialize_overlap=1 --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting)
fio_loop() {
	local i=0
	while [[ ! -e $STOP ]]; do
		i=$((i + 1))
		if ! fio "${fio_args[@]}" --randseed=$i --output="$SCRATCH/fio.$i.log" >/dev/null 2>&1; then
			echo "$i" >>"$SCRATCH/fio.failed"
		fi
		echo "$i" >"$SCRATCH/fio.runs"
	done
}
# the model writer: pauses (after its current write completed and entered
# the model) while $PAUSE exists
model_writer() {
	local n off rc
	while [[ ! -e $STOP ]]; do
		if [[ -e $PAUSE ]]; then
			touch "$PAUSED"
			sleep 0.1
			continue
		fi
		rm -f "$PAUSED"
		n=$((RANDOM % 300 + 1))
		off=$(((RANDOM * 32768 + RANDOM) % (MLEN - n)))
		rc=0
		wr1 "$DEV" $MOFF $off $n "$MB" || rc=$?
		if [[ $rc != 0 ]]; then echo "write at $off+$n: rc $rc" >>"$SCRATCH/mw.failed"; fi
		echo x >>"$SCRATCH/mw.count"
	done
}
pause_writer() {
	local i
	touch "$PAUSE"
	for ((i = 0; i < 1200; i++)); do [[ -e $PAUSED ]] && return 0; sleep 0.1; done
	return 1
}
resume_writer() { rm -f "$PAUSE" "$PAUSED"; }

# whole-device checksums of production, store and journal
sums() { echo "$(dev_sum "$PROD" $MIB) $(dev_sum "$STORE" $MIB) $(dev_sum "$J")"; }
# suspended_identity WHAT: suspend st, checksum twice 2 s apart, resume
suspended_identity() {
	local a b
	if ! bounded 120 dmsetup suspend st; then fail "$1: suspend" "failed or stuck"; return 1; fi
	a=$(sums)
	sleep 2
	b=$(sums)
	check_eq "$1: while suspended, production, store and journal do not change" "$a" "$b"
	if bounded 60 dmsetup resume st; then ok "$1: resume"; else fail "$1: resume" "failed or stuck"; return 1; fi
}
view_checks() { # view_checks WHAT: the view = the snapshot (model region exact, fio region as first read)
	same_at "$1: view, model region = the snapshot" /dev/mapper/stv $MOFF "$SNAPM" 0 $MLEN
	check_eq "$1: view, fio region unchanged since the snapshot" "$HA" "$(rd /dev/mapper/stv 0 $((FIO_MIB * 2048)) | sum_stream)"
}

fio_loop &
fio_pid=$!
model_writer &
mw_pid=$!
sleep 5

# ---- the control loop --------------------------------------------------------------
t0=$(date +%s)
cycle=0 deferred_seen=0 hydrating_seen=0
# Cycles until one starts after the deadline (at least two): that one is
# the last, which also hydrates to done and checks the store alone.
while :; do
	cycle=$((cycle + 1))
	C="cycle $cycle"
	last=0
	(($(date +%s) - t0 >= SECS && cycle >= 2)) && last=1
	if ! pause_writer; then fail "$C: the model writer pauses" "no pause in 120 s"; break; fi
	if ! check_cmd "$C: snapshot" msg st snapshot; then resume_writer; break; fi
	cp "$MB" "$SNAPM"
	resume_writer
	check_eq "$C: snapshot=active" active "$(status_get st snapshot)"
	if ! dm_create stv "0 $LEN jsnap-view $DEV ro" >/dev/null; then fail "$C: create ro view"; break; fi
	same_at "$C: view, model region = the snapshot" /dev/mapper/stv $MOFF "$SNAPM" 0 $MLEN
	HA=$(rd /dev/mapper/stv 0 $((FIO_MIB * 2048)) | sum_stream)
	check_cmd "$C: hydrate on" msg st hydrate on
	# at once: with the writers no longer holding the CPUs, the copy of the
	# 80 MiB can be over within half a second
	h=$(status_get st hydration)
	[[ $h == running ]] && hydrating_seen=$((hydrating_seen + 1))
	suspended_identity "$C: suspend under load, hydration $h"
	check_cmd "$C: hydrate off" msg st hydrate off
	# writers waiting for journal space: production slowed down so far that
	# destage cannot keep up (destaging only what holds the tail back, it
	# otherwise does at 2 ms)
	check_cmd "$C: production writes delayed 1 s" swap_table stp "0 $LEN delay $PROD 0 0 $PROD 0 1000"
	seen=0
	for ((i = 0; i < 100; i++)); do
		d=$(status_get st deferred)
		if [[ ${d:-0} -gt 0 ]]; then seen=1; break; fi
		sleep 0.2
	done
	if ((seen)); then
		deferred_seen=$((deferred_seen + 1))
		suspended_identity "$C: suspend while $d writes wait for journal space"
	else
		note "$C: no writer was waiting for journal space within 20 s"
	fi
	check_cmd "$C: production writes delayed 2 ms again" swap_table stp "0 $LEN delay $PROD 0 0 $PROD 0 2"
	check_cmd "$C: hydrate on again" msg st hydrate on
	check_cmd "$C: drain under load" bounded 300 dmsetup message st 0 drain
	# a live reload of the same table while the view is open: refused
	tb=$(dmsetup table st)
	dmesg_mark
	if dmsetup reload st --table "$tb" 2>/dev/null; then
		fail "$C: reload with a view open is refused" "it was accepted"
		dmsetup clear st 2>/dev/null
	else
		ok "$C: reload with a view open is refused"
		check_eq "$C: the refusal says why" 1 "$(dmesg_since_mark | grep -c 'jsnap-view is attached to this device: remove it first')"
	fi
	check_eq "$C: no inactive table left" LIVE "$(dmsetup info st | sed -n 's/^Tables present: *//p')"
	check_eq "$C: table unchanged" "$tb" "$(dmsetup table st)"
	view_checks "$C: after hydration, suspend, drain, refused reload"
	if ((last)); then
		if wait_hydrated st 600; then ok "$C: hydration done"; else fail "$C: hydration done" "$(jsnap_status st)"; fi
		same_at "$C: store alone, model region = the snapshot" "$STORE" $MOFF "$SNAPM" 0 $MLEN
		check_eq "$C: store alone, fio region = the view's" "$HA" "$(rd "$STORE" 0 $((FIO_MIB * 2048)) | sum_stream)"
		view_checks "$C: after hydration to done"
	fi
	dm_remove stv || fail "$C: remove the view"
	# the same reload with no view: accepted, live (writers in flight)
	if dmsetup reload st --table "$tb" && bounded 120 dmsetup suspend st && bounded 60 dmsetup resume st; then
		ok "$C: live reload of the same table (snapshot active, no view)"
	else
		fail "$C: live reload of the same table (snapshot active, no view)"
	fi
	check_eq "$C: table after reload" "$tb" "$(dmsetup table st)"
	check_eq "$C: snapshot active after reload" active "$(status_get st snapshot)"
	check_cmd "$C: drop" msg st drop
	state_ok "$C"
	((last)) && break
done
if ((hydrating_seen)); then ok "suspended while hydration ran ($hydrating_seen cycles)"; else
	fail "suspended while hydration ran" "hydration was never running at a suspend"
fi
if ((deferred_seen)); then ok "suspended while writers waited for space ($deferred_seen cycles)"; else
	fail "suspended while writers waited for space" "no writer waited in any cycle"
fi

# ---- the end -------------------------------------------------------------------------
touch "$STOP"
resume_writer
wait "$mw_pid"
note "waiting for the last fio run"
for ((i = 0; i < 300; i++)); do kill -0 "$fio_pid" 2>/dev/null || break; sleep 1; done
if kill -0 "$fio_pid" 2>/dev/null; then fail "the last fio run ends" "still running after 300 s"; pkill -P "$fio_pid"; kill "$fio_pid"; fi
wait "$fio_pid" 2>/dev/null
runs=$(cat "$SCRATCH/fio.runs" 2>/dev/null || echo 0)
note "$cycle cycles in $(($(date +%s) - t0)) s; fio runs: $runs; model writes: $(wc -l <"$SCRATCH/mw.count" 2>/dev/null)"
check_eq "fio: every run's verify passed ($runs runs)" "" "$(cat "$SCRATCH/fio.failed" 2>/dev/null | tr '\n' ' ')"
[[ -s $SCRATCH/fio.failed ]] && grep -hE 'verify|err|bad' "$SCRATCH"/fio.*.log | head -n 10 | sed 's/^/#   /'
((runs >= 1)) && ok "fio ran" || fail "fio ran" "no run completed"
check_eq "model writer: every write succeeded" "" "$(cat "$SCRATCH/mw.failed" 2>/dev/null | head -n 3 | tr '\n' ' ')"
same_at "jsnap, model region = the model" "$DEV" $MOFF "$MB" 0 $MLEN
check_cmd "final drain" bounded 300 dmsetup message st 0 drain
check_eq "journal empty after drain" "0 0" "$(status_get st journal_used) $(status_get st pending)"
state_ok "end"
dm_remove st || fail "remove jsnap"
dm_remove stp || fail "remove dm-delay"
same_at "production disk, model region = the model" "$PROD" $MOFF "$MB" 0 $MLEN
fv=("${fio_args[@]/--filename=*/--filename=$PROD}")
if fio "${fv[@]}" --randseed="$runs" --verify_only --output="$SCRATCH/fio.final.log" >/dev/null 2>&1; then
	ok "fio: the last run verifies on the production disk read directly"
else
	fail "fio: the last run verifies on the production disk read directly"
	grep -hE 'verify|err|bad' "$SCRATCH/fio.final.log" | head -n 5 | sed 's/^/#   /'
fi
dm_remove stj || fail "remove the journal slice"
cleanup_dm
no_splat_since_start "no kernel splat"
finish
