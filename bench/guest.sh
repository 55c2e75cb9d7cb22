#!/bin/busybox sh
# shellcheck shell=dash
# PID 1 of the benchmark VM (bench/run lays this over the test image as /init).
# Measures, in one boot, in alternating rounds: exec cost with nothing attached, the floor (an
# empty BPF-LSM program), minerguard on each tier and with each layer added in turn, the
# peers an operator would run instead (bench/peers), policy sizes; then the hook's own cost
# (BPF run-time stats), the idle daemon's wake-ups, a context-switch workload, an audit-mode
# exec storm, and, last (audit leaves a cost behind), the audit peers.
# Prints MGB-* lines on the serial console; bench/report parses them. Parameters: /bench/params.

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
ROUNDS=5 ITERS=1000 WARM=20 STORM_PROCS=4 STORM_EXECS=1000 CLOCK=icount PHASES="compare diag storm"
COMPARE="off floor mg" LATE="" IDLE_S=60 PING_N=20000
. /bench/params
EL=/bench/execloop
NOP=/bench/nop
DEFAULT_POLICY=/etc/minerguard/policy.toml
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

# What the peers share. alive PID: the process runs (gone, or a zombie, which still answers
# kill -0 until it is reaped: no).
alive() {
	_alive_st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)
	[ -n "$_alive_st" ] && [ "${_alive_st%% *}" != Z ]
}
# stop_pid PID: SIGTERM, then up to 10 s for /proc/PID to go; SIGKILL and status 1 if it did
# not (the caller says so).
stop_pid() {
	kill -TERM "$1" 2>/dev/null
	_stop_i=0
	while [ -d "/proc/$1" ] && [ "$_stop_i" -lt 100 ]; do
		sleep 0.1
		_stop_i=$((_stop_i + 1))
	done
	[ -d "/proc/$1" ] || return 0
	kill -KILL "$1"
	return 1
}

# The peers (bench/peers/NAME.sh, laid over as /bench/peers/): each defines NAME_start (start
# it, and return once it is in force, judged from kernel state), NAME_stop and NAME_pids (its
# processes, for their memory; none for a kernel-only peer).
for _f in /bench/peers/*.sh; do
	# shellcheck disable=SC1090  # the peers staged for this boot
	[ -e "$_f" ] && . "$_f"
done

# The configurations (words of COMPARE and LATE):
#   off            nothing attached
#   mg             minerguard, shipped policy, enforce, the tier it picks (lsm)
#   mg-TIER        the same on another tier (mg-fmod_ret, mg-kill)
#   mg-LAYER       /bench/policy-LAYER.toml: layers added in turn (mg-names, mg-argv, ...),
#                  policy sizes (mg-n10, mg-n10k, mg-n65k); bench/run writes them
#   PEER           a peer of bench/peers
# Every exec measured is the same: the static nop with five ordinary arguments (the argument
# layer reads each one), which no configuration lists.
EXEC_ARGS="-c /etc/app/app.conf --threads 4 --verbose"
CURRENT_PIDS=
cfg_start() {
	CURRENT_PIDS=
	case $1 in
	off | off-late) return 0 ;;
	mg) start_agent mg "$DEFAULT_POLICY" --mode enforce ;;
	mg-fmod_ret | mg-kill | mg-lsm) start_agent "$1" "$DEFAULT_POLICY" --mode enforce --tier "${1#mg-}" ;;
	mg-*) start_agent "$1" "/bench/policy-${1#mg-}.toml" --mode enforce ;;
	*)
		if ! "${1}_start"; then
			echo "MGB-ERROR $1 did not start"
			"${1}_stop" 2>/dev/null
			return 1
		fi
		settle
		;;
	esac || return 1
	case $1 in
	mg*) CURRENT_PIDS=$AGENT ;;
	*) CURRENT_PIDS=$("${1}_pids") ;;
	esac
	return 0
}
cfg_stop() {
	case $1 in
	off | off-late) ;;
	mg*) stop_agent ;;
	*) "${1}_stop"; settle ;;
	esac
	CURRENT_PIDS=
}
# rss_of PIDS: their resident memory together, in KiB.
rss_of() {
	_sum=0
	for _p in "$@"; do
		while read -r _k _v _u; do [ "$_k" = VmRSS: ] && _sum=$((_sum + _v)); done < "/proc/$_p/status"
	done
	echo "$_sum"
}
# probe CONFIG: once, what the configuration does to a listed name (/bench/xmrig, a copy of
# the nop): exit status 126 (exec refused), 137 (killed) or 0 (ran); and its memory.
PROBED=" "
probe() {
	case $PROBED in *" $1 "*) return ;; esac
	PROBED="$PROBED$1 "
	/bench/xmrig > /dev/null 2>&1
	_rc=$?
	# shellcheck disable=SC2086  # a list of pids
	echo "MGB-PROBE config=$1 xmrig_rc=$_rc pids=$(echo $CURRENT_PIDS | tr ' ' ,) rss_kb=$(rss_of $CURRENT_PIDS)"
}
# measure TAG ROUND CONFIG: one timed exec loop.
measure() {
	# shellcheck disable=SC2086  # the arguments are words
	$EL "$WARM" "$NOP" $EXEC_ARGS > /dev/null
	# shellcheck disable=SC2086
	echo "MGB-$1 round=$2 config=$3 $($EL "$ITERS" "$NOP" $EXEC_ARGS)"
}
# rounds TAG CONFIGS: ROUNDS rounds of every configuration, the order rotated every round so
# that a drift over the boot favours none.
rounds() {
	_tag=$1 _list=$2 _r=1
	while [ "$_r" -le "$ROUNDS" ]; do
		for _c in $_list; do
			cfg_start "$_c" || continue
			probe "$_c"
			measure "$_tag" "$_r" "$_c"
			cfg_stop "$_c"
		done
		_list="${_list#* } ${_list%% *}"
		_r=$((_r + 1))
	done
}

# hash: the first exec of a new file costs IMA hashing it: HASH_FILES fresh copies of the
# nop, each exec'd once, with the agent off and on (the copies cost the same both times).
HASH_FILES=20
run_hash() {
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

# prog_stats PID: "run_cnt=N run_time_ns=T" summed over the BPF programs PID holds.
prog_stats() {
	for _fd in /proc/"$1"/fdinfo/*; do
		grep -q '^prog_type:' "$_fd" 2>/dev/null && cat "$_fd"
	done | awk '/^run_time_ns:/ { t += $2 } /^run_cnt:/ { c += $2 } END { printf "run_cnt=%d run_time_ns=%d", c, t }'
}
# switches PIDS: context switches of every thread of PIDS so far (voluntary and not).
switches() {
	for _p in "$@"; do
		cat /proc/"$_p"/task/*/status 2>/dev/null
	done | awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

# Let the boot's deferred work finish (with sleep=off an idle guest costs no host time).
[ -d /sys/module/overlay ] || insmod /lib/modules/overlay.ko 2>/dev/null || echo "MGB-NOTE overlay.ko not loaded: no drift"
sleep 10

# 0. Warm-up: the first loop after boot runs ~1% slower (caches of a fresh system); not counted.
phase compare && measure WARMUP 0 off

# 1. Exec cost of every configuration, alternating.
phase compare && rounds EXEC "$COMPARE"

# 2. The first exec of a new file with content hashes on.
phase hash && run_hash

# 3. Where the instructions go: the programs' own run time (kernel.bpf_stats_enabled; under
#    icount, ns are instructions), all of a configuration's programs together (the exec
#    hook, and whatever else runs during an exec: mmap, arguments, context switches). Kept apart from the rounds above because the
#    stats themselves cost a little on every run.
if phase diag; then
	if echo 1 > /proc/sys/kernel/bpf_stats_enabled 2>/dev/null; then
		for c in $DIAG; do
			cfg_start "$c" || continue
			# shellcheck disable=SC2086
			$EL "$WARM" "$NOP" $EXEC_ARGS > /dev/null
			pid=${CURRENT_PIDS%% *}
			before=$(prog_stats "$pid")
			bpftool -j prog show > /tmp/progs.before 2>/dev/null
			# shellcheck disable=SC2086
			out=$($EL "$ITERS" "$NOP" $EXEC_ARGS)
			bpftool -j prog show > /tmp/progs.after 2>/dev/null
			echo "MGB-HOOK config=$c $(echo "$before" | sed 's/\([a-z_]*\)=/before_\1=/g') $(prog_stats "$pid") $out"
			# The same split by program (those that ran during the loop; the snapshots
			# bracket it, so only the loop's execs and the second bpftool's own count).
			jq -r --arg c "$c" --slurpfile b /tmp/progs.before '.[] as $a
				| ([$b[0][] | select(.id == $a.id)][0] // {}) as $p
				| select(($a.run_cnt // 0) > ($p.run_cnt // 0))
				| "MGB-PROG config=\($c) name=\($a.name) type=\($a.type) runs=\(($a.run_cnt // 0) - ($p.run_cnt // 0)) ns=\(($a.run_time_ns // 0) - ($p.run_time_ns // 0))"' \
				/tmp/progs.after 2>/dev/null
			cfg_stop "$c"
		done
		echo 0 > /proc/sys/kernel/bpf_stats_enabled
	else
		echo "MGB-NOTE kernel.bpf_stats_enabled not available"
	fi
	# The daemon's share while idle: the same policy with the daemon running and frozen
	# (SIGSTOP; the hook stays attached), alternating.
	if start_agent mg "$DEFAULT_POLICY" --mode enforce; then
		for i in 1 2 3; do
			measure DAEMON "$i" running
			kill -STOP "$AGENT"
			measure DAEMON "$i" frozen
			kill -CONT "$AGENT"
		done
		stop_agent
	fi
fi

# 4. The idle daemon: its threads' context switches while nothing happens, over IDLE_S
#    seconds of guest time (free under icount: an idle guest costs no host time).
if phase idle; then
	for c in $IDLE; do
		cfg_start "$c" || continue
		sleep 2
		# shellcheck disable=SC2086
		s0=$(switches $CURRENT_PIDS) t0=$(now)
		sleep "$IDLE_S"
		# shellcheck disable=SC2086
		s1=$(switches $CURRENT_PIDS) t1=$(now)
		# shellcheck disable=SC2086
		echo "MGB-IDLE config=$c threads=$(cat /proc/${CURRENT_PIDS%% *}/status | awk '/^Threads:/ { print $2 }') switches=$((s1 - s0)) ns=$((t1 - t0))"
		cfg_stop "$c"
	done
fi

# 5. Context switches: a pipe ping-pong (every round trip two switches and two FPU restores,
#    each running the behaviour program), with nothing attached, the shipped policy, and the
#    shipped policy with the behaviour layer off.
if phase switch; then
	r=1 list="off mg mg-nobehavior"
	while [ "$r" -le "$ROUNDS" ]; do
		for c in $list; do
			cfg_start "$c" || continue
			/bench/pingpong 1000 > /dev/null
			echo "MGB-SWITCH round=$r config=$c ns_per_round_trip=$(/bench/pingpong "$PING_N")"
			cfg_stop "$c"
		done
		list="${list#* } ${list%% *}"
		r=$((r + 1))
	done
fi

# 6. Audit-mode storm of a listed name (/bench/xmrig, a copy of nop) from several processes,
#    every event written (--storm-window 0), with every layer of the shipped policy: events
#    delivered and lost, the daemon's memory and CPU per event.
if phase storm && start_agent storm "$DEFAULT_POLICY" --mode audit --storm-window 0; then
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
	# shellcheck disable=SC2086
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
	sleep 0.5
	ev1=$(count_lines /tmp/events)
	ticks1=$(cpu_ticks) cpuns1=$(cpu_ns)
	fails=$(cat /tmp/storm.* | sed -n 's/.*fails=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
	lost=$(lost_total)
	hz=100   # USER_HZ on x86
	echo "MGB-STORM procs=$STORM_PROCS execs=$((STORM_PROCS * STORM_EXECS)) fails=$fails storm_ns=$((t1 - t0)) drain_ns=$((t2 - t1)) events=$((ev1 - ev0)) lost=${lost:-0} rss_idle_kb=$rss_idle rss_storm_kb=$rss_max cpu_ticks=$((ticks1 - ticks0)) clk_tck=$hz cpu_ns=$((cpuns1 - cpuns0))"
	stop_agent
fi

# 7. Last: peers that leave a cost behind them (audit: once enabled in a boot, every new task
#    gets an audit context), in rounds against "off-late" (nothing attached, after them).
if phase late && [ -n "$LATE" ]; then
	rounds LATE "off-late $LATE"
fi

echo "MGB-DONE"
poweroff -f
