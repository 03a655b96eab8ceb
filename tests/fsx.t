#!/bin/bash
# fsx (tests/helpers/fsx.c): random writes, reads, truncates, fallocate,
# mmap and renames of one file checked against an in-memory model, with
# fixed seeds, on native folders and on every built-in source (mem: also
# with writeback_cache and direct_io). For sources that keep data (dir:,
# sqlite:) one more run's file must read the same after a remount.
# nsfuzz (tests/helpers/nsfuzz.c): random creates, renames, links,
# removals... run alike in a native tmpfs folder and on each drive (and
# on ext4); every result and the trees must match.
# VDRIVE_QUICK=1: fewer seeds/ops.
. "$(dirname "$0")/lib.sh"
vd_init fsx
vd_need_root "fsx"
FSX=$VD_HELPERS/fsx
NS=$VD_HELPERS/nsfuzz

if [ ! -x "$FSX" ] || [ ! -x "$NS" ]; then
	missing "fsx" "$FSX or $NS not built (make)"
	done_testing
fi
seeds="1 2 3 4"
ops=10000
if [ "$VD_QUICK" = 1 ]; then
	seeds="1 2"
	ops=3000
fi

# fsx_on LABEL DIR: every seed at default sizes, and one with small files
# and odd I/O sizes that keep crossing page boundaries.
fsx_on() {
	local label=$1 dir=$2 s
	for s in $seeds; do
		run_ok "fsx $label seed $s ($ops ops)" "$FSX" -s "$s" -n "$ops" "$dir"
	done
	run_ok "fsx $label seed 99 (64 KiB file, I/O up to 9000 bytes)" \
		"$FSX" -s 99 -n "$ops" -l 65536 -w 9000 "$dir"
}

# nsfuzz_on LABEL DIR [-u]: the name-space fuzzer, DIR against a native
# reference folder ($ref, set below), in fresh subfolders per seed; with
# -u the operations run as three different users.
nsfuzz_on() {
	local label=$1 dir=$2 u=${3:-} s r
	for s in $seeds; do
		nsn=$((nsn + 1))
		r=$ref/$nsn
		mkdir -p "$r" "$dir/ns-$s" &&
			run_ok "nsfuzz${u:+ $u} $label seed $s ($ops ops, against native)" \
				"$NS" $u -s "$s" -n "$ops" "$r" "$dir/ns-$s"
	done
}
nsn=0

ext4=$VD_TMP/ext4
tmpfs=$VD_TMP/tmpfs
if vd_scratch ext4 "$ext4"; then
	mkdir -p "$ext4/native" && fsx_on "native ext4" "$ext4/native"
else
	skip "fsx native ext4" "cannot make a loop ext4 here (mkfs.ext4/loop device)"
fi
if vd_scratch tmpfs "$tmpfs"; then
	fsx_on "native tmpfs" "$tmpfs"
else
	skip "fsx native tmpfs" "cannot mount tmpfs here"
fi
back=$tmpfs/dir-backing
vd_mounted "$ext4" && back=$ext4/dir-backing
ref=$tmpfs/nsref
vd_mounted "$tmpfs" || ref=$ext4/nsref
mkdir -p "$ref"
if vd_mounted "$ext4" && vd_mounted "$tmpfs"; then
	chmod 755 "$ref" "$ext4/native"
	nsfuzz_on "native ext4" "$ext4/native" -u
fi

# Each entry: KIND|EXTRA-OPTIONS.
for v in "mem|" "mem|writeback_cache" "mem|direct_io" "dir|" "sqlite|"; do
	vd_variant fsx "$v" "$back" "$tmpfs/fsx.db" || continue
	mnt=$(vd_mktemp "mnt-$kind${opt:+-$opt}")
	if ! vd_mount "$spec" "$mnt" -o "allow_other${opt:+,$opt}"; then
		ok 1 "mount $spec -o allow_other${opt:+,$opt}"
		continue
	fi
	fsx_on "$label" "$mnt"
	nsfuzz_on "$label" "$mnt" -u
	persist=0
	if [ "$kind" != mem ] && [ -z "$opt" ]; then
		run_ok "fsx $label seed 7, file kept for remount" \
			"$FSX" -s 7 -n "$ops" -K "$VD_TMP/model-$kind" "$mnt"
		persist=1
	fi
	vd_umount "$mnt"
	ok $? "unmount $label"
	[ $persist = 1 ] || continue
	if [ "$kind" = dir ]; then
		cmp "$back/fsx.7.final" "$VD_TMP/model-$kind"
		ok $? "dir: backing file holds what fsx wrote"
	fi
	if vd_mount "$spec" "$mnt"; then
		cmp "$mnt/fsx.7.final" "$VD_TMP/model-$kind"
		ok $? "$label fsx file unchanged after unmount and mount again"
		vd_umount "$mnt"
		ok $? "unmount $label again"
	else
		ok 1 "mount $spec again"
	fi
done
done_testing
