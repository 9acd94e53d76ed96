#!/usr/bin/env bash
# Build dm-jsnap.ko out of tree against the cached kernel.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$JSNAP_TOP"
[ -f "$KDIR/.build-ok" ] || { echo "build-module: kernel not built; run scripts/setup.sh" >&2; exit 1; }
mkdir -p rust/ffi/generated
gen=rust/ffi/generated/dm.rs
# Built last against another kernel tree (the debug variant, or a new
# fragment): bindings and objects must be made again.
stamp=rust/ffi/generated/kdir
if [ "$(cat "$stamp" 2>/dev/null)" != "$KDIR" ]; then
	if [ -f "$stamp" ] && [ -d "$(cat "$stamp")" ]; then
		make -C "$(cat "$stamp")" M="$JSNAP_TOP" clean >/dev/null 2>&1 || true
	fi
	rm -f "$gen" dm-jsnap.ko
	find rust -name '*.o' -delete
fi
if [ ! -f "$gen" ] || [ rust/ffi/bindings.h -nt "$gen" ] || [ rust/ffi/shim.h -nt "$gen" ] \
   || [ scripts/gen-bindings.sh -nt "$gen" ] || [ "$KDIR/.build-ok" -nt "$gen" ]; then
	bash scripts/gen-bindings.sh "$KDIR" "$gen"
fi
echo "$KDIR" >"$stamp"
make -C "$KDIR" M="$JSNAP_TOP" RUSTC="$RUSTC" BINDGEN="$BINDGEN" \
	LIBCLANG_PATH="$LIBCLANG_PATH" -j"$(nproc)" modules
