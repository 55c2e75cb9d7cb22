# The seed's simulation (LAB-003), run under the agent with the shipped policy, shown to a
# human: every line meant for them starts with MG-DEMO, which tests/vm/run prints.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
say() { printf 'MG-DEMO %s\n' "$*"; }

say "kernel $(uname -r), active LSMs: $(cat /sys/kernel/security/lsm)"
say "\$ minerguard run --policy /etc/minerguard/policy.toml"
start_agent /etc/minerguard/policy.toml
say "agent: $(grep -F '"minerguard ready"' "$AGENT_LOG")"
say "\$ cp /bin/sleep /tmp/xmrig; /tmp/xmrig 300"
cp /bin/sleep /tmp/xmrig
try_exec /tmp/xmrig 300
say "$EXEC_ERR"
say "exit status $EXEC_RC after $EXEC_SECS s"
expect_blocked "/tmp/xmrig"
wait_for_event action=blocked matched_name=xmrig || fail "no blocked event"
say "event on the agent's stdout:"
while read -r line; do say "  $line"; done < "$EVENTS"
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
