# What an operator reads: `minerguard status` (text and --json) and the Prometheus endpoint.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
ip link set lo up
write_policy /tmp/policy.toml audit xmrig minerd cpuminer
start_agent /tmp/policy.toml --metrics-addr 127.0.0.1:9464
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig in audit mode"
expect_events 1 action=audited
matched=$(jq -r 'select(.action == "audited") | .matched_on' "$EVENTS" | head -n 1)
# The agent publishes its counts for `status` on the loop's next turn, just after the event.
i=0
until minerguard status --json | jq -e ".events.audited.\"$matched\" == 1" >/dev/null; do
	i=$((i + 1))
	[ "$i" -ge 50 ] && fail "status --json never counts the audited event under matched_on=$matched"
	sleep 0.1
done

minerguard status >/tmp/status.out || fail "status exited $? while enforcing"
cat /tmp/status.out
grep -q "^enforcement: active" /tmp/status.out || fail "status text does not say active"
grep -q "^agent: *running (pid $AGENT_PID), minerguard " /tmp/status.out || fail "status text does not name the agent pid $AGENT_PID and its build"
grep -qF "events:      1 audited ($matched 1) since the agent started" /tmp/status.out || fail "status text does not count the event"
minerguard status --json >/tmp/status.json || fail "status --json exited $?"
VERSION_JSON=$(minerguard version --json); export VERSION_JSON
cat /tmp/status.json
for want in '.enforcing == true' '.mode == "audit"' '.names == 3' ".agent_pid == $AGENT_PID" \
	'.counters.audited == 1' '.counters.blocked == 0' '.counters.lost == 0' \
	'.agent_version == (env.VERSION_JSON | fromjson | .version)' \
	'.agent_commit == (env.VERSION_JSON | fromjson | .commit)'; do
	jq -e "$want" /tmp/status.json >/dev/null || fail "status --json fails $want"
done

wget -q -O /tmp/metrics.txt http://127.0.0.1:9464/metrics || fail "no metrics on 127.0.0.1:9464"
cat /tmp/metrics.txt
for want in 'minerguard_execs_audited_total 1' 'minerguard_execs_blocked_total 0' 'minerguard_policy_names 3' \
	'minerguard_enforcing 1' 'minerguard_enforce_mode 0' '# TYPE minerguard_events_lost_total counter'; do
	grep -qxF "$want" /tmp/metrics.txt || fail "metrics lack '$want'"
done
# The event counted under the event's own action and matched_on; the build as `version` says.
grep -qxF "minerguard_events_total{action=\"audited\",matched_on=\"$matched\"} 1" /tmp/metrics.txt ||
	fail "metrics do not count the audited event under matched_on=$matched"
grep -qxF "minerguard_events_total{action=\"blocked\",matched_on=\"$matched\"} 0" /tmp/metrics.txt ||
	fail "metrics lack the blocked series at 0"
build=$(minerguard version --json | jq -r '"minerguard_build_info{version=\"\(.version)\",commit=\"\(.commit)\"} 1"')
grep -qxF "$build" /tmp/metrics.txt || fail "metrics lack '$build'"
checked=$(sed -n 's/^minerguard_execs_checked_total //p' /tmp/metrics.txt)
[ "${checked:-0}" -ge 1 ] || fail "execs_checked_total is ${checked:-missing}"
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
