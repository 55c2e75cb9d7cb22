# --mode audit overrides the policy's enforce: the miner runs to completion, one audited event.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
start_agent /tmp/policy.toml --mode audit
cp /bin/sleep /tmp/xmrig
try_exec run_as_tester /mg/pidexec /tmp/xmrig 1
expect_ran "/tmp/xmrig 1 in audit mode"
awk -v s="$EXEC_SECS" 'BEGIN { exit !(s >= 0.9) }' || fail "xmrig 1 took $EXEC_SECS s: it did not really run"
expect_events 1 action=audited mode=audit matched_name=xmrig "pid:=$EXEC_PID" uid:=1000
expect_events 1
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
