# A real OCI container (Debian's runc, busybox rootfs, cgroup v2 at /docker/<64 hex>, as
# Docker's cgroupfs driver lays it out) runs the seed's simulation: `cp /bin/sleep /tmp/xmrig;
# /tmp/xmrig 1`. Enforce: the exec fails inside the container; audit: it runs. The event
# carries the container's cgroup id (the inode of its cgroup directory), cgroup leaf name and
# container ID, and host false; a host process's event says host true, container_id null.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
job='cp /bin/sleep /tmp/xmrig
/tmp/xmrig 1 2>/tmp/xmrig.err
echo $? > /tmp/xmrig.status
while [ ! -e /tmp/go ]; do sleep 0.1; done'

for mode in enforce audit; do
	set_mode "$mode"
	action=$(action_of "$mode")
	id=$(ctr_id "27-$mode")
	b=/tmp/b-$mode
	make_bundle "$b" "$id" "$job"
	runc_run "$id" "$b" &
	runc_pid=$!
	wait_for_file "$b/rootfs/tmp/xmrig.status" ||
		fail "the container did not run its job within 30 s: $(cat "/tmp/ctr-$id.err")"
	cg=/sys/fs/cgroup/docker/$id
	[ -d "$cg" ] || fail "no cgroup $cg while the container runs"
	ino=$(stat -c %i "$cg")
	st=$(cat "$b/rootfs/tmp/xmrig.status")
	err=$(cat "$b/rootfs/tmp/xmrig.err")
	echo "in the container ($mode): /tmp/xmrig 1: status $st, stderr: $err"
	if [ "$mode" = enforce ]; then
		[ "$st" = 126 ] || fail "xmrig in the container was not blocked: status $st ($err)"
		echo "$err" | grep -qi 'not permitted' || fail "xmrig in the container: stderr does not say not permitted: $err"
	else
		[ "$st" = 0 ] || fail "xmrig in the container did not run in audit mode: status $st ($err)"
	fi
	expect_events 1 "container_id=$id" "action=$action" "mode=$mode" \
		matched_on=both matched_name=xmrig file_name=xmrig filename=/tmp/xmrig \
		host:=false "cgroup=$id" "cgroup_id:=$ino" uid:=0
	echo "container_runtime: $(events_where "container_id=$id" | jq -c .container_runtime)"
	[ "$(count_events "container_id=$id")" = 1 ] || fail "more than one event names container $id"
	touch "$b/rootfs/tmp/go"
	wait "$runc_pid" || fail "runc run $id exited with status $? (see above)"
	[ ! -d "$cg" ] || fail "cgroup $cg left after the container exited"

	# The same exec from the host, in a cgroup of its own.
	try_exec in_cgroup mg27 /mg/pidexec /tmp/xmrig 0
	expect_outcome "$mode" "/tmp/xmrig on the host"
	hino=$(stat -c %i /sys/fs/cgroup/mg27)
	expect_exec_event "$mode" both xmrig xmrig host:=true container_id:=null cgroup=mg27 "cgroup_id:=$hino"
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
