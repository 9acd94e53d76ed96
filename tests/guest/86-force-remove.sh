#!/usr/bin/env bash
# A forced remove of the jsnap device while a `mirror` view's writes wait
# for journal space (issue 10 item 13): every deferred bio completes.
#   jsnap (2 MiB journal) over a linear production device + snapshot +
#   mirror view, hydrated (view writes then go to the store and the
#   journal only); production then fails every I/O (its table becomes
#   `error`), so destage cannot free the journal: 4 MiB of view writes fill
#   it and the next one waits in jsnap's deferred list; `dmsetup remove
#   --force` of the jsnap device replaces its table
#   with `error` (the view holds it open), which destroys the jsnap target:
#   the waiting write must fail (EIO) instead of waiting forever, and the
#   view, then the jsnap device, are removed without hanging.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=8
LEN=$((MIB * 2048))
NAME=j86
P=force-remove
head -c $((MIB << 20)) /dev/urandom | dd of="$PROD" bs=1M oflag=direct status=none
dd if=/dev/zero of="$STORE" bs=1M count=$MIB oflag=direct status=none
if ! J=$(dm_create j86j "0 4096 linear $PMEM $((200 * 2048))") ||
	! PL=$(dm_create p86 "0 $LEN linear $PROD 0"); then
	fail "$P: small journal, linear production"
	cleanup_dm
	finish
fi
if ! dev=$(dm_create "$NAME" "$(jsnap_table $LEN "$PL" "$J" "$STORE" 64 format)"); then
	fail "$P: create jsnap"
	cleanup_dm
	finish
fi
ok "$P: create jsnap (2 MiB journal)"
check_cmd "$P: snapshot" msg "$NAME" snapshot
if ! view=$(dm_create v86 "0 $LEN jsnap-view $dev mirror"); then
	fail "$P: create mirror view"
	cleanup_dm
	finish
fi
ok "$P: create mirror view"
check_cmd "$P: hydrate on" msg "$NAME" hydrate on
if wait_hydrated "$NAME" 120; then ok "$P: hydrated"; else fail "$P: hydrated" "$(jsnap_status "$NAME")"; fi
if dmsetup suspend p86 && dmsetup reload p86 --table "0 $LEN error" && dmsetup resume p86; then
	ok "$P: production now fails every I/O"
else
	fail "$P: production now fails every I/O"
fi
bounded 180 dd if=/dev/urandom of="$view" bs=64k count=64 oflag=direct status=none &
ddpid=$!
for ((i = 0; i < 60; i++)); do
	(($(status_get "$NAME" deferred) > 0)) && break
	sleep 1
done
d=$(status_get "$NAME" deferred)
if ((d > 0)); then ok "$P: a view write waits for journal space (deferred=$d)"; else
	fail "$P: a view write waits for journal space" "status: $(jsnap_status "$NAME")"
fi
bounded 60 dmsetup remove --force "$NAME" >"$SCRATCH/rm.out" 2>&1
rc=$?
if [[ $rc != 124 ]]; then ok "$P: remove --force of the jsnap device returns (rc=$rc: it is open)"; else
	fail "$P: remove --force of the jsnap device returns" "stuck"
fi
check_match "$P: its table is now error" "error" "$(dmsetup table "$NAME" 2>&1)"
wait "$ddpid"
rc=$?
if [[ $rc == 124 ]]; then fail "$P: the waiting view write completes" "still waiting after 180 s"
elif [[ $rc == 0 ]]; then fail "$P: the waiting view write completes with an error" "dd succeeded"
else ok "$P: the waiting view write completes with an error (dd rc=$rc)"; fi
if bounded 60 dmsetup remove v86; then ok "$P: remove the view"; else fail "$P: remove the view" "rc=$?"; fi
if bounded 60 dmsetup remove "$NAME"; then ok "$P: remove the jsnap device"; else fail "$P: remove the jsnap device" "rc=$?"; fi
dm_remove p86 || fail "$P: remove the production device"
dm_remove j86j || fail "$P: remove the journal"
dm_mknodes
no_splat_since_start "no kernel splat"
finish
