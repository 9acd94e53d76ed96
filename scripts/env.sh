# Sourced by every script: where the toolchain and the cached kernel live.
# Everything expensive lives outside the repository, under $JSNAP_CACHE.
JSNAP_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JSNAP_CACHE=${JSNAP_CACHE:-$HOME/.cache/dm-jsnap}
KVER=${KVER:-7.3}
KFRAGMENT=$JSNAP_TOP/qemu/kernel.config
# JSNAP_KVARIANT=debug: the same kernel with lockdep and KASAN
# (qemu/kernel-debug.config merged over the fragment, last value wins).
JSNAP_KVARIANT=${JSNAP_KVARIANT:-}
kvariant_tag=
if [ "$JSNAP_KVARIANT" = debug ]; then
	mkdir -p "$JSNAP_CACHE"
	awk '{ lines[NR] = $0; if (match($0, /^CONFIG_[A-Z0-9_]+=/)) last[substr($0, 1, RLENGTH)] = NR }
	     END { for (i = 1; i <= NR; i++) { l = lines[i]
	             if (match(l, /^CONFIG_[A-Z0-9_]+=/) && last[substr(l, 1, RLENGTH)] != i) continue
	             print l } }' "$KFRAGMENT" "$JSNAP_TOP/qemu/kernel-debug.config" >"$JSNAP_CACHE/kernel-debug.config.$$"
	mv "$JSNAP_CACHE/kernel-debug.config.$$" "$JSNAP_CACHE/kernel-debug.config"
	KFRAGMENT=$JSNAP_CACHE/kernel-debug.config
	kvariant_tag=debug-
fi
# The kernel tree is keyed by source version and the hash of the fragment.
kcfg_hash=$(sha256sum "$KFRAGMENT" | cut -c1-12)
KSRC_TARBALL_DIR=$JSNAP_CACHE/linux-source
KDIR=${KDIR:-$JSNAP_CACHE/linux-$KVER-$kvariant_tag$kcfg_hash}
VENV=$JSNAP_CACHE/venv
BINDGEN=$JSNAP_CACHE/bindgen/bin/bindgen
RUSTC=/usr/bin/rustc
LIBCLANG_PATH=$(ls -d "$VENV"/lib/python3*/site-packages/clang/native 2>/dev/null | head -n1 || true)
export JSNAP_TOP JSNAP_CACHE JSNAP_KVARIANT KDIR VENV BINDGEN RUSTC LIBCLANG_PATH
export PATH=$VENV/bin:$PATH
