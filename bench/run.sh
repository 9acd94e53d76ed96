#!/usr/bin/env bash
# bench/run.sh — `make bench`: fio benchmarks of jsnap against the raw disk,
# dm-linear, dm-snapshot, dm-thin and dm-writecache, in ONE VM boot, on the
# same emulated media.  See bench/README.md.
#
#   bench/run.sh [--quick|--full]     (default --quick: about 10 min under TCG)
#   bench/run.sh --smoke              jsnap only, results in a temp dir, prints
#                                     TAP-like lines (part of `make check`)
#
# Results: bench/results/<UTC timestamp>/{results.json,results.md,*.png,raw/,
# dmesg.txt,vm.log}; the latest also as bench/results/latest.md and
# bench/results/latest-*.png.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
mode=quick
smoke=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) mode=quick ;;
	--full) mode=full ;;
	--smoke) mode=quick smoke=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../scripts/env.sh"
top=$JSNAP_TOP
module=${JSNAP_MODULE:-$top/dm-jsnap.ko}
[[ -f $KDIR/arch/x86/boot/bzImage ]] || { echo "bench: no kernel at $KDIR (run 'make setup' / 'make bench')" >&2; exit 1; }
[[ -f $module ]] || { echo "bench: no module $module (run 'make bench', which builds it)" >&2; exit 1; }

# Sizes (MiB).  prod holds the volume (first V MiB) and, for dm-thin, the
# pool's data (volume + its snapshot's copies); store holds the snapshot
# store / COW device and the thin metadata; pmem is the jsnap journal and the
# dm-writecache cache, smaller than the volume so that job e overflows it.
case $mode in
quick) V=256 PMEM=32 TIMEOUT=1200 ;;
full) V=1024 PMEM=256 TIMEOUT=5400 ;;
esac
PROD=$((2 * V + 64))
STORE=$((V + 64))

# ---- plotting tool: matplotlib in the project's venv -------------------------
py=python3
if [[ -x $VENV/bin/python ]]; then
	if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
		echo "bench: installing matplotlib into $VENV" >&2
		"$VENV/bin/pip" install -q matplotlib >&2 || echo "bench: matplotlib install failed; no plots" >&2
	fi
	py=$VENV/bin/python
fi

ts=$(date -u +%Y%m%dT%H%M%SZ)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-bench.XXXXXX")
if [[ $smoke == 1 ]]; then
	export BENCH_CONFIGS=jsnap BENCH_HYDRATE=0
	res=$tmp/results
else
	res=$here/results/$ts
fi
mkdir -p "$res"
pmemf=$(mktemp -u /dev/shm/jsnap-bench-pmem.XXXXXX)
kept=
cleanup() {
	rm -rf "$tmp" "$pmemf"
	[[ -n $kept && -d $kept ]] && rm -rf "$kept"
	return 0
}
trap cleanup EXIT

# Pre-allocate the disk files (a sparse file makes the first configuration
# pay the host's block allocation).
echo "bench: $mode mode; preparing media in $tmp (prod ${PROD} MiB, store ${STORE} MiB, pmem ${PMEM} MiB)" >&2
dd if=/dev/zero of="$tmp/prod.img" bs=1M count=$PROD conv=fsync status=none
dd if=/dev/zero of="$tmp/store.img" bs=1M count=$STORE conv=fsync status=none

load() { cut -d' ' -f1-3 /proc/loadavg; }
{
	echo "timestamp=$ts"
	echo "mode=$mode"
	echo "nproc=$(nproc)"
	echo "cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "mem=$(awk '/MemTotal/ {printf "%d MiB RAM", $2/1024}' /proc/meminfo)"
	echo "kernel=$(uname -r)"
	echo "qemu=$(qemu-system-x86_64 --version | head -n1)"
	echo "load_start=$(load)"
	echo "git=$(git -C "$top" describe --always --dirty 2>/dev/null || echo '?')"
} >"$tmp/hostfacts"
if awk -v n="$(nproc)" '{exit !($1 > n)}' /proc/loadavg; then
	echo "bench: warning: host load average $(load) exceeds $(nproc) CPUs; numbers will be noisy (the drift check will tell)" >&2
fi

# ---- the VM -------------------------------------------------------------------
export JSNAP_MODULE=$module
export JSNAP_VM_KEEP=1 # the guest's output directory is copied below, then removed
export JSNAP_VM_DMESG=$res/dmesg.txt
export JSNAP_VM_CONSOLE=$res/console.txt
t0=$(date +%s)
set +e
bash "$top/qemu/vm.sh" --memory 2G --cpus 2 --timeout $TIMEOUT \
	--pmem "${PMEM}M:$pmemf" \
	--disk "prod:${PROD}M:$tmp/prod.img:nvme" \
	--disk "store:${STORE}M:$tmp/store.img:nvme" \
	-- env BENCH_MODE=$mode ${BENCH_CONFIGS:+BENCH_CONFIGS="$BENCH_CONFIGS"} \
	${BENCH_JSNAP_FEATURES:+BENCH_JSNAP_FEATURES="$BENCH_JSNAP_FEATURES"} ${BENCH_HYDRATE_REPS:+BENCH_HYDRATE_REPS=$BENCH_HYDRATE_REPS} BENCH_HYDRATE=${BENCH_HYDRATE:-1} bash "$here/guest.sh" 2>&1 | tee "$res/vm.log"
vrc=${PIPESTATUS[0]}
set -e
echo "bench: VM exit code $vrc after $(( $(date +%s) - t0 )) s" >&2
kept=$(sed -n 's/^vm.sh: kept //p' "$res/vm.log" | tail -n1)
accel=$(sed -n 's/^vm.sh: accelerator: \([A-Z]*\).*/\1/p' "$res/vm.log" | head -n1)
{
	echo "accel=${accel:-?}"
	echo "vm_rc=$vrc"
	echo "wall_s=$(( $(date +%s) - t0 ))"
	echo "load_end=$(load)"
} >>"$tmp/hostfacts"
cp "$tmp/hostfacts" "$res/hostfacts.txt"
if [[ -z $kept || ! -d $kept/out/bench ]]; then
	echo "bench: no guest output (VM exit code $vrc); see $res/vm.log, $res/console.txt" >&2
	exit 1
fi
cp -r "$kept/out/bench" "$res/raw"

"$py" "$here/report.py" "$res/raw" "$res" "$res/hostfacts.txt"
if [[ $smoke == 1 ]]; then
	# Smoke test of the harness: job a on jsnap produced a number and the
	# device verified.  No timing thresholds.
	python3 - "$res/results.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])).get("configs", {}).get("jsnap", {})
iops = c.get("jobs", {}).get("a", {}).get("iops") or 0
print(("ok" if iops > 0 else "not ok") + " - bench smoke: jsnap job a reports IOPS (%.0f)" % iops)
res = c.get("result", "missing")
print(("ok" if res == "OK" else "not ok") + " - bench smoke: jsnap verified (result %s)" % res)
PY
	[[ $vrc == 0 ]] && echo "ok - bench smoke: VM exit 0" || echo "not ok - bench smoke: VM exit $vrc"
	exit 0
fi
cp "$res/results.md" "$here/results/latest.md"
for p in "$res"/*.png; do
	[[ -e $p ]] && cp "$p" "$here/results/latest-$(basename "$p")"
done
echo "bench: results in $res" >&2
case $vrc in
0) exit 0 ;;
99) echo "bench: kernel splat in the guest log (see $res/dmesg.txt)" >&2; exit 1 ;;
*) echo "bench: guest exit code $vrc" >&2; exit 1 ;;
esac
