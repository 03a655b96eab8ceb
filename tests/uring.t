#!/bin/bash
# FUSE over io_uring (option io_uring): which drives take it, that they
# work over it, and that asking for it where it cannot be had fails
# clearly and mounts nothing. The kernel's switch is global: the test
# restores the value it found.
. "$(dirname "$0")/lib.sh"
vd_init uring
vd_need_root

PARAM=/sys/module/fuse/parameters/enable_uring
[ -w "$PARAM" ] || skip_all "this kernel has no FUSE over io_uring ($PARAM)"
OLD=$(cat "$PARAM")
trap 'echo "$OLD" >"$PARAM"; _vd_exit' EXIT

# Which libfuse libvdrive runs on: 3.18 and later have the transport.
lf=$(ldd "$VDRIVE_BUILD/libvdrive.so" | awk '/libfuse3/ {print $3}')
lfver=$(basename "$(readlink -f "$lf")" | sed 's/^libfuse3\.so\.//')
has_uring=0
[ "$(printf '%s\n' 3.18 "$lfver" | sort -V | head -n1)" = 3.18 ] && has_uring=1
diag "libvdrive runs on libfuse $lfver"

# drive_pid MNT: the pid serving MNT, from the tool's registry.
drive_pid() {
	local f
	for f in "$VDRIVE_RUNDIR"/drives/*; do
		grep -qx "mountpoint=$(realpath "$1")" "$f" 2>/dev/null &&
			sed -n 's/^pid=//p' "$f"
	done
}
# rings PID: how many io_uring instances PID holds.
rings() {
	ls -l "/proc/$1/fd" 2>/dev/null | grep -c 'anon_inode:\[io_uring\]'
}
# works MNT: a file written, renamed and read back, a folder listed.
works() {
	echo "hello $1" >"$1/a" && mv "$1/a" "$1/b" && mkdir "$1/d" &&
		[ "$(cat "$1/b")" = "hello $1" ] &&
		[ "$(ls "$1" | tr '\n' ' ')" = "b d " ] && rm -r "$1/b" "$1/d"
}

M=$VD_TMP/m
mkdir -p "$M"
echo Y >"$PARAM"
if [ $has_uring = 1 ]; then
	vd_mount mem: "$M"
	ok $? "mem: mounts with the kernel's io_uring switch on"
	works "$M"
	ok $? "mem: works over io_uring"
	n=$(rings "$(drive_pid "$M")")
	[ "$n" -ge 1 ]
	ok $? "mem: (VD_OPS_QUICK) takes io_uring by default ($n rings)"
	# Many small requests from several CPUs at once, checked after.
	for c in 0 1; do
		(taskset -c $c true 2>/dev/null && exec taskset -c $c sh -c "
			for i in \$(seq 300); do echo $c-\$i > $M/f$c-\$i; done") &
	done
	wait
	[ "$(cat "$M"/f* | wc -l)" = 600 ] && [ "$(cat "$M/f1-300")" = 1-300 ]
	ok $? "600 files written from two CPUs read back"
	vd_umount "$M"
	ok $? "unmounts"

	vd_mount mem: "$M" -o io_uring=no
	n=$(rings "$(drive_pid "$M")")
	[ "$n" = 0 ] && works "$M"
	ok $? "-o io_uring=no: no rings, works ($n rings)"
	vd_umount "$M"

	D=$VD_TMP/backing
	mkdir -p "$D"
	vd_mount "dir:$D" "$M" && works "$M"
	ok $? "dir: on a local folder works"
	n=$(rings "$(drive_pid "$M")")
	[ "$n" -ge 1 ]
	ok $? "dir: on a local folder takes io_uring ($n rings)"
	vd_umount "$M"

	# A folder on a FUSE (or network) file system may answer slowly.
	R=$VD_TMP/remote
	vd_mount mem: "$R" -o io_uring=no && vd_mount "dir:$R" "$M" && works "$M"
	ok $? "dir: over a FUSE folder works"
	n=$(rings "$(drive_pid "$M")")
	[ "$n" = 0 ]
	ok $? "dir: over a FUSE folder stays on /dev/fuse ($n rings)"
	vd_umount "$M"
	vd_umount "$R"

	if vd_have_source sqlite; then
		vd_mount "sqlite:$VD_TMP/db.sqlite" "$M" && works "$M"
		ok $? "sqlite: works"
		n=$(rings "$(drive_pid "$M")")
		[ "$n" -ge 1 ]
		ok $? "sqlite: (VD_OPS_QUICK: one lock anyway) takes io_uring ($n rings)"
		vd_umount "$M"
	fi
	if vd_have_source gen; then
		echo "f template hello" >"$VD_TMP/gen.conf"
		vd_mount "gen:$VD_TMP/gen.conf" "$M" &&
			[ "$(cat "$M/f")" = hello ]
		ok $? "gen: works"
		n=$(rings "$(drive_pid "$M")")
		[ "$n" = 0 ]
		ok $? "gen: (runs commands: not VD_OPS_QUICK) stays on /dev/fuse ($n rings)"
		vd_umount "$M"
		vd_mount "gen:$VD_TMP/gen.conf" "$M" -o io_uring=yes &&
			[ "$(cat "$M/f")" = hello ] &&
			[ "$(rings "$(drive_pid "$M")")" -ge 1 ]
		ok $? "gen: -o io_uring=yes takes it"
		vd_umount "$M"
	fi

	echo N >"$PARAM"
	out=$("$VDRIVE" mount mem: "$M" -o io_uring=yes 2>&1)
	rc=$?
	[ $rc != 0 ] && grep -q enable_uring <<<"$out" && ! vd_mounted "$M"
	ok $? "switch off, -o io_uring=yes: exit $rc, says how, nothing mounted ($out)"
	vd_mount mem: "$M" && works "$M" &&
		[ "$(rings "$(drive_pid "$M")")" = 0 ]
	ok $? "switch off, default: serves on /dev/fuse"
	vd_umount "$M"
else
	out=$("$VDRIVE" mount mem: "$M" -o io_uring=yes 2>&1)
	rc=$?
	[ $rc != 0 ] && grep -q 'libfuse' <<<"$out" && ! vd_mounted "$M"
	ok $? "libfuse $lfver, -o io_uring=yes: exit $rc, names libfuse, nothing mounted ($out)"
	vd_mount mem: "$M" && works "$M"
	ok $? "libfuse $lfver, default: mem: works"
	vd_umount "$M"
fi

out=$("$VDRIVE" mount mem: "$M" -o io_uring=sometimes 2>&1)
[ $? != 0 ] && grep -q "io_uring" <<<"$out" && ! vd_mounted "$M"
ok $? "a bad io_uring value is refused ($out)"

done_testing
