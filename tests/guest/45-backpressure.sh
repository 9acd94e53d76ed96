#!/usr/bin/env bash
# Back-pressure (DESIGN.md §2.3): a sustained writer much larger than the
# journal never fails and never loses data.  The journal is a 4 MiB
# dm-linear slice of the pmem (DAX passes through dm-linear), the writer
# writes 48 MiB with fio verification, with destage thresholds high enough
# that writers regularly find the journal full and wait.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=48
LEN=$((MIB * 2048))
# 4 MiB of pmem at 160 MiB (away from the superblock area other tests check)
J=$(dm_create bpj "0 8192 linear $PMEM $((160 * 2048))") || { fail "journal slice"; finish; }
dd if=/dev/zero of="$J" bs=1M count=1 oflag=direct status=none
dev=$(dm_create bp "0 $LEN jsnap $PROD $J $STORE $CHUNK 5 format high_watermark 95 low_watermark 90") ||
	{ fail "create jsnap on a 4 MiB journal" "$(dmesg | grep jsnap: | tail -n 2)"; finish; }
ok "create jsnap on a 4 MiB journal"
size=$(status_get bp journal_size)
if ((size > 0 && size < 4 * 1048576)); then ok "small journal ($size bytes)"; else fail "small journal" "journal_size=$size"; fi

fio_args=(--name=bp --filename="$dev" --direct=1 --ioengine=libaio --rw=randwrite
	--bsrange=4k-256k --size=${MIB}M --iodepth=8 --verify=crc32c --verify_fatal=1
	--randseed=4242 --verify_state_save=0 --output-format=terse)
if out=$(fio "${fio_args[@]}" --do_verify=1 2>&1); then
	ok "fio randwrite ${MIB} MiB through a 4 MiB journal, verified"
else
	fail "fio randwrite through a full journal" "$(tail -n 5 <<<"$out")"
fi
written=$(status_get bp written_bytes)
destaged=$(status_get bp destaged_bytes)
if ((written >= MIB * 1048576 && destaged > 8 * 1048576)); then
	ok "journal refilled many times (written=$written destaged=$destaged)"
else
	fail "journal refilled" "written=$written destaged=$destaged"
fi
check_eq "errors=0" 0 "$(status_get bp errors)"
check_cmd "drain" msg bp drain
check_eq "pending=0" 0 "$(status_get bp pending)"
# Verify the production device directly (same offsets: the target starts at 0).
if out=$(fio "${fio_args[@]}" --filename="$PROD" --verify_only=1 2>&1); then
	ok "production verifies after drain"
else
	fail "production verifies after drain" "$(tail -n 5 <<<"$out")"
fi
dm_remove bp
dm_remove bpj
no_splat_since_start "no kernel splat"
finish
