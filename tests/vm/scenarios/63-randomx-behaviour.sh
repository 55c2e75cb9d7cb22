# The behaviour layer (issue 11): a program that computes like RandomX (its SSE rounding
# mode keeps changing, as RandomX's CFROUND makes it) is killed within seconds of starting
# to hash, whatever its name, with one event saying what was seen; ordinary floating-point
# work and a steady non-default rounding mode (interval arithmetic) run untouched. In audit
# it runs and is reported once; off, nothing; and with the agent killed, the pinned program
# still stops it and the restarted agent reports it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
policy() {   # policy [RANDOMX]: names xmrig and mg-sentinel (lib.sh: sentinel); [behavior] randomx = RANDOMX if given
	printf 'mode = "enforce"\nnames = ["xmrig", "mg-sentinel"]\n' > /tmp/policy.toml
	[ -z "$1" ] || printf '[behavior]\nrandomx = "%s"\n' "$1" >> /tmp/policy.toml
	minerguard check /tmp/policy.toml >/dev/null || fail "check rejects the policy with randomx=$1"
}
cp /mg/bin/mground /tmp/kworker-helper     # an innocent name: nothing listed matches it
cp /mg/bin/mground /tmp/fp-work
cp /mg/bin/mground /tmp/interval
# busy_beside SECONDS: ordinary floating-point work in the background, as on a busy node
# (the layer samples a thread's rounding mode when it is switched back in).
busy_beside() { /tmp/fp-work plain "$1" > /tmp/fp.out 2>&1 & FP=$!; }
# expect_killed_randomx WHAT: the last try_exec started hashing and was killed soon after.
expect_killed_randomx() {
	[ "$EXEC_RC" = 137 ] || fail "$1: not killed (status $EXEC_RC; output $(cat /tmp/exec.out))"
	grep -q hashing /tmp/exec.out || fail "$1: killed before it started hashing"
	awk -v s="$EXEC_SECS" 'BEGIN { exit !(s < 10) }' || fail "$1: killed only after $EXEC_SECS s"
}

policy
start_agent /tmp/policy.toml
grep '"minerguard ready"' "$AGENT_LOG" | grep -q '"randomx":"enforce"' ||
	fail "the ready line does not say randomx follows the enforce mode"

busy_beside 15
try_exec /mg/pidexec /tmp/kworker-helper randomx 60
expect_killed_randomx "the RandomX-like helper"
echo "MG-FIGURE randomx: the synthetic helper killed $EXEC_SECS s after it started (tier $MG_EXPECT_TIER)"
expect_events 1 "pid:=$EXEC_PID" action=killed matched_on=randomx matched_name=randomx \
	hook=context_switch file_name=kworker-helper '.observed.changes >= 16' '.observed.seconds < 10'
killer=$EXEC_PID

try_exec /mg/pidexec /tmp/interval steady 3
expect_ran "a steady non-default rounding mode"
expect_no_event "a steady non-default rounding mode"
wait "$FP" || fail "ordinary floating-point work beside it did not finish: $(cat /tmp/fp.out)"
grep -q done /tmp/fp.out || fail "ordinary floating-point work did not finish"
[ -z "$(pid_events "$FP")" ] || fail "ordinary floating-point work was reported: $(pid_events "$FP")"

# audit: runs to the end, reported once (not once per switch or per change).
policy audit
reload_agent
busy_beside 8
try_exec /mg/pidexec /tmp/kworker-helper randomx 5
expect_ran "the RandomX-like helper with randomx = audit"
expect_events 1 "pid:=$EXEC_PID" action=audited matched_on=randomx
wait "$FP"

# off: nothing.
policy off
reload_agent
busy_beside 6
try_exec /mg/pidexec /tmp/kworker-helper randomx 3
expect_ran "the RandomX-like helper with randomx = off"
expect_no_event "the RandomX-like helper with randomx = off"
wait "$FP"

# The agent killed: the pinned program stops the miner alone; the next agent reports it.
policy
reload_agent
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
busy_beside 30
try_exec /mg/pidexec /tmp/kworker-helper randomx 60
expect_killed_randomx "the RandomX-like helper with no agent running"
kill "$FP" 2>/dev/null
EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
wait_for_event "pid:=$EXEC_PID" action=killed matched_on=randomx ||
	fail "the restarted agent did not report the kill made while no agent ran"
[ "$(count_events "pid:=$killer")" = 0 ] || fail "the restarted agent reported the first kill again"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null || fail "disable failed"
pass
