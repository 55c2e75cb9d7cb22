# Pod metadata from the container runtime (issue 13): a real containerd (Debian's, its CRI
# plugin built in; an instance of its own: config, root, state and socket under /tmp) runs
# pods made through the CRI API by tests/cri/client.rs, from an image imported from a local
# tarball (busybox; no registry). The seed's simulation inside a container (cp /bin/sleep to
# xmrig in its writable layer, exec it) is stopped, and its event names the pod, namespace,
# pod UID, labels, container and image, and the node. Then the same for a pod made after the
# agent started (learned as its task appeared) whose exec is read after the pod was deleted
# (the agent stopped with SIGSTOP meanwhile). Then with containerd stopped: the exec is still
# stopped, its event comes with null pod fields, and `status` counts the miss.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
command -v containerd >/dev/null || fail "containerd is not installed (scripts/deps)"
CRI=/mg/bin/cri-client
[ -x "$CRI" ] || fail "no CRI test client $CRI (cargo build --release --example cri-client)"
C=/tmp/mgctd
SOCK=$C/state/containerd.sock
IMAGE=docker.io/library/mg-miner:1.0
mkdir -p "$C/root" "$C/state" "$C/runc" "$C/cni/bin" "$C/cni/conf" "$C/opt"

# Whatever happens: the pods' processes, the shims and containerd go, and their cgroups.
CTD_PID=
cleanup_ctd() {
	for cg in /sys/fs/cgroup/mg-kubepods/*/; do
		[ -d "$cg" ] && echo 1 > "$cg/cgroup.kill" 2>/dev/null
	done
	for pid in $(pgrep -f -- "-address $SOCK"); do kill -KILL "$pid" 2>/dev/null; done
	[ -n "$CTD_PID" ] && kill -KILL "$CTD_PID" 2>/dev/null
	# A killed cgroup empties asynchronously: retry its removal for up to 5 s.
	_i=0
	while [ -d /sys/fs/cgroup/mg-kubepods ] && [ "$_i" -lt 50 ]; do
		for cg in /sys/fs/cgroup/mg-kubepods/*/; do [ -d "$cg" ] && rmdir "$cg" 2>/dev/null; done
		rmdir /sys/fs/cgroup/mg-kubepods 2>/dev/null || sleep 0.1
		_i=$((_i + 1))
	done
	return 0
}
trap cleanup_ctd EXIT

# An OCI image from busybox: one layer, written out as an OCI layout tarball.
blob() { # FILE: moves FILE into the layout's blobs, prints "sha256:HEX SIZE"
	_d=$(sha256sum "$1" | cut -c1-64)
	_s=$(wc -c < "$1")
	mv "$1" "$C/oci/blobs/sha256/$_d"
	echo "sha256:$_d $_s"
}
r=$C/rootfs
mkdir -p "$r/bin" "$r/tmp" "$r/proc" "$r/dev" "$r/sys" "$r/etc" "$C/oci/blobs/sha256"
cp /bin/busybox "$r/bin/busybox"
for a in sh sleep cp cat ls; do ln -s busybox "$r/bin/$a"; done
tar -C "$r" -cf "$C/layer.tar" . || fail "cannot tar the image's layer"
blob "$C/layer.tar" > "$C/blob"
read -r layer layer_size < "$C/blob"
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sleep","100000"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
	"$layer" > "$C/config.json"
blob "$C/config.json" > "$C/blob"
read -r config config_size < "$C/blob"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
	"$config" "$config_size" "$layer" "$layer_size" > "$C/manifest.json"
blob "$C/manifest.json" > "$C/blob"
read -r manifest manifest_size < "$C/blob"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"1.0"}}]}' \
	"$manifest" "$manifest_size" "$IMAGE" > "$C/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$C/oci/oci-layout"
tar -C "$C/oci" -cf "$C/image.tar" . || fail "cannot tar the image"

# runc as containerd calls it; where cgroup v2 has no cpu or memory controller (a build
# machine that is a container on a cgroup v1 host), without the pod's resource limits,
# which runc could not apply there (the containers still get cgroups, named by their IDs).
runc_binary=runc
if ! grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	runc_binary=$C/runc-without-resources
	cat > "$runc_binary" <<'EOF'
#!/bin/sh
prev=
for a; do
	if [ "$prev" = --bundle ] && [ -f "$a/config.json" ]; then
		jq 'del(.linux.resources)' "$a/config.json" > "$a/config.json.mg" && mv "$a/config.json.mg" "$a/config.json"
	fi
	prev=$a
done
exec runc "$@"
EOF
	chmod +x "$runc_binary"
fi
cat > "$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.local/mg-pause:1.0"
  # Not below our own oom_score_adj (the sandbox's -998): a machine without
  # CAP_SYS_RESOURCE (a build container) cannot lower it, and runc's init then fails.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$C/runc"
        BinaryName = "$runc_binary"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$C/cni/bin"
    conf_dir = "$C/cni/conf"
EOF
start_ctd() {
	containerd --config "$C/config.toml" >>"$C/containerd.log" 2>&1 &
	CTD_PID=$!
	_i=0
	until ctr --address "$SOCK" version >/dev/null 2>&1; do
		_i=$((_i + 1))
		[ "$_i" -ge 300 ] && fail "containerd not up within 30 s: $(tail -n 5 "$C/containerd.log")"
		kill -0 "$CTD_PID" 2>/dev/null || fail "containerd exited: $(tail -n 5 "$C/containerd.log")"
		sleep 0.1
	done
}
start_ctd
ctr --address "$SOCK" -n k8s.io images import "$C/image.tar" >/tmp/import.out 2>&1 ||
	fail "ctr images import: $(cat /tmp/import.out)"
ctr --address "$SOCK" -n k8s.io images tag "$IMAGE" registry.local/mg-pause:1.0 >/dev/null ||
	fail "ctr images tag failed"

# up POD UID: a pod in namespace mg-test (labels app=miner, tier=<POD>) with a container
# "miner" of the image; sets SANDBOX and CONTAINER.
up() {
	"$CRI" "$SOCK" up "$1" mg-test "$2" miner "$IMAGE" app=miner "tier=$1" >/tmp/up.out 2>&1 ||
		fail "cri-client up $1: $(cat /tmp/up.out); containerd: $(tail -n 5 "$C/containerd.log")"
	read -r SANDBOX CONTAINER < /tmp/up.out
	echo "pod $1: sandbox $SANDBOX, container $CONTAINER"
}
# simulate ID: the seed's simulation inside the container, through the CRI (ExecSync).
simulate() {
	"$CRI" "$SOCK" exec "$1" sh -c 'cp /bin/sleep /tmp/xmrig && exec /tmp/xmrig 1' >/tmp/sim.out 2>&1
	_rc=$?
	echo "simulation in $1: status $_rc: $(cat /tmp/sim.out)"
	[ "$_rc" != 0 ] || fail "xmrig ran in the container (status 0)"
}
# named ID POD UID: the event of the exec in container ID names its pod.
named() {
	wait_for_event "container_id=$1" matched_name=xmrig "action=$BLOCKED" ||
		fail "no event for container $1 within 10 s: $(tail -n 3 "$EVENTS")"
	ev=$(cat /tmp/mg-ev.out)
	echo "  event: $ev"
	for cond in ".pod_name == \"$2\"" '.pod_namespace == "mg-test"' ".pod_uid == \"$3\"" \
		'.container_name == "miner"' '.image_repository == "docker.io/library/mg-miner"' \
		'.image_tag == "1.0"' ".pod_labels == {\"app\":\"miner\",\"tier\":\"$2\"}" \
		'(.node_name | length > 0)'; do
		[ "$(printf '%s\n' "$ev" | jq "$cond")" = true ] || fail "the event fails [$cond]: $ev"
	done
}

# 1. A pod running before the agent starts: learned from ListContainers at start.
up miner-a 0a0a0a0a-1111-2222-3333-444444444444
CA=$CONTAINER
P=/etc/minerguard/policy.toml
RUST_LOG=info,minerguard::cri=debug start_agent "$P" --mode enforce --cri-socket "$SOCK"
simulate "$CA"
named "$CA" miner-a 0a0a0a0a-1111-2222-3333-444444444444

# 2. A pod made while the agent runs, learned as its task appears; its exec is read only
# after the pod is deleted.
up miner-b 0b0b0b0b-1111-2222-3333-444444444444
CB=$CONTAINER SB=$SANDBOX
wait_for_log "learned container $CB" || fail "the agent did not learn container $CB as it started"
kill -STOP "$AGENT_PID"
simulate "$CB"
"$CRI" "$SOCK" rm "$SB" >/tmp/rm.out 2>&1 || fail "cri-client rm: $(cat /tmp/rm.out)"
"$CRI" "$SOCK" exec "$CB" true >/dev/null 2>&1 && fail "container $CB still runs after its pod was removed"
kill -CONT "$AGENT_PID"
named "$CB" miner-b 0b0b0b0b-1111-2222-3333-444444444444
stop_agent || fail "agent exited with status $? on SIGTERM"

# 3. containerd stopped (its containers run on under their shims): a new agent cannot name
# the container; the exec is still stopped, the event comes, with null pod fields.
kill -TERM "$CTD_PID"
wait "$CTD_PID"
CTD_PID=
: > "$EVENTS"
start_agent "$P" --mode enforce --cri-socket "$SOCK"
runc --root "$C/runc/k8s.io" exec "$CA" sh -c 'exec /tmp/xmrig 1' >/tmp/sim.out 2>&1 &&
	fail "xmrig ran in the container with containerd stopped: $(cat /tmp/sim.out)"
wait_for_event "container_id=$CA" matched_name=xmrig "action=$BLOCKED" ||
	fail "no event for container $CA with containerd stopped: $(cat /tmp/sim.out)"
ev=$(cat /tmp/mg-ev.out)
echo "  event: $ev"
for cond in '.pod_name == null' '.pod_namespace == null' '.container_name == null' \
	'.image_repository == null' '.pod_labels == null' '(.node_name | length > 0)'; do
	[ "$(printf '%s\n' "$ev" | jq "$cond")" = true ] || fail "the event fails [$cond]: $ev"
done
_i=0
until [ "$(minerguard status --json | jq '.pod_metadata_misses // 0')" -ge 1 ]; do
	_i=$((_i + 1))
	[ "$_i" -ge 50 ] && fail "status does not count the miss: $(minerguard status --json)"
	sleep 0.1
done
minerguard status | grep 'pod misses'
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
