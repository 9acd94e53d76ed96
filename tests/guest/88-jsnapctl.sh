#!/usr/bin/env bash
# jsnapctl (tools/jsnapctl, issue 15 item 3): every subcommand against
# content oracles, and its refusals.  dmsetup is used here only as the
# independent oracle (table, status, ls), never to drive the devices.
#   - create (a blank journal only with --format; `--format` over another
#     geometry; the default length), status --json
#     equal to `dmsetup status` key by key (numbers as numbers) and exact
#     after known operations, the human-readable status;
#   - snapshot, view ro (the snapshot's data), view rw (writes reach the
#     view only), view mirror (writes reach both; production's never the
#     view), drain --wait (pending=0, production read directly equals the
#     model), hydrate on --wait (hydration=done, the store read directly
#     equals the snapshot), drop, split (the README's workflow), remove of
#     a view, remove --views;
#   - refusals, each with its exit status, one line on stderr naming the
#     problem, nothing on stdout, and nothing changed (pmem, production,
#     store checksums, `dmsetup ls`, the device's status): unknown
#     subcommand, missing device, bad chunk size, store too small, non-DAX
#     journal, a second snapshot, create on a journal of another geometry
#     without --format, snapshot without a store, remove/drop with a view
#     open, remove of a device that is not jsnap's.
. "$(dirname "$0")/lib.sh"
cleanup_dm

J=$JSNAP_TOP/tools/jsnapctl/target/release/jsnapctl
if [[ ! -x $J ]]; then
	fail "jsnapctl binary" "missing: $J (scripts/build-jsnapctl.sh builds it)"
	finish
fi
ok "jsnapctl binary present"
# (run from the guest's tmpfs: executing it from the host's file system
# costs 0.25 s a call under TCG)
cp "$J" "$SCRATCH/jsnapctl" && J=$SCRATCH/jsnapctl

MIB=4
LEN=$((MIB * 2048))
CH=64
REF=$SCRATCH/ref   # what the jsnap device (volume B) must return
SNAP=$SCRATCH/snap # what the snapshot (every view) must return
OUT=$SCRATCH/out ERR=$SCRATCH/err
P=$(dev_mm "$PROD") Jm=$(dev_mm "$PMEM") S=$(dev_mm "$STORE")
PROD_SECTORS=$(dev_sectors "$PROD")

# jc ARGS...: run jsnapctl; stdout in $OUT, stderr in $ERR, status in $rc
jc() {
	rc=0
	bounded 120 "$J" "$@" >"$OUT" 2>"$ERR" || rc=$?
}
# jc_ok NAME ERE ARGS...: jsnapctl succeeds, says nothing on stderr, and its
# stdout matches ERE
jc_ok() {
	local name=$1 re=$2
	shift 2
	jc "$@"
	if [[ $rc == 0 && ! -s $ERR ]] && grep -qE "$re" "$OUT"; then ok "$name"; else
		fail "$name" "jsnapctl $* -> rc=$rc stdout '$(tr '\n' '|' <"$OUT" | tail -c 400)' stderr '$(tr '\n' '|' <"$ERR")'"
	fi
}
# state: what a refusal must not change (pmem's superblocks, map, descriptor
# table and ring start, production, store, every dm table and status)
state() {
	dd if="$PMEM" of="$SCRATCH/st.pmem" bs=1M count=8 iflag=direct status=none
	dd if="$PROD" of="$SCRATCH/st.prod" bs=1M count=$MIB iflag=direct status=none
	dd if="$STORE" of="$SCRATCH/st.store" bs=1M count=$MIB iflag=direct status=none
	(cd "$SCRATCH" && cksum st.pmem st.prod st.store)
	dmsetup table 2>&1
	dmsetup status 2>&1
}
# refused NAME RC ERE ARGS...: jsnapctl exits RC with exactly one line on
# stderr matching ERE and nothing on stdout; then nothing changed
refused() {
	local name=$1 want=$2 re=$3 before after
	shift 3
	before=$(state)
	jc "$@"
	local lines
	lines=$(wc -l <"$ERR")
	if [[ $rc == "$want" && $lines == 1 && ! -s $OUT ]] && grep -qE "^jsnapctl: .*$re" "$ERR"; then
		ok "refused: $name (exit $rc: $(cat "$ERR"))"
	else
		fail "refused: $name" "jsnapctl $* -> rc=$rc (want $want), $lines stderr lines: '$(tr '\n' '|' <"$ERR")', stdout '$(tr '\n' '|' <"$OUT")'"
	fi
	after=$(state)
	if [[ $before == "$after" ]]; then ok "refused: $name: nothing changed"; else
		fail "refused: $name: nothing changed" "$(diff <(echo "$before") <(echo "$after") | tr '\n' '|')"
	fi
}
# json_check NAME DEV [KEY=VALUE...]: `status --json` of DEV holds every key
# of `dmsetup status` with its value (digits as JSON numbers, the rest as
# strings), the extra keys (name, target, device, sectors, chunk_sectors
# for jsnap; name, target, device, sectors, origin, origin_name for a
# view) and nothing else, and each KEY=VALUE given.  Recorded here (the
# outputs taken together), checked by json_verify in one python run
# (python starts in 1-3 s under TCG).
JSON_DIR=$SCRATCH/json
mkdir -p "$JSON_DIR"
njson=0
json_check() {
	local name=$1 dev=$2 d
	shift 2
	njson=$((njson + 1))
	d=$JSON_DIR/$(printf %03d $njson)
	mkdir -p "$d"
	echo "$name" >"$d/name"
	"$J" status "$dev" --json >"$d/json" 2>&1 || echo "(status --json exited $?)" >>"$d/json"
	dmsetup status "$dev" >"$d/status"
	dmsetup info -c --noheadings -o major,minor "$dev" | tr -d ' ' >"$d/info"
	printf '%s\n' "$@" >"$d/expect"
}
json_verify() {
	local verdict name reason seen=0
	while IFS=$'\t' read -r verdict name reason; do
		seen=$((seen + 1))
		if [[ $verdict == PASS ]]; then ok "$name"; else fail "$name" "$reason"; fi
	done < <(python3 - "$JSON_DIR" <<'PY'
import json, os, sys
top = sys.argv[1]
def val(v):
    return int(v) if v.isdigit() else v
for case in sorted(os.listdir(top)):
    d = os.path.join(top, case)
    rd = lambda f: open(os.path.join(d, f)).read()
    name = rd("name").strip()
    bad = []
    try:
        j = json.loads(rd("json"))
    except Exception as e:
        print("FAIL\t%s\tnot JSON: %s: %r" % (name, e, rd("json")[:300]))
        continue
    fields = rd("status").split()
    target = fields[2]
    for tok in fields[3:]:
        k, v = tok.split("=", 1)
        if k not in j or j[k] != val(v) or type(j[k]) is not type(val(v)):
            bad.append("%s: json %r, dmsetup %s" % (k, j.get(k), v))
    extra = {"name", "target", "device", "sectors"} | ({"chunk_sectors"} if target == "jsnap" else {"origin", "origin_name"})
    keys = {t.split("=", 1)[0] for t in fields[3:]} | extra
    if set(j) != keys:
        bad.append("keys differ: %s" % sorted(set(j) ^ keys))
    if j.get("target") != target or j.get("sectors") != int(fields[1]):
        bad.append("target/sectors %r %r" % (j.get("target"), j.get("sectors")))
    if j.get("device") != rd("info").strip():
        bad.append("device %r, dmsetup info %r" % (j.get("device"), rd("info").strip()))
    for kv in rd("expect").split():
        k, v = kv.split("=", 1)
        if j.get(k) != val(v) or type(j.get(k)) is not type(val(v)):
            bad.append("%s=%r, want %s" % (k, j.get(k), v))
    print("%s\t%s\t%s" % ("FAIL" if bad else "PASS", name, "; ".join(bad)))
PY
	)
	check_eq "every status --json case verified" "$njson" "$seen"
}
# node_ok NAME DEV: /dev/mapper/DEV is the block node of DEV
node_ok() {
	local want have
	want=$(dmsetup info -c --noheadings -o major,minor "$2" | tr -d ' ')
	have=$([[ -b /dev/mapper/$2 ]] && dev_mm "/dev/mapper/$2")
	check_eq "$1" "$want" "$have"
}

# ---- refusals before any device exists -----------------------------------------
note "t=${SECONDS}s"
zero_journal_sb
head -c $((MIB << 20)) /dev/urandom >"$REF"
dd if="$REF" of="$PROD" bs=1M oflag=direct status=none
dd if=/dev/zero of="$STORE" bs=1M count=$MIB oflag=direct status=none
refused "unknown subcommand" 2 "unrecognized subcommand 'frobnicate'" frobnicate t
refused "missing production device" 3 "production device /dev/nonexistent does not exist" \
	create t --prod /dev/nonexistent --journal "$PMEM" --store "$STORE" --length $LEN
refused "production not a block device" 3 "production device /etc/passwd is not a block device" \
	create t --prod /etc/passwd --journal "$PMEM" --store "$STORE" --length $LEN
refused "chunk size 12" 2 "chunk size 12 is not a power of two" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk 12 --length $LEN
refused "chunk size 4" 2 "chunk size 4 is not a power of two from 8" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk 4 --length $LEN
refused "store too small" 3 "store $SPARE is too small: [0-9]+ sectors .*, the volume needs $PROD_SECTORS" \
	create t --prod "$PROD" --journal "$PMEM" --store "$SPARE"
refused "journal without DAX" 3 "journal $SPARE does not support DAX" \
	create t --prod "$PROD" --journal "$SPARE" --store "$STORE" --length $LEN
# a refusal only the kernel knows (asynchronous DAX): its reason, from the
# kernel log, and the empty device removed again
if [[ -n $VPMEM ]]; then
	dd if=/dev/zero of="$VPMEM" bs=4096 count=2 oflag=direct status=none
	refused "journal on virtio-pmem (the kernel's reason)" 1 \
		"the kernel refused the table: Asynchronous DAX \(e.g. virtio-pmem\) cannot hold the journal" \
		create t --prod "$PROD" --journal "$VPMEM" --store "$STORE" --length $LEN --format
else
	fail "journal on virtio-pmem" "no virtio-pmem device in this VM (\$VPMEM unset)"
	fail "journal on virtio-pmem: nothing changed" "not run"
fi
refused "bad watermarks" 2 "low_watermark must be below high_watermark" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --length $LEN --high-watermark 20 --low-watermark 30
refused "bad bypass threshold" 2 "Invalid bypass: must be 8\.\.1048576 sectors" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --length $LEN --bypass 7
refused "bad compact percentage" 2 "Invalid compact: must be 0\.\.90 \(percent\)" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --length $LEN --compact 91

# ---- create on a blank journal: only with --format ------------------------------------
note "t=${SECONDS}s"
refused "create on a blank journal without --format" 3 "holds no jsnap journal \(its superblock area is zero\): --format initialises it" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk $CH --length $LEN --no-destage
jc_ok "create --format on a blank journal" "^created /dev/mapper/t \([0-9]+:[0-9]+\): 4.00 MiB \($LEN sectors\), $CH-sector chunks, journal $PMEM formatted \(--format\), store $STORE$" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk $CH --length $LEN --no-destage --format
check_eq "table (no format feature was passed)" "0 $LEN jsnap $P $Jm $S $CH 1 no_destage" "$(dmsetup table t)"
node_ok "/dev/mapper/t made" t
same "jsnap device reads production" /dev/mapper/t "$REF"
json_check "status --json after create" t journal_used=0 pending=0 snapshot=none preserved=0 \
	chunks=$((LEN / CH)) hydration=off errors=0 state=ok extents=0 snap_extents=0 deferred=0 views=0 \
	written_bytes=0 destaged_bytes=0 name=t target=jsnap sectors=$LEN chunk_sectors=$CH
jc_ok "status (human)" "^  snapshot:   none$" status t
# output into a closed pipe: the tool ends quietly (SIGPIPE), no panic message
# (stdout a pipe whose read end is closed: the first write fails)
check_eq "status into a closed pipe: killed by SIGPIPE, nothing on stderr" "-13 0" \
	"$(python3 -c 'import os, subprocess, sys
r, w = os.pipe(); os.close(r)
p = subprocess.run([sys.argv[1], "status", "t"], stdout=w, stderr=subprocess.PIPE)
print(p.returncode, len(p.stderr))' "$J")"
if grep -q "^t: /dev/mapper/t ([0-9]*:[0-9]*), 4.00 MiB, chunk 32.0 KiB$" "$OUT" &&
	grep -q "^  journal:    0 B of .* used (0.0%), 0 records pending" "$OUT"; then ok "status (human): sizes"; else
	fail "status (human): sizes" "$(tr '\n' '|' <"$OUT")"
fi
refused "create over an existing name" 3 "a device-mapper device named t already exists" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --length $LEN

# four writes at known places (no destage: they stay in the journal)
w=0
for a in "0 8" "1000 64" "3000 128" "6000 256"; do
	set -- $a
	wr1 /dev/mapper/t 0 "$1" "$2" "$REF" || fail "write $a"
	w=$((w + $2 * 512))
done
json_check "status --json after 4 writes" t pending=4 extents=4 written_bytes=$w destaged_bytes=0 snapshot=none

# ---- changed (changed-block tracking) -------------------------------------------------------
# the four writes in 64-sector chunks: 0 | 15-16 | 46-48 | 93-97
CHANGED_RUNS=$'0 1\n15 2\n46 3\n93 5'
jc_ok "changed: the runs of the four writes" "^# t: 11 chunks of 64 sectors changed in the current interval \(since snapshot 0\), chunks 0\.\.$((LEN / CH)), 4 runs \(chunk start, chunk count\)$" changed t
check_eq "changed: runs as the kernel's message lists them" "$CHANGED_RUNS" "$(grep -v '^#' "$OUT")"
check_eq "changed: the kernel's own answer" "current since=0 chunk_sectors=64 first=0 end=$((LEN / CH)) next=- runs=4 changed=11"$'\n'"$CHANGED_RUNS" \
	"$(dmsetup message t 0 changed)"
jc_ok "changed --sectors" "^# t: 11 chunks" changed t --sectors
check_eq "changed --sectors: sector runs" $'0 64\n960 128\n2944 192\n5952 320' "$(grep -v '^#' "$OUT")"
jc_ok "changed --json --first 16 --count 40" '"runs": \[\[16, 1\], \[46, 3\]\]' changed t --json --first 16 --count 40
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (d["interval"] == "current" and d["since"] == 0 and d["changed"] == 4 and d["first"] == 16 and d["end"] == 56 and d["unit"] == "chunks"))' "$OUT"; then
	ok "changed --json: fields"
else
	fail "changed --json: fields" "$(cat "$OUT")"
fi
refused "changed --previous before any snapshot" 1 "no snapshot was taken since the journal was formatted" changed t --previous
refused "changed --first beyond the volume" 3 "--first $((LEN / CH)) is beyond the last chunk of t \($((LEN / CH - 1))\)" changed t --first $((LEN / CH))
refused "changed --count 0" 3 "--count must be at least 1" changed t --count 0

# ---- snapshot, ro view ----------------------------------------------------------------
note "t=${SECONDS}s"
jc_ok "snapshot" "^snapshot of t taken$" snapshot t
cp "$REF" "$SNAP"
json_check "status --json after snapshot" t snapshot=active preserved=0 hydration=off views=0 pending=4
refused "second snapshot" 3 "t already has a snapshot \(active\): jsnapctl drop t first" snapshot t
jc_ok "changed --previous after the snapshot" "^# t: 11 chunks of 64 sectors changed in the previous interval" changed t --previous
check_eq "changed --previous: the four writes" "$CHANGED_RUNS" "$(grep -v '^#' "$OUT")"
jc_ok "changed --previous --since 0 (the interval an incremental backup expects)" "^# t: 11 chunks of 64 sectors changed in the previous interval \(since snapshot 0\)" changed t --previous --since 0
refused "changed --previous --since 5 (another interval)" 3 "the previous interval of t began with snapshot 0, not 5: a snapshot was taken since" changed t --previous --since 5
jc_ok "changed after the snapshot: nothing yet" "^# t: 0 chunks of 64 sectors changed in the current interval" changed t
# post-snapshot writes over the pre-snapshot ones and elsewhere
for a in "4 16" "1010 100" "4000 512" "7000 700"; do
	set -- $a
	wr1 /dev/mapper/t 0 "$1" "$2" "$REF" || fail "write $a"
done
jc_ok "view ro" "^created /dev/mapper/v \([0-9]+:[0-9]+\): ro view of the snapshot of t$" view t v ro
check_eq "view table" "0 $LEN jsnap-view $(dev_mm /dev/mapper/t) ro" "$(dmsetup table v)"
node_ok "/dev/mapper/v made" v
same "ro view reads the snapshot" /dev/mapper/v "$SNAP"
same "jsnap device unchanged by the view" /dev/mapper/t "$REF"
check_fails "ro view refuses writes" dd if=/dev/zero of=/dev/mapper/v bs=4096 count=1 oflag=direct status=none
jc_ok "view status (human)" "^v: /dev/mapper/v \([0-9]+:[0-9]+\), 4.00 MiB, ro view of the snapshot of t \([0-9]+:[0-9]+\), snapshot active$" status v
json_check "view status --json" v mode=ro snapshot_active=1 origin="$(dev_mm /dev/mapper/t)" origin_name=t target=jsnap-view
json_check "status --json with a view" t views=1 snapshot=active
refused "remove with a view open" 3 "t has 1 open view\(s\) \(v\): remove them first, or use --views" remove t
refused "drop with a view open" 3 "t has 1 open view\(s\) \(v\): remove them first" drop t
refused "view name taken" 3 "a device-mapper device named v already exists" view t v rw

# ---- export / unexport (nvmet over TCP on the loopback; the two-host case is tests/twohost.sh)
note "t=${SECONDS}s"
ip link set lo up
NQN=nqn.2026-12.dev.jsnap:v
CFG=/sys/kernel/config/nvmet
jc_ok "export the ro view" "^exported /dev/mapper/v \(ro view of [0-9]+:[0-9]+\) as $NQN on tcp 127.0.0.1:4420 \(on the other host: nvme connect -t tcp -a 127.0.0.1 -s 4420 -n $NQN\)$" \
	export v --addr 127.0.0.1
port=$(for p in "$CFG"/ports/*; do [[ -e $p/subsystems/$NQN ]] && basename "$p"; done | head -n1)
check_eq "export: configfs (device, enabled, any host, tcp port)" "/dev/mapper/v 1 1 tcp ipv4 127.0.0.1 4420" \
	"$(cat "$CFG/subsystems/$NQN/namespaces/1/device_path" "$CFG/subsystems/$NQN/namespaces/1/enable" \
		"$CFG/subsystems/$NQN/attr_allow_any_host" "$CFG/ports/${port:-none}/addr_trtype" "$CFG/ports/${port:-none}/addr_adrfam" \
		"$CFG/ports/${port:-none}/addr_traddr" "$CFG/ports/${port:-none}/addr_trsvcid" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
refused "export twice" 3 "$NQN is already exported \(device /dev/mapper/v\): jsnapctl unexport first" export v --addr 127.0.0.1
dm_create xlin "0 8 linear $SPARE 0" >/dev/null || fail "create a linear device"
refused "export of a device that is not jsnap's" 3 "xlin is not a jsnap or jsnap-view device \(its table has: linear\)" export xlin --addr 127.0.0.1
dm_remove xlin
refused "export of a missing device" 3 "there is no device-mapper device named nope" export nope --addr 127.0.0.1
jc export v --addr not-an-address
check_eq "export with a bad address: usage error (exit 2), one line" "2 1" "$rc $(wc -l <"$ERR")"
# connect to it on this host and read the snapshot through NVMe/TCP
nvme_dev=
before_nvme=$(ls /dev/nvme*n* 2>/dev/null | sort)
if bounded 60 nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$NQN" >"$OUT" 2>"$ERR"; then
	for _ in $(seq 40); do
		nvme_dev=$(comm -13 <(echo "$before_nvme") <(ls /dev/nvme*n* 2>/dev/null | sort) | grep -E 'n[0-9]+$' | head -n1)
		[[ -n $nvme_dev && -b $nvme_dev ]] && break
		sleep 0.5
	done
	if [[ -n $nvme_dev && -b $nvme_dev ]]; then
		ok "nvme connect: $nvme_dev"
		same "the export reads the snapshot over NVMe/TCP" "$nvme_dev" "$SNAP"
	else
		fail "nvme connect: namespace found" "$(ls /dev/nvme* 2>&1 | tr '\n' ' ')"
		fail "the export reads the snapshot over NVMe/TCP" "no device"
	fi
	bounded 60 nvme disconnect -n "$NQN" >/dev/null 2>&1
else
	fail "nvme connect" "$(tr '\n' '|' <"$ERR")"
	fail "the export reads the snapshot over NVMe/TCP" "no connection"
fi
jc_ok "unexport" "^unexported /dev/mapper/v \($NQN, was on tcp 127.0.0.1:4420\)$" unexport v
check_eq "unexport: subsystem and its (now empty) port gone" "0 0" \
	"$(ls -d "$CFG/subsystems/$NQN" 2>/dev/null | wc -l) $(ls -d "$CFG/ports/${port:-none}" 2>/dev/null | wc -l)"
refused "unexport of a device not exported" 3 "/dev/mapper/v is not exported" unexport v
jc_ok "remove the ro view" "^removed view v" remove v
check_eq "view gone (dmsetup, node)" "0 0" "$(dmsetup ls | grep -c '^v\s') $(ls /dev/mapper/v 2>/dev/null | wc -l)"

# ---- rw view: writes reach the view only ----------------------------------------------
note "t=${SECONDS}s"
jc_ok "view rw" "rw view of the snapshot of t$" view t vw rw
for a in "2 30" "5000 64" "6500 300"; do
	set -- $a
	wr1 /dev/mapper/vw 0 "$1" "$2" "$SNAP" || fail "rw view write $a"
done
same "rw view reads the snapshot plus its writes" /dev/mapper/vw "$SNAP"
same "rw view writes do not reach production" /dev/mapper/t "$REF"
jc_ok "remove the rw view" "^removed view vw" remove vw

# ---- mirror view: A's writes reach B, B's never A ---------------------------------------
note "t=${SECONDS}s"
jc_ok "view mirror" "mirror view of the snapshot of t$" view t m mirror
same "mirror view reads the snapshot (with the rw view's writes)" /dev/mapper/m "$SNAP"
for a in "100 8" "5010 40" "2000 1024"; do
	set -- $a
	wr1 /dev/mapper/m 0 "$1" "$2" "$SNAP" "$REF" || fail "mirror write $a"
done
wr1 /dev/mapper/t 0 5020 40 "$REF" || fail "write to B"
same "mirror writes reach the mirror view" /dev/mapper/m "$SNAP"
same "mirror writes reach production, B's own writes too" /dev/mapper/t "$REF"
jc_ok "remove the mirror view" "^removed view m" remove m

# ---- drain --wait, hydrate --wait, drop ----------------------------------------------------
note "t=${SECONDS}s"
jc_ok "drain --wait" "^journal of t drained: pending=0" drain t --wait
if grep -qE "^drain t: 100.0% .* pending 0$" "$OUT"; then ok "drain --wait: progress lines"; else
	fail "drain --wait: progress lines" "$(tr '\n' '|' <"$OUT")"
fi
json_check "status --json after drain" t pending=0 journal_used=0 extents=0 snap_extents=0 deferred=0
same "production (read directly) after drain" "$PROD" "$REF"
jc_ok "hydrate on --wait" "^hydration of t done: $((LEN / CH)) chunks" hydrate t on --wait
if grep -qE "^hydrate t: 100.0% $((LEN / CH))/$((LEN / CH)) chunks" "$OUT"; then ok "hydrate --wait: progress lines"; else
	fail "hydrate --wait: progress lines" "$(tr '\n' '|' <"$OUT")"
fi
json_check "status --json after hydration" t hydration=done preserved=$((LEN / CH)) chunks=$((LEN / CH)) snapshot=active
same "store (read directly) holds the snapshot" "$STORE" "$SNAP"
jc_ok "hydrate off" "^hydration of t switched off$" hydrate t off
jc_ok "drop" "^snapshot of t dropped$" drop t
json_check "status --json after drop" t snapshot=none preserved=0 hydration=off views=0
refused "drop without a snapshot" 3 "t has no snapshot" drop t
refused "view without a snapshot" 3 "t has no snapshot: jsnapctl snapshot t first" view t v ro

# ---- remove --views -------------------------------------------------------------------------
note "t=${SECONDS}s"
jc_ok "snapshot again" "^snapshot of t taken$" snapshot t
jc_ok "view ro again" "ro view" view t v2 ro
refused "remove with a view open (again)" 3 "t has 1 open view\(s\) \(v2\)" remove t
jc_ok "remove --views" "^removed view v2.*" remove t --views
if grep -q "^removed view v2$" "$OUT" && grep -q "^removed t" "$OUT"; then ok "remove --views: both removed"; else
	fail "remove --views: both removed" "$(tr '\n' '|' <"$OUT")"
fi
check_eq "no device left" "No devices found" "$(dmsetup ls 2>&1)"
check_eq "no node left" "" "$(ls /dev/mapper/ | grep -vx control)"

# ---- another geometry: refused without --format, then --format; the default length --------
note "t=${SECONDS}s"
refused "create on a journal of another chunk size" 3 \
	"journal $PMEM was formatted with $CH-sector chunks, not 128 \(--format overwrites it\)" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk 128 --length $LEN
refused "create on a journal of another length" 3 \
	"journal $PMEM belongs to a target of $LEN sectors, not $PROD_SECTORS" \
	create t --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk $CH
jc_ok "create --format, no store, default length" \
	"^created /dev/mapper/t2 .*\($PROD_SECTORS sectors\), 128-sector chunks, journal $PMEM formatted \(--format\), no store$" \
	create t2 --prod "$PROD" --journal "$PMEM" --store - --chunk 128 --format
check_eq "table of the store-less device" "0 $PROD_SECTORS jsnap $P $Jm - 128" "$(dmsetup table t2)"
json_check "status --json of the store-less device" t2 sectors=$PROD_SECTORS chunk_sectors=128 \
	chunks=$((PROD_SECTORS / 128)) snapshot=none pending=0 written_bytes=0
same "data through the re-created device" /dev/mapper/t2 "$REF"
refused "snapshot without a store" 3 "t2 has no store \(created with --store -\): it cannot take a snapshot" snapshot t2
refused "split without a store" 3 "t2 has no store" split t2 A
jc_ok "remove the store-less device" "^removed t2$" remove t2

# ---- split (the README's one-way mirror workflow) ---------------------------------------------
note "t=${SECONDS}s"
dd if=/dev/zero of="$STORE" bs=1M count=$MIB oflag=direct status=none
jc_ok "create for the split (--format, chunk 128)" "formatted \(--format\), store $STORE$" \
	create B --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk 128 --length $LEN --format
wr1 /dev/mapper/B 0 777 333 "$REF" || fail "write before the split"
cp "$REF" "$SNAP"
jc_ok "split --wait" "^hydration of B done: $((LEN / 128)) chunks" split B A --wait
if grep -q "^split B: snapshot taken; volume A = /dev/mapper/A (mirror" "$OUT"; then ok "split: says what it did"; else
	fail "split: says what it did" "$(tr '\n' '|' <"$OUT")"
fi
check_eq "split: A is a mirror view of B" "0 $LEN jsnap-view $(dev_mm /dev/mapper/B) mirror" "$(dmsetup table A)"
json_check "split: status --json" B snapshot=active hydration=done preserved=$((LEN / 128)) views=1
same "split: the store (read directly) holds B at the split" "$STORE" "$SNAP"
wr1 /dev/mapper/A 0 3000 50 "$SNAP" "$REF" || fail "write to A"
wr1 /dev/mapper/B 0 3010 50 "$REF" || fail "write to B"
same "split: A has its writes, not B's" /dev/mapper/A "$SNAP"
same "split: B has A's writes and its own" /dev/mapper/B "$REF"
refused "split with a snapshot already taken" 3 "B already has a snapshot \(active\)" split B A2
jc_ok "split: remove A" "^removed view A" remove A
jc_ok "split: drop" "dropped" drop B

# ---- hydrate --wait fails when the snapshot turns invalid (the store fails) ----------------
note "t=${SECONDS}s"
jc_ok "split: remove B (its journal keeps A's and B's writes)" "^removed B \([0-9]+ journal records stay on $Jm" remove B
dm_create errstore "0 $LEN error" >/dev/null || fail "create an error target as store"
jc_ok "create over a failing store" "journal $PMEM replayed, store /dev/mapper/errstore$" \
	create te --prod "$PROD" --journal "$PMEM" --store /dev/mapper/errstore --chunk 128 --length $LEN
jc_ok "snapshot (failing store)" "^snapshot of te taken$" snapshot te
jc hydrate te on --wait
if [[ $rc == 4 && $(wc -l <"$ERR") == 1 ]] && grep -q "^jsnapctl: the snapshot of te became invalid while hydrating$" "$ERR"; then
	ok "hydrate --wait fails when the snapshot turns invalid (exit 4: $(cat "$ERR"))"
else
	fail "hydrate --wait fails when the snapshot turns invalid" "rc=$rc stderr '$(tr '\n' '|' <"$ERR")'"
fi
json_check "status --json of the invalid snapshot" te snapshot=invalid state=degraded preserved=0
refused "view of an invalid snapshot" 3 "the snapshot of te is invalid: it cannot be viewed" view te v ro
jc_ok "drop the invalid snapshot" "^snapshot of te dropped$" drop te
jc_ok "remove te" "^removed te( \([0-9]+ journal records stay on $Jm: creating it again replays them\))?$" remove te
dm_remove errstore || fail "remove the error target"
jc_ok "re-create B" "journal $PMEM replayed" \
	create B --prod "$PROD" --journal "$PMEM" --store "$STORE" --chunk 128 --length $LEN

# ---- remove is for jsnap devices only ---------------------------------------------------------
note "t=${SECONDS}s"
dm_create lin "0 2048 linear $SPARE 0" >/dev/null || fail "create a linear device"
refused "remove of a linear device" 3 "lin is not a jsnap or jsnap-view device \(its table has: linear\)" remove lin
refused "status of a missing device" 3 "there is no device-mapper device named nosuch" status nosuch
dm_remove lin || fail "remove the linear device"
# on a terminal: a bar redrawn in place
script -qec "$J drain B --wait" "$SCRATCH/tty.out" >/dev/null 2>&1
if grep -qa $'\rdrain B \[##############################\] 100.0% .* pending 0' "$SCRATCH/tty.out" &&
	grep -qa "^journal of B drained: pending=0" "$SCRATCH/tty.out"; then ok "drain --wait on a terminal: progress bar"; else
	fail "drain --wait on a terminal: progress bar" "$(tr '\r\n' '^|' <"$SCRATCH/tty.out" | tail -c 400)"
fi
jc_ok "drain (no --wait)" "^journal of B drained$" drain B
json_check "status --json after drain" B pending=0 snapshot=none views=0
jc_ok "remove B" "^removed B$" remove B
check_eq "nothing left" "No devices found" "$(dmsetup ls 2>&1)"
same "production after everything" "$PROD" "$REF"
json_verify
no_splat_since_start "no kernel splat"
finish
