#!/bin/bash
# The vdrive tool: lifecycle and every kind of bad input. Each bad input
# must give a clear message, a non-zero exit, and leave nothing mounted.
set -u
VDRIVE_BUILD=${VDRIVE_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
V="$VDRIVE_BUILD/vdrive"
T=$(mktemp -d /tmp/vdrive-test-cli.XXXXXX)
export VDRIVE_RUNDIR="$T/run"
export VDRIVE_CACHE_DIR="$T/cache" # body caches (docs/cache.md) stay in $T
mkdir -p "$T/m1" "$T/m2" "$T/src"
n=0 fails=0

cleanup() {
	for m in "$T/m1" "$T/m2"; do
		if grep -q " $m " /proc/self/mountinfo; then
			"$V" unmount "$m" >/dev/null 2>&1 || umount -l "$m"
		fi
	done
	rm -rf "$T"
}
trap cleanup EXIT

ok() { # ok COND-EXIT-STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
mounted() { grep -q " $1 " /proc/self/mountinfo; }
# Zombies count as gone: the drive's parent exits, so nobody may reap it.
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'; }

# expect_fail DESC PATTERN CMD...: non-zero exit, message matches, no mount added
expect_fail() {
	local desc=$1 pat=$2
	shift 2
	local out rc before after
	before=$(grep -c " $T/" /proc/self/mountinfo)
	out=$("$@" 2>&1)
	rc=$?
	after=$(grep -c " $T/" /proc/self/mountinfo)
	[ $rc -ne 0 ] && grep -qiE "$pat" <<<"$out" && [ "$before" = "$after" ]
	local r=$?
	ok $r "$desc"
	[ $r = 0 ] || echo "# rc=$rc output: $out"
}

echo "1..24"
"$V" help >/dev/null; ok $? "help exits 0"
"$V" mount --help | grep -q "usage: vdrive mount"; ok $? "mount --help shows usage"
"$V" help | grep -q "^  mem:"; ok $? "help lists the mem: source"

expect_fail "unknown command" "unknown command" "$V" frobnicate
expect_fail "unknown source kind" "unknown source 'nosuch:x'" "$V" mount nosuch:x "$T/m1"
expect_fail "source without a colon" "unknown source" "$V" mount mem "$T/m1"
expect_fail "missing mount point" "No such file" "$V" mount mem: "$T/nonexistent"
expect_fail "mount point is a file" "not a folder" "$V" mount mem: /etc/hostname
expect_fail "bad option" "unknown option 'bogus'" "$V" mount mem: "$T/m1" -o bogus
expect_fail "bad option value" "bad value for option 'attr_timeout'" "$V" mount mem: "$T/m1" -o attr_timeout=-3
expect_fail "bad name" "bad drive name" "$V" mount mem: "$T/m1" --name ../x
expect_fail "dir: with a missing folder" "$T/nope" "$V" mount "dir:$T/nope" "$T/m1"
expect_fail "dir: with a file" "not a folder|Not a directory" "$V" mount dir:/etc/hostname "$T/m1"
expect_fail "no /dev/fuse" "/dev/fuse" unshare -m sh -c "mount -t tmpfs none /dev && exec $V mount mem: $T/m1"
expect_fail "not permitted (unprivileged user, folder not theirs)" "not permitted|permission|denied" \
	setpriv --reuid 65534 --regid 65534 --clear-groups env VDRIVE_RUNDIR="$T/run-nobody" "$V" mount mem: "$T/m1"

"$V" mount mem: "$T/m1" --name one; ok $? "mount mem: returns 0"
mounted "$T/m1" && echo hi > "$T/m1/f" && [ "$(cat "$T/m1/f")" = hi ]; ok $? "the drive answers at once"
expect_fail "already mounted" "already a mount point" "$V" mount mem: "$T/m1"
"$V" list --json | grep -q "\"name\": \"one\".*\"mountpoint\": \"$T/m1\".*\"state\": \"running\""; ok $? "list --json shows the drive"
pid=$(sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/one")
"$V" unmount one && ! mounted "$T/m1" && ! alive "$pid" && [ ! -e "$VDRIVE_RUNDIR/drives/one" ]
ok $? "unmount by name stops the process, unmounts, removes the record"

"$V" mount mem: "$T/m2" --name two && pid=$(sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/two") && kill -9 "$pid"
sleep 0.2
"$V" list | grep -q "two .*dead"; ok $? "a killed drive is listed as dead"
"$V" unmount "$T/m2" && ! mounted "$T/m2" && [ ! -e "$VDRIVE_RUNDIR/drives/two" ]; ok $? "unmount clears a dead drive's mount and record"

"$V" mount mem: "$T/m2" --name three && pid=$(sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/three") && kill -STOP "$pid"
timeout 60 "$V" unmount three && ! mounted "$T/m2" && ! alive "$pid"
ok $? "unmount clears a hung (stopped) drive"

# unshare -m copies every mount: the copy keeps the connection alive, so
# the drive must cut it itself or it would serve on forever.
"$V" mount mem: "$T/m2" --name four && pid=$(sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/four")
unshare -m --propagation private sleep 60 &
holder=$!
sleep 0.3
timeout 30 "$V" unmount four
for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
! mounted "$T/m2" && ! alive "$pid"
ok $? "unmount ends the drive while another namespace holds a copy of its mount"
kill "$holder"; wait "$holder" 2>/dev/null
echo "# $fails failed"
