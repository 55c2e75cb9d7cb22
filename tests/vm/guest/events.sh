# shellcheck shell=sh
# Conditions on the agent's events, shared by the test VM (lib.sh, busybox sh) and the systemd
# VM (mg-test, bash): both copy this file to /mg/events.sh. An event is one JSON object a line;
# a condition names a field, never a position or a key order, and jq evaluates it:
#   KEY=STRING   the field KEY is that string          action=blocked  filename=/tmp/xmrig
#   KEY:=JSON    the field KEY equals that JSON value  pid:=123  host:=false  container_id:=null
#   EXPR         any other argument: a jq boolean expression on the event; start it with
#                "." or "(": '.filename | startswith("/dev/fd/")'  '(.pid == 12 or .ppid == 12)'
# KEY is lower case letters and "_". A number is not a string: pid:=12 is not pid=12, and
# file_name=true is the string "true".

# ev_cond COND: sets EV_COND to the jq expression of one condition.
ev_cond() {
	_evk=${1%%=*}
	_evv=${1#*=}
	case $1 in
	*=*) ;;
	*) EV_COND="($1)"; return ;;
	esac
	case $_evk in
	*:) _evk=${_evk%:}; _evjson=1 ;;
	*) _evjson= ;;
	esac
	case $_evk in
	'' | *[!a-z_]*) EV_COND="($1)"; return ;;
	esac
	if [ -n "$_evjson" ]; then
		EV_COND=".$_evk == ($_evv)"
	else
		case $_evv in *[\\\"]*) _evv=$(printf '%s' "$_evv" | sed 's/[\\"]/\\&/g') ;; esac
		EV_COND=".$_evk == \"$_evv\""
	fi
}

# ev_filter COND...: sets EV_FILTER to a jq expression true for the events meeting every COND
# (true: no condition, every event).
ev_filter() {
	EV_FILTER=true
	for _evc; do
		ev_cond "$_evc"
		EV_FILTER="$EV_FILTER and $EV_COND"
	done
}
