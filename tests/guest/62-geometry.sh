#!/usr/bin/env bash
# Geometry (DESIGN.md §2.2 "Either target may sit at any start within its
# table"; §2.1 chunk_sectors; max I/O): model-based, like 60-mirror.sh.
#   (a) the geometry matrix: chunk sizes 8, 64 and 4096, each once at
#       table start 0 with a length that is a multiple of the chunk, and once
#       with both targets behind a zero target (non-zero table starts) and a
#       partial last chunk.  Each case: writes across chunk boundaries, into
#       the partial chunk and at the edges, some destaged and some still in
#       the journal at the snapshot; the ro view = the snapshot; a rw or
#       mirror view with interleaved writes to A (view) and B (jsnap), each
#       compared with its model; drain (production), hydration to done (the
#       store alone holds volume A); the zero prefixes read zero.
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

# ---- (a) the matrix: every chunk size x {start 0, aligned length | non-zero
# starts, partial last chunk}: snapshot content, ro view, rw or mirror view,
# drain, hydration, each against models ---------------------------------------
# geom_case C LEN JO VO MODE: jsnap with chunk C and length LEN at start JO
# of its table (a zero target before it), its views at start VO of theirs;
# MODE is the second view after the ro one: rw or mirror.
geom_case() {
	local C=$1 LEN=$2 JO=$3 VO=$4 mode=$5
	local P="chunk $C, len $LEN, jsnap at $JO, view at $VO, $mode"
	local last=$((LEN / C * C)) chunks=$(((LEN + C - 1) / C))
	local lc=$(((chunks - 1) * C)) big=$((C < 2048 ? 2 * C + 16 : 4096)) # lc: the last (partial or whole) chunk
	local i n off x aborted B A t
	head -c $((LEN * 512)) /dev/urandom >"$MB"
	dd if="$MB" of="$PROD" bs=1M oflag=direct status=none
	t=("$JO $LEN jsnap $PROD $PMEM $STORE $C 1 format")
	((JO > 0)) && t=("0 $JO zero" "${t[@]}")
	B=$(dm_create_lines geoB "${t[@]}") || { fail "$P: create jsnap"; cleanup_dm; return; }
	ok "$P: create jsnap"
	check_eq "$P: size of the jsnap device" $((JO + LEN)) "$(dev_sectors "$B")"
	check_eq "$P: chunks" $chunks "$(status_get geoB chunks)"
	same_at "$P: jsnap = production before writes" "$B" $JO "$MB" 0 $LEN
	aborted=
	# pre-snapshot: across chunk boundaries, into the partial chunk, the edges
	for x in "$((C - 1)) 2" "$((2 * C - 3)) $((C < 2048 ? C + 6 : 2054))" "$((last - 1)) $((LEN - last + 1))" \
		"$((LEN - 3)) 3" "0 8" "7 1"; do
		w "$B" $JO $x "$MB" || { aborted=1; break; }
	done
	for ((i = 0; i < 12 && !aborted; i++)); do
		n=$((RANDOM % big + 1))
		w "$B" $JO $(((RANDOM * 32768 + RANDOM) % (LEN - n))) $n "$MB" || aborted=1
	done
	[[ -z $aborted ]] && ok "$P: pre-snapshot writes" || fail "$P: pre-snapshot writes" "write failed or timed out"
	same_at "$P: jsnap = model B" "$B" $JO "$MB" 0 $LEN
	((JO > 0)) && zeros "$P: jsnap device prefix (zero target) reads zero" "$B" 0 $JO
	# half of it destaged, the rest still in the journal at the snapshot
	check_cmd "$P: drain before snapshot" timeout 120 dmsetup message geoB $JO drain
	same_at "$P: production = model B (target sector x = production sector x)" "$PROD" 0 "$MB" 0 $LEN
	w "$B" $JO $((2 * C + 1)) $((C < 2048 ? C + 2 : 2050)) "$MB" || fail "$P: write left in the journal"
	w "$B" $JO $((last - 2)) 2 "$MB" || fail "$P: write left in the journal (partial chunk)"
	check_cmd "$P: snapshot" dmsetup message geoB $JO snapshot
	cp "$MB" "$MA"
	aborted=
	for x in "$((C - 2)) 4" "$((2 * C - 1)) $((C < 2048 ? 2 * C + 2 : 2050))" "$((lc - 2)) 3" \
		"$lc $((LEN - lc))" "$((LEN - 1)) 1" "0 1"; do
		w "$B" $JO $x "$MB" || { aborted=1; break; }
	done
	for ((i = 0; i < 15 && !aborted; i++)); do
		n=$((RANDOM % big + 1))
		w "$B" $JO $(((RANDOM * 32768 + RANDOM) % (LEN - n))) $n "$MB" || aborted=1
	done
	[[ -z $aborted ]] && ok "$P: post-snapshot writes" || fail "$P: post-snapshot writes" "write failed or timed out"
	same_at "$P: jsnap = model B after post-snapshot writes" "$B" $JO "$MB" 0 $LEN
	# the ro view
	t=("$VO $LEN jsnap-view $B ro")
	((VO > 0)) && t=("0 $VO zero" "${t[@]}")
	if A=$(dm_create_lines geoA "${t[@]}"); then
		ok "$P: create ro view"
		check_eq "$P: size of the ro view" $((VO + LEN)) "$(dev_sectors "$A")"
		same_at "$P: ro view = snapshot" "$A" $VO "$MA" 0 $LEN
		same_at "$P: ro view, last two chunks = snapshot" "$A" $((VO + last - C)) "$MA" $((last - C)) $((LEN - last + C))
		((VO > 0)) && zeros "$P: ro view prefix reads zero" "$A" 0 $VO
		if bounded 30 dd if=/dev/zero of="$A" bs=512 count=1 seek=$((VO + C)) oflag=direct status=none 2>/dev/null; then
			fail "$P: write to the ro view fails" "it succeeded"
		else
			ok "$P: write to the ro view fails"
		fi
		same_at "$P: ro view = snapshot after the refused write" "$A" $VO "$MA" 0 $LEN
		dm_remove geoA || fail "$P: remove ro view"
	else
		fail "$P: create ro view"
	fi
	same_at "$P: jsnap = model B after the ro view" "$B" $JO "$MB" 0 $LEN
	# the rw or mirror view: interleaved writes to A and B
	t=("$VO $LEN jsnap-view $B $mode")
	((VO > 0)) && t=("0 $VO zero" "${t[@]}")
	A=$(dm_create_lines geoA "${t[@]}") || { fail "$P: create $mode view"; cleanup_dm; return; }
	ok "$P: create $mode view"
	same_at "$P: $mode view = snapshot" "$A" $VO "$MA" 0 $LEN
	aborted=
	for ((i = 0; i < 30; i++)); do
		n=$((RANDOM % big + 1))
		off=$(((RANDOM * 32768 + RANDOM) % (LEN - n)))
		if ((RANDOM % 2)); then
			if [[ $mode == mirror ]]; then
				w "$A" $VO $off $n "$MA" "$MB" || { aborted="write to A at $off+$n"; break; }
			else
				w "$A" $VO $off $n "$MA" || { aborted="write to A at $off+$n"; break; }
			fi
		else
			w "$B" $JO $off $n "$MB" || { aborted="write to B at $off+$n"; break; }
		fi
	done
	[[ -n $aborted ]] && fail "$P: interleaved writes to both volumes" "$aborted failed or timed out"
	# edges of both targets, and the partial chunk through A
	x=("$MA")
	[[ $mode == mirror ]] && x+=("$MB")
	w "$A" $VO 0 3 "${x[@]}" || fail "$P: write to the first sectors of A"
	w "$A" $VO $((LEN - 3)) 3 "${x[@]}" || fail "$P: write to the last sectors of A"
	w "$A" $VO $((last > 0 ? last - 1 : 0)) $((LEN - last + 1 < LEN ? LEN - last + 1 : LEN)) "${x[@]}" ||
		fail "$P: write to A into the last chunk"
	w "$B" $JO $((LEN - 9)) 9 "$MB" || fail "$P: write to the last sectors of B"
	same_at "$P: $mode view = model A" "$A" $VO "$MA" 0 $LEN
	same_at "$P: jsnap = model B" "$B" $JO "$MB" 0 $LEN
	((VO > 0)) && zeros "$P: view prefix still zero" "$A" 0 $VO
	((JO > 0)) && zeros "$P: jsnap prefix still zero" "$B" 0 $JO
	if check_cmd "$P: drain" timeout 180 dmsetup message geoB $JO drain; then
		same_at "$P: production after drain = model B" "$PROD" 0 "$MB" 0 $LEN
		same_at "$P: view after drain = model A" "$A" $VO "$MA" 0 $LEN
		check_cmd "$P: hydrate on" dmsetup message geoB $JO hydrate on
		if wait_hydrated geoB 300; then ok "$P: hydration done"; else fail "$P: hydration done" "$(jsnap_status geoB)"; fi
		check_eq "$P: preserved=chunks" $chunks "$(status_get geoB preserved)"
		same_at "$P: store alone after hydration = model A" "$STORE" 0 "$MA" 0 $LEN
		same_at "$P: view after hydration = model A" "$A" $VO "$MA" 0 $LEN
		same_at "$P: jsnap after hydration = model B" "$B" $JO "$MB" 0 $LEN
	fi
	check_eq "$P: errors=0" 0 "$(status_get geoB errors)"
	dm_remove geoA || fail "$P: remove view"
	dmsetup message geoB $JO drop || fail "$P: drop"
	dm_remove geoB || fail "$P: remove jsnap"
	cleanup_dm
}

# chunk:length:jsnap start:view start:second view
for spec in 8:8192:0:0:rw 8:10004:16:8:mirror 64:16384:0:0:mirror 64:16357:8:24:rw \
	4096:16384:0:0:mirror 4096:14000:24:16:mirror; do
	IFS=: read -r gc gl gj gv gm <<<"$spec"
	geom_case "$gc" "$gl" "$gj" "$gv" "$gm"
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
