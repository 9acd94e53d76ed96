#!/usr/bin/env bash
# `make run`: the main job.  Boots a VM with an emulated NVDIMM and two NVMe
# disks, loads dm-jsnap.ko with insmod, creates a jsnap device with jsnapctl,
# exercises it (see scripts/demo-guest.sh), prints `dmsetup table` and
# `dmsetup status` beside `jsnapctl status`, and removes everything cleanly.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/jsnap-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
exec "$top/qemu/vm.sh" --memory 2G --cpus 2 --timeout 900 \
	--pmem "256M:$tmp/pmem.img" \
	--disk "prod:512M:$tmp/prod.img:nvme" \
	--disk "store:512M:$tmp/store.img:nvme" \
	-- bash "$top/scripts/demo-guest.sh"
