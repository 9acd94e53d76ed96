#!/usr/bin/env bash
# A view while the base volume is mounted (DESIGN.md §2.2): a filesystem on
# the jsnap device stays mounted and busy; `fsfreeze -f`, `snapshot`,
# `fsfreeze -u`, then - while a writer keeps changing the mounted origin -
# a ro view is created, checked with the filesystem's own checker and
# mounted read-only elsewhere: every file must have its frozen content.
# Done with ext4 and with XFS (XFS: the checker runs after log recovery on
# a rw view, because a frozen XFS image always has a dirty log).
. "$(dirname "$0")/lib.sh"
cleanup_dm

MNT=$SCRATCH/mnt   # the origin (jsnap device)
VMNT=$SCRATCH/vmnt # the view
mkdir -p "$MNT" "$VMNT"
STOP=$SCRATCH/stop

# hashes DIR > list: sha256 of every regular file, by path
hashes() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }

# populate DIR: files of various sizes, some in subdirectories
populate() {
	local d=$1 i
	mkdir -p "$d/sub/deeper"
	for ((i = 0; i < 24; i++)); do
		head -c $(((RANDOM % 512 + 1) * 1024 + RANDOM % 4096)) /dev/urandom >"$d/f$i"
	done
	for ((i = 0; i < 8; i++)); do head -c $((i * 70000 + 17)) /dev/urandom >"$d/sub/s$i"; done
	head -c $((6 << 20)) /dev/urandom >"$d/sub/deeper/big"
	: >"$d/empty"
}

# fsck_ok NAME CMD...: CMD (a checker) exits 0; otherwise its findings
# (progress lines left out) are shown
fsck_ok() {
	local name=$1 out rc=0
	shift
	out=$(timeout 120 "$@" 2>&1) || rc=$?
	if [[ $rc == 0 ]]; then ok "$name"; else
		fail "$name" "rc=$rc: $*"
		grep -vE '^[[:space:]]+- |^Phase [0-9]|^[[:space:]]*$' <<<"$out" | head -n 30 | sed 's/^/#   /'
	fi
}

# same_files NAME: the files under $VMNT are the frozen ones, with the
# frozen content
same_files() {
	hashes "$VMNT" >"$SCRATCH/view.sha"
	check_eq "$1: the frozen file list" "$(cut -c67- "$SCRATCH/frozen.sha" | tr '\n' ' ')" \
		"$(cut -c67- "$SCRATCH/view.sha" | tr '\n' ' ')"
	check_eq "$1: files have the frozen sha256" "$(sha256sum <"$SCRATCH/frozen.sha")" \
		"$(sha256sum <"$SCRATCH/view.sha")"
}

# writer DIR: keeps overwriting, appending, creating and deleting files on
# the mounted origin until $STOP exists
writer() {
	local d=$1 n=0
	while [[ ! -e $STOP ]]; do
		head -c $(((RANDOM % 256 + 1) * 1024)) /dev/urandom >"$d/f$((n % 24))" || return 1
		head -c 4096 /dev/urandom >>"$d/sub/s$((n % 8))" || return 1
		head -c $(((RANDOM % 64 + 1) * 1024)) /dev/urandom >"$d/new$n" || return 1
		((n % 3 == 0)) && rm -f "$d/new$((n - 3))"
		dd if=/dev/urandom of="$d/sub/deeper/big" bs=64k count=1 seek=$((RANDOM % 96)) \
			conv=notrunc status=none || return 1
		((n % 4 == 0)) && sync
		n=$((n + 1))
	done
	echo "$n" >"$SCRATCH/writer.n"
}

# one_fs FS LEN_MIB: the whole sequence on one filesystem type
one_fs() {
	local fs=$1 mib=$2 len dev view wpid fsck mopts
	len=$((mib * 2048))
	rm -f "$STOP"
	dev=$(mk_jsnap mnt0 $len format) || { fail "$fs: create jsnap"; return; }
	case $fs in
	ext4)
		check_cmd "$fs: mkfs" mkfs.ext4 -q -F -E nodiscard "$dev" || return
		fsck=(e2fsck -fn)
		mopts=ro,noload
		;;
	xfs)
		check_cmd "$fs: mkfs" mkfs.xfs -q -f -K "$dev" || return
		fsck=(xfs_repair -n)
		mopts=ro,norecovery,nouuid
		;;
	esac
	check_cmd "$fs: mount origin" mount "$dev" "$MNT" || return
	populate "$MNT"
	sync
	check_cmd "$fs: fsfreeze -f" timeout 60 fsfreeze -f "$MNT"
	hashes "$MNT" >"$SCRATCH/frozen.sha"
	check_cmd "$fs: snapshot while mounted and frozen" msg mnt0 snapshot
	check_cmd "$fs: fsfreeze -u" timeout 60 fsfreeze -u "$MNT"
	note "$fs: $(wc -l <"$SCRATCH/frozen.sha") files frozen"

	# The origin stays busy while the view is created, checked and read.
	writer "$MNT" &
	wpid=$!
	sleep 1
	if timeout 60 dmsetup create mntv --table "0 $len jsnap-view $dev ro" 2>"$SCRATCH/view.err" &&
		dm_mknodes && view=/dev/mapper/mntv && [[ -b $view ]]; then
		ok "$fs: create ro view while the origin is mounted and written"
		# (a frozen XFS keeps its log dirty - no unmount record - and its
		# lazy superblock counters stale, which `xfs_repair -n` reports on
		# any image of it: XFS is checked after log recovery, below)
		[[ $fs == ext4 ]] && fsck_ok "$fs: ${fsck[*]} on the ro view is clean" "${fsck[@]}" "$view"
		if check_cmd "$fs: mount the ro view ($mopts)" mount -o "$mopts" "$view" "$VMNT"; then
			same_files "$fs: ro view"
			check_cmd "$fs: umount ro view" umount "$VMNT"
		fi
		check_cmd "$fs: remove ro view" dm_remove mntv
	else
		fail "$fs: create ro view while the origin is mounted and written" "$(tr '\n' ' ' <"$SCRATCH/view.err")"
		dm_mknodes
	fi
	if [[ $fs == xfs ]]; then
		# A rw view (its writes reach the snapshot only): mounting it
		# replays the log; afterwards the checker must find it clean and
		# the files must still have their frozen content.
		if timeout 60 dmsetup create mntv --table "0 $len jsnap-view $dev rw" 2>"$SCRATCH/view.err" &&
			dm_mknodes && view=/dev/mapper/mntv && [[ -b $view ]]; then
			ok "$fs: create rw view while the origin is mounted and written"
			if check_cmd "$fs: mount the rw view (log recovery)" mount -o nouuid "$view" "$VMNT"; then
				same_files "$fs: rw view after log recovery"
				check_cmd "$fs: umount rw view" umount "$VMNT"
				fsck_ok "$fs: ${fsck[*]} on the recovered view is clean" "${fsck[@]}" "$view"
				if check_cmd "$fs: mount the recovered view ro" mount -o ro,nouuid "$view" "$VMNT"; then
					same_files "$fs: recovered view, re-mounted"
					umount "$VMNT"
				fi
			fi
			check_cmd "$fs: remove rw view" dm_remove mntv
		else
			fail "$fs: create rw view while the origin is mounted and written" "$(tr '\n' ' ' <"$SCRATCH/view.err")"
			dm_mknodes
		fi
	fi
	touch "$STOP"
	if wait $wpid; then ok "$fs: writer on the origin ($(cat "$SCRATCH/writer.n" 2>/dev/null) rounds)"; else
		fail "$fs: writer on the origin"
	fi
	# The origin holds exactly what the writer left (re-read from the
	# device after a remount, not from the page cache).
	sync
	hashes "$MNT" >"$SCRATCH/origin.sha"
	check_cmd "$fs: umount origin" umount "$MNT"
	fsck_ok "$fs: ${fsck[*]} on the origin is clean" "${fsck[@]}" "$dev"
	if check_cmd "$fs: re-mount origin" mount -o ro "$dev" "$MNT"; then
		check_eq "$fs: origin files = last written content" "$(sha256sum <"$SCRATCH/origin.sha")" \
			"$(hashes "$MNT" | sha256sum)"
		umount "$MNT"
	fi
	check_cmd "$fs: drop" msg mnt0 drop
	check_cmd "$fs: drain" timeout 120 dmsetup message mnt0 0 drain
	check_cmd "$fs: remove jsnap" dm_remove mnt0
}

for t in mkfs.ext4 e2fsck mkfs.xfs xfs_repair fsfreeze; do
	command -v $t >/dev/null || fail "tool $t installed" "not found (scripts/setup.sh installs e2fsprogs, xfsprogs)"
done
grep -qw ext4 /proc/filesystems || fail "kernel has ext4"
grep -qw xfs /proc/filesystems || fail "kernel has xfs" "CONFIG_XFS_FS=y missing"

one_fs ext4 256
mountpoint -q "$VMNT" && umount "$VMNT"
mountpoint -q "$MNT" && { fsfreeze -u "$MNT" 2>/dev/null; umount "$MNT"; }
cleanup_dm
if command -v mkfs.xfs >/dev/null && grep -qw xfs /proc/filesystems; then
	one_fs xfs 320 # (mkfs.xfs wants more than 300 MB)
	mountpoint -q "$VMNT" && umount "$VMNT"
	mountpoint -q "$MNT" && { fsfreeze -u "$MNT" 2>/dev/null; umount "$MNT"; }
fi
cleanup_dm
no_splat_since_start "no kernel splat"
finish
