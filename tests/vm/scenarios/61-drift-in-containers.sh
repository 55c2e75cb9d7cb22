# Drift in containers (issue 10, layer 5): a runc container whose root is an overlayfs mount
# made as containerd and CRI-O make it (the image read-only below, a writable layer above).
# With [drift] mode = "block" (enforce), a binary copied into /tmp inside the container is
# denied (matched_on "drift", the path as the container sees it), the image's own binaries
# run, an image binary changed in place (copied up) counts as new and is denied, a path the
# policy allows runs; with mode = "audit" the same execs run and are reported. On 5.10 (no
# module BTF, so no overlayfs types) the agent says drift is unavailable: asserted as such.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
[ -d /sys/module/overlay ] || insmod /lib/modules/overlay.ko || fail "cannot load overlay.ko"
write_policy /tmp/policy.toml enforce mg-sentinel
printf '[drift]\nmode = "block"\nallow = ["/opt/allowed/"]\n' >> /tmp/policy.toml
start_agent /tmp/policy.toml

job='cp /bin/sleep /tmp/drifted
/tmp/drifted 0 2>/tmp/drifted.err; echo $? > /tmp/drifted.status
/bin/sleep 0 2>/tmp/image.err; echo $? > /tmp/image.status
printf x >> /bin/memfdexec
/bin/memfdexec 2>/tmp/copied-up.err; echo $? > /tmp/copied-up.status
mkdir -p /opt/allowed && cp /bin/sleep /opt/allowed/tool
/opt/allowed/tool 0 2>/tmp/allowed.err; echo $? > /tmp/allowed.status
echo done > /tmp/job.done'

# run_overlay_container NAME: the job in a container whose root is an overlay mount of the
# image (lower, with the job) and a fresh writable layer; its files then read from $b/rootfs.
run_overlay_container() {
	id=$(ctr_id "61-$1")
	b=/tmp/b-$1
	make_bundle "$b/image-bundle" "$id" "$job"
	mkdir -p "$b/upper" "$b/work" "$b/rootfs"
	mount -t overlay overlay -o "lowerdir=$b/image-bundle/rootfs,upperdir=$b/upper,workdir=$b/work" "$b/rootfs" ||
		fail "cannot mount the overlay root"
	cp "$b/image-bundle/config.json" "$b/config.json"
	runc_run "$id" "$b" || true
	[ -e "$b/rootfs/tmp/job.done" ] || fail "the container's job did not finish: $(cat "/tmp/ctr-$id.err")"
	for f in drifted image copied-up allowed; do
		eval "st_$(echo $f | tr - _)=\$(cat $b/rootfs/tmp/$f.status)"
		echo "  in the container: $f: status $(cat "$b/rootfs/tmp/$f.status"), stderr: $(cat "$b/rootfs/tmp/$f.err")"
	done
}

case $(uname -r) in
5.10.*)
	grep -q "drift cannot be checked here" "$AGENT_LOG" || fail "the agent does not say drift is unavailable"
	grep -q '"drift":"unavailable"' "$AGENT_LOG" || fail "the ready record does not say drift unavailable"
	run_overlay_container unavailable
	[ "$st_drifted" = 0 ] || fail "/tmp/drifted did not run on 5.10 (drift unavailable): status $st_drifted"
	stop_agent || fail "agent exited with status $? on SIGTERM"
	minerguard disable >/dev/null 2>&1
	pass
	;;
esac
grep -q '"drift":"block"' "$AGENT_LOG" || fail "the ready record does not say drift block"

run_overlay_container block
[ "$st_drifted" = 126 ] || fail "/tmp/drifted (written in the container) was not denied: status $st_drifted"
grep -qi 'not permitted' "$b/rootfs/tmp/drifted.err" || fail "/tmp/drifted: stderr does not say not permitted"
[ "$st_image" = 0 ] || fail "/bin/sleep (the image's) did not run: status $st_image"
[ "$st_copied_up" = 126 ] || fail "/bin/memfdexec changed in place (copied up) was not denied: status $st_copied_up"
[ "$st_allowed" = 0 ] || fail "/opt/allowed/tool (an allowed path) did not run: status $st_allowed"
expect_events 1 "container_id=$id" action=blocked matched_on=drift matched_name=/tmp/drifted filename=/tmp/drifted file_name=drifted host:=false
expect_events 1 "container_id=$id" action=blocked matched_on=drift matched_name=/bin/memfdexec
[ "$(count_events "container_id=$id")" = 2 ] || fail "other events from the container: $(events_where "container_id=$id")"

sed -i 's/^mode = "block"/mode = "audit"/' /tmp/policy.toml
reload_agent
run_overlay_container audit
[ "$st_drifted" = 0 ] || fail "/tmp/drifted did not run with drift audit: status $st_drifted"
[ "$st_copied_up" != 126 ] || fail "/bin/memfdexec (copied up) was denied with drift audit"
expect_events 1 "container_id=$id" action=audited matched_on=drift matched_name=/tmp/drifted
expect_events 1 "container_id=$id" action=audited matched_on=drift matched_name=/bin/memfdexec

# Host programs are not on an overlay: they never drift.
try_exec /mg/pidexec /bin/true
expect_ran "/bin/true on the host"
expect_no_event "/bin/true on the host"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
