# Sourced by every script: where the toolchain and the cached kernel live.
# Everything expensive lives outside the repository, under $JSNAP_CACHE.
JSNAP_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JSNAP_CACHE=${JSNAP_CACHE:-$HOME/.cache/dm-jsnap}
KVER=${KVER:-7.3}
KFRAGMENT=$JSNAP_TOP/qemu/kernel.config
# The kernel tree is keyed by source version and the hash of the fragment.
kcfg_hash=$(sha256sum "$KFRAGMENT" | cut -c1-12)
KSRC_TARBALL_DIR=$JSNAP_CACHE/linux-source
KDIR=${KDIR:-$JSNAP_CACHE/linux-$KVER-$kcfg_hash}
VENV=$JSNAP_CACHE/venv
BINDGEN=$JSNAP_CACHE/bindgen/bin/bindgen
RUSTC=/usr/bin/rustc
LIBCLANG_PATH=$(ls -d "$VENV"/lib/python3*/site-packages/clang/native 2>/dev/null | head -n1 || true)
export JSNAP_TOP JSNAP_CACHE KDIR VENV BINDGEN RUSTC LIBCLANG_PATH
export PATH=$VENV/bin:$PATH
