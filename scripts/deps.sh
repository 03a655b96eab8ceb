#!/bin/sh
# Install what vdrive needs to build and test, from Debian's packages.
# Idempotent: apt-get is skipped when everything is already there.
set -e
PKGS="build-essential pkg-config libfuse3-dev fuse3 libsqlite3-dev sqlite3
      fio attr acl util-linux perl e2fsprogs procps psmisc"
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
# Drives opened to other users need this in fuse.conf only for non-root
# mounters; root may always use allow_other.
modprobe fuse 2>/dev/null || true
[ -c /dev/fuse ] || { echo "vdrive: /dev/fuse is missing: this kernel has no FUSE" >&2; exit 1; }
