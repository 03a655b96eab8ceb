#!/bin/bash
# records: an SQLite database's tables through a real mount: rows read as
# JSON, edited with ordinary tools, inserted by creating files, deleted by
# rm, CSV; each kind of bad content fails close(2) and leaves the row as it
# was; changes made with the sqlite3 shell show up promptly.
. "$(dirname "$0")/lib.sh"
vd_init records

vd_have_source records || missing_all "source records: not built ('vdrive help' does not list records:)"
if ! command -v sqlite3 >/dev/null || ! command -v perl >/dev/null; then
	skip_all "needs sqlite3 and perl"
fi

DB=$VD_TMP/data/t.db
M=$VD_TMP/m
LOG=$VDRIVE_RUNDIR/drives/m.log
mkdir -p "$VD_TMP/data"
sqlite3 "$DB" "
PRAGMA journal_mode=WAL;
CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
	age INTEGER CHECK(age >= 0), email TEXT UNIQUE);
INSERT INTO people VALUES(1, 'Ann', 30, 'ann@x'), (2, 'Bob', NULL, 'bob@x');
CREATE TABLE tags(name TEXT PRIMARY KEY, n INT);
INSERT INTO tags VALUES('a/b', 1);" >/dev/null

# w FILE TEXT: write TEXT to FILE (one write) and close it; prints "ok"
# or the name of the errno that open, write or close gave.
w() {
	perl -MPOSIX -MErrno -e '
		sub fail { print((grep { $!{$_} } keys %!)[0], "\n"); exit }
		my $fd = POSIX::open($ARGV[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		fail() unless defined $fd;
		fail() unless defined POSIX::write($fd, $ARGV[1], length $ARGV[1]);
		fail() unless defined POSIX::close($fd);
		print "ok\n"' "$@"
}
# sql TEXT: the sqlite3 shell on the database, waiting out locks.
sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$@"; }
row() { sql "SELECT * FROM people WHERE id = $1"; }

vd_mount "records:$DB,csv" "$M"
ok $? "vdrive mount records:DB,csv" || done_testing

ls "$M" | tr '\n' ' ' | grep -qx "people people.csv tags tags.csv "
ok $? "a folder per table and TABLE.csv at the root"
ls "$M/people" | tr '\n' ' ' | grep -qx "1.json 2.json "
ok $? "a file per row, named by its key"
[ "$(cat "$M/people/1.json")" = '{
  "id": 1,
  "name": "Ann",
  "age": 30,
  "email": "ann@x"
}' ]
ok $? "a row reads as a JSON object"

# Round trips with ordinary tools.
sed 's/"age": 30/"age": 31/; s/"Ann"/"Ann B"/' "$M/people/1.json" >"$VD_TMP/edit.json" &&
	cp "$VD_TMP/edit.json" "$M/people/1.json"
ok $? "sed + cp edit a row"
[ "$(row 1)" = "1|Ann B|31|ann@x" ]
ok $? "the sqlite3 shell sees the edit"
sed -i 's/"Ann B"/"Ann S"/' "$M/people/1.json"
ok $? "sed -i edits a row (a scratch file renamed over it)"
[ "$(row 1)" = "1|Ann S|31|ann@x" ] && ls "$M/people" | tr '\n' ' ' | grep -qx "1.json 2.json "
ok $? "... saved, and no scratch file left behind"
if command -v vim >/dev/null; then
	vim -u NONE -N -es -c '%s/"Ann S"/"Ann B"/' -c wq "$M/people/1.json" </dev/null
	[ "$(row 1)" = "1|Ann B|31|ann@x" ] && ls -a "$M/people" | tr '\n' ' ' | grep -qx ". .. 1.json 2.json "
	ok $? "vim edits a row (swap file and all), nothing left behind"
else
	skip "vim edits a row" "no vim"
fi
sed -i 's/"age": 31/"age": "x"/' "$M/people/1.json" 2>/dev/null
[ $? != 0 ] && [ "$(row 1)" = "1|Ann B|31|ann@x" ]
ok $? "a bad sed -i edit fails, row unchanged"
rm -f "$M/people/sed"*
echo '{"name": "Cy", "age": 7}' >"$VD_TMP/new.json" &&
	stat "$M/people.csv" >/dev/null && # cached now
	cp "$VD_TMP/new.json" "$M/people/5.json"
ok $? "cp of a new file inserts a row"
[ "$(row 5)" = "5|Cy|7|" ] && [ -f "$M/people/5.json" ]
ok $? "the new row is in the database and in the folder"
sleep 0.3 # the poller's 100 ms, well inside the 1 s attribute cache
[ "$(stat -c %s "$M/people.csv")" = "$(cat "$M/people.csv" | wc -c)" ]
ok $? "after an insert through the drive, people.csv's size follows"
rm "$M/people/5.json" && [ -z "$(row 5)" ] && [ ! -e "$M/people/5.json" ]
ok $? "rm deletes the row"
grep -q '"name": "a/b"' "$M/tags/a%2Fb.json"
ok $? "a key with '/' is the file a%2Fb.json"
printf 'id,name,age,email\r\n1,Ann B,31,ann@x\r\n2,Bob,,bob@x\r\n' |
	cmp -s - "$M/people.csv"
ok $? "people.csv is the whole table"

# Bad content of each kind: close fails with the documented errno, the
# reason is logged, the row stays as it was.
before=$(row 1)
check_bad() { # DESC ERRNO CONTENT
	local got
	got=$(w "$M/people/1.json" "$3")
	[ "$got" = "$2" ] && [ "$(row 1)" = "$before" ]
	ok $? "$1: close fails with $2 (got $got), row unchanged"
}
check_bad "bad JSON" EINVAL '{"name": "X",'
check_bad "text into an INTEGER column" EINVAL '{"age": "old"}'
check_bad "unknown column" EINVAL '{"nmae": "X"}'
check_bad "CHECK constraint" EINVAL '{"age": -5}'
check_bad "NOT NULL constraint" EINVAL '{"name": null}'
check_bad "UNIQUE constraint" EEXIST '{"email": "bob@x"}'
check_bad "key not matching the name" EINVAL '{"id": 2}'
! cp "$VD_TMP/new.json" "$M/people/abc.json" 2>/dev/null && [ ! -e "$M/people/abc.json" ]
ok $? "a non-integer name in an INTEGER-keyed table is refused"
[ "$(w "$M/people/30.json" '{"age": 1}')" = EINVAL ] && [ -z "$(row 30)" ]
ok $? "a new file whose insert fails (NOT NULL) fails close with EINVAL"
for _ in $(seq 50); do [ -e "$M/people/30.json" ] || break; sleep 0.02; done
[ ! -e "$M/people/30.json" ]
ok $? "... and does not stay in the folder"
grep -q "people/1.json: not saved: CHECK constraint failed" "$LOG" &&
	grep -q "people/1.json: not saved: unknown column 'nmae'" "$LOG"
ok $? "each failure is logged with its reason"

# Outside changes: warm the kernel's caches, change the database with the
# sqlite3 shell, and expect the drive to follow well within the 1 s that
# the attribute and entry caches would otherwise keep the old view.
stat "$M/people/1.json" "$M/people/2.json" >/dev/null
ls "$M/people" >/dev/null
size_before=$(stat -c %s "$M/people/1.json")
sql "UPDATE people SET name = 'Ann with a much longer name' WHERE id = 1;
	DELETE FROM people WHERE id = 2; INSERT INTO people(id, name) VALUES (9, 'Outside');"
t0=$(date +%s%N)
seen=0
for _ in $(seq 100); do
	if [ "$(stat -c %s "$M/people/1.json")" != "$size_before" ] &&
		[ ! -e "$M/people/2.json" ] && [ -e "$M/people/9.json" ]; then
		seen=1
		break
	fi
	sleep 0.01
done
ms=$((($(date +%s%N) - t0) / 1000000))
[ $seen = 1 ] && [ $ms -lt 700 ]
ok $? "outside update, delete and insert visible after $ms ms (size, stat, lookup)"
grep -q '"name": "Ann with a much longer name"' "$M/people/1.json"
ok $? "the new content reads in full"
ls "$M/people" | tr '\n' ' ' | grep -qx "1.json 9.json "
ok $? "the listing follows"
grep -q "^9,Outside," "$M/people.csv"
ok $? "the CSV follows"

# Control, for information: with polling slowed down, the kernel's caches
# keep a deleted row visible for a while, which shows the invalidation
# above is what made the change prompt. Cache eviction is the kernel's to
# decide, so this is a note, not a test.
M2=$VD_TMP/m2
vd_mount "records:$DB,poll=60000" "$M2"
ok $? "second mount with poll=60000"
t0=$(date +%s%N)
stat "$M2/people/9.json" >/dev/null && sql "DELETE FROM people WHERE id = 9" &&
	[ -z "$(row 9)" ]
ok $? "control: row 9 looked up, then deleted outside"
sleep 0.2
ms=$((($(date +%s%N) - t0) / 1000000))
if stat "$M2/people/9.json" >/dev/null 2>&1; then
	diag "note: control: without polling, the deleted row was still visible after $ms ms"
else
	diag "note: control: without polling, the deleted row was gone after $ms ms (evicted)"
fi
vd_umount "$M2"
ok $? "unmount the control drive"

vd_umount "$M"
ok $? "vdrive unmount"
[ "$(sql "PRAGMA integrity_check")" = ok ]
ok $? "the database passes integrity_check"
done_testing
