# shellcheck shell=dash
# bench/peers/auditd.sh (sourced by bench/guest.sh, busybox ash): Linux audit with an execve
# rule and auditd 3.0.9 running, as Debian's systemd unit starts it: `auditd` (it forks once
# it has enabled auditing and registered itself with the kernel), then `augenrules --load`
# (auditctl -R /etc/audit/audit.rules). The package's auditd.conf as shipped: ENRICHED log
# format, flush INCREMENTAL_ASYNC every 50 records, /var/log/audit/audit.log (here a tmpfs),
# plugins off. It logs, it does not block: xmrig runs (xmrig_rc=0).
AUDITD_ROOT=/peers/auditd
AUDITD_PID=
AUDITD_SAID=

auditd_ld() {
	"$AUDITD_ROOT/lib/ld-linux-x86-64.so.2" --library-path "$AUDITD_ROOT/lib" "$@"
}
auditd_ctl() { auditd_ld "$AUDITD_ROOT/sbin/auditctl" "$@"; }

auditd_start() {
	# What the package's install and the system would have: the adm group (auditd.conf's
	# log_group), /var/run -> /run (the pid file), /var/log/audit. The log on a tmpfs of its
	# own, emptied every round; larger than auditd.conf's space_left (75 MB), or auditd would
	# warn and then suspend logging at admin_space_left (50 MB).
	grep -q '^adm:' /etc/group || echo 'adm:x:4:' >> /etc/group
	[ -e /var/run ] || { mkdir -p /var && ln -s /run /var/run; }
	mkdir -p /var/log/audit
	mount -t tmpfs -o mode=0700,size=256m tmpfs /var/log/audit || return 1
	rm -f /var/run/auditd.pid
	# The parent returns once the daemon has enabled auditing and set itself as the audit pid.
	if ! auditd_ld "$AUDITD_ROOT/sbin/auditd"; then
		echo "MGB-NOTE auditd did not start; in the foreground it says:"
		timeout 5 "$AUDITD_ROOT/lib/ld-linux-x86-64.so.2" --library-path "$AUDITD_ROOT/lib" \
			"$AUDITD_ROOT/sbin/auditd" -f 2>&1 | tail -n 15 | sed 's/^/MGB-NOTE auditd: /'
		umount /var/log/audit
		return 1
	fi
	AUDITD_PID=$(cat /var/run/auditd.pid 2>/dev/null)
	if [ -z "$AUDITD_PID" ] || [ ! -d "/proc/$AUDITD_PID" ]; then
		echo "MGB-NOTE auditd: no live pid in /var/run/auditd.pid ($AUDITD_PID)"
		return 1
	fi
	if ! auditd_out=$(auditd_ctl -R /etc/audit/audit.rules 2>&1); then
		echo "MGB-NOTE auditd: auditctl -R failed: $(echo "$auditd_out" | tail -n 3 | tr '\n' ' ')"
		return 1
	fi
	audit_check auditd auditd_ctl 1 "$AUDITD_PID" yes || return 1
	# The daemon writes what it receives (its start record at least) to the log.
	auditd_i=0
	while [ ! -s /var/log/audit/audit.log ]; do
		auditd_i=$((auditd_i + 1))
		[ "$auditd_i" -ge 100 ] && { echo "MGB-NOTE auditd: nothing in audit.log after 10 s"; return 1; }
		sleep 0.1
	done
	return 0
}

auditd_stop() {
	# A start that failed half-way may not know the daemon's pid: the kernel does.
	if [ -z "$AUDITD_PID" ]; then
		AUDITD_PID=$(auditd_ctl -s 2>/dev/null | sed -n 's/^pid //p')
		[ "$AUDITD_PID" = 0 ] && AUDITD_PID=
	fi
	if [ -n "$AUDITD_PID" ] && [ -z "$AUDITD_SAID" ] && [ -f /var/log/audit/audit.log ]; then
		# Once a boot: that the execs were logged, and whether the kernel lost records.
		AUDITD_SAID=1
		echo "MGB-NOTE auditd: pid $AUDITD_PID, audit.log: $(grep -c 'type=EXECVE' /var/log/audit/audit.log) EXECVE records, $(wc -c < /var/log/audit/audit.log) bytes; kernel: $(auditd_ctl -s | grep -E '^(lost|backlog_limit) ' | tr '\n' ' ')"
	fi
	if [ -n "$AUDITD_PID" ]; then
		# On SIGTERM auditd deregisters and, as it enabled auditing at start, disables it.
		stop_pid "$AUDITD_PID" || echo "MGB-NOTE auditd: still running 10 s after SIGTERM"
		AUDITD_PID=
	fi
	# The package keeps the rules when the daemon stops (AUDITD_CLEAN_STOP=no): the next
	# configuration needs a clean kernel, so delete them and disable auditing.
	auditd_ctl -D > /dev/null 2>&1
	auditd_ctl -e 0 > /dev/null 2>&1
	auditd_ctl -b 64 > /dev/null 2>&1   # the kernel's default backlog limit
	umount /var/log/audit 2>/dev/null
	audit_check auditd auditd_ctl 0 0 no || echo "MGB-ERROR auditd: audit still attached after stopping"
}

auditd_pids() { echo "$AUDITD_PID"; }
