#!/usr/bin/env bash
# 22-async-dax: a journal on asynchronous DAX (virtio-pmem: CPU cache
# flushes do not make data durable, the host must be asked) cannot give the
# durability of DESIGN.md §2.3, so the table is refused, with a reason in
# the log ("Asynchronous DAX"), and nothing is written to the device.
# tests/run-guest.sh gives the VM a 64M virtio-pmem ($VPMEM).
. "$(dirname "$0")/lib.sh"
cleanup_dm

LEN=$((16 * 2048))
if [[ -z $VPMEM || ! -b $VPMEM ]]; then
	fail "virtio-pmem device present" "VPMEM='$VPMEM' (qemu/vm.sh --virtio-pmem)"
	finish
fi
b=$(basename "$VPMEM")
path=$(readlink -f "/sys/block/$b/device")
check_match "$VPMEM is a virtio-pmem device" "virtio" "$path"
note "$VPMEM: $path, dax=$(cat "/sys/block/$b/queue/dax" 2>/dev/null)"
if [[ $(cat "/sys/block/$b/queue/dax" 2>/dev/null) == 1 ]]; then ok "$VPMEM supports DAX (fsdax)"; else
	fail "$VPMEM supports DAX (fsdax)" "queue/dax=$(cat "/sys/block/$b/queue/dax" 2>/dev/null)"
fi
check_eq "PMEM is not the virtio-pmem" "" "$([[ $(readlink -f "$PMEM") == $(readlink -f "$VPMEM") ]] && echo same)"

# refused NAME TABLE: the table is refused, "Asynchronous DAX" is logged,
# the device is unchanged
refused() {
	local name=$1 table=$2 before after rc=0
	before=$(dev_sum "$VPMEM")
	dmesg_mark
	dmsetup create ad --table "$table" >/dev/null 2>&1 || rc=$?
	dm_mknodes
	if [[ $rc != 0 ]]; then ok "$name: refused"; else
		fail "$name: refused" "created: $(dmsetup table ad)"
		timeout 60 dmsetup remove ad >/dev/null 2>&1 || dmsetup remove --force ad >/dev/null 2>&1
		dm_mknodes
	fi
	if dmesg_since_mark | grep -q 'Asynchronous DAX'; then ok "$name: 'Asynchronous DAX' logged"; else
		fail "$name: 'Asynchronous DAX' logged" "$(dmesg_since_mark | grep -i jsnap | tail -n 2 | tr '\n' ' ')"
	fi
	after=$(dev_sum "$VPMEM")
	check_eq "$name: device unchanged" "$before" "$after"
}

# random content: a format would change it
dd if=/dev/urandom of="$VPMEM" bs=1M count=8 oflag=direct status=none
refused "with format" "0 $LEN jsnap $PROD $VPMEM $STORE $CHUNK 1 format"
refused "with format, no store" "0 $LEN jsnap $PROD $VPMEM - $CHUNK 2 format no_destage"
# an all-zero superblock area would be formatted without `format`
dd if=/dev/zero of="$VPMEM" bs=4096 count=2 oflag=direct status=none
refused "zero superblock area" "0 $LEN jsnap $PROD $VPMEM $STORE $CHUNK"
# the synchronous NVDIMM is still accepted
if dm_create ad "0 $LEN jsnap $PROD $PMEM $STORE $CHUNK 1 format" >/dev/null; then
	ok "synchronous DAX ($PMEM) accepted"
	dm_remove ad
else
	fail "synchronous DAX ($PMEM) accepted"
fi
no_splat_since_start "no kernel splat"
finish
