# A miner executed through an open file descriptor: fexecve, execveat(fd, "", AT_EMPTY_PATH),
# and exec of "/dev/fd/N" (from C and from a shell). The path passed to exec is then
# "/dev/fd/N", so the process name says nothing: the file really executed (xmrig) matches.
# An innocent program run the same way runs with no event. Enforce and audit.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
ensure_devfd
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
start_agent /tmp/policy.toml
cp /bin/sleep /tmp/xmrig
cp /bin/sleep /tmp/innocent
ln -s /tmp/xmrig /tmp/innocent-link

for mode in enforce audit; do
	set_mode "$mode"
	for how in fexecve atempty devfd; do
		try_exec /mg/pidexec /mg/bin/fexec "$how" /tmp/xmrig 0
		expect_outcome "$mode" "fexec $how /tmp/xmrig"
		expect_exec_event "$mode" file xmrig xmrig '.filename | startswith("/dev/fd/")'

		try_exec /mg/pidexec /mg/bin/fexec "$how" /tmp/innocent-link 0
		expect_outcome "$mode" "fexec $how /tmp/innocent-link (-> xmrig)"
		expect_exec_event "$mode" file xmrig xmrig '.filename | startswith("/dev/fd/")'

		try_exec /mg/pidexec /mg/bin/fexec "$how" /tmp/innocent 0
		expect_ran "fexec $how /tmp/innocent ($mode)"
		expect_no_event "fexec $how /tmp/innocent"
	done
	# The shell way: open the miner on fd 3, exec /dev/fd/3.
	try_exec /mg/pidexec sh -c 'exec /dev/fd/3 0' 3</tmp/xmrig
	expect_outcome "$mode" "sh: exec /dev/fd/3 3</tmp/xmrig"
	expect_exec_event "$mode" file xmrig xmrig filename=/dev/fd/3
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
