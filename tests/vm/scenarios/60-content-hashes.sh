# Content hashes (issue 10, layer 3): a file whose SHA-256 is listed (`minerguard hash`
# prints the line) is denied whatever its name, exec'd or started through the loader (one
# event, matched_on "hash", matched_name the digest); in audit mode it runs and is reported.
# A file is hashed once while unchanged: rewritten to listed content with its size and mtime
# kept (the ctime moves), it is hashed again and denied. On 5.10 (no bpf_ima_file_hash) the
# agent starts, says hashes are unavailable, and the listed file runs: asserted as such.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
ld=/lib64/ld-linux-x86-64.so.2
mkdir -p /tmp/h
# The "miner": a runnable program whose content no system file has (sleep, bytes appended).
cp /bin/sleep /tmp/h/miner-original
printf 'not-sleep' >> /tmp/h/miner-original
write_policy /tmp/policy.toml enforce mg-sentinel
minerguard hash /tmp/h/miner-original > /tmp/hash.toml || fail "minerguard hash failed"
cat /tmp/hash.toml >> /tmp/policy.toml
digest=$(sha256sum /tmp/h/miner-original | cut -d' ' -f1)
grep -q "\"$digest\",  # /tmp/h/miner-original" /tmp/hash.toml || fail "minerguard hash printed: $(cat /tmp/hash.toml)"
start_agent /tmp/policy.toml

case $(uname -r) in
5.10.*)
	grep -q "files cannot be hashed here" "$AGENT_LOG" || fail "the agent does not say hashes are unavailable"
	grep -q '"sha256":"unavailable"' "$AGENT_LOG" || fail "the ready record does not say sha256 unavailable"
	cp /tmp/h/miner-original /tmp/h/renamed
	try_exec /mg/pidexec /tmp/h/renamed 0
	expect_ran "/tmp/h/renamed (listed digest) on 5.10, where the kernel cannot hash"
	expect_no_event "/tmp/h/renamed on 5.10"
	stop_agent || fail "agent exited with status $? on SIGTERM"
	minerguard disable >/dev/null 2>&1
	pass
	;;
esac

for mode in enforce audit; do
	set_mode "$mode"
	cp /tmp/h/miner-original "/tmp/h/renamed-$mode"
	try_exec /mg/pidexec "/tmp/h/renamed-$mode" 0
	expect_outcome "$mode" "/tmp/h/renamed-$mode (listed digest)"
	expect_exec_event "$mode" hash "$digest" "renamed-$mode" hook=exec

	try_exec /mg/pidexec "$ld" "/tmp/h/renamed-$mode" 0
	if [ "$mode" = enforce ]; then
		[ "$EXEC_RC" != 0 ] || fail "the loader ran /tmp/h/renamed-$mode"
		echo "$EXEC_ERR" | grep -q "failed to map segment" || fail "the loader did not fail to map it: $EXEC_ERR"
	else
		expect_ran "$ld /tmp/h/renamed-$mode (audit)"
	fi
	expect_exec_event "$mode" hash "$digest" "renamed-$mode" hook=mmap
done
set_mode enforce

# Unlisted content runs; the same file rewritten to listed content, size and mtime kept, is
# hashed again (its ctime moved) and denied.
cp /tmp/h/miner-original /tmp/h/changing
size=$(wc -c < /tmp/h/changing)
printf 'X' | dd of=/tmp/h/changing bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
touch -r /tmp/h/changing /tmp/h/stamp
try_exec /mg/pidexec /tmp/h/changing 0
expect_ran "/tmp/h/changing (one byte differs from the listed file)"
expect_no_event "/tmp/h/changing"
sleep 1
cat /tmp/h/miner-original > /tmp/h/changing
touch -r /tmp/h/stamp /tmp/h/changing
[ "$(wc -c < /tmp/h/changing)" = "$size" ] || fail "the rewrite changed the size"
try_exec /mg/pidexec /tmp/h/changing 0
expect_blocked "/tmp/h/changing rewritten to the listed content, size and mtime kept"
expect_exec_event enforce hash "$digest" changing

# Ordinary programs still run (hashed once each, not listed).
try_exec /mg/pidexec /bin/sleep 0
expect_ran "/bin/sleep"
expect_no_event "/bin/sleep"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
