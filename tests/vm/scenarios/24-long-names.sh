# Names longer than 15 bytes (the kernel cuts comm to 15): a listed long name is matched
# whole on the file really executed and on the process name (the basename of the path
# passed to exec); a name that only shares its first 15 bytes is not blocked because of
# the cut. Enforce and audit.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
long=dero-miner-linux-amd64                 # 22 bytes
write_policy /tmp/policy.toml enforce xmrig "$long" mg-sentinel
start_agent /tmp/policy.toml
mkdir -p /tmp/d /tmp/s
cp /bin/sleep "/tmp/$long"
ln -s /bin/true "/tmp/d/$long"              # listed long name -> innocent file
ln -s "/tmp/$long" /tmp/s/innocent          # innocent name -> listed long file
cp /bin/sleep /tmp/dero-miner-linux-XYZ     # same first 15 bytes, not listed
cp /bin/sleep /tmp/dero-miner-linu          # the 15-byte cut itself, not listed
cp /bin/sleep /tmp/dero-miner-linux-amd64-v2  # listed name + suffix, not listed

for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec "/tmp/$long" 0
	expect_outcome "$mode" "/tmp/$long"
	expect_exec_event "$mode" both "$long" "$long" "filename=/tmp/$long"

	try_exec /mg/pidexec "/tmp/d/$long"
	expect_outcome "$mode" "/tmp/d/$long -> /bin/true"
	expect_exec_event "$mode" process_name "$long" true

	try_exec /mg/pidexec /tmp/s/innocent 0
	expect_outcome "$mode" "/tmp/s/innocent -> /tmp/$long"
	expect_exec_event "$mode" file "$long" "$long"

	for n in dero-miner-linux-XYZ dero-miner-linu dero-miner-linux-amd64-v2; do
		try_exec /mg/pidexec "/tmp/$n" 0
		expect_ran "/tmp/$n (unlisted, $mode)"
		expect_no_event "/tmp/$n"
	done
done
# The cut is real: the running dero-miner-linux-XYZ is "dero-miner-linu" to ps, the same
# 15 bytes as the listed dero-miner-linux-amd64, and yet it was not blocked above.
/tmp/dero-miner-linux-XYZ 2 &
xyz=$!
sleep 0.5
comm=$(cat "/proc/$xyz/comm")
wait "$xyz"
[ "$comm" = dero-miner-linu ] || fail "comm of dero-miner-linux-XYZ is '$comm', not the 15-byte cut"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
