# `minerguard mode` flips a running agent between audit and enforce, effective next exec.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml audit xmrig minerd
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig in audit mode"
expect_events 1 "pid:=$EXEC_PID" action=audited mode=audit

minerguard mode enforce >/tmp/mode.out 2>&1 || fail "minerguard mode enforce failed: $(cat /tmp/mode.out)"
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig after 'mode enforce'"
expect_events 1 "pid:=$EXEC_PID" action=$BLOCKED mode=enforce

minerguard mode audit >/tmp/mode.out 2>&1 || fail "minerguard mode audit failed: $(cat /tmp/mode.out)"
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig after 'mode audit'"
expect_events 1 "pid:=$EXEC_PID" action=audited mode=audit
expect_events 3
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
