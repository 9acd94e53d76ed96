#!/usr/bin/env bash
# Generate Rust bindings for the headers the kernel's own Rust bindings lack
# (device-mapper, DAX, dm-io, dm-kcopyd) and for the C shim, with exactly
# the clang flags the kernel used for rust/bindings.  Types the kernel's
# bindings already have are not generated again: the output starts with
# `use kernel::bindings::*`, so `struct bio` is one type everywhere.
#
# usage: gen-bindings.sh KDIR OUT
set -euo pipefail
kdir=$1 out=$(realpath -m "$2")
src=$(cd "$(dirname "$0")/../rust/ffi" && pwd)
. "$(dirname "$0")/env.sh"
cmdfile=$kdir/rust/bindings/.bindings_generated.rs.cmd
[ -f "$cmdfile" ] || { echo "gen-bindings: $cmdfile missing (kernel not built?)" >&2; exit 1; }
# The clang flags are everything after " -- " on the saved command line,
# minus the dependency-file option.
cflags=$(head -n1 "$cmdfile" | sed -e 's/^[^=]*:= //' -e 's/.* -- //' -e 's/-Wp,-MMD,[^ ]*//' \
	-e 's/; sed .*//')
tmp=$out.tmp
(cd "$kdir" && eval "\"$BINDGEN\" \"$src/bindings.h\" \
	--allowlist-file '.*/include/linux/(device-mapper|dax|dm-io|dm-kcopyd)\\.h' \
	--allowlist-file '.*/rust/ffi/shim\\.h' \
	--no-recursive-allowlist \
	--blocklist-function 'dm_early_create' \
	--rust-target 1.85 --use-core --with-derive-default --ctypes-prefix ffi \
	--no-layout-tests --no-debug '.*' --no-doc-comments \
	--raw-line 'pub use kernel::bindings::*;' --raw-line 'use kernel::ffi;' \
	-o \"$tmp\" -- $cflags -DMODULE -I\"$src\"")
mv "$tmp" "$out"
