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
# (a virtio-pmem device, if any, is another region: its namespace is told
# apart by its sysfs path, which runs through the virtio device)
pmem_dax() { # pmem_dax N: /dev/pmemN exists and is DAX-capable
	[[ -b /dev/pmem$1 ]] || return 1
	local f
	for f in /sys/block/pmem$1/dax /sys/block/pmem$1/queue/dax; do
		[[ -f $f && $(cat "$f") == 1 ]] && return 0
	done
	return 1
}
find_region() { # find_region nfit|virtio: region id of the first such namespace
	local ns p
	for ns in /sys/bus/nd/devices/namespace*.0; do
		[[ -e $ns ]] || continue
		p=$(readlink -f "$ns")
		if [[ $p == */virtio* ]]; then [[ $1 == virtio ]] || continue; else [[ $1 == nfit ]] || continue; fi
		ns=${ns##*/namespace}
		echo "${ns%.0}"
		return 0
	done
	return 1
}
# to_fsdax N: a fresh backing file gives a raw (non-DAX) namespace: convert
# it once; the info block is stored in the backing file, so later boots find it.
to_fsdax() {
	for _ in $(seq 20); do [[ -b /dev/pmem$1 ]] && break; sleep 0.1; done
	if ! pmem_dax "$1"; then
		echo "vm.sh(guest): converting namespace$1.0 to fsdax" >&2
		ndctl create-namespace -f -e "namespace$1.0" -m fsdax -M mem >"$out/ndctl.log" 2>&1 || return 1
		for _ in $(seq 50); do pmem_dax "$1" && break; sleep 0.1; done
	fi
	pmem_dax "$1"
}
if [[ ${JSNAP_VM_PMEM:-0} == 1 ]]; then
	r=
	for _ in $(seq 50); do
		r=$(find_region nfit) && break
		sleep 0.1
	done
	[[ -n $r ]] || setup_fail "no NVDIMM namespace (CONFIG_ACPI_NFIT/LIBNVDIMM?)"
	to_fsdax "$r" || setup_fail "/dev/pmem$r (NVDIMM) missing or not DAX-capable: $(cat "$out/ndctl.log" 2>/dev/null)"
	[[ $r == 0 ]] || echo "vm.sh(guest): warning: the NVDIMM is /dev/pmem$r, not /dev/pmem0" >&2
	export PMEM=/dev/pmem$r
fi
if [[ ${JSNAP_VM_VPMEM:-0} == 1 ]]; then
	r=
	for _ in $(seq 50); do
		r=$(find_region virtio) && break
		sleep 0.1
	done
	[[ -n $r ]] || setup_fail "no virtio-pmem namespace (CONFIG_VIRTIO_PMEM?)"
	to_fsdax "$r" || setup_fail "/dev/pmem$r (virtio-pmem) missing or not DAX-capable: $(cat "$out/ndctl.log" 2>/dev/null)"
	export VPMEM=/dev/pmem$r
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
