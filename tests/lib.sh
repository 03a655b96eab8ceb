# tests/lib.sh - shared helpers for the .t scripts that mount real drives.
# Source it from a bash .t script:
#
#   . "$(dirname "$0")/lib.sh"
#   vd_init NAME            # temp folder, private VDRIVE_RUNDIR, cleanup trap
#   ok $? "description"     # TAP lines, numbered for you
#   done_testing            # cleans up, checks nothing is left mounted,
#                           # prints the plan and exits 0 or 1
#
# Everything it mounts (drives, tmpfs, loop ext4) is unmounted on any exit,
# drive processes it started are killed by pid, temp folders are removed.
# A mount left behind fails the script.
#
# Environment: VDRIVE_BUILD (default <repo>/build) holds vdrive and
# tests/<helper>; VDRIVE_QUICK=1 asks scripts for a shorter run;
# VDRIVE_STRICT=1 (`make check` sets it) makes a part the build should
# have made (a source, vdrived, a helper) a failure when it is missing,
# not a skip.

VD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VDRIVE_BUILD=${VDRIVE_BUILD:-$VD_TOP/build}
VDRIVE=$VDRIVE_BUILD/vdrive
VD_HELPERS=$VDRIVE_BUILD/tests
VD_QUICK=${VDRIVE_QUICK:-0}
VD_STRICT=${VDRIVE_STRICT:-0}
VD_TMP=
VD_MOUNTS=()
VD_PIDS=()
_vd_n=0
_vd_fails=0
_vd_done=0

# ok STATUS DESCRIPTION: a TAP line, passing when STATUS is 0.
ok() {
	local st=$1
	shift
	_vd_n=$((_vd_n + 1))
	if [ "$st" = 0 ]; then
		echo "ok $_vd_n - $*"
	else
		echo "not ok $_vd_n - $*"
		_vd_fails=$((_vd_fails + 1))
	fi
	return "$st"
}

# skip DESCRIPTION REASON: a TAP skip; REASON must say why.
skip() {
	_vd_n=$((_vd_n + 1))
	echo "ok $_vd_n - $1 # SKIP $2"
}

# skip_all REASON: skip the whole script (plan 1..0), before any test ran.
skip_all() {
	echo "1..0 # SKIP $1"
	_vd_done=1
	exit 0
}

# missing DESCRIPTION REASON: a part of the build is not there: a skip,
# or under VDRIVE_STRICT=1 a failure (the build was meant to make it).
missing() {
	if [ "$VD_STRICT" = 1 ]; then
		ok 1 "$1: $2 (VDRIVE_STRICT=1: the build must make it)"
	else
		skip "$1" "$2"
	fi
	return 0
}

# missing_all REASON: skip_all for a missing part of the build; under
# VDRIVE_STRICT=1 one failing test instead.
missing_all() {
	if [ "$VD_STRICT" = 1 ]; then
		echo "1..1"
		echo "not ok 1 - $1 (VDRIVE_STRICT=1: the build must make it)"
		_vd_done=1
		exit 1
	fi
	skip_all "$1"
}

# diag TEXT...: comment lines, each prefixed with "# ".
diag() {
	printf '%s\n' "$*" | sed 's/^/# /'
}

# run_ok DESCRIPTION CMD...: one test line for a command, with its output
# as diagnostics when it fails or times out (limit: VD_TIMEOUT, 300 s);
# its "# note" lines are shown either way.
run_ok() {
	local desc=$1 out rc
	shift
	out=$(timeout -k 10 "${VD_TIMEOUT:-300}" "$@" 2>&1)
	rc=$?
	[ $rc = 124 ] && out="$out
(timed out after ${VD_TIMEOUT:-300} s)"
	if ok $rc "$desc"; then
		grep '^# note' <<<"$out"
	else
		diag "$(_vd_clip <<<"$out")"
	fi
	return 0
}

# _vd_clip: stdin, cut to its first 20 and last 30 lines when longer.
_vd_clip() {
	awk '{ l[NR] = $0 } END {
		for (i = 1; i <= NR; i++)
			if (NR <= 50 || i <= 20 || i > NR - 30) print l[i]
			else if (i == 21) print "... (" NR - 50 " lines cut)"
	}'
}

# tap_include LABEL CMD...: run a command that prints TAP and fold its
# lines into ours as "LABEL: name". A wrong count, a crash or a timeout
# of the command is one more failing line. A known bug, listed as
# VD_TODO["LABEL: name"]="reason", is marked "# TODO reason": prove shows
# it (and says when it starts passing) without failing the run.
declare -A VD_TODO
tap_include() {
	local label=$1 out line plan="" planline="" seen=0 bad=0 rc re todo
	# Bytes, not characters: a line that is not UTF-8 still matches.
	local LC_ALL=C
	shift
	out=$(mktemp "$VD_TMP/tap.XXXXXX")
	timeout -k 10 "${VD_TIMEOUT:-300}" "$@" >"$out" 2>&1
	rc=$?
	re='^(not )?ok [0-9]+( -)? ?(.*)$'
	while IFS= read -r line; do
		if [[ $line =~ ^1\.\.([0-9]+) ]]; then
			plan=${BASH_REMATCH[1]}
			planline=$line
			[[ $line == *"# SKIP"* ]] && skip "$label" "${line#*# SKIP }"
		elif [[ $line =~ $re ]]; then
			seen=$((seen + 1))
			todo=${VD_TODO["$label: ${BASH_REMATCH[3]}"]:-}
			[ -n "${BASH_REMATCH[1]}" ] && bad=$((bad + 1))
			if [ -n "$todo" ]; then
				_vd_n=$((_vd_n + 1))
				echo "${BASH_REMATCH[1]}ok $_vd_n - $label: ${BASH_REMATCH[3]} # TODO $todo"
			elif [ -n "${BASH_REMATCH[1]}" ]; then
				ok 1 "$label: ${BASH_REMATCH[3]}"
			else
				_vd_n=$((_vd_n + 1))
				echo "ok $_vd_n - $label: ${BASH_REMATCH[3]}"
			fi
		elif [[ $line == "#"* ]]; then
			echo "$line"
		else
			echo "# $line"
		fi
	done <"$out"
	rm -f "$out"
	if [ "$rc" = 124 ]; then
		ok 1 "$label: finished within ${VD_TIMEOUT:-300} s"
	elif [ "$plan" = 0 ] && ! grep -q '^1\.\.0 # SKIP' <<<"$planline"; then
		ok 1 "$label: ran no case and gave no reason (plan 1..0)"
	elif [ "$plan" != "$seen" ]; then
		ok 1 "$label: ran all planned cases (plan '$plan', ran $seen, exit $rc)"
	elif [ "$rc" != 0 ] && [ "$bad" = 0 ]; then
		ok 1 "$label: exit status $rc with no failing case"
	fi
}

# vd_init NAME: make the temp folder (world-searchable, so other uids can
# reach mounts under it), a private VDRIVE_RUNDIR and body cache folder
# (VDRIVE_CACHE_DIR, docs/cache.md), and the cleanup trap.
vd_init() {
	VD_TMP=$(mktemp -d "/tmp/vdrive-test-$1.XXXXXX") || exit 1
	chmod 755 "$VD_TMP"
	export VDRIVE_RUNDIR="$VD_TMP/run"
	export VDRIVE_CACHE_DIR="$VD_TMP/cache"
	trap _vd_exit EXIT
	trap 'exit 130' INT TERM
}

# vd_need_root WHAT: end the script with one skip unless we are root
# (mounting tmpfs, loop ext4 and drives with allow_other needs it).
vd_need_root() {
	if [ "$(id -u)" != 0 ]; then
		skip "$1" "needs root (mounts tmpfs, loop ext4, drives with allow_other)"
		done_testing
	fi
}

# vd_mktemp NAME: a fresh folder $VD_TMP/NAME, printed.
vd_mktemp() {
	mkdir -p "$VD_TMP/$1" && chmod 755 "$VD_TMP/$1" && echo "$VD_TMP/$1"
}

# vd_mounted PATH: true when something is mounted exactly at PATH.
vd_mounted() {
	awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# vd_scratch KIND DIR: mount a fresh file system of KIND (tmpfs, or ext4
# on a loop image kept in memory) at DIR, tracked for cleanup. Never the
# root file system: it is slow and shared.
vd_scratch() {
	local kind=$1 dir=$2
	mkdir -p "$dir" || return 1
	case $kind in
	tmpfs)
		mount -t tmpfs -o size=4g,mode=755 tmpfs "$dir" || return 1
		VD_MOUNTS+=("$dir")
		;;
	ext4)
		local img="$dir.img"
		mkdir -p "$img" &&
			mount -t tmpfs -o size=3g,mode=755 tmpfs "$img" || return 1
		VD_MOUNTS+=("$img")
		truncate -s 2G "$img/fs" &&
			mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 \
				"$img/fs" &&
			mount -o loop "$img/fs" "$dir" || return 1
		VD_MOUNTS+=("$dir")
		chmod 755 "$dir"
		;;
	*)
		return 1
		;;
	esac
}

# vd_have_source KIND: true when `vdrive help` lists KIND: as a source.
vd_have_source() {
	[ -x "$VDRIVE" ] && "$VDRIVE" help 2>&1 | grep -q "^ *$1:"
}

# vd_variant WHAT VARIANT BACK DB: for the loops that run WHAT on each
# "KIND|OPTIONS" variant: set $kind, $opt, $label ("KIND: -o OPTIONS")
# and $spec, a drive of that kind (dir: on folder BACK, made here;
# sqlite: on file DB). Returns 1, after a skip line, when KIND is not built.
vd_variant() {
	kind=${2%%|*}
	opt=${2#*|}
	label="$kind:${opt:+ -o $opt}"
	if ! vd_have_source "$kind"; then
		missing "$1 on $label" "source not built ('vdrive help' does not list $kind:)"
		return 1
	fi
	case $kind in
	mem) spec=mem: ;;
	dir) mkdir -p "$3" && spec=dir:$3 ;;
	sqlite) spec=sqlite:$4 ;;
	esac
}

# vd_acl_script DIR: the POSIX ACL steps that mem_acl.t and sqlite.t run
# on tmpfs and on a drive (umasks, default ACLs inherited by files,
# folders, fifos and links, chmod under an ACL, setfacl -m/-x/-b, cp -a),
# then every mode and ACL in name order, to compare with diff.
vd_acl_script() (
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

# vd_mount SOURCE MNT [ARGS...]: `vdrive mount SOURCE MNT ARGS`, tracked
# for cleanup with the drive's pid. Its output goes to diag on failure.
vd_mount() {
	local src=$1 mnt=$2 out rc pid f
	shift 2
	mkdir -p "$mnt" || return 1
	out=$(timeout -k 5 60 "$VDRIVE" mount "$src" "$mnt" "$@" 2>&1)
	rc=$?
	if [ $rc != 0 ]; then
		diag "vdrive mount $src $mnt $*: exit $rc: $out"
		vd_mounted "$mnt" && VD_MOUNTS+=("$mnt")
		return $rc
	fi
	VD_MOUNTS+=("$mnt")
	for f in "$VDRIVE_RUNDIR"/drives/*; do
		[ -f "$f" ] && grep -qx "mountpoint=$(realpath "$mnt")" "$f" || continue
		pid=$(sed -n 's/^pid=//p' "$f")
		[ -n "$pid" ] && VD_PIDS+=("$pid")
	done
	return 0
}

# vd_umount MNT: take down one mount: `vdrive unmount` for drives, then
# umount, then umount -l. Returns 0 when nothing is mounted there after.
vd_umount() {
	local mnt=$1
	if [ -x "$VDRIVE" ] && vd_mounted "$mnt"; then
		timeout -k 5 30 "$VDRIVE" unmount "$mnt" >/dev/null 2>&1
	fi
	vd_mounted "$mnt" && timeout -k 5 30 umount "$mnt" 2>/dev/null
	vd_mounted "$mnt" && umount -l "$mnt" 2>/dev/null
	! vd_mounted "$mnt"
}

# _vd_alive PID: true while PID runs. An exited process that no one has
# reaped yet (a zombie: PID 1 may reap late) counts as gone.
_vd_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st%% *}
	[ -n "$st" ] && [ "$st" != Z ]
}

# Unmount everything we mounted (newest first), kill drive processes we
# started, list what is still mounted under VD_TMP. Returns 1 if any.
_vd_cleanup() {
	local i pid left=0 m
	for ((i = ${#VD_MOUNTS[@]} - 1; i >= 0; i--)); do
		vd_umount "${VD_MOUNTS[i]}"
	done
	VD_MOUNTS=()
	for pid in "${VD_PIDS[@]}"; do
		for ((i = 0; i < 50; i++)); do
			_vd_alive "$pid" || break
			sleep 0.1
		done
		_vd_alive "$pid" || continue
		kill -TERM "$pid" 2>/dev/null
		sleep 0.5
		_vd_alive "$pid" && kill -KILL "$pid" 2>/dev/null
		diag "drive process $pid was still running 5 s after unmount"
		left=1
	done
	VD_PIDS=()
	[ -n "$VD_TMP" ] || return $left
	while read -r m; do
		diag "left mounted: $m"
		umount -l "$m" 2>/dev/null
		left=1
	done < <(awk -v t="$VD_TMP/" 'index($5, t) == 1 { print $5 }' \
		/proc/self/mountinfo | sort -r)
	return $left
}

# done_testing: clean up as a test of its own, print the plan, exit.
done_testing() {
	_vd_cleanup
	ok $? "cleanup: nothing left mounted, no drive process left"
	_vd_done=1
	echo "1..$_vd_n"
	[ $_vd_fails = 0 ] && exit 0
	exit 1
}

# EXIT trap: on an early exit, clean up and make sure the status says so.
_vd_exit() {
	local rc=$?
	if [ $_vd_done = 0 ]; then
		_vd_cleanup || rc=1
		echo "# exited before done_testing"
		[ $rc = 0 ] && rc=1
	fi
	[ -n "$VD_TMP" ] && ! _vd_still_mounted && rm -rf "$VD_TMP"
	exit $rc
}

# True when anything is still mounted under VD_TMP (then keep the files).
_vd_still_mounted() {
	awk -v t="$VD_TMP/" 'index($5, t) == 1 { f = 1 } END { exit !f }' \
		/proc/self/mountinfo
}
