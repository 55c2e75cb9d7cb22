# shellcheck shell=dash
# bpftrace (sourced by bench/guest.sh): Debian bookworm's bpftrace 0.17 with the one-liner an
# operator would write to kill a listed miner right after its exec (it cannot refuse the exec:
# the process is killed once it runs, status 137). Staged by bpftrace.stage under
# /peers/bpftrace and run through that root's dynamic loader.
BPFTRACE_ROOT=/peers/bpftrace
BPFTRACE_PID=
BPFTRACE_MOUNTED=
BPFTRACE_PROG='tracepoint:sched:sched_process_exec /comm == "xmrig"/ { signal("KILL") }'

# bpftrace_killed: the probe is in force: a test program named xmrig (a copy of the nop,
# comm "xmrig") is killed right after its exec. Kernel behaviour, not bpftrace's output.
bpftrace_killed() {
	/tmp/bpftrace-check/xmrig > /dev/null 2>&1
	[ $? = 137 ]
}

bpftrace_start() {
	# bpftrace reads the tracepoint's format from tracefs (also under debugfs): mount what
	# the guest lacks, and unmount it again in bpftrace_stop.
	if ! grep -q '^[^ ]* /sys/kernel/debug ' /proc/mounts; then
		mount -t debugfs debugfs /sys/kernel/debug && BPFTRACE_MOUNTED="/sys/kernel/debug $BPFTRACE_MOUNTED"
	fi
	if ! grep -q '^[^ ]* /sys/kernel/tracing ' /proc/mounts; then
		mount -t tracefs tracefs /sys/kernel/tracing && BPFTRACE_MOUNTED="/sys/kernel/tracing $BPFTRACE_MOUNTED"
	fi
	mkdir -p /tmp/bpftrace-check
	cp /bench/nop /tmp/bpftrace-check/xmrig
	"$BPFTRACE_ROOT/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
		--library-path "$BPFTRACE_ROOT/lib/x86_64-linux-gnu:$BPFTRACE_ROOT/usr/lib/x86_64-linux-gnu" \
		"$BPFTRACE_ROOT/usr/bin/bpftrace" --unsafe -e "$BPFTRACE_PROG" > /tmp/bpftrace.log 2>&1 &
	BPFTRACE_PID=$!
	# It takes a while (LLVM compiles the program): test every half second.
	bpftrace_i=0
	until bpftrace_killed; do
		if ! alive "$BPFTRACE_PID"; then
			echo "MGB-NOTE bpftrace exited before its probe killed anything: $(tr '\n' ' ' < /tmp/bpftrace.log)"
			wait "$BPFTRACE_PID"
			BPFTRACE_PID=
			return 1
		fi
		bpftrace_i=$((bpftrace_i + 1))
		if [ "$bpftrace_i" -ge 600 ]; then
			echo "MGB-NOTE bpftrace: the probe killed nothing after 300 s: $(tr '\n' ' ' < /tmp/bpftrace.log)"
			return 1
		fi
		sleep 0.5
	done
	return 0
}

# bpftrace_stop: SIGINT, as an operator's Ctrl-C (bpftrace detaches its probe and exits;
# closing its perf event fd detaches the program in any case); SIGKILL after 30 s.
bpftrace_stop() {
	if [ -n "$BPFTRACE_PID" ]; then
		kill -INT "$BPFTRACE_PID" 2>/dev/null
		bpftrace_i=0
		while alive "$BPFTRACE_PID" && [ "$bpftrace_i" -lt 300 ]; do
			sleep 0.1
			bpftrace_i=$((bpftrace_i + 1))
		done
		if alive "$BPFTRACE_PID"; then
			echo "MGB-NOTE bpftrace ignored SIGINT for 30 s: killed"
			kill -KILL "$BPFTRACE_PID"
		fi
		wait "$BPFTRACE_PID" 2>/dev/null
		BPFTRACE_PID=
		# Gone with its process: the next configuration must measure a clean kernel.
		bpftrace_killed && echo "MGB-ERROR bpftrace: xmrig still killed after bpftrace exited"
	fi
	# Lazily: debugfs may hold tracefs's automount at /sys/kernel/debug/tracing.
	for bpftrace_m in $BPFTRACE_MOUNTED; do
		umount -l "$bpftrace_m"
	done
	BPFTRACE_MOUNTED=
	rm -rf /tmp/bpftrace-check
}

bpftrace_pids() { echo "$BPFTRACE_PID"; }
