#!/bin/bash
# The Docker volume plugin (vdrive-docker) with a real, private dockerd:
# `docker volume create -d vdrive -o source=...` for sqlite: and mem:,
# two containers sharing a volume, a third that does not mount it and
# cannot reach it (not even through /proc/PID/root with --pid host), the
# host refused too; bad options, unknown kinds and a missing database
# fail with vdrive's message; `docker volume rm` leaves nothing mounted
# and no serving thread; the plugin brings its volumes back on restart.
#
# Docker looks for plugin sockets in /run/docker/plugins only, so the
# script runs in a private mount namespace with a tmpfs there: the
# driver is called vdrive as in real use, and nothing outside changes.
set -u
if [ "${VD_IN_MOUNT_NS:-}" != 1 ] && [ "$(id -u)" = 0 ]; then
	VD_IN_MOUNT_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
vd_init dockervol

PLUGIN=$VDRIVE_BUILD/vdrive-docker
DOCKERD=/usr/sbin/dockerd
DOCKER=/usr/bin/docker # Debian's client, not whatever is first on PATH
if [ "$(id -u)" != 0 ]; then
	skip_all "needs root"
fi
[ -x "$PLUGIN" ] || skip_all "vdrive-docker is not built ($PLUGIN)"
if [ ! -x $DOCKERD ] || [ ! -x $DOCKER ] || [ ! -x /bin/busybox ]; then
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
		docker.io busybox-static >"$VD_TMP/apt.log" 2>&1
fi
if [ ! -x $DOCKERD ] || [ ! -x $DOCKER ] || [ ! -x /bin/busybox ]; then
	skip_all "docker.io or busybox-static cannot be installed: $(tail -1 "$VD_TMP/apt.log")"
fi

DK=$VD_TMP/dk
PR=$DK/plugin # the plugin's --root
mkdir -p "$DK/data" "$DK/exec" "$DK/rootfs" /run/docker/plugins
mount -t tmpfs -o mode=755 tmpfs /run/docker/plugins || skip_all "cannot mount a tmpfs on /run/docker/plugins"
VD_MOUNTS+=(/run/docker/plugins)
fs=$VD_TMP/fs
vd_scratch tmpfs "$fs" || skip_all "cannot mount a tmpfs for the databases"
export DOCKER_HOST=unix://$DK/docker.sock
D() { timeout -k 5 60 $DOCKER "$@"; }
DPID=
PLPID=

start_plugin() {
	"$PLUGIN" --root "$PR" --docker-host "$DOCKER_HOST" 2>>"$DK/plugin.log" &
	PLPID=$!
	disown
	for _ in $(seq 50); do [ -S /run/docker/plugins/vdrive.sock ] && break; sleep 0.1; done
	[ -S /run/docker/plugins/vdrive.sock ]
}
stop_plugin() {
	[ -n "$PLPID" ] || return 0
	kill "$PLPID" 2>/dev/null
	for _ in $(seq 100); do _vd_alive "$PLPID" || break; sleep 0.1; done
	_vd_alive "$PLPID" && kill -KILL "$PLPID"
	PLPID=
}
stop_all() {
	local p
	if [ -n "$DPID" ]; then
		D ps -aq 2>/dev/null | xargs -r $DOCKER rm -f >/dev/null 2>&1
		kill "$DPID" 2>/dev/null
		for _ in $(seq 100); do _vd_alive "$DPID" || break; sleep 0.1; done
		_vd_alive "$DPID" && kill -KILL "$DPID"
		DPID=
	fi
	stop_plugin
	# whatever dockerd or the plugin left mounted in their folders
	awk -v t="$DK/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r p; do umount -l "$p"; done
}
trap 'stop_all; _vd_exit' EXIT

# fuse mounts of the plugin's drives
drives() { awk -v t="$PR/" 'index($5, t) == 1 && / - fuse\.vdrive / { print $5 }' /proc/self/mountinfo; }
threads() { ls "/proc/$PLPID/task" 2>/dev/null | wc -l; }

# ---- a private Docker engine, a busybox image, the plugin ----
$DOCKERD --iptables=false --ip6tables=false \
	--bridge=none -H "$DOCKER_HOST" --data-root "$DK/data" \
	--exec-root "$DK/exec" --pidfile "$DK/dockerd.pid" --storage-driver vfs \
	>"$DK/dockerd.log" 2>&1 &
DPID=$!
disown
for _ in $(seq 100); do D version >/dev/null 2>&1 && break; sleep 0.1; done
D version >/dev/null 2>&1
if ! ok $? "a private dockerd answers on its own socket"; then
	diag "$(tail -5 "$DK/dockerd.log")"
	done_testing
fi
R=$DK/rootfs
mkdir -p "$R/bin" "$R/proc" "$R/dev" "$R/sys" "$R/tmp" "$R/etc" "$R/data"
cp /bin/busybox "$R/bin/"
for c in sh ls cat echo sleep mkdir grep test touch; do ln -s busybox "$R/bin/$c"; done
tar -C "$R" -c . | D import - vdtest-busybox:1 >/dev/null
ok $? "a busybox-static image imported (no pulls)"
RUN=(run -d --network none --stop-timeout 1)

start_plugin
ok $? "vdrive-docker listens on /run/docker/plugins/vdrive.sock" || diag "$(cat "$DK/plugin.log")"
T0=$(threads)

# ---- a sqlite: volume in two containers ----
out=$(D volume create -d vdrive -o source=sqlite:"$fs/app.db" app 2>&1)
ok $? "docker volume create -d vdrive -o source=sqlite:DB app" || diag "$out $(tail -3 "$DK/plugin.log")"
MP=$(D volume inspect -f '{{.Mountpoint}}' app 2>&1)
[ "$(D volume ls -q -f driver=vdrive)" = app ] &&
	[ "$(D volume inspect -f '{{.Driver}} {{.Status.source}}' app)" = "vdrive sqlite:$fs/app.db" ] &&
	[ "$(drives)" = "$MP" ]
ok $? "docker volume ls/inspect show it; its drive is mounted at $MP" ||
	diag "ls: $(D volume ls) inspect: $(D volume inspect app 2>&1) drives: $(drives)"

D "${RUN[@]}" --name c1 -v app:/data vdtest-busybox:1 sleep 600 >/dev/null &&
	D "${RUN[@]}" --name c2 -v app:/data vdtest-busybox:1 sleep 600 >/dev/null &&
	D "${RUN[@]}" --name ro -v app:/data:ro vdtest-busybox:1 sleep 600 >/dev/null
ok $? "three containers run with -v app:/data (one :ro)" || diag "$(tail -3 "$DK/dockerd.log")"
P1=$(D inspect -f '{{.State.Pid}}' c1)
C1=$(D inspect -f '{{.Id}}' c1)
CRO=$(D inspect -f '{{.Id}}' ro)
out=$(D exec c1 sh -c 'echo from-c1 > /data/f && cat /data/f' 2>&1)
[ "$out" = from-c1 ]
ok $? "the first writes and reads the volume" || diag "$out"
out=$(D exec c2 sh -c 'cat /data/f && echo from-c2 >> /data/f && cat /data/f' 2>&1)
[ "$out" = $'from-c1\nfrom-c1\nfrom-c2' ]
ok $? "the second sees it and writes too" || diag "$out"
out=$(D exec ro sh -c 'cat /data/f; touch /data/g' 2>&1)
# (docker exec may interleave stdout and stderr in either order)
grep -qx from-c1 <<<"$out" && grep -qx from-c2 <<<"$out" && grep -q "Read-only" <<<"$out"
ok $? "the :ro one reads, and its writes fail with EROFS" || diag "$out"

# ---- nobody else ----
D "${RUN[@]}" --name c3 --pid host --cap-add SYS_PTRACE --security-opt apparmor=unconfined \
	vdtest-busybox:1 sleep 600 >/dev/null
ok $? "a third container without the volume, with --pid host and SYS_PTRACE, runs"
! D exec c3 test -e /data/f
ok $? "the volume is not in the third container"
out=$(D exec c3 sh -c "test -x /proc/$P1/root/bin/busybox && echo path-ok; cat /proc/$P1/root/data/f" 2>&1)
grep -qx path-ok <<<"$out" && grep -q "Permission denied" <<<"$out" && ! grep -q from-c1 <<<"$out"
ok $? "it reaches the first's root through /proc/PID/root, but the volume is refused" || diag "$out"
# Its mount table holds the drive (a recursive bind of the plugin's
# folder), but the Engine says it does not mount the volume.
D "${RUN[@]}" --name c5 -v "$PR/volumes:/vols" vdtest-busybox:1 sleep 600 >/dev/null
C5=$(D inspect -f '{{.Id}}' c5)
out=$(D exec c5 sh -c 'grep -c " /vols/app " /proc/self/mountinfo; cat /vols/app/f' 2>&1)
grep -qx 1 <<<"$out" && grep -q "Permission denied" <<<"$out" && ! grep -q from-c1 <<<"$out"
ok $? "a container with the drive bound in another way (-v $PR/volumes:/vols) is refused" ||
	diag "$out"
out=$(cat "$MP/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$out"
ok $? "host root reading the drive's mount point is refused" || diag "$out"
out=$(cat "/proc/$P1/root/data/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$out"
ok $? "host root reading through /proc/PID/root is refused" || diag "$out"
out=$(setpriv --reuid 65534 --regid 65534 --clear-groups cat "/proc/$P1/root/data/f" 2>&1)
[ $? != 0 ] && ! grep -q from-c1 <<<"$out"
ok $? "a host user is refused" || diag "$out"
[ "$(D exec c1 cat /data/f 2>&1 | head -1)" = from-c1 ]
ok $? "the first container still reads after all that"
grep -q "container ${C5:0:12} refused" "$DK/plugin.log" &&
	grep -q "container ${C1:0:12} admitted (" "$DK/plugin.log" &&
	grep -q "container ${CRO:0:12} admitted read-only" "$DK/plugin.log"
ok $? "the plugin's log: c1 admitted, ro admitted read-only, c5 refused (by the Engine's word)" ||
	diag "$(cat "$DK/plugin.log")"
grep "the Engine answered" "$DK/plugin.log" | sed 's/^/# note: /'


# ---- in use, then removed ----
out=$(D volume rm app 2>&1)
[ $? != 0 ] && grep -qi "in use" <<<"$out" && [ "$(drives)" = "$MP" ]
ok $? "docker volume rm refuses a volume in use" || diag "$out"
D rm -f c1 c2 ro >/dev/null
out=$(D volume rm app 2>&1)
ok $? "docker volume rm app once its containers are gone" || diag "$out"
for _ in $(seq 30); do [ "$(threads)" -le "$T0" ] && break; sleep 0.1; done
[ -z "$(drives)" ] && [ ! -e "$MP" ] && [ "$(threads)" -le "$T0" ] && _vd_alive "$PLPID" &&
	[ -z "$(D volume ls -q)" ]
ok $? "nothing mounted, no mount point, no serving thread left ($(threads) threads, $T0 before)" ||
	diag "drives: $(drives); threads: $(threads)"

out=$(D volume create -d vdrive -o source=sqlite:"$fs/app.db" app 2>&1) &&
	out=$(D run --rm --network none -v app:/data vdtest-busybox:1 cat /data/f 2>&1)
[[ $out == from-c1$'\n'from-c2 ]]
ok $? "the data is in the database: a new volume on it shows the file" || diag "$out $(tail -5 "$DK/plugin.log")"
D volume rm app >/dev/null

# ---- mem: keeps its data from one container to the next ----
D volume create -d vdrive -o source=mem: -o o=attr_timeout=2 scratch >/dev/null &&
	D run --rm --network none -v scratch:/s vdtest-busybox:1 sh -c 'echo kept > /s/k' &&
	out=$(D run --rm --network none -v scratch:/s vdtest-busybox:1 cat /s/k 2>&1)
[ "$out" = kept ]
ok $? "a mem: volume (with o=attr_timeout=2) keeps its data between containers" || diag "$out"

# ---- restart ----
stop_plugin
[ -z "$(drives)" ]
ok $? "stopping the plugin unmounts its drives" || diag "$(drives)"
start_plugin &&
	out=$(D run --rm --network none -v scratch:/s vdtest-busybox:1 sh -c 'ls /s; echo new > /s/n; cat /s/n' 2>&1)
[ "$out" = new ] && [ -n "$(drives)" ]
ok $? "restarted, it mounts its volumes again (mem: starts empty)" || diag "$out $(tail -3 "$DK/plugin.log")"
D volume rm scratch >/dev/null

# ---- bad input: vdrive's message through docker, nothing left ----
# bad DESC PATTERN ARGS...: docker volume create ARGS fails with PATTERN
bad() {
	local desc=$1 pat=$2 out rc
	shift 2
	out=$(D volume create -d vdrive "$@" 2>&1)
	rc=$?
	[ $rc != 0 ] && grep -qE -- "$pat" <<<"$out" && [ -z "$(drives)" ] &&
		[ -z "$(D volume ls -q)" ]
	ok $? "$desc" || diag "rc=$rc: $out; drives: $(drives)"
}
bad "an unknown source kind" "unknown source 'nosuch:x'" -o source=nosuch:x b1
bad "a missing database folder" "$fs/nope/x.db: No such file" -o source=sqlite:"$fs/nope/x.db" b2
bad "a bad drive option" "unknown option 'bogus'" -o source=mem: -o o=bogus b3
bad "a bad option value" "bad value for option 'attr_timeout'" -o source=mem: -o o=attr_timeout=-1 b4
bad "an unknown volume option" "unknown volume option 'colour'" -o source=mem: -o colour=red b5
bad "no source" "no source" b6
bad "a dir: that does not exist" "$fs/nodir" -o source=dir:"$fs/nodir" b7

! grep -qs "Sanitizer" "$DK/plugin.log"
ok $? "no sanitizer reports from the plugin (SAN=1 builds)" || diag "$(grep -A20 -m1 Sanitizer "$DK/plugin.log")"
stop_all
[ -z "$(awk -v t="$DK/" 'index($5, t) == 1' /proc/self/mountinfo)" ]
ok $? "dockerd, the plugin and their mounts are gone"
done_testing
