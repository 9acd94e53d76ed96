#!/usr/bin/env bash
# Guest side of `make run` (runs inside qemu/vm.sh): the devices are driven
# with jsnapctl (tools/jsnapctl); `dmsetup table`/`status` are printed
# alongside for comparison.
set -euo pipefail
. "$JSNAP_TOP/qemu/guest-lib.sh"
P=/dev/disk/jsnap/prod S=/dev/disk/jsnap/store PMEM=/dev/pmem0
CTL=$JSNAP_TOP/tools/jsnapctl/target/release/jsnapctl
say() { printf '\n### %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
[ -x "$CTL" ] || { echo "demo: $CTL is not built (make jsnapctl)" >&2; exit 1; }
# (from the guest's tmpfs: quicker to start than from the host's file system)
cp "$CTL" /tmp/jsnapctl && CTL=/tmp/jsnapctl
jsnapctl() { printf '$ jsnapctl %s\n' "$*"; "$CTL" "$@"; }

say "insmod $JSNAP_MODULE"
insmod "$JSNAP_MODULE"
dmesg | grep -E 'dm_jsnap: |# dm_jsnap_.*(pass|fail)' | sed 's/^\[[^]]*\] //'

say "create prod: jsnap over $P, journal $PMEM, store $S, 64-sector chunks"
jsnapctl create prod --prod "$P" --journal "$PMEM" --store "$S" --chunk 64 --format
dev=/dev/mapper/prod
run dmsetup table prod
jsnapctl status prod

say "write 32 MiB of random data (fio, verified)"
fio --name=demo --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-128k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=1 \
	--verify_state_save=0 --output-format=terse --terse-version=3 >/tmp/fio.out
echo "fio: 32 MiB written and verified (crc32c)"
jsnapctl status prod

say "take an instant snapshot and attach it as a read-only volume"
dd if=$dev bs=1M count=32 iflag=direct status=none | sha256sum | tee /tmp/snap.sum
jsnapctl snapshot prod
jsnapctl view prod snap ro
run dmsetup table snap
jsnapctl status snap

say "overwrite production (copy-on-write happens at destage, not here)"
fio --name=over --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-64k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 --randseed=7 \
	--verify_state_save=0 --output-format=terse >/dev/null && echo "overwrite + verify: ok"
jsnapctl status prod
say "changed-block tracking: the chunks written since the snapshot (what an incremental backup copies)"
jsnapctl changed prod | head -n 6

say "drain the journal to production, preserving snapshot chunks first"
jsnapctl drain prod --wait
echo "snapshot volume checksum (must equal the one taken before the snapshot):"
dd if=/dev/mapper/snap bs=1M count=32 iflag=direct status=none | sha256sum | tee /tmp/view.sum
cmp -s /tmp/snap.sum /tmp/view.sum && echo "snapshot content: identical"

say "hydrate: turn the snapshot into a full copy in the store"
jsnapctl hydrate prod on --wait --timeout 300
jsnapctl status prod --json
run dmsetup status prod
jsnapctl remove snap
jsnapctl drop prod

say "remove and re-create (journal replay), verify again"
jsnapctl remove prod
jsnapctl create prod --prod "$P" --journal "$PMEM" --store "$S" --chunk 64
fio --name=over --filename=$dev --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-64k \
	--size=32M --iodepth=16 --verify=crc32c --verify_fatal=1 --verify_only=1 --randseed=7 \
	--verify_state_save=0 --output-format=terse >/dev/null && echo "verify after re-create: ok"
run dmsetup table prod
jsnapctl status prod

say "remove"
jsnapctl remove prod
rmmod dm_jsnap
echo "done"
