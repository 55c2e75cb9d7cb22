#!/bin/busybox sh
# shellcheck shell=dash
# PID 1 of the benchmark VM (bench/run lays this over the test image as /init).
# Measures, in one boot: exec cost with the agent off / enforcing the default policy /
# enforcing 10,000 names (alternating rounds), the hook's own cost (BPF run-time stats),
# an audit-mode exec storm, and the daemon's memory, CPU and start-up time.
# Prints MGB-* lines on the serial console; bench/run parses them. Parameters: /bench/params.

/bin/busybox mkdir -p /proc /sys /dev /tmp /run /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp

# Defaults; /bench/params overrides.
ROUNDS=5 ITERS=1000 WARM=20 STORM_PROCS=4 STORM_EXECS=1000 CLOCK=icount PHASES="exec diag storm"
. /bench/params
EL=/bench/execloop
NOP=/bench/nop
DEFAULT_POLICY=/etc/minerguard/policy.toml
BIG_POLICY=/bench/policy-10k.toml
EMPTY_POLICY=/bench/policy-0.toml
now() { $EL now; }
phase() { case " $PHASES " in *" $1 "*) return 0 ;; esac; return 1; }

echo "MGB-BOOT kernel=$(uname -r) clock=$CLOCK cpus=$(grep -c ^processor /proc/cpuinfo) lsm=$(cat /sys/kernel/security/lsm) rounds=$ROUNDS iters=$ITERS storm_procs=$STORM_PROCS storm_execs=$STORM_EXECS"
[ -x /usr/bin/minerguard ] || { echo "MGB-ERROR no /usr/bin/minerguard in the image"; poweroff -f; }

AGENT=
# start_agent LABEL POLICY [ARGS...]: start the daemon and wait for "minerguard ready".
# execloop stamps the start and execs the agent in place; a reader on a FIFO stamps the
# ready line as it arrives, so polling does not blur the figure.
start_agent() {
	_label=$1 _policy=$2
	shift 2
	rm -f /tmp/t0 /tmp/ready /tmp/agent.fifo /tmp/events /tmp/agent.log
	mkfifo /tmp/agent.fifo
	(
		while IFS= read -r _l; do
			printf '%s\n' "$_l" >> /tmp/agent.log
			case $_l in *'minerguard ready'*) $EL now > /tmp/ready.tmp && mv /tmp/ready.tmp /tmp/ready ;; esac
		done < /tmp/agent.fifo
	) &
	$EL stamp /tmp/t0 /usr/bin/minerguard run --policy "$_policy" --log-format json "$@" \
		> /tmp/events 2> /tmp/agent.fifo &
	AGENT=$!
	_i=0
	while [ ! -s /tmp/ready ]; do
		if ! kill -0 "$AGENT" 2>/dev/null; then
			echo "MGB-ERROR agent ($_label) exited before it was ready:"
			sleep 1; tail -n 20 /tmp/agent.log | sed 's/^/MGB-LOG /'
			AGENT=
			return 1
		fi
		_i=$((_i + 1))
		[ "$_i" -ge 3000 ] && { echo "MGB-ERROR agent ($_label) not ready after 300 s"; return 1; }
		sleep 0.1
	done
	settle
	echo "MGB-READY policy=$_label ns=$(( $(cat /tmp/ready) - $(cat /tmp/t0) )) rss_kb=$(rss_kb)"
}

stop_agent() {
	[ -n "$AGENT" ] || return 0
	kill -TERM "$AGENT"
	wait "$AGENT"
	_rc=$?
	[ "$_rc" = 0 ] || echo "MGB-NOTE agent exited with status $_rc"
	AGENT=
	wait    # the FIFO reader
	# An agent that pins its program keeps enforcing after SIGTERM: "off" needs `disable`.
	if [ -d /sys/fs/bpf/minerguard ]; then
		minerguard disable >/dev/null 2>&1 || rm -rf /sys/fs/bpf/minerguard
	fi
	if [ -n "$(ls /sys/fs/bpf)" ]; then
		echo "MGB-ERROR pins left in /sys/fs/bpf after stopping the agent: $(ls /sys/fs/bpf)"
	fi
	settle
}

# settle: let deferred work (freeing a 10,000-entry map after an agent stops, the new agent's
# first ticks) run before the next measurement instead of during it.
settle() { sleep 1; }

rss_kb() { while read -r _k _v _u; do [ "$_k" = VmRSS: ] && echo "$_v"; done < "/proc/$AGENT/status"; }
# CPU time of all the daemon's threads: ticks (utime+stime, USER_HZ) and ns (schedstat).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$AGENT/stat"; }
cpu_ns() { cat /proc/"$AGENT"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
count_lines() { wc -l < "$1" | tr -d ' '; }
# The last "events lost" log line's lost_total (the log is JSON lines; jq is in the test image).
lost_total() {
	jq -R 'fromjson? | select((.message // "" | contains("events lost")) and .lost_total != null) | .lost_total' \
		/tmp/agent.log | tail -n 1
}

# measure ROUND CONFIG: one timed exec loop of the unlisted static nop.
measure() {
	$EL "$WARM" "$NOP" > /dev/null
	_out=$($EL "$ITERS" "$NOP")
	echo "MGB-EXEC round=$1 config=$2 $_out"
}

# round R CONFIG: agent off, or on with a policy, then one measurement.
run_config() {
	case $2 in
	off) measure "$1" off ;;
	default) start_agent default "$DEFAULT_POLICY" --mode enforce && measure "$1" default; stop_agent ;;
	10k) start_agent 10k "$BIG_POLICY" --mode enforce && measure "$1" 10k; stop_agent ;;
	esac
}

# layers: what each layer of the default policy adds per exec (issue 10): the default policy
# with every layer but names off, then with one layer on, then all, alternating with off in
# each round. The nop gets five ordinary arguments (the argument layer reads each one).
LAYER_ARGS="-c /etc/app/app.conf --threads 4 --verbose"
LAYER_CONFIGS="off names identity mmap argv all"
measure_layer() {
	$EL "$WARM" "$NOP" $LAYER_ARGS > /dev/null
	_out=$($EL "$ITERS" "$NOP" $LAYER_ARGS)
	echo "MGB-LAYER round=$1 config=$2 $_out"
}
run_layers() {
	_r=1
	while [ "$_r" -le "$ROUNDS" ]; do
		for _c in $LAYER_CONFIGS; do
			if [ "$_c" = off ]; then
				measure_layer "$_r" off
			elif start_agent "layer-$_c" "/bench/policy-layer-$_c.toml" --mode enforce; then
				measure_layer "$_r" "$_c"
				stop_agent
			fi
		done
		# Rotate, so that a drift over the boot favours no configuration.
		LAYER_CONFIGS="${LAYER_CONFIGS#* } ${LAYER_CONFIGS%% *}"
		_r=$((_r + 1))
	done
}

# hash: the content-hash layer (a policy with one digest, matching nothing). An exec of an
# unchanged file costs a lookup of its kept digest (hash-cached, same loop as the layers);
# the first exec of a new file costs IMA hashing it: HASH_FILES fresh copies of the nop,
# each exec'd once, with the agent off and on (the copies cost the same both times).
HASH_FILES=20
run_hash() {
	if start_agent hash /bench/policy-hash.toml --mode enforce; then
		measure_layer 1 hash-cached
		stop_agent
	fi
	for _c in off on; do
		if [ "$_c" = on ]; then start_agent hash /bench/policy-hash.toml --mode enforce || return; fi
		_i=0 _t=0
		while [ "$_i" -lt "$HASH_FILES" ]; do
			cp "$NOP" "/tmp/fresh-$_c-$_i"
			_t0=$(now)
			$EL 1 "/tmp/fresh-$_c-$_i" > /dev/null
			_t=$((_t + $(now) - _t0))
			_i=$((_i + 1))
		done
		echo "MGB-HASHFIRST config=$_c files=$HASH_FILES bytes=$(wc -c < "$NOP") ns=$_t"
		[ "$_c" = on ] && stop_agent
	done
}

# Let the boot's deferred work finish (with sleep=off an idle guest costs no host time).
sleep 10

# 0. Warm-up: the first loop after boot runs ~1% slower (caches of a fresh system); not counted.
phase exec && echo "MGB-WARMUP $($EL "$ITERS" "$NOP")"

# 1. Exec overhead: alternate off / default / 10k, rotating the order every round so that a
#    drift over the boot does not favour one configuration.
r=1
phase exec || r=$((ROUNDS + 1))
while [ "$r" -le "$ROUNDS" ]; do
	case $((r % 3)) in
	1) order="off default 10k" ;;
	2) order="default 10k off" ;;
	0) order="10k off default" ;;
	esac
	for c in $order; do run_config "$r" "$c"; done
	r=$((r + 1))
done

# 1b. Each layer's share, and hashing.
phase layers && run_layers
phase hash && run_hash

# 2a. The daemon's own share while idle (it wakes every second): the same policy with the
#     daemon running and frozen (SIGSTOP; the hook stays attached), alternating.
if phase diag && start_agent default "$DEFAULT_POLICY" --mode enforce; then
	for i in 1 2; do
		echo "MGB-DAEMON state=running $($EL "$ITERS" "$NOP")"
		kill -STOP "$AGENT"
		echo "MGB-DAEMON state=stopped $($EL "$ITERS" "$NOP")"
		kill -CONT "$AGENT"
	done
	stop_agent
fi

# 2b. Where the instructions go: the hook's own run time (kernel.bpf_stats_enabled; under
#    icount, ns are instructions) per policy size, from the agent's fdinfo. Kept apart from
#    the rounds above because the stats themselves cost a little on every run.
hook_stats() {
	for _fd in /proc/"$AGENT"/fdinfo/*; do
		grep -q '^prog_type:' "$_fd" 2>/dev/null || continue
		awk '/^run_time_ns:/ { t = $2 } /^run_cnt:/ { c = $2 } END { printf "run_cnt=%d run_time_ns=%d", c, t }' "$_fd"
		return
	done
	printf 'run_cnt=? run_time_ns=?'
}
if ! phase diag; then
	:
elif echo 1 > /proc/sys/kernel/bpf_stats_enabled 2>/dev/null; then
	for c in empty default 10k; do
		case $c in
		empty) p=$EMPTY_POLICY ;;
		default) p=$DEFAULT_POLICY ;;
		10k) p=$BIG_POLICY ;;
		esac
		start_agent "$c" "$p" --mode enforce || continue
		$EL "$WARM" "$NOP" > /dev/null
		before=$(hook_stats)
		out=$($EL "$ITERS" "$NOP")
		echo "MGB-HOOK policy=$c before:$before after:$(hook_stats) $out"
		stop_agent
	done
	echo 0 > /proc/sys/kernel/bpf_stats_enabled
else
	echo "MGB-NOTE kernel.bpf_stats_enabled not available"
fi

# 3. Audit-mode storm of a listed name (/bench/xmrig, a copy of nop) from several processes,
#    and the daemon's cost: RSS idle and during the storm, CPU per event, lost events.
if phase storm && start_agent storm "$DEFAULT_POLICY" --mode audit; then
	sleep 2
	rss_idle=$(rss_kb)
	ev0=$(count_lines /tmp/events)
	ticks0=$(cpu_ticks) cpuns0=$(cpu_ns)
	pids=
	p=1
	while [ "$p" -le "$STORM_PROCS" ]; do
		$EL "$STORM_EXECS" /bench/xmrig > "/tmp/storm.$p" &
		pids="$pids $!"
		p=$((p + 1))
	done
	rss_max=0
	running=1
	while [ "$running" = 1 ]; do
		running=0
		for pid in $pids; do kill -0 "$pid" 2>/dev/null && running=1; done
		v=$(rss_kb)
		[ "${v:-0}" -gt "$rss_max" ] && rss_max=$v
		[ "$running" = 1 ] && sleep 0.05
	done
	wait $pids
	# The storm's span: from the first loop's start to the last one's end (execloop's own
	# stamps, so the sampler's sleeps do not round it).
	t0=$(sed -n 's/.* start=\([0-9]*\).*/\1/p' /tmp/storm.* | sort -n | head -n 1)
	t1=$(sed -n 's/.* end=\([0-9]*\).*/\1/p' /tmp/storm.* | sort -n | tail -n 1)
	want=$((ev0 + STORM_PROCS * STORM_EXECS))
	# Drain: wait for the last event (up to 30 s without progress).
	last=-1 same=0
	while :; do
		n=$(count_lines /tmp/events)
		[ "$n" -ge "$want" ] && break
		if [ "$n" = "$last" ]; then same=$((same + 1)); [ "$same" -ge 300 ] && break; else same=0; fi
		last=$n
		sleep 0.1
	done
	t2=$(now)
	[ "$t2" -lt "$t1" ] && t2=$t1
	sleep 0.5     # one more tick of the daemon, so a loss is logged
	ev1=$(count_lines /tmp/events)
	ticks1=$(cpu_ticks) cpuns1=$(cpu_ns)
	fails=$(cat /tmp/storm.* | sed -n 's/.*fails=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
	lost=$(lost_total)
	hz=100   # USER_HZ on x86
	echo "MGB-STORM procs=$STORM_PROCS execs=$((STORM_PROCS * STORM_EXECS)) fails=$fails storm_ns=$((t1 - t0)) drain_ns=$((t2 - t1)) events=$((ev1 - ev0)) lost=${lost:-0} rss_idle_kb=$rss_idle rss_storm_kb=$rss_max cpu_ticks=$((ticks1 - ticks0)) clk_tck=$hz cpu_ns=$((cpuns1 - cpuns0))"
	# Idle cost after the storm, for the record: RSS once the burst is over.
	echo "MGB-AFTER rss_kb=$(rss_kb)"
	stop_agent
fi

echo "MGB-DONE"
poweroff -f
