#!/usr/bin/env bash
# Build jsnapctl (tools/jsnapctl), the user-space tool, with the versions of
# its committed Cargo.lock:
#   scripts/build-jsnapctl.sh          cargo build --release --locked
#   scripts/build-jsnapctl.sh --test   cargo test --release --locked (host unit tests)
# Output: tools/jsnapctl/target/release/jsnapctl.
#
# The devicemapper crate's -sys crate runs bindgen over <libdevmapper.h> at
# build time: it needs pkg-config and libdevmapper-dev (Debian; installed by
# scripts/setup.sh) and a libclang: the project's own, from PyPI in the
# venv ($LIBCLANG_PATH, scripts/env.sh).  That libclang ships without its
# compiler headers (stddef.h, stdarg.h), so GCC's are put on its path.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$JSNAP_TOP/tools/jsnapctl"
# (cargo's own rustc: env.sh points RUSTC at Debian's for the kernel build)
unset RUSTC
missing=
command -v pkg-config >/dev/null || missing="$missing pkg-config"
pkg-config --exists devmapper 2>/dev/null || missing="$missing libdevmapper-dev"
[ -n "$LIBCLANG_PATH" ] && [ -e "$LIBCLANG_PATH/libclang.so" ] || missing="$missing libclang(venv)"
if [ -n "$missing" ]; then
	echo "build-jsnapctl: missing:$missing -- run scripts/setup.sh" >&2
	exit 1
fi
# (always here: the guest test and `make run` look for the binary here)
export CARGO_TARGET_DIR=$JSNAP_TOP/tools/jsnapctl/target
gcc_inc=$(gcc -print-file-name=include)
export LIBCLANG_PATH
export BINDGEN_EXTRA_CLANG_ARGS="${BINDGEN_EXTRA_CLANG_ARGS:+$BINDGEN_EXTRA_CLANG_ARGS }-I$gcc_inc"
if [ "${1:-}" = --test ]; then
	exec cargo test --release --locked
fi
cargo build --release --locked
ls -l "$CARGO_TARGET_DIR/release/jsnapctl"
