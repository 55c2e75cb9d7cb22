# Storms (issue 13): an exec loop of a listed name in one container is one line at once, then
# one line per window whose count says how many it stands for (the counts add up to every
# exec stopped); meanwhile another container's listed exec is reported at once, by itself.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd
MG_STORM_WINDOW=3 start_agent /tmp/policy.toml
cp /bin/true /tmp/xmrig
cp /bin/true /tmp/minerd
mkdir -p /sys/fs/cgroup/mg-storm-a /sys/fs/cgroup/mg-storm-b
a=$(stat -c %i /sys/fs/cgroup/mg-storm-a)
b=$(stat -c %i /sys/fs/cgroup/mg-storm-b)
loops=300
in_cgroup mg-storm-a sh -c "i=0; while [ \$i -lt $loops ]; do /tmp/xmrig 2>/dev/null && echo ran; i=\$((i + 1)); done" \
	>/tmp/storm.out &
storm=$!
sleep 0.2
try_exec in_cgroup mg-storm-b /mg/pidexec /tmp/minerd 1
expect_blocked "/tmp/minerd in the other container, during the storm"
wait "$storm"
[ ! -s /tmp/storm.out ] || fail "$(grep -c ran /tmp/storm.out) execs of the storm ran"
# The other container's exec: at once (well within the storm's window), by itself.
wait_for_event "cgroup_id:=$b" "pid:=$EXEC_PID" matched_name=minerd count:=1 first_time:=null ||
	fail "the other container's exec was not reported during the storm"
# The storm's summary comes once its window is over; the counts add up to every exec.
i=0
while [ "$(events_where "cgroup_id:=$a" | jq -s 'map(.count) | add // 0')" != "$loops" ]; do
	i=$((i + 1))
	[ "$i" -ge 100 ] && fail "the storm's counts add up to $(events_where "cgroup_id:=$a" | jq -s 'map(.count) | add // 0'), not $loops: $(events_where "cgroup_id:=$a")"
	sleep 0.1
done
lines=$(count_events "cgroup_id:=$a")
echo "  $loops execs of the storm: $lines line(s)"
events_where "cgroup_id:=$a" | sed 's/^/  event: /'
[ "$lines" -le 3 ] || fail "$loops execs in one container made $lines lines (want at most 3)"
[ "$(count_events "cgroup_id:=$a" count:=1 first_time:=null)" = 1 ] || fail "the storm's first exec was not reported by itself"
[ "$(count_events "cgroup_id:=$a" '(.count > 1 and (.first_time | type) == "string")')" -ge 1 ] ||
	fail "no summary of the storm with its count and first time"
stop_agent || fail "agent exited with status $? on SIGTERM"
rmdir /sys/fs/cgroup/mg-storm-a /sys/fs/cgroup/mg-storm-b 2>/dev/null
minerguard disable >/dev/null 2>&1
pass
