#!/usr/bin/env bash
# Geometry (DESIGN.md §2.2 "Either target may sit at any start within its
# table"; §2.1 chunk_sectors; max I/O): model-based, like 60-mirror.sh.
#   (a) jsnap at start 16 of its table (after a zero target), a mirror view
#       at start 8 of its own: interleaved writes to A (view) and B (jsnap),
#       compared after each phase, after drain (production) and after
#       hydration (store); the zero prefixes read zero.
#   (b) chunk sizes 8 and 1024 on a volume whose length is not a multiple
#       of the chunk: writes across chunk boundaries and into the last,
#       partial chunk; ro view, drain, hydration to done.
#   (c) a 1 MiB write to a mirror view over a journal that accepts smaller
#       records only (ring/2 < 1 MiB): it must succeed on both volumes.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MA=$SCRATCH/a # model of volume A (the view / snapshot)
MB=$SCRATCH/b # model of volume B (the jsnap device)
IO_TIMEOUT=60 # seconds any single write or read may take (wr1, rd)

zeros() { # zeros NAME DEV SECTOR COUNT: that range reads as zeros
	check_eq "$1" "$(head -c $(($4 * 512)) /dev/zero | sha256sum | cut -c1-16)" \
		"$(rd "$2" "$3" "$4" | sha256sum | cut -c1-16)"
}
# w DEV DEV_OFF SECTOR COUNT MODEL...: one bio (wr1 bounds it in time).  A
# write stuck in the kernel ends the test: nothing after it can be trusted
# to complete.
w() {
	local rc=0
	wr1 "$@" || rc=$?
	if [[ $rc == 124 ]]; then
		fail "write to $1 at sector $(($2 + $3)), $4 sectors, completes" "stuck for ${IO_TIMEOUT:-60} s"
		dmesg | grep -E "$SPLAT_RE" | head -n 5 | sed 's/^/#   /'
		finish
	fi
	return $rc
}

# ---- (a) non-zero starts --------------------------------------------------------
LEN=$((16 * 2048)) # the jsnap target's length
JO=16              # start of the jsnap target in its table
VO=8               # start of the view target in its table
C=$CHUNK
head -c $((LEN * 512)) /dev/urandom >"$MB"
dd if="$MB" of="$PROD" bs=1M oflag=direct status=none
B=$(dm_create_lines geoB "0 $JO zero" "$JO $LEN jsnap $PROD $PMEM $STORE $C 1 format") ||
	{ fail "a: create jsnap at start $JO"; finish; }
ok "a: create jsnap at start $JO"
check_eq "a: size of the jsnap device" $((JO + LEN)) "$(dev_sectors "$B")"
same_at "a: jsnap part = production before writes" "$B" $JO "$MB" 0 $LEN
aborted=
# pre-snapshot writes, some left in the journal
for ((i = 0; i < 20; i++)); do
	n=$((RANDOM % (2 * C) + 1))
	w "$B" $JO $(((RANDOM * 32768 + RANDOM) % (LEN - n))) $n "$MB" || { aborted=1; break; }
done
w "$B" $JO 0 8 "$MB" || aborted=1               # first sectors of the target
w "$B" $JO $((LEN - 5)) 5 "$MB" || aborted=1    # its last sectors
if [[ -n $aborted ]]; then fail "a: writes through jsnap at start $JO" "write failed or timed out"; else ok "a: writes through jsnap at start $JO"; fi
same_at "a: jsnap (from sector $JO) = model B" "$B" $JO "$MB" 0 $LEN
zeros "a: jsnap device prefix (zero target) reads zero" "$B" 0 $JO
check_cmd "a: drain before snapshot" timeout 120 dmsetup message geoB $JO drain
same_at "a: production = model B (target sector x = production sector x)" "$PROD" 0 "$MB" 0 $LEN
w "$B" $JO $((3 * C + 1)) $((C + 2)) "$MB" || fail "a: write left in the journal"
check_cmd "a: snapshot" dmsetup message geoB $JO snapshot
cp "$MB" "$MA"
A=$(dm_create_lines geoA "0 $VO zero" "$VO $LEN jsnap-view $B mirror") ||
	{ fail "a: create mirror view at start $VO"; cleanup_dm; finish; }
ok "a: create mirror view at start $VO"
check_eq "a: size of the view device" $((VO + LEN)) "$(dev_sectors "$A")"
same_at "a: view (from sector $VO) = snapshot" "$A" $VO "$MA" 0 $LEN
zeros "a: view device prefix reads zero" "$A" 0 $VO
for phase in 1 2 3; do
	aborted=
	for ((i = 0; i < 40; i++)); do
		n=$((RANDOM % (3 * C) + 1))
		off=$(((RANDOM * 32768 + RANDOM) % (LEN - n)))
		if ((RANDOM % 2)); then
			w "$A" $VO $off $n "$MA" "$MB" || { aborted="write to A at $off+$n"; break; }
		else
			w "$B" $JO $off $n "$MB" || { aborted="write to B at $off+$n"; break; }
		fi
	done
	if [[ -n $aborted ]]; then fail "a: interleaving phase $phase" "$aborted failed or timed out"; fi
	same_at "a: phase $phase: view = model A" "$A" $VO "$MA" 0 $LEN
	same_at "a: phase $phase: jsnap = model B" "$B" $JO "$MB" 0 $LEN
	[[ -n $aborted ]] && break
done
# edges: first and last sectors of both targets
w "$A" $VO 0 3 "$MA" "$MB" || fail "a: write to the first sectors of A"
w "$A" $VO $((LEN - 3)) 3 "$MA" "$MB" || fail "a: write to the last sectors of A"
w "$B" $JO $((LEN - 9)) 9 "$MB" || fail "a: write to the last sectors of B"
same_at "a: edges: view = model A" "$A" $VO "$MA" 0 $LEN
same_at "a: edges: jsnap = model B" "$B" $JO "$MB" 0 $LEN
zeros "a: view prefix still zero" "$A" 0 $VO
zeros "a: jsnap prefix still zero" "$B" 0 $JO
if check_cmd "a: drain" timeout 120 dmsetup message geoB $JO drain; then
	same_at "a: production after drain = model B" "$PROD" 0 "$MB" 0 $LEN
	same_at "a: view after drain = model A" "$A" $VO "$MA" 0 $LEN
	check_cmd "a: hydrate on" dmsetup message geoB $JO hydrate on
	if wait_hydrated geoB 300; then ok "a: hydration done"; else fail "a: hydration done" "$(jsnap_status geoB)"; fi
	same_at "a: store after hydration = model A" "$STORE" 0 "$MA" 0 $LEN
	same_at "a: view after hydration = model A" "$A" $VO "$MA" 0 $LEN
	same_at "a: jsnap after hydration = model B" "$B" $JO "$MB" 0 $LEN
fi
check_eq "a: errors=0" 0 "$(status_get geoB errors)"
dm_remove geoA || fail "a: remove view"
dmsetup message geoB $JO drop || fail "a: drop"
dm_remove geoB || fail "a: remove jsnap"
cleanup_dm

# ---- (b) chunk sizes 8 and 1024, length not a multiple of the chunk --------------
REF=$SCRATCH/ref
SNAP=$SCRATCH/snap
for spec in 8:20004 1024:20000; do
	C=${spec%%:*}
	LEN=${spec#*:}
	P="b(chunk $C, len $LEN)"
	last=$((LEN / C * C)) # first sector of the last, partial chunk
	chunks=$(((LEN + C - 1) / C))
	head -c $((LEN * 512)) /dev/urandom >"$REF"
	dd if="$REF" of="$PROD" bs=1M oflag=direct status=none
	dev=$(CHUNK=$C mk_jsnap geo $LEN format) || { fail "$P: create"; continue; }
	ok "$P: create"
	check_eq "$P: chunks" $chunks "$(status_get geo chunks)"
	aborted=
	# pre-snapshot: across chunk boundaries, into the partial chunk, to the end
	for x in "$((C - 1)) 2" "$((5 * C - 3)) $((C + 6))" "$((last - 1)) 2" "$((LEN - 3)) 3" "7 1"; do
		w "$dev" 0 $x "$REF" || aborted=1
	done
	for ((i = 0; i < 15; i++)); do
		n=$((RANDOM % (2 * C + 16) + 1))
		w "$dev" 0 $(((RANDOM * 32768 + RANDOM) % (LEN - n))) $n "$REF" || aborted=1
	done
	[[ -z $aborted ]] && ok "$P: pre-snapshot writes" || fail "$P: pre-snapshot writes"
	check_cmd "$P: snapshot" msg geo snapshot
	cp "$REF" "$SNAP"
	aborted=
	for x in "$((C - 2)) 4" "$((2 * C - 1)) $((2 * C + 2))" "$((last - 2)) 3" "$last $((LEN - last))" \
		"$((LEN - 1)) 1" "0 1"; do
		w "$dev" 0 $x "$REF" || aborted=1
	done
	for ((i = 0; i < 25; i++)); do
		n=$((RANDOM % (2 * C + 16) + 1))
		w "$dev" 0 $(((RANDOM * 32768 + RANDOM) % (LEN - n))) $n "$REF" || aborted=1
	done
	[[ -z $aborted ]] && ok "$P: post-snapshot writes" || fail "$P: post-snapshot writes"
	same_at "$P: jsnap = model" "$dev" 0 "$REF" 0 $LEN
	if view=$(dm_create geov "0 $LEN jsnap-view $dev ro"); then
		ok "$P: create ro view"
		same_at "$P: view = snapshot" "$view" 0 "$SNAP" 0 $LEN
		same_at "$P: view last partial chunk = snapshot" "$view" $last "$SNAP" $last $((LEN - last))
		if check_cmd "$P: drain" timeout 120 dmsetup message geo 0 drain; then
			same_at "$P: production after drain = model" "$PROD" 0 "$REF" 0 $LEN
			same_at "$P: view after drain = snapshot" "$view" 0 "$SNAP" 0 $LEN
			check_cmd "$P: hydrate on" msg geo hydrate on
			if wait_hydrated geo 300; then ok "$P: hydration done"; else fail "$P: hydration done" "$(jsnap_status geo)"; fi
			check_eq "$P: preserved=chunks" $chunks "$(status_get geo preserved)"
			same_at "$P: store alone = snapshot" "$STORE" 0 "$SNAP" 0 $LEN
			same_at "$P: view after hydration = snapshot" "$view" 0 "$SNAP" 0 $LEN
			same_at "$P: jsnap after hydration = model" "$dev" 0 "$REF" 0 $LEN
		fi
		dm_remove geov || fail "$P: remove view"
	else
		fail "$P: create ro view"
	fi
	check_eq "$P: errors=0" 0 "$(status_get geo errors)"
	msg geo drop || fail "$P: drop"
	dm_remove geo || fail "$P: remove"
	cleanup_dm
done

# ---- (c) a mirror write larger than the journal's largest record ---------------
# A 2 MiB dm-linear slice of the pmem (DAX passes through dm-linear, see
# 45-backpressure.sh): ring < 2 MiB, so the largest record is < 1 MiB.
C=2048
LEN=$((8 * 2048))
head -c $((LEN * 512)) /dev/urandom >"$MB"
dd if="$MB" of="$PROD" bs=1M oflag=direct status=none
if J=$(dm_create geoj "0 4096 linear $PMEM $((160 * 2048))"); then
	dd if=/dev/zero of="$J" bs=1M count=1 oflag=direct status=none
	if B=$(dm_create geoB "0 $LEN jsnap $PROD $J $STORE $C 1 format"); then
		ok "c: create jsnap (chunk $C) on a 2 MiB journal"
		js=$(status_get geoB journal_size)
		if ((js > 0 && js / 2 < 1048576)); then ok "c: largest record < 1 MiB (journal_size=$js)"; else
			fail "c: largest record < 1 MiB" "journal_size=$js"
		fi
		note "c: jsnap max_sectors_kb=$(cat "/sys/dev/block/$(dev_mm "$B")/queue/max_sectors_kb" 2>/dev/null)"
		check_cmd "c: snapshot" msg geoB snapshot
		cp "$MB" "$MA"
		if A=$(dm_create geoA "0 $LEN jsnap-view $B mirror"); then
			# chunk-aligned (whole chunk: no copy) and straddling two chunks
			for off in 2048 $((4 * 2048 + 1024)); do
				head -c $((1 << 20)) /dev/urandom >"$SCRATCH/big"
				if bounded $IO_TIMEOUT dd if="$SCRATCH/big" of="$A" bs=1M count=1 seek=$((off * 512)) \
					oflag=direct,seek_bytes status=none 2>"$SCRATCH/dd.err"; then
					ok "c: 1 MiB O_DIRECT write to the mirror view at sector $off"
				else
					fail "c: 1 MiB O_DIRECT write to the mirror view at sector $off" "$(cat "$SCRATCH/dd.err")"
				fi
				# the model: what a successful write leaves
				dd if="$SCRATCH/big" of="$MA" bs=512 seek=$off conv=notrunc status=none
				dd if="$SCRATCH/big" of="$MB" bs=512 seek=$off conv=notrunc status=none
				same_at "c: view = model A after the 1 MiB write at $off" "$A" 0 "$MA" 0 $LEN
				same_at "c: jsnap = model B after the 1 MiB write at $off" "$B" 0 "$MB" 0 $LEN
			done
			# and 1 MiB through the jsnap device itself
			w "$B" 0 $((6 * 2048 + 8)) 2048 "$MB" || fail "c: 1 MiB write to jsnap"
			same_at "c: jsnap = model B after a 1 MiB write to it" "$B" 0 "$MB" 0 $LEN
			same_at "c: view unchanged by it" "$A" 0 "$MA" 0 $LEN
			if check_cmd "c: drain" timeout 120 dmsetup message geoB 0 drain; then
				same_at "c: production after drain = model B" "$PROD" 0 "$MB" 0 $LEN
				same_at "c: view after drain = model A" "$A" 0 "$MA" 0 $LEN
			fi
			dm_remove geoA || fail "c: remove view"
		else
			fail "c: create mirror view"
		fi
		msg geoB drop || fail "c: drop"
		dm_remove geoB || fail "c: remove jsnap"
	else
		fail "c: create jsnap (chunk $C) on a 2 MiB journal" "$(dmesg | grep jsnap: | tail -n 2)"
	fi
	dm_remove geoj
else
	fail "c: journal slice"
fi
cleanup_dm
no_splat_since_start "no kernel splat"
finish
