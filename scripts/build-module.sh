#!/usr/bin/env bash
# Build dm-jsnap.ko out of tree against the cached kernel.
#   --fault   the fault-injection build for the tests (rust/fault.rs), made
#             in a copy of the tree ($JSNAP_CACHE/fault-build) and written
#             to dm-jsnap-fault.ko; the normal module is not touched.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$JSNAP_TOP"
if [ "${1:-}" = --fault ]; then
	fb=$JSNAP_CACHE/fault-build
	mkdir -p "$fb"
	# Sources only; objects of the copy stay between builds.
	tar -C "$JSNAP_TOP" --exclude=./rust/host/target --exclude='*.o' --exclude='*.ko' \
		--exclude=./.git -cf - Kbuild rust scripts | tar -C "$fb" -xf -
	cp "$JSNAP_TOP/Makefile" "$fb/"
	# (every kernel fragment: env.sh hashes the one of the variant in use)
	mkdir -p "$fb/qemu" && cp "$JSNAP_TOP"/qemu/kernel*.config "$fb/qemu/"
	JSNAP_FAULT=1 KDIR=$KDIR bash "$fb/scripts/build-module.sh"
	cp "$fb/dm-jsnap.ko" "$JSNAP_TOP/dm-jsnap-fault.ko"
	exit 0
fi
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
	LIBCLANG_PATH="$LIBCLANG_PATH" ${JSNAP_FAULT:+JSNAP_FAULT=1} ${JSNAP_PROFILE:+JSNAP_PROFILE=1} -j"$(nproc)" modules
