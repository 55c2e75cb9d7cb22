# Exactly one agent at a time (issue 9.11): two agents started together, one becomes
# ready and the other refuses; `disable` while an agent is still starting leaves no pins,
# no agent and no enforcement; pins left incomplete (an agent died while pinning) are
# replaced by the next `run` and removed by `disable`.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/true /tmp/xmrig

# Two at once.
minerguard run --policy /tmp/policy.toml --log-format json >/tmp/ev-1 2>/tmp/log-1 &
a=$!
minerguard run --policy /tmp/policy.toml --log-format json >/tmp/ev-2 2>/tmp/log-2 &
b=$!
_i=0
while kill -0 "$a" 2>/dev/null && kill -0 "$b" 2>/dev/null; do
	_i=$((_i + 1))
	[ "$_i" -ge 600 ] && fail "both agents still running after 60 s"
	sleep 0.1
done
if kill -0 "$a" 2>/dev/null; then winner=$a loser=$b loser_log=/tmp/log-2 winner_log=/tmp/log-1
else winner=$b loser=$a loser_log=/tmp/log-1 winner_log=/tmp/log-2; fi
wait "$loser"
rc=$?
[ "$rc" = 1 ] || fail "the second agent exited with status $rc (want 1)"
grep -q "another minerguard agent (pid $winner) already runs" "$loser_log" ||
	fail "the second agent did not name the first: $(cat "$loser_log")"
AGENT_PID=$winner AGENT_LOG=$winner_log
wait_for_log "minerguard ready" || fail "the first agent never became ready"
try_exec /tmp/xmrig
expect_blocked "xmrig with one agent of two running"
stop_agent || fail "agent exited with status $? on SIGTERM"

# disable while an agent is starting: afterwards, nothing runs, nothing is pinned.
minerguard run --policy /tmp/policy.toml --log-format json >/tmp/ev-3 2>/tmp/log-3 &
c=$!
sleep 0.3
minerguard disable > /tmp/disable.out 2>&1 || fail "disable during a start failed: $(cat /tmp/disable.out)"
wait "$c"
echo "agent started during disable exited with status $?"
[ -e /sys/fs/bpf/minerguard ] && fail "pins left after disable: $(find /sys/fs/bpf/minerguard)"
pidof minerguard && fail "an agent still runs after disable"
minerguard status > /tmp/status.out
[ $? = 3 ] || fail "status after disable does not say inactive: $(cat /tmp/status.out)"
try_exec /tmp/xmrig
expect_ran "xmrig after disable"

# Incomplete pins: an agent killed between pinning two maps leaves some of them.
start_agent /tmp/policy.toml
stop_agent || fail "agent exited with status $? on SIGTERM"
rm /sys/fs/bpf/minerguard/maps-v*/stats
minerguard status > /tmp/status.out 2>&1 && fail "status does not flag incomplete pins: $(cat /tmp/status.out)"
grep -q "incomplete" /tmp/status.out || fail "status does not say the pins are incomplete: $(cat /tmp/status.out)"
EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
try_exec /tmp/xmrig
expect_blocked "xmrig after an agent replaced incomplete pins"
minerguard status >/tmp/status.out 2>&1 || fail "status after the repair: $(cat /tmp/status.out)"
stop_agent || fail "agent exited with status $? on SIGTERM"
rm /sys/fs/bpf/minerguard/maps-v*/names
minerguard disable > /tmp/disable.out 2>&1 || fail "disable with incomplete pins failed: $(cat /tmp/disable.out)"
[ -e /sys/fs/bpf/minerguard ] && fail "pins left after disable: $(find /sys/fs/bpf/minerguard)"
try_exec /tmp/xmrig
expect_ran "xmrig after disable removed incomplete pins"
pass
