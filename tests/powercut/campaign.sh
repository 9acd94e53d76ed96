#!/usr/bin/env bash
# tests/powercut/campaign.sh [LOGDIR]: the long power-cut campaign of issue
# 11, 201 cuts across the scenarios, one stage after the other (not part of
# `make check`; about 2.5 hours on the 2-core machine alone):
#
#   journal --log-writes --cuts 110 --chunk 4096   (volatile disk cache, shadow pmem)
#   snap    --log-writes --cuts 25                  (store under dm-log-writes)
#   fs      --cuts 20                               (ext4 on jsnap)
#   mirror  --log-writes --cuts 10                  (+1 between the halves)
#   journal --cuts 35 --chunk 8 --start 16          (another geometry)
#
# Each stage's output goes to LOGDIR/log-STAGE.txt (default: a new
# directory under /tmp); one line per stage with its summary goes to
# stdout, then a tally: cuts, failed checks, and the failed checks that
# name lost, stale, torn or garbage blocks.  The modules are those of
# tests/powercut.sh (JSNAP_MODULE, JSNAP_FAULT_MODULE, or the tree's).
# CAMPAIGN_PAUSE=FILE waits for FILE to exist before the second stage
# (to run something else on the idle machine in between).
# Exit status: 0 if every stage passed.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
logs=${1:-$(mktemp -d "${TMPDIR:-/tmp}/jsnap-campaign.XXXXXX")}
mkdir -p "$logs"
cd "$top"
rc=0
stage() {
	local name=$1 t0=$SECONDS r
	shift
	echo "=== $name: tests/powercut.sh $* (start $(date -u +%T))"
	bash tests/powercut.sh "$@" >"$logs/log-$name.txt" 2>&1
	r=$?
	((r == 0)) || rc=1
	echo "=== $name: exit $r after $((SECONDS - t0)) s: $(tail -n1 "$logs/log-$name.txt")"
}
echo "# campaign: $(git log --oneline -1 2>/dev/null), logs in $logs"
stage journal-lw --scenario journal --log-writes --cuts 110 --chunk 4096 --seed 2101
if [[ -n ${CAMPAIGN_PAUSE:-} ]]; then
	echo "# campaign: waiting for $CAMPAIGN_PAUSE"
	while [[ ! -e $CAMPAIGN_PAUSE ]]; do sleep 5; done
fi
stage snap-lw --scenario snap --log-writes --cuts 25 --seed 2102
stage fs --scenario fs --cuts 20 --seed 2103
stage mirror-lw --scenario mirror --log-writes --cuts 10 --seed 2104
stage journal --scenario journal --cuts 35 --chunk 8 --start 16 --seed 2105
echo "# campaign: tally"
for f in "$logs"/log-*.txt; do
	printf '%s: %s; failed checks %d, of which naming bad blocks %d\n' \
		"$(basename "$f" .txt)" "$(tail -n1 "$f")" \
		"$(grep -c '^not ok' "$f")" \
		"$(grep '^not ok' "$f" | grep -ciE 'lost|stale|torn|garbage|bad block')"
done
exit $rc
