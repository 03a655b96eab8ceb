#!/bin/bash
# gen: content made per open, through a real mount: the same file reads
# differently for two uids and in two mount namespaces; a generator that
# hangs, floods or fails gives EIO within its limit, with a log line, and
# never holds up other readers.
. "$(dirname "$0")/lib.sh"
vd_init gen

vd_have_source gen || missing_all "source gen: not built ('vdrive help' does not list gen:)"
if ! command -v setpriv >/dev/null || ! command -v unshare >/dev/null; then
	skip_all "needs setpriv and unshare"
fi

M=$VD_TMP/m
LOG=$VDRIVE_RUNDIR/drives/m.log
CONF=$VD_TMP/gen.conf
cat >"$CONF" <<'CONF'
# per caller
who           template  uid=${uid} gid=${gid} container=${container}
env/vars      cmd  echo "$VDRIVE_UID $VDRIVE_GID $VDRIVE_MNTNS"
# limits
lim/slow      cmd timeout=1  sleep 30; echo late
lim/huge      cmd max=1M  head -c 5000000 /dev/zero
lim/fail      cmd  echo something broke >&2; exit 3
lim/noexec    cmd  /nonexistent/program
CONF

vd_mount "gen:$CONF" "$M" -o allow_other
ok $? "vdrive mount gen:CONF" || done_testing

ls "$M" | tr '\n' ' ' | grep -qx "env lim who "
ok $? "folders implied by the paths"
as_user() { setpriv --reuid "$1" --regid "$1" --clear-groups "${@:2}"; }
root_view=$(cat "$M/who")
user_view=$(as_user 1000 cat "$M/who")
ns=$(stat -L -c %i /proc/self/ns/mnt)
[ "$root_view" = "uid=0 gid=0 container=$ns" ]
ok $? "template for root: $root_view"
[ "$user_view" = "uid=1000 gid=1000 container=$ns" ]
ok $? "the same file for uid 1000: $user_view"
[ "$(as_user 1001 cat "$M/env/vars")" = "1001 1001 $ns" ] &&
	[ "$(cat "$M/env/vars")" = "0 0 $ns" ]
ok $? "a command gets VDRIVE_UID/GID/MNTNS of each caller"

# Two mount namespaces: each reader sees its own namespace id.
out=$(unshare -m sh -c 'stat -L -c %i /proc/self/ns/mnt; cat "$1"' sh "$M/who")
inner=$(head -1 <<<"$out")
[ "$inner" != "$ns" ] && [ "$(tail -1 <<<"$out")" = "uid=0 gid=0 container=$inner" ]
ok $? "another mount namespace reads its own id ($inner, not $ns)"
out=$(unshare -m sh -c 'stat -L -c %i /proc/self/ns/mnt; cat "$1"' sh "$M/env/vars")
[ "$(tail -1 <<<"$out")" = "0 0 $(head -1 <<<"$out")" ]
ok $? "... and so does a command"

# Failing generators: EIO, within the limit, logged.
t0=$(date +%s%N)
err=$(timeout 20 cat "$M/lim/slow" 2>&1)
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 1 ] && grep -q "Input/output error" <<<"$err" && [ $ms -lt 2500 ]
ok $? "a generator past its 1 s limit: EIO after $ms ms"
! cat "$M/lim/huge" >/dev/null 2>"$VD_TMP/err" && grep -q "Input/output error" "$VD_TMP/err"
ok $? "too much output: EIO"
! cat "$M/lim/fail" >/dev/null 2>"$VD_TMP/err" && grep -q "Input/output error" "$VD_TMP/err"
ok $? "non-zero exit: EIO"
! cat "$M/lim/noexec" >/dev/null 2>"$VD_TMP/err" && grep -q "Input/output error" "$VD_TMP/err"
ok $? "a command that cannot run: EIO"
grep -q "/lim/slow .*no end of output within 1000 ms" "$LOG" &&
	grep -q "/lim/huge .*more than 1048576 bytes" "$LOG" &&
	grep -q "/lim/fail .*exit status 3; stderr: something broke" "$LOG" &&
	grep -q "/lim/noexec .*exit status 127" "$LOG"
ok $? "each failure is logged with its reason"

# A slow generator does not hold up other readers.
cat "$M/lim/slow" >/dev/null 2>&1 &
slow=$!
sleep 0.2
t0=$(date +%s%N)
cat "$M/who" >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
wait $slow
[ $ms -lt 500 ]
ok $? "another file reads in $ms ms while a generator hangs"

! echo x 2>/dev/null >"$M/who" &&
	touch "$M/new" 2>&1 | grep -q "Read-only file system" &&
	rm "$M/who" 2>&1 | grep -q "Read-only file system" &&
	mkdir "$M/d" 2>&1 | grep -q "Read-only file system"
ok $? "the drive is read-only: EROFS for writes, creates, rm, mkdir"

vd_umount "$M"
ok $? "vdrive unmount"
done_testing
