#!/usr/bin/env bash
# tests/twohost.sh [--keep] [--break a]
#
# Two hosts over NVMe/TCP (issue 15, item 1): two guests booted at once,
# joined by a private QEMU network on the loopback only (qemu/vm.sh
# --net-listen/--net-connect: a TCP stream between the two QEMUs on
# 127.0.0.1, one virtio-net NIC each, nothing else reachable), synchronised
# through files in a shared work directory (--rwdir).
#
#   host A (tests/twohost/guest-a.sh): jsnap over prod (NVMe) / pmem /
#     store (virtio, behind dm-delay while B works), ext4 over the first
#     48 MiB and a raw tail of 16 MiB; files; fsfreeze -f, snapshot, the
#     sha256 of every file and of the image, fsfreeze -u; a ro and a rw
#     jsnap-view, each exported as its own nvmet subsystem (configfs, tcp
#     port on 10.77.0.1:4420, allow_any_host); hydrate on; writes to the
#     base volume (modified and new files) while B works.
#   host B (tests/twohost/guest-b.sh): nvme connect -t tcp, the namespaces
#     found by subsystem NQN; the ro view's ext4 mounted read-only and every
#     file checked against A's hashes; fio --verify=crc32c on the rw view's
#     raw tail.
#
# Cases, each checked against content: (a) B's writes reach only the view
# (production's raw tail unchanged, checked on A); (b) A's post-snapshot
# writes never appear on B; (c) B disconnects and reconnects while A's
# hydration is running, the content unchanged; (d) A removes the ro view
# (dmsetup remove --force) while B reads it through nvmet: B gets I/O
# errors, never wrong data, A does not hang, both guests exit cleanly; (e)
# after hydration=done the store equals the snapshot.  Throughput: the same
# fio read jobs (4 KiB random QD 16, 1 MiB sequential QD 4, 5 s each) on the
# ro view over NVMe/TCP on B and on A directly (`# ... PERF` lines).
#
# --break a: host A writes into production's raw tail after B's writes, so
# case (a) must fail (a self-test of the oracle).
#
# Output: `ok - twohost ...` / `not ok - twohost ...` lines (always 29:
# each guest's declared checks, printed on every path, plus per guest
# "ran to its end" (vm.sh exit 0) and "no kernel splat in the console"),
# notes (`# `), and finally `twohost: N passed, M failed`; exit non-zero on
# failure.  Every wait is bounded (each VM: 1200 s at most).  A QEMU that
# dies before its kernel prints anything gets the pair booted once more.
# The guests' logs and consoles are kept in the work directory on failure
# (or with --keep).
{
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/env.sh
. "$top/scripts/env.sh"

keep=0 brk=
while [[ $# -gt 0 ]]; do
	case $1 in
	--keep) keep=1; shift ;;
	--break) brk=${2:?}; [[ $brk == a ]] || { echo "twohost.sh: --break a" >&2; exit 2; }; shift 2 ;;
	-h | --help) sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: tests/twohost.sh [--keep] [--break a]" >&2; exit 2 ;;
	esac
done
KO=${JSNAP_MODULE:-$top/dm-jsnap.ko}
[[ -f $KO ]] || { echo "twohost: module not found: $KO" >&2; exit 2; }
VM_TIMEOUT=1200 # (each VM; every wait inside is bounded far below)

# the work directory (seen by both guests): the media, the shared directory,
# the logs, and a copy of the harness and module (an edit during a run
# cannot change it)
work=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-twohost.XXXXXX")
snap=$work/top
mkdir -p "$snap/qemu" "$snap/scripts" "$snap/tests" "$work/sh"
cp "$top"/qemu/{vm.sh,guest-init.sh,guest-lib.sh,shm-shim.sh,kernel.config} "$snap/qemu/" &&
	cp "$top/scripts/env.sh" "$snap/scripts/" && cp -r "$top/tests/twohost" "$snap/tests/" &&
	cp "$KO" "$work/dm-jsnap.ko" || { echo "twohost: cannot copy the harness to $work" >&2; exit 2; }
export JSNAP_MODULE=$work/dm-jsnap.ko
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t0=$(date +%s)
echo "# twohost: work=$work module=$KO port=127.0.0.1:$port${brk:+ break=$brk}"

SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
npass=0 nfail=0
pass() { echo "ok - twohost $*"; npass=$((npass + 1)); }
failc() { echo "not ok - twohost $*"; nfail=$((nfail + 1)); }

# run_pair: host A listens, host B connects (QEMU retries until A's QEMU
# is up); sets arc, brc (vm.sh's status of each)
run_pair() {
	local apid bpid
	rm -rf "$work/sh" "$work"/*.img && mkdir "$work/sh"
	JSNAP_VM_CONSOLE=$work/A.console "$snap/qemu/vm.sh" --memory 1G --cpus 2 --timeout "$VM_TIMEOUT" \
		--pmem "32M:$work/pmem.img" --disk "prod:64M:$work/prod.img:nvme" --disk "store:64M:$work/store.img:virtio" \
		--net-listen "$port" --rwdir "$work/sh" \
		-- env TWOHOST_BREAK="$brk" bash "$snap/tests/twohost/guest-a.sh" "$work/sh" >"$work/A.log" 2>&1 &
	apid=$!
	sleep 2
	JSNAP_VM_CONSOLE=$work/B.console "$snap/qemu/vm.sh" --memory 1G --cpus 1 --timeout "$VM_TIMEOUT" \
		--net-connect "$port" --rwdir "$work/sh" \
		-- bash "$snap/tests/twohost/guest-b.sh" "$work/sh" >"$work/B.log" 2>&1 &
	bpid=$!
	# one VM gone before the other: tell the other (its waits end at once)
	arc='' brc=''
	while [[ -z $arc || -z $brc ]]; do
		if [[ -z $arc ]] && ! kill -0 "$apid" 2>/dev/null; then wait "$apid"; arc=$?; fi
		if [[ -z $brc ]] && ! kill -0 "$bpid" 2>/dev/null; then wait "$bpid"; brc=$?; fi
		if [[ -n $arc$brc && ( -z $arc || -z $brc ) && ! -e $work/sh/abort ]]; then
			[[ -n $arc && ! -e $work/sh/A.exit ]] && echo "host: VM A ended (vm.sh $arc) without finishing" >"$work/sh/abort"
			[[ -n $brc && ! -e $work/sh/B.exit ]] && echo "host: VM B ended (vm.sh $brc) without finishing" >"$work/sh/abort"
		fi
		sleep 1
	done
}
run_pair
# A QEMU that died before its kernel printed anything (seen once: vm.sh
# 255 after 6 s, an empty console, no message) is the harness's problem,
# not the test's: once, boot the pair again
for side in A B; do
	if [[ ! -s $work/$side.console ]] && ! grep -q '^vm.sh: guest booted' "$work/$side.log"; then
		echo "# twohost: VM $side did not start (vm.sh ${arc}/${brc}, empty console): booting the pair again"
		sed "s/^/#   $side log: /" "$work/$side.log" | tail -n 5
		port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		run_pair
		break
	fi
done
wall=$(($(date +%s) - t0))

# report SIDE RC: the guest's check lines, its notes, vm.sh's status, the
# console scanned for kernel splats
report() {
	local side=$1 rc=$2 line s want got i
	while IFS= read -r line; do
		case $line in
		"ok - "* | "not ok - "*)
			echo "$line"
			if [[ $line == ok* ]]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
			;;
		"# twohost "[AB]" t="*": check "*) ;; # (the check lines follow at the end)
		"# twohost "* | "vm.sh: guest booted"* | "vm.sh: VM ran"*) echo "# $side: ${line#\# }" ;;
		esac
	done < <(tr -d '\r' <"$work/$side.log")
	# a guest that died early printed fewer check lines than it declares:
	# the missing ones fail, so that the count stays exact
	want=$(grep -c '^check_decl ' "$snap/tests/twohost/guest-${side,,}.sh")
	got=$(tr -d '\r' <"$work/$side.log" | grep -cE '^(not )?ok - twohost '"$side"': ')
	for ((i = got; i < want; i++)); do failc "$side: check $((i + 1)) of $want not reported (the guest died?)"; done
	if [[ $rc == 0 ]]; then pass "$side: VM exit 0"
	else
		failc "$side: VM exit 0 -- vm.sh exited $rc"
		grep -av "^\(not \)\{0,1\}ok - " "$work/$side.log" | tail -n 15 | sed "s/^/#   $side log: /"
	fi
	s=$(grep -aE "$SPLAT_RE" "$work/$side.console" 2>/dev/null || true)
	if [[ -n $s ]]; then
		failc "$side: no kernel splat in the console log -- $(head -n1 <<<"$s")"
		grep -aE -B2 -A25 "$SPLAT_RE" "$work/$side.console" | head -n 60 | sed "s/^/#   $side console: /"
	else
		pass "$side: no kernel splat in the console log"
	fi
}
report A "$arc"
report B "$brc"
[[ -e $work/sh/abort ]] && echo "# twohost: aborted: $(cat "$work/sh/abort")"
grep -ah 'PERF' "$work/A.log" | sed 's/^# twohost A t=[0-9]*: /# twohost: /'
echo "# twohost: wall time ${wall} s"
if ((nfail == 0 && keep == 0)); then rm -rf "$work"; else echo "# twohost: logs kept in $work"; fi
echo "twohost: $npass passed, $nfail failed"
((nfail == 0))
exit
}
