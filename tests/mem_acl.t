#!/bin/bash
# POSIX ACLs on a mounted mem: drive against native tmpfs: one script of
# umasks, default ACLs, inheritance into files, folders, fifos and links,
# chmod under an ACL, setfacl -m/-x/-b and cp -a, run on both; the modes
# and getfacl -R output must match exactly.
. "$(dirname "$0")/lib.sh"
vd_init mem_acl

if ! command -v setfacl >/dev/null || ! command -v getfacl >/dev/null; then
	skip "ACLs on mem:" "setfacl/getfacl missing (apt-get install acl)"
	done_testing
fi

ref=$VD_TMP/ref
if ! vd_scratch tmpfs "$ref"; then
	skip "ACLs on mem:" "cannot mount tmpfs here for the reference"
	done_testing
fi
vd_acl_script "$ref" >"$VD_TMP/ref.txt" 2>&1
ok $? "the ACL script runs on tmpfs"

mnt=$(vd_mktemp mnt)
if vd_mount mem: "$mnt" --name acl-mem; then
	vd_acl_script "$mnt" >"$VD_TMP/mem.txt" 2>&1
	ok $? "the ACL script runs on mem:"
	out=$(diff "$VD_TMP/ref.txt" "$VD_TMP/mem.txt")
	ok $? "modes and ACLs on mem: match tmpfs" || diag "$out"
	vd_umount "$mnt"
	ok $? "unmount mem:"
else
	ok 1 "mount mem:"
fi
done_testing
