#!/usr/bin/env bash
# qemu/vm.sh — run a command or script inside a virtme-ng guest and return
# its exit code.  See --help (or usage() below) for the interface.
#
# Host side only.  The guest side is qemu/guest-init.sh (pmem/disk setup,
# dmesg capture); qemu/guest-lib.sh has helpers for guest scripts
# (dm_create: dmsetup create + mknodes + block-device check).
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: qemu/vm.sh [OPTIONS] -- COMMAND [ARGS...]

Boot the dm-jsnap test kernel under virtme-ng (host root filesystem shared
read-only over 9p) and run COMMAND as root inside the guest.  The exit code
of COMMAND becomes the exit code of vm.sh.

Options:
  --kernel BZIMAGE    kernel image (default: $KDIR/arch/x86/boot/bzImage)
  --memory SIZE       guest RAM (default 4G)
  --cpus N            guest CPUs (default 2)
  --pmem SIZE[:FILE]  emulated NVDIMM of SIZE (e.g. 256M) backed by FILE
                      (created sparse if missing; a temp file otherwise).
                      In the guest it is /dev/pmem0, fsdax, DAX-capable
                      (converted once with ndctl; the label lives in FILE).
  --virtio-pmem SIZE[:FILE]
                      virtio-pmem device of SIZE (multiple of 2M) backed by
                      FILE (created sparse if missing; a temp file
                      otherwise): asynchronous DAX (flushes go to the host).
                      In the guest it is another /dev/pmemN (converted once
                      to fsdax like the NVDIMM); its path is exported as
                      $VPMEM (the NVDIMM's as $PMEM).
  --disk NAME:SIZE[:FILE][:nvme|virtio]
                      raw disk (file created sparse if missing, temp file
                      otherwise; default bus nvme), serial NAME; in the guest
                      /dev/disk/jsnap/NAME links to it.  Repeatable.
  --net-listen PORT   a private network to one other guest: a virtio-net
                      NIC (MAC 52:54:00:6a:73:01) whose QEMU netdev listens
                      on 127.0.0.1:PORT (TCP, loopback only) for the peer's
  --net-connect PORT  QEMU, which connects with --net-connect PORT (MAC
                      52:54:00:6a:73:02; retried every 0.5 s until the
                      listener is up).  Nothing else is reachable: no
                      user-mode network, no host forwarding.  In the guest
                      the NIC is down and unaddressed; its MAC is
                      exported as $JSNAP_VM_NET_MAC (find the interface
                      by /sys/class/net/*/address)
  --rwdir DIR         share the host directory DIR read-write with the guest
                      (the guest sees the host's files read-only otherwise,
                      and its /tmp is its own); repeatable.  Two guests
                      given the same DIR can exchange files through it.
  --append ARGS       extra kernel command line
  --kill-after SECS   SIGKILL QEMU SECS seconds after COMMAND started in the
                      guest (power cut); vm.sh then returns 137
  --timeout SECS      overall limit, boot included (default 1800); on expiry
                      QEMU is killed and vm.sh returns 124
  -h, --help          this text

In the guest: COMMAND runs via bash in the current directory (if visible),
with JSNAP_TOP (repo) and JSNAP_MODULE (default $JSNAP_TOP/dm-jsnap.ko, or
the host's $JSNAP_MODULE) exported, JSNAP_VM_OUT (a directory shared
read-write with the host, removed afterwards) and PATH including
$JSNAP_TOP/qemu.  The guest runs no udev: after `dmsetup create` run
`dmsetup mknodes` (or source qemu/guest-lib.sh and use dm_create).

Exit codes: COMMAND's exit code; 99 if a kernel splat (BUG, WARNING, Oops,
KASAN, refcount, lockdep, general protection, Call Trace) is in the guest
kernel log (unless JSNAP_VM_ALLOW_SPLATS=1); 124 timeout; 137 --kill-after;
125 harness/setup error (bad option, pmem/disk setup failed in the guest);
255 guest died without reporting (panic, ...).

Environment:
  JSNAP_VM_DMESG=FILE     copy the guest kernel log to FILE (host path)
  JSNAP_VM_CONSOLE=FILE   copy the full serial console log (kept even on a
                          crash or kill) to FILE
  JSNAP_VM_ALLOW_SPLATS=1 report splats but do not fail because of them
  JSNAP_VM_SPLAT_IGNORE=RE  extended regex of splat lines to ignore
  JSNAP_VM_VERBOSE=1      show the guest console (vng --verbose)
  JSNAP_VM_ACCEL=kvm|tcg  force the accelerator (default: probe)
  JSNAP_VM_KEEP=1         keep the temp directory (printed on stderr)
EOF
}

die() { echo "vm.sh: $*" >&2; exit 125; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../scripts/env.sh
. "$here/../scripts/env.sh"

kernel=$KDIR/arch/x86/boot/bzImage
memory=4G
cpus=2
pmem=
vpmem=
disks=()
rwdirs=()
append=
kill_after=
timeout_s=1800
net_role=
net_port=

need() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs an argument"; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--kernel) need "$@"; kernel=$2; shift 2 ;;
	--memory) need "$@"; memory=$2; shift 2 ;;
	--cpus) need "$@"; cpus=$2; shift 2 ;;
	--pmem) need "$@"; pmem=$2; shift 2 ;;
	--virtio-pmem) need "$@"; vpmem=$2; shift 2 ;;
	--disk) need "$@"; disks+=("$2"); shift 2 ;;
	--append) need "$@"; append="$append $2"; shift 2 ;;
	--rwdir) need "$@"; [[ -d $2 ]] || die "--rwdir: not a directory: $2"; rwdirs+=("$(cd "$2" && pwd)"); shift 2 ;;
	--net-listen | --net-connect)
		need "$@"; [[ -z $net_role ]] || die "only one of --net-listen/--net-connect"
		net_role=${1#--net-}; net_port=$2; shift 2 ;;
	--kill-after) need "$@"; kill_after=$2; shift 2 ;;
	--timeout) need "$@"; timeout_s=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage >&2; die "unknown option: $1" ;;
	esac
done
[[ $# -gt 0 ]] || { usage >&2; die "no COMMAND given"; }
[[ -f $kernel ]] || die "kernel image not found: $kernel (build it with scripts/setup.sh)"
[[ $cpus =~ ^[0-9]+$ ]] || die "--cpus: not a number: $cpus"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout: not a number: $timeout_s"
[[ -z $kill_after || $kill_after =~ ^[0-9]+$ ]] || die "--kill-after: not a number: $kill_after"
if [[ -n $net_role ]]; then
	[[ $net_port =~ ^[0-9]{1,5}$ ]] && ((10#$net_port >= 1 && 10#$net_port <= 65535)) ||
		die "--net-$net_role: not a TCP port: $net_port"
	net_port=$((10#$net_port))
fi
command -v vng >/dev/null || die "vng not found (expected in $VENV/bin)"

# Size "256M" / "4G" / "1024K" / bytes -> bytes.
to_bytes() {
	local s=$1 n u
	[[ $s =~ ^([0-9]+)([KkMmGgTt]?)$ ]] || die "bad size: $s"
	n=${BASH_REMATCH[1]}; u=${BASH_REMATCH[2]}
	case $u in
	K | k) n=$((n << 10)) ;; M | m) n=$((n << 20)) ;;
	G | g) n=$((n << 30)) ;; T | t) n=$((n << 40)) ;;
	esac
	echo "$n"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-vm.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/out"
cleanup() {
	local rc=$?
	if [[ ${JSNAP_VM_KEEP:-0} == 1 ]]; then
		echo "vm.sh: kept $work" >&2
	else
		rm -rf "$work"
	fi
	return $rc
}
trap cleanup EXIT

qopts=()
guest_env=()

# ---- accelerator -------------------------------------------------------
# A KVM that opens but cannot run guests (nested virtualisation) is common
# here, so probe by actually running code: a 64 KiB "BIOS" whose reset
# vector writes 0x31 to isa-debug-exit (QEMU exits with 99).  Then boot the
# kernel itself briefly under KVM (verdict cached per host), because nested
# KVM has been seen to pass trivial code and hang while decompressing.
kvm_works() {
	[[ -r /dev/kvm && -w /dev/kvm ]] || return 1
	local bios=$work/probe.bin rc=0
	python3 - "$bios" <<'PY' || return 1
import sys
b = bytearray(b'\xf4' * 65536)
code = bytes([0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE])
b[0xFFF0:0xFFF0 + len(code)] = code
open(sys.argv[1], 'wb').write(b)
PY
	timeout 10 qemu-system-x86_64 -M pc -accel kvm -cpu host -bios "$bios" \
		-display none -nodefaults -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
		>/dev/null 2>&1 || rc=$?
	[[ $rc == 99 ]] || return 1
	local key cache
	# KVM's usability is a property of the host: cache the verdict per host
	# kernel and QEMU binary (delete $JSNAP_CACHE/kvm-probe-* to re-probe).
	key=$(printf '%s %s %s' "$(uname -r)" "$(hostname)" "$(stat -c %Y "$(command -v qemu-system-x86_64)")" | sha256sum | cut -c1-12)
	cache=$JSNAP_CACHE/kvm-probe-$key
	if [[ -f $cache ]]; then
		[[ $(cat "$cache") == ok ]]
		return
	fi
	# Boot the kernel with no init: it must reach "Kernel panic" (no root)
	# quickly under a working KVM.
	local log=$work/kvm-probe.log
	timeout 30 qemu-system-x86_64 -M q35 -accel kvm -cpu host -m 512M \
		-kernel "$kernel" -append "console=ttyS0 panic=-1 root=/dev/nonexistent" \
		-display none -nodefaults -serial "file:$log" -no-reboot >/dev/null 2>&1 || true
	mkdir -p "$JSNAP_CACHE"
	if grep -q 'Kernel panic\|VFS: Unable to mount\|Run /sbin/init' "$log" 2>/dev/null; then
		echo ok >"$cache"; return 0
	fi
	echo bad >"$cache"; return 1
}
accel=${JSNAP_VM_ACCEL:-}
if [[ -z $accel ]]; then
	if kvm_works; then accel=kvm; else accel=tcg; fi
fi
# The debug kernel (JSNAP_KVARIANT=debug): poison and red-zone slab objects,
# sample allocations with KFENCE often.
[[ ${JSNAP_KVARIANT:-} == debug ]] && append="$append slub_debug=FZP kfence.sample_interval=5"
vng_args=(--run "$kernel" --memory "$memory" --cpus "$cpus" --append "root=/dev/root")
if [[ $accel == tcg ]]; then
	vng_args+=(--disable-kvm)
	echo "vm.sh: accelerator: TCG (no working KVM)" >&2
else
	echo "vm.sh: accelerator: KVM" >&2
fi
[[ ${JSNAP_VM_VERBOSE:-0} == 1 ]] && vng_args+=(--verbose)

# ---- pmem (emulated NVDIMM, virtio-pmem) ------------------------------------------
# backing_file SPEC DEFAULT OPTION: "SIZE[:FILE]" -> "BYTES FILE" (file
# created sparse, or grown, to SIZE)
backing_file() {
	local spec=$1 def=$2 opt=$3 size file bytes fsize
	size=${spec%%:*}
	file=
	[[ $spec == *:* ]] && file=${spec#*:}
	bytes=$(to_bytes "$size")
	# (the usable size of both devices must be a multiple of 2 MiB)
	(( bytes > 0 && bytes % (2 << 20) == 0 )) || die "$opt size must be a multiple of 2M"
	[[ -n $file ]] || file=$def
	if [[ ! -e $file ]]; then
		truncate -s "$bytes" "$file" || die "cannot create $file"
	fi
	fsize=$(stat -c %s "$file")
	(( fsize >= bytes )) || truncate -s "$bytes" "$file"
	echo "$bytes $file"
}
hotplug_bytes=0
hotplug_slots=0
pmem_opts=()
if [[ -n $pmem ]]; then
	read -r pbytes pfile < <(backing_file "$pmem" "$work/pmem.img" --pmem) || exit 125
	[[ -n $pfile ]] || exit 125
	pmem_opts+=(-object "memory-backend-file,id=nv0,share=on,mem-path=$pfile,size=$pbytes"
		-device "nvdimm,memdev=nv0,id=nvdimm0")
	hotplug_bytes=$((hotplug_bytes + pbytes))
	hotplug_slots=$((hotplug_slots + 1))
	qopts+=(-machine nvdimm=on)
	guest_env+=("JSNAP_VM_PMEM=1")
fi
if [[ -n $vpmem ]]; then
	read -r vbytes vfile < <(backing_file "$vpmem" "$work/vpmem.img" --virtio-pmem) || exit 125
	[[ -n $vfile ]] || exit 125
	pmem_opts+=(-object "memory-backend-file,id=vpmem0,share=on,mem-path=$vfile,size=$vbytes"
		-device "virtio-pmem-pci,memdev=vpmem0,id=vpm0")
	hotplug_bytes=$((hotplug_bytes + vbytes))
	hotplug_slots=$((hotplug_slots + 1))
	guest_env+=("JSNAP_VM_VPMEM=1")
fi
if (( hotplug_slots > 0 )); then
	# (QEMU/vng read a size without suffix as MiB)
	if [[ $memory =~ ^[0-9]+$ ]]; then mbytes=$((memory << 20)); else mbytes=$(to_bytes "$memory"); fi
	# maxmem must cover RAM + all hotpluggable memory (NVDIMM, virtio-pmem),
	# rounded up to 1 GiB; one slot each, plus one spare.
	maxmem=$(( (mbytes + hotplug_bytes + (1 << 30) - 1) >> 30 << 30 ))
	qopts+=(-m "$((mbytes >> 20))M,slots=$((hotplug_slots + 1)),maxmem=$((maxmem >> 20))M"
		"${pmem_opts[@]}")
fi

# ---- disks ---------------------------------------------------------------
names=()
i=0
for d in "${disks[@]}"; do
	IFS=: read -r -a f <<<"$d"
	name=${f[0]:-}
	size=${f[1]:-}
	file=
	bus=nvme
	for x in "${f[@]:2}"; do
		case $x in
		nvme | virtio) bus=$x ;;
		*) file=$x ;;
		esac
	done
	[[ $name =~ ^[A-Za-z0-9_-]{1,20}$ ]] || die "--disk: bad NAME '$name' (1-20 of [A-Za-z0-9_-])"
	bytes=$(to_bytes "$size")
	[[ -n $file ]] || file=$work/disk-$name.img
	if [[ ! -e $file ]]; then
		truncate -s "$bytes" "$file" || die "cannot create $file"
	fi
	drv="file=$file,if=none,id=jd$i,format=raw,cache=none,aio=threads"
	if [[ $bus == nvme ]]; then
		# dbcs=off: shadow doorbells make TCG NVMe crawl after ~30 s of I/O.
		qopts+=(-drive "$drv" -device "nvme,serial=$name,drive=jd$i,dbcs=off")
	else
		qopts+=(-drive "$drv" -device "virtio-blk-pci,serial=$name,drive=jd$i")
	fi
	names+=("$name")
	i=$((i + 1))
done
guest_env+=("JSNAP_VM_DISKS=${names[*]}")

# ---- private network between two guests (loopback only) ----------------------
# One virtio-net NIC on a QEMU "stream" netdev: a TCP connection between the
# two QEMU processes on 127.0.0.1 carrying the Ethernet frames.  vng adds
# "-net none" (no default NIC); nothing else is attached.
if [[ -n $net_role ]]; then
	if [[ $net_role == listen ]]; then
		net_mac=52:54:00:6a:73:01
		qopts+=(-netdev "stream,id=jsnet0,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port=$net_port")
	else
		net_mac=52:54:00:6a:73:02
		qopts+=(-netdev "stream,id=jsnet0,server=off,reconnect-ms=500,addr.type=inet,addr.host=127.0.0.1,addr.port=$net_port")
	fi
	qopts+=(-device "virtio-net-pci,netdev=jsnet0,mac=$net_mac")
	guest_env+=("JSNAP_VM_NET_MAC=$net_mac" "JSNAP_VM_NET_ROLE=$net_role")
fi

# ---- console capture -------------------------------------------------------
# A virtio console (hvc0) logs every kernel message to a host file, so that
# a panic or a killed VM still leaves a log behind.  (A second UART would
# not do: the 8250 console binds to one port only, and vng's ttyS0 goes to
# /dev/null unless --verbose.)
qopts+=(-chardev "file,id=jsnapcon,path=$work/console.log"
	-device virtio-serial-pci,id=jsnapvser -device virtconsole,chardev=jsnapcon,bus=jsnapvser.0
	-pidfile "$work/qemu.pid")
append="$append console=hvc0 ignore_loglevel"

# ---- what the guest runs ---------------------------------------------------
module=${JSNAP_MODULE:-$JSNAP_TOP/dm-jsnap.ko}
# fio needs SysV shm, which the test kernel may lack: see qemu/shm-shim.sh
if shim=$("$here/shm-shim.sh" 2>/dev/null); then
	guest_env+=("JSNAP_SHM_SHIM=$shim")
else
	echo "vm.sh: warning: could not build the SysV shm shim (no gcc?); fio may fail in the guest" >&2
fi
{
	printf 'export JSNAP_TOP=%q\n' "$JSNAP_TOP"
	printf 'export JSNAP_MODULE=%q\n' "$module"
	printf 'export JSNAP_VM_OUT=%q\n' "$work/out"
	printf 'export JSNAP_VM_CWD=%q\n' "$PWD"
	for e in "${guest_env[@]}"; do printf 'export %q\n' "$e"; done
	for e in JSNAP_VM_VERBOSE JSNAP_TEST_FILTER JSNAP_TEST_VERBOSE JSNAP_TEST_TIMEOUT JSNAP_FAULT_MODULE JSNAP_REQUIRE_FAULT FAULT_CASES FAULT_HOLD_MS JSNAP_STRESS_SECS JSNAP_FUZZ_SEED JSNAP_FUZZ_CASES; do
		[[ -n ${!e:-} ]] && printf 'export %s=%q\n' "$e" "${!e}"
	done
} >"$work/env.sh"
printf '%q ' "$@" >"$work/cmd"
echo >>"$work/cmd"

# (--opt=value: argparse would take a value starting with '-' for an option)
vng_args+=("--rwdir=$work" "--append=${append# }")
for d in "${rwdirs[@]}"; do vng_args+=("--rwdir=$d"); done
vng_args+=("--qemu-opts=$(printf '%q ' "${qopts[@]}")")
vng_args+=("--exec=bash $(printf '%q' "$here/guest-init.sh") $(printf '%q' "$work")")

# ---- run, with watchdog ----------------------------------------------------
# QEMU opens the guest stdout/stderr chardevs as files (/proc/self/fd/N,
# O_TRUNC): if our stdout/stderr are regular files it would truncate them.
# Give it pipes instead.
mkfifo "$work/stdout.fifo" "$work/stderr.fifo"
cat "$work/stdout.fifo" &
cat1=$!
cat "$work/stderr.fifo" >&2 &
cat2=$!
t0=$(date +%s)
vng "${vng_args[@]}" </dev/null >"$work/stdout.fifo" 2>"$work/stderr.fifo" &
vpid=$!
killed=
kill_qemu() {
	local qp
	qp=$(cat "$work/qemu.pid" 2>/dev/null || true)
	if [[ -n $qp ]] && kill -0 "$qp" 2>/dev/null; then
		kill -KILL "$qp" 2>/dev/null || true
	else
		kill -KILL "$vpid" 2>/dev/null || true
	fi
}
# vm.sh itself interrupted: do not leave QEMU behind
trap 'kill_qemu; exit 143' TERM INT HUP
started_at=
while kill -0 "$vpid" 2>/dev/null; do
	now=$(date +%s)
	if [[ -z $started_at && -e $work/out/started ]]; then
		started_at=$now
		echo "vm.sh: guest booted in $((now - t0)) s" >&2
	fi
	if [[ -n $kill_after && -n $started_at ]] && (( now - started_at >= kill_after )); then
		echo "vm.sh: --kill-after $kill_after: SIGKILL to QEMU" >&2
		killed=137; kill_qemu; break
	fi
	if (( now - t0 >= timeout_s )); then
		echo "vm.sh: --timeout $timeout_s expired: killing QEMU" >&2
		killed=124; kill_qemu; break
	fi
	sleep 0.3
done
vrc=0
wait "$vpid" || vrc=$?
# the readers end when the last writer (QEMU, possibly killed) is gone
wait "$cat1" "$cat2" 2>/dev/null || true
if [[ -z $started_at && -e $work/out/started ]]; then
	echo "vm.sh: guest booted in $(( $(stat -c %Y "$work/out/started") - t0 )) s" >&2
fi
echo "vm.sh: VM ran $(( $(date +%s) - t0 )) s" >&2

[[ -n ${JSNAP_VM_CONSOLE:-} ]] && cp "$work/console.log" "$JSNAP_VM_CONSOLE" 2>/dev/null || true
log=$work/out/dmesg
[[ -s $log ]] || log=$work/console.log
[[ -n ${JSNAP_VM_DMESG:-} ]] && cp "$log" "$JSNAP_VM_DMESG" 2>/dev/null || true

if [[ -n $killed ]]; then
	exit "$killed"
fi

rc=$vrc
if [[ -f $work/out/rc ]]; then
	rc=$(cat "$work/out/rc")
elif [[ -f $work/out/setup-failed ]]; then
	rc=125
else
	echo "vm.sh: guest did not report an exit code (crash/panic?); vng returned $vrc" >&2
	rc=255
fi

# ---- splat scan --------------------------------------------------------------
splat_re='BUG|WARNING|Oops|KASAN|refcount|lockdep|general protection|Call Trace'
# (boot banners of the debug kernel that merely mention the checkers)
benign_re='RCU lockdep checking is enabled'
splats=$(grep -aE "$splat_re" "$log" 2>/dev/null | grep -avE "$benign_re" || true)
if [[ -n $splats && -n ${JSNAP_VM_SPLAT_IGNORE:-} ]]; then
	splats=$(grep -avE "$JSNAP_VM_SPLAT_IGNORE" <<<"$splats" || true)
fi
if [[ -n $splats ]]; then
	echo "vm.sh: kernel splat(s) in the guest log:" >&2
	sed 's/^/vm.sh:   /' <<<"$splats" >&2
	if [[ ${JSNAP_VM_ALLOW_SPLATS:-0} != 1 ]]; then
		rc=99
	fi
fi
exit "$rc"
