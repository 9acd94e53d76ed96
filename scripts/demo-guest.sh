#!/usr/bin/env bash
# Guest side of `make run` (runs inside qemu/vm.sh).
set -euo pipefail
. "$JSNAP_TOP/qemu/guest-lib.sh"
P=/dev/disk/jsnap/prod S=/dev/disk/jsnap/store J=/dev/pmem0
say() { printf '\n### %s\n' "$*"; }

say "insmod $JSNAP_MODULE"
insmod "$JSNAP_MODULE"
dmesg | grep -E 'dm_jsnap: |# dm_jsnap_.*(pass|fail)' | sed 's/^\[[^]]*\] //'

len=$(( $(blockdev --getsz "$P") ))
say "dmsetup create prod: jsnap over $P, journal $J, store $S, 64-sector chunks"
dmsetup create prod --table "0 $len jsnap $P $J $S 64 1 format"
dmsetup mknodes
dev=/dev/mapper/prod
dmsetup table prod
dmsetup status prod

say "write 32 MiB of random data (fio, verified)"
fio --name=demo --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-128k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
	--output-format=terse --terse-version=3 >/tmp/fio.out
awk -F';' '{ printf "fio: wrote %s KiB at %s IOPS, verify ok\n", $48, $49 }' /tmp/fio.out
dmsetup status prod

say "drain the journal to production"
dmsetup message prod 0 drain
dmsetup status prod

say "remove and re-create (journal replay), verify again"
dmsetup remove prod
dmsetup create prod --table "0 $len jsnap $P $J $S 64"
dmsetup mknodes
fio --name=demo --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-128k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_only=1 --randrepeat=1 \
	--output-format=terse >/dev/null && echo "verify after re-create: ok"
dmsetup table prod
dmsetup status prod

say "remove"
dmsetup remove prod
rmmod dm_jsnap
echo "done"
