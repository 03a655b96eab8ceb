#!/bin/bash
# dir: mounted with the vdrive tool over a folder on a fresh ext4 (tmpfs
# when no loop device): a copied tree reads back identical, inode numbers
# match the backing folder, changes made behind the drive show through,
# files made by another uid belong to it under the native umask, setgid
# and default-ACL rules, and a folder with more files than the descriptor
# limit lists and stats without EMFILE.
. "$(dirname "$0")/lib.sh"
vd_init dir

if ! vd_have_source dir; then
	missing "dir:" "source not built ('vdrive help' does not list dir:)"
	done_testing
fi

fs=$VD_TMP/fs
if ! vd_scratch ext4 "$fs" && ! vd_scratch tmpfs "$fs"; then
	skip "dir:" "cannot mount a scratch file system here"
	done_testing
fi
back=$fs/back
mkdir -p "$back" && chmod 755 "$back"
mnt=$(vd_mktemp mnt)
U=1500 G=1500 TEAM=3000 # no passwd entries needed: setpriv takes numbers
as_user() { setpriv --reuid=$U --regid=$G --groups=$TEAM -- "$@"; }

out=$("$VDRIVE" mount dir:"$VD_TMP/nope" "$mnt" 2>&1)
[ $? != 0 ] && grep -q "no such folder" <<<"$out" && ! vd_mounted "$mnt"
ok $? "a missing folder is refused with a clear message"
touch "$VD_TMP/afile"
out=$("$VDRIVE" mount dir:"$VD_TMP/afile" "$mnt" 2>&1)
[ $? != 0 ] && grep -q "not a folder" <<<"$out" && ! vd_mounted "$mnt"
ok $? "a file is refused with a clear message"

vd_mount dir:"$back" "$mnt" -o allow_other --name dirt
ok $? "mount dir:$back" || done_testing

# A tree with links, copied in through the drive.
src=/usr/include/linux
[ -d "$src" ] || src=/usr/share/doc
cp -a "$src" "$mnt/tree" && mkdir "$mnt/links" && echo x >"$mnt/links/a" &&
	ln "$mnt/links/a" "$mnt/links/b" && ln -s a "$mnt/links/s" &&
	cp -a "$mnt/links" "$mnt/links2"
ok $? "cp -a a tree ($(find "$src" | wc -l) entries) and hard links in"
listing() { (cd "$1" && find . -printf '%i %M %n %U %G %s %T@ %l %p\n' | sort); }
d=$(diff <(listing "$mnt") <(listing "$back"))
ok $? "mount and backing agree on inode, mode, links, owner, size, mtime, target"
[ -n "$d" ] && diag "$(head -5 <<<"$d")"
diff -r "$src" "$mnt/tree" >/dev/null
ok $? "the copy reads back identical"
[ "$(stat -c %h "$mnt/links2/a")" = 2 ] &&
	[ "$(stat -c %i "$mnt/links2/a")" = "$(stat -c %i "$mnt/links2/b")" ]
ok $? "cp -a kept the hard link"

echo behind >"$back/behind" && [ "$(cat "$mnt/behind")" = behind ]
ok $? "a file made in the backing folder shows through"
# At once when the old file is gone (ESTALE makes the kernel look again);
# with kernel passthrough the old file lives on until the entry times out.
echo old >"$back/saved" && cat "$mnt/saved" >/dev/null &&
	echo new >"$back/saved.tmp" && mv "$back/saved.tmp" "$back/saved" &&
	{ [ "$(cat "$mnt/saved")" = new ] || { sleep 1.2 && [ "$(cat "$mnt/saved")" = new ]; }; }
ok $? "a file replaced behind the drive (an editor's save) reads anew"
exec 7<>"$mnt/links/a" && rm "$mnt/links/a" "$mnt/links/b" && echo more >&7 &&
	[ "$(cat /proc/self/fd/7)" = more ]
ok $? "an open file stays usable after its last name is gone"
exec 7>&-

mkdir -m 1777 "$back/pub"
as_user sh -c "umask 022; echo u >'$mnt/pub/f'; mkdir '$mnt/pub/d'; umask 077; echo u >'$mnt/pub/g'"
[ "$(stat -c '%u:%g %a' "$back/pub/f" "$back/pub/d" "$back/pub/g" | tr '\n' ' ')" = \
	"$U:$G 644 $U:$G 755 $U:$G 600 " ]
ok $? "files of uid $U belong to it, with its umask"
mkdir -m 2770 "$back/team" && chgrp $TEAM "$back/team"
as_user sh -c "umask 002; echo t >'$mnt/team/f'; mkdir '$mnt/team/d'"
[ "$(stat -c '%u:%g %a' "$back/team/f" "$back/team/d" | tr '\n' ' ')" = \
	"$U:$TEAM 664 $U:$TEAM 2775 " ]
ok $? "a supplementary group lets it in; the setgid folder gives its group"

if command -v setfacl >/dev/null && setfacl -m u:$U:r "$back/behind" 2>/dev/null; then
	setfacl -b "$back/behind"
	mkdir -m 777 "$back/acl" "$back/acl-native"
	setfacl -d -m u::rwx,g::rwx,o::rwx "$mnt/acl"
	setfacl -d -m u::rwx,g::rwx,o::rwx "$back/acl-native"
	as_user sh -c "umask 077; echo a >'$mnt/acl/f'; mkdir '$mnt/acl/d'"
	as_user sh -c "umask 077; echo a >'$back/acl-native/f'; mkdir '$back/acl-native/d'"
	[ "$(stat -c %a "$back/acl/f" "$back/acl/d")" = "$(stat -c %a "$back/acl-native/f" "$back/acl-native/d")" ] &&
		diff <(getfacl -ncp "$back/acl/d") <(getfacl -ncp "$back/acl-native/d") >/dev/null
	ok $? "a default ACL applies instead of the umask, as natively"
	echo secret >"$mnt/secret" && chmod 600 "$mnt/secret"
	! as_user cat "$mnt/secret" 2>/dev/null && setfacl -m u:$U:r "$mnt/secret" &&
		[ "$(as_user cat "$mnt/secret")" = secret ] &&
		getfacl -ncp "$back/secret" | grep -q "user:$U:r--"
	ok $? "setfacl through the drive reaches the backing file and grants access"
else
	skip "default ACL" "no setfacl, or no ACLs on the scratch file system"
	skip "setfacl" "no setfacl, or no ACLs on the scratch file system"
fi

# More files than the descriptor limit (20,000 here).
n=25000
mkdir "$back/many" && (cd "$back/many" && seq 1 $n | xargs touch)
[ "$(ls -l "$mnt/many" | grep -c '^-')" = $n ]
ok $? "ls -l lists $n files"
[ "$(find "$mnt/many" -type f -exec stat -c %i {} + | sort -n | md5sum)" = \
	"$(find "$back/many" -type f -exec stat -c %i {} + | sort -n | md5sum)" ]
ok $? "stat of every one matches the backing inode numbers"
pid=$(awk -F= '$1 == "pid" { print $2 }' "$VDRIVE_RUNDIR/drives/dirt" 2>/dev/null)
fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
[ "$fds" -gt 0 ] && [ "$fds" -lt 2000 ]
ok $? "the drive keeps its descriptors bounded ($fds open)"
rm -rf "$mnt/many" && [ ! -e "$back/many" ]
ok $? "rm -rf of them through the drive"

vd_umount "$mnt"
ok $? "unmount"

# A file system without file handles (overlayfs): each node then keeps a
# descriptor of its own; the same operations must work.
ov=$VD_TMP/ov
mkdir -p "$ov/l" "$ov/u" "$ov/w" "$ov/m" && echo lower >"$ov/l/low"
if mount -t overlay overlay -o "lowerdir=$ov/l,upperdir=$ov/u,workdir=$ov/w" "$ov/m" 2>/dev/null; then
	VD_MOUNTS+=("$ov/m")
	vd_mount dir:"$ov/m" "$mnt" -o allow_other --name dirov
	ok $? "mount dir: over an overlayfs (no file handles)"
	cp -a "$src" "$mnt/tree" && diff -r "$src" "$mnt/tree" >/dev/null &&
		diff <(listing "$mnt") <(listing "$ov/m") >/dev/null
	ok $? "overlayfs: a copied tree reads back identical, inodes match"
	echo x >"$mnt/a" && ln "$mnt/a" "$mnt/b" && mv "$mnt/b" "$mnt/tree/c" &&
		[ "$(stat -c %h "$mnt/a")" = 2 ] && [ "$(cat "$mnt/low")" = lower ] &&
		echo up >>"$mnt/low" && [ "$(cat "$ov/m/low")" = "lower
up" ]
	ok $? "overlayfs: links, renames, copy-up of a lower file"
	mkdir -m 1777 "$mnt/tree/pub" &&
		as_user sh -c "umask 022; echo u >'$mnt/tree/pub/mine'" &&
		[ "$(stat -c '%u:%g %a' "$ov/m/tree/pub/mine")" = "$U:$G 644" ]
	ok $? "overlayfs: files of uid $U belong to it"
	rm -rf "$mnt/tree" "$mnt/a" && [ ! -e "$ov/m/tree" ]
	ok $? "overlayfs: rm -rf through the drive"
	vd_umount "$mnt"
	ok $? "unmount the overlayfs mirror"
else
	skip "dir: over overlayfs" "cannot mount an overlayfs here"
fi
done_testing
