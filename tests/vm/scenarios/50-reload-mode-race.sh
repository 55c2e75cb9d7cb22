# Reloads and mode changes race with execs (issue 9.1). While one loop execs a listed name
# as fast as it can, reloads flip the policy between names = ["xmrig"] and ["xmrig*"]
# (the exact name and the pattern that covers it) and `minerguard mode enforce` runs in a
# loop. The name is listed before and after every reload, so not one exec may run; and
# `minerguard mode` must never put back an old copy of the rest of the config (the prefix
# flag): after the storm, the kernel enforces what status says.
# (Against the agent before this fix: 2 of 1,559 execs ran in 200 reloads.)
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/true /tmp/xmrig
cp /bin/true /tmp/xmrig-2
start_agent /tmp/policy.toml

mode_loop() {
	while [ ! -f /tmp/stop-loop ]; do minerguard mode enforce >/dev/null 2>&1; done
}
/mg/bin/execcount /tmp/stop-loop /tmp/xmrig > /tmp/loop.out &
loop=$!
mode_loop &
modes=$!
mode_loop &
modes2=$!
reloads=0
round=0
while [ "$round" -lt 100 ]; do
	round=$((round + 1))
	for names in 'xmrig*' xmrig; do
		write_policy /tmp/policy.toml enforce "$names"
		reload_agent
		reloads=$((reloads + 1))
	done
done
touch /tmp/stop-loop
wait "$loop" "$modes" "$modes2"
read -r attempts ran < /tmp/loop.out
echo "MG-FIGURE reload race: $reloads reloads, $attempts execs attempted, $ran ran"
[ "$attempts" -ge 200 ] || fail "only $attempts execs attempted during $reloads reloads"
[ "$ran" = 0 ] || fail "$ran of $attempts execs of a listed name ran during $reloads reloads"

# The last policy is names = ["xmrig"]: status counts one name; the pattern is gone.
minerguard status --json > /tmp/status.json || fail "status failed"
jq -e '.names == 1' /tmp/status.json >/dev/null || fail "status does not count the one name: $(cat /tmp/status.json)"
try_exec /tmp/xmrig-2
expect_ran "xmrig-2 once the pattern is gone"
# And with the pattern listed, a concurrent mode flip must not hide it.
write_policy /tmp/policy.toml enforce 'xmrig*'
reload_agent
minerguard mode enforce >/dev/null || fail "minerguard mode enforce failed"
try_exec /tmp/xmrig-2
expect_blocked "xmrig-2 (pattern xmrig*) after a mode change"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
