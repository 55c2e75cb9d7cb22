# SIGHUP reloads the policy: a valid one applies; an invalid one is rejected with a log
# line and the old policy (names and mode) stays in force.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
cp /bin/sleep /tmp/minerd
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig (listed)"
try_exec /mg/pidexec /tmp/minerd 0
expect_ran "minerd before it is listed"

write_policy /tmp/policy.toml enforce xmrig minerd
minerguard check /tmp/policy.toml >/tmp/check.out 2>&1 || fail "check rejects a valid policy: $(cat /tmp/check.out)"
kill -HUP "$AGENT_PID"
wait_for_log "policy reloaded" || fail "no 'policy reloaded' log line after SIGHUP"
try_exec /mg/pidexec /tmp/minerd 0
expect_blocked "minerd after the reload"
expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED matched_name=minerd

# Invalid: a name with a slash can never be a file name. Its mode would also flip to audit
# if the agent applied it even in part.
write_policy /tmp/policy.toml audit bad/name
if minerguard check /tmp/policy.toml >/tmp/check.out 2>&1; then
	fail "minerguard check accepts names = [\"bad/name\"]"
fi
kill -HUP "$AGENT_PID"
wait_for_log "rejected" || fail "no log line saying the invalid policy was rejected"
kill -0 "$AGENT_PID" 2>/dev/null || fail "agent died on an invalid policy"
[ "$(grep -c "policy reloaded" "$AGENT_LOG")" = 1 ] || fail "the invalid policy was logged as reloaded"
for name in xmrig minerd; do
	try_exec /mg/pidexec "/tmp/$name" 0
	expect_blocked "$name after the rejected reload"
	expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED mode=enforce "matched_name=$name"
done
expect_events 4
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
