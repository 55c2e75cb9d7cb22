# Miners started through interpreters: a script run as `sh script` and through a `#!` line
# that runs a listed binary, a listed binary as the `#!` interpreter itself, a script named
# after a miner, and the seed's shell one-liner. Enforce and audit. Known limit, asserted:
# a script whose own name is listed, passed to its interpreter (`sh xmrig`), is only read,
# never executed: it runs, no event.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd mg-sentinel
start_agent /tmp/policy.toml
mkdir -p /tmp/i /tmp/n
cp /bin/sleep /tmp/xmrig
cp /bin/true /tmp/i/xmrig                    # a listed interpreter that ignores its arguments
# A job that runs the miner, then reports; so the shell forks for it (it may exec the last
# command of a script in place, not this one).
# shellcheck disable=SC2016  # $? and $st are the script's, expanded when it runs
printf '/tmp/xmrig 0\nst=$?\necho "xmrig exited $st"\nexit $st\n' > /tmp/job.sh
# shellcheck disable=SC2016
printf '#!/bin/sh\n/tmp/xmrig 0\nst=$?\necho "xmrig exited $st"\nexit $st\n' > /tmp/job-shebang.sh
printf '#!/tmp/i/xmrig\n' > /tmp/job-interp.sh
printf '#!/bin/sh\nexit 0\n' > /tmp/n/xmrig  # a script named after a miner
chmod +x /tmp/job-shebang.sh /tmp/job-interp.sh /tmp/n/xmrig

for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec sh /tmp/job.sh
	expect_outcome "$mode" "sh /tmp/job.sh (runs /tmp/xmrig)"
	expect_exec_event "$mode" both xmrig xmrig filename=/tmp/xmrig comm=sh

	try_exec /mg/pidexec /tmp/job-shebang.sh
	expect_outcome "$mode" "/tmp/job-shebang.sh (#!/bin/sh, runs /tmp/xmrig)"
	expect_exec_event "$mode" both xmrig xmrig filename=/tmp/xmrig

	try_exec /mg/pidexec /tmp/job-interp.sh
	expect_outcome "$mode" "/tmp/job-interp.sh (#!/tmp/i/xmrig)"
	expect_exec_event "$mode" file xmrig xmrig

	try_exec /mg/pidexec /tmp/n/xmrig
	expect_outcome "$mode" "/tmp/n/xmrig (a #! script named xmrig)"
	expect_exec_event "$mode" both xmrig xmrig filename=/tmp/n/xmrig

	# The seed's one-liner, and a PATH lookup through a shell.
	rm -f /tmp/o/xmrig
	mkdir -p /tmp/o
	try_exec /mg/pidexec sh -c 'cp /bin/sleep /tmp/o/xmrig; /tmp/o/xmrig 0'
	expect_outcome "$mode" "sh -c 'cp /bin/sleep /tmp/o/xmrig; /tmp/o/xmrig 0'"
	expect_exec_event "$mode" both xmrig xmrig filename=/tmp/o/xmrig
	try_exec /mg/pidexec env PATH=/tmp/o:/bin sh -c 'xmrig 0'
	expect_outcome "$mode" "sh -c 'xmrig 0' with /tmp/o in PATH"
	expect_exec_event "$mode" both xmrig xmrig filename=/tmp/o/xmrig

	# Known limit: the interpreter reads the script; the script itself is never executed.
	try_exec /mg/pidexec sh /tmp/n/xmrig
	expect_ran "sh /tmp/n/xmrig ($mode): known limit"
	expect_no_event "sh /tmp/n/xmrig"
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
