# Files with no name on disk (issue 9.10): with [memfd] block = true, every exec of a file
# that has no name on disk is denied unless it is an allowed memfd: a memfd, an O_TMPFILE
# file run through its descriptor, a file deleted after it was opened. With block = false
# they run (names still apply). Enforce and audit.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig mg-sentinel
printf '[memfd]\nblock = true\nallow = ["memfd:runc_cloned:/proc/self/exe"]\n' >> /tmp/policy.toml
start_agent /tmp/policy.toml
# expect_unlinked_event MODE FILE_NAME_START: one event from the last try_exec, matched on
# "unlinked", whose file name (and matched name) starts as given (an O_TMPFILE dentry is
# "#<inode>").
expect_unlinked_event() {
	sentinel
	_ev=$(pid_events "$EXEC_PID")
	[ "$(printf '%s\n' "$_ev" | grep -c .)" = 1 ] || fail "expected 1 event from pid $EXEC_PID, got: $_ev"
	events_where "(.pid == $EXEC_PID or .ppid == $EXEC_PID)" "action=$(action_of "$1")" \
		matched_on=unlinked "(.matched_name | startswith(\"$2\"))" "(.file_name | startswith(\"$2\"))" >/dev/null ||
		fail "the event from pid $EXEC_PID is not an unlinked $(action_of "$1") of $2*: $_ev"
	echo "  event: $_ev"
}
for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec /mg/bin/unlinkedexec tmpfile /bin/true
	expect_outcome "$mode" "an O_TMPFILE file run through its descriptor"
	expect_unlinked_event "$mode" '#'
	try_exec /mg/pidexec /mg/bin/unlinkedexec deleted /bin/true
	expect_outcome "$mode" "a file deleted after it was opened"
	expect_exec_event "$mode" unlinked "mg-deleted-$EXEC_PID" "mg-deleted-$EXEC_PID"
	try_exec /mg/pidexec /mg/bin/memfdexec innocent /bin/true
	expect_outcome "$mode" "a memfd not allowed"
	expect_exec_event "$mode" memfd memfd:innocent memfd:innocent
done
set_mode enforce
# Files with names on disk are not affected.
try_exec /mg/pidexec /bin/true
expect_ran "/bin/true"
expect_no_event "/bin/true"

# With block = false, they run.
write_policy /tmp/policy.toml enforce xmrig mg-sentinel
reload_agent
try_exec /mg/pidexec /mg/bin/unlinkedexec tmpfile /bin/true
expect_ran "an O_TMPFILE file with block = false"
expect_no_event "an O_TMPFILE file with block = false"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
