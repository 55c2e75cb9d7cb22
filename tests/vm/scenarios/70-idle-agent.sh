# An idle agent costs the node no wake-up (issue 15): with no event, signal or storm due, none
# of its threads runs, yet a signal (SIGHUP, `minerguard mode`, SIGTERM) is handled at once
# and an exec is still reported.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
start_agent /tmp/policy.toml
# switches: context switches of all the agent's threads so far.
switches() {
	cat /proc/"$AGENT_PID"/task/*/status | awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}
sleep 1
s0=$(switches)
sleep 5
s1=$(switches)
echo "  idle for 5 s: $((s1 - s0)) context switches over $(ls /proc/"$AGENT_PID"/task | wc -l) threads"
[ "$((s1 - s0))" = 0 ] || fail "the idle agent woke $((s1 - s0)) times in 5 s"

# A signal still ends the wait at once.
printf 'mode = "enforce"\nnames = ["xmrig", "minerd"]\n' > /tmp/policy.toml
kill -HUP "$AGENT_PID"
wait_log() {
	_i=0
	while ! grep -q "$1" "$AGENT_LOG"; do
		_i=$((_i + 1))
		[ "$_i" -ge 50 ] && fail "no '$1' in the log 5 s after $2: $(tail -n 3 "$AGENT_LOG")"
		sleep 0.1
	done
}
wait_log '"policy reloaded"' SIGHUP
minerguard mode audit > /tmp/mode.out 2>&1 || fail "minerguard mode audit failed: $(cat /tmp/mode.out)"
wait_log '"mode changed at runtime"' "minerguard mode audit"
minerguard mode enforce > /tmp/mode.out 2>&1 || fail "minerguard mode enforce failed: $(cat /tmp/mode.out)"
cp /bin/true /tmp/minerd
try_exec /mg/pidexec /tmp/minerd 0
expect_blocked "minerd, listed by the reload"
expect_events 1 "pid:=$EXEC_PID" matched_name=minerd
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
