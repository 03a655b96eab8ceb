#!/bin/bash
# The shared POSIX cases (tests/helpers/posix_cases.c), first on native
# folders (fresh ext4, tmpfs) to check the cases themselves, then on every
# built-in source that `vdrive help` lists, mounted with allow_other so the
# cases' other uids can enter. dir: mirrors a folder on a fresh ext4.
. "$(dirname "$0")/lib.sh"
vd_init posix
PC=$VD_HELPERS/posix_cases

if [ ! -x "$PC" ]; then
	skip "posix cases" "$PC not built (make)"
	done_testing
fi

ext4=$VD_TMP/ext4
if vd_scratch ext4 "$ext4"; then
	mkdir -p "$ext4/native" && tap_include "native ext4" "$PC" "$ext4/native"
else
	skip "native ext4" "cannot make a loop ext4 here (mkfs.ext4/loop device)"
fi
tmpfs=$VD_TMP/tmpfs
if vd_scratch tmpfs "$tmpfs"; then
	tap_include "native tmpfs" "$PC" "$tmpfs"
else
	skip "native tmpfs" "cannot mount tmpfs here"
fi

# The backing folder for dir:, on ext4 when we have it.
back=$tmpfs/dir-backing
vd_mounted "$ext4" && back=$ext4/dir-backing

for kind in mem dir sqlite; do
	if ! vd_have_source $kind; then
		skip "posix cases on $kind:" "source not built ('vdrive help' does not list $kind:)"
		continue
	fi
	case $kind in
	mem) spec=mem: ;;
	dir) mkdir -p "$back" && chmod 755 "$back" && spec=dir:$back ;;
	sqlite) spec=sqlite:$tmpfs/posix.db ;;
	esac
	mnt=$(vd_mktemp "mnt-$kind")
	if ! vd_mount "$spec" "$mnt" -o allow_other --name "posix-$kind"; then
		ok 1 "mount $spec with allow_other"
		continue
	fi
	tap_include "$kind" "$PC" "$mnt"
	vd_umount "$mnt"
	ok $? "unmount $spec"
done
done_testing
