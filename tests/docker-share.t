#!/bin/bash
# Sharing a live drive between real Docker containers (issue 13). Starts a
# private dockerd as docker.t does (own socket, data and exec folders, no
# networking; its own names, so both can run at once), imports a
# busybox-static image, and checks: a drive the host made for container A
# and shared into B is one live drive for both; C cannot see it and is
# refused even through /proc/PID/root from a --pid host container; after
# unshare B is refused, also where it still holds the drive; a read-only
# share refuses writes in B only; stopping B ends its share; bad shares
# fail clearly and change nothing; an SMB share listening inside a
# container's network namespace is reached there only.
set -u
. "$(dirname "$0")/lib.sh"
vd_init docker-share

DOCKERD=/usr/sbin/dockerd
DOCKER=/usr/bin/docker # Debian's client, not whatever is first on PATH
if [ "$(id -u)" != 0 ]; then
	skip_all "needs root"
fi
if [ ! -x $DOCKERD ] || [ ! -x $DOCKER ] || [ ! -x /bin/busybox ]; then
	DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
		docker.io busybox-static >"$VD_TMP/apt.log" 2>&1
fi
if [ ! -x $DOCKERD ] || [ ! -x $DOCKER ] || [ ! -x /bin/busybox ]; then
	skip_all "docker.io or busybox-static cannot be installed: $(tail -1 "$VD_TMP/apt.log")"
fi

DK=$VD_TMP/dk
mkdir -p "$DK/data" "$DK/exec" "$DK/rootfs"
export DOCKER_HOST=unix://$DK/docker.sock
D() { timeout -k 5 60 $DOCKER "$@"; }
DPID=

stop_all() {
	local p
	[ -n "$DPID" ] || return 0
	D ps -aq 2>/dev/null | xargs -r $DOCKER rm -f >/dev/null 2>&1
	kill "$DPID" 2>/dev/null
	for _ in $(seq 100); do _vd_alive "$DPID" || break; sleep 0.1; done
	_vd_alive "$DPID" && kill -KILL "$DPID"
	DPID=
	# whatever dockerd left mounted in its folders
	awk -v t="$DK/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r p; do umount -l "$p"; done
}
trap 'stop_all; _vd_exit' EXIT

# ---- a private Docker engine and a busybox image ----
echo '{}' >"$DK/daemon.json"
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
mkdir -p "$R/bin" "$R/proc" "$R/dev" "$R/sys" "$R/tmp" "$R/etc" "$R/mnt"
cp /bin/busybox "$R/bin/"
for c in sh ls cat echo sleep mkdir grep test touch rm; do ln -s busybox "$R/bin/$c"; done
tar -C "$R" -c . | D import - vdshare-busybox:1 >/dev/null
ok $? "a busybox-static image imported (no pulls)"
RUN=(run -d --network none --stop-timeout 1)
IMG=vdshare-busybox:1

pid_of() { D inspect -f '{{.State.Pid}}' "$1"; }
ns_of() { stat -L -c %i "/proc/$1/ns/mnt"; }
in_ns() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(stat -L -c %i "$p/ns/mnt" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
	done
}
drive_pid() { sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/$1" 2>/dev/null; }
# fuse_at PID PATH: true when a FUSE mount sits at PATH in PID's namespace.
fuse_at() { grep -q " $2 .* - fuse" "/proc/$1/mountinfo"; }
# shares NAME: drive NAME's shares from `vdrive list --json`, one per line
# as "kind target path ro|rw state"; "none" when it has none.
shares() {
	"$VDRIVE" list --json | python3 -c '
import json, sys
for d in json.load(sys.stdin):
    if d["name"] != sys.argv[1]:
        continue
    for s in d["shares"]:
        print(s["kind"], s["target"], s.get("path", s.get("address")),
              "ro" if s["read_only"] else "rw", s["state"])
    if not d["shares"]:
        print("none")' "$1"
}
# smbd_pids: the smbd processes serving from this script's run folder.
smbd_pids() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		[[ "$( { tr '\0' ' ' <"$f"; } 2>/dev/null)" == smbd*"$VDRIVE_RUNDIR/smb/"* ]] &&
			f=${f#/proc/} && echo "${f%/cmdline}"
	done
}
# pidhost CMD: run CMD in a throwaway container that sees the host's pids
# (default capabilities, no SYS_PTRACE).
pidhost() { D run --rm --pid host --network none "$IMG" sh -c "$1" 2>&1; }

# ---- a drive made for A, shared into B ----
for c in ca cb cc; do
	D "${RUN[@]}" --name $c "$IMG" sleep 600 >/dev/null || break
done
ok $? "three plain containers run (A, B, C)"
PA=$(pid_of ca)
PB=$(pid_of cb)
PC=$(pid_of cc)
NSB=$(ns_of "$PB")
out=$("$VDRIVE" mount mem: /data --container docker:ca --name s1 2>&1)
ok $? "vdrive mount mem: /data --container docker:ca" || diag "$out"
DP=$(drive_pid s1)
[ -n "$DP" ] && VD_PIDS+=("$DP")
[ "$(D exec ca sh -c 'echo from-a > /data/f && cat /data/f' 2>&1)" = from-a ]
ok $? "A writes and reads its drive"

out=$("$VDRIVE" share s1 --container docker:cb --at /shared 2>&1)
ok $? "vdrive share s1 --container docker:cb --at /shared" || diag "$out"
grep -q "shared with container docker:cb at /shared" <<<"$out"
ok $? "it says where the drive is shared" || diag "$out"
fuse_at "$PB" /shared && ! fuse_at "$PC" /shared && ! fuse_at "$PC" /data &&
	! grep -q " /shared " /proc/self/mountinfo
ok $? "the share is in B's mount table, not in C's or the host's"
[ "$(shares s1)" = "container docker:cb /shared rw attached" ]
ok $? "vdrive list --json shows the share" || diag "$(shares s1)"
[ "$(D exec cb cat /shared/f 2>&1)" = from-a ]
ok $? "B reads what A wrote"
D exec cb sh -c 'echo from-b > /shared/g' &&
	[ "$(D exec ca cat /data/g 2>&1)" = from-b ]
ok $? "A reads what B wrote"
D exec ca sh -c 'echo from-a-2 > /data/f && mkdir /data/sub' &&
	[ "$(D exec cb cat /shared/f 2>&1)" = from-a-2 ] &&
	D exec cb test -d /shared/sub
ok $? "B sees A's later changes at once (same live drive)"
D exec cb sh -c 'echo x > /shared/sub/h && rm /shared/g' &&
	[ "$(D exec ca ls /data/sub)" = h ] && ! D exec ca test -e /data/g
ok $? "B creates and removes, A sees it"

# ---- C, and everyone else, stay out ----
! D exec cc ls /shared >/dev/null 2>&1 && ! D exec cc ls /data >/dev/null 2>&1
ok $? "C has neither /shared nor /data"
# The control line proves the pid-host container reaches B's root at all:
# the refusal must come from the drive, not from ptrace rules.
out=$(pidhost "test -x /proc/$PB/root/bin/busybox && echo reach; cat /proc/$PB/root/shared/f")
[ "${out%%$'\n'*}" = reach ] && grep -q "Permission denied" <<<"$out" &&
	! grep -q from-a <<<"$out"
ok $? "a --pid host container reading /proc/B/root/shared/f gets EACCES" || diag "$out"
out=$(pidhost "test -x /proc/$PA/root/bin/busybox && echo reach; cat /proc/$PA/root/data/f")
[ "${out%%$'\n'*}" = reach ] && grep -q "Permission denied" <<<"$out" &&
	! grep -q from-a <<<"$out"
ok $? "and through /proc/A/root/data/f" || diag "$out"
out=$(pidhost "ls /proc/$PB/root/shared; echo x > /proc/$PB/root/shared/new")
[ "$(grep -c "Permission denied" <<<"$out")" = 2 ] && ! D exec ca test -e /data/new
ok $? "it can neither list nor create there" || diag "$out"
err=$(cat "/proc/$PB/root/shared/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "host root through /proc/B/root is refused too" || diag "$err"

# ---- unshare ----
# A process in B that keeps the share as its working folder: unshare
# detaches the mount lazily, so the gate must refuse B from then on.
D exec -d cb sh -c 'cd /shared && exec sleep 600'
HOLD=
for _ in $(seq 50); do
	for p in $(in_ns "$NSB"); do
		[ "$(readlink "/proc/$p/cwd")" = /shared ] && HOLD=$p
	done
	[ -n "$HOLD" ] && break
	sleep 0.1
done
HOLDNS=$(awk '/^NSpid:/ { print $NF }' "/proc/$HOLD/status" 2>/dev/null)
[ -n "$HOLD" ] && [ "$(D exec cb cat "/proc/$HOLDNS/cwd/f" 2>&1)" = from-a-2 ]
ok $? "a process in B holds the share as its working folder"
out=$("$VDRIVE" unshare s1 --container docker:cb 2>&1)
ok $? "vdrive unshare s1 --container docker:cb" || diag "$out"
! fuse_at "$PB" /shared && [ "$(shares s1)" = none ]
ok $? "the mount is gone from B and the share from vdrive list" ||
	diag "$(shares s1); $(grep fuse "/proc/$PB/mountinfo")"
! D exec cb test -e /shared/f
ok $? "B no longer finds the drive at /shared"
err=$(D exec cb cat "/proc/$HOLDNS/cwd/f" 2>&1)
[ $? != 0 ] && grep -q "Permission denied" <<<"$err"
ok $? "B is refused where it still holds the drive (EACCES)" || diag "$err"
out=$(pidhost "cat /proc/$PB/root/proc/$HOLDNS/cwd/f")
grep -q "Permission denied" <<<"$out" && ! grep -q from-a <<<"$out"
ok $? "and so is a --pid host container through it" || diag "$out"
[ "$(D exec ca cat /data/f 2>&1)" = from-a-2 ] && D exec ca sh -c 'echo a3 > /data/a3'
ok $? "A still reads and writes"
err=$("$VDRIVE" unshare s1 --container docker:cb 2>&1)
[ $? != 0 ] && grep -q "not shared there" <<<"$err"
ok $? "unsharing again fails: not shared there" || diag "$err"

# ---- a read-only share ----
out=$("$VDRIVE" share s1 --container docker:cb --at /ro --read-only 2>&1)
ok $? "vdrive share s1 --container docker:cb --at /ro --read-only" || diag "$out"
[ "$(shares s1)" = "container docker:cb /ro ro attached" ]
ok $? "vdrive list --json marks it read-only" || diag "$(shares s1)"
[ "$(D exec cb cat /ro/f 2>&1)" = from-a-2 ]
ok $? "B reads through the read-only share"
out=$(D exec cb sh -c 'echo no > /ro/f; touch /ro/new; mkdir /ro/d; rm /ro/a3' 2>&1)
[ "$(grep -c "Read-only file system" <<<"$out")" = 4 ] &&
	[ "$(D exec ca cat /data/f)" = from-a-2 ] && D exec ca test -e /data/a3 &&
	! D exec ca test -e /data/new
ok $? "B's writes, creates and removes fail with EROFS, nothing changed" || diag "$out"
D exec ca sh -c 'echo a4 > /data/f' && [ "$(D exec cb cat /ro/f 2>&1)" = a4 ]
ok $? "A still writes, and B reads the change"
out=$(pidhost "echo no > /proc/$PB/root/ro/f")
grep -q "Read-only\|Permission denied" <<<"$out" && [ "$(D exec ca cat /data/f)" = a4 ]
ok $? "a --pid host container cannot write through B's read-only share" || diag "$out"

# ---- stopping B ends its share ----
D stop cb >/dev/null
for _ in $(seq 100); do [ "$(shares s1)" = none ] && break; sleep 0.1; done
[ "$(shares s1)" = none ]
ok $? "stopping B ends its share in vdrive list" || diag "$(shares s1)"
# (B's last processes may take a moment to go on a busy machine)
for _ in $(seq 100); do
	left=$(ls -l "/proc/$DP/fd" 2>/dev/null | grep -c "mnt:\[$NSB\]")
	[ -z "$(in_ns "$NSB")" ] && [ "$left" = 0 ] && break
	sleep 0.1
done
[ -z "$(in_ns "$NSB")" ] && [ "$left" = 0 ]
ok $? "nothing holds B's namespace (no process, no fd in the drive process)" ||
	diag "in ns: $(in_ns "$NSB"); fds: $left"
_vd_alive "$DP" && [ "$(D exec ca cat /data/f 2>&1)" = a4 ]
ok $? "the drive serves A as before"

# ---- bad shares fail clearly and change nothing ----
# bad_share WHAT MESSAGE ARGS...: vdrive share ARGS fails, saying MESSAGE.
bad_share() {
	local what=$1 msg=$2 err rc
	shift 2
	err=$(timeout 30 "$VDRIVE" share "$@" 2>&1)
	rc=$?
	[ $rc != 0 ] && [ $rc != 124 ] && grep -qi -- "$msg" <<<"$err"
	ok $? "share $what: exit $rc, says '$msg'" || diag "$err"
}
bad_share "into a stopped container" "not running" s1 --container docker:cb
_vd_alive "$PB" || bad_share "into its gone PID" "No such file" s1 --container "$PB"
D rm cb >/dev/null
bad_share "into a removed container" "no Docker container named 'cb'" s1 --container docker:cb
bad_share "of an unknown drive" "no drive named 'nosuch'" nosuch --container docker:cc
bad_share "with no target" "name one of" s1
bad_share "with two targets" "name one of" s1 --container docker:cc --host /x
bad_share "with a relative --at" "absolute" s1 --container docker:cc --at rel
bad_share "with .. in --at" "bad share path" s1 --container docker:cc --at /a/../b
bad_share "at / in C" "bad share path" s1 --container docker:cc --at /
bad_share "onto a file in C" "cannot attach at /bin/sh" s1 --container docker:cc --at /bin/sh
bad_share "into the drive's own container" "already lives" s1 --container docker:ca
bad_share "with a bad container name" "bad container" s1 --container 'docker:a b'
bad_share "with an unknown option" "unknown" s1 --container docker:cc --bogus
bad_share "with two drives" "exactly one DRIVE" s1 s1 --container docker:cc
bad_share "SMB without credentials" "password-file" s1 --smb --listen 127.0.0.1:4455
[ "$(shares s1)" = none ] && ! grep -q " - fuse" "/proc/$PC/mountinfo" &&
	[ "$(D exec ca cat /data/f 2>&1)" = a4 ] && _vd_alive "$DP"
ok $? "after all that: no share, nothing mounted in C, A's data intact" ||
	diag "$(shares s1); $(grep fuse "/proc/$PC/mountinfo")"
out=$("$VDRIVE" share s1 --container docker:cc --at /c 2>&1) &&
	err=$("$VDRIVE" share s1 --container docker:cc --at /c 2>&1)
[ $? != 0 ] && grep -q "already shared" <<<"$err" &&
	[ "$(grep -c " /c .* - fuse" "/proc/$PC/mountinfo")" = 1 ]
ok $? "sharing twice at the same place fails: already shared" || diag "$out; $err"
out=$("$VDRIVE" unshare s1 --container docker:cc 2>&1) && ! fuse_at "$PC" /c
ok $? "and it unshares" || diag "$out"
err=$("$VDRIVE" unshare s1 --container docker:cc --read-only 2>&1)
[ $? = 2 ] && grep -q "only the target" <<<"$err"
ok $? "unshare with share options fails (exit 2)" || diag "$err"

# ---- SMB inside a container's network namespace ----
if [ ! -x /usr/sbin/smbd ] || ! command -v smbclient >/dev/null; then
	skip "SMB share listening in a container's network" "samba or smbclient is not installed (scripts/deps.sh installs them)"
else
	D "${RUN[@]}" --name cn "$IMG" sleep 600 >/dev/null
	PN=$(pid_of cn)
	printf 'pw-%s\n' "$RANDOM$RANDOM" >"$VD_TMP/pw"
	chmod 600 "$VD_TMP/pw"
	PW=$(head -1 "$VD_TMP/pw")
	SMB=(smbclient -s /dev/null -m SMB3 -p 4455 //127.0.0.1/s1 -U "vd%$PW")
	out=$(timeout 60 "$VDRIVE" share s1 --smb --listen 127.0.0.1:4455 \
		--netns docker:cn --user vd --password-file "$VD_TMP/pw" 2>&1)
	ok $? "vdrive share s1 --smb --listen 127.0.0.1:4455 --netns docker:cn" || diag "$out"
	out=$(timeout 60 nsenter --net="/proc/$PN/ns/net" "${SMB[@]}" -c 'get f -' 2>&1)
	grep -qx a4 <<<"$out"
	ok $? "smbclient in the container's network reads the drive" || diag "$out"
	out=$(timeout 60 "${SMB[@]}" -c 'ls' 2>&1)
	[ $? != 0 ] && ! grep -q " f " <<<"$out"
	ok $? "the host's network does not reach it" || diag "$out"
	[ "$(shares s1 | awk '{ print $1, $3 }')" = "smb //127.0.0.1:4455/s1" ]
	ok $? "vdrive list --json shows the SMB share's address" || diag "$(shares s1)"
	SMBD=$(smbd_pids)
	[ -n "$SMBD" ]
	ok $? "its smbd runs" || diag "$(cat "$VDRIVE_RUNDIR"/smb/*/log.smbd 2>&1)"
	out=$("$VDRIVE" unshare s1 --smb 2>&1) && [ "$(shares s1)" = none ]
	ok $? "vdrive unshare s1 --smb" || diag "$out; $(shares s1)"
	for _ in $(seq 50); do [ -z "$(smbd_pids)" ] && break; sleep 0.1; done
	for p in $SMBD; do _vd_alive "$p" && break; done
	! _vd_alive "$p" && [ -z "$(smbd_pids)" ] && _vd_alive "$DP" &&
		[ "$(D exec ca cat /data/f 2>&1)" = a4 ]
	ok $? "smbd is gone, the drive still serves A" ||
		diag "smbd: $(smbd_pids); drive $DP alive: $(_vd_alive "$DP" && echo yes)"
	out=$(timeout 60 nsenter --net="/proc/$PN/ns/net" "${SMB[@]}" -c 'ls' 2>&1)
	[ $? != 0 ]
	ok $? "after unshare nothing answers there" || diag "$out"
fi

# ---- the share ends with its drive ----
NSC=$(ns_of "$PC")
"$VDRIVE" share s1 --container docker:cc --at /c >/dev/null 2>&1
D stop ca >/dev/null
for _ in $(seq 100); do _vd_alive "$DP" || break; sleep 0.1; done
! _vd_alive "$DP" && ! fuse_at "$PC" /c && [ ! -e "$VDRIVE_RUNDIR/drives/s1" ]
ok $? "stopping A ends the drive and its share in C: nothing mounted, running or recorded" ||
	diag "$(grep fuse "/proc/$PC/mountinfo"); $(ls "$VDRIVE_RUNDIR/drives")"
[ "$(in_ns "$NSC")" = "$PC" ]
ok $? "C is untouched" || diag "in C's ns: $(in_ns "$NSC")"

stop_all
[ -z "$(awk -v t="$DK/" 'index($5, t) == 1' /proc/self/mountinfo)" ]
ok $? "dockerd and its mounts are gone"
done_testing
