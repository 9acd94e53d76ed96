#!/usr/bin/env bash
# Guest side of tests/powercut.sh (runs in a qemu/vm.sh guest as root):
#
#   guest.sh SCENARIO MODE ARGS...
#
# loads the shared helpers (qemu/guest-lib.sh, tests/powercut/guest-lib.sh)
# and runs the scenario's part, tests/powercut/guest-SCENARIO.sh, which
# documents its MODEs and ARGS (journal, snap, mirror, fs, windows).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JSNAP_TOP=${JSNAP_TOP:-$(cd "$here/../.." && pwd)}
# shellcheck source=../../qemu/guest-lib.sh
. "$JSNAP_TOP/qemu/guest-lib.sh"
# shellcheck source=guest-lib.sh
. "$here/guest-lib.sh"
scenario=${1:-}
case $scenario in
journal | snap | mirror | fs | windows) shift ;;
*) echo "guest.sh: bad scenario '$scenario'" >&2; exit 2 ;;
esac
# shellcheck source=/dev/null
. "$here/guest-$scenario.sh"
