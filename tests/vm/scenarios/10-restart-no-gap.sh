# The worst minute: the agent is SIGKILLed and restarted, twice, while a loop keeps
# exec'ing a listed name. Every exec must be blocked (expected successes: zero), and every
# blocked exec must reach an agent's event stream (the restarted agent drains what queued
# while none ran) or be counted as lost.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/sleep /tmp/xmrig

start_agent /tmp/policy.toml
exec_loop /tmp/xmrig &
loop=$!
sleep 2
for round in 1 2; do
	kill -KILL "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
	echo "round $round: agent killed"
	sleep 2    # execs while no agent runs
	EVENTS=/tmp/events-$round.jsonl
	AGENT_LOG=/tmp/agent-$round.log
	start_agent /tmp/policy.toml
	wait_for_log "adopted the pinned program" || fail "round $round: the new agent did not adopt the pins"
	sleep 2
done
touch /tmp/stop-loop
wait "$loop"
sleep 1
stop_agent || fail "agent exited with status $? on SIGTERM"

attempts=$(grep -c . /tmp/loop.out)
ran=$(grep -c '^ok$' /tmp/loop.out)
# An event an agent wrote just before it was killed (not yet marked as read) would be
# delivered again to the next one: such duplicates sit at the end of one file and the start
# of the next, and are counted once (by pid: 1,000 events are far fewer than the pids the
# loop goes through before one is reused).
files="/tmp/events.jsonl /tmp/events-1.jsonl /tmp/events-2.jsonl"
total=0 dupes=0 prev=
for f in $files; do
	EVENTS=$f
	events_where matched_name=xmrig | jq .pid > "$f.pids"
	total=$((total + $(grep -c . "$f.pids")))
	if [ -n "$prev" ]; then
		# (busybox has no comm)
		tail -n 1000 "$prev.pids" > /tmp/tail.pids
		dupes=$((dupes + $(head -n 1000 "$f.pids" | awk 'NR == FNR { seen[$1] = 1; next } seen[$1]' /tmp/tail.pids - | sort -u | grep -c .)))
	fi
	prev=$f
done
events=$((total - dupes))
lost=$(minerguard status --json | sed -n 's/.*"lost":\([0-9]*\).*/\1/p')
echo "MG-FIGURE restart: $attempts execs attempted, $ran ran, $((attempts - ran)) blocked; $events events reported, ${lost:-?} lost"
[ "$attempts" -ge 20 ] || fail "only $attempts execs attempted: the loop did not run"
[ "$ran" = 0 ] || fail "$ran of $attempts execs ran while the agent restarted"
[ "$((events + lost))" = "$attempts" ] ||
	fail "$attempts blocked execs but $events events ($total, $dupes delivered twice) + $lost lost"
minerguard disable >/dev/null || fail "disable failed"
pass
