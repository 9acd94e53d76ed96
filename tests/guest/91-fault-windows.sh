#!/usr/bin/env bash
# Windows that only the fault-injection build reaches (issue 10 items 7, 10,
# 11, 14, 19, 21), one module load per case (parameters are fixed at load):
#   a (item 7)  a destage batch fails to allocate after taking its chunk
#               locks (fault_enomem_site=1, 3 times): the locks go with the
#               error, `drain` completes, production and the view are exact;
#   b (item 14) every table-node allocation of a write fails, on the map
#               path and in the worker (site 3, always; the node pool then
#               holds only the worker's nodes at table load): writes still
#               complete from those, with and without a snapshot, and the
#               data is exact;
#   c (item 19) the hydration step cannot allocate (site 2, always): the
#               copier backs off (the guest stays idle, < 30% busy over
#               3 s) and `hydrate off` works; with 5 failures only,
#               hydration then completes with the exact content;
#   d (item 11) a pre-snapshot write W is held between its changes-table
#               insert and its pmem copy (fault_copy_sector) while
#               `snapshot` + `hydrate on` copy its chunk: the copier waits
#               for W to be persistent, and so does a read of W's sectors
#               (then it returns W); the view and the store hold W (or,
#               all-or-nothing, the old data), never the ring's stale bytes;
#   e (item 21) a reload of the jsnap device is held in its constructor
#               after its check for views (fault_ctr_ms) while a view
#               attaches: the reload is refused, the view reads the snapshot;
#   f (item 10) the journal data of one record reads as poisoned pmem
#               (fault_poison_sector), as the machine-check-safe copy
#               reports it: reads of it fail with EIO (other data intact,
#               no splat); a reload replays the journal, skips that record
#               and says so, and the sectors read as before it.
#   g           shadow pmem (fault_pmem_shadow=1): chunks preserved by
#               destage, by a view write (part of a chunk, a whole chunk)
#               and by the copier; no pmem fence was issued where the task
#               could not sleep (fault_pmem_fences_atomic = 0: after a power
#               cut such a fence spins until the reset, every vCPU with it,
#               and dm-log-writes' log then misses flushed writes), and the
#               content is exact.
# FAULT_CASES (default "a b c d e f g") selects cases.  Finally the normal
# module ($JSNAP_MODULE) is loaded again.
. "$(dirname "$0")/lib.sh"
need_fault_module

CASES=${FAULT_CASES:-a b c d e f g}
HOLD=${FAULT_HOLD_MS:-6000}
MIB=4
LEN=$((MIB * 2048))
ORIG=$SCRATCH/orig   # production before the case
MODEL=$SCRATCH/model # what the jsnap device must hold
SNAP=$SCRATCH/snap   # what the snapshot must hold
NAME=j91
VNAME=v91
FM=$JSNAP_FAULT_MODULE

end() {
	reload_normal_module
	no_splat_since_start "no kernel splat"
	finish
}
want() { [[ " $CASES " == *" $1 "* ]]; }
# fresh: random production (ORIG = MODEL = SNAP), a zero store
fresh() {
	head -c $((MIB << 20)) /dev/urandom >"$ORIG"
	cp "$ORIG" "$MODEL"
	cp "$ORIG" "$SNAP"
	dd if="$ORIG" of="$PROD" bs=1M oflag=direct status=none
	dd if=/dev/zero of="$STORE" bs=1M count=$MIB oflag=direct status=none
}
# cpu_busy SECS: percent of CPU time not idle over SECS seconds
cpu_busy() {
	local a b
	read -r -a a < <(grep '^cpu ' /proc/stat)
	sleep "$1"
	read -r -a b < <(grep '^cpu ' /proc/stat)
	local tot=0 idle i
	for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
	idle=$((b[4] - a[4] + b[5] - a[5]))
	echo $(((tot - idle) * 100 / (tot > 0 ? tot : 1)))
}

# drained P DEV: `drain` completes; production == MODEL and a ro view of the
# snapshot == SNAP (the end of cases a and b)
drained() {
	local view
	if bounded 120 dmsetup message "$NAME" 0 drain; then ok "$1: drain completes"; else
		fail "$1: drain completes" "rc=$? status: $(jsnap_status "$NAME")"
	fi
	check_eq "$1: deferred=0 pending=0 errors=0 state=ok" "0 0 0 ok" \
		"$(status_get "$NAME" deferred) $(status_get "$NAME" pending) $(status_get "$NAME" errors) $(status_get "$NAME" state)"
	IO_TIMEOUT=30 same "$1: production == model" "$PROD" "$MODEL"
	if view=$(dm_create "$VNAME" "0 $LEN jsnap-view $2 ro"); then
		IO_TIMEOUT=30 same "$1: view == the data at the snapshot" "$view" "$SNAP"
	else
		fail "$1: create view"
	fi
}

# setup P snap|nosnap [FEATURES...]: fresh data, a log mark, jsnap $NAME
# (formatted, $dev) and, with `snap`, a snapshot
setup() {
	local p=$1 snap=$2 what=create
	shift 2
	[[ $snap == snap ]] && what="create + snapshot"
	fresh
	dmesg_mark
	if dev=$(mk_jsnap "$NAME" $LEN "$@" format) && { [[ $snap == nosnap ]] || msg "$NAME" snapshot; }; then
		ok "$p: $what${*:+ ($*)}"
		return 0
	fi
	fail "$p: $what${*:+ ($*)}"
	return 1
}

# ---- a: ENOMEM with chunk locks held (item 7) -------------------------------------
if want a && load_module "$FM" fault_enomem_site=1 fault_enomem_count=3; then
	P="a: destage ENOMEM"
	if setup "$P" snap; then
		for s in 128 640 1280 2048; do IO_TIMEOUT=30 wr1 "$dev" 0 $s 64 "$MODEL" || fail "$P: write at $s"; done
		# (the locks of the failed batch go with its error: else the retry
		# waits for them for ever)
		drained "$P" "$dev"
		check_eq "$P: injected failures" 3 "$(log_count 'fault: ENOMEM at site 1')"
	fi
fi

# ---- b: no memory for table nodes (item 14) ---------------------------------------
if want b && load_module "$FM" fault_enomem_site=3 fault_enomem_count=-1; then
	P="b: node ENOMEM"
	if setup "$P" nosnap; then
		werr=0
		# overlapping and disjoint writes: splits and wholly covered extents
		for ((i = 0; i < 40; i++)); do
			IO_TIMEOUT=30 wr1 "$dev" 0 $(((i * 797) % (LEN - 64))) $((8 + (i % 5) * 12)) "$MODEL" "$SNAP" || werr=$((werr + 1))
		done
		check_eq "$P: 40 writes without a snapshot complete" 0 $werr
		check_cmd "$P: snapshot" msg "$NAME" snapshot
		werr=0
		for ((i = 0; i < 40; i++)); do
			IO_TIMEOUT=30 wr1 "$dev" 0 $(((i * 1231) % (LEN - 64))) $((8 + (i % 7) * 8)) "$MODEL" || werr=$((werr + 1))
		done
		check_eq "$P: 40 writes under the snapshot complete" 0 $werr
		if (($(log_count 'fault: ENOMEM at site 3') > 0)); then ok "$P: allocations were failed"; else
			fail "$P: allocations were failed" "no injected failure logged"
		fi
		IO_TIMEOUT=30 same "$P: jsnap == model" "$dev" "$MODEL"
		drained "$P" "$dev"
	fi
fi

# ---- c: hydration without memory backs off (item 19) -------------------------------
if want c && load_module "$FM" fault_enomem_site=2 fault_enomem_count=-1; then
	P="c: hydrate ENOMEM"
	if setup "$P" snap; then
		check_cmd "$P: hydrate on" msg "$NAME" hydrate on
		sleep 1
		busy=$(cpu_busy 3)
		if ((busy < 30)); then ok "$P: copier backs off ($busy% busy)"; else
			fail "$P: copier backs off" "$busy% of the CPU time busy over 3 s"
		fi
		if (($(log_count 'fault: ENOMEM at site 2') > 0)); then ok "$P: allocations were failed"; else
			fail "$P: allocations were failed" "no injected failure logged"
		fi
		check_eq "$P: nothing preserved" 0 "$(status_get "$NAME" preserved)"
		if bounded 30 dmsetup message "$NAME" 0 hydrate off; then ok "$P: hydrate off"; else fail "$P: hydrate off" "rc=$?"; fi
	fi
fi
if want c && load_module "$FM" fault_enomem_site=2 fault_enomem_count=5; then
	P="c: hydrate ENOMEM x5"
	if setup "$P" snap; then
		wr1 "$dev" 0 1000 64 "$MODEL"
		check_cmd "$P: hydrate on" msg "$NAME" hydrate on
		if wait_hydrated "$NAME" 120; then ok "$P: hydration done after the failures"; else
			fail "$P: hydration done after the failures" "status: $(jsnap_status "$NAME")"
		fi
		check_eq "$P: injected failures" 5 "$(log_count 'fault: ENOMEM at site 2')"
		IO_TIMEOUT=30 same "$P: store == production at the snapshot" "$STORE" "$SNAP"
	fi
fi

# ---- d: preservation of a record still being copied (item 11) ----------------------
S=1024 # chunk 16, whole
if want d && load_module "$FM" fault_copy_sector=$S fault_copy_ms="$HOLD"; then
	P="d: copy window"
	W=$SCRATCH/w
	head -c $((64 * 512)) /dev/urandom >"$W"
	if setup "$P" nosnap; then
		t0=$(date +%s%N)
		bounded $((HOLD / 1000 + 60)) dd if="$W" of="$dev" bs=32k count=1 seek=$((S * 512)) \
			oflag=direct,seek_bytes conv=notrunc status=none &
		wpid=$!
		sleep 0.5
		# a read of W's sectors inside the window: it waits for W to be
		# persistent (woken by W's completion), then reads W
		IO_TIMEOUT=$((HOLD / 1000 + 30)) rd "$dev" $S 64 >"$SCRATCH/during" &
		rpid=$!
		r1=0 r2=0
		msg "$NAME" snapshot || r1=$?
		msg "$NAME" hydrate on || r2=$?
		ms=$((($(date +%s%N) - t0) / 1000000))
		check_eq "$P: snapshot + hydrate on while W is held" "0 0" "$r1 $r2"
		if ((ms < HOLD)); then ok "$P: inside the window ($ms ms < $HOLD ms)"; else
			fail "$P: inside the window" "took $ms ms >= $HOLD ms (raise FAULT_HOLD_MS)"
		fi
		if wait "$wpid"; then ok "$P: W completes"; else fail "$P: W completes"; fi
		if wait "$rpid"; then ok "$P: a read during the hold completes"; else
			fail "$P: a read during the hold completes" "rd failed or timed out"
		fi
		check_eq "$P: the read during the hold returns W" "$(sha256sum <"$W" | cut -c1-16)" \
			"$(sha256sum <"$SCRATCH/during" | cut -c1-16)"
		check_eq "$P: W was held" 1 "$(log_count "fault: holding the copy of sector $S")"
		dd if="$W" of="$MODEL" bs=512 seek=$S conv=notrunc status=none
		if wait_hydrated "$NAME" 120; then ok "$P: hydration done"; else
			fail "$P: hydration done" "status: $(jsnap_status "$NAME")"
		fi
		# W was in flight at the snapshot: all of it or none of it
		got=$(rd "$STORE" $S 64 | sha256sum)
		if [[ $got == "$(sha256sum <"$W")" ]]; then
			ok "$P: store holds W in chunk 16"
			cp "$MODEL" "$SNAP"
		elif [[ $got == "$(dd if="$ORIG" bs=512 skip=$S count=64 status=none | sha256sum)" ]]; then
			ok "$P: store holds the data before W in chunk 16"
		else
			fail "$P: store chunk 16 is W or the data before it" "it is neither (stale journal bytes?)"
		fi
		IO_TIMEOUT=30 same "$P: store == the snapshot" "$STORE" "$SNAP"
		if view=$(dm_create "$VNAME" "0 $LEN jsnap-view $dev ro"); then
			IO_TIMEOUT=30 same "$P: view == the snapshot" "$view" "$SNAP"
		else
			fail "$P: create view"
		fi
		IO_TIMEOUT=30 same "$P: jsnap == model" "$dev" "$MODEL"
	fi
fi

# ---- e: reload racing a view's attach (item 21) ------------------------------------
if want e && load_module "$FM" fault_ctr_ms="$HOLD"; then
	P="e: reload vs attach"
	if setup "$P" snap; then
		wr1 "$dev" 0 300 64 "$MODEL"
		line=$(dmsetup table "$NAME")
		t0=$(date +%s%N)
		bounded $((HOLD / 1000 + 60)) dmsetup reload "$NAME" --table "$line" >"$SCRATCH/reload.out" 2>&1 &
		rpid=$!
		sleep 1
		if view=$(dm_create "$VNAME" "0 $LEN jsnap-view $dev ro"); then
			ms=$((($(date +%s%N) - t0) / 1000000))
			ok "$P: view created while the reload is held ($ms ms)"
		else
			fail "$P: view created while the reload is held"
		fi
		if wait "$rpid"; then
			fail "$P: reload refused" "the reload succeeded while a view was attaching"
		else
			ok "$P: reload refused"
		fi
		if (($(log_count 'A jsnap-view is attached') > 0)); then ok "$P: the refusal says why"; else
			fail "$P: the refusal says why" "$(tr '\n' ' ' <"$SCRATCH/reload.out")"
		fi
		check_eq "$P: no inactive table" "" "$(dmsetup table --inactive "$NAME" 2>/dev/null)"
		[[ -n ${view:-} ]] && IO_TIMEOUT=30 same "$P: view == the snapshot" "$view" "$SNAP"
		IO_TIMEOUT=30 same "$P: jsnap == model" "$dev" "$MODEL"
	fi
fi

# ---- f: poisoned journal data (item 10) --------------------------------------------
PS=2050 # inside record W1 (sectors 2048..2055)
if want f && load_module "$FM" fault_poison_sector=$PS; then
	P="f: poison"
	if setup "$P" nosnap no_destage; then
		wr1 "$dev" 0 2048 8 && wr1 "$dev" 0 4096 16 "$MODEL" || fail "$P: writes"
		if rd "$dev" 2048 8 >/dev/null; then fail "$P: read of the poisoned record fails" "it returned data"; else
			ok "$P: read of the poisoned record fails"
		fi
		if rd "$dev" 2040 8 | cmp -s - <(dd if="$ORIG" bs=512 skip=2040 count=8 status=none); then
			ok "$P: sectors beside it read"
		else
			fail "$P: sectors beside it read"
		fi
		same_at "$P: other record intact" "$dev" 4096 "$MODEL" 4096 16
		# a reload replays the journal: the record is skipped, and said so
		line=$(dmsetup table "$NAME")
		if dmsetup suspend "$NAME" && dmsetup reload "$NAME" --table "$line" && dmsetup resume "$NAME"; then
			ok "$P: reload"
		else
			fail "$P: reload"
		fi
		check_eq "$P: replay reports the poisoned record" 1 "$(log_count 'sector 2048, 8 sectors\) is on poisoned pmem: skipped')"
		IO_TIMEOUT=30 same "$P: after replay: the data before the record, the other record" "$dev" "$MODEL"
	fi
fi

# ---- g: every pmem fence where the task may sleep ----------------------------------
if want g && load_module "$FM" fault_pmem_shadow=1; then
	P="g: fences"
	if setup "$P" snap; then
		# destage preserves chunks 2, 10 and 20 before overwriting them
		for s in 128 640 1280; do IO_TIMEOUT=30 wr1 "$dev" 0 $s 8 "$MODEL" || fail "$P: write at $s"; done
		if bounded 120 dmsetup message "$NAME" 0 drain; then ok "$P: drain"; else fail "$P: drain" "$(jsnap_status "$NAME")"; fi
		if view=$(dm_create "$VNAME" "0 $LEN jsnap-view $dev rw"); then
			# part of chunk 64 (copied first), all of chunk 80 (no copy)
			IO_TIMEOUT=30 wr1 "$view" 0 4104 8 "$SNAP" && IO_TIMEOUT=30 wr1 "$view" 0 5120 64 "$SNAP" ||
				fail "$P: view writes"
			msg "$NAME" hydrate on || fail "$P: hydrate on"
			if wait_hydrated "$NAME" 300; then ok "$P: hydration done"; else fail "$P: hydration done" "$(jsnap_status "$NAME")"; fi
			check_eq "$P: every chunk preserved" "$((LEN / 64))" "$(status_get "$NAME" preserved)"
			IO_TIMEOUT=30 same "$P: view == snapshot + view writes" "$view" "$SNAP"
			IO_TIMEOUT=30 same "$P: store alone == the view" "$STORE" "$SNAP"
		else
			fail "$P: create rw view"
		fi
		IO_TIMEOUT=30 same "$P: jsnap device == model" "$dev" "$MODEL"
		check_eq "$P: pmem fences where the task could not sleep" 0 \
			"$(cat /sys/module/dm_jsnap/parameters/fault_pmem_fences_atomic)"
	fi
fi
end
