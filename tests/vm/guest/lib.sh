# shellcheck shell=sh
# Helpers sourced by every scenario (busybox sh, inside the test VM).
# A scenario ends with `pass`, or `fail REASON`; /init turns that into an MG-RESULT line.
# The agent's files live in /tmp, which /init remounts empty for every scenario.

MG_RUN=/run/mg                 # outlives the scenario's /tmp: /init reads the verdict here
EVENTS=/tmp/events.jsonl       # agent stdout: one JSON event per line
AGENT_LOG=/tmp/agent.log       # agent stderr: tracing JSON log lines
AGENT_PID=
cd /tmp || exit 1
# The tier: a suite may force one (mg_tier= on the kernel command line, or MG_TIER in the
# environment: tests/native/run) and says which one the agent must pick (mg_expect_tier=,
# MG_EXPECT_TIER; default: the forced one, else lsm). On the kill tier a listed exec runs and
# is killed before its first instruction (status 137, action "killed") instead of failing
# with EPERM (status 126, action "blocked"): $BLOCKED is the action a scenario expects.
_cmdline_var() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
MG_TIER=${MG_TIER:-$(_cmdline_var mg_tier)}
MG_EXPECT_TIER=${MG_EXPECT_TIER:-$(_cmdline_var mg_expect_tier)}
MG_EXPECT_TIER=${MG_EXPECT_TIER:-${MG_TIER:-lsm}}
if [ "$MG_EXPECT_TIER" = kill ]; then BLOCKED=killed; else BLOCKED=blocked; fi

# ev_filter: conditions on events by JSON field (KEY=STRING, KEY:=JSON, jq EXPR); see there.
# shellcheck source=events.sh
. /mg/events.sh

# fail MSG: record why, show what the agent said and saw, stop. /init prints MG-RESULT with
# the first reason recorded. (On stderr: inside $(...) it still reaches the console.)
fail() {
	{
		echo "FAIL: $*"
		echo "--- agent log ($AGENT_LOG)"; tail -n 40 "$AGENT_LOG" 2>/dev/null
		echo "--- events ($EVENTS)"; tail -n 20 "$EVENTS" 2>/dev/null
		echo "---"
	} >&2
	[ -s "$MG_RUN/reason" ] || echo "$*" > "$MG_RUN/reason"
	[ -n "$AGENT_PID" ] && kill -KILL "$AGENT_PID" 2>/dev/null
	exit 1
}

# pass: the scenario reached its end. /init requires this marker: an early `exit 0` is not a pass.
# A `fail` inside $(...) or a subshell stops only that subshell: its reason still fails the scenario.
pass() {
	[ -s "$MG_RUN/reason" ] && fail "$(head -n 1 "$MG_RUN/reason")"
	[ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null && fail "agent still running at the end (scenario bug: call stop_agent)"
	touch "$MG_RUN/passed"
	exit 0
}

# now: seconds since boot with centiseconds; elapsed T0: seconds since T0 (e.g. "1.02").
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# write_policy FILE MODE NAME...: a small policy file in the agent's format.
write_policy() {
	_f=$1 _mode=$2 _names=
	shift 2
	for _n; do _names="$_names${_names:+, }\"$_n\""; done
	printf 'mode = "%s"\nnames = [%s]\n' "$_mode" "$_names" > "$_f"
}

# start_agent POLICY [ARGS...]: run the agent in the background, wait for its ready line.
# Env: MG_STORM_WINDOW  --storm-window (default 0: every event a line)
start_agent() {
	_policy=$1
	shift
	# Scenarios count events one for one: storms are summarized only where a scenario sets
	# MG_STORM_WINDOW (69-event-storms).
	minerguard run --policy "$_policy" --log-format json ${MG_TIER:+--tier "$MG_TIER"} \
		--storm-window "${MG_STORM_WINDOW:-0}" "$@" >"$EVENTS" 2>"$AGENT_LOG" &
	AGENT_PID=$!
	_t0=$(now)
	# 60 s: under TCG emulation, loading BTF and the BPF objects takes seconds, not milliseconds.
	while ! grep -q '"minerguard ready"' "$AGENT_LOG" 2>/dev/null; do
		if ! kill -0 "$AGENT_PID" 2>/dev/null; then
			wait "$AGENT_PID"
			_rc=$?
			AGENT_PID=
			fail "agent exited (status $_rc) before it was ready"
		fi
		[ "$(elapsed "$_t0" | cut -d. -f1)" -ge "${READY_TIMEOUT:-60}" ] && fail "agent not ready after ${READY_TIMEOUT:-60} s"
		sleep 0.1
	done
	echo "agent ready (pid $AGENT_PID) after $(elapsed "$_t0") s"
	grep '"minerguard ready"' "$AGENT_LOG" | grep -q "\"tier\":\"$MG_EXPECT_TIER\"" ||
		fail "the agent is not on the $MG_EXPECT_TIER tier: $(grep '"minerguard ready"' "$AGENT_LOG")"
}

# stop_agent: SIGTERM, wait (up to 20 s) for the exit; returns the agent's exit status.
stop_agent() {
	kill -TERM "$AGENT_PID" || fail "agent was not running when asked to stop"
	_i=0
	while kill -0 "$AGENT_PID" 2>/dev/null; do
		_i=$((_i + 1))
		[ "$_i" -ge 200 ] && fail "agent still running 20 s after SIGTERM"
		sleep 0.1
	done
	wait "$AGENT_PID"
	_rc=$?
	AGENT_PID=
	return "$_rc"
}

# events_where COND...: the events (compact JSON, one a line) meeting every COND (events.sh:
# KEY=STRING, KEY:=JSON or a jq expression), e.g. events_where action=blocked "pid:=$pid".
# Returns 1 if there is none. An events file that is not JSON fails the scenario.
events_where() { ev_filter "$@"; _ev_jq "$EV_FILTER"; }
count_events() { events_where "$@" | grep -c .; }

# _ev_jq SELECT [OUTPUT]: each event for which the jq expression SELECT is true, printed as the
# jq expression OUTPUT (default: the event). Only whole lines are read: the agent may be
# writing the last one. Returns 1 if there is none.
_ev_jq() {
	[ -s "$EVENTS" ] || return 1
	_nl=$(wc -l < "$EVENTS")
	_out=$(head -n "$((_nl))" "$EVENTS" | jq -c "select($1) | ${2:-.}") ||
		fail "jq cannot select [$1] from $EVENTS (not JSON events?)"
	[ -n "$_out" ] && printf '%s\n' "$_out"
}
# _ev_size: the events file's size in bytes (it only grows: the same size, nothing new).
_ev_size() { [ -f "$EVENTS" ] && wc -c < "$EVENTS"; }
# _ev_poll SELECT [OUTPUT]: events come through a ring buffer, asynchronously: poll ~10 s until
# some event meets SELECT. Then /tmp/mg-ev.out holds what _ev_jq printed, and _EV_SIZE the
# file's size before it was read. jq runs again only when the file has grown (jq starts slowly
# under emulation).
_ev_poll() {
	_i=0 _seen=none
	while :; do
		_EV_SIZE=$(_ev_size)
		if [ "$_EV_SIZE" != "$_seen" ]; then
			_ev_jq "$@" > /tmp/mg-ev.out && return 0
			_seen=$_EV_SIZE
		fi
		_i=$((_i + 1))
		[ "$_i" -ge 100 ] && return 1
		sleep 0.1
	done
}

# reload_agent [SECONDS]: SIGHUP, then wait (default 20 s) until one more "policy reloaded"
# line is logged.
reload_agent() {
	_before=$(grep -c "policy reloaded" "$AGENT_LOG")
	kill -HUP "$AGENT_PID" || fail "agent not running for a reload"
	_t0=$(now)
	until [ "$(grep -c "policy reloaded" "$AGENT_LOG")" -gt "$_before" ]; do
		[ "$(elapsed "$_t0" | cut -d. -f1)" -ge "${1:-20}" ] && fail "reload not applied within ${1:-20} s"
		sleep 0.1
	done
}

# wait_for_event COND...: poll ~10 s for an event meeting every COND.
wait_for_event() { ev_filter "$@"; _ev_poll "$EV_FILTER"; }

# wait_for_log STR: poll the agent log ~20 s for a line containing STR.
wait_for_log() {
	_i=0
	until grep -qF -- "$1" "$AGENT_LOG"; do
		_i=$((_i + 1))
		[ "$_i" -ge 200 ] && return 1
		sleep 0.1
	done
}

# expect_events N COND...: exactly N events match. After the first one, wait 1 s more, so a
# duplicate event, which would arrive just after, is counted too.
expect_events() {
	_n=$1
	shift
	if [ "$_n" -gt 0 ]; then
		wait_for_event "$@" || fail "no event matching [$*] within 10 s"
	fi
	sleep 1
	_ev=$(events_where "$@")
	_got=$(printf '%s' "$_ev" | grep -c .)
	[ "$_got" = "$_n" ] || fail "expected $_n event(s) matching [$*], got $_got"
	[ $# -gt 0 ] && [ -n "$_ev" ] && printf '%s\n' "$_ev" | sed 's/^/  event: /'   # for the console log
	return 0
}

# run_as_tester CMD...: run CMD as tester (uid 1000, gid 1000). busybox here has neither
# setuidgid nor chpst, and its setpriv cannot change uid; su from root needs no password.
# Options go before "--": su permutes options, so a "-c" inside CMD would replace ours.
# On a host (tests/native/run, MG_NATIVE=1) there may be no such user: setpriv sets the ids.
run_as_tester() {
	if [ -n "${MG_NATIVE:-}" ]; then
		setpriv --reuid=1000 --regid=1000 --clear-groups -- "$@"
	else
		su -s /bin/sh -c 'exec "$@"' -- tester sh "$@"
	fi
}

# in_cgroup NAME CMD...: run CMD (a function works too) in cgroup v2 /sys/fs/cgroup/NAME.
# Writing 0 to cgroup.procs moves the writer, i.e. this subshell, and so all it runs.
in_cgroup() {
	mkdir -p "/sys/fs/cgroup/$1"
	(
		echo 0 > "/sys/fs/cgroup/$1/cgroup.procs" || exit 99
		shift
		"$@"
	)
}

# try_exec CMD...: run CMD, keep its status, stderr, duration and the pid /mg/pidexec wrote.
# Typical: try_exec run_as_tester /mg/pidexec /tmp/xmrig 1
try_exec() {
	rm -f /tmp/pid
	_t0=$(now)
	"$@" >/tmp/exec.out 2>/tmp/exec.err
	EXEC_RC=$?
	EXEC_SECS=$(elapsed "$_t0")
	EXEC_ERR=$(cat /tmp/exec.err)
	EXEC_PID=$(cat /tmp/pid 2>/dev/null)
	echo "exec [$*]: status $EXEC_RC in $EXEC_SECS s, pid ${EXEC_PID:-?}${EXEC_ERR:+, stderr: $EXEC_ERR}"
}

# expect_blocked / expect_ran: what a user sees of the last try_exec. Blocked: the exec failed
# with EPERM (status 126), or on the kill tier the process was killed (status 137) and did
# nothing a program's first instruction could have done (no output).
expect_blocked() {
	if [ "$BLOCKED" = killed ]; then
		[ "$EXEC_RC" = 137 ] || fail "$1 was not killed: status $EXEC_RC (want 137), stderr: $EXEC_ERR"
		[ ! -s /tmp/exec.out ] || fail "$1 was killed but wrote: $(head -c 200 /tmp/exec.out)"
		return 0
	fi
	[ "$EXEC_RC" = 126 ] || fail "$1 was not blocked: status $EXEC_RC (want 126), stderr: $EXEC_ERR"
	echo "$EXEC_ERR" | grep -qiE 'not permitted|permission denied' ||
		fail "$1: status 126 but stderr does not say not permitted: $EXEC_ERR"
}
expect_ran() {
	[ "$EXEC_RC" = 0 ] || fail "$1 did not run: status $EXEC_RC, stderr: $EXEC_ERR"
}

# exec_loop PROGRAM: until /tmp/stop-loop exists, run PROGRAM 0, one line per attempt in
# /tmp/loop.out: "ok" if it ran, "denied" if it failed (or was killed). At most ~200 a
# second: on a machine's own kernel (tests/native) an unpaced loop outruns what an agent may
# write (delivery's rate limit) and goes through every pid. Run it in the background.
exec_loop() {
	_n=0
	while [ ! -f /tmp/stop-loop ]; do
		if "$1" 0 2>/dev/null; then echo ok; else echo denied; fi
		_n=$((_n + 1))
		[ $((_n % 20)) = 0 ] && sleep 0.1
	done > /tmp/loop.out
}

# ---- Exec paths, memfd, long names, prefixes, containers (scenarios 20 and up) ----
# The image has static helpers in /mg/bin (tests/vm/helpers): fexec, memfdexec, mgsleep.
# Policies of these scenarios list "mg-sentinel" so that `sentinel` can flush the events.

# action_of MODE: the action an event of a listed exec carries in MODE.
action_of() { if [ "$1" = enforce ]; then echo "$BLOCKED"; else echo audited; fi; }

# set_mode MODE: flip the running agent's mode (`minerguard mode`); the next exec sees it.
set_mode() {
	minerguard mode "$1" >/tmp/mode.out 2>&1 || fail "minerguard mode $1 failed: $(cat /tmp/mode.out)"
	echo "--- mode $1"
}

# expect_outcome MODE WHAT: the last try_exec, of something listed, was blocked (enforce:
# status 126, "not permitted") or ran (audit: status 0).
expect_outcome() {
	if [ "$1" = enforce ]; then expect_blocked "$2 (enforce)"; else expect_ran "$2 (audit)"; fi
}

# expect_exec_event MODE MATCHED_ON MATCHED_NAME FILE_NAME [COND...]: exactly one event comes
# from the last try_exec (its pid, or a child of it: a shell may fork before it execs), and it
# has the action of MODE, these fields and meets each COND. Nothing else comes from that pid.
expect_exec_event() {
	_m=$1 _on=$2 _nm=$3 _fn=$4
	shift 4
	[ -n "$EXEC_PID" ] || fail "expect_exec_event: the last try_exec recorded no pid (use /mg/pidexec)"
	_a=$(action_of "$_m")
	set -- "action=$_a" "mode=$_m" "matched_on=$_on" "matched_name=$_nm" "file_name=$_fn" "$@"
	ev_filter "$@"
	# Each event of the pid as [meets every condition, event].
	_sel="(.pid == $EXEC_PID or .ppid == $EXEC_PID)" _pair="[($EV_FILTER), .]"
	_ev_poll "$_sel" "$_pair" ||
		fail "no event from pid $EXEC_PID (or its child) within 10 s; wanted $_a $_on $_nm $_fn"
	_sz=$_EV_SIZE
	sleep 0.5   # a duplicate would arrive just after
	[ "$(_ev_size)" = "$_sz" ] || _ev_jq "$_sel" "$_pair" > /tmp/mg-ev.out
	_n=$(grep -c . /tmp/mg-ev.out)
	_ev=$(sed 's/^\[[a-z]*,//; s/\]$//' /tmp/mg-ev.out)
	[ "$_n" = 1 ] || fail "expected 1 event from pid $EXEC_PID, got $_n: $_ev"
	if ! grep -q '^\[true,{' /tmp/mg-ev.out; then
		for _c; do
			ev_cond "$_c"
			[ "$(printf '%s\n' "$_ev" | jq "$EV_COND")" = true ] || fail "event from pid $EXEC_PID lacks $_c: $_ev"
		done
		fail "event from pid $EXEC_PID does not meet [$EV_FILTER]: $_ev"
	fi
	echo "  event: $_ev"
}
# pid_events PID: events whose pid or ppid is PID.
pid_events() { events_where "(.pid == $1 or .ppid == $1)"; }

# sentinel: exec /tmp/mg-sentinel (a copy of true; the policy must list mg-sentinel) and wait
# for its event. Events are read in order: once it is in, any earlier exec's event is in too.
sentinel() {
	[ -x /tmp/mg-sentinel ] || cp /bin/true /tmp/mg-sentinel
	sh -c 'echo $$ > /tmp/sentinel.pid; exec /tmp/mg-sentinel' 2>/dev/null
	_sp=$(cat /tmp/sentinel.pid)
	wait_for_event "pid:=$_sp" matched_name=mg-sentinel ||
		fail "no event for the sentinel exec (pid $_sp) within 10 s"
}

# expect_no_event WHAT: the last try_exec (pid and children) produced no event at all.
expect_no_event() {
	[ -n "$EXEC_PID" ] || fail "expect_no_event: the last try_exec recorded no pid (use /mg/pidexec)"
	sentinel
	_ev=$(pid_events "$EXEC_PID")
	[ -z "$_ev" ] || fail "$1 produced an event: $_ev"
	echo "  no event for $1 (pid $EXEC_PID)"
}

# ensure_devfd: /dev/fd -> /proc/self/fd (devtmpfs does not make it; exec of /dev/fd/N needs it).
ensure_devfd() { [ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd; }

# A policy with more keys: write_policy FILE MODE NAMES..., then append top-level keys (scope)
# and then tables ([memfd]) with printf >> FILE; TOML wants top-level keys before tables.

# ---- Containers: Debian's runc in the image, a busybox bundle template in /mg/ctr ----
# ctr_id SEED: a 64-hex container id (Docker's shape), the same for the same SEED.
ctr_id() { printf '%s' "$1" | sha256sum | cut -c1-64; }

# make_bundle DIR ID SCRIPT: an OCI bundle: busybox rootfs whose /bin/sleep is a real static
# program, /job.sh = SCRIPT (run by /bin/sh as the container's process), cgroup
# /sys/fs/cgroup/docker/ID (Docker's cgroupfs layout: the leaf is the bare 64-hex id).
make_bundle() {
	[ -x /usr/sbin/runc ] || fail "runc is not in the image (apt-get install runc on the host)"
	[ -f /mg/ctr/config.json ] || fail "no bundle template /mg/ctr in the image"
	mkdir -p "$1"
	cp -a /mg/ctr/rootfs "$1/rootfs"
	sed "s|@CGROUPS_PATH@|/docker/$2|" /mg/ctr/config.json > "$1/config.json"
	printf '%s\n' "$3" > "$1/rootfs/job.sh"
}

# runc_run ID BUNDLE: run the container in the foreground (--no-pivot: an initramfs root
# cannot pivot_root); its output goes to /tmp/ctr-ID.out and .err; runc's status (the
# container process's, when it ran) is returned and kept in RUNC_RC.
runc_run() {
	_t0=$(now)
	runc run --no-pivot -b "$2" "$1" </dev/null >"/tmp/ctr-$1.out" 2>"/tmp/ctr-$1.err"
	RUNC_RC=$?
	echo "runc run $1: status $RUNC_RC in $(elapsed "$_t0") s; out: $(cat "/tmp/ctr-$1.out"); err: $(cat "/tmp/ctr-$1.err")"
	return "$RUNC_RC"
}

# wait_for_file FILE [TENTHS]: poll until FILE exists (default 30 s).
wait_for_file() {
	_i=0
	until [ -e "$1" ]; do
		_i=$((_i + 1))
		[ "$_i" -ge "${2:-300}" ] && return 1
		sleep 0.1
	done
}
