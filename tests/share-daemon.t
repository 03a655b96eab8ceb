#!/bin/bash
# Sharing a drive made inside an unprivileged container through vdrived
# (plain `unshare` namespaces stand in for containers): the container
# shares its own drive with the host and with a container of the same
# uid; the daemon's policy refuses other targets, the container itself,
# drives mounted without -o shareable, and requests on connections that
# hold no drive; other namespaces stay refused. Also the daemon's socket
# under a flood of idle connections.
set -u
. "$(dirname "$0")/lib.sh"
vd_init sharedaemon

VDRIVED=$VDRIVE_BUILD/vdrived
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null ||
	! command -v nsenter >/dev/null || ! command -v setpriv >/dev/null; then
	skip_all "needs root, unshare, nsenter and setpriv"
fi
[ -x "$VDRIVED" ] || missing_all "vdrived not built"
CTS=()
DAEMON=
SHARES=$VD_TMP/shares

# An unprivileged container: new mount and pid namespaces, /proc of its
# own, a tmpfs on /mnt, no /dev/fuse, no capabilities; running as uid
# $1 (default 0). Sets CT to the host pid of its init.
new_unpriv_ct() {
	local uid=${1:-0}
	unshare -m -p -f --mount-proc --propagation private bash -c '
		mount -t tmpfs -o mode=1777 none /mnt &&
		mkdir -p /tmp/.ctdev && mount -t tmpfs none /tmp/.ctdev &&
		mknod -m 666 /tmp/.ctdev/null c 1 3 &&
		mount --move /tmp/.ctdev /dev &&
		exec setpriv --reuid '"$uid"' --regid '"$uid"' --clear-groups \
			--bounding-set=-all --inh-caps=-all sleep 600' 2>/dev/null &
	local u=$! i c=
	disown
	for i in $(seq 50); do
		c=$(ps -o pid= --ppid $u | tr -d ' ')
		[ -n "$c" ] && grep -q sleep /proc/$c/cmdline 2>/dev/null && break
		sleep 0.1
	done
	CTS+=($u $c)
	CT=$c
}

# in_ct PID CMD...: run CMD inside container PID as its uid, without
# capabilities.
in_ct() {
	local p=$1 uid
	shift
	uid=$(stat -c %u "/proc/$p")
	nsenter -t "$p" -m -p -- setpriv --reuid "$uid" --regid "$uid" --clear-groups \
		--bounding-set=-all --inh-caps=-all \
		env VDRIVE_SOCKET="$VD_TMP/vdrived.sock" VDRIVE_RUNDIR="/mnt/.run" "$@"
}

cleanup_cts() {
	local p
	for p in "${CTS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
	for p in "${CTS[@]}" $DAEMON; do
		for _ in $(seq 30); do _vd_alive "$p" || break; sleep 0.1; done
	done
	# shares the daemon attached on the host
	awk -v t="$SHARES/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo |
		while read -r m; do umount -l "$m"; done
}
trap 'cleanup_cts; _vd_exit' EXIT

start_daemon() {
	"$VDRIVED" --socket "$VD_TMP/vdrived.sock" --state "$VD_TMP/vdstate" \
		--share-dir "$SHARES" "$@" 2>>"$VD_TMP/vdrived.log" &
	DAEMON=$!
	disown
	for _ in $(seq 50); do [ -S "$VD_TMP/vdrived.sock" ] && break; sleep 0.1; done
}
stop_daemon() {
	kill "$DAEMON"
	for _ in $(seq 30); do _vd_alive "$DAEMON" || break; sleep 0.1; done
	DAEMON=
}
mounted_in() { awk -v m="$2" '$5 == m && $0 ~ / - fuse/ { f = 1 } END { exit !f }' "/proc/$1/mountinfo"; }

start_daemon
new_unpriv_ct
A=$CT
new_unpriv_ct
B=$CT
new_unpriv_ct 1000
O=$CT # another uid
new_unpriv_ct
C=$CT

in_ct "$A" mkdir -p /mnt/d /mnt/plain
out=$(in_ct "$A" "$VDRIVE" mount mem: /mnt/d --name sd -o shareable 2>&1)
ok $? "a shareable drive made inside container A through vdrived" || diag "$out $(tail -3 "$VD_TMP/vdrived.log")"
in_ct "$A" sh -c 'echo from-a > /mnt/d/f'
[ "$(in_ct "$A" cat /mnt/d/f)" = from-a ]
ok $? "A uses its drive"
[ "$(in_ct "$A" sh -c 'cat /proc/self/status >/mnt/d/st; grep ^Pid: /mnt/d/st')" != "" ]
ok $? "a file written by A's process is there"
err=$(cat "/proc/$A/root/mnt/d/f" 2>&1)
[[ $err == *"Permission denied"* ]]
ok $? "before sharing, the host is refused" || diag "$err"

# ---- share with the host ----
out=$(in_ct "$A" "$VDRIVE" share sd --host --name fromA 2>&1)
ok $? "A shares its drive with the host" || diag "$out $(tail -3 "$VD_TMP/vdrived.log")"
[ "$(cat "$SHARES/fromA/f" 2>&1)" = from-a ]
ok $? "the host reads it at the daemon's share folder"
echo from-host >"$SHARES/fromA/h" && [ "$(in_ct "$A" cat /mnt/d/h)" = from-host ]
ok $? "the host writes, A sees it"
err=$(nsenter -t "$C" -m cat "$SHARES/fromA/f" 2>&1)
[[ $err == *"Permission denied"* || $err == *"No such file"* ]]
ok $? "container C still cannot read it (host path from C's namespace)" || diag "$err"
# C's /proc shows only its own pids: a namespace that is neither the host
# nor A, but sees the host's pids, stands in for a --pid host container.
err=$(unshare -m --propagation private cat "/proc/$A/root/mnt/d/f" 2>&1)
[[ $err == *"Permission denied"* ]]
ok $? "another namespace is refused through /proc/PID/root of A" || diag "$err"
err=$(unshare -m --propagation private cat "$SHARES/fromA/f" 2>&1)
[[ $err == *"Permission denied"* ]]
ok $? "and through the host's share path" || diag "$err"
in_ct "$A" "$VDRIVE" list --json | grep -q '"kind": "host", "target": "host", "path": "'"$SHARES"'/fromA"'
ok $? "list inside A shows the share" || diag "$(in_ct "$A" "$VDRIVE" list --json)"

# ---- read-only share with a container of the same uid ----
out=$(in_ct "$A" "$VDRIVE" share sd --container "$B" --name ro --read-only 2>&1)
ok $? "A shares read-only with container B (same uid)" || diag "$out"
[ "$(nsenter -t "$B" -m cat "$SHARES/ro/f" 2>&1)" = from-a ]
ok $? "B reads it"
err=$(in_ct "$B" sh -c "echo x > $SHARES/ro/new" 2>&1)
[[ $err == *"Read-only"* ]] && ! in_ct "$A" test -e /mnt/d/new
ok $? "B cannot write (EROFS)" || diag "$err"
in_ct "$A" sh -c 'echo again > /mnt/d/f' && [ "$(nsenter -t "$B" -m cat "$SHARES/ro/f")" = again ]
ok $? "A still writes, B sees it"

# ---- refusals ----
out=$(in_ct "$A" "$VDRIVE" share sd --container "$O" --name other 2>&1)
[ $? != 0 ] && [[ $out == *"policy forbids"* ]] && ! mounted_in "$O" "$SHARES/other"
ok $? "a container of another uid is refused by the policy" || diag "$out"
out=$(in_ct "$A" "$VDRIVE" share sd --container "$A" --name self 2>&1)
[ $? != 0 ] && [[ $out == *"itself"* ]]
ok $? "A cannot share its drive with itself" || diag "$out"
out=$(in_ct "$A" "$VDRIVE" share sd --host /etc 2>&1)
[ $? = 2 ] && [[ $out == *"--name"* ]]
ok $? "A cannot choose a host path" || diag "$out"
out=$(in_ct "$A" "$VDRIVE" share sd --host --name ../../etc 2>&1)
[ $? != 0 ] && ! mounted_in $$ /etc
ok $? "a share name with .. is refused" || diag "$out"
out=$(in_ct "$A" "$VDRIVE" mount mem: /mnt/plain --name plain 2>&1)
ok $? "a drive without -o shareable" || diag "$out"
out=$(in_ct "$A" "$VDRIVE" share plain --host --name p 2>&1)
[ $? != 0 ] && [[ $out == *"shareable"* ]] && [ ! -e "$SHARES/p/x" ]
ok $? "is refused, saying why" || diag "$out"
# C talks to vdrived itself: no request may name another's drive.
r=$(in_ct "$C" /usr/bin/python3 -c '
import os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["VDRIVE_SOCKET"])
s.sendall(b"share host rw stolen\n")
print(s.recv(200).decode().strip())
s.sendall(b"gate 1\n")
print(s.recv(200).decode().strip())' 2>&1)
[[ $r == "err 2 "*"err 22 "* ]] && ! mounted_in $$ "$SHARES/stolen"
ok $? "a container without a drive on its connection can share nothing" || diag "$r"

# ---- unshare, and a container that stops ----
out=$(in_ct "$A" "$VDRIVE" unshare sd --host 2>&1)
ok $? "A unshares from the host" || diag "$out"
! mounted_in $$ "$SHARES/fromA"
ok $? "the host share is gone"
kill -KILL "$B"
for _ in $(seq 50); do
	grep -q "share with pid:$B ended" "$VD_TMP/vdrived.log" && break
	sleep 0.1
done
grep -q "share with pid:$B ended" "$VD_TMP/vdrived.log"
ok $? "B stopped: the daemon ends its share"

# ---- flood: idle connections do not starve other clients ----
in_ct "$C" /usr/bin/python3 -c '
import os, socket, time
held = []
for i in range(1000):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.environ["VDRIVE_SOCKET"])
        held.append(s)
    except OSError:
        pass
time.sleep(30)' &
FL=$!
sleep 2
r=$(in_ct "$O" /usr/bin/python3 -c '
import os, socket
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(os.environ["VDRIVE_SOCKET"])
s.sendall(b"ping\n")
print(s.recv(100).decode().strip())' 2>&1)
[ "$r" = "ok vdrived 1" ]
ok $? "1,000 connections from one container: another is still served" || diag "$r"
n=$(ls /proc/"$DAEMON"/fd | wc -l)
[ "$n" -lt 100 ]
ok $? "the daemon holds few of them ($n descriptors)"
sleep 11
grep -q "idle for 10 s: closed" "$VD_TMP/vdrived.log"
ok $? "idle connections are closed after 10 s"
kill $FL 2>/dev/null
wait $FL 2>/dev/null

# ---- policy none ----
stop_daemon
start_daemon --share-policy none
in_ct "$A" mkdir -p /mnt/d2
out=$(in_ct "$A" "$VDRIVE" mount mem: /mnt/d2 --name sd2 -o shareable 2>&1)
ok $? "a shareable drive under --share-policy none" || diag "$out"
out=$(in_ct "$A" "$VDRIVE" share sd2 --host --name n 2>&1)
[ $? != 0 ] && [[ $out == *"policy forbids"* ]] && [ ! -e "$SHARES/n/x" ]
ok $? "the host is refused by the policy" || diag "$out"

in_ct "$A" "$VDRIVE" unmount sd2 >/dev/null 2>&1
in_ct "$A" "$VDRIVE" unmount plain >/dev/null 2>&1
in_ct "$A" "$VDRIVE" unmount sd >/dev/null 2>&1
! mounted_in "$A" /mnt/d && ! mounted_in "$A" /mnt/d2
ok $? "the drives unmount inside A"
cleanup_cts
left=$(awk -v t="$SHARES/" 'index($5, t) == 1' /proc/self/mountinfo)
[ -z "$left" ]
ok $? "no share is left mounted on the host" || diag "$left"
done_testing
