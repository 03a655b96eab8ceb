#!/bin/bash
# libfuse.sh - build a newer Debian libfuse into a private prefix, next to
# the system's libfuse 3.14: sid's 3.18 (FUSE passthrough API and the
# io_uring transport) when it builds here, else Debian 13's 3.17
# (passthrough only).
#
# Usage: scripts/libfuse.sh [PREFIX]     (default /opt/vdrive-libfuse)
#        LIBFUSE_SUITE="trixie" scripts/libfuse.sh   (only that suite)
# Then:  make LIBFUSE=PREFIX ...
#
# The system's apt setup is left alone: the deb-src lines, the package
# lists and the download cache all live under PREFIX/src/apt.
# Idempotent: does nothing when PREFIX already holds a libfuse built from
# the first suite that can be had; a fallback build is retried next time.
# Installs meson, ninja-build, liburing-dev and libnuma-dev from the
# system's own suites if missing.
set -euo pipefail

PREFIX=${1:-${LIBFUSE:-/opt/vdrive-libfuse}}
SUITES=${LIBFUSE_SUITE:-sid trixie}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
WORK=$PREFIX/src
STAMP=$PREFIX/.built-from

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

first=${SUITES%% *}
if [ -n "$(built_lib)" ] && [ -n "$(find "$PREFIX" -name fuse3.pc -print -quit)" ] &&
	[ "$(cat "$STAMP" 2>/dev/null)" = "$first" ]; then
	echo "libfuse.sh: already built from $first in $PREFIX"
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
# io_uring transport (3.18): liburing and libnuma from the system's suites.
for p in liburing-dev libnuma-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "libfuse.sh: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# Fetch, unpack, build and install fuse3's source from one suite.
build_from() {
	local suite=$1 aptdir=$WORK/apt-$1 dl=$WORK/dl-$1 dsc srcdir
	mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$dl"
	echo "deb-src [signed-by=$KEYRING] $(mirror) $suite main" >"$aptdir/sources.list"
	local aptopt=(-o "Dir::Etc::SourceList=$aptdir/sources.list"
		-o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::State::Lists=$aptdir/lists"
		-o "Dir::Cache=$aptdir/cache"
		-o "APT::Sandbox::User=root")
	if ! ls "$dl"/fuse3_*.dsc >/dev/null 2>&1; then
		apt-get "${aptopt[@]}" update || return 1
		(cd "$dl" && apt-get "${aptopt[@]}" source --download-only fuse3) || return 1
	fi
	dsc=$(ls "$dl"/fuse3_*.dsc | sort -V | tail -n1)
	srcdir=$WORK/$(basename "$dsc" .dsc | sed 's/_/-/; s/-[^-]*$//')
	if [ ! -d "$srcdir" ]; then
		rm -rf "$srcdir.tmp"
		dpkg-source -x "$dsc" "$srcdir.tmp" || return 1
		mv "$srcdir.tmp" "$srcdir"
	fi
	rm -rf "$WORK/build"
	# 3.18 builds fuse_session_custom_io() only on request; libvdrive uses
	# it to clone a /dev/fuse descriptor through vdrived (the peer is
	# still the kernel).
	local extra=()
	grep -q "'enable-custom-io'" "$srcdir/meson_options.txt" 2>/dev/null &&
		extra+=(-Denable-custom-io=true)
	meson setup "$WORK/build" "$srcdir" --prefix="$PREFIX" --libdir=lib \
		--buildtype=release -Dutils=false -Dtests=false -Dexamples=false \
		-Dinitscriptdir= -Dudevrulesdir="$PREFIX/udev" "${extra[@]}" || return 1
	ninja -C "$WORK/build" || return 1
	# A previous build's library and headers must not outlive this one.
	rm -rf "$PREFIX/lib" "$PREFIX/include"
	ninja -C "$WORK/build" install || return 1
	echo "$suite" >"$STAMP"
	echo "libfuse.sh: built $(basename "$srcdir") (Debian $suite) in $PREFIX"
}

for suite in $SUITES; do
	if build_from "$suite"; then
		[ -n "$(built_lib)" ] || die "build finished but no libfuse3.so.4 in $PREFIX"
		echo "libfuse.sh: now: make LIBFUSE=$PREFIX"
		exit 0
	fi
	echo "libfuse.sh: could not build fuse3 from Debian $suite" >&2
done
# Nothing new built: an older build in PREFIX, if any, still serves.
[ -n "$(built_lib)" ] && { echo "libfuse.sh: keeping the build in $PREFIX"; exit 0; }
die "no suite of $SUITES gave a libfuse that builds here"
