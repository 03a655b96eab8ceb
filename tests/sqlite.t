#!/bin/bash
# The sqlite: source mounted for real: files written with ordinary tools
# are in the database as the sqlite3 shell sees it (tables, and the sqlar
# table that `sqlite3 -A` lists and extracts, kept in step through
# renames, unlinks, chmod, truncate and links, and after kill -9; an old
# database with a sqlar view is upgraded); they survive a remount;
# bad files are refused untouched; a full disk gives ENOSPC and loses
# nothing; and a drive killed with SIGKILL in the middle of heavy writes
# leaves a database that passes integrity_check and holds every file
# that was fsynced before the kill. VDRIVE_QUICK=1: 5 kill rounds, not 20.
. "$(dirname "$0")/lib.sh"
vd_init sqlite

if ! vd_have_source sqlite; then
	missing "sqlite: source" "not built ('vdrive help' does not list sqlite:)"
	done_testing
fi
if ! command -v sqlite3 >/dev/null; then
	skip "sqlite: source" "the sqlite3 shell is not installed"
	done_testing
fi
fs=$VD_TMP/fs
if ! vd_scratch tmpfs "$fs"; then
	skip "sqlite: source" "cannot mount a tmpfs for the databases"
	done_testing
fi
DB=$fs/drive.db
M=$(vd_mktemp mnt)
SRC=$(vd_mktemp src)

# drive_pid NAME: the pid `vdrive list --json` reports for drive NAME.
drive_pid() {
	"$VDRIVE" list --json | tr '{' '\n' | grep "\"name\": \"$1\"" |
		grep -o '"pid": [0-9]*' | grep -o '[0-9]*$'
}

integrity() {
	[ "$(sqlite3 "$1" 'PRAGMA integrity_check')" = ok ]
}

# The rows in which DB's sqlar table and its tree differ (0: in step):
# what sqlar must hold, computed in SQL from the other tables.
SQLAR_DIFF="WITH RECURSIVE paths(ino, path) AS (
  SELECT ino, name FROM dentries WHERE parent = 1 UNION ALL
  SELECT d.ino, p.path || '/' || d.name FROM dentries d JOIN paths p ON d.parent = p.ino),
 want(name, mode, mtime, sz, data) AS (
  SELECT p.path, i.mode, CAST(floor(i.mtime / 1e9) AS INT),
   CASE i.mode & 61440 WHEN 32768 THEN i.size WHEN 40960 THEN length(i.target) ELSE 0 END,
   CASE WHEN i.mode & 61440 = 32768 AND i.size <= 1048576 THEN (
    WITH RECURSIVE k(idx) AS (SELECT 0 UNION ALL SELECT idx + 1 FROM k WHERE (idx + 1) * 131072 < i.size)
    SELECT CAST(coalesce(group_concat(part, ''), x'') AS BLOB) FROM (
     SELECT CAST(coalesce(c.data, x'') || zeroblob(min(131072, i.size - k.idx * 131072)
      - coalesce(length(c.data), 0)) AS BLOB) AS part
     FROM k LEFT JOIN chunks c ON c.ino = i.ino AND c.idx = k.idx ORDER BY k.idx))
    WHEN i.mode & 61440 = 40960 THEN CAST(i.target AS BLOB) END
  FROM paths p JOIN inodes i ON i.ino = p.ino WHERE i.mode & 61440 IN (32768, 16384, 40960))
SELECT (SELECT count(*) FROM (SELECT * FROM want EXCEPT SELECT * FROM sqlar))
 + (SELECT count(*) FROM (SELECT * FROM sqlar EXCEPT SELECT * FROM want))"
sqlar_ok() {
	[ "$(sqlite3 "$1" "$SQLAR_DIFF")" = 0 ]
}

# ar_want DIR: what `sqlite3 DB -A -tv` should list for the tree at DIR
# (files, folders and symlinks: mode, size, mtime in UTC, path).
ar_want() {
	(cd "$1" && find . -mindepth 1 \( -type f -o -type d -o -type l \) \
		-printf '%M %s %T@ %P\n') |
		while read -r mode size t path; do
			echo "$mode $size $(date -u -d "@${t%.*}" '+%F %T') $path"
		done | sort -k5
}
# ar_list DB: what it lists, in the same form.
ar_list() {
	sqlite3 "$1" -A -tv | awk '{ print $1, $2, $3, $4, $5 }' | sort -k5
}
# ar_same DB DIR: the listing matches the tree, or the diff is shown.
ar_same() {
	local out
	out=$(diff <(ar_want "$2") <(ar_list "$1")) && return 0
	diag "$out"
	return 1
}

# --- Ordinary tools write, the sqlite3 shell reads. ---
vd_mount "sqlite:$DB" "$M" --name sq
ok $? "mount sqlite:$DB (created)"
head -c 3000000 /dev/urandom >"$SRC/rand.bin"
(
	set -e
	cd "$M"
	mkdir -p a/b
	echo hello >a/hello.txt
	cp "$SRC/rand.bin" a/b/rand.bin
	cp /etc/services a/services
	ln -s hello.txt a/link
	ln a/hello.txt a/hard
	chmod 640 a/services
	touch -d "2001-02-03 04:05:06 UTC" a/hello.txt
	setfattr -n user.colour -v blue a/b/rand.bin
	mkfifo a/fifo
	: >a/empty
)
ok $? "write a tree with cp, ln, chmod, touch, setfattr, mkfifo"
(cd "$M" && find . -type f -exec md5sum {} + | sort -k2) >"$VD_TMP/sums"
cmp -s "$M/a/b/rand.bin" "$SRC/rand.bin"
ok $? "read back while mounted"
vd_umount "$M"
ok $? "unmount"

integrity "$DB"
ok $? "integrity_check is ok after unmount"
[ "$(sqlite3 "$DB" "SELECT value FROM meta WHERE key='format'")" = vdrive-sqlite ]
ok $? "meta says format=vdrive-sqlite"
names=$(sqlite3 "$DB" "SELECT name FROM sqlar ORDER BY name" | tr '\n' ' ')
[ "$names" = "a a/b a/b/rand.bin a/empty a/hard a/hello.txt a/link a/services " ]
ok $? "the sqlar table lists the tree (got: $names)"
[ "$(sqlite3 "$DB" "SELECT sz FROM sqlar WHERE name='a/b/rand.bin'")" = 3000000 ]
ok $? "sqlar gives the size"
[ "$(sqlite3 "$DB" "SELECT mtime FROM sqlar WHERE name='a/hello.txt'")" = 981173106 ]
ok $? "sqlar gives the mtime"
[ "$(sqlite3 "$DB" "SELECT count(*) FROM chunks c JOIN dentries d ON d.ino=c.ino WHERE d.name='rand.bin'")" = 23 ]
ok $? "3000000 bytes are 23 chunks of 128 KiB"
[ "$(sqlite3 "$DB" "SELECT value FROM xattrs x JOIN dentries d ON d.ino=x.ino WHERE d.name='rand.bin' AND x.name='user.colour'")" = blue ]
ok $? "the xattr is in the xattrs table"
sqlar_ok "$DB"
ok $? "the sqlar table matches the tree (SQL over inodes, dentries, chunks)"
listed=$(sqlite3 "$DB" -A -t | sort | tr '\n' ' ')
[ "$listed" = "$names" ]
ok $? "sqlite3 -A -t lists the tree ($listed)"

# --- Remount: everything is still there. ---
vd_mount "sqlite:$DB" "$M" --name sq
ok $? "remount"
(cd "$M" && md5sum --quiet -c "$VD_TMP/sums")
ok $? "every file reads back the same"
[ "$(readlink "$M/a/link")" = hello.txt ] && [ -p "$M/a/fifo" ] &&
	[ "$(stat -c %a "$M/a/services")" = 640 ] &&
	[ "$(stat -c %h "$M/a/hello.txt")" = 2 ] &&
	[ "$(stat -c %Y "$M/a/hello.txt")" = 981173106 ] &&
	[ "$(getfattr --only-values -n user.colour "$M/a/b/rand.bin" 2>/dev/null)" = blue ]
ok $? "link, fifo, mode, link count, mtime and xattr survive"

# --- sqlite3 -A on the live database while the tree changes. ---
(
	set -e
	cd "$M"
	mkdir -p t/d1/d2 t/e
	echo one >t/d1/d2/f1
	echo two >t/d1/f2
	head -c 200000 /dev/urandom >t/d1/mid
	ln -s ../../f2-new t/sym
	ln t/d1/f2 t/e/f2-link
)
sync "$M"
ar_same "$DB" "$M"
ok $? "sqlite3 -A -tv lists mode, size and mtime of every name, as ls sees them"
(
	set -e
	cd "$M"
	mv t/d1 t/e/moved           # a folder with contents
	mv t/e/moved/f2 t/e/f2-new  # a file with a second name
	rm t/e/moved/d2/f1
	chmod 600 t/e/moved/mid
	truncate -s 1000 t/e/moved/mid
	echo more >>t/e/f2-link
	touch -d "2011-02-03 04:05:06 UTC" t/e/f2-new
	mv t/sym t/e/moved/d2/sym
	head -c 1500000 /dev/urandom >t/grown
	echo small >t/cut
	head -c 2000000 /dev/urandom >>t/cut
	truncate -s 3 t/cut
)
sync "$M"
ar_same "$DB" "$M"
ok $? "after renames, unlink, chmod, truncate, writes and links -A -tv still matches"
sqlar_ok "$DB"
ok $? "and the sqlar table holds the right data"
# Files up to 1 MiB carry their content: -x of those gives them back.
# (Naming a folder would extract everything under it, large files too.)
# Symlinks last: the shell sets a symlink's mtime with utimes(), which
# follows it, so it fails for a dangling one and sets the target's.
files=$(sqlite3 "$DB" "SELECT name FROM sqlar WHERE data IS NOT NULL AND mode & 61440 = 32768")
links=$(sqlite3 "$DB" "SELECT name FROM sqlar WHERE mode & 61440 = 40960")
X=$(vd_mktemp extract)
(cd "$X" && sqlite3 "$DB" -A -x $files 2>"$VD_TMP/x.err") && [ ! -s "$VD_TMP/x.err" ]
ok $? "sqlite3 -A -x of the files up to 1 MiB runs without an error" ||
	diag "$(cat "$VD_TMP/x.err")"
bad=0 n=0
for f in $files; do
	n=$((n + 1))
	cmp -s "$X/$f" "$M/$f" &&
		[ "$(stat -c '%a %Y' "$X/$f")" = "$(stat -c '%a %Y' "$M/$f")" ] || {
		bad=$((bad + 1))
		diag "extracted $f differs: $(stat -c '%a %Y %s' "$X/$f" "$M/$f" 2>&1)"
	}
done
[ $bad = 0 ] && [ $n -ge 8 ]
ok $? "the $n extracted files are identical to the drive's, with mode and mtime"
(cd "$X" && sqlite3 "$DB" -A -x $links 2>"$VD_TMP/x.err") && [ ! -s "$VD_TMP/x.err" ] &&
	for f in $links; do
		[ "$(readlink "$X/$f")" = "$(readlink "$M/$f")" ] || exit 1
	done
ok $? "and then the symlinks ($(echo $links))" || diag "$(cat "$VD_TMP/x.err")"
# Larger ones are not in sqlar: -x fails loudly for them, writing nothing.
X2=$(vd_mktemp extract-big)
(cd "$X2" && sqlite3 "$DB" -A -x t/grown 2>"$VD_TMP/x2.err")
grep -q "error in uncompress" "$VD_TMP/x2.err" && [ ! -e "$X2/t/grown" ]
ok $? "sqlite3 -A -x of a file over 1 MiB: an error, no file ($(cat "$VD_TMP/x2.err"))"
(cd "$X2" && sqlite3 "$DB" ".archive -x t/grown" 2>/dev/null)
[ $? != 0 ]
ok $? "and through .archive the exit status says so"
# The shell reads sz as a 32-bit int: what docs/sqlite-schema.md says of
# files of 2 GiB and more, on sparse ones (no chunks stored).
truncate -s 3G "$M/t/g3" && truncate -s 4G "$M/t/g4" && sync "$M" &&
	[ "$(sqlite3 "$DB" "SELECT group_concat(sz, ' ') FROM sqlar WHERE name IN ('t/g3', 't/g4')")" = "3221225472 4294967296" ] &&
	sqlite3 "$DB" -A -tv t/g3 t/g4 | awk '{ print $2 }' | tr '\n' ' ' | grep -qx -- "-1073741824 0 "
ok $? "files of 3 and 4 GiB: sqlar has their sizes, -A -tv shows them wrapped to 32 bits"
(cd "$X2" && sqlite3 "$DB" -A -x t/g3 2>"$VD_TMP/x3.err")
grep -q "error in uncompress" "$VD_TMP/x3.err" && [ ! -e "$X2/t/g3" ]
ok $? "-A -x of the 3 GiB file: an error, no file"
(cd "$X2" && sqlite3 "$DB" -A -x t/g4 2>"$VD_TMP/x4.err")
[ ! -s "$VD_TMP/x4.err" ] && [ -f "$X2/t/g4" ] && [ ! -s "$X2/t/g4" ]
ok $? "-A -x of the 4 GiB file: an empty file, no error (the documented exception)"
rm "$M/t/g3" "$M/t/g4"
mkdir -p "$VD_TMP/mnt2"
out=$("$VDRIVE" mount "sqlite:$DB" "$VD_TMP/mnt2" 2>&1)
[ $? != 0 ] && grep -q "in use" <<<"$out" && ! vd_mounted "$VD_TMP/mnt2"
ok $? "a second drive on the same database is refused ($out)"
vd_umount "$M"
ok $? "unmount"

# --- A version 1 database (a sqlar view, no table) is upgraded when
# opened: view dropped, table made and filled, in one transaction. ---
OLD=$fs/old.db
cp "$DB" "$OLD" && sqlite3 "$OLD" "BEGIN;
	DROP TABLE sqlar; DROP INDEX dentries_ino;
	CREATE VIEW sqlar(name, mode, mtime, sz, data) AS
	 WITH RECURSIVE paths(ino, path) AS (
	  SELECT ino, name FROM dentries WHERE parent = 1 UNION ALL
	  SELECT d.ino, p.path || '/' || d.name FROM dentries d JOIN paths p ON d.parent = p.ino)
	 SELECT p.path, i.mode, i.mtime / 1000000000,
	  CASE i.mode & 61440 WHEN 32768 THEN i.size WHEN 40960 THEN length(i.target) ELSE 0 END,
	  CASE i.mode & 61440 WHEN 32768 THEN (
	   WITH RECURSIVE k(idx) AS (SELECT 0 UNION ALL SELECT idx + 1 FROM k WHERE (idx + 1) * 131072 < i.size)
	   SELECT CAST(coalesce(group_concat(part, ''), x'') AS BLOB) FROM (
	    SELECT CAST(coalesce(c.data, x'') || zeroblob(min(131072, i.size - k.idx * 131072)
	     - coalesce(length(c.data), 0)) AS BLOB) AS part
	    FROM k LEFT JOIN chunks c ON c.ino = i.ino AND c.idx = k.idx ORDER BY k.idx))
	   WHEN 40960 THEN CAST(i.target AS BLOB) ELSE NULL END
	 FROM paths p JOIN inodes i ON i.ino = p.ino WHERE i.mode & 61440 IN (32768, 16384, 40960);
	UPDATE meta SET value = 1 WHERE key = 'version'; COMMIT" &&
	sqlite3 "$OLD" -A -t 2>&1 | grep -q "does not contain an 'sqlar' table"
ok $? "a version 1 database: sqlite3 -A refuses its sqlar view"
vd_mount "sqlite:$OLD" "$M" --name sqold && sync "$M" &&
	[ "$(sqlite3 "$OLD" "SELECT value FROM meta WHERE key='version'")" = 2 ] &&
	[ "$(sqlite3 "$OLD" "SELECT type FROM sqlite_schema WHERE name='sqlar'")" = table ] &&
	sqlar_ok "$OLD" && ar_same "$OLD" "$M"
ok $? "mounting it upgrades it: a sqlar table that -A -tv lists, matching the tree"
vd_umount "$M"

# --- POSIX ACLs: the same steps on tmpfs and on sqlite: must leave the
# same modes and ACLs (inheritance, chmod under an ACL, setfacl, cp -a).
if command -v setfacl >/dev/null; then
	mkdir -p "$fs/acl-ref" && vd_acl_script "$fs/acl-ref" >"$VD_TMP/acl-ref.txt" 2>&1 &&
		vd_mount "sqlite:$fs/acl.db" "$M" --name sqacl &&
		vd_acl_script "$M" >"$VD_TMP/acl-sq.txt" 2>&1
	ok $? "the ACL steps run on tmpfs and on sqlite:"
	out=$(diff "$VD_TMP/acl-ref.txt" "$VD_TMP/acl-sq.txt")
	ok $? "modes and ACLs on sqlite: match tmpfs" || diag "$out"
	vd_umount "$M"
else
	skip "ACLs" "setfacl/getfacl missing (apt-get install acl)"
fi

# --- Files that are not vdrive databases are refused and left alone. ---
cp /etc/services "$fs/notdb"
out=$("$VDRIVE" mount "sqlite:$fs/notdb" "$M" 2>&1)
[ $? != 0 ] && grep -q "not an SQLite database" <<<"$out" && ! vd_mounted "$M" &&
	cmp -s /etc/services "$fs/notdb"
ok $? "a text file is refused, untouched ($out)"
sqlite3 "$fs/other.db" "CREATE TABLE t(x); INSERT INTO t VALUES(42)"
sum=$(md5sum <"$fs/other.db")
out=$("$VDRIVE" mount "sqlite:$fs/other.db" "$M" 2>&1)
[ $? != 0 ] && grep -q "not a vdrive drive" <<<"$out" && ! vd_mounted "$M" &&
	[ "$(md5sum <"$fs/other.db")" = "$sum" ]
ok $? "another SQLite database is refused, untouched ($out)"

# --- A full disk: writes fail with ENOSPC, nothing is lost, deleting
# frees room again. ---
small=$VD_TMP/small
mkdir -p "$small" && mount -t tmpfs -o size=40m tmpfs "$small" && VD_MOUNTS+=("$small")
if vd_mount "sqlite:$small/s.db" "$M" --name sqfull; then
	echo keep >"$M/keep" && sync "$M/keep"
	full_ok=0
	for i in 1 2 3; do
		dd if=/dev/zero of="$M/big" bs=1M count=100 2>"$VD_TMP/dd.err" &&
			full_ok=1
		grep -q "No space left" "$VD_TMP/dd.err" || full_ok=1
		rm "$M/big" && echo "after$i" >"$M/after$i" && sync "$M/after$i" ||
			full_ok=1
	done
	[ $full_ok = 0 ]
	ok $? "filling a 40 MiB disk three times: ENOSPC, then rm and a new file work"
	vd_umount "$M"
	integrity "$small/s.db" &&
		[ "$(sqlite3 "$small/s.db" "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlar ORDER BY name)")" = "after1 after2 after3 keep" ]
	ok $? "after a full disk: integrity_check ok, every file that was kept is there"
else
	ok 1 "mount on a 40 MiB disk"
fi

# --- SIGKILL in the middle of heavy writes. ---
rounds=20
[ "$VD_QUICK" = 1 ] && rounds=5
K=$fs/kill.db
KS=$(vd_mktemp kill-src)

# writer DIR TAG: write files until the drive goes away.
writer() {
	local i=0
	while { head -c $(((RANDOM % 64 + 1) * 4096)) /dev/urandom >"$1/$2-$((i % 40))"; } 2>/dev/null; do
		i=$((i + 1))
	done
}

bad_integrity=0 bad_content=0 bad_mount=0 checked=0 inflight=0
for ((r = 1; r <= rounds; r++)); do
	if ! vd_mount "sqlite:$K" "$M" --name sqkill; then
		bad_mount=$((bad_mount + 1))
		break
	fi
	# Everything fsynced in earlier rounds must be here.
	for f in "$KS"/*; do
		[ -e "$f" ] || continue
		checked=$((checked + 1))
		cmp -s "$f" "$M/sync/${f##*/}" || {
			bad_content=$((bad_content + 1))
			diag "round $r: ${f##*/} differs or is missing"
		}
	done
	pid=$(drive_pid sqkill)
	mkdir -p "$M/bg" "$M/sync"
	writer "$M/bg" a &
	w1=$!
	writer "$M/bg" b &
	w2=$!
	dd if=/dev/zero of="$M/bg/big" bs=1M count=300 2>/dev/null &
	w3=$!
	for k in 1 2 3; do
		head -c $((RANDOM * 16 + k)) /dev/urandom >"$KS/r$r-$k.new"
		cp "$KS/r$r-$k.new" "$M/sync/r$r-$k" && sync "$M/sync/r$r-$k" &&
			mv "$KS/r$r-$k.new" "$KS/r$r-$k"
	done
	sync "$M/sync"
	sleep "0.$((RANDOM % 5))"
	kill -0 "$w1" "$w2" "$w3" 2>/dev/null && inflight=$((inflight + 1))
	if [ -n "$pid" ]; then
		kill -9 "$pid"
	else
		bad_mount=$((bad_mount + 1))
		diag "round $r: no pid for the drive in vdrive list --json"
	fi
	kill "$w1" "$w2" "$w3" 2>/dev/null
	wait "$w1" "$w2" "$w3" 2>/dev/null
	rm -f "$KS"/*.new
	vd_umount "$M" || bad_mount=$((bad_mount + 1))
	if ! integrity "$K"; then
		bad_integrity=$((bad_integrity + 1))
		diag "round $r: integrity_check failed"
	elif ! sqlar_ok "$K"; then
		bad_integrity=$((bad_integrity + 1))
		diag "round $r: the sqlar table does not match the tree"
	fi
done
[ $bad_mount = 0 ]
ok $? "$rounds rounds of mount, heavy writes, fsync, kill -9, unmount"
[ $inflight = $rounds ]
ok $? "the writers were still writing at every kill ($inflight of $rounds)"
[ $bad_integrity = 0 ]
ok $? "integrity_check ok and sqlar in step after every kill ($bad_integrity bad)"
vd_mount "sqlite:$K" "$M" --name sqkill
for f in "$KS"/*; do
	checked=$((checked + 1))
	cmp -s "$f" "$M/sync/${f##*/}" || {
		bad_content=$((bad_content + 1))
		diag "final: ${f##*/} differs or is missing"
	}
done
[ $bad_content = 0 ] && [ "$(ls "$KS" | wc -l)" = $((rounds * 3)) ]
ok $? "every fsynced file is there after each kill ($checked checks, $bad_content bad)"
vd_umount "$M"
ok $? "unmount"
done_testing
