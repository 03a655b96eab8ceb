#!/bin/bash
# bash completion (cli/completion.bash): registered for vdrive, and what
# it offers comes from the vdrive being completed: commands and source
# kinds from `vdrive help`, options from `vdrive COMMAND --help`, names of
# live drives from `vdrive list`, folders for the mount point.
set -u
. "$(dirname "$0")/lib.sh"
vd_init completion

# complete WORDS...: what the completion offers for the last word (may
# be ""), one per line, sorted; run in a clean bash with the script
# sourced, as bash-completion would load it.
complete_words() {
	bash --norc --noprofile -c '
		. "$1"
		shift
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		_vdrive
		printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$VD_TOP/cli/completion.bash" "$@"
}

out=$(bash --norc --noprofile -c '. "$1" && complete -p vdrive' _ "$VD_TOP/cli/completion.bash" 2>&1)
[ "$out" = "complete -F _vdrive vdrive" ]
ok $? "sourcing it registers _vdrive for vdrive" || diag "$out"

want=$("$VDRIVE" help | awk '/^commands:$/ { on = 1; next } on && /^$/ { exit } on { print $1 }' | sort)
got=$(complete_words "$VDRIVE" "" | grep -vx umount)
[ -n "$want" ] && [ "$got" = "$want" ]
ok $? "first word: every command of vdrive help" || diag "want: $want got: $got"
[ "$(complete_words "$VDRIVE" "mo")" = mount ]
ok $? "'mo' completes to mount"

want=$("$VDRIVE" help | awk '/^sources:$/ { on = 1; next } on && /^$/ { exit } on { sub(/:.*/, ":", $1); print $1 }' | sort)
got=$(complete_words "$VDRIVE" mount "")
[ -n "$want" ] && [ "$got" = "$want" ]
ok $? "mount SOURCE: every source kind of vdrive help ($(echo $want))" || diag "got: $got"
[ "$(complete_words "$VDRIVE" mount "sq")" = "sqlite:" ]
ok $? "'sq' completes to sqlite:"
mkdir -p "$VD_TMP/data/sub"
[ "$(complete_words "$VDRIVE" mount "dir:$VD_TMP/da")" = "dir:$VD_TMP/data" ]
ok $? "dir:PATH completes the path after the kind"
[ "$(complete_words "$VDRIVE" mount mem: "$VD_TMP/data/s")" = "$VD_TMP/data/sub" ]
ok $? "the mount point completes to folders"
got=$(complete_words "$VDRIVE" mount --)
want=$("$VDRIVE" mount --help | grep -oE '^  --[-a-z]+' | tr -d ' ' | sort -u)
[ -n "$want" ] && [ "$got" = "$want" ]
ok $? "mount --: the long options of vdrive mount --help" || diag "want: $want got: $got"

# names of live drives
M=$(vd_mktemp m)
if vd_mount mem: "$M" --name compl-drive; then
	got=$(complete_words "$VDRIVE" unmount "compl")
	[ "$got" = compl-drive ]
	ok $? "unmount: names of live drives from vdrive list" || diag "got: $got"
	got=$(complete_words "$VDRIVE" unmount "$M")
	[ "$got" = "$M" ]
	ok $? "unmount: and their mount points" || diag "got: $got"
	vd_umount "$M"
	[ -z "$(complete_words "$VDRIVE" unmount "compl")" ]
	ok $? "an unmounted drive is no longer offered"
else
	ok 1 "a mem: drive to complete the name of"
fi
[ "$(complete_words "$VDRIVE" help "li")" = list ]
ok $? "help COMMAND completes commands"

done_testing
