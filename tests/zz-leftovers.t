#!/bin/bash
# The suite must leave no mount, drive process or temporary folder behind.
set -u
B=${VDRIVE_BASELINE:-/tmp/vdrive-suite-baseline}
echo "1..3"
[ -r "$B" ] || : >"$B"
now() {
	awk '$0 ~ / - fuse/ { print "mount " $5 }' /proc/self/mountinfo
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		st=$(sed 's/.*) //' "$p/stat" 2>/dev/null | cut -c1)
		[ "$st" = Z ] && continue
		case "$exe" in */vdrive | */vdrived) echo "proc ${p#/proc/} $exe" ;; esac
	done
	for d in /tmp/vdrive-test-*; do [ -e "$d" ] && echo "tmp $d"; done
}
# Background drives may still be exiting: give them a moment.
for _ in 1 2 3 4 5 6 7 8 9 10; do
	left=$(now | sort | comm -13 "$B" -)
	[ -z "$left" ] && break
	sleep 0.5
done
for kind in mount proc tmp; do
	items=$(grep "^$kind " <<<"$left")
	case $kind in mount) what="FUSE mounts" ;; proc) what="drive processes" ;; tmp) what="temporary folders" ;; esac
	i=$((${i:-0} + 1))
	if [ -z "$items" ]; then
		echo "ok $i - no $what left behind"
	else
		echo "not ok $i - $what left behind"
		sed 's/^/# /' <<<"$items" >&2
	fi
done
rm -f "$B"
