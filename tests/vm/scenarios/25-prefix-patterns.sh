# Prefix patterns ("xmrig*", "kdevtmpfsi*"), matched in the kernel: any name starting with
# the prefix is caught, on the file or on the process name, also in a memfd and beyond 15
# bytes; the event's matched_name is the pattern. Names that merely contain the prefix are
# not. `check` accepts "*" only at the end. Enforce and audit.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
for bad in '*xmrig' 'xm*rig' 'xmrig**'; do
	write_policy /tmp/bad.toml enforce "$bad"
	if minerguard check /tmp/bad.toml >/tmp/check.out 2>&1; then
		fail "minerguard check accepts the pattern '$bad' (\"*\" only at the end)"
	fi
	echo "check rejects '$bad': $(cat /tmp/check.out)"
done
write_policy /tmp/policy.toml enforce 'xmrig*' 'kdevtmpfsi*' minerd mg-sentinel
minerguard check /tmp/policy.toml >/tmp/check.out 2>&1 || fail "check rejects prefix patterns: $(cat /tmp/check.out)"
start_agent /tmp/policy.toml
mkdir -p /tmp/d /tmp/s
for n in xmrig xmrig-6.21.0 xmrig-linux-static-x64 kdevtmpfsi kdevtmpfsi1337 myxmrig xmri kdevtmpfs minerd-2; do
	cp /bin/sleep "/tmp/$n"
done
ln -s /bin/true /tmp/d/xmrig-notls          # pattern on the process name only
ln -s /tmp/xmrig-6.21.0 /tmp/s/innocent     # pattern on the file only

for mode in enforce audit; do
	set_mode "$mode"
	for n in xmrig xmrig-6.21.0 xmrig-linux-static-x64; do
		try_exec /mg/pidexec "/tmp/$n" 0
		expect_outcome "$mode" "/tmp/$n"
		expect_exec_event "$mode" both 'xmrig*' "$n"
	done
	for n in kdevtmpfsi kdevtmpfsi1337; do
		try_exec /mg/pidexec "/tmp/$n" 0
		expect_outcome "$mode" "/tmp/$n"
		expect_exec_event "$mode" both 'kdevtmpfsi*' "$n"
	done
	try_exec /mg/pidexec /tmp/d/xmrig-notls
	expect_outcome "$mode" "/tmp/d/xmrig-notls -> /bin/true"
	expect_exec_event "$mode" process_name 'xmrig*' true
	try_exec /mg/pidexec /tmp/s/innocent 0
	expect_outcome "$mode" "/tmp/s/innocent -> /tmp/xmrig-6.21.0"
	expect_exec_event "$mode" file 'xmrig*' xmrig-6.21.0
	try_exec /mg/pidexec /mg/bin/memfdexec xmrig-fileless /bin/sleep 0
	expect_outcome "$mode" "memfd 'xmrig-fileless'"
	expect_exec_event "$mode" file 'xmrig*' memfd:xmrig-fileless

	# Not a prefix match: contains it, shorter, or an exact name plus a suffix.
	for n in myxmrig xmri kdevtmpfs minerd-2; do
		try_exec /mg/pidexec "/tmp/$n" 0
		expect_ran "/tmp/$n (unlisted, $mode)"
		expect_no_event "/tmp/$n"
	done
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
