# shellcheck shell=bash
# Fs scenario, guest part: one boot.
#   guest.sh fs init|cut|final ROUND SEED SNAPSTEP WAT PCUT [FEATURE ARGS...]
# init: format the journal, mkfs.ext4 on it.  cut/final: replay, mount
# (ext4 journal replay), umount, e2fsck -fn, mount, check every file against
# the ack log (fsw.py verify), and the snapshot the log expects (active if
# `snapshot` returned before the cut: e2fsck -fn on its view, mounted
# read-only it holds exactly the files listed at the freeze).  final: drain,
# and production read directly must be clean and hold the same files.
# init/cut then run the file workload of round ROUND (fsw.py round) from
# WAT s after the start until the power is cut (PCUT > 0: at the PCUT-th
# pmem fence of the fault module, shadow pmem: PC_PMEM_CUT is set too).
mode=$1 round=$2 seed=$3 snapstep=$4 wat=$5 pcut=$6
shift 6
P=/dev/disk/jsnap/prod S=/dev/disk/jsnap/store J=/dev/pmem0 ACK=/dev/disk/jsnap/acklog
FSW=(python3 "$here/fsw.py")
O=/tmp/pcfs.$$ M=/tmp/pcfs.$$/mnt V=/tmp/pcfs.$$/view
mkdir -p "$M" "$V" "$O"
PFX="powercut-fs round $round: "
field() { jkey js "$1"; }
fsck_clean() { # fsck_clean DEV WHAT: e2fsck -fn must find nothing
	local out rc
	out=$(e2fsck -fn "$1" 2>&1)
	rc=$?
	if [[ $rc == 0 ]]; then ok "e2fsck -fn clean: $2"; else
		notok "e2fsck -fn clean: $2 -- exit $rc"
		grep -v '^e2fsck [0-9]' <<<"$out" | head -n 12 | sed 's/^/#   /'
	fi
}
LEN=$(blockdev --getsz "$P")
table() { local t="0 $LEN jsnap $P $J $S 64"; [[ $# -gt 0 ]] && t="$t $# $*"; echo "$t"; }

pc_insmod
if [[ $mode == init ]]; then
	dm_create js "$(table format "$@")" >/dev/null || { notok "create (format)"; exit 1; }
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/js || { notok "mkfs.ext4"; exit 1; }
	mount /dev/mapper/js "$M" || { notok "mount"; exit 1; }
	echo '{}' >"$O/state.json" && echo '{"need": "none", "files": null}' >"$O/snap.json"
else
	if dm_create js "$(table "$@")" >/dev/null; then ok "replay"; else
		notok "replay -- $(dmesg | grep jsnap: | tail -n 3 | tr '\n' ' ')"
		exit 1
	fi
	[[ $(field state) == ok ]] && ok "state ok" || notok "state ok -- $(field state)"
	mount /dev/mapper/js "$M" && ok "mount (ext4 journal replay)" || { notok "mount (ext4 journal replay)"; exit 1; }
	umount "$M" || notok "umount"
	fsck_clean /dev/mapper/js "production after the cut"
	mount /dev/mapper/js "$M" || { notok "mount again"; exit 1; }
	"${FSW[@]}" verify "$ACK" "$round" "$M" "$O"
	need=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["need"])' "$O/snap.json")
	st=$(field snapshot)
	echo "# snapshot=$st, expected: $need"
	if [[ $st == invalid || ($need == must && $st != active) || ($need == none && $st != none) ]]; then
		notok "snapshot as recorded -- snapshot=$st, the ack log says $need"
	elif [[ $st == active ]]; then
		ok "snapshot active ($need)"
		if dm_create v "0 $LEN jsnap-view /dev/mapper/js ro" >/dev/null; then
			fsck_clean /dev/mapper/v "snapshot view"
			if mount -o ro,noload /dev/mapper/v "$V"; then
				"${FSW[@]}" same "$O/snap.json" "$V" "round $round: snapshot view"
				umount "$V"
			else
				notok "mount the snapshot view read-only"
			fi
			dm_remove v || notok "remove the view"
		else
			notok "create the snapshot view"
		fi
	else
		ok "no snapshot ($need): snapshot=$st"
	fi
fi
if [[ $mode == final ]]; then
	dmsetup message js 0 drain && ok "drain" || notok "drain"
	umount "$M" || notok "umount"
	[[ $(field snapshot) == active ]] && dmsetup message js 0 drop
	dm_remove js || notok "remove the jsnap device"
	fsck_clean "$P" "production read directly"
	if mount -o ro "$P" "$M"; then
		"${FSW[@]}" same "$O/state.json" "$M" "round $round: production read directly"
		umount "$M"
	else
		notok "mount production read directly"
	fi
	rmmod dm_jsnap && ok "rmmod"
	exit 0
fi
"${FSW[@]}" round "$ACK" "$round" "$M" "$O" "$seed" "$snapstep" "$T0" "$wat" "$pcut" js
notok "the workload returned ($?)"
