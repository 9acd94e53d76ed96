# shellcheck shell=bash
# Shared helpers for the guest integration tests (tests/guest/NN-*.sh).
# Sourced by each test; runs inside a qemu/vm.sh guest as root.
#
# Output convention (TAP-like): one line per check,
#   ok - <name>
#   not ok - <name> <reason>
# and `finish` at the end exits 0 iff every check passed.

set -uo pipefail

JSNAP_TOP=${JSNAP_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=../../qemu/guest-lib.sh
. "$JSNAP_TOP/qemu/guest-lib.sh"

# Devices (provided by tests/run-guest.sh through qemu/vm.sh).
PROD=${PROD:-/dev/disk/jsnap/prod}
STORE=${STORE:-/dev/disk/jsnap/store}
SPARE=${SPARE:-/dev/disk/jsnap/spare}
PMEM=${PMEM:-/dev/pmem0}
VPMEM=${VPMEM:-} # virtio-pmem (asynchronous DAX), if the VM has one
CHUNK=${CHUNK:-64}
TEST_NAME=${TEST_NAME:-$(basename "${0%.sh}")}
SCRATCH=${SCRATCH:-/tmp/jsnap-test.$$}
mkdir -p "$SCRATCH"

_npass=0
_nfail=0

ok() { echo "ok - $TEST_NAME: $1"; _npass=$((_npass + 1)); }
fail() {
	local name=$1
	shift
	echo "not ok - $TEST_NAME: $name${*:+ -- $*}"
	_nfail=$((_nfail + 1))
}
# note: diagnostic output (not counted)
note() { echo "# $*"; }

# check_eq NAME EXPECTED ACTUAL
check_eq() {
	if [[ $2 == "$3" ]]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}
# check_match NAME ERE ACTUAL
check_match() {
	if [[ $3 =~ $2 ]]; then ok "$1"; else fail "$1" "'$3' does not match /$2/"; fi
}
# check_cmd NAME CMD...: ok if CMD succeeds (its output is shown as notes on failure)
check_cmd() {
	local name=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if [[ $rc == 0 ]]; then ok "$name"; else
		fail "$name" "command failed (rc=$rc): $*"
		[[ -n $out ]] && sed 's/^/#   /' <<<"$out" | tail -n 20
	fi
	return $rc
}
# check_fails NAME CMD...: ok if CMD fails
check_fails() {
	local name=$1 rc=0
	shift
	"$@" >/dev/null 2>&1 || rc=$?
	if [[ $rc != 0 ]]; then ok "$name"; else fail "$name" "command unexpectedly succeeded: $*"; fi
}

# finish: print the per-test summary and exit.
finish() {
	note "$TEST_NAME: $_npass passed, $_nfail failed"
	rm -rf "$SCRATCH"
	[[ $_nfail == 0 ]]
	exit $?
}

# ---- checksums -------------------------------------------------------------
# sum_stream: checksum of stdin (cksum: CRC32 + length; about twice as fast
# as sha256sum under TCG, and enough to detect stray writes)
sum_stream() { cksum | tr ' ' '-'; }
# dev_sum DEV [MIB]: checksum of the whole device, or of its first MIB MiB.
dev_sum() {
	local dev=$1 mib=${2:-}
	if [[ -n $mib ]]; then
		dd if="$dev" bs=1M count="$mib" iflag=direct status=none | sum_stream
	else
		dd if="$dev" bs=1M iflag=direct status=none | sum_stream
	fi
}
# read_range DEV OFFSET_SECTORS COUNT_SECTORS > file
read_range() {
	dd if="$1" bs=512 skip="$2" count="$3" iflag=direct status=none
}

# ---- kernel log ----------------------------------------------------------------
_mark=
# dmesg_mark: put a unique marker into the kernel log; dmesg_since_mark prints
# the lines logged after the most recent marker.
dmesg_mark() {
	_mark="jsnap-test-mark $TEST_NAME $$ $RANDOM$RANDOM"
	echo "$_mark" >/dev/kmsg
}
dmesg_since_mark() {
	dmesg | awk -v m="$_mark" 'found { print } index($0, m) { found = 1 }'
}
SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
# no_splat_since_mark NAME: check that no kernel splat appeared since the mark
no_splat_since_mark() {
	local s
	s=$(dmesg_since_mark | grep -E "$SPLAT_RE" || true)
	if [[ -z $s ]]; then ok "$1"; else
		fail "$1" "kernel splat"
		sed 's/^/#   /' <<<"$s" | head -n 30
	fi
}

# no_splat_since_start NAME: no kernel splat since this test sourced lib.sh
_start_mark="jsnap-test-start $TEST_NAME $$ $RANDOM$RANDOM"
echo "$_start_mark" >/dev/kmsg 2>/dev/null || true
no_splat_since_start() {
	local s
	s=$(dmesg | awk -v m="$_start_mark" 'found { print } index($0, m) { found = 1 }' |
		grep -E "$SPLAT_RE" || true)
	if [[ -z $s ]]; then ok "$1"; else
		fail "$1" "kernel splat"
		sed 's/^/#   /' <<<"$s" | head -n 30
	fi
}

# ---- device-mapper / jsnap ---------------------------------------------------
dev_sectors() { blockdev --getsz "$1"; }

# jsnap_table LEN [PRODUCTION JOURNAL STORE CHUNK] [FEATURES...] -> table line
# (features are given without their count; it is added here)
jsnap_table() {
	local len=$1
	shift
	local p=${1:-$PROD} j=${2:-$PMEM} s=${3:-$STORE} c=${4:-$CHUNK}
	shift $(($# < 4 ? $# : 4))
	local t="0 $len jsnap $p $j $s $c"
	[[ $# -gt 0 ]] && t="$t $# $*"
	echo "$t"
}

# mk_jsnap NAME LEN [FEATURES...]: jsnap over PROD/PMEM/STORE with CHUNK.
# Prints the device node.
mk_jsnap() {
	local name=$1 len=$2
	shift 2
	dm_create "$name" "$(jsnap_table "$len" "$PROD" "$PMEM" "$STORE" "$CHUNK" "$@")"
}

# jsnap_status NAME: the status line without the "start len jsnap" prefix
jsnap_status() {
	dmsetup status "$1" | sed -E 's/^[0-9]+ [0-9]+ jsnap //'
}
# swap_table NAME TABLE: replace a dm device's table (suspend, reload, resume)
swap_table() {
	dmsetup suspend "$1" && dmsetup reload "$1" --table "$2" && dmsetup resume "$1"
}
# status_get NAME KEY
status_get() {
	jsnap_status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}
# dm_events NAME: the device's device-mapper event number (`dmsetup wait`)
dm_events() {
	echo $(($(dmsetup info -c --noheadings -o events "$1")))
}
# msg NAME WORDS...: dmsetup message
msg() {
	local name=$1
	shift
	dmsetup message "$name" 0 "$@"
}

# zero_journal_sb: zero the journal's superblock area (first 8 KiB)
zero_journal_sb() {
	dd if=/dev/zero of="$PMEM" bs=4096 count=2 oflag=direct status=none
}

# remove leftovers of a failed test
# (views and stacked devices first: a few plain passes, then --force, which
# turns a device still held open into an `error` device, then plain again)
cleanup_dm() {
	local n pass
	for pass in 1 2 3 force 5; do
		for n in $(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }'); do
			if [[ $pass == force ]]; then
				bounded 30 dmsetup remove --force "$n" >/dev/null 2>&1
			else
				bounded 30 dmsetup remove "$n" >/dev/null 2>&1
			fi
		done
	done
	dm_mknodes
}

# ---- model-based checks (reference files hold what a volume must contain) ----
# wr DEV SECTOR COUNT [MODEL...]: write COUNT random sectors at SECTOR to DEV
# and to each model file (per-process temp file: safe in background jobs).
wr() {
	local dev=$1 off=$2 n=$3 m
	shift 3
	local blk=$SCRATCH/blk.$BASHPID
	head -c $((n * 512)) /dev/urandom >"$blk"
	dd if="$blk" of="$dev" bs=512 seek="$off" count="$n" oflag=direct status=none || return 1
	for m in "$@"; do
		dd if="$blk" of="$m" bs=512 seek="$off" count="$n" conv=notrunc status=none
	done
}
# same NAME DEV MODEL: the first $MIB MiB of DEV equal MODEL
same() {
	local a b
	a=$(dd if="$2" bs=1M count="$MIB" iflag=direct status=none | sha256sum | cut -c1-16)
	b=$(sha256sum <"$3" | cut -c1-16)
	check_eq "$1" "$b" "$a"
}

# ---- helpers for targets at any table start / any device ------------------------
# dev_mm DEV: "major:minor" (decimal) of a block device node, as dm prints it
dev_mm() {
	local t
	t=$(stat -L -c '%t %T' "$1") || return 1
	set -- $t
	echo "$((16#$1)):$((16#$2))"
}
# rd DEV SECTOR COUNT: COUNT sectors of DEV from SECTOR to stdout (O_DIRECT;
# nothing if the read does not complete in $IO_TIMEOUT seconds, default 60)
rd() {
	local f=$SCRATCH/rd.$BASHPID rc=0
	bounded "${IO_TIMEOUT:-60}" dd if="$1" of="$f" bs=1M iflag=direct,skip_bytes,count_bytes \
		skip=$(($2 * 512)) count=$(($3 * 512)) status=none || rc=$?
	[[ $rc == 0 ]] && cat "$f"
	rm -f "$f"
	return $rc
}
# same_at NAME DEV DEV_SECTOR MODEL MODEL_SECTOR COUNT: COUNT sectors of DEV
# from DEV_SECTOR equal those of the model file from MODEL_SECTOR
same_at() {
	local a b
	a=$(rd "$2" "$3" "$6" | sha256sum | cut -c1-16)
	b=$(dd if="$4" bs=1M iflag=skip_bytes,count_bytes skip=$(($5 * 512)) \
		count=$(($6 * 512)) status=none | sha256sum | cut -c1-16)
	check_eq "$1" "$b" "$a"
}
# wr1 DEV DEV_OFF SECTOR COUNT [MODEL...]: ONE write bio of COUNT random
# sectors at DEV_OFF+SECTOR of DEV; each model gets them at SECTOR.  The
# write fails if it takes longer than $IO_TIMEOUT seconds (default 60):
# status 124 (see bounded).
wr1() {
	local dev=$1 doff=$2 off=$3 n=$4 m
	shift 4
	local blk=$SCRATCH/one.$BASHPID
	head -c $((n * 512)) /dev/urandom >"$blk"
	bounded "${IO_TIMEOUT:-60}" dd if="$blk" of="$dev" bs=$((n * 512)) count=1 \
		seek=$(((doff + off) * 512)) oflag=direct,seek_bytes conv=notrunc status=none || return $?
	for m in "$@"; do
		dd if="$blk" of="$m" bs=512 seek="$off" count="$n" conv=notrunc status=none
	done
}
# wait_hydrated NAME [SECS]: wait until hydration=done (at most SECS, 300)
wait_hydrated() {
	local i
	for ((i = 0; i < ${2:-300}; i++)); do
		[[ $(status_get "$1" hydration) == done ]] && return 0
		sleep 1
	done
	[[ $(status_get "$1" hydration) == done ]]
}
# bounded SECS CMD...: see qemu/guest-lib.sh

# ---- the fault-injection build (scripts/build-module.sh --fault) -------------
# need_fault_module: returns 0 if $JSNAP_FAULT_MODULE is usable; otherwise
# the test is skipped (or fails with JSNAP_REQUIRE_FAULT=1) and this exits.
need_fault_module() {
	if [[ -z ${JSNAP_FAULT_MODULE:-} ]]; then
		if [[ ${JSNAP_REQUIRE_FAULT:-0} == 1 ]]; then
			fail "fault module" "JSNAP_FAULT_MODULE is not set (JSNAP_REQUIRE_FAULT=1)"
		else
			note "$TEST_NAME: skipped (no fault module: JSNAP_FAULT_MODULE is not set)"
		fi
		finish
	fi
	if [[ ! -f $JSNAP_FAULT_MODULE ]]; then
		fail "fault module" "not found in the guest: $JSNAP_FAULT_MODULE"
		finish
	fi
}
# load_module FILE [PARAM=VALUE...]: replace the loaded dm_jsnap by FILE
# with these parameters (fails if a device of ours still holds it)
load_module() {
	local f=$1 out
	shift
	cleanup_dm
	if grep -q '^dm_jsnap ' /proc/modules && ! out=$(rmmod dm_jsnap 2>&1); then
		fail "rmmod dm_jsnap before loading $(basename "$f") $*" "$out"
		return 1
	fi
	if out=$(insmod "$f" "$@" 2>&1); then
		ok "insmod $(basename "$f") $*"
		dm_mknodes
	else
		fail "insmod $(basename "$f") $*" "$out"
		return 1
	fi
}
# reload_normal_module: after the fault build's cases, remove every device
# and load the normal module ($JSNAP_MODULE) again
reload_normal_module() {
	local out
	cleanup_dm
	grep -q '^dm_jsnap ' /proc/modules && rmmod dm_jsnap 2>/dev/null
	if out=$(insmod "$JSNAP_MODULE" 2>&1); then ok "insmod the normal module again"; else
		fail "insmod the normal module again" "$out"
	fi
	dm_mknodes
}
# log_count ERE: how many kernel log lines since the last dmesg_mark match
log_count() { dmesg_since_mark | grep -cE "$1"; }
