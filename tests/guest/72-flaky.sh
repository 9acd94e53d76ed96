#!/usr/bin/env bash
# Partial and intermittent faults under jsnap (issue 12 item 3), without
# no_destage, each case checked against a model of the data:
#   (a) production behind dm-flakey (up 1 s, down 1 s, error_writes) while
#       writers push 1.5 journals' worth of data: every write completes,
#       errors show in status, and destage brings the journal below its
#       ring bound by itself (no `drain`); after a drain production
#       read directly equals the model;
#   (b) the store behind dm-flakey (writes fail 1 s in every 2) under a
#       snapshot, with destage and hydration running: production is never
#       harmed, the view never returns other data than the snapshot's
#       (a read either matches or fails), and the snapshot ends `active`
#       with the store alone equal to it, or `invalid` and says so;
#   (c) production behind dm-dust with bad blocks: reads of those blocks
#       fail on the jsnap device and on the view, their neighbours read
#       exactly, and the bad blocks read from the journal once rewritten;
#   (d) production behind dm-delay (writes 50 ms): a snapshot, writes and
#       hydration against the model;
#   (e) the store behind dm-flakey during writes to a rw and to a mirror
#       view (and to production, whose destage preserves into the store):
#       every view write that succeeded is in the view (and, mirror, in
#       production), production never holds anything else than its model,
#       and the snapshot ends `active` (the failed ranges rewritten once
#       the store is well: view, production after drain, store alone after
#       hydration = the models) or `invalid`, saying so, its view failing
#       reads.
# dm-flakey's drop_writes is not used: a write the device acknowledges and
# drops is data loss no target can see (the contract does not cover it).
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=64
LEN=$((MIB * 2048))
REF=$SCRATCH/ref
A=$SCRATCH/a
B=$SCRATCH/b
head -c $((32 << 20)) /dev/urandom >"$A"
head -c $((32 << 20)) /dev/urandom >"$B"
sum() { dd if="$1" bs=1M count="${2:-$MIB}" iflag=direct status=none 2>/dev/null | md5sum | cut -c1-32; }
fsum() { head -c $(((${2:-$MIB}) << 20)) "$1" | md5sum | cut -c1-32; }
# wr_model DEV FILE OFFSET_MIB: write FILE to DEV and to the model
wr_model() {
	dd if="$2" of="$1" bs=1M seek="$3" oflag=direct status=none &&
		dd if="$2" of="$REF" bs=1M seek="$3" conv=notrunc status=none
}
# fresh: random production (and model), zero store
fresh() {
	head -c $((MIB << 20)) /dev/urandom >"$REF"
	dd if="$REF" of="$PROD" bs=1M count=$MIB oflag=direct status=none
	dd if=/dev/zero of="$STORE" bs=1M count=$MIB oflag=direct status=none
}
# passes DEV N STEP: N writes of 32 MiB, A and B in turn, at (k*STEP % 48) MiB
passes() {
	local k f
	for ((k = 0; k < $2; k++)); do
		f=$A
		((k % 2)) && f=$B
		wr_model "$1" "$f" $((k * $3 % 48)) || return 1
	done
}
# flaky_store_snapshot TAG NAME COPY: fresh volumes, the store behind
# dm-flakey (NAMEs: writes fail 1 s in every 2), jsnap NAME over it with low
# watermarks (destage preserves at once), a snapshot, the model copied to
# COPY; sets dev
flaky_store_snapshot() {
	fresh
	dm_create "${2}s" "0 $LEN flakey $STORE 0 1 1 1 error_writes" >/dev/null ||
		{ fail "$1: dm-flakey on the store"; return 1; }
	dev=$(dm_create "$2" "$(jsnap_table $LEN "$PROD" "$PMEM" "/dev/mapper/${2}s" "$CHUNK" format high_watermark 5 low_watermark 1)") ||
		{ fail "$1: create jsnap"; cleanup_dm; return 1; }
	check_cmd "$1: snapshot" msg "$2" snapshot
	cp "$REF" "$3"
}
wait_below() { # wait_below NAME PCT SECS: journal at most PCT% full, without drain
	local i
	for ((i = 0; i < $3; i++)); do
		(($(status_get "$1" journal_used) * 100 <= $(status_get "$1" journal_size) * $2)) && return 0
		sleep 1
	done
	return 1
}

# ---- (a) destage failing intermittently while writers fill the journal --------
head -c $((MIB << 20)) /dev/zero >"$REF"
dd if=/dev/zero of="$PROD" bs=1M count=$MIB oflag=direct status=none
F=$(dm_create flp "0 $LEN flakey $PROD 0 1 1 1 error_writes") || { fail "a: dm-flakey"; finish; }
dev=$(dm_create fla "$(jsnap_table $LEN "$F" "$PMEM" - "$CHUNK" format high_watermark 20 low_watermark 5)") ||
	{ fail "a: create jsnap over dm-flakey"; cleanup_dm; finish; }
jsz=$(status_get fla journal_size)
total=0 k=0 werr=0
while ((total < jsz * 3 / 2)); do
	f=$A
	((k % 2)) && f=$B
	wr_model "$dev" "$f" $((k % 3 * 16)) || werr=$((werr + 1))
	total=$((total + (32 << 20))) k=$((k + 1))
done
check_eq "a: $k writes of 32 MiB ($((total >> 20)) MiB, journal $((jsz >> 20)) MiB) all complete" 0 "$werr"
same "a: jsnap = model while destage fails now and then" "$dev" "$REF"
errs=$(status_get fla errors)
if ((errs > 0)); then ok "a: destage errors counted ($errs)"; else fail "a: destage errors counted" "errors=$errs (did the flakey down time hit no batch?)"; fi
# The watermarks count live data (README, `high_watermark`): dead records
# may stay in the ring up to its bound, 36% for `high_watermark 20`
# (compact::ring_high: 1.8 x 20).
if wait_below fla 36 300; then ok "a: destage brings the journal below its ring bound (36% for high watermark 20) by itself (no drain)"; else
	fail "a: destage brings the journal below its ring bound by itself" "$(jsnap_status fla)"
fi
# production well again (a drain fails while destage errors come in)
check_cmd "a: production back to linear" swap_table flp "0 $LEN linear $PROD 0"
check_cmd "a: drain" msg fla drain
note "a: status: $(jsnap_status fla)"
dm_remove fla
dm_remove flp
check_eq "a: production read directly = model" "$(fsum "$REF")" "$(sum "$PROD")"

# ---- (b) the store failing now and then under a snapshot -------------------
flaky_store_snapshot b flb "$SCRATCH/snap" || finish
snapsum=$(fsum "$SCRATCH/snap")
msg flb hydrate on
passes "$dev" 6 16 || fail "b: writes"
check_cmd "b: store back to linear" swap_table flbs "0 $LEN linear $STORE 0"
check_cmd "b: drain" msg flb drain
same "b: jsnap = model" "$dev" "$REF"
V=$(dm_create flbv "0 $LEN jsnap-view /dev/mapper/flb ro") || fail "b: view"
# Every 1 MiB of the view either reads as the snapshot or fails.
bad=0 eio=0
for ((m = 0; m < MIB; m++)); do
	if dd if="$V" of="$SCRATCH/m" bs=1M skip=$m count=1 iflag=direct status=none 2>/dev/null; then
		cmp -s "$SCRATCH/m" <(dd if="$SCRATCH/snap" bs=1M skip=$m count=1 status=none) || bad=$((bad + 1))
	else
		eio=$((eio + 1))
	fi
done
check_eq "b: no MiB of the view holds other data than the snapshot's ($eio failed reads)" 0 "$bad"
st=$(status_get flb snapshot)
note "b: status: $(jsnap_status flb)"
note "b: store writes failed while preserving or hydrating: errors=$(status_get flb errors)"
if [[ $st == active ]]; then
	check_eq "b: snapshot active: the view reads without error" 0 "$eio"
	if wait_hydrated flb 300; then
		dm_remove flbv
		check_eq "b: store alone = snapshot after hydration" "$snapsum" "$(sum "$STORE")"
	else
		fail "b: hydration completes" "$(jsnap_status flb)"
		dm_remove flbv
	fi
elif [[ $st == invalid ]]; then
	ok "b: the snapshot says it is invalid"
	if ((eio > 0)); then ok "b: the invalid view fails reads ($eio MiB)"; else fail "b: the invalid view fails reads" "every MiB read back"; fi
	dm_remove flbv
else
	fail "b: snapshot active or invalid" "snapshot=$st"
	dm_remove flbv
fi
msg flb drop
dm_remove flb
dm_remove flbs
check_eq "b: production read directly = model" "$(fsum "$REF")" "$(sum "$PROD")"

# ---- (c) bad blocks on production reads ------------------------------------------
fresh
D=$(dm_create fld "0 $LEN dust $PROD 0 4096") || { fail "c: dm-dust"; finish; }
# bad 4 KiB blocks 100 and 2000 (dust block numbers are in 4096-byte units)
dmsetup message fld 0 addbadblock 100 >/dev/null && dmsetup message fld 0 addbadblock 2000 >/dev/null &&
	dmsetup message fld 0 enable >/dev/null || fail "c: dust bad blocks"
dev=$(dm_create flc "$(jsnap_table $LEN "$D" "$PMEM" "$STORE" "$CHUNK" format no_destage)") ||
	{ fail "c: create jsnap over dm-dust"; cleanup_dm; finish; }
check_fails "c: read of bad block 100 through jsnap fails" dd if="$dev" of=/dev/null bs=4k skip=100 count=1 iflag=direct status=none
check_fails "c: read of bad block 2000 through jsnap fails" dd if="$dev" of=/dev/null bs=4k skip=2000 count=1 iflag=direct status=none
same_at "c: block 99 reads exactly" "$dev" $((99 * 8)) "$REF" $((99 * 8)) 8
same_at "c: block 101 reads exactly" "$dev" $((101 * 8)) "$REF" $((101 * 8)) 8
check_cmd "c: snapshot" msg flc snapshot
V=$(dm_create flcv "0 $LEN jsnap-view /dev/mapper/flc ro") || fail "c: view"
check_fails "c: read of bad block 100 through the view fails" dd if="$V" of=/dev/null bs=4k skip=100 count=1 iflag=direct status=none
same_at "c: view block 101 reads exactly" "$V" $((101 * 8)) "$REF" $((101 * 8)) 8
dm_remove flcv
msg flc drop
# rewritten, the block reads from the journal (no_destage: it stays there)
dd if="$A" of="$dev" bs=4k count=1 seek=100 oflag=direct status=none || fail "c: rewrite bad block 100"
dd if="$A" of="$REF" bs=4k count=1 seek=100 conv=notrunc status=none
same_at "c: rewritten bad block reads from the journal" "$dev" $((100 * 8)) "$REF" $((100 * 8)) 8
dm_remove flc
dm_remove fld

# ---- (d) slow production (dm-delay) ----------------------------------------------
fresh
DL=$(dm_create fldl "0 $LEN delay $PROD 0 0 $PROD 0 50") || { fail "d: dm-delay"; finish; }
dev=$(dm_create fle "$(jsnap_table $LEN "$DL" "$PMEM" "$STORE" "$CHUNK" format high_watermark 5 low_watermark 1)") ||
	{ fail "d: create jsnap over dm-delay"; cleanup_dm; finish; }
check_cmd "d: snapshot" msg fle snapshot
cp "$REF" "$SCRATCH/snap"
msg fle hydrate on
passes "$dev" 3 16 || fail "d: writes"
same "d: jsnap = model over slow production" "$dev" "$REF"
V=$(dm_create flev "0 $LEN jsnap-view /dev/mapper/fle ro") || fail "d: view"
same "d: view = snapshot" "$V" "$SCRATCH/snap"
if wait_hydrated fle 300; then ok "d: hydration done"; else fail "d: hydration done" "$(jsnap_status fle)"; fi
dm_remove flev
check_eq "d: store alone = snapshot" "$(fsum "$SCRATCH/snap")" "$(sum "$STORE")"
check_cmd "d: drain" msg fle drain
st=$(jsnap_status fle)
if [[ $st =~ (^| )state=ok( |$) && $st =~ (^| )errors=0( |$) ]]; then ok "d: state=ok errors=0"; else fail "d: state=ok errors=0" "$st"; fi
msg fle drop
dm_remove fle
dm_remove fldl
check_eq "d: production read directly = model" "$(fsum "$REF")" "$(sum "$PROD")"

# ---- (e) the store failing under rw and mirror view writes -----------------------
MA=$SCRATCH/ma
for mode in rw mirror; do
	P="e($mode)"
	flaky_store_snapshot "$P" flf "$MA" || break
	V=$(dm_create flfv "0 $LEN jsnap-view /dev/mapper/flf $mode") || { fail "$P: view"; cleanup_dm; break; }
	failed=() nok=0 m=("$MA") # the models a view write goes to
	[[ $mode == mirror ]] && m+=("$REF")
	t_end=$(($(date +%s) + 12))
	while (($(date +%s) < t_end)); do
		n=$(((RANDOM % 3 + 1) * CHUNK - RANDOM % CHUNK))
		off=$(((RANDOM * 32768 + RANDOM) % (LEN - n)))
		if ((RANDOM % 4 == 0)); then
			# production: a successful write is in it; its destage preserves
			# into the failing store
			wr1 "$dev" 0 $off $n "$REF" || fail "$P: write to production at $off+$n"
			continue
		fi
		if wr1 "$V" 0 $off $n "${m[@]}" 2>/dev/null; then nok=$((nok + 1)); else failed+=("$off $n"); fi
	done
	note "$P: $nok view writes succeeded, ${#failed[@]} failed; status: $(jsnap_status flf)"
	if ((${#failed[@]} > 0 || $(status_get flf errors) > 0)); then ok "$P: the store failed under the writes"; else
		fail "$P: the store failed under the writes" "no view write failed and errors=0"
	fi
	check_cmd "$P: store back to linear" swap_table flfs "0 $LEN linear $STORE 0"
	st=$(status_get flf snapshot)
	if [[ $st == active ]]; then
		# the failed ranges rewritten through the view: the models are exact again
		for x in "${failed[@]}"; do
			wr1 "$V" 0 $x "${m[@]}" || fail "$P: rewrite of a failed range ($x) once the store is well"
		done
		same "$P: view = model A" "$V" "$MA"
		same "$P: jsnap = model B" "$dev" "$REF"
		check_cmd "$P: drain" msg flf drain
		check_eq "$P: production after drain = model B" "$(fsum "$REF")" "$(sum "$PROD")"
		check_cmd "$P: hydrate on" msg flf hydrate on
		if wait_hydrated flf 300; then ok "$P: hydration done"; else fail "$P: hydration done" "$(jsnap_status flf)"; fi
		same "$P: view after hydration = model A" "$V" "$MA"
		dm_remove flfv
		check_eq "$P: store alone = model A" "$(fsum "$MA")" "$(sum "$STORE")"
	elif [[ $st == invalid ]]; then
		ok "$P: the snapshot says it is invalid"
		check_fails "$P: the invalid view fails reads" dd if="$V" of=/dev/null bs=1M count=$MIB iflag=direct status=none
		dm_remove flfv
		check_fails "$P: no new view of the invalid snapshot" dmsetup create flfv --table "0 $LEN jsnap-view /dev/mapper/flf ro"
		dm_mknodes
		check_fails "$P: hydrate on refused on the invalid snapshot" msg flf hydrate on
		# production: the ranges of failed mirror writes rewritten through it
		for x in "${failed[@]}"; do wr1 "$dev" 0 $x "$REF" || fail "$P: rewrite of $x through production"; done
		same "$P: jsnap = model B" "$dev" "$REF"
		check_cmd "$P: drain" msg flf drain
		check_eq "$P: production after drain = model B" "$(fsum "$REF")" "$(sum "$PROD")"
		check_eq "$P: the snapshot stays invalid" invalid "$(status_get flf snapshot)"
	else
		fail "$P: snapshot active or invalid" "snapshot=$st"
		dm_remove flfv
	fi
	msg flf drop
	dm_remove flf
	dm_remove flfs
	cleanup_dm
done

no_splat_since_start "no kernel splat"
cleanup_dm
finish
