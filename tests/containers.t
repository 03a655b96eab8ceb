#!/bin/bash
# Drives in containers, without Docker: plain `unshare` namespaces stand
# in for containers. A host-made drive (--container PID) and a drive made
# from inside an unprivileged "container" through vdrived must be usable
# there only, refused to the host through /proc/PID/root and to another
# namespace, and gone without leftovers when the container ends.
set -u
. "$(dirname "$0")/lib.sh"
vd_init containers

VDRIVED=$VDRIVE_BUILD/vdrived
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null ||
	! command -v nsenter >/dev/null || ! command -v setpriv >/dev/null; then
	skip_all "needs root, unshare, nsenter and setpriv"
fi
CTS=()     # "container" pids to kill on exit
DAEMON=    # our vdrived

# A container: a process alone in a new private mount namespace, with a
# tmpfs of its own on /mnt. Sets CT to its pid.
new_ct() {
	unshare -m --propagation private sh -c \
		'mount -t tmpfs none /mnt && exec sleep 600' &
	CT=$!
	disown
	CTS+=($CT)
	for _ in $(seq 50); do
		grep -q " /mnt .* tmpfs" /proc/$CT/mountinfo 2>/dev/null && break
		sleep 0.1
	done
}

# An unprivileged container: new mount and pid namespaces, /proc of its
# own, a tmpfs on /mnt, no /dev/fuse, and its processes without any
# capability. Sets CT to the host pid of its init.
new_unpriv_ct() {
	unshare -m -p -f --mount-proc --propagation private bash -c '
		mount -t tmpfs none /mnt &&
		mkdir -p /tmp/.ctdev && mount -t tmpfs none /tmp/.ctdev &&
		mknod -m 666 /tmp/.ctdev/null c 1 3 &&
		mount --move /tmp/.ctdev /dev &&
		exec setpriv --bounding-set=-all --inh-caps=-all sleep 600' 2>/dev/null &
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

# in_ct PID CMD...: run CMD inside container PID, without capabilities.
in_ct() {
	local p=$1
	shift
	nsenter -t "$p" -m -p -- setpriv --bounding-set=-all --inh-caps=-all \
		env VDRIVE_SOCKET="$VD_TMP/vdrived.sock" VDRIVE_RUNDIR="$VD_TMP/run-in" \
		"$@"
}

ns_of() { stat -L -c %i "/proc/$1/ns/mnt"; }
mounted_in() { grep -q " $2 .* - fuse" "/proc/$1/mountinfo"; }
# Processes still in the mount namespace with inode $1.
in_ns() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
	done
}

cleanup_cts() {
	local p
	for p in "${CTS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null
	for p in "${CTS[@]}" $DAEMON; do
		for _ in $(seq 30); do _vd_alive "$p" || break; sleep 0.1; done
	done
}
trap 'cleanup_cts; _vd_exit' EXIT

drive_pid() { sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/$1" 2>/dev/null; }

# ---- a host-made drive in one container ----
new_ct
A=$CT
new_ct
B=$CT
out=$("$VDRIVE" mount mem: /mnt/data --container "$A" --name ca 2>&1)
ok $? "mount mem: at /mnt/data inside container $A" || diag "$out"
P=$(drive_pid ca)
[ -n "$P" ] && VD_PIDS+=("$P")
nsenter -t "$A" -m sh -c 'echo secret > /mnt/data/f && cat /mnt/data/f' 2>&1 | grep -qx secret
ok $? "the container writes and reads its drive"
mounted_in "$A" /mnt/data
ok $? "the drive is in the container's mount table"
! mounted_in $$ /mnt/data
ok $? "the drive is not in the host's mount table"
! mounted_in "$B" /mnt/data
ok $? "the drive is not in another container's mount table"
err=$(ls "/proc/$A/root/mnt/data" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "host root listing /proc/PID/root/PATH is refused (EACCES)" || diag "$err"
err=$(cat "/proc/$A/root/mnt/data/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "host root reading a file through /proc/PID/root is refused" || diag "$err"
err=$(nsenter -t "$B" -m cat "/proc/$A/root/mnt/data/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "another namespace reaching it through /proc is refused" || diag "$err"
err=$(nsenter -t "$B" -m sh -c "echo x > /proc/$A/root/mnt/data/g" 2>&1)
[ $? != 0 ] && ! nsenter -t "$A" -m test -e /mnt/data/g
ok $? "another namespace cannot create files in it" || diag "$err"
"$VDRIVE" list | grep -E "^ca +mem: +/mnt/data +pid:$A " >/dev/null
ok $? "vdrive list shows the container" || diag "$("$VDRIVE" list)"
"$VDRIVE" list --json | grep -q "\"container\": \"pid:$A\""
ok $? "vdrive list --json names the container"

# Kernel-made requests (writeback, readahead) carry no real caller: they
# must not be refused to an allowed writer and reader.
out=$("$VDRIVE" mount mem: /mnt/wb --container "$A" --name cw -o writeback_cache 2>&1)
ok $? "a writeback-cache drive in the container" || diag "$out"
PW=$(drive_pid cw)
[ -n "$PW" ] && VD_PIDS+=("$PW")
sum=$(nsenter -t "$A" -m sh -c 'head -c 20000000 /dev/urandom | tee /mnt/wb/r | md5sum;
	sync; echo 1 > /proc/sys/vm/drop_caches; md5sum < /mnt/wb/r' 2>&1)
[ "$(sed -n 1p <<<"$sum")" = "$(sed -n 2p <<<"$sum")" ] && [ "$(wc -l <<<"$sum")" = 2 ]
ok $? "written back and read back intact through the gate" || diag "$sum"
# A descriptor opened inside by an allowed process keeps working after the
# process leaves the namespace (documented: the gate checks paths).
r=$(python3 - "$A" <<'PYEOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/mnt", os.O_RDONLY)
there = os.open("/proc/%s/ns/mnt" % sys.argv[1], os.O_RDONLY)
libc.setns(there, 0x00020000)
fd = os.open("/mnt/data/f", os.O_RDONLY)
libc.setns(home, 0x00020000)
print(os.read(fd, 100).decode().strip())
PYEOF
)
[ "$r" = secret ]
ok $? "a descriptor opened inside still reads after leaving (not gated)" || diag "$r"
"$VDRIVE" unmount cw >/dev/null 2>&1

# ---- --allow ----
out=$("$VDRIVE" mount mem: /mnt/shared --container "/proc/$A/ns/mnt" --allow host \
	--allow "$B" --name cs 2>&1)
ok $? "mount with --allow host --allow B, container given as a ns file" || diag "$out"
P2=$(drive_pid cs)
[ -n "$P2" ] && VD_PIDS+=("$P2")
nsenter -t "$A" -m sh -c 'echo hi > /mnt/shared/h'
[ "$(cat "/proc/$A/root/mnt/shared/h" 2>&1)" = hi ]
ok $? "--allow host: the host reads it through /proc/PID/root"
[ "$(nsenter -t "$B" -m cat "/proc/$A/root/mnt/shared/h" 2>&1)" = hi ]
ok $? "--allow B: the other container reads it"
"$VDRIVE" unmount cs >/dev/null 2>&1 && ! mounted_in "$A" /mnt/shared
ok $? "vdrive unmount NAME removes it from the container"

# ---- bad references ----
err=$("$VDRIVE" mount mem: /x --container 999999999 2>&1)
[ $? != 0 ] && [ -n "$err" ]
ok $? "a PID that does not exist is refused with a message" || diag "$err"
err=$("$VDRIVE" mount mem: /x --container /etc/hostname 2>&1)
[ $? != 0 ] && grep -q "not a mount namespace" <<<"$err"
ok $? "a file that is not a namespace is refused" || diag "$err"
err=$("$VDRIVE" mount mem: relative --container "$A" 2>&1)
[ $? != 0 ]
ok $? "a relative path in a container is refused" || diag "$err"
cp /bin/sleep "$VD_TMP/runsc-sandbox"
"$VD_TMP/runsc-sandbox" 600 &
G=$!
disown
CTS+=($G)
err=$("$VDRIVE" mount mem: /x --container "$G" 2>&1)
[ $? != 0 ] && grep -q "gVisor" <<<"$err"
ok $? "a gVisor sandbox process is refused by PID, naming the runtime" || diag "$err"
kill $G

# ---- docker:NAME against a stand-in Engine API (chunked HTTP/1.1) ----
python3 - "$VD_TMP/fake-docker.sock" "$B" <<'PYEOF' &
import json, os, socket, sys
path, pid = sys.argv[1], int(sys.argv[2])
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(8)
for _ in range(4):
    c, _ = srv.accept()
    req = c.recv(4096).decode()
    name = req.split()[1].split("/")[2]
    rt = "runsc" if name == "sandboxed" else "runc"
    body = json.dumps({"Id": "abc", "Name": "/" + name, "State": {
        "Running": True, "Pid": pid}, "HostConfig": {"Runtime": rt},
        "Pad": "x" * 9000}).encode()
    if name == "missing":
        c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    else:
        out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for i in range(0, len(body), 4000):
            part = body[i:i + 4000]
            out += b"%x\r\n" % len(part) + part + b"\r\n"
        c.sendall(out + b"0\r\n\r\n")
    c.close()
PYEOF
FAKE=$!
disown
for _ in $(seq 50); do [ -S "$VD_TMP/fake-docker.sock" ] && break; sleep 0.1; done
out=$(DOCKER_HOST=unix://$VD_TMP/fake-docker.sock "$VDRIVE" mount mem: /mnt/dk \
	--container docker:web --name dk 2>&1)
PD=$(drive_pid dk)
[ -n "$PD" ] && VD_PIDS+=("$PD")
mounted_in "$B" /mnt/dk && "$VDRIVE" list | grep -qE "^dk .* docker:web "
ok $? "docker:NAME resolved through a chunked Engine API answer" || diag "$out"
DOCKER_HOST=unix://$VD_TMP/fake-docker.sock "$VDRIVE" unmount --container docker:web \
	>/dev/null 2>&1 && ! mounted_in "$B" /mnt/dk
ok $? "vdrive unmount --container docker:NAME"
err=$(DOCKER_HOST=unix://$VD_TMP/fake-docker.sock "$VDRIVE" mount mem: /mnt/dk \
	--container docker:sandboxed 2>&1)
[ $? != 0 ] && grep -q "gVisor" <<<"$err"
ok $? "a runsc container is refused by docker:NAME, naming gVisor" || diag "$err"
err=$(DOCKER_HOST=unix://$VD_TMP/fake-docker.sock "$VDRIVE" mount mem: /mnt/dk \
	--container docker:missing 2>&1)
[ $? != 0 ] && grep -q "no Docker container named 'missing'" <<<"$err"
ok $? "an unknown container is refused with a clear message" || diag "$err"
kill $FAKE 2>/dev/null

# ---- unmount by container ----
new_ct
C=$CT
"$VDRIVE" mount mem: /mnt/c1 --container "$C" --name cc1 >/dev/null 2>&1 &&
	"$VDRIVE" mount mem: /mnt/c2 --container "$C" --name cc2 >/dev/null 2>&1
ok $? "two drives in a third container"
PC1=$(drive_pid cc1) PC2=$(drive_pid cc2)
"$VDRIVE" unmount --container "$C" >/dev/null 2>&1 &&
	! mounted_in "$C" /mnt/c1 && ! mounted_in "$C" /mnt/c2 &&
	! _vd_alive "$PC1" && ! _vd_alive "$PC2"
ok $? "vdrive unmount --container PID stops both"

# The host has its own mount at the same path: unmounting the container's
# drive by that path must leave the host's alone.
vd_scratch tmpfs "$VD_TMP/same"
new_ct
S=$CT
"$VDRIVE" mount mem: "$VD_TMP/same" --container "$S" --name same >/dev/null 2>&1 &&
	"$VDRIVE" unmount "$VD_TMP/same" >/dev/null 2>&1 &&
	vd_mounted "$VD_TMP/same" && ! grep -q " $VD_TMP/same .* fuse" "/proc/$S/mountinfo"
ok $? "vdrive unmount PATH of a container drive leaves the host's mount at PATH"
kill "$S"

# ---- the container ends ----
NSA=$(ns_of "$A")
kill "$A"
for _ in $(seq 50); do _vd_alive "$P" || break; sleep 0.1; done
! _vd_alive "$P"
ok $? "killing the container ends its drive process"
[ ! -e "$VDRIVE_RUNDIR/drives/ca" ] && ! "$VDRIVE" list | grep -q "^ca "
ok $? "and its record"
[ -z "$(in_ns "$NSA")" ]
ok $? "and nothing keeps the container's namespace alive"

# ---- a privileged container mounts directly, isolated with -o isolate ----
unshare -m -p -f --mount-proc --propagation private sh -c \
	'mount -t tmpfs none /mnt && exec sleep 600' 2>/dev/null &
PU=$!
disown
CTS+=($PU)
for _ in $(seq 50); do
	PP=$(ps -o pid= --ppid $PU | tr -d ' ')
	[ -n "$PP" ] && grep -q " /mnt .* tmpfs" /proc/$PP/mountinfo 2>/dev/null && break
	sleep 0.1
done
CTS+=($PP)
nsenter -t "$PP" -m -p sh -c "mkdir /mnt/p /mnt/q && VDRIVE_RUNDIR=$VD_TMP/run-p \
	$VDRIVE mount mem: /mnt/p -o isolate && VDRIVE_RUNDIR=$VD_TMP/run-p \
	$VDRIVE mount mem: /mnt/q && echo in > /mnt/p/f && echo in > /mnt/q/f"
ok $? "a privileged container mounts directly (-o isolate, and without)"
[ "$(nsenter -t "$PP" -m -p cat /mnt/p/f)" = in ] &&
	! cat "/proc/$PP/root/mnt/p/f" >/dev/null 2>&1 &&
	[ "$(cat "/proc/$PP/root/mnt/q/f" 2>&1)" = in ]
ok $? "-o isolate refuses the host through /proc/PID/root (which reads the other)"
kill -KILL "$PP"

# ---- vdrived: a drive made inside an unprivileged container ----
if [ ! -x "$VDRIVED" ]; then
	missing "vdrived" "not built"
	cleanup_cts
	done_testing
fi
"$VDRIVED" --socket "$VD_TMP/vdrived.sock" --state "$VD_TMP/vdstate" \
	2>"$VD_TMP/vdrived.log" &
DAEMON=$!
disown
for _ in $(seq 50); do [ -S "$VD_TMP/vdrived.sock" ] && break; sleep 0.1; done
new_unpriv_ct
U=$CT
new_unpriv_ct
V=$CT
in_ct "$U" sh -c '! test -e /dev/fuse && ! grep -q "^CapEff:.*[1-9a-f]" /proc/self/status'
ok $? "the container has no /dev/fuse and no capabilities"
in_ct "$U" mkdir /mnt/d
out=$(in_ct "$U" "$VDRIVE" mount mem: /mnt/d --name ud 2>&1)
ok $? "vdrive mount inside it works through vdrived" || diag "$out $(cat "$VD_TMP/vdrived.log")"
in_ct "$U" sh -c 'echo inside > /mnt/d/f && cat /mnt/d/f' 2>&1 | grep -qx inside
ok $? "the container uses its own drive"
# Serving threads: with libfuse >= 3.17 each gets a clone of the
# connection from vdrived; with 3.14 they share the one descriptor.
UP=$(sed -n 's/^pid=//p' "$VD_TMP/run-in/drives/ud")
nfd=$(in_ct "$U" sh -c "ls -l /proc/$UP/fd | grep -c /dev/fuse")
if ldd "$VDRIVE_BUILD/libvdrive.so" | grep -q "libfuse3.so.4"; then
	[ "${nfd:-0}" -ge 2 ]
	ok $? "libfuse >= 3.17: workers serve on clones from vdrived ($nfd descriptors)"
else
	[ "${nfd:-0}" = 1 ]
	ok $? "libfuse 3.14: workers share the one descriptor ($nfd)"
fi
mounted_in "$U" /mnt/d && ! mounted_in $$ /mnt/d && ! mounted_in "$V" /mnt/d
ok $? "it is in that container's mount table only"
err=$(cat "/proc/$U/root/mnt/d/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "host root reading it through /proc/PID/root is refused" || diag "$err"
err=$(nsenter -t "$V" -m -p cat "/proc/$U/root/mnt/d/f" 2>&1)
[ $? != 0 ]
ok $? "the other container cannot read it" || diag "$err"

# Raw protocol clients, run inside containers.
proto() { # proto PID REQUEST-BYTES (python escapes): prints the replies
	in_ct "$1" /usr/bin/python3 -c '
import socket, sys, os
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["VDRIVE_SOCKET"])
out = b""
try:
    s.sendall(eval("b\"" + sys.argv[1] + "\""))
    s.shutdown(socket.SHUT_WR)
    while True:
        d = s.recv(4096)
        if not d: break
        out += d
except ConnectionResetError:
    out += b"reset"
print(out.decode(errors="replace"), end="")' "$2"
}
r=$(proto "$V" 'list\n')
[ "$r" = "ok 0" ]
ok $? "another container's list shows none of the first one's drives" || diag "$r"
r=$(proto "$U" 'list\n')
grep -q "^drive /mnt/d" <<<"$r"
ok $? "the owner's list shows its drive" || diag "$r"
r=$(proto "$V" 'mount - /mnt/v\n')
[ "${r%%$'\n'*}" = ok ] &&
	grep -q "mounted /mnt/v in mnt ns $(ns_of "$V")" "$VD_TMP/vdrived.log" &&
	! mounted_in "$U" /mnt/v && ! mounted_in $$ /mnt/v
ok $? "a mount request lands in the caller's namespace only" || diag "$r"
r=$(proto "$V" "mount - /proc/$U/root/mnt/d\\n")
[ "$(grep -c " /mnt/d " "/proc/$U/mountinfo")" = 1 ]
ok $? "naming another container's path mounts nothing there" || diag "$r"
nsenter -t "$V" -m -p -- sh -c 'mkdir -p /mnt/u1000 && chown 1000 /mnt/u1000'
r=$(nsenter -t "$V" -m -p -- setpriv --reuid=1000 --regid=1000 --clear-groups \
	env VDRIVE_SOCKET="$VD_TMP/vdrived.sock" /usr/bin/python3 -c '
import socket, os
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["VDRIVE_SOCKET"])
for p in ("/mnt", "/mnt/u1000"):
    s.sendall(b"mount - " + p.encode() + b"\n")
    print(s.recv(200).decode().strip())
' 2>&1)
[ "$(sed -n 1p <<<"$r" | cut -d" " -f1-2)" = "err 1" ] && [ "$(sed -n 2p <<<"$r")" = ok ]
ok $? "uid 1000 may not mount on a root-owned path, only on its own folder" || diag "$r"
nbad=0
for bad in 'hello\n' 'clone\n' 'mount\n' 'mount - relative\n' 'mount - /a/../etc\n' \
	'mount bogus_opt /x\n' 'mount - /x\x00y\n' 'unmount\n' \
	"mount - /$(head -c 5000 /dev/zero | tr '\0' a)\\n"; do
	r=$(proto "$V" "$bad")
	# A request too long to read may be cut off with a reset instead.
	grep -qE "^err |^reset$" <<<"$r" || { diag "'${bad:0:30}' got '$r'"; nbad=$((nbad + 1)); }
done
ok $nbad "malformed and hostile requests get errors"
r=$(proto "$V" 'ping\n')
[ "$r" = "ok vdrived 1" ] && kill -0 "$DAEMON"
ok $? "the daemon survives them" || diag "$r"
# One namespace opening many idle connections cannot lock others out.
in_ct "$V" /usr/bin/python3 -c '
import socket, os, time
socks = []
for i in range(60):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["VDRIVE_SOCKET"])
    socks.append(s)
time.sleep(3)' &
HOG=$!
sleep 1
r=$(proto "$U" 'ping\n')
[ "$r" = "ok vdrived 1" ] && grep -q "too many connections" "$VD_TMP/vdrived.log"
ok $? "a namespace hogging connections is capped; others are still served" || diag "$r"
kill $HOG 2>/dev/null
wait $HOG 2>/dev/null
in_ct "$V" sh -c 'grep " /mnt/v " /proc/self/mountinfo' >/dev/null
[ $? != 0 ]
ok $? "a drive whose connection ended is unmounted by the daemon"

# The daemon restarts: it adopts the live drive from its record.
kill "$DAEMON"
for _ in $(seq 30); do _vd_alive "$DAEMON" || break; sleep 0.1; done
mounted_in "$U" /mnt/d && [ -n "$(ls "$VD_TMP/vdstate")" ]
ok $? "a stopped daemon leaves the drives and their records"
"$VDRIVED" --socket "$VD_TMP/vdrived.sock" --state "$VD_TMP/vdstate" \
	2>>"$VD_TMP/vdrived.log" &
DAEMON=$!
disown
for _ in $(seq 50); do grep -q "recovered" "$VD_TMP/vdrived.log" && break; sleep 0.1; done
grep -q "recovered, watching" "$VD_TMP/vdrived.log" &&
	in_ct "$U" cat /mnt/d/f 2>&1 | grep -qx inside
ok $? "a restarted daemon recovers the drive's record; the drive still works"

NSU=$(ns_of "$U")
kill -KILL "$U" 2>/dev/null # its pid namespace ends, and all in it
for _ in $(seq 50); do
	[ -z "$(ls "$VD_TMP/vdstate")" ] && [ -z "$(in_ns "$NSU")" ] && break
	sleep 0.1
done
[ -z "$(ls "$VD_TMP/vdstate")" ] && [ -z "$(in_ns "$NSU")" ]
ok $? "a stopped container leaves no record, process or namespace" ||
	diag "state: $(ls "$VD_TMP/vdstate") ns: $(in_ns "$NSU")"
grep -q "its process ended: unmounted" "$VD_TMP/vdrived.log"
ok $? "the restarted daemon unmounted the recovered drive"

cleanup_cts
DAEMON=
! grep -rqs "Sanitizer" "$VD_TMP/vdrived.log" "$VD_TMP"/run*
ok $? "no sanitizer reports from vdrived or the drives (SAN=1 builds)"
done_testing
