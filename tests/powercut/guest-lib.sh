# shellcheck shell=bash
# Guest helpers shared by every power-cut scenario (tests/powercut.sh):
# sourced by tests/powercut/guest.sh after qemu/guest-lib.sh, before the
# scenario's own file (guest-SCENARIO.sh).
#
# A scenario sets PFX, the start of its check lines ("powercut-snap round
# 3: "), and uses ok/notok; `end` checks the kernel log for splats and
# exits with the verdict.  Environment from the host driver: JSNAP_MODULE,
# PC_FAULT_MODULE (the fault-injection build, may be empty), PC_PMEM_CUT
# (non-empty: a shadow-pmem round cut at a pmem fence), PC_LW=1
# (--log-writes), PC_CHUNK, PC_TOOL, PC_WRITER_AT.

T0=$(date +%s.%N)
# rel: seconds since the guest command started
rel() { echo "$(date +%s.%N) $T0" | awk '{ printf "%.1f", $1 - $2 }'; }
SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
PFX=${PFX:-}
nfail=0
ok() { echo "ok - $PFX$*"; }
notok() { echo "not ok - $PFX$*"; nfail=$((nfail + 1)); }
dmesg_tail() { dmesg | tail -n "${1:-25}" | sed 's/^/#   dmesg: /'; }

# splat_check [LABEL]: a not ok if the kernel log shows a splat
splat_check() {
	local s
	s=$(dmesg | grep -E "$SPLAT_RE" || true)
	if [[ -n $s ]]; then
		notok "${1:+$1: }no kernel splat -- $(head -n1 <<<"$s")"
		dmesg_tail 40
	fi
}
# end: the splat check (labelled $END_LABEL if set, else $LABEL), remove
# $SCRATCH, exit with the verdict
end() {
	splat_check "${END_LABEL-${LABEL:-}}"
	[[ -n ${SCRATCH:-} ]] && rm -rf "$SCRATCH"
	[[ $nfail == 0 ]]
	exit $?
}

# jstatus NAME: the jsnap target's status fields (zero targets left out)
jstatus() { dmsetup status "$1" 2>&1 | grep -vE '^[0-9]+ [0-9]+ zero' | sed -E 's/^[0-9]+ [0-9]+ jsnap //'; }
# jkey NAME KEY: one status field
jkey() { jstatus "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1; }
# check_state NAME WHAT: state=ok and errors=0
check_state() {
	local st
	st=$(jstatus "$1")
	if [[ $st =~ (^| )state=ok( |$) && $st =~ (^| )errors=0( |$) ]]; then
		ok "$2: state=ok errors=0"
	else
		notok "$2: state=ok errors=0 -- status: $st"
		dmesg_tail 15
	fi
	echo "# status ($2): $st"
}

# pc_insmod [FAULT ARGS...]: the normal module, or in a shadow-pmem round
# (PC_PMEM_CUT set) the fault module with fault_pmem_shadow=1 and the
# FAULT ARGS: pmem then holds only what its writer fenced
# (rust/ffi/pmem_shadow.c).  --log-writes: the cutting task waits 1.5 s
# before the reset, so that the logs hold every completed write (no fence
# completes meanwhile: pmem stays as at the cut), and the driver's flushes
# go one at a time (fault_flush_serial=1: with two in flight dm-log-writes
# may log an older write after a newer one to the same sector).
pc_insmod() {
	local mod=$JSNAP_MODULE args=() out
	if [[ -n ${PC_PMEM_CUT:-} ]]; then
		mod=${PC_FAULT_MODULE:?PC_FAULT_MODULE not set}
		args=(fault_pmem_shadow=1 "$@")
		[[ ${PC_LW:-0} == 1 ]] && args+=(fault_pmem_cut_ms=1500 fault_flush_serial=1)
	fi
	if out=$(insmod "$mod" "${args[@]}" 2>&1); then
		ok "insmod $(basename "$mod")${args[*]:+ ${args[*]}}"
	else
		notok "insmod $(basename "$mod") -- $out"
		exit 1
	fi
}
# arm_fence K: cut the power at the K-th pmem fence from now on
arm_fence() {
	echo "$1" >/sys/module/dm_jsnap/parameters/fault_pmem_cut && return 0
	notok "set fault_pmem_cut"
	return 1
}

# lw_over NAME DISK VAR: DISK behind dm-log-writes (--log-writes), its
# log on the disk lw-<name of DISK>; VAR becomes the new device.  (The
# host rebuilds DISK from the log after a fence cut.)  Gives up on failure.
lw_over() {
	local out
	if out=$(dm_create "$1" "0 $(blockdev --getsz "$2") log-writes $2 /dev/disk/jsnap/lw-$(basename "$2")" 2>&1); then
		printf -v "$3" '%s' "$out"
	else
		notok "log-writes over $2 -- $(tr '\n' ' ' <<<"$out")"
		exit 1
	fi
}

# wait_until T: sleep until T seconds after the guest command started (the
# host aims its power cut at moments measured from there)
wait_until() {
	while awk -v a="$(rel)" -v b="$1" 'BEGIN { exit !(a < b) }'; do sleep 0.2; done
}
