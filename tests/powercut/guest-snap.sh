# shellcheck shell=bash
# Snap scenario, guest part (tests/powercut/guest.sh snap MODE EXPECTED ROUND):
# one boot.  MODE init: format the journal.  cut|final: replay; EXPECTED is
# none (no snapshot may exist), must:HASH (the `snapshot` message returned
# before the cut: it must be active) or maybe:HASH (sent, the cut came
# before it returned); a snapshot that exists must have its view, and the
# store alone once the resumed hydration is done, hash to HASH.  Then every
# boot but the final one starts a new round: writes, snapshot (hash
# printed before), hydration on every other round, and a writer that keeps
# destage (copy-on-write) busy until the host cuts the power.
#
# PC_PMEM_CUT=snapped:K|writer:K|cow:1: the fault module with shadow pmem,
# the power cut at the K-th fence after `snapshot` returned or the writer
# started, or at the first fence after a destage batch overwrote chunks it
# preserved (armed by the module itself).  PC_LW=1: the store behind
# dm-log-writes.
mode=$1 expect=$2 round=$3
PFX="powercut-snap round $round: "
P=/dev/disk/jsnap/prod S=/dev/disk/jsnap/store J=/dev/pmem0
MIB=32
LEN=$((MIB * 2048))
CHUNK=${PC_CHUNK:-64}
FEAT="4 high_watermark 5 low_watermark 1"
hash() { dd if="$1" bs=1M count=$MIB iflag=direct status=none | sha256sum | cut -c1-32; }
field() { jkey js "$1"; }

pcut=${PC_PMEM_CUT:-}
cow=()
[[ ${pcut%%:*} == cow ]] && cow=(fault_pmem_cut_how=2)
pc_insmod "${cow[@]}"
# the store behind dm-log-writes (the first dm device: the same device
# number in every boot, which the journal records)
[[ ${PC_LW:-0} == 1 ]] && lw_over pcslw "$S" S
arm_cut() { # arm_cut WHEN: set the fence countdown if this round cuts WHEN
	if [[ $1 == snapped && ${pcut%%:*} == cow ]]; then
		echo 1 >/sys/module/dm_jsnap/parameters/fault_cut_after_cow || notok "set fault_cut_after_cow"
	fi
	[[ ${pcut%%:*} == "$1" ]] || return 0
	arm_fence "${pcut#*:}"
}
if [[ $mode == init ]]; then
	dd if=/dev/urandom of="$P" bs=1M count=$MIB oflag=direct status=none
	dm_create js "0 $LEN jsnap $P $J $S $CHUNK 5 format high_watermark 5 low_watermark 1" >/dev/null || { notok "create"; exit 1; }
else
	if dm_create js "0 $LEN jsnap $P $J $S $CHUNK $FEAT" >/dev/null; then ok "replay"; else
		notok "replay -- $(dmesg | grep jsnap: | tail -n 3 | tr '\n' ' ')"
		exit 1
	fi
	st=$(field snapshot)
	need=${expect%%:*}
	expect=${expect#*:}
	# drop_snap: drop it (DROPPING/DROPPED tell the host how far it got)
	drop_snap() {
		echo "DROPPING"
		dmsetup message js 0 drop || notok "drop"
		echo "DROPPED"
	}
	if [[ $need == must && $st != active ]]; then
		notok "the snapshot taken before the cut survives -- snapshot=$st"
	fi
	if [[ $st == active ]]; then
		if [[ $need == none ]]; then
			notok "a snapshot exists but none was recorded"
		else
			dm_create v "0 $LEN jsnap-view /dev/mapper/js ro" >/dev/null || notok "view"
			h=$(hash /dev/mapper/v)
			[[ $h == "$expect" ]] && ok "snapshot view intact after the cut" || notok "snapshot view differs ($h != $expect)"
			if [[ $(field hydration) == running ]]; then
				for ((i = 0; i < 300; i++)); do
					[[ $(field hydration) == done ]] && break
					sleep 1
				done
				[[ $(field hydration) == done ]] && ok "resumed hydration done" ||
					notok "resumed hydration done -- $(dmsetup status js)"
			fi
			if [[ $(field hydration) == done ]]; then
				h=$(hash "$S")
				[[ $h == "$expect" ]] && ok "store alone = snapshot after hydration resumed" || notok "store differs after hydration ($h != $expect)"
			fi
			h=$(hash /dev/mapper/v)
			[[ $h == "$expect" ]] && ok "snapshot view intact after destage/hydration" || notok "view differs later ($h)"
			dm_remove v
		fi
		drop_snap
	elif [[ $st == invalid ]]; then
		notok "no snapshot may be invalid after a cut -- snapshot=$st"
		drop_snap
	elif [[ $need != must ]]; then
		ok "no snapshot ($need: the cut came before it returned, or before a drop returned): $st"
	fi
	[[ $(field state) == ok ]] && ok "state ok" || notok "state $(field state)"
fi
[[ $mode == final ]] && { dm_remove js; rmmod dm_jsnap && ok "rmmod"; exit 0; }
# New round.
for ((i = 0; i < 40; i++)); do
	dd if=/dev/urandom of=/dev/mapper/js bs=4k count=$((RANDOM % 16 + 1)) seek=$((RANDOM % (MIB * 256 - 16))) \
		oflag=direct status=none
done
h=$(hash /dev/mapper/js)
echo "SNAPHASH $h"
dmsetup message js 0 snapshot || { notok "snapshot"; exit 1; }
echo "SNAPPED"
arm_cut snapped
if ((round % 2)); then dmsetup message js 0 hydrate on; echo "HYDRATING"; fi
echo "WRITER"
arm_cut writer
fio --name=w --filename=/dev/mapper/js --direct=1 --ioengine=libaio --rw=randwrite --bs=4k-64k \
	--iodepth=8 --size=${MIB}M --time_based --runtime=600 --output=/dev/null >/dev/null 2>&1
