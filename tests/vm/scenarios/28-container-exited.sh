# The container ID is resolved even when the container is gone by the time the event is
# read: with no agent running (SIGKILLed; the pinned program keeps enforcing), a container's
# xmrig is denied, the container exits and runc deletes it and its cgroup; the next agent
# drains the event from the pinned ring buffer, and it still names the container.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
start_agent /tmp/policy.toml
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=

id=$(ctr_id 28-exited)
make_bundle /tmp/b "$id" 'cp /bin/sleep /tmp/xmrig
/tmp/xmrig 1 2>/tmp/xmrig.err
echo $? > /tmp/xmrig.status'
runc_run "$id" /tmp/b || fail "runc run $id failed with status $RUNC_RC"
st=$(cat /tmp/b/rootfs/tmp/xmrig.status)
echo "in the container: /tmp/xmrig 1: status $st, stderr: $(cat /tmp/b/rootfs/tmp/xmrig.err)"
[ "$st" = 126 ] || fail "xmrig in the container was not blocked with no agent running: status $st"
[ ! -d "/sys/fs/cgroup/docker/$id" ] || fail "the container's cgroup is still there"
runc state "$id" >/dev/null 2>&1 && fail "runc still knows container $id"

EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
expect_events 1 "container_id=$id" action=blocked mode=enforce matched_name=xmrig \
	filename=/tmp/xmrig host:=false "cgroup=$id"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
