#!/bin/bash
# Drives in real Docker containers. Starts a private dockerd (own socket,
# data and exec folders, no networking), imports a busybox-static image,
# and checks a host-made drive (--container docker:NAME) and a drive made
# inside an unprivileged container through vdrived: usable inside only,
# refused to the host through /proc/PID/root, invisible to a second
# container, gone with the container; gVisor containers refused.
set -u
. "$(dirname "$0")/lib.sh"
vd_init docker

VDRIVED=$VDRIVE_BUILD/vdrived
DOCKERD=/usr/sbin/dockerd
DOCKER=/usr/bin/docker # Debian's client, not whatever is first on PATH
if [ "$(id -u)" != 0 ]; then
	skip_all "needs root"
fi
# make deps (scripts/deps.sh) installs them; a test installs nothing.
if [ ! -x $DOCKERD ] || [ ! -x $DOCKER ] || [ ! -x /bin/busybox ]; then
	skip_all "docker.io or busybox-static is not installed (make deps)"
fi

DK=$VD_TMP/dk
mkdir -p "$DK/data" "$DK/exec" "$DK/vds" "$DK/rootfs"
export DOCKER_HOST=unix://$DK/docker.sock
D() { timeout -k 5 60 $DOCKER "$@"; }
DPID=
VDPID=

stop_all() {
	local p
	if [ -n "$DPID" ]; then
		D ps -aq 2>/dev/null | xargs -r $DOCKER rm -f >/dev/null 2>&1
		kill "$DPID" 2>/dev/null
		for _ in $(seq 100); do _vd_alive "$DPID" || break; sleep 0.1; done
		_vd_alive "$DPID" && kill -KILL "$DPID"
		DPID=
		# whatever dockerd left mounted in its folders
		awk -v t="$DK/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo |
			sort -r | while read -r p; do umount -l "$p"; done
	fi
	if [ -n "$VDPID" ]; then
		kill "$VDPID" 2>/dev/null
		for _ in $(seq 30); do _vd_alive "$VDPID" || break; sleep 0.1; done
		VDPID=
	fi
}
trap 'stop_all; _vd_exit' EXIT

# ---- a private Docker engine and a busybox image ----
RUNSC=
[ -x /usr/bin/runsc ] && RUNSC=/usr/bin/runsc
if [ -n "$RUNSC" ]; then
	cat >"$DK/daemon.json" <<EOF
{ "runtimes": { "runsc": { "path": "$RUNSC",
  "runtimeArgs": ["--network=none", "--platform=ptrace", "--ignore-cgroups"] } } }
EOF
else
	echo '{}' >"$DK/daemon.json"
fi
$DOCKERD --config-file "$DK/daemon.json" --iptables=false --ip6tables=false \
	--bridge=none -H "$DOCKER_HOST" --data-root "$DK/data" \
	--exec-root "$DK/exec" --pidfile "$DK/dockerd.pid" --storage-driver vfs \
	>"$DK/dockerd.log" 2>&1 &
DPID=$!
disown
for _ in $(seq 100); do D version >/dev/null 2>&1 && break; sleep 0.1; done
D version >/dev/null 2>&1
if ! ok $? "a private dockerd answers on its own socket"; then
	diag "$(tail -5 "$DK/dockerd.log")"
	stop_all
	done_testing
fi

R=$DK/rootfs
mkdir -p "$R/bin" "$R/proc" "$R/dev" "$R/sys" "$R/tmp" "$R/etc" "$R/mnt" \
	"$R/usr/lib" "$R/usr/lib64" "$R/run/vdrive" "$R/vd"
cp /bin/busybox "$R/bin/"
for c in sh ls cat echo sleep mkdir grep test; do ln -s busybox "$R/bin/$c"; done
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
tar -C "$R" -c . | D import - vdtest-busybox:1 >/dev/null
ok $? "a busybox-static image imported (no pulls)"
RUN=(run -d --network none --stop-timeout 1)
# The host's libraries and our build, read-only, so /vd/vdrive runs there.
LIBS=(-v /usr/lib:/usr/lib:ro -v /usr/lib64:/usr/lib64:ro -v "$VDRIVE_BUILD:/vd:ro")
# A private libfuse (make LIBFUSE=...) too, at the same path.
FUSELIB=$(ldd "$VDRIVE_BUILD/libvdrive.so" | awk '/libfuse3/ { print $3 }')
case $FUSELIB in
/usr/* | /lib*) ;;
/*) LIBS+=(-v "$(dirname "$FUSELIB"):$(dirname "$FUSELIB"):ro") ;;
esac

pid_of() { D inspect -f '{{.State.Pid}}' "$1"; }
ns_of() { stat -L -c %i "/proc/$1/ns/mnt"; }
in_ns() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
	done
}
drive_pid() { sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/$1" 2>/dev/null; }

# ---- a host-made drive in one container ----
D "${RUN[@]}" --name c1 vdtest-busybox:1 sleep 600 >/dev/null &&
	D "${RUN[@]}" --name c2 vdtest-busybox:1 sleep 600 >/dev/null
ok $? "two plain containers run"
P1=$(pid_of c1)
out=$("$VDRIVE" mount mem: /data --container docker:c1 --name h1 2>&1)
ok $? "vdrive mount mem: /data --container docker:c1" || diag "$out"
HP=$(drive_pid h1)
[ -n "$HP" ] && VD_PIDS+=("$HP")
[ "$(D exec c1 sh -c 'echo from-c1 > /data/f && cat /data/f' 2>&1)" = from-c1 ]
ok $? "the container writes and reads its drive"
! D exec c2 ls /data >/dev/null 2>&1
ok $? "the drive is absent in the second container"
! grep -q " /data " /proc/self/mountinfo
ok $? "the drive is absent on the host"
err=$(cat "/proc/$P1/root/data/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "host root reading /proc/PID/root/data/f is refused" || diag "$err"
"$VDRIVE" list | grep -qE "^h1 .* docker:c1 "
ok $? "vdrive list shows docker:c1" || diag "$("$VDRIVE" list)"
out=$(env -u DOCKER_HOST "$VDRIVE" mount mem: /data2 --docker-host "$DOCKER_HOST" \
	--container docker:c1 --name h2 2>&1)
ok $? "--docker-host names the engine when DOCKER_HOST is unset" || diag "$out"
[ -n "$(drive_pid h2)" ] && VD_PIDS+=("$(drive_pid h2)")
NS1=$(ns_of "$P1")
D stop c1 >/dev/null
for _ in $(seq 50); do _vd_alive "$HP" || break; sleep 0.1; done
! _vd_alive "$HP" && [ ! -e "$VDRIVE_RUNDIR/drives/h1" ] &&
	[ ! -e "$VDRIVE_RUNDIR/drives/h2" ] && [ -z "$(in_ns "$NS1")" ]
ok $? "stopping the container ends its drives: no process, record or namespace left" ||
	diag "left in ns: $(in_ns "$NS1"); $(ls "$VDRIVE_RUNDIR/drives")"

# ---- a drive made inside an unprivileged container, through vdrived ----
"$VDRIVED" --socket "$DK/vds/vdrived.sock" --state "$DK/vdstate" \
	2>"$DK/vdrived.log" &
VDPID=$!
disown
for _ in $(seq 50); do [ -S "$DK/vds/vdrived.sock" ] && break; sleep 0.1; done
UNPRIV=(--cap-drop ALL --security-opt no-new-privileges
	-v "$DK/vds:/run/vdrive" -e VDRIVE_RUNDIR=/tmp/vdrun "${LIBS[@]}")
D "${RUN[@]}" --name u1 "${UNPRIV[@]}" vdtest-busybox:1 sleep 600 >/dev/null &&
	D "${RUN[@]}" --name u2 "${UNPRIV[@]}" vdtest-busybox:1 sleep 600 >/dev/null
ok $? "two unprivileged containers (no capabilities) with the socket run"
U1=$(pid_of u1)
U2=$(pid_of u2)
D exec u1 sh -c '! test -e /dev/fuse && grep -q "^CapEff:.0*$" /proc/self/status'
ok $? "they have no /dev/fuse and no capabilities"
out=$(D exec u1 sh -c 'mkdir -p /mnt/d && /vd/vdrive mount mem: /mnt/d' 2>&1)
ok $? "vdrive mount inside the container works through vdrived" ||
	diag "$out $(cat "$DK/vdrived.log")"
[ "$(D exec u1 sh -c 'echo from-u1 > /mnt/d/f && cat /mnt/d/f' 2>&1)" = from-u1 ]
ok $? "the container uses the drive it made"
grep -q " /mnt/d .* fuse" "/proc/$U1/mountinfo" &&
	! grep -q " /mnt/d " "/proc/$U2/mountinfo" && ! grep -q " /mnt/d " /proc/self/mountinfo
ok $? "the drive is in its container's mount table only"
err=$(cat "/proc/$U1/root/mnt/d/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "host root reading it through /proc/PID/root is refused" || diag "$err"

# A client speaking the protocol from inside a container's mount namespace
# (python on the host, which enters the namespace after it has started).
proto() { # proto PID REQUEST
	python3 - "$1" "$2" <<'EOF'
import ctypes, os, socket, sys
fd = os.open("/proc/%s/ns/mnt" % sys.argv[1], os.O_RDONLY)
if ctypes.CDLL(None, use_errno=True).setns(fd, 0x00020000) != 0:
    sys.exit("setns failed")
s = socket.socket(socket.AF_UNIX)
s.connect("/run/vdrive/vdrived.sock")
s.sendall(sys.argv[2].encode() + b"\n")
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    out += d
print(out.decode(errors="replace"), end="")
EOF
}
r=$(proto "$U2" list)
[ "$r" = "ok 0" ]
ok $? "the second container's list shows nothing of the first's" || diag "$r"
r=$(proto "$U2" "mount - /proc/$U1/root/mnt/d")
[ "${r%% *}" = err ] && [ "$(grep -c " /mnt/d " "/proc/$U1/mountinfo")" = 1 ]
ok $? "the second container cannot mount into the first through the socket" || diag "$r"
r=$(proto "$U2" "mount - /mnt/e")
[ "${r%%$'\n'*}" = ok ] && grep -q "mounted /mnt/e in mnt ns $(ns_of "$U2")" "$DK/vdrived.log" &&
	! grep -q " /mnt/e " "/proc/$U1/mountinfo"
ok $? "its mount request lands in its own namespace only" || diag "$r"

D "${RUN[@]}" --name u3 "${UNPRIV[@]}" vdtest-busybox:1 sleep 600 >/dev/null
D exec -d u3 sh -c 'mkdir -p /mnt/h && exec /vd/examples/hello /mnt/h'
for _ in $(seq 50); do D exec u3 test -e /mnt/h/hello.txt 2>/dev/null && break; sleep 0.1; done
[ "$(D exec u3 cat /mnt/h/hello.txt 2>&1)" = "Hello from vdrive!" ]
ok $? "an application linking libvdrive (examples/hello) mounts from inside"

# A privileged container mounts directly, with the same gate (-o isolate).
# (libfuse >= 3.17 as root runs /bin/mount to note the mount in mtab:
# lend the host's.)
D "${RUN[@]}" --name p1 --device /dev/fuse --cap-add SYS_ADMIN \
	-v /usr/bin/mount:/bin/mount:ro \
	-e VDRIVE_RUNDIR=/tmp/vdrun -e VDRIVE_SOCKET=/nonexistent "${LIBS[@]}" \
	vdtest-busybox:1 sleep 600 >/dev/null
out=$(D exec p1 sh -c 'mkdir -p /mnt/p && /vd/vdrive mount mem: /mnt/p -o isolate &&
	echo from-p1 > /mnt/p/f && cat /mnt/p/f' 2>&1)
[ "$out" = from-p1 ]
ok $? "a privileged container (/dev/fuse, SYS_ADMIN) mounts directly" ||
	diag "$out $(D exec p1 sh -c 'cat /tmp/vdrun/*.log /tmp/vdrun/*/*.log' 2>&1)"
err=$(cat "/proc/$(pid_of p1)/root/mnt/p/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "-o isolate refuses host reads through /proc/PID/root there too" || diag "$err"
D stop p1 >/dev/null

NSU=$(ns_of "$U1")
D stop u1 u3 >/dev/null
for _ in $(seq 50); do
	[ "$(ls "$DK/vdstate" | wc -l)" = 0 ] && [ -z "$(in_ns "$NSU")" ] && break
	sleep 0.1
done
[ "$(ls "$DK/vdstate" | wc -l)" = 0 ] && [ -z "$(in_ns "$NSU")" ]
ok $? "stopped containers leave no record, process or namespace" ||
	diag "state: $(ls "$DK/vdstate"); ns: $(in_ns "$NSU")"
kill -0 "$VDPID" && [ "$(proto "$U2" list)" = "ok 0" ]
ok $? "the daemon still serves"

# ---- gVisor ----
if [ -z "$RUNSC" ]; then
	skip "gVisor container refused by docker:NAME" "runsc is not installed"
	skip "gVisor container refused by PID" "runsc is not installed"
elif D "${RUN[@]}" --runtime runsc --name g1 vdtest-busybox:1 sleep 600 >/dev/null 2>"$DK/g1.err"; then
	err=$("$VDRIVE" mount mem: /data --container docker:g1 2>&1)
	[ $? != 0 ] && grep -q "gVisor" <<<"$err"
	ok $? "a gVisor container is refused by docker:NAME, naming the runtime" || diag "$err"
	err=$("$VDRIVE" mount mem: /data --container "$(pid_of g1)" 2>&1)
	[ $? != 0 ] && grep -q "gVisor" <<<"$err"
	ok $? "and by its PID" || diag "$err"
else
	skip "gVisor container refused by docker:NAME" "runsc does not start here: $(tail -1 "$DK/g1.err")"
	skip "gVisor container refused by PID" "runsc does not start here"
fi

! grep -qs "Sanitizer" "$DK/vdrived.log"
ok $? "no sanitizer reports from vdrived (SAN=1 builds)"
stop_all
[ -z "$(awk -v t="$DK/" 'index($5, t) == 1' /proc/self/mountinfo)" ]
ok $? "dockerd and its mounts are gone"
done_testing
