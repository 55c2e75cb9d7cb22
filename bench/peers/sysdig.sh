# shellcheck shell=dash
# bench/peers/sysdig.sh (sourced by bench/guest.sh): sysdig 0.29.3 on the scap kernel module, as an
# operator watching for miners would run it: every syscall captured by the driver (sys_enter/
# sys_exit tracepoints into per-CPU ring buffers), parsed by sysdig, filtered in user space down to
# the execs of a listed name, written to a file. It detects, it does not prevent (xmrig_rc=0).
# Staged by sysdig.stage under /peers/sysdig.

SYSDIG_DIR=/peers/sysdig
SYSDIG_OUT=/tmp/sysdig.out
SYSDIG_ERR=/tmp/sysdig.err
# A copy of the nop under a name the filter also matches: start execs it until sysdig reports it,
# proof that events flow from the driver through sysdig's filter (not just that the device is open).
SYSDIG_CANARY=/tmp/mgb-canary
sysdig_pid=
sysdig_noted=

# sysdig_has_dev: sysdig holds a scap device open (/dev/scapN, one per CPU).
sysdig_has_dev() {
	for _sysdig_fd in /proc/"$sysdig_pid"/fd/*; do
		case $(readlink "$_sysdig_fd" 2>/dev/null) in /dev/scap[0-9]*) return 0 ;; esac
	done
	return 1
}

sysdig_start() {
	if [ ! -d /sys/module/scap ] && ! insmod "$SYSDIG_DIR/scap.ko"; then
		echo "MGB-NOTE sysdig: insmod scap.ko failed: $(dmesg | tail -n 3 | tr '\n' ' ')"
		return 1
	fi
	[ -x "$SYSDIG_CANARY" ] || cp /bench/nop "$SYSDIG_CANARY"
	: > "$SYSDIG_OUT"
	# The loader, linked as "sysdig", runs sysdig with its own libraries (the process is named
	# sysdig). --unbuffered: a match reaches the file at once (matches are rare: no cost); -v: the
	# driver's event and drop counts on exit (and full data buffers, which this format has none of).
	"$SYSDIG_DIR/sysdig" --library-path "$SYSDIG_DIR/lib" "$SYSDIG_DIR/bin/sysdig" -v --unbuffered \
		-p "%evt.num %evt.time pid=%proc.pid name=%proc.name exepath=%proc.exepath res=%evt.res" \
		"evt.type=execve and evt.dir=< and proc.name in (xmrig, mgb-canary)" \
		> "$SYSDIG_OUT" 2> "$SYSDIG_ERR" &
	sysdig_pid=$!
	# In force: the module is loaded, sysdig holds its device open, and an exec of the canary
	# came out of sysdig's filter (up to 300 s of guest time: sysdig loads ~80 libraries and
	# scans /proc first).
	_sysdig_i=0
	while :; do
		if ! alive "$sysdig_pid"; then
			wait "$sysdig_pid"
			echo "MGB-NOTE sysdig exited with status $? before capturing: $(tail -n 3 "$SYSDIG_ERR" | tr '\n' ' ')"
			sysdig_pid=
			return 1
		fi
		if [ -d /sys/module/scap ] && sysdig_has_dev; then
			grep -q ' name=mgb-canary ' "$SYSDIG_OUT" && return 0
			"$SYSDIG_CANARY" > /dev/null 2>&1
		fi
		_sysdig_i=$((_sysdig_i + 1))
		if [ "$_sysdig_i" -ge 1500 ]; then
			echo "MGB-NOTE sysdig not capturing after 300 s (device open: $(sysdig_has_dev && echo yes || echo no)): $(tail -n 3 "$SYSDIG_ERR" | tr '\n' ' ')"
			return 1
		fi
		sleep 0.2
	done
}

sysdig_stop() {
	if [ -n "$sysdig_pid" ]; then
		# Once per boot: did the operator's filter see the probe's exec of /bench/xmrig?
		if [ -z "$sysdig_noted" ]; then
			sysdig_noted=1
			if grep -q ' name=xmrig ' "$SYSDIG_OUT"; then
				echo "MGB-NOTE sysdig saw xmrig: yes ($(grep -m 1 ' name=xmrig ' "$SYSDIG_OUT"))"
			else
				echo "MGB-NOTE sysdig saw xmrig: no"
			fi
		fi
		kill -TERM "$sysdig_pid" 2>/dev/null
		_sysdig_i=0
		while alive "$sysdig_pid"; do
			_sysdig_i=$((_sysdig_i + 1))
			[ "$_sysdig_i" -eq 100 ] && kill -KILL "$sysdig_pid" 2>/dev/null
			sleep 0.1
		done
		wait "$sysdig_pid"
		sysdig_pid=
		# -v: on exit sysdig reports the driver's counts; drops mean it could not keep up (and
		# then cost less than it would have had it parsed every event).
		echo "MGB-NOTE sysdig driver: $(grep -h -E '^(Driver Events|Driver Drops|Elapsed time)' "$SYSDIG_OUT" "$SYSDIG_ERR" | tr '\n' ' ')"
	fi
	# The module unregisters its tracepoints when the last consumer closes; unloading it leaves
	# the kernel as it was.
	_sysdig_i=0
	while [ -d /sys/module/scap ] && ! rmmod scap 2>/dev/null; do
		_sysdig_i=$((_sysdig_i + 1))
		[ "$_sysdig_i" -ge 50 ] && { echo "MGB-ERROR sysdig: rmmod scap failed"; return 1; }
		sleep 0.1
	done
	return 0
}

sysdig_pids() { echo "$sysdig_pid"; }
