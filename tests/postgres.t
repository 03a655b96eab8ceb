#!/bin/bash
# postgres: against Debian's PostgreSQL server, started here: initdb in
# the temp folder, run as `nobody` (postgres refuses root) on a loopback
# port and a unix socket in the temp folder, stopped by pid at the end
# (even on failure). Passwords only in a PGPASSFILE.
# Cases: every bad input with its message; init, mount, the shared POSIX
# cases and fsx; two mounts of one store: a change seen within 1 s,
# racing creates and renames with one winner; no password in ps, the
# mount table or `vdrive list`; a server restart in a write loop.
# VDRIVE_QUICK=1: shorter fsx and loops.
. "$(dirname "$0")/lib.sh"
vd_init postgres
vd_need_root "postgres"

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ] || ! command -v psql >/dev/null; then
	skip "postgres" "Debian's postgresql package is not installed (scripts/deps.sh)"
	done_testing
fi
if ! vd_have_source postgres; then
	skip "postgres" "vdrive was built without postgres: (libpq-dev)"
	done_testing
fi

PG=$VD_TMP/pg
PGDATA=$PG/data
SOCK=$PG/sock
PGPID=
mkdir -p "$PGDATA" "$SOCK" && chown nobody "$PGDATA" "$SOCK" && chmod 755 "$PG"
printf 'secret-pw-%s\n' "$RANDOM$RANDOM" >"$PG/pwfile"
PW=$(cat "$PG/pwfile")
chmod 644 "$PG/pwfile"
printf '*:*:*:vdrive:%s\n' "$PW" >"$PG/pgpass"
chmod 600 "$PG/pgpass"
export PGPASSFILE=$PG/pgpass

# The server goes before the temp folder does, whatever happens.
pg_stop() {
	if [ -n "$PGPID" ] && kill -0 "$PGPID" 2>/dev/null; then
		runuser -u nobody -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate \
			-w stop >/dev/null 2>&1 || kill -KILL "$PGPID" 2>/dev/null
	fi
	PGPID=
}
CTS=() # "container" pids, killed (by pid) on exit: their drives end too
trap 'rc=$?; for c in "${CTS[@]}"; do kill -KILL "$c" 2>/dev/null; done
	_vd_cleanup >/dev/null 2>&1; pg_stop; (exit $rc); _vd_exit' EXIT

# pg_start: on $PORT; fsync=off since a test server need not survive the
# machine (commits still reach the OS before they are acknowledged, which
# a server crash or restart cannot lose).
pg_start() {
	runuser -u nobody -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" \
		-o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off" \
		-w -t 30 start >/dev/null 2>&1 || return 1
	PGPID=$(head -1 "$PGDATA/postmaster.pid")
}

if ! runuser -u nobody -- "$PGBIN/initdb" -D "$PGDATA" -U vdrive -E UTF8 \
	--auth=scram-sha-256 --pwfile="$PG/pwfile" >"$PG/initdb.log" 2>&1; then
	diag "$(cat "$PG/initdb.log")"
	ok 1 "initdb"
	done_testing
fi
for try in 1 2 3 4 5; do
	PORT=$((20000 + RANDOM % 30000))
	pg_start && break
done
ok $? "PostgreSQL started on 127.0.0.1:$PORT (pid $PGPID)" || done_testing

CI="host=$SOCK port=$PORT user=vdrive"
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$CI dbname=$1" -c "$2"; }
sql postgres "CREATE DATABASE vd" && sql postgres "CREATE DATABASE other" &&
	sql postgres "CREATE DATABASE newer" && sql other "CREATE TABLE t(x int); INSERT INTO t VALUES (42)"
ok $? "databases made"

# ---- bad input: each error names its cause, exits non-zero, mounts nothing
M=$(vd_mktemp m1)
M2=$(vd_mktemp m2)
bad() { # bad DESC SPEC PATTERN
	local out rc
	out=$(timeout 60 "$VDRIVE" mount "$2" "$M" 2>&1)
	rc=$?
	[ $rc != 0 ] && [ $rc != 124 ] && grep -q "$3" <<<"$out" && ! vd_mounted "$M"
	ok $? "mount of $1 fails: ${out:0:160}"
}
bad "a missing database" "postgres:$CI dbname=nosuch" "database is missing"
free=$((PORT + 1))
bad "an unreachable server" "postgres:host=127.0.0.1 port=$free user=vdrive dbname=vd connect_timeout=2" \
	"server is unreachable"
bad "a database that is not a vdrive store" "postgres:$CI dbname=other" "not a vdrive store"
[ "$(sql other 'SELECT x FROM t')" = 42 ]
ok $? "that database is left as it was"
bad "an empty database before init" "postgres:$CI dbname=vd" "not a vdrive store"
out=$(PGPASSFILE=/dev/null "$VDRIVE" mount "postgres:$CI dbname=vd" "$M" 2>&1)
[ $? != 0 ] && grep -q "credentials\|password" <<<"$out" && ! vd_mounted "$M"
ok $? "mount without a password fails: ${out:0:160}"

"$VDRIVE" init "postgres:$CI dbname=newer" >/dev/null && sql newer "UPDATE meta SET value='99' WHERE key='version'"
bad "a store of a newer format" "postgres:$CI dbname=newer" "newer vdrive"
out=$("$VDRIVE" init "postgres:$CI dbname=other" 2>&1)
[ $? != 0 ] && [ "$(sql other 'SELECT x FROM t')" = 42 ]
ok $? "init refuses a database with a table of another kind: ${out:0:120}"
out=$("$VDRIVE" init "postgres:$CI dbname=nosuch" 2>&1)
[ $? != 0 ] && grep -q "database is missing" <<<"$out"
ok $? "init of a missing database fails: ${out:0:120}"

# ---- init, mount, POSIX cases, fsx
out=$("$VDRIVE" init "postgres:$CI dbname=vd" 2>&1)
ok $? "vdrive init: $out"
out=$("$VDRIVE" init "postgres:$CI dbname=vd" 2>&1)
[ $? != 0 ] && grep -q "already a vdrive store" <<<"$out"
ok $? "a second init refuses: $out"

SPEC="postgres:$CI dbname=vd vdrive_timeout=3"
vd_mount "$SPEC" "$M" -o allow_other
ok $? "mount $SPEC" || done_testing
vd_mount "$SPEC" "$M2" -o allow_other
ok $? "a second mount of the same store"

mkdir "$M/posix" && chmod 777 "$M/posix"
tap_include "postgres:" "$VD_HELPERS/posix_cases" "$M/posix"
ops=3000
[ "$VD_QUICK" = 1 ] && ops=1000
mkdir "$M/fsx"
run_ok "fsx on postgres: seed 1 ($ops ops)" "$VD_HELPERS/fsx" -s 1 -n "$ops" "$M/fsx"
run_ok "fsx on postgres: seed 99 (64 KiB file, I/O up to 9000 bytes)" \
	"$VD_HELPERS/fsx" -s 99 -n "$ops" -l 65536 -w 9000 "$M/fsx"

# ---- two mounts: what one changes, the other sees within a second
# wait_for SECS CMD...: true once CMD succeeds; prints the seconds taken.
wait_for() {
	local limit=$1 t0 t
	shift
	t0=$(date +%s%N)
	while :; do
		"$@" 2>/dev/null && break
		t=$((($(date +%s%N) - t0) / 1000000))
		[ $t -gt $((limit * 1000)) ] && return 1
		sleep 0.02
	done
	echo "$((($(date +%s%N) - t0) / 1000000)) ms"
}
echo v1 >"$M/shared"
[ "$(cat "$M2/shared")" = v1 ]
ok $? "a file written in one mount reads the same in the other"
ls "$M2" >/dev/null
stat "$M2/new" >/dev/null 2>&1 # a cached negative entry
echo v2-longer >"$M/shared"
t=$(wait_for 1 grep -qx v2-longer "$M2/shared")
ok $? "a rewrite is seen in the other mount within 1 s (${t:-not seen})"
touch "$M/new"
t=$(wait_for 1 test -e "$M2/new")
ok $? "a new name is seen in the other mount within 1 s (${t:-not seen})"
t=$(wait_for 1 sh -c "ls '$M2' | grep -qx new")
ok $? "and in its cached listing within 1 s (${t:-not seen})"
rm "$M/new"
t=$(wait_for 1 test ! -e "$M2/new")
ok $? "a removal is seen within 1 s (${t:-not seen})"
chmod 600 "$M/shared"
t=$(wait_for 1 sh -c "[ \$(stat -c %a '$M2/shared') = 600 ]")
ok $? "a chmod is seen within 1 s (${t:-not seen})"

# Racing creates and renames of one name from both mounts: one winner.
rounds=20
[ "$VD_QUICK" = 1 ] && rounds=8
mkdir "$M/race"
stat "$M2/race" >/dev/null
bad_rounds=0
for i in $(seq $rounds); do
	mkdir "$M/race/d$i" 2>"$VD_TMP/e1" &
	p1=$!
	mkdir "$M2/race/d$i" 2>"$VD_TMP/e2" &
	p2=$!
	wait $p1
	r1=$?
	wait $p2
	r2=$?
	if [ $((r1 + r2)) != 1 ] || ! grep -q "File exists" "$VD_TMP/e1" "$VD_TMP/e2"; then
		bad_rounds=$((bad_rounds + 1))
		diag "round $i: mkdir exits $r1 $r2: $(cat "$VD_TMP/e1" "$VD_TMP/e2")"
	fi
done
ok $bad_rounds "racing mkdirs of one name ($rounds rounds): one wins, the other gets EEXIST"
[ "$(ls "$M/race" | wc -l)" = $rounds ]
ok $? "and the folder holds each name once ($(ls "$M/race" | wc -l) names)"
bad_rounds=0
for i in $(seq $rounds); do
	echo "$i" >"$M/race/f$i"
	t=$(wait_for 1 test -e "$M2/race/f$i") || true
	mv "$M/race/f$i" "$M/race/a$i" 2>"$VD_TMP/e1" &
	p1=$!
	mv "$M2/race/f$i" "$M2/race/b$i" 2>"$VD_TMP/e2" &
	p2=$!
	wait $p1
	r1=$?
	wait $p2
	r2=$?
	have=$(ls "$M/race" | grep -c "^[ab]$i\$")
	if [ $((r1 + r2)) != 1 ] || [ "$have" != 1 ]; then
		bad_rounds=$((bad_rounds + 1))
		diag "round $i: mv exits $r1 $r2, names $have: $(cat "$VD_TMP/e1" "$VD_TMP/e2")"
	fi
done
ok $bad_rounds "racing renames of one file ($rounds rounds): one wins, the other gets ENOENT"
fsck=$(sql vd "SELECT count(*) FROM inodes i WHERE i.mode & 61440 <> 16384 AND i.ino <> 1
	AND i.nlink <> (SELECT count(*) FROM dentries d WHERE d.ino = i.ino)")
ok "$fsck" "every file's link count matches its names in the store ($fsck wrong)"

# Two "containers" (processes alone in private mount namespaces, as in
# containers.t), each with the drive mounted inside: coherent too.
new_ct() {
	unshare -m --propagation private sh -c \
		'mount -t tmpfs none /mnt && exec sleep 600' &
	CT=$!
	disown
	CTS+=($CT)
	for _ in $(seq 50); do
		grep -q " /mnt .* tmpfs" /proc/$CT/mountinfo 2>/dev/null && break
		sleep 0.1
	done
}
if command -v unshare >/dev/null && command -v nsenter >/dev/null; then
	new_ct
	CA=$CT
	new_ct
	CB=$CT
	"$VDRIVE" mount "$SPEC" /mnt/pg --container "$CA" --name pga >/dev/null 2>&1 &&
		"$VDRIVE" mount "$SPEC" /mnt/pg --container "$CB" --name pgb >/dev/null 2>&1
	ok $? "the store mounted inside two containers"
	for n in pga pgb; do
		p=$(sed -n 's/^pid=//p' "$VDRIVE_RUNDIR/drives/$n" 2>/dev/null)
		[ -n "$p" ] && VD_PIDS+=("$p")
	done
	nsenter -t "$CB" -m cat /mnt/pg/shared >/dev/null 2>&1
	nsenter -t "$CA" -m sh -c 'echo from-a > /mnt/pg/shared' 2>/dev/null
	t=$(wait_for 1 nsenter -t "$CB" -m grep -qx from-a /mnt/pg/shared)
	ok $? "a write in one container is seen in the other within 1 s (${t:-not seen})"
	t=$(wait_for 1 grep -qx from-a "$M/shared")
	ok $? "and on the host's mount (${t:-not seen})"
	kill -KILL "$CA" "$CB" 2>/dev/null
	CTS=()
else
	skip "two containers" "needs unshare and nsenter (util-linux)"
fi

# ---- passwords: never in ps, the mount table or `vdrive list`
shows_pw() { ps -eo args | grep -F -- "$PW" | grep -v grep -q ||
	grep -qF -- "$PW" /proc/mounts || "$VDRIVE" list 2>&1 | grep -qF -- "$PW"; }
! shows_pw
ok $? "with PGPASSFILE: the password shows nowhere"
M3=$(vd_mktemp m3)
PGPASSFILE=/dev/null
vd_mount "postgres:$CI dbname=vd password=$PW" "$M3"
ok $? "mount with password= in the conninfo (no PGPASSFILE)"
PGPASSFILE=$PG/pgpass
! shows_pw
ok $? "that password shows nowhere (ps, mount table, vdrive list)"
"$VDRIVE" list | grep "$M3" | grep -q "dbname=vd"
ok $? "vdrive list still names the source"
vd_umount "$M3"
ok $? "unmount it"

# ---- a server restart in the middle of a write loop
mkdir "$M/loop"
writer() { # one file per step, fsynced; acknowledged steps in acked
	local i=0 end=$(($(date +%s) + $1))
	while [ "$(date +%s)" -lt "$end" ]; do
		i=$((i + 1))
		if timeout 20 dd if=/dev/zero of="$M/loop/f$i" bs=4096 count=3 \
			conv=fsync status=none 2>/dev/null; then
			echo "$i" >>"$VD_TMP/acked"
		elif [ $? = 124 ]; then
			echo "hang at $i" >>"$VD_TMP/hung"
		else
			echo "$i" >>"$VD_TMP/failed"
		fi
	done
}
: >"$VD_TMP/acked"
writer 12 &
wpid=$!
sleep 3
before=$(wc -l <"$VD_TMP/acked")
runuser -u nobody -- "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1
sleep 2
pg_start
ok $? "server stopped (immediate) and started again mid-loop (new pid $PGPID)"
wait $wpid
after=$(wc -l <"$VD_TMP/acked")
failed=$(cat "$VD_TMP/failed" 2>/dev/null | wc -l)
[ ! -e "$VD_TMP/hung" ]
ok $? "no operation hung during the restart ($failed failed with an error, $after acknowledged)"
last=$(tail -1 "$VD_TMP/acked")
[ "$after" -gt "$before" ] && [ -n "$last" ] && [ "$last" -gt "$(tail -1 "$VD_TMP/failed" 2>/dev/null || echo 0)" ]
ok $? "the mount reconnected by itself: writes succeed again after the restart"
lost=0
while read -r i; do
	[ "$(stat -c %s "$M2/loop/f$i" 2>/dev/null)" = 12288 ] &&
		cmp -s -n 12288 "$M2/loop/f$i" /dev/zero ||
		{ lost=$((lost + 1)) && diag "f$i: $(stat -c %s "$M2/loop/f$i" 2>&1)"; }
done <"$VD_TMP/acked"
ok $lost "every fsynced file is intact, read through the other mount ($lost of $after lost)"
echo after >"$M2/after-restart"
ok $? "the other mount writes again too"

# ---- a server that stops answering: EIO after vdrive_timeout, no hang
procs="$PGPID $(ps -o pid= --ppid "$PGPID" | tr '\n' ' ')"
kill -STOP $procs
t0=$(date +%s%N)
out=$(timeout 30 stat "$M/frozen-$RANDOM" 2>&1)
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kill -CONT $procs
[ $rc != 124 ] && [ $rc != 0 ] && grep -q "Input/output error" <<<"$out" && [ $ms -lt 20000 ]
ok $? "with the server frozen, a call fails with EIO after the 3 s timeout (took $ms ms: ${out:0:80})"
t=$(wait_for 15 touch "$M/after-freeze")
ok $? "and once it answers again the mount works again (${t:-never})"

vd_umount "$M2"
ok $? "unmount the second mount"
vd_umount "$M"
ok $? "unmount the first mount"
done_testing
