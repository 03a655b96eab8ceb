#!/bin/bash
# mtstress (tests/helpers/mtstress.c): 16 threads creating, writing,
# reading back, renaming and removing files and folders in private and
# shared folders at once, then the tree checked against what the threads
# think exists. On native ext4 (the reference) and every built-in source;
# mem: also without kernel caching, so every lookup reaches the source.
# Two fsx runs share the drive meanwhile. On dir: and sqlite: one more
# tree must read the same after a remount. VDRIVE_QUICK=1: shorter.
. "$(dirname "$0")/lib.sh"
vd_init stress
vd_need_root "stress"
MT=$VD_HELPERS/mtstress
FSX=$VD_HELPERS/fsx

if [ ! -x "$MT" ] || [ ! -x "$FSX" ]; then
	missing "stress" "$MT or $FSX not built (make)"
	done_testing
fi
ops=3000
seeds="1 2"
if [ "$VD_QUICK" = 1 ]; then
	ops=1000
	seeds=1
fi

# stress_on LABEL DIR: mtstress per seed, then mtstress beside two fsx.
stress_on() {
	local label=$1 dir=$2 s p1 p2 r1 r2 dropper i
	for s in $seeds; do
		mkdir -p "$dir/mt$s"
		run_ok "mtstress on $label 16 threads x $ops ops, seed $s" \
			"$MT" -t 16 -n "$ops" -s "$s" "$dir/mt$s"
		rmdir "$dir/mt$s" 2>/dev/null
	done
	mkdir -p "$dir/mix" "$dir/fsx1" "$dir/fsx2"
	timeout -k 10 300 "$FSX" -s 11 -n 3000 "$dir/fsx1" >"$VD_TMP/fsx1.out" 2>&1 &
	p1=$!
	timeout -k 10 300 "$FSX" -s 12 -n 3000 -l 65536 -w 5000 "$dir/fsx2" >"$VD_TMP/fsx2.out" 2>&1 &
	p2=$!
	dropper=
	if [ "$drop" = 1 ]; then
		(for ((i = 0; i < 600; i++)); do
			echo 2 >/proc/sys/vm/drop_caches
			sleep 0.2
		done) &
		dropper=$!
	fi
	run_ok "mtstress on $label 8 threads beside two fsx${dropper:+, kernel dropping its dentries}" \
		"$MT" -t 8 -n "$ops" -s 3 "$dir/mix"
	wait $p1
	r1=$?
	wait $p2
	r2=$?
	[ -n "$dropper" ] && kill "$dropper" && wait "$dropper" 2>/dev/null
	ok $r1 "fsx $label seed 11 beside mtstress" || diag "$(tail -n 30 "$VD_TMP/fsx1.out")"
	ok $r2 "fsx $label seed 12 beside mtstress" || diag "$(tail -n 30 "$VD_TMP/fsx2.out")"
}

# Dropping the kernel's dentries and inodes makes it forget nodes while
# they are in use, but it is machine-wide (it disturbs benchmarks), so
# only under CI or when asked.
drop=0
if [ "${CI:-}" = true ] || [ "${VDRIVE_DROP_CACHES:-}" = 1 ]; then
	drop=1
else
	skip "stress with the kernel dropping dentries" "machine-wide: runs under CI=true or VDRIVE_DROP_CACHES=1"
fi

ext4=$VD_TMP/ext4
if vd_scratch ext4 "$ext4"; then
	mkdir -p "$ext4/native" && stress_on "native ext4" "$ext4/native"
else
	skip "stress native ext4" "cannot make a loop ext4 here (mkfs.ext4/loop device)"
fi
back=$ext4/dir-backing
if ! vd_mounted "$ext4"; then
	vd_scratch tmpfs "$VD_TMP/tmpfs" && back=$VD_TMP/tmpfs/dir-backing
fi

# Each entry: KIND|EXTRA-OPTIONS.
for v in "mem|" "mem|entry_timeout=0,attr_timeout=0,negative_timeout=0" "dir|" "sqlite|"; do
	vd_variant stress "$v" "$back" "$(dirname "$back")/stress.db" || continue
	mnt=$(vd_mktemp "mnt-$kind${opt:+-nocache}")
	if ! vd_mount "$spec" "$mnt" ${opt:+-o "$opt"}; then
		ok 1 "mount $spec${opt:+ -o $opt}"
		continue
	fi
	stress_on "$label" "$mnt"
	keep=0
	if [ "$kind" != mem ]; then
		mkdir -p "$mnt/kept"
		run_ok "mtstress on $label tree kept for remount" \
			"$MT" -t 16 -n "$ops" -s 5 -k "$VD_TMP/models-$kind" "$mnt/kept"
		keep=1
	fi
	vd_umount "$mnt"
	ok $? "unmount $label"
	[ $keep = 1 ] || continue
	if [ "$kind" = dir ]; then
		run_ok "dir: backing folder holds the kept tree" \
			"$MT" -t 16 -V "$VD_TMP/models-$kind" "$back/kept"
	fi
	if vd_mount "$spec" "$mnt"; then
		run_ok "$label kept tree unchanged after unmount and mount again" \
			"$MT" -t 16 -V "$VD_TMP/models-$kind" "$mnt/kept"
		vd_umount "$mnt"
		ok $? "unmount $label again"
	else
		ok 1 "mount $spec again"
	fi
done
done_testing
