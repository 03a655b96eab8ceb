#!/bin/bash
# Records what exists before the suite (FUSE and fusectl mounts, drive processes,
# test folders) so that zz-leftovers.t can tell what the suite left.
set -u
B=${VDRIVE_BASELINE:-/tmp/vdrive-suite-baseline}
{
	awk '$0 ~ / - fuse/ { print "mount " $5 }' /proc/self/mountinfo
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		case "$exe" in */vdrive | */vdrived) echo "proc ${p#/proc/} $exe" ;; esac
	done
	for d in /tmp/vdrive-test-*; do [ -e "$d" ] && echo "tmp $d"; done
} | sort >"$B"
echo "1..1"
echo "ok 1 - baseline recorded in $B ($(wc -l <"$B") items)"
