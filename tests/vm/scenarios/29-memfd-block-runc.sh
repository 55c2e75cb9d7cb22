# runc executes itself from a memfd ("memfd:runc_cloned:/proc/self/exe") every time it starts
# a container. With [memfd] block = true, that one allow-list entry keeps runc working, while
# a memfd exec of any other name is blocked (matched_on "memfd"). Shown step by step: audit
# without the entry (runc's memfd exec is seen), enforce without it (runc cannot start a
# container), enforce with it (runc works; other memfds blocked, on the host and inside).
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
runc_memfd=memfd:runc_cloned:/proc/self/exe
# policy MODE ALLOW: xmrig, minerd and the sentinel listed; memfd execs blocked except ALLOW.
policy() {
	write_policy /tmp/policy.toml "$1" xmrig minerd mg-sentinel
	printf '[memfd]\nblock = true\nallow = [%s]\n' "$2" >> /tmp/policy.toml
	minerguard check /tmp/policy.toml >/tmp/check.out 2>&1 || fail "check rejects: $(cat /tmp/check.out)"
}
reload() {
	_n=$(grep -c "policy reloaded" "$AGENT_LOG")
	kill -HUP "$AGENT_PID"
	_i=0
	until [ "$(grep -c "policy reloaded" "$AGENT_LOG")" -gt "$_n" ]; do
		_i=$((_i + 1))
		[ "$_i" -ge 200 ] && fail "no new 'policy reloaded' log line 20 s after SIGHUP"
		sleep 0.1
	done
}
runc_events() { events_where "file_name=$runc_memfd" "$@"; }

policy audit ''
start_agent /tmp/policy.toml
id=$(ctr_id 29-audit)
make_bundle /tmp/b1 "$id" 'true'
runc_run "$id" /tmp/b1 || fail "runc run (audit, no allow entry) failed: status $RUNC_RC"
wait_for_event "file_name=$runc_memfd" ||
	fail "no event for runc's memfd exec in audit mode: does this runc still clone itself into a memfd? events: $(cat "$EVENTS")"
sleep 1
n=$(runc_events | grep -c .)
echo "runc's memfd execs seen in audit mode: $n"
runc_events | sed 's/^/  event: /'
[ "$(runc_events action=audited matched_on=memfd "matched_name=$runc_memfd" | grep -c .)" = "$n" ] ||
	fail "runc's memfd events are not all audited, matched_on memfd, matched_name $runc_memfd"

policy enforce ''
reload
id=$(ctr_id 29-enforce-no-allow)
make_bundle /tmp/b2 "$id" 'true'
runc_run "$id" /tmp/b2 && fail "runc started a container although its memfd exec is blocked"
wait_for_event "file_name=$runc_memfd" action=blocked matched_on=memfd ||
	fail "no blocked event for runc's memfd exec"
runc delete --force "$id" >/dev/null 2>&1
rmdir "/sys/fs/cgroup/docker/$id" 2>/dev/null

policy enforce "\"$runc_memfd\""
reload
before=$(runc_events | grep -c .)
id=$(ctr_id 29-enforce-allow)
make_bundle /tmp/b3 "$id" '/bin/memfdexec innocent /bin/sleep 0 2>/tmp/memfd.err
echo $? > /tmp/memfd.status
cp /bin/sleep /tmp/xmrig
/tmp/xmrig 0 2>/tmp/xmrig.err
echo $? > /tmp/xmrig.status'
runc_run "$id" /tmp/b3 || fail "runc run with the allow entry failed: status $RUNC_RC"
[ "$(cat /tmp/b3/rootfs/tmp/memfd.status)" = 126 ] ||
	fail "memfd 'innocent' in the container not blocked: $(cat /tmp/b3/rootfs/tmp/memfd.status) $(cat /tmp/b3/rootfs/tmp/memfd.err)"
[ "$(cat /tmp/b3/rootfs/tmp/xmrig.status)" = 126 ] || fail "xmrig in the container not blocked"
expect_events 1 "container_id=$id" action=blocked matched_on=memfd matched_name=memfd:innocent file_name=memfd:innocent
expect_events 1 "container_id=$id" action=blocked matched_name=xmrig

try_exec /mg/pidexec /mg/bin/memfdexec innocent /bin/sleep 0
expect_blocked "memfd 'innocent' on the host"
expect_exec_event enforce memfd memfd:innocent memfd:innocent host:=true
# Known limit: the allow-list holds names, and the name of a memfd is its creator's choice.
try_exec /mg/pidexec /mg/bin/memfdexec runc_cloned:/proc/self/exe /bin/sleep 0
expect_ran "a memfd named like runc's (known limit)"
expect_no_event "a memfd named like runc's"
[ "$(runc_events | grep -c .)" = "$before" ] || fail "runc's allowed memfd exec still produced events: $(runc_events)"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
