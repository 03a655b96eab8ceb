#!/bin/bash
# The body cache (lib/cache.c) on sqlite: drives, on a tmpfs: files read
# and written through a cached body reach the database; bodies are owner
# only; a remount keeps valid bodies and drops tampered ones; the shared
# POSIX cases and fsx run with it; fsynced data survives kill -9 of the
# drive; a full cache, a deleted cache folder and two read/write opens of
# one file still give the right bytes; an invalidated body is refilled and
# a failed write-back fails fsync and close with EIO (tests/helpers/
# cache_drive.c, a source that can change under the drive or refuse).
. "$(dirname "$0")/lib.sh"
vd_init cache
vd_need_root "cache"
PC=$VD_HELPERS/posix_cases
FSX=$VD_HELPERS/fsx
CD=$VD_HELPERS/cache_drive

# Passthrough, hence the cache, needs libfuse >= 3.17 under libvdrive.
lf=$(ldd "$VDRIVE_BUILD/libvdrive.so" | awk '/libfuse3/ {print $3}')
lfver=$(basename "$(readlink -f "$lf")" | sed 's/^libfuse3\.so\.//')
if [ "$(printf '%s\n' 3.17 "$lfver" | sort -V | head -n1)" != 3.17 ]; then
	skip "cache" "libvdrive runs on libfuse $lfver: no passthrough, no body cache"
	done_testing
fi
if ! vd_have_source sqlite; then
	skip "cache" "vdrive built without sqlite:"
	done_testing
fi
t=$VD_TMP/tmpfs
if ! vd_scratch tmpfs "$t"; then
	skip "cache" "cannot mount tmpfs here"
	done_testing
fi
C=$t/cache
M=$VD_TMP/m
DB=$t/a.db
LOG=$VDRIVE_RUNDIR/drives/m.log

# bodies: the cached bodies in the cache folder.
bodies() { find "$C" -maxdepth 1 -type f -name '????????????????' | sort; }

vd_mount "sqlite:$DB" "$M" -o "allow_other,cache=$C,cache_size=64M"
ok $? "mount sqlite: with cache=DIR" || done_testing
grep -q "cache: off" "$LOG" 2>/dev/null && diag "$(cat "$LOG")"

head -c 3000000 /dev/urandom >"$t/src"
cp "$t/src" "$M/f" && cmp -s "$t/src" "$M/f"
ok $? "a new file reads back (first open fills its body)"
[ "$(bodies | wc -l)" = 1 ] && [ "$(stat -c %s "$(bodies)")" = 3000000 ]
ok $? "one body of the file's size in the cache folder"
[ "$(stat -c %a "$C")" = 700 ] && [ "$(stat -c %a "$(bodies)")" = 600 ] &&
	[ "$(stat -c %u "$(bodies)")" = 0 ]
ok $? "the folder is 0700 and the body 0600, owned by the drive's user"
echo tail-1 >>"$M/f" && echo tail-1 >>"$t/src"
cmp -s "$t/src" "$M/f" && [ "$(stat -c %s "$M/f")" = "$(stat -c %s "$t/src")" ]
ok $? "an append through the body reads back, size follows"
vd_umount "$M"
ok $? "unmount"

vd_mount "sqlite:$DB" "$M" -o cache=no
cmp -s "$t/src" "$M/f"
ok $? "without the cache the database holds the appended file (written back on close)"
vd_umount "$M"

body=$(bodies)
ino=$(stat -c %i "$body")
vd_mount "sqlite:$DB" "$M" -o "allow_other,cache=$C,cache_size=64M"
cmp -s "$t/src" "$M/f" && [ "$(stat -c %i "$body" 2>/dev/null)" = "$ino" ]
ok $? "remount: the body is kept and used (same file)"
grep -q "cache: 1 bodies kept, 0 dropped" "$LOG"
ok $? "the mount check logs it kept"
vd_umount "$M"

# A body changed behind the drive's back (or written and never written
# back before a crash) no longer matches its xattr: dropped at mount.
printf 'XXXX' | dd of="$body" bs=1 seek=10 conv=notrunc status=none
vd_mount "sqlite:$DB" "$M" -o "allow_other,cache=$C,cache_size=64M"
grep -q "cache: 0 bodies kept, 1 dropped" "$LOG"
ok $? "remount: a tampered body is dropped"
cmp -s "$t/src" "$M/f"
ok $? "... and the file reads from the database again"

# Two read/write opens of one file share one body.
printf 'abcdefgh' >"$M/two"
cat "$M/two" >/dev/null
exec 3<>"$M/two" 4<>"$M/two"
printf 'XY' >&3
r=$(head -c 8 <&4)
exec 3>&- 4>&-
[ "$r" = "XYcdefgh" ] && [ "$(cat "$M/two")" = XYcdefgh ]
ok $? "two read/write opens see each other's writes"

if [ -x "$PC" ]; then
	tap_include "posix cases (sqlite: cached)" "$PC" "$M"
else
	skip "posix cases" "$PC not built (make)"
fi
if [ -x "$FSX" ]; then
	for s in 1 2 3 4; do
		run_ok "fsx sqlite: cached seed $s" "$FSX" -s "$s" -n 5000 "$M"
	done
	run_ok "fsx sqlite: cached seed 99 (64 KiB, I/O up to 9000 bytes)" \
		"$FSX" -s 99 -n 5000 -l 65536 -w 9000 "$M"
	run_ok "fsx sqlite: cached seed 7, file kept" \
		"$FSX" -s 7 -n 5000 -K "$VD_TMP/model" "$M"
else
	skip "fsx" "$FSX not built (make)"
fi
n=$(find "$C" -type f -exec stat -c '%a' {} + | sort -u | tr '\n' ' ')
[ "$n" = "600 " ]
ok $? "every file in the cache folder is 0600 ($n)"
vd_umount "$M"
ok $? "unmount"
if [ -x "$FSX" ]; then
	vd_mount "sqlite:$DB" "$M" -o cache=no
	cmp "$M/fsx.7.final" "$VD_TMP/model"
	ok $? "the database holds what fsx wrote"
	vd_umount "$M"
fi

# kill -9: what was fsynced is in the database; unsynced bytes in a body
# are dropped at the next mount, the database stays the truth.
vd_mount "sqlite:$DB" "$M" -o "cache=$C"
pid=$(sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/m")
head -c 200000 /dev/urandom >"$t/v0"
head -c 200000 /dev/urandom >"$t/v1"
cp "$t/v0" "$M/k" && cat "$M/k" >/dev/null
# A writer that fsyncs v1, then appends and stops with the file open (a
# close would write back: every close(2) flushes).
perl -e 'open(F, "+<", $ARGV[0]) or die; open(V, "<", $ARGV[1]) or die;
	local $/; my $v = <V>; syswrite(F, $v) == length($v) or die;
	require IO::Handle; F->sync or die "fsync: $!";
	syswrite(F, "x" x 1000) == 1000 or die; kill("STOP", $$)' "$M/k" "$t/v1" &
w=$!
for _ in $(seq 100); do
	[ "$(ps -o stat= -p $w)" = T ] && break
	sleep 0.02
done
kill -9 "$pid"
kill -9 $w
wait $w 2>/dev/null
vd_umount "$M"
vd_mount "sqlite:$DB" "$M" -o "cache=$C"
cmp -s "$t/v1" "$M/k"
ok $? "after kill -9 the file holds what was fsynced"
grep -q "cache: [0-9]* bodies kept, [1-9][0-9]* dropped" "$LOG"
ok $? "... and the unsynced body was dropped at mount"
vd_umount "$M"

# A full cache: bigger files are served the ordinary way, never an error;
# closed clean bodies are evicted to make room.
rm -rf "$C"
vd_mount "sqlite:$DB" "$M" -o "cache=$C,cache_size=1M"
head -c 2000000 /dev/urandom >"$t/big"
cp "$t/big" "$M/big" && cmp -s "$t/big" "$M/big"
ok $? "a file larger than the cache reads right"
[ -z "$(bodies)" ]
ok $? "... and has no body"
head -c 600000 /dev/urandom >"$t/a" && head -c 600000 /dev/urandom >"$t/b"
cp "$t/a" "$M/a" && cp "$t/b" "$M/b" && cmp -s "$t/a" "$M/a" &&
	cmp -s "$t/b" "$M/b" && cmp -s "$t/a" "$M/a"
ok $? "two files that do not fit together read right, in turns"
total=$(bodies | xargs -r stat -c %s | awk '{ s += $1 } END { print s + 0 }')
[ "$total" -le 1048576 ]
ok $? "the bodies stay within cache_size ($total bytes)"
printf 'grow' >>"$M/big" && printf 'grow' >>"$t/big" && cmp -s "$t/big" "$M/big"
ok $? "writes to an uncached file work"

# The cache folder removed under a mounted drive.
rm -rf "$C"
cmp -s "$t/a" "$M/a" && cmp -s "$t/b" "$M/b"
ok $? "cache folder deleted: files still read right"
printf 'after' >>"$M/a" && printf 'after' >>"$t/a" && cmp -s "$t/a" "$M/a"
ok $? "... and take writes"
vd_umount "$M"
vd_mount "sqlite:$DB" "$M" -o cache=no
cmp -s "$t/a" "$M/a" && cmp -s "$t/big" "$M/big"
ok $? "... which reached the database"
vd_umount "$M"

# Bad option values fail the mount with a message.
for o in cache_size=lots cache=relative/dir cache_fill_max=-1; do
	if out=$("$VDRIVE" mount "sqlite:$DB" "$M" -o "$o" 2>&1); then
		vd_umount "$M"
		ok 1 "-o $o is refused"
	else
		grep -q "${o%%=*}" <<<"$out" && ! vd_mounted "$M"
		ok $? "-o $o is refused: $out"
	fi
done
vd_mount "sqlite:$DB" "$M" -o cache=no
cmp -s "$t/a" "$M/a"
ok $? "... and the data is intact"
vd_umount "$M"

# Without cache=: a folder of the drive's own under $VDRIVE_CACHE_DIR
# (lib.sh points it into the test's temp folder).
vd_mount "sqlite:$DB" "$M"
cat "$M/a" >/dev/null
n=$(find "$VDRIVE_CACHE_DIR" -mindepth 2 -maxdepth 2 -type f -name "$(printf '%.0s?' {1..16})" | wc -l)
[ "$n" = 1 ] && [ "$(stat -c %a "$VDRIVE_CACHE_DIR"/sqlite_*)" = 700 ]
ok $? "the default folder is the drive's own, under \$VDRIVE_CACHE_DIR ($n body)"
vd_umount "$M"

# A source that changes under the drive, and one whose writes fail.
if [ -x "$CD" ]; then
	tap_include "cache_drive" "$CD" "$VD_TMP/cd" "$t/cd-cache"
else
	skip "cache_drive" "$CD not built (make)"
fi
done_testing
