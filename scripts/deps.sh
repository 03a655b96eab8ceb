#!/bin/sh
# Install what vdrive needs to build and test, from Debian's packages.
# Idempotent: apt-get is skipped when everything is already there.
set -e
PKGS="build-essential pkg-config libfuse3-dev fuse3 libsqlite3-dev sqlite3
      libpq-dev postgresql
      fio attr acl util-linux perl e2fsprogs procps psmisc
      meson ninja-build dpkg-dev liburing-dev libnuma-dev
      samba smbclient iproute2 docker.io busybox-static runsc
      man-db groff-base
      libcurl4-openssl-dev apache2"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "vdrive: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
modprobe fuse 2>/dev/null || true
# libfuse 3.18 (FUSE passthrough, io_uring, O_TMPFILE) built from Debian's source
# package (sid; else 3.17 from trixie) into /opt/vdrive-libfuse; the build
# uses it when it is there.
# Without it (no network, say) vdrive builds on the system's 3.14.
if ! bash "$(dirname "$0")/libfuse.sh" >/tmp/vdrive-libfuse.log 2>&1; then
	echo "vdrive: warning: could not build libfuse 3.17 or 3.18 (see /tmp/vdrive-libfuse.log);" \
		"building on the system's libfuse 3.14, without passthrough" >&2
fi
[ -c /dev/fuse ] || { echo "vdrive: /dev/fuse is missing: this kernel has no FUSE" >&2; exit 1; }
