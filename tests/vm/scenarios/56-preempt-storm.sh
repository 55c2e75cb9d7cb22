# Per-exec state under preemption (issue 9.4): the suite boots with preempt=full on two
# vCPUs (5.10 ignores it: no PREEMPT_DYNAMIC). Four loops exec at once, two of a listed
# name and two of an unlisted one, so execs on one CPU preempt each other in the hook:
# every listed exec must be denied and no unlisted one.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
echo "preemption: $(cat /sys/kernel/debug/sched/preempt 2>/dev/null || grep -o 'preempt=[a-z]*' /proc/cmdline)"
write_policy /tmp/policy.toml enforce xmrig
cp /bin/true /tmp/xmrig
cp /bin/true /tmp/innocent
start_agent /tmp/policy.toml
loop() {
	_n=0
	while [ "$_n" -lt 300 ]; do
		if "$1" 2>/dev/null; then echo ok; else echo denied; fi
		_n=$((_n + 1))
	done > "$2"
}
loop /tmp/xmrig /tmp/l1 & p1=$!
loop /tmp/innocent /tmp/l2 & p2=$!
loop /tmp/xmrig /tmp/l3 & p3=$!
loop /tmp/innocent /tmp/l4 & p4=$!
wait "$p1" "$p2" "$p3" "$p4"
listed_ran=$(cat /tmp/l1 /tmp/l3 | grep -c '^ok$')
unlisted_denied=$(cat /tmp/l2 /tmp/l4 | grep -c '^denied$')
echo "MG-FIGURE preempt storm: 600 listed execs, $listed_ran ran; 600 unlisted execs, $unlisted_denied denied"
[ "$(cat /tmp/l1 /tmp/l2 /tmp/l3 /tmp/l4 | grep -c .)" = 1200 ] || fail "the loops did not all finish"
[ "$listed_ran" = 0 ] || fail "$listed_ran listed execs ran"
[ "$unlisted_denied" = 0 ] || fail "$unlisted_denied unlisted execs were denied"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
