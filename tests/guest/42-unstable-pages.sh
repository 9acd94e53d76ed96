#!/usr/bin/env bash
# Writes whose pages change while they are in flight (issue 10 item 3;
# DESIGN.md §2.3 "Crash"/"Suspend/resume/reload": reloading the same table
# recovers every acknowledged write and a second recovery changes nothing).
#
# The device does not ask for stable pages, so an O_DIRECT buffer rewritten
# by another thread during the write is legal: the content that lands is
# unspecified, but it must be ONE content.  The helper (unstable.c) writes
# 64 KiB or 1 MiB at X again and again from one buffer that a second thread
# keeps rewriting.  Then, per round:
#   V1 = X read through jsnap (whatever the last write left);
#   suspend + reload of the identical table (no format) + resume: replay of
#   the journal (features no_destage: the data is still there);
#   V2 = X read again: V1 == V2 byte for byte (a record whose CRC was
#   computed over other bytes than reached pmem is dropped by replay, and
#   an older write reappears); a second reload gives V2 again;
#   drain: production at X == V1.
. "$(dirname "$0")/lib.sh"
cleanup_dm

MIB=64
LEN=$((MIB * 2048))
X=2048 # sector of the writes (1 MiB)
SECS=${UNSTABLE_SECS:-2}
ROUNDS=${UNSTABLE_ROUNDS:-3}
here=$(cd "$(dirname "$0")" && pwd)
TOOL=$SCRATCH/unstable

if ! out=$(gcc -O2 -Wall -pthread -o "$TOOL" "$here/unstable.c" 2>&1); then
	fail "compile unstable.c" "$(tr '\n' ' ' <<<"$out")"
	finish
fi
ok "compile unstable.c"

T_FMT=$(jsnap_table $LEN "$PROD" "$PMEM" - "$CHUNK" format no_destage)
T=$(jsnap_table $LEN "$PROD" "$PMEM" - "$CHUNK" no_destage)
dev=$(dm_create j42 "$T_FMT") || { fail "create jsnap (format no_destage)"; finish; }
ok "create jsnap (format no_destage)"

# reload_same: suspend, load the identical table (no format), resume
reload_same() {
	dmsetup suspend j42 && dmsetup reload j42 --table "$T" && dmsetup resume j42
}

for size in 65536 1048576; do
	n=$((size / 512))
	kib=$((size >> 10))
	for ((r = 1; r <= ROUNDS; r++)); do
		tag="${kib} KiB round $r"
		if ! out=$(timeout 120 "$TOOL" "$dev" $((X * 512)) "$size" "$SECS" 2>&1); then
			fail "$tag: racing writes" "$(tr '\n' ' ' <<<"$out")"
			continue
		fi
		note "$tag: $out"
		rd "$dev" $X $n >"$SCRATCH/v1" || { fail "$tag: read V1"; continue; }
		pend=$(status_get j42 pending)
		if ((pend > 0)); then ok "$tag: the writes are in the journal (pending=$pend)"; else
			fail "$tag: the writes are in the journal" "pending=$pend"
		fi
		dmesg_mark
		if ! out=$(reload_same 2>&1); then
			fail "$tag: suspend + reload + resume" "$(tr '\n' ' ' <<<"$out")"
			dmesg | tail -n 10 | sed 's/^/#   /'
			dmsetup resume j42 >/dev/null 2>&1
			continue
		fi
		ok "$tag: suspend + reload (same table) + resume"
		rd "$dev" $X $n >"$SCRATCH/v2" || { fail "$tag: read V2"; continue; }
		if cmp -s "$SCRATCH/v1" "$SCRATCH/v2"; then
			ok "$tag: content after replay equals the content before (V1 == V2)"
		else
			fail "$tag: content after replay equals the content before (V1 == V2)" \
				"$(cmp -l "$SCRATCH/v1" "$SCRATCH/v2" | wc -l) bytes differ, first at byte $(cmp "$SCRATCH/v1" "$SCRATCH/v2" | sed -E 's/.*(byte|char) ([0-9]+).*/\2/')"
		fi
		# a second recovery changes nothing
		if reload_same >/dev/null 2>&1 && rd "$dev" $X $n >"$SCRATCH/v3" && cmp -s "$SCRATCH/v2" "$SCRATCH/v3"; then
			ok "$tag: second reload gives the same content (V3 == V2)"
		else
			fail "$tag: second reload gives the same content (V3 == V2)"
		fi
		check_eq "$tag: state=ok errors=0 after reload" "ok 0" "$(status_get j42 state) $(status_get j42 errors)"
		if ! out=$(msg j42 drain 2>&1); then
			fail "$tag: drain" "$out"
			continue
		fi
		rd "$PROD" $X $n >"$SCRATCH/p" || { fail "$tag: read production"; continue; }
		if cmp -s "$SCRATCH/v1" "$SCRATCH/p"; then
			ok "$tag: production after drain equals V1"
		else
			fail "$tag: production after drain equals V1" "$(cmp -l "$SCRATCH/v1" "$SCRATCH/p" | wc -l) bytes differ"
		fi
	done
done

dm_remove j42 || fail "remove"
no_splat_since_start "no kernel splat"
finish
