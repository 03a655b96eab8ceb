#!/bin/bash
# The manual pages: vdrive(1), vdrived(8), vdrive-docker(8) and
# vdrive.h(3) render without
# a groff warning at 80 columns, say everything the help texts and the
# header say (every command, option, source kind and function), are as
# fresh as the binaries and header they come from, and `make install`
# puts them, the bash completion and mount(8)'s helper links in place.
set -u
. "$(dirname "$0")/lib.sh"
vd_init man

if ! command -v man >/dev/null || ! command -v groff >/dev/null; then
	skip_all "man-db or groff-base is not installed (scripts/deps.sh installs them)"
fi
MAN=$VDRIVE_BUILD/man
PAGES=("$MAN/vdrive.1" "$MAN/vdrive.h.3")
DAEMONS=()
for d in vdrived vdrive-docker; do
	[ -x "$VDRIVE_BUILD/$d" ] && PAGES+=("$MAN/$d.8") && DAEMONS+=("$d")
done

for p in "${PAGES[@]}"; do
	name=$(basename "$p")
	if [ ! -s "$p" ]; then
		ok 1 "$name was built (make)"
		continue
	fi
	warn=$(for l in C C.UTF-8; do LC_ALL=$l MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null; done)
	[ -z "$warn" ]
	ok $? "$name renders at 80 columns without warnings (ASCII and UTF-8)" || diag "$warn"
	# plain ASCII text, so "-" in the page is "-" here
	LC_ALL=C MANWIDTH=80 man -l "$p" 2>/dev/null | col -b >"$VD_TMP/$name.txt"
	grep -q "^NAME" "$VD_TMP/$name.txt" && grep -q "^SEE ALSO" "$VD_TMP/$name.txt"
	ok $? "$name has NAME and SEE ALSO sections"
done

# fresh: the pages made now from the build are the ones installed
mkdir -p "$VD_TMP/fresh"
perl "$VD_TOP/scripts/mkman.pl" vdrive "$VDRIVE" >"$VD_TMP/fresh/vdrive.1" &&
	perl "$VD_TOP/scripts/mkman.pl" header "$VD_TOP/include/vdrive.h" >"$VD_TMP/fresh/vdrive.h.3" &&
	cmp -s "$VD_TMP/fresh/vdrive.1" "$MAN/vdrive.1" &&
	cmp -s "$VD_TMP/fresh/vdrive.h.3" "$MAN/vdrive.h.3"
ok $? "the pages match their sources now (make rebuilds them)"

# missing WHAT PAGE-TEXT WORDS...: the words the page lacks
missing() {
	local what=$1 txt=$2 w
	shift 2
	for w in "$@"; do
		w=${w//$'\001'/ } # a space inside one word
		grep -qF -- "$w" "$txt" || echo "$what: $w"
	done
}

T1=$VD_TMP/vdrive.1.txt
cmds=$("$VDRIVE" help | awk '/^commands:$/ { on = 1; next } on && /^$/ { exit } on { print $1 }')
kinds=$("$VDRIVE" help | awk '/^sources:$/ { on = 1; next } on && /^$/ { exit } on { print $1 }')
[ -n "$cmds" ] && [ -n "$kinds" ]
ok $? "vdrive help lists commands and source kinds" || diag "$("$VDRIVE" help)"
out=$(
	for c in $cmds; do
		missing command "$T1" "vdrive $c"
		# shellcheck disable=SC2046
		missing "$c option" "$T1" $("$VDRIVE" help "$c" | grep -oE '^  -[-a-z]+')
	done
	missing "source kind" "$T1" $kinds
	# shellcheck disable=SC2046
	missing "mount helper option" "$T1" $(ln -sf "$VDRIVE" "$VD_TMP/mount.vdrive" &&
		"$VD_TMP/mount.vdrive" --help | grep -oE '^  -[a-z]+' | sed 's/^  //')
)
[ -z "$out" ]
ok $? "vdrive(1) names every command, option, source kind and mount(8) option of the help" ||
	diag "$out"

for d in "${DAEMONS[@]}"; do
	# shellcheck disable=SC2046
	out=$(missing "$d option" "$VD_TMP/$d.8.txt" \
		$("$VDRIVE_BUILD/$d" --help | grep -oE '^  -[-a-z]+( [a-z]+=)?' | sed 's/^  //' | tr ' ' '\001'))
	[ -z "$out" ] && [ "$("$VDRIVE_BUILD/$d" --help | grep -cE '^  -')" -gt 0 ]
	ok $? "$d(8) names every option of $d --help" || diag "$out"
done

funcs=$(grep -oE '^[a-z].*\bvd_[a-z_]+\(' "$VD_TOP/include/vdrive.h" | grep -oE 'vd_[a-z_]+\($' | tr -d '(')
consts=$(grep -oE '^#define VD_[A-Z_]+' "$VD_TOP/include/vdrive.h" | cut -d' ' -f2)
# shellcheck disable=SC2086
out=$(missing function "$VD_TMP/vdrive.h.3.txt" $funcs; missing constant "$VD_TMP/vdrive.h.3.txt" $consts;
	missing type "$VD_TMP/vdrive.h.3.txt" "struct vd_ops {" "struct vd_file {" "struct vd_ctx {")
[ -n "$funcs" ] && [ -z "$out" ]
ok $? "vdrive.h(3) has every function ($(wc -w <<<"$funcs")), constant and struct of the header" ||
	diag "$out"
# each function's own comment is under its name
grep -A12 "^   vd_drive_set_options" "$VD_TMP/vdrive.h.3.txt" | grep -q "comma-separated list"
ok $? "a function's comment is under its name in vdrive.h(3)"

# make install into a scratch root: the pages, the completion, the links
B=$(basename "$VDRIVE_BUILD")
if [ "$(dirname "$VDRIVE_BUILD")" = "$VD_TOP" ] && [[ $B != *-san ]]; then
	D=$VD_TMP/root
	out=$(make -s -C "$VD_TOP" BUILD="$B" DESTDIR="$D" install 2>&1)
	ok $? "make install DESTDIR=..." || diag "$out"
	for f in usr/local/share/man/man1/vdrive.1 usr/local/share/man/man3/vdrive.h.3 \
		usr/local/share/bash-completion/completions/vdrive; do
		[ -s "$D/$f" ] || echo "missing $f"
	done >"$VD_TMP/inst"
	for d in "${DAEMONS[@]}"; do
		[ -s "$D/usr/local/share/man/man8/$d.8" ] || echo "missing $d.8"
		[ -x "$D/usr/local/bin/$d" ] || echo "missing $d"
		[ -s "$D/usr/local/lib/systemd/system/$d.service" ] || echo "missing $d.service"
	done >>"$VD_TMP/inst"
	for l in mount.vdrive mount.fuse.vdrive; do
		[ "$(readlink "$D/sbin/$l")" = /usr/local/bin/vdrive ] || echo "bad link /sbin/$l"
	done >>"$VD_TMP/inst"
	[ ! -s "$VD_TMP/inst" ]
	ok $? "it installs the pages, daemons, units, completion and /sbin/mount.vdrive, mount.fuse.vdrive" ||
		diag "$(cat "$VD_TMP/inst")"
	LC_ALL=C MANPATH=$D/usr/local/share/man MANWIDTH=80 man vdrive.h 2>/dev/null | grep -q "vd_drive_new"
	ok $? "man finds vdrive.h(3) where it was installed"
else
	skip "make install DESTDIR=..." "VDRIVE_BUILD ($VDRIVE_BUILD) is not this tree's plain build"
fi

done_testing
