# The policy switch [memfd] block = true: every exec from a memfd is caught whatever its
# name (matched_on "memfd", matched_name "memfd:<name>"), except the allow-list's exact
# file names. Regular files, also executed through a descriptor, are not affected.
# Enforce and audit. (runc and its allow entry: 29.)
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
printf '[memfd]\nblock = true\nallow = ["memfd:mg-allowed"]\n' >> /tmp/policy.toml
cat /tmp/policy.toml
minerguard check /tmp/policy.toml >/tmp/check.out 2>&1 || fail "check rejects the [memfd] table: $(cat /tmp/check.out)"
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/innocent

for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec /mg/bin/memfdexec innocent /bin/sleep 0
	expect_outcome "$mode" "memfd 'innocent' (switch on)"
	expect_exec_event "$mode" memfd memfd:innocent memfd:innocent '.filename | startswith("/dev/fd/")'

	try_exec /mg/pidexec /mg/bin/memfdexec mg-allowed /bin/sleep 0
	expect_ran "memfd 'mg-allowed' (allow-listed, $mode)"
	expect_no_event "memfd 'mg-allowed'"

	# The allow-list holds exact names, not prefixes.
	try_exec /mg/pidexec /mg/bin/memfdexec mg-allowed-2 /bin/sleep 0
	expect_outcome "$mode" "memfd 'mg-allowed-2' (not allow-listed)"
	expect_exec_event "$mode" memfd memfd:mg-allowed-2 memfd:mg-allowed-2

	# A listed name in a memfd: caught either way, one event.
	try_exec /mg/pidexec /mg/bin/memfdexec xmrig /bin/sleep 0
	expect_outcome "$mode" "memfd 'xmrig' (switch on)"
	wait_for_event "pid:=$EXEC_PID" file_name=memfd:xmrig || fail "no event for memfd 'xmrig'"
	expect_events 1 "pid:=$EXEC_PID" "action=$(action_of "$mode")" file_name=memfd:xmrig

	# Not memfds: a regular file, directly and through a descriptor.
	try_exec /mg/pidexec /tmp/innocent 0
	expect_ran "/tmp/innocent ($mode)"
	expect_no_event "/tmp/innocent"
	try_exec /mg/pidexec /mg/bin/fexec fexecve /tmp/innocent 0
	expect_ran "fexecve /tmp/innocent ($mode)"
	expect_no_event "fexecve /tmp/innocent"
done

# Off again (reload): an innocent memfd name runs with no event.
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
kill -HUP "$AGENT_PID"
wait_for_log "policy reloaded" || fail "no 'policy reloaded' log line after SIGHUP"
try_exec /mg/pidexec /mg/bin/memfdexec innocent /bin/sleep 0
expect_ran "memfd 'innocent' after the switch is turned off"
expect_no_event "memfd 'innocent' (switch off)"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
