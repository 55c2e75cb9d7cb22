# shellcheck shell=bash
# bench/peers/audit.bash: what the stage scripts of the two Linux audit peers share (sourced
# after lib.sh and elfroot.bash): auditctl (the kernel's audit with an execve rule, no daemon)
# and auditd (the same with the daemon), both from bookworm's auditd 3.0.9.

# The rule an operator adds to watch executions (both ABIs, as the STIG and OSPP rule sets
# do), in its own rules.d file, "system local rules" in the package's numbering.
AUDIT_BENCH_RULES='-a always,exit -F arch=b64 -S execve -k exec
-a always,exit -F arch=b32 -S execve -k exec'

# audit_stage ROOT PROGRAM...: unpacks auditd's closure (bookworm) in a scratch directory,
# puts PROGRAM... (paths in the package, e.g. sbin/auditctl) and their libraries under ROOT
# (elfroot_put), and ROOT/etc/audit: the package's /etc/audit with rules.d/70-bench-exec.rules
# added and audit.rules compiled from rules.d by the package's own augenrules (its paths
# pointed at ROOT/etc/audit; it only orders the lines: -D, -b, -f first, -e last), as
# `augenrules --load` (the systemd unit's ExecStartPost) would load it.
audit_stage() {
	local root=$1 tmp
	shift
	tmp=$(mktemp -d)
	AUDIT_TMP=$tmp
	trap 'rm -rf "$AUDIT_TMP"' EXIT
	peer_apt bookworm
	# shellcheck disable=SC2046  # one package a line
	peer_unpack "$tmp/root" $(peer_closure auditd)
	rm -rf "$root"
	elfroot_put "$tmp/root" "$root" "$@"
	mkdir -p "$root/etc"
	cp -a "$tmp/root/etc/audit" "$root/etc/audit"
	printf '%s\n' "$AUDIT_BENCH_RULES" > "$root/etc/audit/rules.d/70-bench-exec.rules"
	chmod 0640 "$root/etc/audit/rules.d/70-bench-exec.rules"
	sed -e "s|/etc/audit|$root/etc/audit|g" -e 's|/sbin/restorecon|/nonexistent|' \
		"$tmp/root/sbin/augenrules" > "$tmp/augenrules"
	sh "$tmp/augenrules" >&2
	grep -q -- '-S execve' "$root/etc/audit/audit.rules" ||
		{ echo "audit_stage: the execve rule is not in the compiled audit.rules" >&2; return 1; }
}
