# Identity after a block (issue 10, layer 1): a file blocked (or audited) under a listed name
# is remembered by inode, so moved, hardlinked or reached through a symlink after the block
# it is still caught (matched_on "identity", matched_name the name it was blocked as), until
# its content changes. Never remembered: the target of a symlink with a listed name, a copy's
# source (the seed's `cp /bin/sleep /tmp/xmrig`), a file with several names before its first
# block. Remembered across an agent restart; `[identity] enabled = false` turns it off; a
# name taken out of the policy forgets the files blocked under it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig mg-sentinel
start_agent /tmp/policy.toml

for mode in enforce audit; do
	set_mode "$mode"
	d=/tmp/id-$mode
	mkdir -p "$d"
	cp /bin/sleep "$d/xmrig"
	try_exec /mg/pidexec "$d/xmrig" 0
	expect_outcome "$mode" "$d/xmrig"
	expect_exec_event "$mode" both xmrig xmrig

	mv "$d/xmrig" "$d/innocent"
	try_exec /mg/pidexec "$d/innocent" 0
	expect_outcome "$mode" "$d/innocent (xmrig moved after its block)"
	expect_exec_event "$mode" identity xmrig innocent filename="$d/innocent" hook=exec

	ln "$d/innocent" "$d/other"
	try_exec /mg/pidexec "$d/other" 0
	expect_outcome "$mode" "$d/other (a hardlink made after the block)"
	expect_exec_event "$mode" identity xmrig other filename="$d/other"

	ln -s "$d/other" "$d/link"
	try_exec /mg/pidexec "$d/link" 0
	expect_outcome "$mode" "$d/link (a symlink to it)"
	expect_exec_event "$mode" identity xmrig other filename="$d/link"

	# New content: another program, forgotten (appended bytes leave an ELF runnable).
	printf 'x' >> "$d/innocent"
	try_exec /mg/pidexec "$d/other" 0
	expect_ran "$d/other after its content changed ($mode)"
	expect_no_event "$d/other after its content changed"
done
set_mode enforce

# The seed's simulation never makes the copied program blocked.
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "/tmp/xmrig (copy of /bin/sleep)"
try_exec /mg/pidexec /bin/sleep 0
expect_ran "/bin/sleep after its copy was blocked"
expect_no_event "/bin/sleep after its copy was blocked"

# Nor does a symlink with a listed name make its target blocked.
mkdir -p /tmp/s
cp /bin/sleep /tmp/s/target
ln -s /tmp/s/target /tmp/s/xmrig
try_exec /mg/pidexec /tmp/s/xmrig 0
expect_blocked "/tmp/s/xmrig -> /tmp/s/target"
try_exec /mg/pidexec /tmp/s/target 0
expect_ran "/tmp/s/target after a symlink to it was blocked"
expect_no_event "/tmp/s/target after a symlink to it was blocked"

# A file with two names before its first block (`ln /bin/sleep /tmp/xmrig`) is not
# remembered: a listed name given to a system program must not take it from everybody.
mkdir -p /tmp/t
cp /bin/sleep /tmp/t/system-program
ln /tmp/t/system-program /tmp/t/xmrig
try_exec /mg/pidexec /tmp/t/xmrig 0
expect_blocked "/tmp/t/xmrig (a second name of /tmp/t/system-program)"
try_exec /mg/pidexec /tmp/t/system-program 0
expect_ran "/tmp/t/system-program after its second name was blocked"
expect_no_event "/tmp/t/system-program after its second name was blocked"

# Remembered across a restart (the map is pinned), and counted by status.
mkdir -p /tmp/r
cp /bin/sleep /tmp/r/xmrig
try_exec /mg/pidexec /tmp/r/xmrig 0
expect_blocked "/tmp/r/xmrig"
stop_agent || fail "agent exited with status $? on SIGTERM"
mv /tmp/r/xmrig /tmp/r/renamed-while-no-agent
EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
try_exec /mg/pidexec /tmp/r/renamed-while-no-agent 0
expect_blocked "/tmp/r/renamed-while-no-agent (renamed while no agent ran)"
expect_exec_event enforce identity xmrig renamed-while-no-agent
minerguard status --json > /tmp/status.json || fail "status failed: $(cat /tmp/status.json)"
[ "$(jq .remembered /tmp/status.json)" -ge 3 ] || fail "status does not count the remembered files: $(cat /tmp/status.json)"
minerguard status | grep -q "^remembered: " || fail "status text does not show remembered files"

# Turned off: a moved miner runs again.
printf '[identity]\nenabled = false\n' >> /tmp/policy.toml
reload_agent
try_exec /mg/pidexec /tmp/r/renamed-while-no-agent 0
expect_ran "/tmp/r/renamed-while-no-agent with [identity] enabled = false"
expect_no_event "/tmp/r/renamed-while-no-agent with identity off"

# A name taken out of the policy (a false positive fixed) forgets the files blocked under it:
# identity on again, xmrig no longer listed, the file runs.
write_policy /tmp/policy.toml enforce mg-sentinel
reload_agent
grep -q "forgot remembered files" "$AGENT_LOG" || fail "the reload does not say it forgot files"
try_exec /mg/pidexec /tmp/r/renamed-while-no-agent 0
expect_ran "/tmp/r/renamed-while-no-agent once xmrig is out of the policy"
expect_no_event "/tmp/r/renamed-while-no-agent once xmrig is out of the policy"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
