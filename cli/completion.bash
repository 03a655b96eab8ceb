# bash completion for vdrive; `make install` puts it where bash-completion
# finds it. Everything it offers comes from the vdrive being completed, so
# it never lags behind it: commands and source kinds from `vdrive help`,
# options from `vdrive COMMAND --help`, drive names from `vdrive list`.

# _vdrive_help_section CMD SECTION: the first word of each line of `CMD
# help`'s "SECTION:" block.
_vdrive_help_section() {
	"$1" help 2>/dev/null | awk -v s="$2:" '
		$0 == s { on = 1; next }
		on && /^$/ { exit }
		on { print $1 }'
}

# _vdrive_options CMD SUB: the options SUB's --help lists.
_vdrive_options() {
	"$1" help "$2" 2>/dev/null | grep -oE '^  -[-a-z]+' | tr -d ' ' | sort -u
}

_vdrive() {
	local cur prev cmd sub i kinds
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	cmd=${COMP_WORDS[0]}
	COMPREPLY=()
	if [ "$COMP_CWORD" = 1 ]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_vdrive_help_section "$cmd" commands) umount" -- "$cur")
		return
	fi
	sub=${COMP_WORDS[1]}
	case $prev in
	-o | --options | --allow | --container | --docker-host)
		return ;; # values are free-form
	--name)
		mapfile -t COMPREPLY < <(compgen -W "$("$cmd" list 2>/dev/null | awk 'NR > 1 && NF > 1 { print $1 }')" -- "$cur")
		return ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$(_vdrive_options "$cmd" "$sub")" -- "$cur")
		return
	fi
	# the position among the arguments that are not options
	local n=0
	for ((i = 2; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-o | --name | --container | --allow | --docker-host) ((i++)) ;;
		-*) ;;
		*) ((n++)) ;;
		esac
	done
	case $sub in
	mount)
		if [ $n = 0 ]; then
			if [[ $cur == *:* ]]; then # the path after KIND:
				local kind=${cur%%:*}
				mapfile -t COMPREPLY < <(compgen -f -- "${cur#*:}" | sed "s|^|$kind:|")
			else
				kinds=$(_vdrive_help_section "$cmd" sources | sed 's/:.*/:/')
				mapfile -t COMPREPLY < <(compgen -W "$kinds" -- "$cur")
				compopt -o nospace 2>/dev/null
			fi
		elif [ $n = 1 ]; then
			mapfile -t COMPREPLY < <(compgen -d -- "$cur")
		fi
		;;
	unmount | umount)
		mapfile -t COMPREPLY < <(compgen -W "$("$cmd" list 2>/dev/null | awk 'NR > 1 && NF > 1 { print $1; print $3 }')" -- "$cur")
		;;
	help)
		[ $n = 0 ] && mapfile -t COMPREPLY < <(compgen -W "$(_vdrive_help_section "$cmd" commands)" -- "$cur")
		;;
	esac
}
complete -F _vdrive vdrive
