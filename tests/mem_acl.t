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

# acl_script DIR: the sequence, then a dump of every mode and ACL.
acl_script() (
	set -e
	cd "$1"
	umask 077
	mkdir d
	setfacl -d -m u:1234:rwx,g::rwx,o::r-x d
	touch d/f
	mkdir d/sub
	mkfifo d/p
	ln -s f d/l
	umask 022
	touch d/g
	chmod 640 d/f
	chmod 2775 d/sub
	mkdir d/sub/deeper
	touch d/sub/h
	setfacl -m u:4321:r d/g
	setfacl -x u:1234 d/g
	touch plain
	setfacl -m m::r,u:55:rw plain
	chmod 664 plain
	touch bare
	setfacl -m u:7:rwx bare
	setfacl -b bare
	cp -a d d2
	find . | sort | while read -r p; do
		stat -c '%n %A' "$p"
	done
	# In name order: listing order differs between file systems.
	find . ! -type l | sort | while read -r p; do
		getfacl "$p" 2>/dev/null
	done
)

ref=$VD_TMP/ref
if ! vd_scratch tmpfs "$ref"; then
	skip "ACLs on mem:" "cannot mount tmpfs here for the reference"
	done_testing
fi
acl_script "$ref" >"$VD_TMP/ref.txt" 2>&1
ok $? "the ACL script runs on tmpfs"

mnt=$(vd_mktemp mnt)
if vd_mount mem: "$mnt" --name acl-mem; then
	acl_script "$mnt" >"$VD_TMP/mem.txt" 2>&1
	ok $? "the ACL script runs on mem:"
	out=$(diff "$VD_TMP/ref.txt" "$VD_TMP/mem.txt")
	ok $? "modes and ACLs on mem: match tmpfs" || diag "$out"
	vd_umount "$mnt"
	ok $? "unmount mem:"
else
	ok 1 "mount mem:"
fi
done_testing
