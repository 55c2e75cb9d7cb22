# The container ID comes from the leaf name of the caller's cgroup, read in the kernel at the
# exec, in every layout the runtimes use: cri-containerd-<id>.scope, crio-<id>.scope,
# docker-<id>.scope, libpod-<id>.scope (systemd driver), and a bare 64-hex leaf (Docker's
# cgroupfs /docker/<id>, the kubepods cgroupfs driver /kubepods/burstable/pod<uid>/<id>).
# Exercised with host processes moved into such cgroups (no runtime needed); other leaves
# give container_id null.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
pod=8f1d4b2e_1c3a_4e5f_9a7b_2c4d6e8f0a1b

# check_cgroup PATH ID|null: exec xmrig in cgroup PATH; the event has leaf name and ID.
check_cgroup() {

	leaf=${1##*/}
	try_exec in_cgroup "$1" /mg/pidexec /tmp/xmrig 0
	expect_blocked "xmrig in cgroup $1"
	ino=$(stat -c %i "/sys/fs/cgroup/$1")
	if [ "$2" = null ]; then
		expect_exec_event enforce both xmrig xmrig "cgroup=$leaf" "cgroup_id:=$ino" \
			container_id:=null container_runtime:=null
	else
		expect_exec_event enforce both xmrig xmrig "cgroup=$leaf" "cgroup_id:=$ino" \
			"container_id=$2"
	fi
	echo "  $1 -> container_id $2, runtime $(pid_events "$EXEC_PID" | jq -c .container_runtime)"
}
id1=$(ctr_id containerd) id2=$(ctr_id crio) id3=$(ctr_id docker) id4=$(ctr_id podman)
id5=$(ctr_id kubepods) id6=$(ctr_id docker-cgroupfs)
check_cgroup "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod$pod.slice/cri-containerd-$id1.scope" "$id1"
check_cgroup "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod$pod.slice/crio-$id2.scope" "$id2"
check_cgroup "system.slice/docker-$id3.scope" "$id3"
check_cgroup "machine.slice/libpod-$id4.scope" "$id4"
check_cgroup "kubepods/burstable/pod${pod}/$id5" "$id5"
check_cgroup "docker/$id6" "$id6"
check_cgroup "system.slice/ssh.service" null
check_cgroup "mg31" null
check_cgroup "docker/$(echo "$id6" | cut -c2-)" null          # 63 hex digits: not an id
for prefixed in "$id1" "$id2" "$id3" "$id4"; do
	n=$(count_events "container_id=$prefixed")
	if [ "$n" = 0 ] || [ "$(count_events "container_id=$prefixed" '.container_runtime | type == "string"')" != "$n" ]; then
		fail "no container_runtime for the runtime-prefixed leaf of $prefixed"
	fi
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
# Empty the tree, deepest first (init only removes empty top-level cgroups).
find /sys/fs/cgroup -mindepth 1 -depth -type d \( -path '*kubepods*' -o -path '*.slice*' -o -path '*/docker/*' \) \
	-exec rmdir {} \; 2>/dev/null
pass
