#!/usr/bin/env bash
# Guest side of qemu/vm.sh: runs inside the VM as root.
#   guest-init.sh WORKDIR
# WORKDIR (shared read-write with the host) holds env.sh and cmd; results go
# to WORKDIR/out: started, rc, dmesg, setup-failed.
set -uo pipefail

work=$1
out=$work/out

# virtme-ng-init finds its script I/O ports through udev's
# /dev/virtio-ports/* links; without udev (as here) it falls back to the
# serial console and loses stdout/stderr and the exit code.  Find the ports
# ourselves (devtmpfs has /dev/vportNpM) and redirect to them.
mkdir -p /dev/virtio-ports
for n in /sys/class/virtio-ports/*/name; do
	[[ -r $n ]] || continue
	pn=$(cat "$n")
	dev=/dev/$(basename "$(dirname "$n")")
	[[ -n $pn && -c $dev ]] && ln -sfn "$dev" "/dev/virtio-ports/$pn"
done
p1=$(readlink -f /dev/virtio-ports/virtme.stdout 2>/dev/null || true)
p2=$(readlink -f /dev/virtio-ports/virtme.stderr 2>/dev/null || true)
if [[ -c $p1 && $(readlink -f /proc/self/fd/1) != "$p1" ]]; then
	{ exec >"$p1"; } 2>/dev/null || true
fi
if [[ -c $p2 && $(readlink -f /proc/self/fd/2) != "$p2" ]]; then
	# (not "{ exec 2>X; } 2>/dev/null": the group would restore fd 2)
	if (: 2>"$p2") 2>/dev/null; then exec 2>"$p2"; fi
fi
exec </dev/null
# shellcheck source=/dev/null
. "$work/env.sh"
export PATH=$JSNAP_TOP/qemu:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

setup_fail() {
	echo "vm.sh(guest): setup failed: $*" >&2
	echo "$*" >"$out/setup-failed"
	dmesg >"$out/dmesg" 2>/dev/null
	exit 125
}

# No udev in the guest: let libdevmapper create /dev/mapper nodes itself and
# skip udev synchronisation (the kernel may lack SysV semaphores too).
export DM_DISABLE_UDEV=1

# ---- fio without SysV IPC in the kernel: wrapper with the shm shim ---------------
if [[ ! -d /proc/sysvipc && -n ${JSNAP_SHM_SHIM:-} && -f $JSNAP_SHM_SHIM ]]; then
	real_fio=$(command -v fio || true)
	if [[ -n $real_fio ]]; then
		mkdir -p "$work/bin"
		printf '#!/bin/sh\nLD_PRELOAD=%s${LD_PRELOAD:+:$LD_PRELOAD} exec %s "$@"\n' \
			"$JSNAP_SHM_SHIM" "$real_fio" >"$work/bin/fio"
		chmod +x "$work/bin/fio"
		export PATH=$work/bin:$PATH
	fi
fi

# ---- pmem: must end up as a DAX-capable /dev/pmem0 ---------------------------
pmem_dax() {
	[[ -b /dev/pmem0 ]] || return 1
	local f
	for f in /sys/block/pmem0/dax /sys/block/pmem0/queue/dax; do
		[[ -f $f && $(cat "$f") == 1 ]] && return 0
	done
	return 1
}
if [[ ${JSNAP_VM_PMEM:-0} == 1 ]]; then
	for _ in $(seq 50); do
		[[ -e /sys/bus/nd/devices/namespace0.0 ]] && break
		sleep 0.1
	done
	[[ -e /sys/bus/nd/devices/namespace0.0 ]] || setup_fail "no NVDIMM namespace0.0 (CONFIG_ACPI_NFIT/LIBNVDIMM?)"
	# A fresh backing file gives a raw (non-DAX) namespace: convert it once;
	# the info block is stored in the backing file, so later boots find it.
	for _ in $(seq 20); do [[ -b /dev/pmem0 ]] && break; sleep 0.1; done
	if ! pmem_dax; then
		echo "vm.sh(guest): converting namespace0.0 to fsdax" >&2
		ndctl create-namespace -f -e namespace0.0 -m fsdax -M mem >"$out/ndctl.log" 2>&1 ||
			setup_fail "ndctl create-namespace failed: $(cat "$out/ndctl.log")"
		for _ in $(seq 50); do pmem_dax && break; sleep 0.1; done
	fi
	pmem_dax || setup_fail "/dev/pmem0 missing or not DAX-capable"
fi

# ---- disks: /dev/disk/jsnap/NAME by serial -------------------------------------
if [[ -n ${JSNAP_VM_DISKS:-} ]]; then
	mkdir -p /dev/disk/jsnap
	for name in $JSNAP_VM_DISKS; do
		found=
		for _ in $(seq 50); do
			for b in /sys/block/*; do
				for s in "$b/serial" "$b/device/serial"; do
					[[ -r $s ]] || continue
					ser=$(tr -d ' \n\0' <"$s")
					if [[ $ser == "$name" ]]; then found=${b##*/}; break 3; fi
				done
			done
			sleep 0.1
		done
		[[ -n $found && -b /dev/$found ]] || setup_fail "disk '$name' not found"
		ln -sfn "/dev/$found" "/dev/disk/jsnap/$name"
	done
fi

# ---- run the command -----------------------------------------------------------
cd "$JSNAP_VM_CWD" 2>/dev/null || cd "$JSNAP_TOP" || cd /
echo "vm.sh: command start" >/dev/kmsg 2>/dev/null
sync
: >"$out/started"
bash "$work/cmd"
rc=$?
echo "vm.sh: command end rc=$rc" >/dev/kmsg 2>/dev/null
dmesg >"$out/dmesg" 2>/dev/null
echo "$rc" >"$out/rc"
[[ -e /dev/virtio-ports/virtme.ret ]] && echo "$rc" >/dev/virtio-ports/virtme.ret
sync
exit "$rc"
