#!/usr/bin/env bash
# Idempotent set-up for building and testing dm-jsnap on a fresh Debian 12
# machine.  Installs Debian packages, a Rust compiler with matching source,
# bindgen and libclang, virtme-ng, fetches the linux-source-7.3 package and
# builds the test kernel once, cached under $JSNAP_CACHE keyed by the
# kernel version and the hash of qemu/kernel.config.
#
# Nothing is downloaded from anywhere but Debian's archive, crates.io and PyPI.
# The machine's apt configuration is never changed: packages from suites the
# machine does not list are fetched with a private source list.
set -euo pipefail
. "$(dirname "$0")/env.sh"

step() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }
mkdir -p "$JSNAP_CACHE"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# --- private apt lists for the suites the machine does not carry -----------
APT_PRIV=$JSNAP_CACHE/apt
apt_priv() {
	$SUDO apt-get -o Dir::Etc::SourceList="$APT_PRIV/sources.list" \
		-o Dir::Etc::SourceParts=- -o Dir::State::Lists="$APT_PRIV/lists" \
		-o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root "$@"
}
setup_apt_priv() {
	[ -s "$APT_PRIV/sources.list" ] && [ -n "$(ls "$APT_PRIV/lists" 2>/dev/null)" ] \
		&& [ -z "$(find "$APT_PRIV/lists" -maxdepth 0 -mmin +1440)" ] && return 0
	mkdir -p "$APT_PRIV/lists/partial"
	# Reuse the Debian mirror the machine is already configured with.
	local uri
	uri=$({ cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } \
		| grep -E '^(URIs:|deb )' | grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
	[ -n "$uri" ] || { echo "setup: no Debian mirror configured" >&2; exit 1; }
	cat > "$APT_PRIV/sources.list" <<EOL
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bookworm-backports main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie-backports main
EOL
	step "apt: private lists (bookworm-backports, trixie-backports)"
	apt_priv update -qq
}

# --- Debian packages ---------------------------------------------------------
PKGS="bc bison flex libelf-dev libssl-dev cpio kmod dmsetup fio busybox-static
      ndctl rustc-web rust-web-src xz-utils make gcc python3-venv
      e2fsprogs xfsprogs nvme-cli libdevmapper-dev pkg-config"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	step "apt: installing$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if ! command -v qemu-system-x86_64 >/dev/null || \
   ! qemu-system-x86_64 --version | grep -qE 'version (9|1[0-9])\.'; then
	setup_apt_priv
	step "apt: qemu-system-x86 from bookworm-backports"
	DEBIAN_FRONTEND=noninteractive apt_priv install -y -qq -t bookworm-backports \
		qemu-system-x86 >/dev/null
fi

# --- bindgen (crates.io) -----------------------------------------------------
if ! [ -x "$BINDGEN" ] || ! "$BINDGEN" --version | grep -q 0.72.1; then
	step "cargo: installing bindgen-cli 0.72.1 (about 3 minutes)"
	cargo install -q bindgen-cli --version 0.72.1 --locked --root "$JSNAP_CACHE/bindgen"
fi

# --- libclang + virtme-ng (PyPI) in a private venv -----------------------------
if ! [ -x "$VENV/bin/vng" ] || ! [ -d "$(ls -d "$VENV"/lib/python3*/site-packages/clang/native 2>/dev/null | head -n1)" ]; then
	step "pip: libclang 18.1.1 and virtme-ng 1.42 into $VENV"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install -q --disable-pip-version-check libclang==18.1.1 virtme-ng==1.42
fi
. "$(dirname "$0")/env.sh"

# --- kernel source -----------------------------------------------------------
if ! [ -f "$KDIR/.source-ok" ]; then
	tarball=$(ls "$KSRC_TARBALL_DIR"/usr/src/linux-source-$KVER.tar.xz 2>/dev/null || true)
	if [ -z "$tarball" ]; then
		setup_apt_priv
		step "apt: downloading linux-source-$KVER (trixie-backports)"
		rm -rf "$KSRC_TARBALL_DIR"; mkdir -p "$KSRC_TARBALL_DIR"
		(cd "$KSRC_TARBALL_DIR" && apt_priv download "linux-source-$KVER" >/dev/null &&
		 dpkg -x linux-source-"$KVER"_*.deb . && rm -f linux-source-"$KVER"_*.deb)
		tarball=$KSRC_TARBALL_DIR/usr/src/linux-source-$KVER.tar.xz
	fi
	step "kernel: unpacking $(basename "$tarball") into $KDIR"
	rm -rf "$KDIR.tmp"; mkdir -p "$KDIR.tmp"
	tar -xf "$tarball" -C "$KDIR.tmp" --strip-components=1
	rm -rf "$KDIR"; mv "$KDIR.tmp" "$KDIR"
	touch "$KDIR/.source-ok"
fi

# --- kernel configuration and build --------------------------------------------
KMAKE=(make -C "$KDIR" -j"$(nproc)" RUSTC="$RUSTC" BINDGEN="$BINDGEN" LIBCLANG_PATH="$LIBCLANG_PATH")
if ! [ -f "$KDIR/.config-ok" ]; then
	step "kernel: configuring (virtme-ng minimal config + qemu/kernel.config)"
	rm -f "$KDIR/.config"
	(cd "$KDIR" && virtme-configkernel --allnoconfig --custom "$KFRAGMENT" \
		RUSTC="$RUSTC" BINDGEN="$BINDGEN" >/dev/null 2>&1)
	# virtme's own list forces some choices (DWARF debug info): the
	# fragment has the last word.
	sed -nE 's/^CONFIG_([A-Z0-9_]+)=y$/--enable \1/p; s/^CONFIG_([A-Z0-9_]+)=n$/--disable \1/p' \
		"$KFRAGMENT" | xargs "$KDIR/scripts/config" --file "$KDIR/.config"
	"${KMAKE[@]}" -s olddefconfig >/dev/null
	"${KMAKE[@]}" -s rustavailable
	# Every option of the fragment must have survived: a silently dropped
	# dependency (BLK_DEV, VIRTIO_MENU, ...) gives a guest that cannot boot.
	bad=0
	while IFS= read -r line; do
		case "$line" in CONFIG_*=y) grep -qx "$line" "$KDIR/.config" || { echo "setup: $line did not survive" >&2; bad=1; } ;;
			CONFIG_*=n) ! grep -q "^${line%=n}=y" "$KDIR/.config" || { echo "setup: $line did not survive" >&2; bad=1; } ;;
		esac
	done < "$KFRAGMENT"
	[ "$bad" = 0 ] || exit 1
	touch "$KDIR/.config-ok"
fi
if ! [ -f "$KDIR/.build-ok" ]; then
	step "kernel: building (about 11-15 minutes on 2 cores, log in $KDIR/build.log)"
	"${KMAKE[@]}" >"$KDIR/build.log" 2>&1 || { tail -n 40 "$KDIR/build.log"; exit 1; }
	touch "$KDIR/.build-ok"
	# Trees of the same variant built from another fragment are stale:
	# keep the disk bounded.
	for old in "$JSNAP_CACHE"/linux-"$KVER"-*; do
		case "$old" in */linux-"$KVER"-debug-*) [ "$JSNAP_KVARIANT" = debug ] || continue ;;
			*) [ "$JSNAP_KVARIANT" != debug ] || continue ;;
		esac
		[ -d "$old" ] && [ "$old" != "$KDIR" ] && rm -rf "$old"
	done
fi
step "ready: KDIR=$KDIR"
