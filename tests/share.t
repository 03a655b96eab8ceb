#!/bin/bash
# Sharing a live drive: `vdrive share` into other "containers" (plain
# `unshare` mount namespaces), on the host, and over SMB with Samba's
# smbd on a loopback port, checked with smbclient from another network
# namespace. Each share must reach exactly its target: other namespaces
# are refused (also through /proc/PID/root), read-only shares refuse
# writes, unshare and stopped targets leave nothing mounted or running.
set -u
. "$(dirname "$0")/lib.sh"
vd_init share

if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null ||
	! command -v nsenter >/dev/null; then
	skip_all "needs root, unshare and nsenter"
fi
CTS=()
cleanup_cts() {
	local p
	for p in "${CTS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	CTS=()
}
trap 'cleanup_cts; _vd_exit' EXIT

# A container: a process alone in a new private mount namespace.
new_ct() {
	unshare -m --propagation private sleep 600 &
	CT=$!
	disown
	CTS+=($CT)
	for _ in $(seq 50); do
		[ "$(readlink /proc/$CT/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && break
		sleep 0.05
	done
}

# in_ct PID CMD...: run CMD in container PID's mount namespace.
in_ct() {
	local p=$1
	shift
	nsenter -t "$p" -m -- "$@"
}

# share_count NAME: how many shares `vdrive list --json` shows for NAME.
share_count() {
	"$VDRIVE" list --json | grep "\"name\": \"$1\"" | grep -o '"kind"' | wc -l
}

M=$VD_TMP/m
vd_mount mem: "$M" --name sh1
ok $? "a host drive to share"
echo owner-data >"$M/a"

new_ct
B=$CT
new_ct
C=$CT

# ---- into a container ----
out=$("$VDRIVE" share sh1 --container "$B" --at /srv/vd-shared 2>&1)
ok $? "share into container B at a path of its own" || diag "$out"
[ "$(in_ct "$B" cat /srv/vd-shared/a 2>&1)" = owner-data ]
ok $? "B reads the owner's data"
in_ct "$B" sh -c 'echo from-b > /srv/vd-shared/b' && [ "$(cat "$M/b")" = from-b ]
ok $? "B writes, the owner sees it at once (same live drive)"
! vd_mounted /srv/vd-shared
ok $? "the share is not in the host's mount table"
out=$(in_ct "$C" cat "/proc/$B/root/srv/vd-shared/a" 2>&1)
[ $? != 0 ] && [[ $out == *"Permission denied"* ]]
ok $? "C is refused through /proc/PID/root of B (EACCES)" || diag "$out"
out=$(in_ct "$C" ls "/proc/$B/root/srv/vd-shared" 2>&1)
[[ $out == *"Permission denied"* ]]
ok $? "C cannot list it either" || diag "$out"
"$VDRIVE" list | grep -q "shared: container *pid:$B *\\(.*\\) */srv/vd-shared"
ok $? "vdrive list shows the share" || diag "$("$VDRIVE" list)"
"$VDRIVE" list --json | grep -q '"kind": "container", "target": "pid:'"$B"'", "path": "/srv/vd-shared", "read_only": false'
ok $? "vdrive list --json shows the share" || diag "$("$VDRIVE" list --json)"

# ---- read-only into a second container ----
out=$("$VDRIVE" share sh1 --container "$C" --at /ro --read-only 2>&1)
ok $? "a read-only share into C" || diag "$out"
[ "$(in_ct "$C" cat /ro/a 2>&1)" = owner-data ]
ok $? "C reads through its read-only share"
out=$(in_ct "$C" sh -c 'echo x > /ro/new' 2>&1)
[[ $out == *"Read-only file system"* ]] && [ ! -e "$M/new" ]
ok $? "C cannot create there (EROFS)" || diag "$out"
out=$(in_ct "$C" sh -c "echo x >> /proc/$B/root/srv/vd-shared/a; mkdir /proc/$B/root/srv/vd-shared/d" 2>&1)
[[ $out == *"Read-only file system"* ]] && [ "$(cat "$M/a")" = owner-data ] && [ ! -e "$M/d" ]
ok $? "C cannot write through B's read-write share either (the gate says EROFS)" || diag "$out"
echo owner-again >"$M/o" && [ "$(in_ct "$C" cat /ro/o)" = owner-again ]
ok $? "the owner still writes, and C sees it"
"$VDRIVE" list --json | grep -q '"target": "pid:'"$C"'", "path": "/ro", "read_only": true'
ok $? "list marks the share read-only"

# ---- bad input ----
out=$("$VDRIVE" share sh1 --container "$B" --at /srv/vd-shared 2>&1)
[ $? != 0 ] && [[ $out == *"already"* ]]
ok $? "sharing twice into one place is refused" || diag "$out"
out=$("$VDRIVE" share nosuchdrive --container "$B" 2>&1)
[ $? != 0 ] && [[ $out == *"no drive named 'nosuchdrive'"* ]]
ok $? "an unknown drive is named in the error" || diag "$out"
out=$("$VDRIVE" share sh1 --container 999999999 2>&1)
[ $? != 0 ] && [[ $out == *"999999999"* ]]
ok $? "a container that does not exist is refused" || diag "$out"
out=$("$VDRIVE" share sh1 2>&1)
[ $? = 2 ] && [[ $out == *"one of --container, --host or --smb"* ]]
ok $? "no target: usage error" || diag "$out"
out=$("$VDRIVE" share sh1 --container "$B" --host /x 2>&1)
[ $? = 2 ]
ok $? "two targets at once: usage error" || diag "$out"
out=$("$VDRIVE" share sh1 --container "$B" --at relative 2>&1)
[ $? = 2 ] && [[ $out == *"absolute"* ]]
ok $? "a relative --at is refused" || diag "$out"
out=$("$VDRIVE" share sh1 --container "$B" --at /a/../b 2>&1)
[ $? != 0 ]
ok $? "a path with .. is refused" || diag "$out"
out=$("$VDRIVE" share sh1 --smb --listen 127.0.0.1:4451 2>&1)
[ $? = 2 ] && [[ $out == *"--password-file"* ]]
ok $? "SMB without a user or --guest is refused" || diag "$out"
out=$(setpriv --reuid 65534 --regid 65534 --clear-groups "$VDRIVE" share sh1 --container "$B" --at /other 2>&1)
[ $? != 0 ] && ! in_ct "$B" test -e /other/a
ok $? "another user cannot share the drive" || diag "$out"
[ "$(cat "$M/a")" = owner-data ]
ok $? "the data is intact after the refusals"

# ---- unshare ----
out=$("$VDRIVE" unshare sh1 --container "$B" 2>&1)
ok $? "unshare B" || diag "$out"
! in_ct "$B" awk '$5 == "/srv/vd-shared" { f = 1 } END { exit !f }' /proc/self/mountinfo
ok $? "the share is gone from B's mount table"
out=$(in_ct "$B" cat "/proc/$C/root/ro/a" 2>&1)
[[ $out == *"Permission denied"* ]]
ok $? "B is refused again, even through C's share" || diag "$out"
out=$("$VDRIVE" unshare sh1 --container "$B" 2>&1)
[ $? != 0 ] && [[ $out == *"not shared there"* ]]
ok $? "unsharing what is not shared says so" || diag "$out"

# ---- on the host ----
H=$VD_TMP/hostshare
out=$("$VDRIVE" share sh1 --host "$H" 2>&1)
ok $? "share on the host at a second path" || diag "$out"
VD_MOUNTS+=("$H")
[ "$(cat "$H/a")" = owner-data ]
ok $? "the host reads it there"
"$VDRIVE" unshare sh1 --host >/dev/null 2>&1 && ! vd_mounted "$H"
ok $? "unshare --host detaches it"

# ---- a stopped container ends its share ----
kill -KILL "$C"
for _ in $(seq 50); do
	[ "$(share_count sh1)" = 0 ] && break
	sleep 0.1
done
[ "$(share_count sh1)" = 0 ]
ok $? "C stopped: its share is gone from the record" || diag "$("$VDRIVE" list --json)"

# ---- a host drive is open to all again once its last share ends ----
M2=$VD_TMP/m2
vd_mount mem: "$M2" --name sh2
echo two >"$M2/t"
new_ct
P=$CT # sees M2 through its copy of the host's mounts
new_ct
Q=$CT
[ "$(in_ct "$P" cat "$M2/t" 2>&1)" = two ]
ok $? "before any share, another namespace that sees the mount reads it"
"$VDRIVE" share sh2 --container "$Q" --at /q2 >/dev/null 2>&1
out=$(in_ct "$P" cat "$M2/t" 2>&1)
[[ $out == *"Permission denied"* ]]
ok $? "while shared with Q only, that namespace is refused" || diag "$out"
"$VDRIVE" unshare sh2 --container "$Q" >/dev/null 2>&1
[ "$(in_ct "$P" cat "$M2/t" 2>&1)" = two ]
ok $? "after the last unshare it reads again, as before"
vd_umount "$M2"

# ---- attaching is quick ----
new_ct
D=$CT
start=$(date +%s%N)
"$VDRIVE" share sh1 --container "$D" --at /q >/dev/null 2>&1
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
ok $rc "share into a running container (took $ms ms)"

# ---- SMB ----
SMBD=/usr/sbin/smbd
if [ ! -x $SMBD ] || ! command -v smbclient >/dev/null; then
	skip "SMB shares" "samba or smbclient not installed (scripts/deps.sh installs them)"
	cleanup_cts
	done_testing
fi
PORT=$((20000 + RANDOM % 20000))
printf 'Pa55 word\n' >"$VD_TMP/pw"
chmod 600 "$VD_TMP/pw"
out=$("$VDRIVE" share sh1 --smb --listen 127.0.0.1:$PORT --user alice --password-file "$VD_TMP/pw" 2>&1)
ok $? "serve the drive over SMB on 127.0.0.1:$PORT" || diag "$out"
SMBPID=$(ps -o pid= -C smbd | while read -r p; do
	grep -q "$VD_TMP" /proc/$p/cmdline 2>/dev/null && echo "$p"; done | head -1)
[ -n "$SMBPID" ]
ok $? "smbd runs with our private config" || diag "$(ps -ef | grep smbd)"
"$VDRIVE" list --json | grep -q '"kind": "smb", "target": "sh1", "address": "//127.0.0.1:'$PORT'/sh1", "read_only": false, "state": "serving"'
ok $? "list shows the SMB share's address" || diag "$("$VDRIVE" list --json)"
! grep -q "Pa55" "$VDRIVE_RUNDIR"/drives/* 2>/dev/null && ! ps -eo args | grep -q "Pa5[5]"
ok $? "the password is in no record and no command line"

# smbclient from another network namespace: it reaches 127.0.0.1 there
# only if it shares ours, so a fresh netns must fail and ours must work.
SC() { timeout -k 5 120 smbclient "//127.0.0.1/sh1" -p $PORT -m SMB3 "$@"; }
out=$(unshare -n sh -c "ip link set lo up; timeout 20 smbclient //127.0.0.1/sh1 -p $PORT -m SMB3 -U 'alice%Pa55 word' -c ls" 2>&1)
[ $? != 0 ]
ok $? "a separate network namespace does not reach the loopback share" || diag "$out"

head -c 1048576 /dev/urandom >"$VD_TMP/one"
: >"$VD_TMP/zero"
head -c 209715200 /dev/urandom >"$VD_TMP/big"
out=$(cd "$VD_TMP" && SC -U 'alice%Pa55 word' -c 'put zero z0; put one m1; put big b200' 2>&1)
ok $? "put files of 0 B, 1 MiB and 200 MiB" || diag "$out"
cmp "$VD_TMP/zero" "$M/z0" && cmp "$VD_TMP/one" "$M/m1" && cmp "$VD_TMP/big" "$M/b200"
ok $? "they arrive intact on the drive"
rm -f "$VD_TMP/got"*
out=$(cd "$VD_TMP" && SC -U 'alice%Pa55 word' -c 'get z0 got0; get m1 got1; get b200 got200; get a gota' 2>&1)
ok $? "get them back" || diag "$out"
cmp "$VD_TMP/zero" "$VD_TMP/got0" && cmp "$VD_TMP/one" "$VD_TMP/got1" &&
	cmp "$VD_TMP/big" "$VD_TMP/got200" && [ "$(cat "$VD_TMP/gota")" = owner-data ]
ok $? "and their contents match"
out=$(SC -U 'alice%Pa55 word' -c 'rename m1 renamed; del z0; mkdir dd; ls' 2>&1)
[ $? = 0 ] && [ -f "$M/renamed" ] && [ ! -e "$M/m1" ] && [ ! -e "$M/z0" ] && [ -d "$M/dd" ]
ok $? "rename, delete and mkdir through SMB" || diag "$out"
out=$(SC -U 'alice%wrong' -c ls 2>&1)
[ $? != 0 ] && [[ $out == *LOGON_FAILURE* ]]
ok $? "a wrong password is refused" || diag "$out"
out=$(SC -N -c ls 2>&1)
[ $? != 0 ]
ok $? "guest access is refused" || diag "$out"
out=$(SC -U 'alice%Pa55 word' -m NT1 -c ls 2>&1)
[ $? != 0 ]
ok $? "SMB1 is refused (SMB3 only)" || diag "$out"

# A client killed in the middle of a transfer leaves the data intact.
cp "$M/b200" "$VD_TMP/before"
(cd "$VD_TMP" && SC -U 'alice%Pa55 word' -c 'put big partial' >/dev/null 2>&1) &
CL=$!
sleep 0.3
kill -KILL $CL 2>/dev/null
wait $CL 2>/dev/null
cmp "$VD_TMP/before" "$M/b200" && [ "$(cat "$M/a")" = owner-data ]
ok $? "a client killed mid-transfer leaves the other files intact"
out=$(SC -U 'alice%Pa55 word' -c 'ls' 2>&1)
ok $? "and the share still serves" || diag "$out"

out=$("$VDRIVE" share sh1 --smb --name sh1b --listen 127.0.0.1:$PORT --guest 2>&1)
[ $? != 0 ] && [[ $out == *"in use"* ]]
ok $? "a port in use is named in the error" || diag "$out"
out=$("$VDRIVE" share sh1 --smb --name sh1b --listen 127.0.0.1:$PORT --user bob --password-file "$VD_TMP/nope" 2>&1)
[ $? != 0 ] && [[ $out == *"password file"* ]]
ok $? "a missing password file is named in the error" || diag "$out"

# A read-only guest share beside it.
PORT2=$((PORT + 1))
out=$("$VDRIVE" share sh1 --smb --name ro --listen 127.0.0.1:$PORT2 --guest --read-only 2>&1)
ok $? "a read-only guest share" || diag "$out"
out=$(timeout 60 smbclient //127.0.0.1/ro -p $PORT2 -m SMB3 -N -c 'get a /dev/null' 2>&1)
ok $? "a guest reads it" || diag "$out"
out=$(cd "$VD_TMP" && timeout 60 smbclient //127.0.0.1/ro -p $PORT2 -m SMB3 -N -c 'put one ro-new' 2>&1)
[ ! -e "$M/ro-new" ] && [[ $out == *DENIED* || $out == *WRITE_PROTECTED* || $out == *"Read-only"* ]]
ok $? "writes to the read-only share are refused" || diag "$out"

# smbd must reach the drive only through its share: its namespace is
# the one admitted, the host's mount table does not have it.
[ "$(readlink /proc/$SMBPID/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ]
ok $? "smbd lives in a mount namespace of its own"

# A crashed smbd is restarted.
kill -KILL "$SMBPID"
for _ in $(seq 100); do
	out=$(SC -U 'alice%Pa55 word' -c ls 2>&1) && break
	sleep 0.1
done
ok $? "smbd killed: it is restarted and serves again" || diag "$out"

# --netns: smbd listens inside a "container's" network namespace only.
unshare -n -m --propagation private sh -c 'ip link set lo up && exec sleep 600' &
N=$!
disown
CTS+=($N)
for _ in $(seq 50); do
	[ "$(readlink /proc/$N/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
	sleep 0.05
done
sleep 0.2
PORT3=$((PORT + 2))
out=$("$VDRIVE" share sh1 --smb --name netsh --listen 127.0.0.1:$PORT3 --netns "$N" --guest 2>&1)
ok $? "an SMB share listening in another network namespace (--netns)" || diag "$out"
out=$(nsenter -t "$N" -n timeout 60 smbclient //127.0.0.1/netsh -p $PORT3 -m SMB3 -N -c 'get a -' 2>&1)
[[ $out == *owner-data* ]]
ok $? "a client in that network reads it" || diag "$out"
out=$(timeout 20 smbclient //127.0.0.1/netsh -p $PORT3 -m SMB3 -N -c ls 2>&1)
[ $? != 0 ]
ok $? "the host's network does not reach it" || diag "$out"
"$VDRIVE" unshare sh1 --smb --name netsh >/dev/null 2>&1
ok $? "unshare it"

"$VDRIVE" unshare sh1 --smb --name ro >/dev/null 2>&1
out=$(timeout 20 smbclient //127.0.0.1/ro -p $PORT2 -m SMB3 -N -c ls 2>&1)
[ $? != 0 ]
ok $? "unshare --smb stops that smbd" || diag "$out"
SMBPIDS=$(ps -o pid= -C smbd | while read -r p; do
	grep -q "$VD_TMP" /proc/$p/cmdline 2>/dev/null && echo "$p"; done)
vd_umount "$M"
ok $? "stop the drive"
left=0
for p in $SMBPIDS; do
	for _ in $(seq 50); do _vd_alive "$p" || break; sleep 0.1; done
	_vd_alive "$p" && left=1
done
[ $left = 0 ] && [ -z "$(ls "$VDRIVE_RUNDIR/smb" 2>/dev/null)" ]
ok $? "stopping the drive leaves no smbd and no SMB state"
for p in "${CTS[@]}"; do
	in_ct "$p" true 2>/dev/null || continue
	in_ct "$p" awk '$9 ~ /^fuse/ { f = 1 } END { exit f }' /proc/self/mountinfo
	ok $? "nothing of the drive is left mounted in container $p"
done
cleanup_cts
done_testing
