#!/usr/bin/env bash
# bench/guest.sh — guest side of `make bench` (started by bench/run.sh
# through qemu/vm.sh).  Runs every device configuration in turn on the same
# emulated media and leaves raw material in $JSNAP_VM_OUT/bench:
#   facts                  machine facts (key=value)
#   log                    progress log
#   <cfg>/<job>.json       fio JSON output
#   <cfg>/<job>.meta       key=value: rc, drain time, /sys/block stat and
#                          `dmsetup status` before/after (incl. drain)
#   <cfg>/setup.log, <cfg>/result   per-configuration set-up log and verdict
# Parsing and reporting happen on the host (bench/report.py).
#
# Environment (from run.sh): BENCH_MODE=quick|full, BENCH_CONFIGS (optional
# space-separated subset, for debugging).
set -uo pipefail
. "$JSNAP_TOP/qemu/guest-lib.sh"

MODE=${BENCH_MODE:-quick}
BENCH_JSNAP_FEATURES=${BENCH_JSNAP_FEATURES:-}
OUT=$JSNAP_VM_OUT/bench
mkdir -p "$OUT"
cd "$OUT" || exit 2   # (fio verify dumps land in the cwd)

case $MODE in
quick)
	V_MB=256    # volume size
	R_MB=8      # region of jobs a-d, f
	VER_MB=8    # verify region (at V/2)
	TA=8        # cap for job a (every block once)
	T=3         # time-based jobs b, c, d, f
	TE=10       # cap for job e (sequential, whole volume)
	;;
full)
	V_MB=1024
	R_MB=64
	VER_MB=64
	TA=60
	T=10
	TE=90
	;;
*) echo "bench: unknown mode $MODE" >&2; exit 2 ;;
esac
V=$((V_MB * 2048))            # sectors
R_BLOCKS=$((R_MB * 256))      # 4 KiB blocks in the region
VOFF_MB=$((V_MB / 2))
PMEM_MB=$(($(blockdev --getsz /dev/pmem0) / 2048))
X_MB=$((PMEM_MB * 3 / 2))     # job x: sequential verify, 1.5x the journal
XOFF_MB=$((VOFF_MB + VER_MB))

PROD=$(readlink -f /dev/disk/jsnap/prod)
STORE=$(readlink -f /dev/disk/jsnap/store)
PMEM=/dev/pmem0
pn=${PROD##*/}
sn=${STORE##*/}
PROD_SECT=$(blockdev --getsz "$PROD")
STORE_SECT=$(blockdev --getsz "$STORE")
TMETA_SECT=32768              # 16 MiB thin metadata slice at the start of store

log() {
	local now
	printf -v now '%(%T)T' -1
	echo "[$now] $*" >>"$OUT/log"
	echo "[$now] $*" >&2
}

# run_wd SECS OUTFILE CMD...: run CMD (stdout to OUTFILE, stderr to
# OUTFILE.err) with a watchdog.  Returns CMD's status, or 124 if it is still
# running after SECS (then it is killed; if it is stuck in the kernel it is
# abandoned and HUNG is set).
HUNG=
run_wd() {
	local secs=$1 out=$2 pid i rc
	shift 2
	"$@" >"$out" 2>"$out.err" &
	pid=$!
	for ((i = 0; i < secs * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "WATCHDOG: '$*' still running after ${secs}s"
		dmsetup status >"$out.watchdog-status" 2>&1 &
		sleep 3
		echo w >/proc/sysrq-trigger 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "WATCHDOG: pid $pid does not die (stuck in the kernel): HUNG"
			HUNG=1
			return 124
		fi
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid"
	rc=$?
	return $rc
}

# ---- facts -------------------------------------------------------------------
{
	echo "mode=$MODE"
	echo "kernel=$(uname -r)"
	echo "nproc=$(nproc)"
	echo "mem_total_kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
	echo "fio=$(fio --version)"
	echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "prod=$PROD prod_sectors=$PROD_SECT"
	echo "store=$STORE store_sectors=$STORE_SECT"
	echo "pmem_sectors=$(blockdev --getsz $PMEM)"
	echo "pmem_dax=$(cat /sys/block/pmem0/queue/dax 2>/dev/null)"
	echo "volume_mb=$V_MB region_mb=$R_MB verify_mb=$VER_MB seqverify_mb=$X_MB t=$T ta=$TA te=$TE"
	echo "module=$JSNAP_MODULE"
	echo "module_sha256=$(sha256sum "$JSNAP_MODULE" | cut -c1-16)"
} >"$OUT/facts"

if ! lsmod | grep -q '^dm_jsnap'; then
	insmod "$JSNAP_MODULE" 2>"$OUT/insmod.err" || log "insmod failed: $(cat "$OUT/insmod.err")"
fi

zero_headers() {
	dd if=/dev/zero of=$PMEM bs=1M count=1 oflag=direct status=none
	dd if=/dev/zero of="$STORE" bs=1M count=$((TMETA_SECT / 2048 + 1)) oflag=direct status=none
}

# ---- fio runs ------------------------------------------------------------------
# Each job's meta file (before / after I/O / after drain) is written by
# bench/hook.sh from fio's exec_prerun/exec_postrun, so that one fio process
# runs many jobs (fio start-up costs seconds under TCG).
CFG= DEV= DRAIN= FAILED=
HOOK=$JSNAP_TOP/bench/hook.sh
export BENCH_DEVS="$pn $sn pmem0"

fio_global() {
	PRE=1
	cat <<-EOF
	[global]
	filename=$DEV
	direct=1
	ioengine=libaio
	lat_percentiles=1
	clat_percentiles=1
	percentile_list=50:99:99.9
	randrepeat=1
	randseed=4242
	random_generator=tausworthe64
	thread
	bs=4k
	EOF
}

# fio_job NAME DRAIN(0|1) NEXT OPTION...: one stonewalled job section with
# hooks.  The first job of a file (PRE=1) has a pre hook; the others take
# their "before" snapshot from the post hook of the job before them.
PRE=1
fio_job() {
	local name=$1 drain=$2 next=$3
	shift 3
	[[ $next == - ]] && next=
	echo
	echo "[$name]"
	echo "stonewall"
	[[ $PRE == 1 ]] && echo "exec_prerun=bash $HOOK pre $name"
	echo "exec_postrun=bash $HOOK post $name $drain $next"
	printf '%s\n' "$@"
	PRE=0
}

# run_fio TAG: run $OUT/$CFG/TAG.fio, JSON to TAG.json; flags failures
run_fio() {
	local tag=$1 rc limit=$2
	log "$CFG: fio $tag ($(grep -c '^\[' "$OUT/$CFG/$tag.fio") sections)"
	export BENCH_DIR=$OUT/$CFG BENCH_DRAIN=$DRAIN
	cd "$OUT/$CFG" || return 1
	run_wd "$limit" "$tag.json" fio --output-format=json "$tag.fio"
	rc=$?
	cd "$OUT" || return 1
	[[ -n $HUNG ]] && return 124
	if [[ $rc != 0 ]]; then
		log "$CFG: fio $tag rc=$rc: $(tail -c 800 "$OUT/$CFG/$tag.json.err")"
		FAILED="$FAILED fio-$tag-rc$rc"
	fi
	return $rc
}

json_write_ios() { # fio JSON file -> write total_ios of the first job
	local txt
	read -r -d '' txt <"$1"
	if [[ $txt =~ \"write\"\ :\ \{[^\}]*\"total_ios\"\ :\ ([0-9]+) ]]; then
		echo "${BASH_REMATCH[1]}"
	else
		echo 0
	fi
}

# The jobs, in order: a | b c d s t v x w y e g f   (two fio processes)
#  s, t: two writer threads (numjobs=2, one result) at QD1 and QD16 each
#  a: every block of the region once (random map), capped at TA s
#  b: the same random sequence (same seed, random map) for as many I/Os as
#     a completed: exactly the blocks a wrote, each once, in the same order
#  v: crc32c verify write + read back (4k random); x: the same with 1 MiB
#     sequential writes over 1.5x the pmem size (journal/cache overflow);
#     then drain; w, y: verify_only reads of v's and x's blocks
#  g: half of the region rewritten, left in the journal/cache; f: randread
run_jobs() {
	local na
	{
		fio_global
		fio_job a 1 - rw=randwrite iodepth=1 offset=0 size=${R_MB}M runtime=$TA
	} >"$OUT/$CFG/a.fio"
	run_fio a $((TA + 400)) || return
	na=$(json_write_ios "$OUT/$CFG/a.json")
	[[ $na -gt 0 ]] || na=$R_BLOCKS
	{
		fio_global
		fio_job b 1 c rw=randwrite iodepth=1 offset=0 size=${R_MB}M number_ios=$na runtime=$T
		fio_job c 1 d rw=randwrite iodepth=32 offset=0 size=${R_MB}M norandommap runtime=$T time_based
		fio_job d 1 s rw=randwrite iodepth=1 fdatasync=1 offset=0 size=${R_MB}M norandommap runtime=$T time_based
		fio_job s 1 t rw=randwrite iodepth=1 numjobs=2 group_reporting=1 offset=0 size=${R_MB}M norandommap runtime=$T time_based
		fio_job t 1 v rw=randwrite iodepth=16 numjobs=2 group_reporting=1 offset=0 size=${R_MB}M norandommap runtime=$T time_based
		fio_job v 0 x rw=randwrite iodepth=16 offset=${VOFF_MB}M size=${VER_MB}M verify=crc32c do_verify=1 verify_fatal=1 verify_dump=1
		fio_job x 1 w rw=write bs=1M iodepth=4 offset=${XOFF_MB}M size=${X_MB}M verify=crc32c do_verify=1 verify_fatal=1 verify_dump=1
		fio_job w 0 y rw=randwrite iodepth=16 offset=${VOFF_MB}M size=${VER_MB}M verify=crc32c verify_only=1 verify_fatal=1 verify_dump=1
		fio_job y 0 e rw=write bs=1M iodepth=4 offset=${XOFF_MB}M size=${X_MB}M verify=crc32c verify_only=1 verify_fatal=1 verify_dump=1
		fio_job e 1 g rw=write bs=1M iodepth=4 offset=0 size=${V_MB}M runtime=$TE
		fio_job g 0 f rw=randwrite iodepth=32 offset=0 size=${R_MB}M number_ios=$((R_BLOCKS / 2))
		fio_job f 0 - rw=randread iodepth=32 offset=0 size=${R_MB}M norandommap runtime=$T time_based
	} >"$OUT/$CFG/main.fio"
	run_fio main $((7 * T + TE + 7 * 300))
}

check_drains() {
	local m
	for m in "$OUT/$CFG"/*.meta; do
		[[ -e $m ]] || continue
		if grep -q '^drain_rc=[1-9]' "$m"; then
			FAILED="$FAILED drain-$(basename "$m" .meta)"
			log "$CFG: drain after $(basename "$m" .meta) failed: $(cat "${m%.meta}.drain")"
		fi
	done
}

# ---- configurations --------------------------------------------------------
setup_cfg() {
	local c=$1 chunk
	DEV= DRAIN=
	case $c in
	raw | raw_after) DEV=$PROD ;;
	linear) DEV=$(dm_create lin 0 $V linear "$PROD" 0) ;;
	snap4k | snap64k)
		chunk=8; [[ $c == snap64k ]] && chunk=128
		DEV=$(dm_create org 0 $V snapshot-origin "$PROD") || return 1
		dmsetup suspend org || return 1
		dm_create snp 0 $V snapshot "$PROD" "$STORE" P $chunk >/dev/null || { dmsetup resume org; return 1; }
		dmsetup resume org || return 1
		;;
	thin)
		dm_create tmeta 0 $TMETA_SECT linear "$STORE" 0 >/dev/null || return 1
		dm_create pool 0 "$PROD_SECT" thin-pool /dev/mapper/tmeta "$PROD" 128 1024 1 skip_block_zeroing >/dev/null || return 1
		dmsetup message pool 0 "create_thin 0" || return 1
		DEV=$(dm_create thin 0 $V thin /dev/mapper/pool 0) || return 1
		# provision the whole volume, so that writes after the snapshot
		# share blocks with it (as on the other snapshot targets)
		log "thin: prefill $V_MB MiB"
		fio --name=prefill --filename="$DEV" --direct=1 --ioengine=libaio --rw=write --bs=1M --iodepth=4 \
			--size=${V_MB}M >"$OUT/$c/prefill.log" 2>&1 || return 1
		dmsetup suspend thin || return 1
		dmsetup message pool 0 "create_snap 1 0" || { dmsetup resume thin; return 1; }
		dmsetup resume thin || return 1
		;;
	writecache)
		DEV=$(dm_create wc 0 $V writecache p "$PROD" $PMEM 4096 0) || return 1
		DRAIN="dmsetup message wc 0 flush"
		;;
	wc_snap)
		# The nearest stock equivalent of jsnap: a pmem write cache over a
		# snapshot origin (copy-on-write happens at write-back).
		dm_create org 0 $V snapshot-origin "$PROD" >/dev/null || return 1
		dmsetup suspend org || return 1
		dm_create snp 0 $V snapshot "$PROD" "$STORE" P 8 >/dev/null || { dmsetup resume org; return 1; }
		dmsetup resume org || return 1
		DEV=$(dm_create wc 0 $V writecache p /dev/mapper/org $PMEM 4096 0) || return 1
		DRAIN="dmsetup message wc 0 flush"
		;;
	jsnap | jsnap_snap | jsnap_view | jsnap_bypass | jsnapx | jsnapx_snap)
		# jsnapx, jsnapx_snap: the same with the feature args of
		# BENCH_JSNAP_FEATURES (experiments, e.g. "low_watermark 45"),
		# measured in the same run as the default table; jsnap_bypass:
		# the journal bypass for writes of 256 sectors (128 KiB) or more
		local -a jf=(format)
		[[ $c == jsnapx* ]] && jf+=($BENCH_JSNAP_FEATURES)
		[[ $c == jsnap_bypass ]] && jf+=(bypass 256)
		DEV=$(dm_create js 0 $V jsnap "$PROD" $PMEM "$STORE" 8 ${#jf[@]} "${jf[@]}") || return 1
		DRAIN="dmsetup message js 0 drain"
		if [[ $c != jsnap && $c != jsnapx && $c != jsnap_bypass ]]; then
			dmsetup message js 0 snapshot || return 1
		fi
		if [[ $c == jsnap_view ]]; then
			dm_create jv 0 $V jsnap-view /dev/mapper/js ro >/dev/null || return 1
			# the view's content over the benchmark regions, to check later
			view_sums >"$OUT/$c/view.before" || return 1
		fi
		;;
	*) return 1 ;;
	esac
	[[ -b $DEV ]] || { echo "device $DEV is not a block device" >&2; return 1; }
	dmsetup table 2>/dev/null
	dmsetup status 2>/dev/null
}

view_sums() {
	dd if=/dev/mapper/jv bs=1M count=$R_MB iflag=direct status=none | md5sum
	dd if=/dev/mapper/jv bs=1M skip=$VOFF_MB count=$VER_MB iflag=direct status=none | md5sum
}

# Verdict from the device status at the end (errors, invalid snapshots ...).
check_status() {
	local c=$1 s
	case $c in
	snap4k | snap64k)
		s=$(dmsetup status snp 2>&1)
		echo "snapshot status: $s"
		[[ $s == *Invalid* || $s == *Overflow* || $s == *Merge\ failed* || $s == *Fail* ]] && FAILED="$FAILED snapshot-status"
		;;
	thin)
		s=$(dmsetup status pool 2>&1)
		echo "pool status: $s"
		[[ $s == *Fail* || $s == *out_of_data_space* || $s == *" ro "* ]] && FAILED="$FAILED pool-status"
		;;
	writecache | wc_snap)
		s=$(dmsetup status wc 2>&1)
		echo "writecache status: $s"
		# first field after the target name is the error indicator
		[[ $(awk '{print $4}' <<<"$s") != 0 ]] && FAILED="$FAILED writecache-error"
		if [[ $c == wc_snap ]]; then
			s=$(dmsetup status snp 2>&1)
			echo "snapshot status: $s"
			[[ $s == *Invalid* || $s == *Overflow* || $s == *Fail* ]] && FAILED="$FAILED snapshot-status"
		fi
		;;
	jsnap*)
		s=$(dmsetup status js 2>&1)
		echo "jsnap status: $s"
		[[ $s == *errors=0* && $s == *state=ok* ]] || FAILED="$FAILED jsnap-status"
		[[ $c != jsnap && $c != jsnapx && $c != jsnap_bypass && $s != *snapshot=active* ]] && FAILED="$FAILED jsnap-snapshot-not-active"
		if [[ $c == jsnap_view ]]; then
			if [[ -b /dev/mapper/jv ]]; then
				s=$(dmsetup status jv 2>&1)
				echo "view status: $s"
				if ! view_sums >"$OUT/$c/view.after" || ! cmp -s "$OUT/$c/view.before" "$OUT/$c/view.after"; then
					echo "view content changed: before=$(tr '\n' ' ' <"$OUT/$c/view.before") after=$(tr '\n' ' ' <"$OUT/$c/view.after")"
					FAILED="$FAILED view-content-changed"
				fi
			fi
		fi
		;;
	esac
}

teardown() {
	local n
	for n in jv js wc thin pool tmeta snp org lin; do
		if dmsetup info "$n" >/dev/null 2>&1; then
			dm_remove "$n" || log "teardown: cannot remove $n"
		fi
	done
	dm_mknodes
	zero_headers
}

# ---- hydration: background copy of a whole snapshot vs a raw copy ------------
# hydrate_run NAME: copies the first V_MB of production to the store (or a
# slice of it) and records seconds and the result of comparing the copy
# with the source in $OUT/hydrate/NAME.meta.  Idle volume: no user I/O
# throttles the copiers.
now_ns() { date +%s%N; }
clone_wait() { # clone_wait SECS: until dm-clone's status shows every region
	# hydrated.  Polled every 20 ms: its event comes with the metadata
	# commit, up to a second after the copy (its COMMIT_PERIOD), and that
	# commit is not counted (so dm-clone is timed to its in-core count).
	local i
	for ((i = 0; i < $1 * 50; i++)); do
		clone_done && return 0
		sleep 0.02
	done
	return 1
}
js_done() { [[ $(dmsetup status js 2>/dev/null) == *hydration=done* ]]; }
clone_done() {
	local f
	f=$(dmsetup status cl 2>/dev/null | awk '{print $7}')
	[[ -n $f && ${f%/*} == "${f#*/}" ]]
}
hydrate_run() {
	local name=$1 t0 t1 rc=0 dst=$STORE skip=0 chunk ev
	case $name in
	dd)
		t0=$(now_ns)
		dd if="$PROD" of="$STORE" bs=1M count=$V_MB iflag=direct oflag=direct status=none || rc=1
		t1=$(now_ns)
		;;
	jsnap_4k | jsnap_64k)
		chunk=8; [[ $name == jsnap_64k ]] && chunk=128
		dm_create js 0 $V jsnap "$PROD" $PMEM "$STORE" $chunk 1 format >/dev/null || return 1
		dmsetup message js 0 snapshot || return 1
		# jsnap raises one device-mapper event when every chunk is
		# preserved (durable): the clock stops when `dmsetup wait`,
		# started during the copy, returns; the status then says whether
		# that event was the copy's end (else it was an invalid snapshot).
		# No polling: a 0.1 s poll added up to 17% to a 0.6 s copy, and
		# each dmsetup process under TCG costs tens of ms of guest CPU.
		ev=$(dmsetup info -c --noheadings -o events js) || return 1
		t0=$(now_ns)
		dmsetup message js 0 hydrate on || return 1
		timeout 900 dmsetup wait js $((ev)) >/dev/null || rc=1
		t1=$(now_ns)
		js_done || rc=1
		dmsetup status js
		dm_remove js
		;;
	clone_64k)
		# dm-clone with the same region size as jsnap_64k and as much in
		# flight as one jsnap hydration step (64 regions = 4 MiB);
		# metadata in the first 16 MiB of the store, destination after it.
		dm_create cmeta 0 $TMETA_SECT linear "$STORE" 0 >/dev/null || return 1
		dm_create cdst 0 $V linear "$STORE" $TMETA_SECT >/dev/null || return 1
		dm_create cl 0 $V clone /dev/mapper/cmeta /dev/mapper/cdst "$PROD" 128 \
			1 no_hydration 4 hydration_threshold 64 hydration_batch_size 64 >/dev/null || return 1
		t0=$(now_ns)
		dmsetup message cl 0 enable_hydration || return 1
		clone_wait 900 || rc=1
		t1=$(now_ns)
		dmsetup status cl
		dm_remove cl
		dst=/dev/mapper/cdst
		;;
	*) return 1 ;;
	esac
	local want got
	want=$(dd if="$PROD" bs=1M count=$V_MB iflag=direct status=none | md5sum | cut -c1-32)
	got=$(dd if="$dst" bs=1M skip=$skip count=$V_MB iflag=direct status=none | md5sum | cut -c1-32)
	[[ $name == clone_64k ]] && { dm_remove cdst; dm_remove cmeta; }
	# (one line per repetition; report.py takes the median)
	{
		echo "rc=$rc"
		echo "mb=$V_MB"
		printf 'secs=%d.%03d\n' $(( (t1 - t0) / 1000000000 )) $(( (t1 - t0) / 1000000 % 1000 ))
		echo "copy_equal=$([[ $want == "$got" ]] && echo 1 || echo 0)"
	} >>"$OUT/hydrate/$name.meta"
	[[ $rc == 0 && $want == "$got" ]]
}
# Each copier runs BENCH_HYDRATE_REPS times (default 3), the copiers taking
# turns, so that a change of host load hits all of them alike.
run_hydration() {
	local n r reps=${BENCH_HYDRATE_REPS:-3}
	mkdir -p "$OUT/hydrate"
	log "=== hydrate: fill $V_MB MiB of production"
	dd if=/dev/urandom of="$PROD" bs=1M count=$V_MB oflag=direct status=none
	rm -f "$OUT"/hydrate/*.meta
	for ((r = 1; r <= reps; r++)); do
		for n in dd jsnap_64k clone_64k jsnap_4k; do
			log "hydrate: $n (run $r/$reps)"
			zero_headers
			dd if=/dev/zero of="$STORE" bs=1M count=$((V_MB + 16)) oflag=direct status=none
			if hydrate_run "$n" >>"$OUT/hydrate/$n.log" 2>&1; then
				log "hydrate: $n $(tail -4 "$OUT/hydrate/$n.meta" | tr '\n' ' ')"
			else
				log "hydrate: $n FAILED: $(tail -3 "$OUT/hydrate/$n.log" | tr '\n' ' ')"
				echo "failed=1" >>"$OUT/hydrate/$n.meta"
			fi
			for d in js cl cdst cmeta; do dmsetup info $d >/dev/null 2>&1 && dm_remove $d; done
		done
	done
	zero_headers
}

CONFIGS=${BENCH_CONFIGS:-raw linear snap4k snap64k thin writecache wc_snap jsnap jsnap_snap jsnap_view jsnap_bypass raw_after}
[[ $CONFIGS == none ]] && CONFIGS=
zero_headers
log "bench: mode=$MODE volume=${V_MB}MiB region=${R_MB}MiB configs: $CONFIGS${BENCH_JSNAP_FEATURES:+ (jsnap features: $BENCH_JSNAP_FEATURES)}"
for c in $CONFIGS; do
	CFG=$c FAILED=
	mkdir -p "$OUT/$c"
	if [[ -n $HUNG ]]; then
		echo "SKIPPED (an earlier configuration hung)" >"$OUT/$c/result"
		continue
	fi
	log "=== $c"
	if ! setup_cfg "$c" >"$OUT/$c/setup.log" 2>&1; then
		log "$c: set-up failed: $(tail -5 "$OUT/$c/setup.log")"
		echo "SETUP-FAILED" >"$OUT/$c/result"
		teardown
		continue
	fi
	echo "dev=$DEV" >>"$OUT/$c/setup.log"
	if [[ $c == raw_after ]]; then
		{
			fio_global
			fio_job c 0 - rw=randwrite iodepth=32 offset=0 size=${R_MB}M norandommap runtime=$T time_based
		} >"$OUT/$c/main.fio"
		run_fio main $((T + 300))
	else
		run_jobs
	fi
	check_drains
	if [[ -n $HUNG ]]; then
		log "$c: HUNG; device status follows"
		dmsetup status >>"$OUT/$c/setup.log" 2>&1 &
		sleep 5
		echo "HUNG" >"$OUT/$c/result"
		continue
	fi
	check_status "$c" >>"$OUT/$c/setup.log" 2>&1
	if [[ -n $FAILED ]]; then
		echo "FAILED:$FAILED" >"$OUT/$c/result"
		log "$c: FAILED:$FAILED"
	else
		echo "OK" >"$OUT/$c/result"
	fi
	teardown >>"$OUT/$c/setup.log" 2>&1
done
if [[ -z $HUNG && ${BENCH_HYDRATE:-1} == 1 ]]; then
	run_hydration
fi
log "bench: done"
[[ -n $HUNG ]] && exit 3
exit 0
