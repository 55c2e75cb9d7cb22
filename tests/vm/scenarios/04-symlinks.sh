# A symlink cannot hide a miner, nor can naming a link after one dodge the name check:
# matched_on tells which name matched (the file really executed, or the process name).
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
ln -s /tmp/xmrig /tmp/innocent            # innocent name, miner file
try_exec /mg/pidexec /tmp/innocent 0
expect_blocked "/tmp/innocent -> /tmp/xmrig"
expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED matched_name=xmrig matched_on=file
mkdir /tmp/d
ln -s /bin/true /tmp/d/xmrig              # miner name, innocent file
try_exec /mg/pidexec /tmp/d/xmrig
expect_blocked "/tmp/d/xmrig -> /bin/true"
expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED matched_name=xmrig matched_on=process_name
expect_events 2
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
