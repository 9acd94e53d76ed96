#!/usr/bin/env bash
# Changed-block tracking (`changed`, issue 15 item 2), against a model of the
# writes (tests/guest/cbt.py), in two geometries: chunk $CHUNK at table start
# 0, and chunk 8 with the jsnap target at sector 16 behind a zero target.
# Each round checks the exact answer (header, with the interval's number,
# and runs) of `changed` and `changed previous`:
#   - fresh journal: current empty, previous refused (no snapshot yet);
#   - writes W0 -> current = W0; `snapshot` -> previous = W0, current empty;
#   - writes W1 to the volume, writes to a `rw` view (not counted) and to a
#     `mirror` view (counted: they reach production) -> current = W1 + mirror;
#     sub-ranges `changed current F C` clipped exactly;
#   - after `drain` (every record retired: the bits are on pmem only), after
#     remove + create (the persistent maps), after writes W2 under
#     `no_destage` and remove + create (replay marks the live records);
#   - `drop` changes nothing; the next `snapshot` turns current into previous;
#   - bad arguments are refused (EINVAL, one log line) and change nothing;
#   - an answer of thousands of runs comes back whole (or in pages that
#     join to the whole);
#   - the previous interval rebuilt by replay alone (W4 under no_destage,
#     snapshot, W5, remove + create).
. "$(dirname "$0")/lib.sh"
cleanup_dm

CBT="python3 $(dirname "$0")/cbt.py"
MIB=64
LEN=$((MIB * 2048))

# cmsg NAME SECTOR WORDS...: message to the jsnap target at SECTOR
cmsg() {
	local n=$1 s=$2
	shift 2
	dmsetup message "$n" "$s" "$@"
}

# query NAME SECTOR WHICH NCHUNKS [FIRST [COUNT]]: the answer of `changed
# WHICH FIRST COUNT`, asked again from `next` until complete, the pages
# joined (cbt.py join; runs= of each page checked against its lines)
query() {
	local name=$1 sec=$2 which=$3 nch=$4 first=${5:-0} count=${6:-}
	local end out next n=0 pages=$SCRATCH/pages.$$
	end=$nch
	[[ -n $count ]] && ((first + count < nch)) && end=$((first + count))
	: >"$pages"
	while :; do
		# shellcheck disable=SC2086
		out=$(cmsg "$name" "$sec" changed "$which" "$first" $([[ -n $count ]] && echo $((end - first)))) || { echo "$out"; return 1; }
		printf '%s\n\n' "$out" >>"$pages"
		next=$(head -n1 <<<"$out" | sed -n 's/.* next=\([^ ]*\) .*/\1/p')
		n=$((n + 1))
		[[ $next == - || -z $next || $n -gt 1000 ]] && break
		first=$next
	done
	QUERY_PAGES=$n
	$CBT join <"$pages" 2>&1
}

# check_changed TAG NAME SECTOR WHICH CHUNK NCHUNKS "FIRST COUNT" LISTS...:
# `changed WHICH FIRST COUNT` equals the model of the LISTs
check_changed() {
	local tag=$1 name=$2 sec=$3 which=$4 chunk=$5 nch=$6 range=$7
	shift 7
	local got exp
	# shellcheck disable=SC2086
	got=$(query "$name" "$sec" "$which" "$nch" $range 2>&1) || { fail "$tag" "message failed: $got"; return; }
	# shellcheck disable=SC2086
	exp=$($CBT expect "$which:$SNAPS" "$chunk" "$nch" $range -- "$@")
	if [[ $got == "$exp" ]]; then
		ok "$tag ($(head -n1 <<<"$got" | sed 's/.* runs=/runs=/'))"
	else
		fail "$tag" "got [$(head -c 300 <<<"$got" | tr '\n' '|')] expected [$(head -c 300 <<<"$exp" | tr '\n' '|')]"
	fi
}

round() {
	local tag=$1 chunk=$2 start=$3 seed=$4
	local name=cbt$tag tbl nch=$(((LEN + chunk - 1) / chunk)) w=$SCRATCH/$tag
	mkdir -p "$w"
	# table: [zero START] jsnap LEN
	mktable() {
		local f=$*
		local j="$start $LEN jsnap $PROD $PMEM $STORE $chunk"
		[[ -n $f ]] && j="$j $(wc -w <<<"$f") $f"
		if ((start > 0)); then printf '0 %s zero\n%s\n' "$start" "$j"; else echo "$j"; fi
	}
	create() { dm_create "$name" "$(mktable "$@")" >/dev/null; }
	dev=/dev/mapper/$name
	# the writer goes through a window on the jsnap target
	win() {
		if ((start > 0)); then
			dmsetup remove "${name}w" >/dev/null 2>&1
			dm_create "${name}w" "0 $LEN linear $dev $start" >/dev/null && echo "/dev/mapper/${name}w"
		else
			echo "$dev"
		fi
	}
	unwin() { ((start > 0)) && dmsetup remove "${name}w" >/dev/null 2>&1; return 0; }

	SNAPS=0 # snapshots taken since the format: the intervals' numbers
	create format || { fail "$tag: create (format)"; return; }
	ok "$tag: create (format), chunk $chunk at table start $start"
	check_changed "$tag: fresh journal: nothing changed" "$name" "$start" current "$chunk" "$nch" ""
	dmesg_mark
	if cmsg "$name" "$start" changed previous >/dev/null 2>&1; then
		fail "$tag: changed previous refused before any snapshot"
	else
		check_eq "$tag: changed previous refused before any snapshot (logged)" 1 \
			"$(log_count 'changed previous refused: no snapshot was taken')"
	fi

	# W0, then snapshot
	$CBT gen "$seed" 40 300 "$LEN" >"$w/w0"
	: >"$w/none"
	$CBT write "$(win)" "$w/w0" || fail "$tag: W0 writes"
	check_changed "$tag: W0 in current" "$name" "$start" current "$chunk" "$nch" "" "$w/w0"
	cmsg "$name" "$start" snapshot || fail "$tag: snapshot"
	SNAPS=1
	check_changed "$tag: after snapshot, W0 is previous" "$name" "$start" previous "$chunk" "$nch" "" "$w/w0"
	check_changed "$tag: after snapshot, current is empty" "$name" "$start" current "$chunk" "$nch" ""

	# W1 to the volume, rw-view writes (not counted), mirror-view writes (counted)
	$CBT gen $((seed + 1)) 60 600 "$LEN" >"$w/w1"
	$CBT write "$(win)" "$w/w1" || fail "$tag: W1 writes"
	unwin
	local vd
	for mode in rw mirror; do
		vd=$(dm_create "${name}v" "0 $LEN jsnap-view $dev $mode") || { fail "$tag: $mode view"; continue; }
		$CBT gen $((seed + 7)) 8 64 "$LEN" >"$w/$mode"
		$CBT write "$vd" "$w/$mode" || fail "$tag: $mode view writes"
		dmsetup remove "${name}v" || fail "$tag: remove $mode view"
	done
	check_changed "$tag: W1 and the mirror view's writes in current (not the rw view's)" \
		"$name" "$start" current "$chunk" "$nch" "" "$w/w1" "$w/mirror"
	check_changed "$tag: previous still W0" "$name" "$start" previous "$chunk" "$nch" "" "$w/w0"
	local f c
	for k in 1 2 3 4; do
		f=$(((seed * k * 7919) % nch))
		c=$((1 + (seed * k * 104729) % (nch / 3)))
		check_changed "$tag: current, chunks $f +$c" "$name" "$start" current "$chunk" "$nch" "$f $c" "$w/w1" "$w/mirror"
	done
	# the chunk of W0's first write and the one after it
	f=$(($(head -n1 "$w/w0" | cut -d' ' -f1) / chunk))
	check_changed "$tag: previous, chunks $f +2" "$name" "$start" previous "$chunk" "$nch" "$f 2" "$w/w0"

	# drain: the records are retired, the bits live on pmem only
	cmsg "$name" "$start" drain || fail "$tag: drain"
	check_eq "$tag: drained (pending=0)" 0 "$(jsnap_status "$name" | tr ' ' '\n' | sed -n 's/^pending=//p')"
	dmsetup remove "$name" || fail "$tag: remove after drain"
	create || { fail "$tag: create again after drain"; return; }
	check_changed "$tag: after drain + remove + create, current from pmem" "$name" "$start" current "$chunk" "$nch" "" "$w/w1" "$w/mirror"
	check_changed "$tag: after drain + remove + create, previous from pmem" "$name" "$start" previous "$chunk" "$nch" "" "$w/w0"

	# W2 stays in the journal (no_destage); remove + create replays it
	dmsetup remove "$name" && create no_destage || { fail "$tag: create no_destage"; return; }
	$CBT gen $((seed + 2)) 30 200 "$LEN" >"$w/w2"
	$CBT write "$(win)" "$w/w2" || fail "$tag: W2 writes"
	unwin
	local pend
	pend=$(jsnap_status "$name" | tr ' ' '\n' | sed -n 's/^pending=//p')
	((pend > 0)) && ok "$tag: W2 still in the journal (pending=$pend)" || fail "$tag: W2 still in the journal" "pending=$pend"
	dmsetup remove "$name" && create no_destage || { fail "$tag: create again (replay)"; return; }
	check_changed "$tag: after replay, current = W1 + mirror + W2" "$name" "$start" current "$chunk" "$nch" "" "$w/w1" "$w/mirror" "$w/w2"

	# bad arguments: refused, logged, nothing changed
	local bad
	for bad in "previous x" "0 0" "$nch" "1 2 3" "older" "current previous"; do
		dmesg_mark
		# shellcheck disable=SC2086
		if cmsg "$name" "$start" changed $bad >/dev/null 2>&1; then
			fail "$tag: changed $bad refused"
		else
			check_eq "$tag: changed $bad refused with a log line" 1 "$(dmesg_since_mark | grep -c 'dm-jsnap: .*[Cc]hanged\|dm-jsnap: Wrong number of arguments')"
		fi
	done
	check_changed "$tag: refusals changed nothing" "$name" "$start" current "$chunk" "$nch" "" "$w/w1" "$w/mirror" "$w/w2"

	# drop keeps the intervals; the next snapshot turns current into previous
	cmsg "$name" "$start" drop || fail "$tag: drop"
	check_changed "$tag: drop keeps current" "$name" "$start" current "$chunk" "$nch" "" "$w/w1" "$w/mirror" "$w/w2"
	check_changed "$tag: drop keeps previous" "$name" "$start" previous "$chunk" "$nch" "" "$w/w0"
	cmsg "$name" "$start" snapshot || fail "$tag: second snapshot"
	SNAPS=2
	check_changed "$tag: second snapshot: previous = W1 + mirror + W2" "$name" "$start" previous "$chunk" "$nch" "" "$w/w1" "$w/mirror" "$w/w2"
	check_changed "$tag: second snapshot: current empty" "$name" "$start" current "$chunk" "$nch" ""
	dmsetup remove "$name" && create || { fail "$tag: create after second snapshot"; return; }
	check_changed "$tag: second snapshot survives remove + create (previous)" "$name" "$start" previous "$chunk" "$nch" "" "$w/w1" "$w/mirror" "$w/w2"
	check_changed "$tag: second snapshot survives remove + create (current)" "$name" "$start" current "$chunk" "$nch" ""

	# many runs: one sector in every other chunk of the first 24 MiB
	$CBT gen 0 0 0 $((24 * 2048)) "$chunk" >"$w/w3"
	$CBT write "$(win)" "$w/w3" || fail "$tag: W3 writes"
	unwin
	exp=$($CBT expect "current:$SNAPS" "$chunk" "$nch" -- "$w/w3")
	QUERY_PAGES=0
	query "$name" "$start" current "$nch" >"$w/joined" 2>&1
	got=$(cat "$w/joined")
	local n=$QUERY_PAGES
	if [[ $got == "$exp" ]]; then
		ok "$tag: $(sed -n 's/.* runs=\([0-9]*\).*/\1/p' <<<"$exp" | head -n1) runs come back whole ($n answer(s))"
	else
		fail "$tag: many runs come back whole" "got [$(head -c 200 <<<"$got" | tr '\n' '|')] expected [$(head -c 200 <<<"$exp" | tr '\n' '|')]"
	fi
	cmsg "$name" "$start" drop || fail "$tag: drop"

	# the previous interval from replay alone: W4 under no_destage (never
	# retired, so its marks never reach pmem before the cut), snapshot, W5,
	# remove + create
	dmsetup remove "$name" && create no_destage || { fail "$tag: create no_destage (W4)"; return; }
	$CBT gen $((seed + 4)) 20 100 "$LEN" >"$w/w4"
	$CBT gen $((seed + 5)) 20 100 "$LEN" >"$w/w5"
	$CBT write "$(win)" "$w/w4" || fail "$tag: W4 writes"
	cmsg "$name" "$start" snapshot || fail "$tag: third snapshot"
	SNAPS=3
	$CBT write "$(win)" "$w/w5" || fail "$tag: W5 writes"
	unwin
	check_changed "$tag: third snapshot: previous = W3 + W4" "$name" "$start" previous "$chunk" "$nch" "" "$w/w3" "$w/w4"
	check_changed "$tag: current = W5" "$name" "$start" current "$chunk" "$nch" "" "$w/w5"
	pend=$(jsnap_status "$name" | tr ' ' '\n' | sed -n 's/^pending=//p')
	((pend >= 40)) && ok "$tag: W4 and W5 still in the journal (pending=$pend)" || fail "$tag: W4 and W5 still in the journal" "pending=$pend"
	dmsetup remove "$name" && create no_destage || { fail "$tag: create again (replay of W4, W5)"; return; }
	check_changed "$tag: after replay: previous = W3 + W4" "$name" "$start" previous "$chunk" "$nch" "" "$w/w3" "$w/w4"
	check_changed "$tag: after replay: current = W5" "$name" "$start" current "$chunk" "$nch" "" "$w/w5"
	cmsg "$name" "$start" drop || fail "$tag: drop at the end"
	dmsetup remove "$name" || fail "$tag: remove at the end"
}

dmesg_mark
round a "$CHUNK" 0 11
round b 8 16 23
cleanup_dm
no_splat_since_start "no kernel splat"
finish
