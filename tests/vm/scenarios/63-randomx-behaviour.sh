# The behaviour layer (issue 11): a program that computes like RandomX (its SSE rounding
# mode keeps changing, as RandomX's CFROUND makes it) is killed within seconds of starting
# to hash, whatever its name, with one event saying what was seen: a synthetic helper, on
# the host and in a runc container (the event names the container), and the real RandomX
# (tests/randomx: the reference implementation, light mode) the same; ordinary floating-point
# work and a steady non-default rounding mode (interval arithmetic) run untouched. In audit
# it runs and is reported once; off, nothing; and with the agent killed, the pinned program
# still stops it and the restarted agent reports it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
policy() {   # policy [RANDOMX]: names xmrig and mg-sentinel (lib.sh: sentinel); [behavior] randomx = RANDOMX if given
	printf 'mode = "enforce"\nnames = ["xmrig", "mg-sentinel"]\n' > /tmp/policy.toml
	[ -z "$1" ] || printf '[behavior]\nrandomx = "%s"\n' "$1" >> /tmp/policy.toml
	minerguard check /tmp/policy.toml >/dev/null || fail "check rejects the policy with randomx=$1"
}
cp /mg/bin/mground /tmp/kworker-helper     # an innocent name: nothing listed matches it
cp /mg/bin/mground /tmp/fp-work
cp /mg/bin/mground /tmp/interval
# busy_beside SECONDS: ordinary floating-point work in the background, two processes of it,
# so that with the helper more work is runnable than the CPUs (2) can run at once, as on a
# busy node: the layer reads a thread's rounding mode when it comes back from a switch.
# FP: the first one's pid (the second ends with it).
busy_beside() {
	/tmp/fp-work plain "$1" > /tmp/fp.out 2>&1 &
	FP=$!
	/tmp/fp-work plain "$1" > /dev/null 2>&1 &
}
# hash_until_killed WHAT CMD...: run CMD (it prints "hashing" once it starts to hash) and
# expect it killed within 10 s of that line (on a CPU shared with other work, well under).
# HASH_PID, HASH_SECS: its pid, and the time from its first hash to its end.
hash_until_killed() {
	_what=$1
	shift
	rm -f /tmp/hash.out
	"$@" > /tmp/hash.out 2>&1 &
	HASH_PID=$! _t1=
	while kill -0 "$HASH_PID" 2>/dev/null; do
		[ -z "$_t1" ] && grep -q hashing /tmp/hash.out && _t1=$(now)
		sleep 0.05
	done
	wait "$HASH_PID"
	_rc=$?
	[ -n "$_t1" ] || _t1=$(now)   # killed right after its first line
	HASH_SECS=$(elapsed "$_t1")
	echo "$_what: status $_rc, $HASH_SECS s after its first hash; output: $(cat /tmp/hash.out)"
	grep -q hashing /tmp/hash.out || fail "$_what: ended before it started hashing (status $_rc)"
	[ "$_rc" = 137 ] || fail "$_what: not killed (status $_rc)"
	awk -v s="$HASH_SECS" 'BEGIN { exit !(s < 10) }' || fail "$_what: killed only after $HASH_SECS s"
}

policy
start_agent /tmp/policy.toml
grep '"minerguard ready"' "$AGENT_LOG" | grep -q '"randomx":"enforce"' ||
	fail "the ready line does not say randomx follows the enforce mode"

busy_beside 300   # until killed below
hash_until_killed "the RandomX-like helper" /tmp/kworker-helper randomx 60
echo "MG-FIGURE randomx: synthetic helper killed $HASH_SECS s after its first hash"
expect_events 1 "pid:=$HASH_PID" action=killed matched_on=randomx matched_name=randomx \
	hook=context_switch file_name=kworker-helper '.observed.changes >= 16' '.observed.seconds < 10'
killer=$HASH_PID

# The real thing, under an innocent name: RandomX's reference implementation (light mode:
# its 256 MiB cache takes some 20 s to build under the VMs' emulation, then it hashes).
[ -x /mg/bin/mg-randomx ] || fail "no real RandomX (/mg/bin/mg-randomx) in this image"
cp /mg/bin/mg-randomx /tmp/node-exporter
hash_until_killed "real RandomX" /tmp/node-exporter 300
echo "MG-FIGURE randomx: real RandomX (light mode) killed $HASH_SECS s after its first hash"
expect_events 1 "pid:=$HASH_PID" action=killed matched_on=randomx file_name=node-exporter
kill "$FP" $(pidof fp-work) 2>/dev/null
wait "$FP" 2>/dev/null

# In a container: killed, and the event names it (the VM suites: runc and its bundle), the
# synthetic helper and the real RandomX (the bundle has it with its libraries).
if [ -d /mg/ctr ]; then
	for job in "mground randomx 120" "mg-randomx 300"; do
		id=$(ctr_id "63-$job")
		make_bundle /tmp/b63 "$id" "/bin/mground plain 300 & /bin/mground plain 300 & exec /bin/$job"
		runc_run "$id" /tmp/b63
		[ "$RUNC_RC" = 137 ] || fail "$job in a container: not killed (runc status $RUNC_RC)"
		grep -q hashing "/tmp/ctr-$id.out" || fail "$job in a container: killed before hashing"
		expect_events 1 matched_on=randomx action=killed "file_name=${job%% *}" "container_id=$id"
		runc delete -f "$id" 2>/dev/null
		rm -rf /tmp/b63
	done
else
	echo "no container bundle here (tests/native): the container case runs in the VM suites"
fi

busy_beside 6
try_exec /mg/pidexec /tmp/interval steady 3
expect_ran "a steady non-default rounding mode"
expect_no_event "a steady non-default rounding mode"
wait "$FP" || fail "ordinary floating-point work beside it did not finish: $(cat /tmp/fp.out)"
grep -q done /tmp/fp.out || fail "ordinary floating-point work did not finish"
[ -z "$(pid_events "$FP")" ] || fail "ordinary floating-point work was reported: $(pid_events "$FP")"

# audit: runs to the end, reported once (not once per switch or per change).
policy audit
reload_agent
busy_beside 8
try_exec /mg/pidexec /tmp/kworker-helper randomx 5
expect_ran "the RandomX-like helper with randomx = audit"
expect_events 1 "pid:=$EXEC_PID" action=audited matched_on=randomx
wait "$FP"

# off: nothing.
policy off
reload_agent
busy_beside 6
try_exec /mg/pidexec /tmp/kworker-helper randomx 3
expect_ran "the RandomX-like helper with randomx = off"
expect_no_event "the RandomX-like helper with randomx = off"
wait "$FP"

# The agent killed: the pinned program stops the miner alone; the next agent reports it.
policy
reload_agent
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
busy_beside 30
hash_until_killed "the RandomX-like helper with no agent running" /tmp/kworker-helper randomx 60
kill "$FP" $(pidof fp-work) 2>/dev/null
EVENTS=/tmp/events-2.jsonl AGENT_LOG=/tmp/agent-2.log
start_agent /tmp/policy.toml
wait_for_event "pid:=$HASH_PID" action=killed matched_on=randomx ||
	fail "the restarted agent did not report the kill made while no agent ran"
[ "$(count_events "pid:=$killer")" = 0 ] || fail "the restarted agent reported the first kill again"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null || fail "disable failed"
pass
