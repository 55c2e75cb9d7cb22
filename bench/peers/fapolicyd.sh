# shellcheck shell=dash
# bench/peers/fapolicyd.sh (sourced by bench/guest.sh, busybox ash): fapolicyd 1.1.7 as its
# systemd unit starts it (`fapolicyd`: it forks, drops to the fapolicyd user, loads the trust
# database into lmdb, marks every watched mount for FAN_OPEN_PERM and FAN_OPEN_EXEC_PERM),
# no debug output. Each exec then waits for the daemon's two answers (open-exec and open).
# Policy (staged): the package's usual rule set with "deny_audit perm=execute all :
# path=/bench/xmrig" ahead, so xmrig is refused (xmrig_rc=126).
FAPOLICYD_ROOT=/peers/fapolicyd
FAPOLICYD_PID=
FAPOLICYD_SAID=

fapolicyd_ld() {
	"$FAPOLICYD_ROOT/lib/ld-linux-x86-64.so.2" --library-path "$FAPOLICYD_ROOT/lib" "$@"
}

# fapolicyd_marks PID: the fanotify mount marks held by PID's descriptors (fdinfo lists one
# "fanotify mnt_id:" line per mark).
fapolicyd_marks() { cat /proc/"$1"/fdinfo/* 2>/dev/null | grep -c '^fanotify mnt_id:'; }

# fapolicyd_trust: the guest's programs and libraries in the trust database, once per boot,
# as an operator adds what is not from a package (`fapolicyd-cli --file add`, size and
# SHA-256 of each file into /etc/fapolicyd/trust.d/bench-guest). Not the miner.
fapolicyd_trust() {
	[ -s /etc/fapolicyd/trust.d/bench-guest ] && return 0
	for fapolicyd_p in /bin/ /sbin/ /usr/bin/ /usr/sbin/ /lib/ /lib64/ /bench/execloop /bench/nop /bench/pingpong; do
		[ -e "$fapolicyd_p" ] || continue
		# A directory holding only symbolic links (busybox's applets) adds nothing: not an error.
		fapolicyd_ld "$FAPOLICYD_ROOT/usr/sbin/fapolicyd-cli" --file add "$fapolicyd_p" \
			--trust-file bench-guest > /dev/null 2>&1
	done
	for fapolicyd_p in /bin/busybox /bench/execloop /bench/nop; do
		grep -q "^$fapolicyd_p " /etc/fapolicyd/trust.d/bench-guest 2>/dev/null ||
			{ echo "MGB-NOTE fapolicyd: $fapolicyd_p not added to the trust database"; return 1; }
	done
}

fapolicyd_start() {
	# What the package's postinst and tmpfiles.d make: the fapolicyd user and group (the
	# daemon drops to them, fapolicyd.conf: uid/gid), /run/fapolicyd (its fifo),
	# /var/lib/fapolicyd (the lmdb trust database, kept from one round to the next as on a
	# server, rebuilt by the daemon when the trust files change).
	grep -q '^fapolicyd:' /etc/group || echo 'fapolicyd:x:998:' >> /etc/group
	grep -q '^fapolicyd:' /etc/passwd ||
		echo 'fapolicyd:x:998:998::/run/fapolicyd/:/usr/sbin/nologin' >> /etc/passwd
	mkdir -p /run/fapolicyd /var/lib/fapolicyd /var/log
	chown root:fapolicyd /run/fapolicyd && chmod 0770 /run/fapolicyd
	chown fapolicyd:fapolicyd /var/lib/fapolicyd && chmod 2755 /var/lib/fapolicyd
	fapolicyd_trust || return 1
	rm -f /run/fapolicyd.pid
	# Its messages before it forks (e.g. that it was built without rpm support, which the
	# shipped rpm_sha256_only line makes it say) would land on the console: kept aside.
	if ! fapolicyd_ld "$FAPOLICYD_ROOT/usr/sbin/fapolicyd" 2> /tmp/fapolicyd.err; then
		echo "MGB-NOTE fapolicyd did not start: $(tail -n 5 /tmp/fapolicyd.err | tr '\n' ' ')"
		fapolicyd_debug
		return 1
	fi
	# The child writes its pid file, loads the trust database, then marks the mounts and
	# answers events: in force once the marks are there.
	fapolicyd_i=0
	while :; do
		FAPOLICYD_PID=$(cat /run/fapolicyd.pid 2>/dev/null)
		if [ -n "$FAPOLICYD_PID" ] && [ "$(fapolicyd_marks "$FAPOLICYD_PID")" -gt 0 ]; then
			break
		fi
		fapolicyd_i=$((fapolicyd_i + 1))
		if [ "$fapolicyd_i" -ge 1200 ] || { [ -n "$FAPOLICYD_PID" ] && [ ! -d "/proc/$FAPOLICYD_PID" ]; }; then
			echo "MGB-NOTE fapolicyd: no fanotify mark after $((fapolicyd_i / 10)) s (pid ${FAPOLICYD_PID:-none})"
			fapolicyd_stop
			fapolicyd_debug
			return 1
		fi
		sleep 0.1
	done
	# And it answers: the listed miner is refused (the policy is loaded, the decision thread
	# runs). Said once a boot: the marks (/ and /tmp), the type of /.
	/bench/xmrig > /dev/null 2>&1
	fapolicyd_rc=$?
	if [ -z "$FAPOLICYD_SAID" ]; then
		FAPOLICYD_SAID=1
		echo "MGB-NOTE fapolicyd: pid $FAPOLICYD_PID, $(fapolicyd_marks "$FAPOLICYD_PID") fanotify mount marks, / is $(awk '$2 == "/" { print $3 }' /proc/mounts), xmrig_rc=$fapolicyd_rc"
	fi
	if [ "$fapolicyd_rc" != 126 ]; then
		echo "MGB-NOTE fapolicyd: marks set but /bench/xmrig not refused (status $fapolicyd_rc)"
		fapolicyd_stop
		return 1
	fi
	return 0
}

# fapolicyd_debug: why it does not start, from a short run in the foreground with --debug.
fapolicyd_debug() {
	rm -f /run/fapolicyd.pid
	timeout 10 "$FAPOLICYD_ROOT/lib/ld-linux-x86-64.so.2" --library-path "$FAPOLICYD_ROOT/lib" \
		"$FAPOLICYD_ROOT/usr/sbin/fapolicyd" --debug 2>&1 | tail -n 20 | sed 's/^/MGB-NOTE fapolicyd: /'
	rm -f /run/fapolicyd.pid
}

fapolicyd_stop() {
	# A start that failed half-way may have no pid file: look for the daemon itself.
	if [ -z "$FAPOLICYD_PID" ]; then
		for fapolicyd_p in /proc/[0-9]*; do
			case $(tr '\0' ' ' < "$fapolicyd_p/cmdline" 2>/dev/null) in
			*"$FAPOLICYD_ROOT/usr/sbin/fapolicyd "*) FAPOLICYD_PID=${fapolicyd_p#/proc/} ;;
			esac
		done
	fi
	[ -n "$FAPOLICYD_PID" ] || return 0
	# On SIGTERM it removes its marks, closes the fanotify descriptor and exits.
	stop_pid "$FAPOLICYD_PID" || echo "MGB-ERROR fapolicyd: still running 10 s after SIGTERM"
	rm -f /run/fapolicyd.pid
	FAPOLICYD_PID=
}

fapolicyd_pids() { echo "$FAPOLICYD_PID"; }
