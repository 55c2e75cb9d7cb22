# scope = "containers": processes in the host's mount namespace are never blocked (their
# listed execs run and are reported as audited, host true), container processes are
# blocked as usual; decided in the kernel. Enforce and audit.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
printf 'mode = "enforce"\nscope = "nodes"\nnames = ["xmrig"]\n' > /tmp/bad.toml
minerguard check /tmp/bad.toml >/tmp/check.out 2>&1 && fail "check accepts scope = \"nodes\""
echo "check rejects scope = \"nodes\": $(cat /tmp/check.out)"
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
echo 'scope = "containers"' >> /tmp/policy.toml
cat /tmp/policy.toml
minerguard check /tmp/policy.toml >/tmp/check.out 2>&1 || fail "check rejects scope = \"containers\": $(cat /tmp/check.out)"
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig

for mode in enforce audit; do
	set_mode "$mode"
	try_exec in_cgroup mg30 /mg/pidexec /tmp/xmrig 0
	expect_ran "/tmp/xmrig on the host, scope containers, $mode"
	expect_events 1 "pid:=$EXEC_PID" action=audited "mode=$mode" host:=true \
		matched_on=both matched_name=xmrig container_id:=null

	id=$(ctr_id "30-$mode")
	make_bundle "/tmp/b-$mode" "$id" 'cp /bin/sleep /tmp/xmrig
/tmp/xmrig 0 2>/tmp/xmrig.err
echo $? > /tmp/xmrig.status'
	runc_run "$id" "/tmp/b-$mode" || fail "runc run failed: status $RUNC_RC"
	st=$(cat "/tmp/b-$mode/rootfs/tmp/xmrig.status")
	echo "in the container ($mode): /tmp/xmrig 0: status $st, stderr: $(cat "/tmp/b-$mode/rootfs/tmp/xmrig.err")"
	if [ "$mode" = enforce ]; then
		[ "$st" = 126 ] || fail "xmrig in a container ran with scope containers, enforce: status $st"
	else
		[ "$st" = 0 ] || fail "xmrig in a container did not run in audit mode: status $st"
	fi
	expect_events 1 "container_id=$id" "action=$(action_of "$mode")" "mode=$mode" \
		host:=false matched_on=both matched_name=xmrig
done

# Back to scope "all" (reload): the host exec is blocked again.
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
kill -HUP "$AGENT_PID"
wait_for_log "policy reloaded" || fail "no 'policy reloaded' log line after SIGHUP"
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "/tmp/xmrig on the host, scope all"
expect_exec_event enforce both xmrig xmrig host:=true
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
