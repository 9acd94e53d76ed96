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
	--verify_state_save=0 --output-format=terse --terse-version=3 >/tmp/fio.out
echo "fio: 32 MiB written and verified (crc32c)"
dmsetup status prod

say "take an instant snapshot and attach it as a read-only volume"
dd if=$dev bs=1M count=32 iflag=direct status=none | sha256sum | tee /tmp/snap.sum
dmsetup message prod 0 snapshot
dmsetup create snap --table "0 $len jsnap-view $dev ro"
dmsetup mknodes
dmsetup table snap
dmsetup status prod

say "overwrite production (copy-on-write happens at destage, not here)"
fio --name=over --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-64k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --randseed=7 \
	--verify_state_save=0 --output-format=terse >/dev/null && echo "overwrite + verify: ok"
dmsetup status prod

say "drain the journal to production, preserving snapshot chunks first"
dmsetup message prod 0 drain
dmsetup status prod
echo "snapshot volume checksum (must equal the one taken before the snapshot):"
dd if=/dev/mapper/snap bs=1M count=32 iflag=direct status=none | sha256sum | tee /tmp/view.sum
cmp -s /tmp/snap.sum /tmp/view.sum && echo "snapshot content: identical"

say "hydrate: turn the snapshot into a full copy in the store"
dmsetup message prod 0 hydrate on
for i in $(seq 1 300); do
	dmsetup status prod | grep -q hydration=done && break
	sleep 1
done
dmsetup status prod
dmsetup remove snap
dmsetup message prod 0 drop

say "remove and re-create (journal replay), verify again"
dmsetup remove prod
dmsetup create prod --table "0 $len jsnap $P $J $S 64"
dmsetup mknodes
fio --name=over --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-64k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_only=1 --randseed=7 \
	--verify_state_save=0 --output-format=terse >/dev/null && echo "verify after re-create: ok"
dmsetup table prod
dmsetup status prod

say "remove"
dmsetup remove prod
rmmod dm_jsnap
echo "done"
