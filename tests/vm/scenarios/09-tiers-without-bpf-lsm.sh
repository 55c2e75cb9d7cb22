# Without bpf in lsm= (the nolsm suite) the BPF-LSM tier cannot enforce: forced onto it
# (--tier lsm), the agent refuses fast, says which kernel parameter to add, and leaves
# nothing behind; left to choose (--tier auto), it takes the next tier that proves itself
# (fmod_ret: the exec still fails with EPERM) and says so in its ready line and in status;
# `minerguard doctor` tells the operator the same before any agent runs.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
case ",$(cat /sys/kernel/security/lsm)," in *,bpf,*) fail "harness: the BPF LSM is active in the nolsm suite" ;; esac
write_policy /tmp/policy.toml enforce xmrig minerd
cp /bin/sleep /tmp/xmrig

t0=$(now)
timeout 60 minerguard run --policy /tmp/policy.toml --tier lsm >/tmp/out 2>/tmp/err
rc=$?
secs=$(elapsed "$t0")
echo "minerguard run --tier lsm: status $rc after $secs s; stderr:"
cat /tmp/err
[ "$rc" != 0 ] || fail "minerguard run --tier lsm exited 0 without the BPF LSM"
[ "$rc" != 124 ] || fail "minerguard run --tier lsm still running after 60 s"
awk -v s="$secs" 'BEGIN { exit !(s < 30) }' || fail "minerguard run --tier lsm took $secs s to give up"
grep -qE 'lsm=lockdown,capability[a-z,]*,bpf' /tmp/err ||
	fail "stderr of run --tier lsm does not name the lsm= parameter to add: $(head -c 300 /tmp/err)"
[ -z "$(pidof minerguard)" ] || fail "a minerguard process is left running"
left=$(find /sys/fs/bpf -mindepth 1 | tr '\n' ' ')
[ -z "$left" ] || fail "left pinned in bpffs after the refusal: $left"
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig after the refused start"

# The operator's readiness report says the same, and what to add to the boot line.
minerguard doctor --json > /tmp/doctor.json || fail "doctor exits $? although fmod_ret works: $(cat /tmp/doctor.json)"
cat /tmp/doctor.json
[ "$(jq -r .tier /tmp/doctor.json)" = fmod_ret ] || fail "doctor does not pick fmod_ret"
[ "$(jq -r '.tiers[] | select(.tier == "lsm") | .works' /tmp/doctor.json)" = false ] ||
	fail "doctor says the lsm tier works without bpf in lsm="
jq -r '.advice[]' /tmp/doctor.json | grep -qE 'lsm=lockdown,capability[a-z,]*,bpf' ||
	fail "doctor's advice does not name the lsm= parameter to add"
[ -z "$(find /sys/fs/bpf -mindepth 1)" ] || fail "doctor left something pinned"

MG_TIER= MG_EXPECT_TIER=fmod_ret BLOCKED=blocked
start_agent /tmp/policy.toml
grep '"tier unavailable"' "$AGENT_LOG" | grep -q '"tier":"lsm"' ||
	fail "the agent did not log why the lsm tier was passed over"
minerguard status > /tmp/status.out
grep -q '^tier: *fmod_ret' /tmp/status.out || fail "status does not say fmod_ret: $(cat /tmp/status.out)"
try_exec /mg/pidexec /tmp/xmrig 0
expect_blocked "xmrig on the fmod_ret tier"
expect_events 1 "pid:=$EXEC_PID" action=blocked tier=fmod_ret matched_name=xmrig
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null || fail "disable failed"
pass
