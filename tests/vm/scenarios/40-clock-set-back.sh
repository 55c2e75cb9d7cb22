# The clock set back as far as the kernel allows while events are queued: the agent reports
# them with the time the clock now implies (1970-01-01, seconds after the epoch), keeps
# running and reports later events. The kernel refuses a wall clock earlier than the time
# since boot ("date: can't set date: Invalid argument" for `date -s @1`), so an event's time
# computed from CLOCK_BOOTTIME can fall before 1970 only across a suspend; that case, which
# made the time formatter panic inside libbpf's callback (the agent aborted without marking
# the record read, and every restart died on it), is covered by the unit tests
# (enrich.rs, output.rs) with injected clocks.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/sleep /tmp/xmrig
# Put the clock back afterwards (the next scenarios), pass or fail.
saved=$(date +%s) up0=$(cut -d. -f1 /proc/uptime)
# shellcheck disable=SC2317  # called by the EXIT trap
restore_clock() { date -s "@$((saved + $(cut -d. -f1 /proc/uptime) - up0))" >/dev/null; }
trap restore_clock EXIT

start_agent /tmp/policy.toml
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
try_exec /mg/pidexec /tmp/xmrig 0        # no agent: denied by the pinned program, queued
expect_blocked "xmrig with no agent running"
queued=$EXEC_PID
sleep 3
# The earliest the kernel accepts: the time since boot, plus a margin.
date -s "@$(($(cut -d. -f1 /proc/uptime) + 2))" >/dev/null || fail "cannot set the clock"
echo "clock set to $(date -u +%Y-%m-%dT%H:%M:%SZ)"

EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
wait_for_event "pid:=$queued" || fail "the event queued before the clock change was not reported"
ev=$(events_where "pid:=$queued")
echo "  event: $ev"
events_where "pid:=$queued" '.time | startswith("1970-01-01T00:")' >/dev/null ||
	fail "the queued event's time is not just after the epoch: $ev"
kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent died on an event from just after the epoch"

try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig after the clock change"
expect_exec_event enforce both xmrig xmrig '.time | startswith("1970-01-01T")'
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null || fail "disable failed"
pass
