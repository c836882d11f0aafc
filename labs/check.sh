# Put before every check's command (sh, as root). LAB_ID, LAB_USER,
# LAB_HOME and LAB_DIR are set. A check compares what the student wrote in
# answers.txt with what the host shows through `expect`, which prints only
# what the student gave: a failing check must not hand out its answer.

# answer KEY prints the student's last KEY= line of answers.txt, without spaces.
answer() {
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$LAB_DIR/answers.txt" 2>/dev/null | tail -n1 | tr -d '[:space:]'
}

# expect KEY MODE WANT... passes when the answer to KEY matches one of the
# WANTs, which it never prints. MODE is how they compare:
#   exact    the same text
#   id       at least 12 characters, the start of WANT (a short container id)
#   path     the same path, a trailing slash allowed
#   socket   the same socket path, with or without unix://
#   words    the same set of words (separated by spaces or commas)
expect() {
	_key=$1 _mode=$2
	shift 2
	if [ "$_mode" = words ]; then
		_got=$(sed -n "s/^[[:space:]]*$_key[[:space:]]*=//p" "$LAB_DIR/answers.txt" 2>/dev/null | tail -n1 | tr ', ' '\n\n' | grep . | sort -u | tr '\n' ' ')
	else
		_got=$(answer "$_key")
	fi
	if [ -z "$_got" ]; then
		if [ "$LAB_HOME" != /root ] && [ -s "/root/labs/$LAB_ID/answers.txt" ]; then
			echo "$_key: no answer yet in $LAB_DIR/answers.txt (yours is in /root/labs/$LAB_ID/: after sudo -i, ~ is /root; move it)"
		else
			echo "$_key: no answer yet in ~/labs/$LAB_ID/answers.txt"
		fi
		return 1
	fi
	for _want in "$@"; do
		[ -n "$_want" ] || continue
		case $_mode in
		exact) [ "$_got" = "$_want" ] && _ok=1 ;;
		id) [ ${#_got} -ge 12 ] && case $_want in "$_got"*) _ok=1 ;; esac ;;
		path) [ "${_got%/}" = "${_want%/}" ] && _ok=1 ;;
		socket) [ "${_got#unix://}" = "${_want#unix://}" ] && _ok=1 ;;
		words) [ "$_got" = "$(printf '%s\n' $_want | sort -u | tr '\n' ' ')" ] && _ok=1 ;;
		*) echo "expect: unknown mode $_mode" >&2; return 2 ;;
		esac
		if [ "${_ok:-}" = 1 ]; then
			unset _ok
			echo "$_key=$_got: right"
			return 0
		fi
	done
	if [ "$_mode" = id ] && [ ${#_got} -lt 12 ]; then
		echo "$_key=$_got: too short to name one id (at least 12 characters)"
	else
		echo "$_key=$_got: not what this host shows"
	fi
	return 1
}
