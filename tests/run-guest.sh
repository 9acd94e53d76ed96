#!/usr/bin/env bash
# Host side: boot ONE VM (pmem 256M file-backed, virtio-pmem 64M, NVMe
# prod:1G store:1G, virtio spare:64M), insmod $JSNAP_MODULE once, run every
# tests/guest/[0-9]*.sh in order, rmmod, and summarise.
#
#   tests/run-guest.sh [-k|--keep] [FILTER-REGEX]
#
# Env: JSNAP_MODULE (default $JSNAP_TOP/dm-jsnap.ko), JSNAP_VM_* (see
# qemu/vm.sh --help), JSNAP_TEST_TIMEOUT (per test, seconds, default 600).
# Prints a final line "guest: N passed, M failed"; exits non-zero if M>0,
# the VM failed, or a kernel splat was seen.  The run is compared with
# tests/manifest (scripts/manifest.sh): every guest test, each with its
# check count; with a FILTER only the selected tests are compared (it
# says so).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=0
if [[ ${1:-} == -k || ${1:-} == --keep ]]; then keep=1; shift; fi
if [[ -n ${1:-} ]]; then export JSNAP_TEST_FILTER=$1; fi
export JSNAP_MODULE=${JSNAP_MODULE:-$top/dm-jsnap.ko}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-guest.XXXXXX")
if [[ $keep == 1 ]]; then echo "run-guest: keeping $tmp" >&2; else trap 'rm -rf "$tmp"' EXIT; fi
log=$tmp/guest.log
export JSNAP_VM_DMESG=${JSNAP_VM_DMESG:-$tmp/dmesg.log}

set +e
"$top/qemu/vm.sh" --memory 2G --cpus 2 --timeout "${JSNAP_GUEST_TIMEOUT:-3600}" \
	--pmem "256M:$tmp/pmem.img" \
	--virtio-pmem "64M:$tmp/vpmem.img" \
	--disk "prod:1G:$tmp/prod.img:nvme" \
	--disk "store:1G:$tmp/store.img:nvme" \
	--disk "spare:64M:$tmp/spare.img:virtio" \
	-- bash "$top/tests/guest/runner.sh" 2>&1 | tee "$log"
vrc=${PIPESTATUS[0]}
set -e

if [[ $vrc != 0 ]]; then echo "not ok - vm: vm.sh exited $vrc" | tee -a "$log"; fi
scope=guest
if [[ -n ${JSNAP_TEST_FILTER:-} ]]; then
	scope=selected
	echo "# run-guest: subset run (filter '$JSNAP_TEST_FILTER'): the manifest is checked for the selected tests only"
fi
if [[ ${JSNAP_MANIFEST_CHECK:-1} != 0 ]]; then
	bash "$top/scripts/manifest.sh" check --scope "$scope" "$log" | tee -a "$log.manifest"
	cat "$log.manifest" >>"$log"
fi
npass=$(grep -c '^ok - ' "$log" || true)
nfail=$(grep -c '^not ok - ' "$log" || true)
if [[ $nfail != 0 ]]; then
	echo "# failed checks:"
	grep '^not ok - ' "$log" | sed 's/^/#   /'
fi
echo "guest: $npass passed, $nfail failed"
[[ $nfail == 0 && $vrc == 0 ]]
