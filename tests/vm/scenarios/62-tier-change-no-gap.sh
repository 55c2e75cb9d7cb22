# A restart onto another tier leaves no gap: while a loop keeps exec'ing a listed name, the
# agent is SIGKILLed and started again on lsm, then kill, then fmod_ret (each new program
# attaches before the old pin goes). No exec runs; status and the events name the tier in
# force; the mmap and file-open checks' pins go with the kill tier and come back with fmod_ret.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/sleep /tmp/xmrig

MG_TIER=lsm MG_EXPECT_TIER=lsm
start_agent /tmp/policy.toml
exec_loop /tmp/xmrig &
loop=$!
sleep 2
for tier in kill fmod_ret; do
	kill -KILL "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
	sleep 1    # the pinned program of the old tier enforces alone
	EVENTS=/tmp/events-$tier.jsonl AGENT_LOG=/tmp/agent-$tier.log
	MG_TIER=$tier MG_EXPECT_TIER=$tier
	start_agent /tmp/policy.toml
	[ "$(minerguard status --json | jq -r .tier)" = "$tier" ] || fail "status does not say $tier after the restart"
	if [ "$tier" = kill ]; then
		for pin in mmap-link open-link; do
			[ ! -e "/sys/fs/bpf/minerguard/$pin" ] || fail "the lsm tier's $pin pin outlived it on the kill tier"
		done
		want=killed
	else
		for pin in mmap-link open-link; do
			[ -e "/sys/fs/bpf/minerguard/$pin" ] || fail "no $pin pin on the fmod_ret tier"
		done
		want=blocked
	fi
	wait_for_event matched_name=xmrig "action=$want" "tier=$tier" ||
		fail "no $want event from the $tier tier within 10 s"
	sleep 1
done
touch /tmp/stop-loop
wait "$loop"
stop_agent || fail "agent exited with status $? on SIGTERM"
attempts=$(grep -c . /tmp/loop.out)
ran=$(grep -c '^ok$' /tmp/loop.out)
echo "MG-FIGURE tier change: $attempts execs attempted across lsm -> kill -> fmod_ret, $ran ran"
[ "$attempts" -ge 20 ] || fail "only $attempts execs attempted: the loop did not run"
[ "$ran" = 0 ] || fail "$ran of $attempts execs ran while the agent changed tiers"
minerguard disable >/dev/null || fail "disable failed"
pass
