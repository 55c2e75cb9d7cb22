# shellcheck shell=dash
# bench/peers/audit.sh (sourced by bench/guest.sh, busybox ash): what the two Linux audit
# peers, auditctl and auditd, share in the guest (both stages install it).

# audit_check LABEL CTL ENABLED PID RULES: whether the kernel's audit state is so, read with
# the auditctl command CTL (`-s`, `-l`): auditing enabled ENABLED (0 or 1), daemon PID
# registered (0: none), and the execve rules listed (RULES=yes) or no rule at all (no); an
# MGB-NOTE from LABEL says what differs otherwise.
audit_check() {
	_audit_s=$($2 -s 2>&1)
	_audit_l=$($2 -l 2>&1)
	_audit_bad=
	echo "$_audit_s" | grep -qx "enabled $3" || _audit_bad="not enabled=$3"
	# A whole line, so that pid 12 does not match pid 123.
	echo "$_audit_s" | grep -qx "pid $4" || _audit_bad="$_audit_bad, pid $4 not the registered daemon (0: none)"
	case $5:$_audit_l in
	yes:*"arch=b64 -S execve"*"arch=b32 -S execve"* | no:"No rules"*) ;;
	*) _audit_bad="$_audit_bad, rules=$5 expected" ;;
	esac
	[ -z "$_audit_bad" ] && return 0
	echo "MGB-NOTE $1: ${_audit_bad#, }: status: $(echo "$_audit_s" | tr '\n' ' ') rules: $(echo "$_audit_l" | tr '\n' ' ')"
	return 1
}
