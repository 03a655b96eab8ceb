#!/bin/bash
# The shared POSIX cases (tests/helpers/posix_cases.c), first on native
# folders (fresh ext4, tmpfs) to check the cases themselves, then on every
# built-in source that `vdrive help` lists, mounted with allow_other so the
# cases' other uids can enter, and with other cache modes. dir: mirrors a
# folder on a fresh ext4.
. "$(dirname "$0")/lib.sh"
vd_init posix
vd_need_root "posix cases"
PC=$VD_HELPERS/posix_cases

if [ ! -x "$PC" ]; then
	missing "posix cases" "$PC not built (make)"
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

# Where dir: folders and sqlite: files live: on ext4 when we have it.
backing=$tmpfs
vd_mounted "$ext4" && backing=$ext4

# Known bugs, shown as TODO until fixed (see tests/lib.sh tap_include).

# Each entry: KIND|EXTRA-OPTIONS. mem: also with the kernel's caches in
# each mode, as the library's code paths differ.
for v in "mem|" "mem|writeback_cache" "mem|direct_io" \
	"mem|entry_timeout=0,attr_timeout=0,negative_timeout=0" \
	"dir|" "dir|direct_io" "sqlite|" "sqlite|direct_io"; do
	vd_variant "posix cases" "$v" "$backing/dir-$RANDOM" \
		"$backing/posix-$RANDOM.db" || continue
	[ "$kind" != dir ] || chmod 755 "${spec#dir:}"
	mnt=$(vd_mktemp "mnt-$RANDOM")
	if ! vd_mount "$spec" "$mnt" -o "allow_other${opt:+,$opt}"; then
		ok 1 "mount $spec -o allow_other${opt:+,$opt}"
		continue
	fi
	tap_include "$label" "$PC" "$mnt"
	vd_umount "$mnt"
	ok $? "unmount $label"
done
done_testing
