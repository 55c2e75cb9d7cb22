# SIGTERM: the agent exits 0 and leaves nothing attached: the miner it blocked now runs.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig while the agent runs"
stop_agent || fail "agent exited with status $? on SIGTERM (want 0)"
grep -qi panic "$AGENT_LOG" && fail "agent log mentions a panic"
echo "bpffs after stop: $(find /sys/fs/bpf -mindepth 1 | tr '\n' ' ')"
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig after the agent stopped"
pass
