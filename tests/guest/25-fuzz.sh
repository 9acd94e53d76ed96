#!/usr/bin/env bash
# 25-fuzz: grammar-based fuzzing of jsnap / jsnap-view table lines and of
# messages (issue 12 item 5).  The generator and the oracle are in fuzz.py
# (next to this file): it mutates valid lines and messages (wrong counts,
# huge / negative / overflowing numbers, repeated and unknown features,
# lying feature counts, every device argument swapped for another device —
# a partition, a dm device, a non-block file, a nonexistent path, pmem, the
# jsnap device itself, the same device twice —, very long and non-UTF-8
# tokens), messages in each state (no snapshot, snapshot, view open,
# suspended, during hydration, during drain) and to a view, and crafted
# journal superblocks (unsupported version, corrupt, foreign, another
# production device, relocated needed or not, another length / chunk size,
# store changed under a snapshot, journal too small).  Each refusal must log
# the reason the oracle predicts for that input (exact text), leave no dm
# device behind and write nothing anywhere: the block-layer write/discard
# counters of every disk (prod, store, spare, the partitioned loop disk,
# pmem) must not move across the case — a whole-device check stronger than a
# checksum (it sees a rewrite of the same bytes) and cheap enough to run per
# case, where checksumming the 2.3 GB of disks takes 150 s under TCG — and
# all of pmem (written by DAX stores, which no counter sees) is compared
# byte for byte with its saved image after each batch of cases (a mismatch
# replays the batch case by case).  Legal lines must come up and echo their
# table.  Messages during hydration and drain run on slices of prod/store,
# checked against models afterwards (spare and loop disk: whole-device
# checksums).
#
# Knobs (environment, passed into the guest by tests/run-guest.sh):
#   JSNAP_FUZZ_SEED=N    replay a run (the seed is printed first; default:
#                        a new random seed each run)
#   JSNAP_FUZZ_CASES=N   number of generated cases (default 400: 2/3 table
#                        lines, the rest messages and view lines in 5 states;
#                        about 0.4 s per case under TCG, each dmsetup call is
#                        slow there).  Thousands for a long run, with the
#                        runner's per-test limit raised, e.g.
#                        JSNAP_FUZZ_CASES=3000 JSNAP_TEST_TIMEOUT=7200
#                        tests/run-guest.sh '^25'
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
cleanup_dm

seed=${JSNAP_FUZZ_SEED:-$(((RANDOM << 15) | RANDOM))}
cases=${JSNAP_FUZZ_CASES:-400}
note "seed $seed, $cases cases (replay: JSNAP_FUZZ_SEED=$seed JSNAP_FUZZ_CASES=$cases)"

refcount() { awk '$1 == "dm_jsnap" { print $3 }' /proc/modules; }
rc0=$(refcount)
dm0=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }' | sort | tr '\n' ' ')

# Other devices to swap in: a dm device (linear over the spare disk), a
# 64 KiB DAX slice of pmem (a journal too small for anything), a real
# partition (loop device with an MBR), a regular file.
PSZ=$(dev_sectors "$PMEM")
dm_create fz_lin "0 98304 linear $SPARE 0" >/dev/null || { fail "setup: linear over the spare disk"; finish; }
dm_create fz_jt "0 128 linear $PMEM $((PSZ - 128))" >/dev/null || { fail "setup: linear over the end of pmem"; finish; }
img_dir=/dev/shm
[[ -d $img_dir ]] || img_dir=$SCRATCH
img=$img_dir/jsnap-fuzz-part.$$.img
truncate -s 40M "$img"
# MBR: one Linux partition (type 0x83) from sector 2048 to the end
python3 - "$img" <<'EOF' || fail "setup: partition table"
import struct, sys
with open(sys.argv[1], "r+b") as f:
    e = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, 40 * 2048 - 2048)
    f.seek(446); f.write(e); f.seek(510); f.write(b"\x55\xaa")
EOF
loop=$(losetup -P -f --show "$img") || { fail "setup: losetup -P"; finish; }
for _ in $(seq 50); do [[ -b ${loop}p1 ]] && break; sleep 0.1; done
[[ -b ${loop}p1 ]] || { fail "setup: partition ${loop}p1 appears"; losetup -d "$loop"; finish; }
# the write counters must count: I/O accounting on for every disk
for d in "$PROD" "$STORE" "$SPARE" "$loop" "$PMEM"; do
	q=/sys/class/block/$(basename "$(readlink -f "$d")")/queue/iostats
	[[ -w $q ]] && echo 1 >"$q"
	check_eq "setup: I/O accounting on for $d" 1 "$(cat "$q" 2>/dev/null)"
done
nbfile=$SCRATCH/not-a-block-device
head -c 1M /dev/urandom >"$nbfile"
ok "setup: dm-linear, pmem slice, partition ${loop}p1, regular file"

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
FUZZ_SEED=$seed FUZZ_CASES=$cases SCRATCH=$SCRATCH PROD=$PROD STORE=$STORE SPARE=$SPARE PMEM=$PMEM \
	PART=${loop}p1 LIN=/dev/mapper/fz_lin JTINY=/dev/mapper/fz_jt LOOPDEV=$loop NBFILE=$nbfile \
	TEST_NAME=$TEST_NAME "$PY" "$here/fuzz.py"
frc=$?
[[ $frc == 0 ]] && ok "fuzzer exit status" || fail "fuzzer exit status" "fuzz.py exited $frc (seed $seed)"

# whatever a case left behind is a failure (and is removed for the next test)
for d in fzc fzm fzv fzv2 fzr fzself; do
	if dmsetup info "$d" >/dev/null 2>&1; then
		fail "no fuzz device left: $d" "still exists"
		dmsetup remove --force "$d" >/dev/null 2>&1
	fi
done
dm_remove fz_jt || fail "remove fz_jt"
dm_remove fz_lin || fail "remove fz_lin"
losetup -d "$loop" || fail "losetup -d $loop"
rm -f "$img"
check_eq "no dm device left" "$dm0" "$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }' | sort | tr '\n' ' ')"
check_eq "dm_jsnap use count back to its baseline" "$rc0" "$(refcount)"
no_splat_since_start "no kernel splat"
finish
