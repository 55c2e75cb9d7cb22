# A full ring buffer loses events, never enforcement, and never silently: with no agent
# reading, more blocked execs than the ring buffer holds; each was still denied, the loss
# shows in `status` and in the next agent's log.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/sleep /tmp/xmrig
start_agent /tmp/policy.toml
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=
# The ring buffer holds 1 MiB / 592-byte records (584-byte event + header): about 1,770.
n=0 ran=0
while [ "$n" -lt 2600 ]; do
	/tmp/xmrig 0 2>/dev/null && ran=$((ran + 1))
	n=$((n + 1))
done
echo "$n execs with no agent running, $ran ran"
[ "$ran" = 0 ] || fail "$ran execs ran"
minerguard status --json >/tmp/status.json
cat /tmp/status.json
lost=$(jq -r '.counters.lost' /tmp/status.json)
[ "${lost:-0}" -gt 0 ] || fail "status shows no lost events after $n blocked execs"
jq -e '.counters.blocked == 2600' /tmp/status.json >/dev/null || fail "status does not count 2600 blocked execs"
EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
wait_for_log '"lost_total":'"$lost" || fail "the new agent's log does not report the $lost lost events"
sleep 2
got=$(count_events action=blocked)
echo "MG-FIGURE lost: $n blocked with no agent, $got reported after restart, $lost lost"
[ "$((got + lost))" = "$n" ] || fail "$got reported + $lost lost != $n blocked"
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
