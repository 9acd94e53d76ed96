#!/usr/bin/env bash
# Build dm-jsnap.ko out of tree against the cached kernel.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$JSNAP_TOP"
[ -f "$KDIR/.build-ok" ] || { echo "build-module: kernel not built; run scripts/setup.sh" >&2; exit 1; }
mkdir -p rust/ffi/generated
gen=rust/ffi/generated/dm.rs
if [ ! -f "$gen" ] || [ rust/ffi/bindings.h -nt "$gen" ] || [ rust/ffi/shim.h -nt "$gen" ] \
   || [ scripts/gen-bindings.sh -nt "$gen" ] || [ "$KDIR/.build-ok" -nt "$gen" ]; then
	bash scripts/gen-bindings.sh "$KDIR" "$gen"
fi
make -C "$KDIR" M="$JSNAP_TOP" RUSTC="$RUSTC" BINDGEN="$BINDGEN" \
	LIBCLANG_PATH="$LIBCLANG_PATH" -j"$(nproc)" modules
