#!/usr/bin/env bash
# 10-basic: create/table/status, fio verify through the target, re-create
# without format (data must persist), drain, and read production directly.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

LEN=$(dev_sectors "$PROD")
CHUNKS=$(( (LEN + CHUNK - 1) / CHUNK ))
DEV=/dev/mapper/jb

# fio job: 64 MiB of random writes, mixed 4k..128k blocks, crc32c verify.
# The same options (and seed) regenerate the same offsets for --verify_only.
fio_job() {
	local file=$1
	shift
	fio --name=basic --filename="$file" --direct=1 --ioengine=libaio --iodepth=8 \
		--rw=randwrite --bsrange=4k-128k --size=64M --offset=0 \
		--randseed=20240611 --verify=crc32c --verify_fatal=1 --verify_state_save=0 \
		--output-format=terse --minimal "$@" >"$SCRATCH/fio.out" 2>&1
}

STATUS_RE="^journal_used=[0-9]+ journal_size=[0-9]+ pending=[0-9]+ snapshot=none preserved=0 chunks=$CHUNKS hydration=off errors=0 state=ok( [a-z_]+=[^ ]+)*$"

dmesg_mark
if mk_jsnap jb "$LEN" format >/dev/null; then ok "create with 1 format"; else
	fail "create with 1 format"
	dmesg_since_mark | tail -n 5 | sed 's/^/#   /'
	finish
fi
# (DESIGN.md §2.1: devices as major:minor; `format` is not echoed once the
# journal has been formatted, and the feature count shrinks with it)
check_eq "table exact (format)" \
	"0 $LEN jsnap $(dev_mm "$PROD") $(dev_mm "$PMEM") $(dev_mm "$STORE") $CHUNK" "$(dmsetup table jb)"
st=$(jsnap_status jb)
note "status: $st"
check_match "status keys and values" "$STATUS_RE" "$st"
jsize=$(status_get jb journal_size)
pmem_bytes=$(blockdev --getsize64 "$PMEM")
if [[ $jsize =~ ^[0-9]+$ ]] && (( jsize > 0 && jsize <= pmem_bytes )); then
	ok "journal_size within pmem ($jsize <= $pmem_bytes)"
else
	fail "journal_size within pmem" "journal_size=$jsize pmem=$pmem_bytes"
fi
check_eq "size of the target" "$LEN" "$(dev_sectors $DEV)"

if fio_job "$DEV"; then ok "fio randwrite+verify 64M through jsnap"; else
	fail "fio randwrite+verify 64M through jsnap"
	tail -n 20 "$SCRATCH/fio.out" | sed 's/^/#   /'
fi
check_match "status after I/O" "$STATUS_RE" "$(jsnap_status jb)"
check_cmd "remove (data possibly still in journal)" dm_remove jb

# Re-create without format: the journal (and its data) must be found again.
dmesg_mark
if mk_jsnap jb "$LEN" >/dev/null; then ok "re-create without format"; else
	fail "re-create without format"
	dmesg_since_mark | tail -n 5 | sed 's/^/#   /'
	finish
fi
check_eq "table exact (no features)" \
	"0 $LEN jsnap $(dev_mm "$PROD") $(dev_mm "$PMEM") $(dev_mm "$STORE") $CHUNK" "$(dmsetup table jb)"
if fio_job "$DEV" --verify_only; then ok "fio verify_only after re-create"; else
	fail "fio verify_only after re-create"
	tail -n 20 "$SCRATCH/fio.out" | sed 's/^/#   /'
fi
check_cmd "message drain" msg jb drain
check_eq "pending=0 after drain" 0 "$(status_get jb pending)"
check_match "status after drain" "$STATUS_RE" "$(jsnap_status jb)"
if fio_job "$DEV" --verify_only; then ok "fio verify_only after drain"; else
	fail "fio verify_only after drain"
	tail -n 20 "$SCRATCH/fio.out" | sed 's/^/#   /'
fi
check_cmd "remove after drain" dm_remove jb

# Drained data must be on production at the same offsets.
if fio_job "$PROD" --verify_only; then ok "production holds the data after drain+remove"; else
	fail "production holds the data after drain+remove"
	tail -n 20 "$SCRATCH/fio.out" | sed 's/^/#   /'
fi
no_splat_since_start "no kernel splat"
finish
