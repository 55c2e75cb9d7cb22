# Fileless: a miner copied into a memfd and executed from it (memfd_create + fexecve). The
# kernel names the file "memfd:<name the attacker chose>"; a listed name there matches
# (matched_on "file", matched_name the listed name). An unlisted memfd name runs with no
# event: blocking every memfd exec is a separate switch, off by default (23). Enforce and audit.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig minerd dero-miner-linux-amd64 mg-sentinel
start_agent /tmp/policy.toml

for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec /mg/bin/memfdexec xmrig /bin/sleep 0
	expect_outcome "$mode" "memfd 'xmrig'"
	expect_exec_event "$mode" file xmrig memfd:xmrig '.filename | startswith("/dev/fd/")'

	try_exec /mg/pidexec /mg/bin/memfdexec dero-miner-linux-amd64 /bin/sleep 0
	expect_outcome "$mode" "memfd 'dero-miner-linux-amd64' (22 bytes)"
	expect_exec_event "$mode" file dero-miner-linux-amd64 memfd:dero-miner-linux-amd64

	try_exec /mg/pidexec /mg/bin/memfdexec innocent /bin/sleep 0
	expect_ran "memfd 'innocent' ($mode, memfd switch off)"
	expect_no_event "memfd 'innocent'"
	# A memfd name that only starts with a listed name is not that name (no pattern listed).
	try_exec /mg/pidexec /mg/bin/memfdexec xmrig-not /bin/sleep 0
	expect_ran "memfd 'xmrig-not' ($mode)"
	expect_no_event "memfd 'xmrig-not'"
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
