# Capacity (issue 9.2): whatever `check` accepts, `run` loads, and a reload to any other
# accepted policy applies. The largest policy (65,536 names, 4,096 patterns, 256 memfd
# names), then a reload to a disjoint one of the same size (old and new entries live in the
# maps at once during a reload), then a start that fails after changing the adopted maps
# (--fail-after-policy) must leave them as it found them, and a start with the shipped
# policy right after it must work.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
# largest_policy FILE LETTER: names LETTER00000.., patterns pLETTER0000*.., memfd names.
largest_policy() {
	awk -v l="$2" 'BEGIN {
		print "mode = \"enforce\""
		printf "names = [\n"
		for (i = 0; i < 65536; i++) printf "\"%s%05d\",\n", l, i
		for (i = 0; i < 4096; i++) printf "\"p%s%04d*\",\n", l, i
		printf "]\n[memfd]\nallow = [\n"
		for (i = 0; i < 256; i++) printf "\"memfd:%s%03d\",\n", l, i
		print "]"
	}' > "$1"
}
largest_policy /tmp/policy-a.toml a
largest_policy /tmp/policy-b.toml b
minerguard check /tmp/policy-a.toml > /tmp/check.out 2>&1 || fail "check rejects the largest policy: $(head -c 300 /tmp/check.out)"
grep -q "69632 names" /tmp/check.out || fail "check does not count 69,632 names and patterns: $(cat /tmp/check.out)"
for n in a00007 b00007 pa0042-miner pb0042-miner xmrig; do cp /bin/true "/tmp/$n"; done

cp /tmp/policy-a.toml /tmp/policy.toml
t0=$(now)
READY_TIMEOUT=240 start_agent /tmp/policy.toml
echo "MG-FIGURE capacity: start with 69,632 names and patterns took $(elapsed "$t0") s"
try_exec /tmp/a00007
expect_blocked "a00007 (largest policy a)"
try_exec /tmp/pa0042-miner
expect_blocked "pa0042-miner (pattern pa0042*)"

cp /tmp/policy-b.toml /tmp/policy.toml
t0=$(now)
reload_agent 240
echo "MG-FIGURE capacity: reload to a disjoint largest policy took $(elapsed "$t0") s"
grep -q "policy reload failed" "$AGENT_LOG" && fail "the reload failed: $(grep 'reload failed' "$AGENT_LOG")"
try_exec /tmp/b00007
expect_blocked "b00007 (largest policy b)"
try_exec /tmp/pb0042-miner
expect_blocked "pb0042-miner (pattern pb0042*)"
try_exec /tmp/a00007
expect_ran "a00007 after the reload to policy b"
stop_agent || fail "agent exited with status $? on SIGTERM"

# A start that fails after it changed the adopted maps puts them back.
if timeout 240 minerguard run --policy /etc/minerguard/policy.toml --fail-after-policy > /tmp/failed.out 2>/tmp/failed.log; then
	fail "the start with --fail-after-policy succeeded"
fi
grep -q "as it found it" /tmp/failed.log || fail "the failed start did not say it restored the pins: $(tail -n 3 /tmp/failed.log)"
minerguard status --json > /tmp/status.json
jq -e '.names == 69632' /tmp/status.json >/dev/null || fail "after the failed start the pins hold another policy: $(cat /tmp/status.json)"
try_exec /tmp/b00007
expect_blocked "b00007 after the failed start (policy b still in force)"
try_exec /tmp/xmrig
expect_ran "xmrig after the failed start (the failed start's policy is not in force)"

# And the next start, with the shipped policy, works.
EVENTS=/tmp/events-2.jsonl
AGENT_LOG=/tmp/agent-2.log
READY_TIMEOUT=240 start_agent /etc/minerguard/policy.toml
try_exec /tmp/xmrig
expect_blocked "xmrig (shipped policy) after the failed start"
try_exec /tmp/b00007
expect_ran "b00007 once the shipped policy replaced policy b"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
