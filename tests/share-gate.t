#!/bin/bash
# The gate around vd_drive_attach()/vd_drive_detach() through the public
# API (tests/share-gate.c, built here against libvdrive): a namespace with
# two shares is refused once both are detached one by one; one allowed
# before its share stays allowed after. The namespace is a plain
# `unshare --mount` process.
set -u
. "$(dirname "$0")/lib.sh"
vd_init share-gate
vd_need_root "share gate through the API"
[ -e "$VDRIVE_BUILD/libvdrive.so" ] || skip_all "no $VDRIVE_BUILD/libvdrive.so (run make)"

cc -std=gnu11 -Wall -Wextra -Werror -I"$VD_TOP/include" -o "$VD_TMP/share-gate" \
	"$VD_TOP/tests/share-gate.c" -L"$VDRIVE_BUILD" -lvdrive \
	-Wl,-rpath,"$VDRIVE_BUILD" 2>"$VD_TMP/cc.log"
if ! ok $? "tests/share-gate.c builds against libvdrive"; then
	diag "$(cat "$VD_TMP/cc.log")"
	done_testing
fi
M=$(vd_mktemp m)
NSD=$(vd_mktemp ns)
VD_MOUNTS+=("$M")
setsid unshare --mount --propagation private --kill-child sleep 600 \
	</dev/null >/dev/null 2>&1 &
UPID=$!
SPID=
for _ in $(seq 50); do
	SPID=$(pgrep -P "$UPID" sleep || true)
	[ -n "$SPID" ] && [ "$(readlink "/proc/$SPID/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] && break
	sleep 0.1
done
[ -n "$SPID" ]
ok $? "a process in a mount namespace of its own"
tap_include share-gate "$VD_TMP/share-gate" "$M" "/proc/$SPID/ns/mnt" "$NSD"
[ -n "$SPID" ] && kill "$SPID" 2>/dev/null # unshare exits with it
for _ in $(seq 50); do _vd_alive "$UPID" || break; sleep 0.1; done
! _vd_alive "$SPID" && ! _vd_alive "$UPID"
ok $? "the namespace process is gone"
done_testing
