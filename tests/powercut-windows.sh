#!/usr/bin/env bash
# tests/powercut-windows.sh [--keep] [CASE...]
#
# Deterministic power cuts inside two windows of the write path, reached
# with the fault-injection build (scripts/build-module.sh --fault ->
# dm-jsnap-fault.ko, parameters fault_copy_sector/fault_copy_ms hold journal
# writes starting at a sector between the changes-table insert and the pmem
# copy).  Boot 1 loads the fault module, sets up the window and cuts the
# power inside it (`echo b > /proc/sysrq-trigger` in the guest: reboot
# without sync, QEMU exits, vm.sh returns 255 "guest died without
# reporting"); boot 2 loads the normal module (dm-jsnap.ko), reloads the
# same table (no format) and checks the contract (DESIGN.md §2.3 "Crash",
# "Snapshot content").  Media (pmem 32M, prod 32M on NVMe, store 32M on
# virtio: one disk per bus, so that device numbers stay the same across
# boots, as the journal's identity check wants) are files in a temp
# directory kept across the boots of a case.
#
# CASEs (default: all, in this order):
#   a-full     issue 10 item 1: W1 = 8 sectors A at S acknowledged; W2 = B at
#              S held in its copy window; `drain` running (destage and
#              retirement run); cut.  After replay S holds A or B, never the
#              old content (zeroes); other acknowledged writes are there; a
#              second recovery gives the same content; drain -> production.
#   a-partial  the same with W1 = 16 sectors at S-8, W2 = its second half:
#              the first half is A, the second A or B.
#   b          issue 10 item 5: acknowledged writes, a write at S held (its
#              sequence number is below the boundary), `snapshot` (must
#              return at once), cut.  After replay: snapshot active; W' at
#              T; a ro view shows the snapshot (checksums taken in boot 1;
#              S: the old content or the in-flight write), T the
#              pre-snapshot content; again after drain, after hydration,
#              and on the store alone.
#
# Env: JSNAP_MODULE (default dm-jsnap.ko), JSNAP_FAULT_MODULE (default
# dm-jsnap-fault.ko), PCW_HOLD_MS (hold of cases a-partial and b, default
# 30000), PCW_HOLD_FULL_MS (a-full, default 15000: W1 starts at S and waits
# the hold out too), PCW_VM_TIMEOUT (per boot, default 300).
# Output: `ok - powercut-windows ...` / `not ok - powercut-windows ...` per
# check, `# ...` notes, and finally `powercut-windows: N passed, M failed`.
# Exit status non-zero if anything failed.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/env.sh
. "$top/scripts/env.sh"

keep=0
cases=()
usage() { sed -n '2,2p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	a-full | a-partial | b) cases+=("$1"); shift ;;
	*) usage >&2; exit 2 ;;
	esac
done
((${#cases[@]})) || cases=(a-full a-partial b)

KO=${JSNAP_MODULE:-$top/dm-jsnap.ko}
FKO=${JSNAP_FAULT_MODULE:-$top/dm-jsnap-fault.ko}
for m in "$KO" "$FKO"; do
	[[ -f $m ]] || { echo "powercut-windows: module not found: $m (fault build: scripts/build-module.sh --fault)" >&2; exit 2; }
done
HOLD=${PCW_HOLD_MS:-30000}
HOLD_FULL=${PCW_HOLD_FULL_MS:-15000}
VM_TIMEOUT=${PCW_VM_TIMEOUT:-300}

# (visible in the guest, which sees the host's root file system and /tmp)
work=$(mktemp -d "${PC_WORKDIR:-/tmp}/jsnap-pcw.XXXXXX")
# A snapshot of the harness, our guest script and the modules: an edit or a
# rebuild during the run must not change a boot.
snap=$work/top
mkdir -p "$snap/qemu" "$snap/scripts" "$snap/tests/guest"
cp "$top"/qemu/{vm.sh,guest-init.sh,guest-lib.sh,kernel.config} "$snap/qemu/" &&
	cp "$top/scripts/env.sh" "$snap/scripts/" &&
	cp "$top/tests/guest/lib.sh" "$snap/tests/guest/" &&
	cp -r "$top/tests/powercut-windows" "$snap/tests/" &&
	cp "$KO" "$work/dm-jsnap.ko" && cp "$FKO" "$work/dm-jsnap-fault.ko" ||
	{ echo "powercut-windows: cannot copy the harness to $snap" >&2; exit 2; }
echo "# powercut-windows: work=$work module=$KO fault module=$FKO"

SPLAT_RE='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
npass=0
nfail=0
failed_lines=()
pass() { echo "ok - powercut-windows $*"; npass=$((npass + 1)); }
failc() { echo "not ok - powercut-windows $*"; nfail=$((nfail + 1)); failed_lines+=("not ok - powercut-windows $*"); }

# run_vm CASE TAG HOLD GUEST-ARGS...: one boot; log in $work/TAG.log; sets vm_rc
run_vm() {
	local c=$1 tag=$2 hold=$3
	shift 3
	JSNAP_VM_CONSOLE=$work/$tag.console JSNAP_VM_DMESG=$work/$tag.dmesg JSNAP_MODULE=$work/dm-jsnap.ko \
		"$snap/qemu/vm.sh" --memory 1G --cpus 2 --timeout "$VM_TIMEOUT" \
		--pmem "32M:$work/pmem.img" \
		--disk "prod:32M:$work/$c-prod.img:nvme" \
		--disk "store:32M:$work/$c-store.img:virtio" \
		-- env PCW_FAULT_KO="$work/dm-jsnap-fault.ko" PCW_KO="$work/dm-jsnap.ko" PCW_HOLD_MS="$hold" \
		PCW_SUMS="${sums:-}" bash "$snap/tests/powercut-windows/guest.sh" "$@" \
		>"$work/$tag.log" 2>&1
	vm_rc=$?
}

# report TAG CUT: the guest's check lines, notes, splats, vm.sh's status
report() {
	local tag=$1 cut=$2 line s
	while IFS= read -r line; do
		case $line in
		"ok - powercut-windows "*) echo "$line"; npass=$((npass + 1)) ;;
		"not ok - powercut-windows "*) echo "$line"; nfail=$((nfail + 1)); failed_lines+=("$line") ;;
		"# "*) echo "#   $line" ;;
		esac
	done < <(tr -d '\r' <"$work/$tag.log")
	s=$(grep -aE "$SPLAT_RE" "$work/$tag.console" 2>/dev/null | grep -av 'jsnap-test-mark\|jsnap-test-start' || true)
	if [[ -n $s ]]; then
		failc "$tag: no kernel splat -- $(head -n1 <<<"$s")"
		grep -aE -B2 -A25 "$SPLAT_RE" "$work/$tag.console" | head -n 60 | sed 's/^/#   console: /'
	else
		pass "$tag: no kernel splat in the console log"
	fi
	if ((cut)); then
		# sysrq b: QEMU exits (-no-reboot) before the guest reports an exit code
		if [[ $vm_rc == 255 ]] && grep -aq 'power cut (sysrq b)' "$work/$tag.log"; then
			pass "$tag: power cut by sysrq b (vm.sh 255, no exit code reported)"
		else
			failc "$tag: power cut by sysrq b -- vm.sh exited $vm_rc"
			tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
		fi
	elif [[ $vm_rc == 0 ]]; then
		pass "$tag: VM exit 0"
	else
		failc "$tag: VM exit 0 -- vm.sh exited $vm_rc"
		tail -n 15 "$work/$tag.log" | sed 's/^/#   log: /'
	fi
}

S=4096 # target sector of the window (chunk 64 of 64 sectors)
T=8192 # case b: another chunk
t_start=$(date +%s)
for c in "${cases[@]}"; do
	rm -f "$work/$c-prod.img" "$work/$c-store.img"
	sums=
	case $c in
	a-full | a-partial)
		v=${c#a-}
		h=$HOLD
		[[ $v == full ]] && h=$HOLD_FULL
		echo "# [$(($(date +%s) - t_start)) s] $c: boot 1 (fault module, hold $h ms at sector $S, drain, cut)"
		run_vm "$c" "$c-1" "$h" a-cut "$v" $S
		report "$c-1" 1
		echo "# [$(($(date +%s) - t_start)) s] $c: boot 2 (normal module, replay, verify)"
		run_vm "$c" "$c-2" "$h" a-check "$v" $S
		report "$c-2" 0
		;;
	b)
		echo "# [$(($(date +%s) - t_start)) s] b: boot 1 (fault module, hold $HOLD ms at sector $S, snapshot, cut)"
		run_vm b b-1 "$HOLD" b-cut $S $T
		report b-1 1
		sums=$(grep -a '^# pcw-sum ' "$work/b-1.log" | tail -n1 | sed 's/^# pcw-sum //' | tr -d '\r')
		if [[ -z $sums ]]; then
			failc "b-1: checksums of the snapshot reported before the cut"
			continue
		fi
		echo "# [$(($(date +%s) - t_start)) s] b: boot 2 (normal module, replay, view, drain, hydrate)"
		run_vm b b-2 "$HOLD" b-check $S $T
		report b-2 0
		;;
	esac
done

echo "# powercut-windows: ${cases[*]} in $(($(date +%s) - t_start)) s"
if ((nfail > 0)); then
	echo "# failed checks:"
	printf '#   %s\n' "${failed_lines[@]}"
fi
if ((nfail > 0 || keep)); then
	echo "# powercut-windows: logs kept in $work"
else
	rm -rf "$work"
fi
echo "powercut-windows: $npass passed, $nfail failed"
((nfail == 0))
