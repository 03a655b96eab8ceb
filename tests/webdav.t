#!/bin/bash
# webdav: drives on a real WebDAV server: Debian's Apache httpd with
# mod_dav_fs, started here on a loopback port with a private config (its
# pid file, logs and lock database in the temp folder), in one process
# (-X) so that kill -STOP freezes it, and stopped by pid. Cases: the
# shared POSIX cases a WebDAV folder can support (the rest SKIP with the
# reason), a second server speaking another dialect of multistatus (a
# small perl responder), fsx on one file, 0 B / 1 MiB / 100 MiB round trips checked on
# both sides and after a remount, ranged reads checked in the server's
# access log, changes made on the server seen after the cache time,
# rename/delete/mkdir, Basic auth from a netrc file (and wrong or missing
# credentials, a password kept out of ps and `vdrive list`), a stopped or
# killed server (EIO within the timeout, then recovery), and bad URLs.
. "$(dirname "$0")/lib.sh"
vd_init webdav
vd_need_root "webdav"
APACHE=/usr/sbin/apache2
MODS=/usr/lib/apache2/modules

if ! vd_have_source webdav; then
	skip "webdav" "source not built ('vdrive help' does not list webdav:)"
	done_testing
fi
if [ ! -x "$APACHE" ] || [ ! -f "$MODS/mod_dav_fs.so" ] ||
	! command -v htpasswd >/dev/null || ! getent passwd www-data >/dev/null; then
	skip "webdav" "needs Debian's apache2 (mod_dav_fs, htpasswd, user www-data): scripts/deps.sh installs it"
	done_testing
fi

# ---- The server ------------------------------------------------------------
srv=$(vd_mktemp srv)
dav=$srv/dav
mkdir -p "$dav/auth" "$srv/plain" "$srv/lock" "$srv/logs"
chown -R www-data: "$dav" "$srv/lock"
port=
for try in $(seq 1 50); do
	p=$((20000 + RANDOM % 20000))
	if ! ss -Hltn "sport = :$p" | grep -q .; then
		port=$p
		break
	fi
done
[ -n "$port" ] || {
	ok 1 "find a free loopback port"
	done_testing
}
htpasswd -cbB "$srv/htpasswd" alice 'S3cret-pw' 2>/dev/null
cat >"$srv/httpd.conf" <<EOF
ServerRoot $srv
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $srv/logs/httpd.pid
ErrorLog $srv/logs/error.log
LoadModule mpm_event_module $MODS/mod_mpm_event.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule authn_core_module $MODS/mod_authn_core.so
LoadModule authn_file_module $MODS/mod_authn_file.so
LoadModule authz_user_module $MODS/mod_authz_user.so
LoadModule auth_basic_module $MODS/mod_auth_basic.so
LoadModule dav_module $MODS/mod_dav.so
LoadModule dav_fs_module $MODS/mod_dav_fs.so
LoadModule alias_module $MODS/mod_alias.so
LogFormat "%r|%>s|%B|%{Range}i" dav
CustomLog $srv/logs/access.log dav
User www-data
Group www-data
DavLockDB $srv/lock/DavLock
LimitRequestBody 0
Timeout 30
DocumentRoot $dav
<Directory $dav>
	Dav On
	Require all granted
</Directory>
# A plain web folder, no WebDAV: PROPFIND gets 405.
Alias /plain $srv/plain
<Directory $srv/plain>
	Require all granted
</Directory>
<Directory $dav/auth>
	AuthType Basic
	AuthName vdrive
	AuthUserFile $srv/htpasswd
	Require valid-user
</Directory>
EOF
SRV_PID=

# srv_start: run httpd in the foreground, one process, until it answers.
srv_start() {
	"$APACHE" -f "$srv/httpd.conf" -X >>"$srv/logs/stdout" 2>&1 &
	SRV_PID=$!
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	diag "httpd did not start: $(tail -5 "$srv/logs/error.log" "$srv/logs/stdout" 2>&1)"
	return 1
}

# srv_stop: stop it by pid (a stopped one is woken first) and wait.
srv_stop() {
	[ -n "$SRV_PID" ] || return 0
	kill -CONT "$SRV_PID" 2>/dev/null
	kill -TERM "$SRV_PID" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SRV_PID" 2>/dev/null
	wait "$SRV_PID" 2>/dev/null
	SRV_PID=
}
ODD_PID=
trap '_wd_rc=$?; srv_stop; [ -z "$ODD_PID" ] || kill "$ODD_PID" 2>/dev/null
	(exit $_wd_rc); _vd_exit' EXIT

srv_start
ok $? "httpd with mod_dav_fs answers on 127.0.0.1:$port" || done_testing
URL=http://127.0.0.1:$port
# Short times keep the test quick: metadata 1 s, dead server 3 s.
OPTS="cache=1,timeout=3"

# ---- Mount errors ---------------------------------------------------------
# mount_fails DESC SPEC PATTERN: vdrive mount fails, non-zero, saying PATTERN.
mount_fails() {
	local desc=$1 spec=$2 pat=$3 out rc m
	m=$(vd_mktemp "bad-$RANDOM")
	out=$(timeout -k 5 60 "$VDRIVE" mount "$spec" "$m" 2>&1)
	rc=$?
	if [ $rc != 0 ] && grep -qi -- "$pat" <<<"$out" && ! vd_mounted "$m"; then
		ok 0 "$desc: exit $rc, '$out'"
	else
		ok 1 "$desc (want failure matching '$pat')"
		diag "exit $rc: $out"
		vd_mounted "$m" && VD_MOUNTS+=("$m")
	fi
}
mount_fails "bad URL" "webdav:not a url" "bad URL"
mount_fails "ftp URL" "webdav:ftp://127.0.0.1/x/" "scheme"
mount_fails "unknown option" "webdav:$URL/#colour=blue" "unknown option"
mount_fails "unreachable server" "webdav:http://127.0.0.1:1/dav/#timeout=2" "cannot reach"
mount_fails "missing folder" "webdav:$URL/nothing-here/" "no such folder"
mount_fails "a folder without WebDAV" "webdav:$URL/plain/" "not a WebDAV folder"
echo data >"$dav/afile" && chown www-data: "$dav/afile"
mount_fails "a file, not a folder" "webdav:$URL/afile" "not a folder"
rm -f "$dav/afile"
mount_fails "password in the URL" "webdav:http://alice:S3cret-pw@127.0.0.1:$port/auth/" "refusing a password"
mount_fails "auth folder without credentials" "webdav:$URL/auth/#netrc=/dev/null" "authentication failed"
printf 'machine 127.0.0.1\nlogin alice\npassword wrong-pw\n' >"$srv/netrc.bad"
mount_fails "wrong password in netrc" "webdav:$URL/auth/#netrc=$srv/netrc.bad" "authentication failed"
mount_fails "missing netrc file" "webdav:$URL/auth/#netrc=$srv/none" "netrc file"

# ---- Another server's dialect ----------------------------------------------
# A minimal WebDAV responder (perl, read-only) whose multistatus differs
# from Apache's: the default namespace with no prefix, a second prefix,
# absolute hrefs, percent-encoded and entity-escaped names, a 404
# propstat, whitespace and a comment. Only PROPFIND and ranged GET.
oddport=$((port + 1))
cat >"$srv/odd.pl" <<'PERL'
use strict; use IO::Socket::INET;
my ($port) = @ARGV; my $body = "hello from the odd server\n";
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port", Listen => 8, ReuseAddr => 1) or die $!;
my $base = "http://127.0.0.1:$port/odd";
sub file { my ($href) = @_; return qq{<x:response xmlns:x="DAV:"><x:href>$href</x:href><x:propstat><x:prop><x:resourcetype/><x:getcontentlength>} . length($body) . qq{</x:getcontentlength><x:getlastmodified>Tue, 01 Dec 2026 10:00:00 GMT</x:getlastmodified><x:getetag>&quot;e1&quot;</x:getetag></x:prop><x:status>HTTP/1.1 200 OK</x:status></x:propstat></x:response>\n} }
sub dir { my ($href) = @_; return qq{<response>\n  <href>$href</href>\n  <propstat><prop><resourcetype><collection/></resourcetype><getlastmodified>Tue, 01 Dec 2026 10:00:00 GMT</getlastmodified></prop><status>HTTP/1.1 200 OK</status></propstat>\n  <propstat><prop><getcontentlength/></prop><status>HTTP/1.1 404 Not Found</status></propstat>\n</response>\n} }
while (my $c = $s->accept) {
	my ($req, %h) = (scalar <$c>);
	while (my $l = <$c>) { last if $l =~ /^\r?\n$/; $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r?$/ }
	read($c, my $in, $h{'content-length'}) if $h{'content-length'};
	my ($m, $path) = split / /, $req;
	my ($st, $type, $out) = ("404 Not Found", "text/plain", "");
	if ($m eq "PROPFIND") {
		my $d1 = ($h{depth} // "1") ne "0";
		if ($path =~ m{^/odd/?$}) {
			$out = dir("$base/") . ($d1 ? file("$base/a%20b%26c.txt") . dir("/odd/sub%C3%BC/") : "");
		} elsif ($path eq "/odd/a%20b%26c.txt") { $out = file("$base/a%20b%26c.txt") }
		elsif ($path =~ m{^/odd/sub%C3%BC/?$}) { $out = dir("/odd/sub%C3%BC/") }
		if ($out) { $st = "207 Multi-Status"; $type = "application/xml";
			$out = qq{<?xml version="1.0"?>\n<!-- odd --><multistatus xmlns="DAV:">\n$out</multistatus>\n} }
	} elsif ($m eq "GET" && $path eq "/odd/a%20b%26c.txt") {
		my ($a, $b) = (0, length($body) - 1);
		($a, $b) = ($1, $2 eq "" ? $b : $2) if ($h{range} // "") =~ /bytes=(\d+)-(\d*)/;
		$b = length($body) - 1 if $b > length($body) - 1;
		$st = $h{range} ? "206 Partial Content" : "200 OK"; $out = substr($body, $a, $b - $a + 1);
	}
	print $c "HTTP/1.1 $st\r\nContent-Type: $type\r\nContent-Length: " . length($out) . "\r\nConnection: close\r\n\r\n$out";
	close $c;
}
PERL
perl "$srv/odd.pl" "$oddport" >"$srv/logs/odd.log" 2>&1 &
ODD_PID=$!
for _ in $(seq 1 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$oddport") 2>/dev/null && break
	sleep 0.1
done
omnt=$(vd_mktemp omnt)
if vd_mount "webdav:http://127.0.0.1:$oddport/odd/" "$omnt"; then
	[ "$(ls "$omnt" | tr '\n' /)" = "a b&c.txt/subü/" ] && [ -d "$omnt/subü" ] &&
		[ "$(stat -c %s "$omnt/a b&c.txt")" = 26 ]
	ok $? "another dialect: names and types listed ($(ls "$omnt" | tr '\n' ' '))"
	[ "$(cat "$omnt/a b&c.txt")" = "hello from the odd server" ]
	ok $? "another dialect: a file reads"
	vd_umount "$omnt"
else
	ok 1 "mount the other dialect's server"
fi
kill "$ODD_PID" 2>/dev/null
wait "$ODD_PID" 2>/dev/null
ODD_PID=

# ---- The main drive -----------------------------------------------------
mnt=$(vd_mktemp mnt)
vd_mount "webdav:$URL/#$OPTS" "$mnt" -o allow_other
ok $? "mount webdav:$URL/" || done_testing

# The shared POSIX cases. What WebDAV cannot hold is skipped, with why.
declare -A NOCASE=(
	[perm_read]="WebDAV keeps no owners or modes (files 0644, folders 0755, all the mounter's; chown to another user: EPERM)"
	[perm_write_dir]="WebDAV keeps no owners or modes"
	[perm_search_dir]="WebDAV keeps no owners or modes"
	[sticky]="WebDAV keeps no modes (chmod is accepted and changes nothing)"
	[setgid_dir]="WebDAV keeps no owners or modes"
	[chmod_nonowner]="WebDAV keeps no owners"
	[chown_nonroot]="WebDAV keeps no owners"
	[suid_clear]="WebDAV keeps no owners or modes"
	[umask]="no modes, and no fifos (mkfifo: EPERM)"
	[readdir_ino]="needs symlinks (EPERM on WebDAV)"
	[hardlink]="WebDAV has no hard links (EPERM)"
	[symlink]="WebDAV has no symlinks (EPERM)"
	[mkfifo]="no fifos over HTTP (EPERM)"
	[rename_exchange]="WebDAV has no atomic exchange (EINVAL)"
	[rename_file]="a replaced file's open descriptor reads the server's new body: HTTP has no open-unlinked files"
	[unlink_open]="HTTP has no open-unlinked files"
	[xattr]="WebDAV dead properties are not mapped to xattrs (EOPNOTSUPP)"
	[timestamps]="times are the server's (utimensat succeeds, changes nothing)"
	[fallocate]="no fallocate over HTTP (EOPNOTSUPP)"
	[punch_hole]="no fallocate over HTTP (EOPNOTSUPP)"
	[sparse]="a 5 GiB sparse file would be uploaded whole: HTTP PUT has no holes"
	[tmpfile]="WebDAV has no unnamed files: O_TMPFILE gives EOPNOTSUPP by design"
)
PC=$VD_HELPERS/posix_cases
only=
for c in $("$PC" --list); do
	if [ -n "${NOCASE[$c]:-}" ]; then
		skip "webdav posix: $c" "${NOCASE[$c]}"
	else
		only=${only:+$only,}$c
	fi
done
mkdir -p "$mnt/posix"
tap_include "webdav posix" "$PC" --only "$only" "$mnt/posix"

# fsx on one file (fallocate is left out by fsx itself: EOPNOTSUPP).
ops=3000
[ "$VD_QUICK" = 1 ] && ops=1000
mkdir -p "$mnt/fsx"
run_ok "fsx seed 1 ($ops ops)" "$VD_HELPERS/fsx" -s 1 -n "$ops" "$mnt/fsx"
run_ok "fsx seed 99 (64 KiB file, I/O up to 9000 bytes)" \
	"$VD_HELPERS/fsx" -s 99 -n "$ops" -l 65536 -w 9000 "$mnt/fsx"

# ---- Round trips ----------------------------------------------------------
src=$(vd_mktemp src)
: >"$src/empty"
head -c 1048576 /dev/urandom >"$src/one"
head -c 104857600 /dev/urandom >"$src/big"
for f in empty one big; do
	cp "$src/$f" "$mnt/$f"
	ok $? "cp $f into the drive"
	cmp -s "$src/$f" "$dav/$f"
	ok $? "$f: the server's copy is the same"
	cmp -s "$src/$f" "$mnt/$f"
	ok $? "$f: reads back the same through the drive"
done

# Remount: every read now comes from the server.
vd_umount "$mnt"
ok $? "unmount"
: >"$srv/logs/access.log"
vd_mount "webdav:$URL/#$OPTS" "$mnt" -o allow_other
ok $? "mount again" || done_testing
# A 4 KiB read in the middle of 100 MiB fetches a little, not the file.
dd if="$mnt/big" of="$VD_TMP/piece" bs=4096 skip=12345 count=1 status=none
cmp -s "$VD_TMP/piece" <(dd if="$src/big" bs=4096 skip=12345 count=1 status=none)
ok $? "a 4 KiB read in the middle of big is right"
got=$(awk -F'|' '$1 ~ /^GET \/big / { b += $3; if ($4 == "-") whole++ }
	END { print b + 0, whole + 0 }' "$srv/logs/access.log")
diag "GETs of big for a 4 KiB read: bytes=${got% *}, without Range=${got#* }"
[ "${got% *}" -gt 0 ] && [ "${got% *}" -le $((2 << 20)) ] && [ "${got#* }" = 0 ]
ok $? "it fetched at most 2 MiB, all in ranged GETs (${got% *} bytes)"
for f in empty one big; do
	cmp -s "$src/$f" "$mnt/$f"
	ok $? "$f: reads back the same after a remount"
done
nget=$(grep -c '^GET /big ' "$srv/logs/access.log")
diag "GETs for reading big once: $nget"
# Up to 3 tries: anyone's drop_caches on this machine also empties it.
for try in 1 2 3; do
	cat "$mnt/one" >/dev/null
	n0=$(grep -c '^GET /one ' "$srv/logs/access.log")
	sleep 1.5 # past the metadata cache time: the open revalidates
	cmp -s "$src/one" "$mnt/one"
	n1=$(grep -c '^GET /one ' "$srv/logs/access.log")
	[ "$n0" -gt 0 ] && [ "$n1" = "$n0" ] && break
done
[ "$n0" -gt 0 ] && [ "$n1" = "$n0" ]
ok $? "reading one again after revalidation: from the page cache, no GET (try $try)"

# ---- Names -------------------------------------------------------------------
mkdir "$mnt/d" && [ -d "$dav/d" ]
ok $? "mkdir makes a folder on the server"
echo one >"$mnt/d/f" && [ "$(cat "$dav/d/f")" = one ]
ok $? "a file written in it is on the server"
mv "$mnt/d/f" "$mnt/d/g" && [ ! -e "$dav/d/f" ] && [ "$(cat "$dav/d/g")" = one ]
ok $? "rename (MOVE)"
echo two >"$mnt/h" && mv "$mnt/h" "$mnt/d/g" && [ "$(cat "$dav/d/g")" = two ] &&
	[ "$(cat "$mnt/d/g")" = two ] && [ ! -e "$dav/h" ]
ok $? "rename over an existing file replaces it"
out=$(rmdir "$mnt/d" 2>&1)
[ $? != 0 ] && grep -q "not empty" <<<"$out" && [ -f "$dav/d/g" ]
ok $? "rmdir of a non-empty folder: ENOTEMPTY, contents intact"
mkdir "$mnt/e" && echo x >"$mnt/e/x"
out=$(mv -T "$mnt/e" "$mnt/d" 2>&1)
[ $? != 0 ] && [ -f "$dav/d/g" ] && [ -f "$dav/e/x" ]
ok $? "renaming a folder over a non-empty one fails, both intact"
mv "$mnt/e" "$mnt/e2" && [ -f "$dav/e2/x" ] && [ "$(cat "$mnt/e2/x")" = x ]
ok $? "rename a folder with its contents"
rm "$mnt/d/g" && rmdir "$mnt/d" && [ ! -e "$dav/d" ]
ok $? "unlink and rmdir (DELETE)"
out=$(ln -s x "$mnt/lnk" 2>&1)
[ $? != 0 ] && grep -q "not permitted" <<<"$out"
ok $? "symlink: EPERM ($out)"
chmod 600 "$mnt/e2/x"
ok $? "chmod is accepted (and changes nothing: $(stat -c %a "$mnt/e2/x"))"
out=$(chown 1234 "$mnt/e2/x" 2>&1)
[ $? != 0 ]
ok $? "chown to another user: refused ($out)"
name=$(printf 'sp ace%%25#ü&+.txt')
echo odd >"$mnt/$name" && [ "$(cat "$dav/$name")" = odd ] &&
	ls "$mnt" | grep -qxF "$name"
ok $? "a name with space, %, #, &, + and UTF-8 round-trips"

# ls -l of 500 files: one PROPFIND Depth 1, not one request per entry.
mkdir "$dav/many" && for i in $(seq 1 500); do echo "$i" >"$dav/many/f$i"; done
chown -R www-data: "$dav/many"
sleep 1.5
r0=$(wc -l <"$srv/logs/access.log")
n=$(ls -l "$mnt/many" | grep -c '^-')
r1=$(wc -l <"$srv/logs/access.log")
diag "ls -l of 500 files: $((r1 - r0)) requests"
[ "$n" = 500 ] && [ $((r1 - r0)) -le 3 ]
ok $? "ls -l of 500 files lists them all with at most 3 requests ($((r1 - r0)))"

# A name made on the server while the drive's listing says it is free.
ls "$mnt" >/dev/null
echo server >"$dav/race" && echo server >"$dav/race2"
echo local >>"$mnt/race" && [ "$(cat "$dav/race")" = "server
local" ]
ok $? "O_CREAT of a name just made on the server opens it (If-None-Match)"
out=$( (set -C; echo local >"$mnt/race2") 2>&1)
[ $? != 0 ] && [ "$(cat "$dav/race2")" = server ]
ok $? "O_CREAT|O_EXCL of it: EEXIST, the server's file intact ($out)"

# ---- Changes made on the server ------------------------------------------
echo "first version" >"$mnt/shared"
[ "$(cat "$mnt/shared")" = "first version" ]
ok $? "read a file through the drive"
echo "SECOND version" >"$dav/shared"
echo "made on the server" >"$dav/newfile"
rm -rf "$dav/e2"
sleep 3
[ "$(cat "$mnt/shared")" = "SECOND version" ]
ok $? "a file changed on the server reads new after the cache time"
[ "$(cat "$mnt/newfile" 2>&1)" = "made on the server" ] && ls "$mnt" | grep -qx newfile
ok $? "a file made on the server is listed and read"
[ ! -e "$mnt/e2" ] && ! ls "$mnt" | grep -qx e2
ok $? "a folder removed on the server is gone"
# Same size, new bytes: only the ETag tells.
cat "$mnt/shared" >/dev/null
printf 'SECOND VERSION\n' >"$dav/shared"
touch -d '+5 seconds' "$dav/shared"
sleep 3
[ "$(cat "$mnt/shared")" = "SECOND VERSION" ]
ok $? "a same-size change on the server is seen (ETag)"

# ---- Credentials ----------------------------------------------------------
amnt=$(vd_mktemp amnt)
printf 'machine 127.0.0.1\nlogin alice\npassword S3cret-pw\n' >"$srv/netrc"
chmod 600 "$srv/netrc"
VDRIVE_WEBDAV_NETRC=$srv/netrc vd_mount "webdav:$URL/auth/#$OPTS" "$amnt"
ok $? "mount a Basic-auth folder with credentials from \$VDRIVE_WEBDAV_NETRC"
echo secret-data >"$amnt/s" && [ "$(cat "$dav/auth/s")" = secret-data ] &&
	[ "$(cat "$amnt/s")" = secret-data ]
ok $? "read and write through it"
# (the bracket keeps grep's own command line from matching)
! ps -eo args | grep -q "S3cret-p[w]" && ! "$VDRIVE" list | grep -q "S3cret-pw" &&
	! grep -qs "S3cret-pw" "$VDRIVE_RUNDIR"/drives/* "$VDRIVE_RUNDIR"/*.log
ok $? "the password is in no command line, 'vdrive list', record or log"
vd_umount "$amnt"
vd_mount "webdav:http://alice@127.0.0.1:$port/auth/#netrc=$srv/netrc" "$amnt"
ok $? "mount with the user in the URL and netrc=FILE" && vd_umount "$amnt"
VDRIVE_WEBDAV_USER=alice VDRIVE_WEBDAV_PASSWORD=S3cret-pw \
	vd_mount "webdav:$URL/auth/" "$amnt" && [ "$(cat "$amnt/s")" = secret-data ]
ok $? "credentials from \$VDRIVE_WEBDAV_USER and \$VDRIVE_WEBDAV_PASSWORD"
vd_umount "$amnt"
VDRIVE_WEBDAV_USER=alice VDRIVE_WEBDAV_PASSWORD=nope \
	mount_fails "a wrong \$VDRIVE_WEBDAV_PASSWORD" "webdav:$URL/auth/" "authentication failed"

# ---- A dead server --------------------------------------------------------
kill -STOP "$SRV_PID"
sleep 1.5 # past the metadata cache time
t0=$(date +%s)
out=$(timeout 30 stat "$mnt/one" 2>&1)
rc=$?
t=$(($(date +%s) - t0))
[ $rc != 0 ] && [ $rc != 124 ] && grep -q "Input/output error" <<<"$out" && [ $t -le 6 ]
ok $? "a stopped server: stat gives EIO in ${t} s (timeout 3 s), no hang ($out)"
t0=$(date +%s)
out=$(timeout 30 cat "$mnt/newfile2" 2>&1)
rc=$?
t=$(($(date +%s) - t0))
[ $rc != 0 ] && [ $rc != 124 ] && [ $t -le 6 ]
ok $? "a stopped server: open gives an error in ${t} s ($out)"
kill -CONT "$SRV_PID"
sleep 1.2 # a timeout makes the next second's requests fail at once
cmp -s "$src/one" "$mnt/one"
ok $? "the server back: the drive works again"
srv_stop
sleep 1.5
out=$(timeout 30 ls "$mnt/posix/nothing" 2>&1)
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && grep -q "Input/output error" <<<"$out"
ok $? "a killed server: EIO at once ($out)"
srv_start
ok $? "httpd restarted"
cmp -s "$src/one" "$mnt/one" && echo after >"$mnt/after" && [ "$(cat "$dav/after")" = after ]
ok $? "the drive recovers by itself"

vd_umount "$mnt"
ok $? "unmount"
done_testing
