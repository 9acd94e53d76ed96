#!/usr/bin/env bash
# 40-io-kinds: odd-sized sector-aligned writes, a 1 MiB write, overlapping
# and chunk-straddling writes, flush, FUA; exact read-back (cmp against a
# reference image) while the data is in the journal (no_destage), after
# drain, after remove (production read directly) and after re-create.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

SL=32768 # the target covers the first 16 MiB of prod
REFMIB=8 # the reference image covers the first 8 MiB
DEV=/dev/mapper/bi
REF=$SCRATCH/ref.img

dmesg_mark
if mk_jsnap bi "$SL" format no_destage >/dev/null; then ok "create with format no_destage"; else
	fail "create with format no_destage" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
	finish
fi
check_eq "table exact" "0 $SL jsnap $(dev_mm "$PROD") $(dev_mm "$PMEM") $(dev_mm "$STORE") $CHUNK 1 no_destage" \
	"$(dmsetup table bi)"

# No volatile cache: a write is durable when acknowledged, so the block
# layer must complete flushes without sending them (fdatasync costs
# nothing), although production, below, has a write-back cache.
queue_attr() { cat "/sys/dev/block/$(dev_mm "$1")/queue/$2" 2>&1; }
check_eq "production has a volatile write cache (the case that matters)" "write back" "$(queue_attr "$PROD" write_cache)"
check_eq "jsnap queue: no volatile write cache" "write through" "$(queue_attr $DEV write_cache)"
check_eq "jsnap queue: no FUA" "0" "$(queue_attr $DEV fua)"

# Reference = current content (whatever earlier tests left on production).
dd if=$DEV of="$REF" bs=1M count=$REFMIB iflag=direct status=none
check_eq "initial content matches production" "$(dev_sum "$PROD" $REFMIB)" "$(sum_stream <"$REF")"

# wr NAME SEEK_SECTORS COUNT_SECTORS [dd oflags]: random data to DEV and REF
wr() {
	local name=$1 seek=$2 count=$3 flags=${4:-direct} rc=0
	head -c $((count * 512)) /dev/urandom >"$SCRATCH/data"
	dd if="$SCRATCH/data" of=$DEV bs=512 seek="$seek" count="$count" oflag="$flags" status=none || rc=$?
	dd if="$SCRATCH/data" of="$REF" bs=512 seek="$seek" count="$count" conv=notrunc status=none
	if [[ $rc == 0 ]]; then ok "write $name"; else fail "write $name" "dd rc=$rc"; fi
}
# same_as_ref NAME DEVICE: whole reference range, plus a few odd reads
same_as_ref() {
	local name=$1 dev=$2 s c
	if cmp -s <(dd if="$dev" bs=1M count=$REFMIB iflag=direct status=none) "$REF"; then
		ok "$name: read-back exact (${REFMIB} MiB)"
	else
		fail "$name: read-back exact" "$(cmp <(dd if="$dev" bs=1M count=$REFMIB iflag=direct status=none) "$REF" 2>&1 | head -n1)"
	fi
	for sc in "14 5" "60 9" "6150 2050" "13 7"; do
		read -r s c <<<"$sc"
		if cmp -s <(read_range "$dev" "$s" "$c") <(dd if="$REF" bs=512 skip="$s" count="$c" status=none); then
			ok "$name: odd read $c sectors at $s"
		else
			fail "$name: odd read $c sectors at $s" "mismatch"
		fi
	done
	# buffered (page cache) read of a region
	blockdev --flushbufs "$dev" 2>/dev/null
	if cmp -s <(dd if="$dev" bs=4096 skip=0 count=64 status=none) <(head -c $((64 * 4096)) "$REF"); then
		ok "$name: buffered read"
	else fail "$name: buffered read" "mismatch"; fi
}

wr "7 sectors at 13 (odd size)" 13 7
wr "3 sectors at 15 (overlaps previous)" 15 3
wr "1 sector at 0" 0 1
wr "10 sectors at 60 (straddles chunk boundary)" 60 10
wr "1 MiB at sector 6147 (unaligned)" 6147 2048
wr "1 MiB at 4 MiB (aligned)" 8192 2048
wr "4 KiB inside the 1 MiB write" 8200 8
wr "FUA (direct,dsync) 3x4k at 12 KiB" 24 24 direct,dsync
if blockdev --flushbufs $DEV; then ok "flush (blockdev --flushbufs)"; else fail "flush (blockdev --flushbufs)"; fi
sync
wr "after flush, 1 sector at 127" 127 1
# buffered write + fsync through the page cache
head -c 8192 /dev/urandom >"$SCRATCH/data"
if dd if="$SCRATCH/data" of=$DEV bs=4096 seek=300 count=2 conv=fsync status=none; then
	ok "write buffered 8 KiB + fsync"
else fail "write buffered 8 KiB + fsync"; fi
dd if="$SCRATCH/data" of="$REF" bs=4096 seek=300 count=2 conv=notrunc status=none
blockdev --flushbufs $DEV

pend=$(status_get bi pending)
if [[ $pend =~ ^[0-9]+$ ]] && ((pend > 0)); then ok "data still in the journal (pending=$pend)"; else
	fail "data still in the journal" "pending='$pend' with no_destage"
fi
same_as_ref "from journal" $DEV

check_cmd "message drain" msg bi drain
check_eq "pending=0 after drain" 0 "$(status_get bi pending)"
same_as_ref "after drain" $DEV
check_cmd "remove" dm_remove bi
same_as_ref "production directly" "$PROD"

if mk_jsnap bi "$SL" >/dev/null; then ok "re-create without format"; else fail "re-create without format"; finish; fi
same_as_ref "after re-create" $DEV
check_cmd "remove again" dm_remove bi
no_splat_since_start "no kernel splat"
finish
