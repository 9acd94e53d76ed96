# shellcheck shell=bash
# Shared by tests/twohost/guest-a.sh and guest-b.sh (inside the guests).
#
# Checks: each guest declares its checks up front (check_decl ID TEXT, in
# output order) and records results (res ID ok|fail [DETAIL]); at exit
# every declared check is printed once, in order, one not reached is a
# `not ok`: the number of check lines never depends on the path taken.
#
# Synchronisation: files in the directory $SH shared read-write by both
# guests and the host (9p, no caching): post NAME [TEXT] creates NAME
# atomically (write + rename), await NAME SECS waits for it (bounded;
# gives up at once if the peer or the host aborted the run).

SIDE=${SIDE:?}          # A or B
SH=${SH:?}              # the shared directory
IP_A=10.77.0.1 IP_B=10.77.0.2 PORT=4420
NQN_RO=nqn.2026-12.io.dm-jsnap:twohost-ro
NQN_RW=nqn.2026-12.io.dm-jsnap:twohost-rw
FS_MB=48 TAIL_MB=16 # production: ext4 over the first FS_MB MiB, the raw tail after it
DEV_MB=$((FS_MB + TAIL_MB))
BLK=$(dirname "${BASH_SOURCE[0]}")/blk.py
T0=$(date +%s)

declare -a CK_IDS=()
declare -A CK_TEXT=() CK_RES=()
check_decl() { CK_IDS+=("$1"); CK_TEXT[$1]=$2; }
res() { # res ID ok|fail [DETAIL]
	local id=$1 r=$2 d=${3:-}
	[[ -n ${CK_TEXT[$id]+x} ]] || { echo "# twohost $SIDE: undeclared check $id" >&2; return; }
	if [[ $r == ok ]]; then CK_RES[$id]="ok - twohost $SIDE: ${CK_TEXT[$id]}${d:+ ($d)}"
	else CK_RES[$id]="not ok - twohost $SIDE: ${CK_TEXT[$id]} -- ${d:-failed}"; fi
	note "check $id: ${CK_RES[$id]%% - *}"
}
# res_eq ID WANT GOT [WHAT]
res_eq() { if [[ $2 == "$3" ]]; then res "$1" ok "${4:-}"; else res "$1" fail "${4:+$4: }expected '$2', got '$3'"; fi; }
print_checks() {
	local id
	for id in "${CK_IDS[@]}"; do
		if [[ -n ${CK_RES[$id]+x} ]]; then echo "${CK_RES[$id]}"
		else echo "not ok - twohost $SIDE: ${CK_TEXT[$id]} -- not reached${ABORT_WHY:+ ($ABORT_WHY)}"; fi
	done
}
note() { echo "# twohost $SIDE t=$(($(date +%s) - T0)): $*"; }

post() { # post NAME [TEXT]
	printf '%s\n' "${2:-}" >"$SH/.$1.$SIDE.tmp" && mv -f "$SH/.$1.$SIDE.tmp" "$SH/$1"
	note "posted $1${2:+: $2}"
}
ABORT_WHY=
aborted() { [[ -e $SH/abort ]]; }
abort_run() { # abort_run WHY: tell the peer and the host to stop waiting
	ABORT_WHY=$1
	note "ABORT: $1"
	[[ -e $SH/abort ]] || printf '%s: %s\n' "$SIDE" "$1" >"$SH/abort"
}
await() { # await NAME SECS: 0 when NAME exists; 1 on timeout or abort
	local name=$1 secs=$2 t=$SECONDS
	while ((SECONDS - t < secs)); do
		[[ -e $SH/$name ]] && return 0
		if aborted; then ABORT_WHY=${ABORT_WHY:-"aborted: $(cat "$SH/abort" 2>/dev/null)"}; return 1; fi
		sleep 0.3
	done
	ABORT_WHY=${ABORT_WHY:-"no '$name' from the peer in ${secs} s"}
	abort_run "$ABORT_WHY"
	return 1
}
get() { cat "$SH/$1" 2>/dev/null; }

# net_up ADDR: the private NIC (found by the MAC qemu/vm.sh gave it) up with ADDR/24
net_up() {
	local a dev=
	ip link set lo up
	for a in /sys/class/net/*/address; do
		[[ $(cat "$a") == "${JSNAP_VM_NET_MAC:?no private network (vm.sh --net-listen/--net-connect)}" ]] && { dev=${a%/address}; dev=${dev##*/}; }
	done
	[[ -n $dev ]] || return 1
	ip addr add "$1/24" dev "$dev" && ip link set "$dev" up && note "private network: $dev $JSNAP_VM_NET_MAC $1/24"
}

# bounded SECS CMD...: the harness's own (qemu/guest-lib.sh, copied beside
# tests/ in the harness snapshot; it defines functions only)
# shellcheck source=../../qemu/guest-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../qemu/guest-lib.sh"

# fio_read DEV OUTPREFIX: the throughput jobs (the same on A and B): 4 KiB
# random reads at QD 16 and 1 MiB sequential reads at QD 4, 5 s each, over
# the file-system region; prints "iops_4k MBps_1M"
fio_read() {
	local dev=$1 o=$2 j
	for j in "rr randread 4k 16" "sr read 1M 4"; do
		set -- $j
		bounded 60 fio --name="$1" --filename="$dev" --rw="$2" --bs="$3" --iodepth="$4" \
			--ioengine=libaio --direct=1 --size=${FS_MB}M --runtime=5 --time_based \
			--output-format=json --output="$o.$1.json" >/dev/null 2>"$o.$1.err" || return 1
	done
	python3 - "$o.rr.json" "$o.sr.json" <<'PY'
import json, sys
rr = json.load(open(sys.argv[1]))["jobs"][0]["read"]
sr = json.load(open(sys.argv[2]))["jobs"][0]["read"]
if rr["io_bytes"] <= 0 or sr["io_bytes"] <= 0:
    sys.exit(1)
print("%.0f %.1f" % (rr["iops"], sr["bw_bytes"] / 1e6))
PY
}
