# shellcheck shell=bash
# Helpers for scripts running inside a qemu/vm.sh guest (no udev there).
#   . "$JSNAP_TOP/qemu/guest-lib.sh"

# dm_mknodes: make /dev/mapper/* match the kernel's dm devices.
dm_mknodes() {
	dmsetup mknodes >/dev/null 2>&1 || true
}

# dm_create NAME TABLE...: dmsetup create, then mknodes, then check that
# /dev/mapper/NAME is a block device (otherwise tools write to a regular
# file on devtmpfs).  Returns dmsetup's status; prints the device path.
dm_create() {
	local name=$1 rc=0
	shift
	# (drop libdevmapper's complaint about a kernel without SysV semaphores)
	dmsetup create "$name" --table "$*" 2> >(grep -v 'not configured for semaphores' >&2) || rc=$?
	if [[ $rc != 0 ]]; then
		return "$rc"
	fi
	dm_mknodes
	if [[ ! -b /dev/mapper/$name ]]; then
		echo "dm_create: /dev/mapper/$name is not a block device after mknodes" >&2
		return 1
	fi
	echo "/dev/mapper/$name"
}

# dm_create_lines NAME LINE...: like dm_create, for a table of several
# targets (one LINE each, e.g. "0 16 zero" "16 $LEN jsnap ...").
dm_create_lines() {
	local name=$1 rc=0
	shift
	printf '%s\n' "$@" | dmsetup create "$name" 2> >(grep -v 'not configured for semaphores' >&2) || rc=$?
	if [[ $rc != 0 ]]; then
		dm_mknodes
		return "$rc"
	fi
	dm_mknodes
	if [[ ! -b /dev/mapper/$name ]]; then
		echo "dm_create_lines: /dev/mapper/$name is not a block device after mknodes" >&2
		return 1
	fi
	echo "/dev/mapper/$name"
}

# dm_remove NAME: remove (retrying briefly while it is busy), then mknodes.
dm_remove() {
	local name=$1 _i
	for _i in 1 2 3 4 5; do
		if dmsetup remove "$name" 2>/dev/null; then
			dm_mknodes
			return 0
		fi
		sleep 0.2
	done
	dmsetup remove "$name"
	local rc=$?
	dm_mknodes
	return $rc
}

# bounded SECS CMD...: run CMD, but give up after SECS seconds even if it
# cannot be killed (a task stuck in the kernel in D state, which `timeout`
# would wait for): returns CMD's status, or 124 (CMD killed, possibly left
# behind).  CMD's stdout should not be a pipe someone waits on (a stuck
# task keeps it open): write to a file.
bounded() {
	local secs=$1 pid tpid done= rc
	shift
	"$@" &
	pid=$!
	sleep "$secs" >/dev/null 2>&1 &
	tpid=$!
	wait -n -p done "$pid" "$tpid"
	rc=$?
	if [[ $done == "$pid" ]]; then
		kill "$tpid" 2>/dev/null
		wait "$tpid" 2>/dev/null
		return $rc
	fi
	kill -KILL "$pid" 2>/dev/null
	disown "$pid" 2>/dev/null
	echo "# bounded: '$*' did not finish in ${secs} s (killed; it may stay stuck in the kernel)"
	return 124
}
