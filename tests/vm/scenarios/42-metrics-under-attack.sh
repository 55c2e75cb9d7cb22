# The metrics endpoint against a local user: the port taken before the agent starts (the
# agent starts anyway and serves once it is free), thousands of idle connections, an endless
# header line. The agent stays enforcing, its threads and memory stay bounded, and /metrics
# answers afterwards. (tiny_http made the agent exit on a taken port, ran a thread per idle
# connection and buffered a header without limit.)
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
ip link set lo up
write_policy /tmp/policy.toml enforce xmrig
cp /bin/sleep /tmp/xmrig
threads() { sed -n 's/^Threads:[[:space:]]*//p' "/proc/$AGENT_PID/status"; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$AGENT_PID/status"; }
# Not wget -T: busybox's static wget crashes (SIGSEGV) with it.
scrape() { timeout 10 wget -q -O /tmp/metrics.txt http://127.0.0.1:9464/metrics; }
scrape_within() {   # scrape_within TENTHS
	_i=0
	until scrape; do
		_i=$((_i + 1))
		[ "$_i" -ge "$1" ] && return 1
		sleep 0.1
	done
}

nc -l -p 9464 >/dev/null 2>&1 &
squatter=$!
sleep 0.5
start_agent /tmp/policy.toml --metrics-addr 127.0.0.1:9464
wait_for_log 'cannot bind the metrics endpoint' || fail "no log of the taken port"
try_exec /tmp/xmrig 0
expect_blocked "xmrig while the metrics port is taken"
kill "$squatter"
scrape_within 150 || fail "no metrics 15 s after the port was freed"
grep -qx 'minerguard_enforcing 1' /tmp/metrics.txt || fail "metrics do not say enforcing"
t0=$(threads) r0=$(rss)
echo "agent before the attack: $t0 threads, $r0 KiB resident"
# Capabilities belong to threads: none of the agent's (output, log, metrics) may keep what the
# agent dropped once ready.
main_caps=$(sed -n 's/^CapEff:[[:space:]]*//p' "/proc/$AGENT_PID/status")
for task in /proc/"$AGENT_PID"/task/*; do
	caps=$(sed -n 's/^CapEff:[[:space:]]*//p' "$task/status")
	[ "$caps" = "$main_caps" ] || fail "thread $(cat "$task/comm") has capabilities $caps, the agent $main_caps"
done
echo "every thread has the agent's capabilities ($main_caps)"

/mg/bin/mgconns 9464 idle 3000 30 &
conns=$!
/mg/bin/mgconns 9464 endless 256
sleep 5
t1=$(threads) r1=$(rss)
echo "agent during the attack: $t1 threads, $r1 KiB resident"
try_exec /tmp/xmrig 0
expect_blocked "xmrig during the attack"
minerguard status >/dev/null || fail "status exited $? during the attack"
kill "$conns"
wait "$conns" 2>/dev/null
scrape_within 300 || fail "no metrics 30 s after the attack"
grep -qx 'minerguard_enforcing 1' /tmp/metrics.txt || fail "metrics do not say enforcing after the attack"
t2=$(threads) r2=$(rss)
echo "MG-FIGURE metrics attack: threads $t0 -> $t1 -> $t2, RSS $r0 -> $r1 -> $r2 KiB"
[ "$t1" -le "$t0" ] || fail "threads grew from $t0 to $t1 under the attack"
[ "$r1" -le $((r0 + 16384)) ] || fail "RSS grew from $r0 to $r1 KiB under the attack"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null || fail "disable failed"
pass
