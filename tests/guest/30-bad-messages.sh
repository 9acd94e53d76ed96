#!/usr/bin/env bash
# 30-bad-messages: malformed messages fail (EINVAL), log a reason, and change
# nothing; `snapshot` is refused when there is no store.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

SL=32768 # 16 MiB
dm_create bm_p "0 $SL linear $PROD 0" >/dev/null || { fail "setup linear bm_p"; finish; }
dm_create bm_s "0 $SL linear $STORE 0" >/dev/null || { fail "setup linear bm_s"; finish; }
P=/dev/mapper/bm_p
S=/dev/mapper/bm_s

dmesg_mark
if dm_create bm "0 $SL jsnap $P $PMEM $S $CHUNK 1 format" >/dev/null; then ok "create"; else
	fail "create" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
	finish
fi
# some data in the journal so that status has non-trivial values
# and drain it, so that background destage cannot change status meanwhile
dd if=/dev/urandom of=/dev/mapper/bm bs=4k count=16 seek=3 oflag=direct status=none
check_cmd "drain" msg bm drain
table=$(dmsetup table bm)
st=$(jsnap_status bm)
note "status: $st"

bad_msg() {
	local name=$1 out rc=0
	shift
	dmesg_mark
	out=$(dmsetup message bm 0 "$@" 2>&1) || rc=$?
	if [[ $rc != 0 ]]; then ok "$name: refused"; else fail "$name: refused" "message '$*' succeeded"; fi
	if [[ $out == *"Invalid argument"* || $out == *"nvalid"* ]]; then ok "$name: EINVAL"; else
		fail "$name: EINVAL" "dmsetup said: $(tr '\n' ' ' <<<"$out")"
	fi
	if dmesg_since_mark | grep -q 'jsnap'; then ok "$name: reason logged"; else
		fail "$name: reason logged" "no jsnap line in the kernel log"
	fi
	check_eq "$name: status unchanged" "$st" "$(jsnap_status bm)"
	check_eq "$name: table unchanged" "$table" "$(dmsetup table bm)"
}

bad_msg "unknown message" frobnicate
bad_msg "hydrate maybe" hydrate maybe
bad_msg "hydrate without argument" hydrate
bad_msg "hydrate on extra" hydrate on extra
bad_msg "drain extra" drain extra
bad_msg "snapshot x" snapshot x
bad_msg "drop x" drop x
bad_msg "uppercase SNAPSHOT" SNAPSHOT
no_splat_since_mark "no splat after bad messages"

check_cmd "remove" dm_remove bm

# Journal-only device (store '-'): snapshot must be refused.
dmesg_mark
if dm_create bm "0 $SL jsnap $P $PMEM - $CHUNK 1 format" >/dev/null; then
	ok "create without store (-)"
	check_eq "table with '-' store" "0 $SL jsnap $(dev_mm "$P") $(dev_mm "$PMEM") - $CHUNK" "$(dmsetup table bm)"
	check_fails "snapshot refused without store" msg bm snapshot
	check_eq "snapshot=none without store" none "$(status_get bm snapshot)"
	check_cmd "drain without store" msg bm drain
	check_cmd "remove (no store)" dm_remove bm
else
	fail "create without store (-)" "$(dmesg_since_mark | grep jsnap | tail -n 3)"
fi
for d in bm_s bm_p; do dm_remove "$d" >/dev/null 2>&1 || fail "remove $d"; done
no_splat_since_start "no kernel splat"
finish
