#!/usr/bin/env bash
# bench/hook.sh pre JOB | post JOB DRAIN(0|1) [NEXT]: fio exec_prerun/
# exec_postrun hook of bench/guest.sh.  Records /sys/block stat lines and
# `dmsetup status` into $BENCH_DIR/JOB.meta before the job, after its I/O,
# and (DRAIN=1) after draining the device with $BENCH_DRAIN.  The final
# snapshot is also the "before" of job NEXT (which then has no pre hook).  Only shell builtins and one
# dmsetup per snapshot: process start-up is expensive under TCG.
# Environment: BENCH_DIR, BENCH_DEVS (block device names), BENCH_DRAIN.
stats() {
	local d line st
	for d in $BENCH_DEVS; do
		read -r line <"/sys/block/$d/stat"
		echo "$1_$d=$line"
	done
	echo "$1_time=$EPOCHREALTIME"
	read -r line </proc/stat
	echo "$1_cpu=$line"
	while read -r st; do
		echo "$1_status=$st"
	done < <(dmsetup status 2>/dev/null)
}

m=$BENCH_DIR/$2.meta
case $1 in
pre)
	stats before >"$m"
	;;
post)
	stats after_io >>"$m"
	if [[ ${3:-0} == 1 && -n ${BENCH_DRAIN:-} ]]; then
		echo "drain_t0=$EPOCHREALTIME" >>"$m"
		timeout 300 $BENCH_DRAIN >"$BENCH_DIR/$2.drain" 2>&1
		echo "drain_rc=$?" >>"$m"
		echo "drain_t1=$EPOCHREALTIME" >>"$m"
	fi
	stats after >>"$m"
	if [[ -n ${4:-} ]]; then
		while IFS= read -r l; do
			[[ $l == after_io_* ]] && continue
			[[ $l == after_* ]] && echo "before_${l#after_}"
		done <"$m" >"$BENCH_DIR/$4.meta"
	fi
	;;
esac
exit 0
