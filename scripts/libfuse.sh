#!/bin/bash
# libfuse.sh - build Debian 13's libfuse (3.17.x, with the FUSE passthrough
# API) into a private prefix, next to the system's libfuse 3.14.
#
# Usage: scripts/libfuse.sh [PREFIX]     (default /opt/vdrive-libfuse)
# Then:  make LIBFUSE=PREFIX ...
#
# The system's apt setup is left alone: the trixie deb-src line, the
# package lists and the download cache all live under PREFIX/src/apt.
# Idempotent: does nothing when PREFIX already holds a built libfuse3.so.4.
# Installs meson and ninja-build from the system's own suites if missing.
set -euo pipefail

PREFIX=${1:-${LIBFUSE:-/opt/vdrive-libfuse}}
SUITE=${LIBFUSE_SUITE:-trixie}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
WORK=$PREFIX/src
APTDIR=$WORK/apt

die() { echo "libfuse.sh: $*" >&2; exit 1; }

# The Debian mirror the system already uses (first "debian" archive URI).
mirror() {
	local m
	m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list \
		/etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list |
		grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
	echo "${m:-http://deb.debian.org/debian}"
}

built_lib() {
	find "$PREFIX" -path "$WORK" -prune -o -name 'libfuse3.so.4*' -print \
		2>/dev/null | head -n1
}

if [ -n "$(built_lib)" ] && [ -n "$(find "$PREFIX" -name fuse3.pc -print -quit)" ]; then
	echo "libfuse.sh: already built in $PREFIX"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (apt-get install, and PREFIX may be under /opt)"
[ -r "$KEYRING" ] || die "no $KEYRING"

missing=()
command -v meson >/dev/null || missing+=(meson)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
command -v cc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
	echo "libfuse.sh: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$WORK/dl"
echo "deb-src [signed-by=$KEYRING] $(mirror) $SUITE main" >"$APTDIR/sources.list"
APTOPT=(-o "Dir::Etc::SourceList=$APTDIR/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$APTDIR/lists"
	-o "Dir::Cache=$APTDIR/cache"
	-o "APT::Sandbox::User=root")

if ! ls "$WORK"/dl/fuse3_*.dsc >/dev/null 2>&1; then
	apt-get "${APTOPT[@]}" update
	(cd "$WORK/dl" && apt-get "${APTOPT[@]}" source --download-only fuse3)
fi
dsc=$(ls "$WORK"/dl/fuse3_*.dsc | sort -V | tail -n1)
srcdir=$WORK/$(basename "$dsc" .dsc | sed 's/_/-/; s/-[^-]*$//')
if [ ! -d "$srcdir" ]; then
	dpkg-source -x "$dsc" "$srcdir.tmp"
	mv "$srcdir.tmp" "$srcdir"
fi

rm -rf "$WORK/build"
meson setup "$WORK/build" "$srcdir" --prefix="$PREFIX" --libdir=lib \
	--buildtype=release -Dutils=false -Dtests=false -Dexamples=false \
	-Dinitscriptdir= -Dudevrulesdir="$PREFIX/udev"
ninja -C "$WORK/build"
ninja -C "$WORK/build" install

[ -n "$(built_lib)" ] || die "build finished but no libfuse3.so.4 in $PREFIX"
echo "libfuse.sh: built $(basename "$srcdir") in $PREFIX"
echo "libfuse.sh: now: make LIBFUSE=$PREFIX"
