# A stalled stdout (the journal not reading) delays nothing that matters: with the events'
# reader stopped, a reload still applies and is enforced, a stop still takes seconds, and the
# events that could not be written are counted in the log. (Writing used to happen on the
# event loop: a blocked write held reloads and SIGTERM until systemd's kill.)
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/sleep /tmp/xmrig
cp /bin/sleep /tmp/minerd
# The agent's stdout is a pipe; its reader can be stopped. (start_agent's own redirection is
# a file; the helpers keep reading $EVENTS, the file the reader copies to.)
mkfifo /tmp/events.fifo
cat /tmp/events.fifo > "$EVENTS" &
reader=$!
# --storm-window 0: every event a line (the loop below is a storm the agent would otherwise
# write as two lines, and the pipe would never fill).
minerguard run --policy /tmp/policy.toml --log-format json --storm-window 0 >/tmp/events.fifo 2>"$AGENT_LOG" &
AGENT_PID=$!
wait_for_log '"minerguard ready"' || fail "agent not ready after 20 s"
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig"
expect_exec_event enforce both xmrig xmrig

kill -STOP "$reader"
# More events than the pipe holds (64 KiB, about 100 lines): the output thread blocks.
n=0
while [ "$n" -lt 300 ]; do
	/tmp/xmrig 0 2>/dev/null && fail "xmrig ran while stdout stalled"
	n=$((n + 1))
done
sleep 1
write_policy /tmp/policy.toml enforce xmrig minerd
t0=$(now)
kill -HUP "$AGENT_PID"
wait_for_log '"policy reloaded"' || fail "no reload within 20 s while stdout is stalled"
reload=$(elapsed "$t0")
try_exec /tmp/minerd 0
expect_blocked "minerd, added by the reload while stdout is stalled"
minerguard status --json >/tmp/status.json
cat /tmp/status.json
jq -e '.events_undelivered == 0' /tmp/status.json >/dev/null || fail "status does not show the agent's undelivered count"
t0=$(now)
stop_agent || fail "agent exited with status $? on SIGTERM while stdout is stalled"
stop=$(elapsed "$t0")
grep '"undelivered_total"' "$AGENT_LOG" | tail -n 1
grep -q '"undelivered_total"' "$AGENT_LOG" || fail "the log does not count the events not written"
echo "MG-FIGURE stalled stdout: $n events while stalled; reload applied in $reload s, stop took $stop s"
[ "${stop%.*}" -lt 10 ] || fail "stop took $stop s with stdout stalled"
kill -CONT "$reader"
kill "$reader" 2>/dev/null
minerguard disable >/dev/null || fail "disable failed"
pass
