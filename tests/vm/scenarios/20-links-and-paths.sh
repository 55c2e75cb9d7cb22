# A miner started through a symlink, a hardlink or a relative path is caught, in enforce
# (status 126, "not permitted") and in audit (it runs), with one event saying which name
# matched. Known limits, asserted so a change shows: a copy under an innocent name and a
# hardlink made under an innocent name before the file was ever blocked run, and give no
# event (names cannot see them; identity remembers only a file with one name, scenario 57).
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
start_agent /tmp/policy.toml
mkdir -p /tmp/d /tmp/h /tmp/r/sub
cp /bin/sleep /tmp/xmrig
ln -s /tmp/xmrig /tmp/innocent-link         # innocent name -> miner file
ln -s /bin/true /tmp/d/xmrig                # miner name -> innocent file
cp /bin/sleep /tmp/h/innocent
ln /tmp/h/innocent /tmp/h/xmrig             # hardlink: the same inode under a listed name
cp /bin/sleep /tmp/r/xmrig
cp /tmp/xmrig /tmp/kworker-helper           # known limit: renamed copy
ln /tmp/xmrig /tmp/kworker-hl               # known limit: hardlink made before any block

for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec /tmp/innocent-link 0
	expect_outcome "$mode" "/tmp/innocent-link -> /tmp/xmrig"
	expect_exec_event "$mode" file xmrig xmrig filename=/tmp/innocent-link

	try_exec /mg/pidexec /tmp/d/xmrig
	expect_outcome "$mode" "/tmp/d/xmrig -> /bin/true"
	expect_exec_event "$mode" process_name xmrig true filename=/tmp/d/xmrig

	try_exec /mg/pidexec /tmp/h/xmrig 0
	expect_outcome "$mode" "/tmp/h/xmrig (hardlink of /tmp/h/innocent)"
	expect_exec_event "$mode" both xmrig xmrig filename=/tmp/h/xmrig

	# Relative paths: the event shows the path as given.
	try_exec sh -c 'cd /tmp/r && exec /mg/pidexec ./xmrig 0'
	expect_outcome "$mode" "./xmrig in /tmp/r"
	expect_exec_event "$mode" both xmrig xmrig filename=./xmrig
	try_exec sh -c 'cd /tmp/r/sub && exec /mg/pidexec ../xmrig 0'
	expect_outcome "$mode" "../xmrig from /tmp/r/sub"
	expect_exec_event "$mode" both xmrig xmrig filename=../xmrig
	try_exec sh -c 'cd /tmp && exec /mg/pidexec r/xmrig 0'
	expect_outcome "$mode" "r/xmrig from /tmp"
	expect_exec_event "$mode" both xmrig xmrig filename=r/xmrig

	# Known limits: the miner's bytes under a name that is not listed.
	try_exec /mg/pidexec /tmp/kworker-helper 0
	expect_ran "/tmp/kworker-helper (copy of xmrig, $mode): known limit"
	expect_no_event "/tmp/kworker-helper (copy of xmrig)"
	try_exec /mg/pidexec /tmp/kworker-hl 0
	expect_ran "/tmp/kworker-hl (hardlink of xmrig, $mode): known limit"
	expect_no_event "/tmp/kworker-hl (hardlink of xmrig)"
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
