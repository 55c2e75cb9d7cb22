# A program whose name is not listed runs untouched and leaves no event at all.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/innocent
try_exec run_as_tester /mg/pidexec /tmp/innocent 1
expect_ran "/tmp/innocent 1"
awk -v s="$EXEC_SECS" 'BEGIN { exit !(s >= 0.9) }' || fail "innocent 1 took $EXEC_SECS s: it did not really run"
innocent_pid=$EXEC_PID
# Events arrive asynchronously: a blocked xmrig afterwards proves the agent is active and
# that an event for the innocent exec, queued before it, would have arrived by now.
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "/tmp/xmrig (sentinel)"
expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED
[ "$(count_events "pid:=$innocent_pid")" = 0 ] || fail "an event names the innocent pid $innocent_pid"
[ "$(count_events 'any(.. | strings; contains("innocent"))')" = 0 ] || fail "an event mentions innocent"
expect_events 1
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
