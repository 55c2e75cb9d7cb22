# shellcheck shell=dash
# bench/peers/auditctl.sh (sourced by bench/guest.sh, busybox ash): Linux audit with an execve
# rule loaded by auditctl alone, no daemon: the kernel's own cost of auditing every exec.
# Without a daemon the kernel prints each record (rate limited by printk_ratelimit, at
# KERN_NOTICE, below the console level that the boot's `quiet` sets, so the serial console
# stays clean) and drops it. It does not block: xmrig runs (xmrig_rc=0). Kernel-only: no
# process of its own. Settings as the package's rules.d/audit.rules has them (-b 8192,
# --backlog_wait_time 60000, -f 1, no rate limit); audit.rules is compiled at staging.
AUDITCTL_ROOT=/peers/auditctl
AUDITCTL_SAID=

auditctl_cmd() {
	"$AUDITCTL_ROOT/lib/ld-linux-x86-64.so.2" --library-path "$AUDITCTL_ROOT/lib" \
		"$AUDITCTL_ROOT/sbin/auditctl" "$@"
}

auditctl_start() {
	# What `augenrules --load` does (-D, -b 8192, -f 1, the rules, --backlog_wait_time), then
	# enable auditing (nothing else would without auditd).
	if ! auditctl_out=$(auditctl_cmd -R "$AUDITCTL_ROOT/etc/audit/audit.rules" 2>&1); then
		echo "MGB-NOTE auditctl -R failed: $(echo "$auditctl_out" | tail -n 3 | tr '\n' ' ')"
		return 1
	fi
	if ! auditctl_out=$(auditctl_cmd -e 1 2>&1); then
		echo "MGB-NOTE auditctl -e 1 failed: $(echo "$auditctl_out" | tail -n 3 | tr '\n' ' ')"
		return 1
	fi
	# No daemon may be registered: records must go nowhere but the kernel's printk.
	audit_check auditctl auditctl_cmd 1 0 yes
}

auditctl_stop() {
	if [ -z "$AUDITCTL_SAID" ]; then
		# Once a boot: where the records went (the kernel log, rate limited; the console
		# level hides them).
		AUDITCTL_SAID=1
		echo "MGB-NOTE auditctl: kernel log: $(dmesg | grep -c 'audit: type=1300') SYSCALL records printed, $(dmesg | grep -c 'callbacks suppressed') 'callbacks suppressed' lines; console loglevel $(cut -f1 /proc/sys/kernel/printk)"
	fi
	auditctl_cmd -D > /dev/null 2>&1
	auditctl_cmd -e 0 > /dev/null 2>&1
	auditctl_cmd -b 64 > /dev/null 2>&1   # the kernel's default backlog limit
	audit_check auditctl auditctl_cmd 0 0 no || echo "MGB-ERROR auditctl: audit still attached after stopping"
}

auditctl_pids() { :; }
