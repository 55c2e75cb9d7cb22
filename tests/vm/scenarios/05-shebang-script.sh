# A script whose interpreter is a miner ("#!/tmp/xmrig") is blocked when run: the kernel
# execs the interpreter, and that is the file that matches.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
printf '#!/tmp/xmrig\n' > /tmp/job.sh
chmod +x /tmp/job.sh
try_exec /mg/pidexec ./job.sh
expect_blocked "./job.sh (#!/tmp/xmrig)"
expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED matched_name=xmrig matched_on=file
expect_events 1
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
