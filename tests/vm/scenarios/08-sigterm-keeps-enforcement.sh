# SIGTERM stops the agent (exit 0) but not the enforcement: the pinned link keeps blocking,
# `minerguard status` says so, and `minerguard disable` is what lifts it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig while the agent runs"
stop_agent || fail "agent exited with status $? on SIGTERM (want 0)"
grep -qi panic "$AGENT_LOG" && fail "agent log mentions a panic"
wait_for_log "enforcement stays in place" || fail "the agent did not say enforcement stays"

try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig after the agent stopped"
minerguard status --json >/tmp/status.json; rc=$?
echo "status ($rc): $(cat /tmp/status.json)"
[ "$rc" = 0 ] || fail "status exited $rc while the pinned program enforces"
jq -e '.enforcing == true' /tmp/status.json >/dev/null || fail "status does not say enforcing"
jq -e '.agent_pid == null' /tmp/status.json >/dev/null || fail "status names an agent that is gone"
jq -e ".counters.$BLOCKED == 2" /tmp/status.json >/dev/null || fail "status does not count the 2 $BLOCKED execs"
jq -e ".tier == \"$MG_EXPECT_TIER\"" /tmp/status.json >/dev/null || fail "status does not name the $MG_EXPECT_TIER tier"

minerguard disable >/tmp/disable.out 2>&1 || fail "minerguard disable failed: $(cat /tmp/disable.out)"
echo "disable: $(cat /tmp/disable.out)"
[ ! -e /sys/fs/bpf/minerguard ] || fail "pins left after disable: $(find /sys/fs/bpf/minerguard)"
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig after minerguard disable"
minerguard status >/tmp/status.out; rc=$?
[ "$rc" = 3 ] || fail "status exited $rc after disable (want 3): $(cat /tmp/status.out)"
pass
