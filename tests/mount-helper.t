#!/bin/bash
# mount(8) and fstab: `mount -t fuse.vdrive` and `mount -t vdrive` for
# mem:, dir: and sqlite:, mount(8)'s generic options honoured (ro, noexec,
# noatime, nosuid, nodev) or ignored (_netdev, nofail, x-systemd.*, user,
# auto, defaults, comment=) as mount.fuse3 does, vdrive's own passed on,
# unknown ones refused with nothing mounted; `mount -a -T FSTAB` with
# _netdev,x-systemd.automount,nofail lines; `umount` ends the drive.
#
# mount(8) looks for its helper in /sbin only. So that this tests the
# build and not whatever `make install` put there last, and touches
# nothing outside, the script runs in a private mount namespace where an
# overlay adds mount.vdrive and mount.fuse.vdrive (links to the built
# vdrive, as `make install` makes them) to /usr/sbin (/sbin on Debian).
set -u
if [ "${VD_IN_MOUNT_NS:-}" != 1 ] && [ "$(id -u)" = 0 ]; then
	VD_IN_MOUNT_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
vd_init mounthelper
vd_need_root "mount(8) helper"

SB=$(vd_mktemp sbin)
ln -s "$VDRIVE" "$SB/mount.vdrive" && ln -s "$VDRIVE" "$SB/mount.fuse.vdrive"
SBIN=$(readlink -f /sbin)
mount -t overlay -o "lowerdir=$SB:$SBIN" overlay "$SBIN"
ok $? "mount.vdrive and mount.fuse.vdrive appear in /sbin (private namespace)" ||
	done_testing
VD_MOUNTS+=("$SBIN")

fs=$VD_TMP/fs
vd_scratch tmpfs "$fs" || { skip "all" "cannot mount a tmpfs"; done_testing; }

# Pids of the drives recorded now, for cleanup if a test leaves one.
track() {
	local f p
	for f in "$VDRIVE_RUNDIR"/drives/*; do
		[ -f "$f" ] || continue
		p=$(sed -n 's/^pid=//p' "$f")
		[ -n "$p" ] && VD_PIDS+=("$p")
	done
	return 0
}
pid_at() { # the drive pid recorded for mount point $1
	grep -lx "mountpoint=$1" "$VDRIVE_RUNDIR"/drives/* 2>/dev/null |
		xargs -r sed -n 's/^pid=//p'
}
# the drive records (beside them: NAME.log, NAME.ctl)
records() { grep -l '^pid=' "$VDRIVE_RUNDIR"/drives/* 2>/dev/null; }
flags_of() { awk -v m="$1" '$5 == m { print $6 }' /proc/self/mountinfo; }
fstype_of() { awk -v m="$1" '$5 == m { for (i = 7; $i != "-"; i++); print $(i + 1), $(i + 2) }' /proc/self/mountinfo; }
gone() { # gone PID: waits up to 5 s for the drive process to end
	for _ in $(seq 50); do _vd_alive "$1" || return 0; sleep 0.1; done
	return 1
}
# mounted_here MNT: tracked for cleanup
mounted_here() { vd_mounted "$1" && VD_MOUNTS+=("$1") && track; }

# ---- each source kind through `mount -t fuse.vdrive`, then umount ----
for kind in mem dir sqlite; do
	M=$(vd_mktemp "m-$kind")
	case $kind in
	mem) spec=mem: ;;
	dir) mkdir -p "$fs/back" && spec=dir:$fs/back ;;
	sqlite) spec=sqlite:$fs/drive.db ;;
	esac
	out=$(mount -t fuse.vdrive "$spec" "$M" -o noatime 2>&1)
	ok $? "mount -t fuse.vdrive $spec" || diag "$out"
	mounted_here "$M"
	[ "$(fstype_of "$M")" = "fuse.vdrive $spec" ]
	ok $? "$kind: mountinfo shows fuse.vdrive with the source" || diag "$(fstype_of "$M")"
	echo "data-$kind" >"$M/f" && [ "$(cat "$M/f")" = "data-$kind" ]
	ok $? "$kind: a file written and read back"
	P=$(pid_at "$M")
	umount "$M"
	ok $? "$kind: umount succeeds"
	! vd_mounted "$M" && [ -n "$P" ] && gone "$P" &&
		[ -z "$(records)" ]
	ok $? "$kind: nothing mounted, the drive process ($P) and its record are gone"
	case $kind in
	dir)
		[ "$(cat "$fs/back/f")" = data-dir ]
		ok $? "dir: the data is in the backing folder"
		;;
	sqlite)
		P=
		mount -t vdrive "$spec" "$M" && mounted_here "$M" && P=$(pid_at "$M") &&
			[ "$(cat "$M/f")" = data-sqlite ] && umount "$M" && gone "$P"
		ok $? "sqlite: the data survives a remount" || diag "P=$P $(records) $(cat "$VDRIVE_RUNDIR"/drives/*.log) $(grep m-sqlite /proc/self/mountinfo)"
		;;
	esac
done

# ---- mount(8)'s options: honoured, ignored, passed on ----
M=$(vd_mktemp m-opts)
out=$(mount -t vdrive mem: "$M" -o ro,noexec,nosuid,nodev,noatime 2>&1)
ok $? "mount -t vdrive with ro,noexec,nosuid,nodev,noatime" || diag "$out"
mounted_here "$M"
f=$(flags_of "$M")
[[ ,$f, == *,ro,* && $f == *noexec* && $f == *nosuid* && $f == *nodev* && $f == *noatime* ]]
ok $? "the mount carries ro,nosuid,nodev,noexec,noatime" || diag "flags: $f"
err=$(touch "$M/x" 2>&1)
[ $? != 0 ] && grep -q "Read-only" <<<"$err"
ok $? "ro: a write fails with EROFS" || diag "$err"
umount "$M"

out=$(mount -t fuse.vdrive mem: "$M" 2>&1)
ok $? "mount -t fuse.vdrive without options" || diag "$out"
mounted_here "$M"
f=$(flags_of "$M")
[[ $f != *nosuid* && $f != *nodev* && $f != *noexec* ]]
ok $? "defaults are suid,dev,exec, as mount.fuse3 and other file systems" || diag "flags: $f"
umount "$M"

GEN=user,users,nouser,auto,noauto,_netdev,nofail,x-systemd.automount,x-systemd.idle-timeout=60,defaults,comment=vdrive
out=$(mount -t vdrive mem: "$M" -o "$GEN,attr_timeout=2,name=optdrive" 2>&1)
ok $? "fstab/systemd options are ignored, vdrive's and name= passed on" || diag "$out"
mounted_here "$M"
"$VDRIVE" list | grep -q "^optdrive .*$M"
ok $? "the drive is listed under name=optdrive" || diag "$("$VDRIVE" list)"
"$VDRIVE" unmount optdrive && ! vd_mounted "$M"
ok $? "vdrive unmount works on a mount(8)-made drive"

# ---- bad input: clear message, non-zero exit, nothing mounted ----
# expect_fail DESC PATTERN CMD...
expect_fail() {
	local desc=$1 pat=$2 out rc before
	shift 2
	before=$(grep -c "$VD_TMP/m" /proc/self/mountinfo)
	out=$("$@" 2>&1)
	rc=$?
	track
	[ $rc != 0 ] && grep -qE -- "$pat" <<<"$out" &&
		[ "$(grep -c "$VD_TMP/m" /proc/self/mountinfo)" = "$before" ] &&
		[ -z "$(records)" ]
	ok $? "$desc" || diag "rc=$rc: $out; records: $(records)"
}
expect_fail "an unknown option is refused" "unknown option 'bogus'" \
	mount -t vdrive mem: "$M" -o noatime,bogus
expect_fail "a bad option value is refused" "bad value for option 'attr_timeout'" \
	mount -t fuse.vdrive mem: "$M" -o attr_timeout=-1
expect_fail "relatime is not a FUSE mount flag (as with mount.fuse3)" "unknown option 'relatime'" \
	mount -t vdrive mem: "$M" -o relatime
expect_fail "an unknown source kind is refused" "unknown source 'nosuch:x'" \
	mount -t vdrive nosuch:x "$M"
expect_fail "a missing database folder is refused" "$fs/nope/x.db: No such file" \
	mount -t vdrive "sqlite:$fs/nope/x.db" "$M"
expect_fail "a missing dir: folder is refused" "$fs/nope" \
	mount -t vdrive "dir:$fs/nope" "$M"
expect_fail "a helper called with another -t is refused" "not vdrive" \
	"$SB/mount.vdrive" mem: "$M" -t ext4
expect_fail "a bad name= is refused" "bad drive name" \
	mount -t vdrive mem: "$M" -o name=../x

out=$(mount -s -t vdrive mem: "$M" -o bogus 2>&1)
ok $? "-s (sloppy) drops an unknown option" || diag "$out"
mounted_here "$M"
grep -q "ignoring unknown option 'bogus'" <<<"$out"
ok $? "... with a warning" || diag "$out"
umount "$M"
"$SB/mount.vdrive" mem: "$M" -f -o noatime && ! vd_mounted "$M"
ok $? "-f (fake) mounts nothing and succeeds"

# ---- fstab: mount -a, twice, then umount ----
FT=$VD_TMP/fstab
mkdir -p "$fs/back2"
A=$(vd_mktemp m-a) B=$(vd_mktemp m-b) C=$(vd_mktemp m-c)
cat >"$FT" <<EOF
# vdrive lines as in /etc/fstab
mem:                  $A  fuse.vdrive  _netdev,x-systemd.automount,nofail  0 0
dir:$fs/back2         $B  vdrive       _netdev,x-systemd.automount,nofail,noexec  0 0
sqlite:$fs/fstab.db   $C  fuse.vdrive  _netdev,x-systemd.automount,nofail,name=fsdb  0 0
EOF
out=$(mount -a -T "$FT" 2>&1)
ok $? "mount -a -T FSTAB mounts the vdrive lines" || diag "$out"
for m in "$A" "$B" "$C"; do mounted_here "$m"; done
vd_mounted "$A" && vd_mounted "$B" && vd_mounted "$C" &&
	[[ $(flags_of "$B") == *noexec* ]] && echo x >"$C/f" && [ "$(cat "$C/f")" = x ] &&
	"$VDRIVE" list | grep -q "^fsdb .*$C"
ok $? "all three are mounted and usable"
n1=$(records | wc -l)
out=$(mount --fstab "$FT" -a 2>&1)
ok $? "mount --fstab FSTAB -a again succeeds" || diag "$out"
[ "$n1" = 3 ] && [ "$(records | wc -l)" = 3 ] &&
	[ "$(grep -c "$VD_TMP/m-[abc] " /proc/self/mountinfo)" = 3 ]
ok $? "... and mounts nothing twice (3 drives, 3 mounts)"
pids="$(pid_at "$A") $(pid_at "$B") $(pid_at "$C")"
umount "$A" "$B" "$C"
ok $? "umount of the three"
for p in $pids; do gone "$p" || echo "left: $p"; done | grep -q left
[ $? != 0 ] && [ -z "$(records)" ]
ok $? "their drive processes ($pids) and records are gone"

echo "mem: $A fuse.vdrive _netdev,nofail,bogus 0 0" >"$FT"
out=$(mount -a -T "$FT" 2>&1)
rc=$?
[ $rc != 0 ] && grep -q "unknown option 'bogus'" <<<"$out" && ! vd_mounted "$A"
ok $? "an fstab line with an unknown option fails clearly, nothing mounted" ||
	diag "rc=$rc $out"
track

done_testing
