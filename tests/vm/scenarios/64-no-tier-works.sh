# A kernel where no tier can work (suite "lockdown": lockdown=confidentiality forbids the
# kernel reads every program makes, so the kernel refuses them all): `run` refuses within
# seconds, saying for each tier why and what to change; `doctor` says the same and exits 1;
# nothing is left attached or pinned, and nothing is blocked.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
grep -q '\[confidentiality\]' /sys/kernel/security/lockdown ||
	fail "harness: lockdown is not in confidentiality mode: $(cat /sys/kernel/security/lockdown)"
write_policy /tmp/policy.toml enforce xmrig
t0=$(now)
timeout 60 minerguard run --policy /tmp/policy.toml >/tmp/out 2>/tmp/err
rc=$?
secs=$(elapsed "$t0")
echo "minerguard run: status $rc after $secs s; stderr:"
cat /tmp/err
[ "$rc" = 1 ] || fail "minerguard run exited $rc where no tier works (want 1)"
awk -v s="$secs" 'BEGIN { exit !(s < 30) }' || fail "minerguard run took $secs s to give up"
last=$(tail -n 1 /tmp/err)
for tier in lsm fmod_ret kill; do
	echo "$last" | grep -q "$tier: " || fail "the refusal does not say why the $tier tier fails: $last"
done
echo "$last" | grep -q 'no enforcement tier works' || fail "the refusal does not say no tier works: $last"
echo "$last" | grep -q 'lockdown=integrity' || fail "the refusal does not say what to change (lockdown): $last"

minerguard doctor --json > /tmp/doctor.json
rc=$?
cat /tmp/doctor.json
[ "$rc" = 1 ] || fail "doctor exited $rc where no tier works (want 1)"
[ "$(jq -r .tier /tmp/doctor.json)" = null ] || fail "doctor names a tier that cannot work"
jq -r '.advice[]' /tmp/doctor.json | grep -q 'lockdown=integrity' || fail "doctor's advice does not name lockdown"

[ -z "$(pidof minerguard)" ] || fail "a minerguard process is left running"
[ -z "$(find /sys/fs/bpf -mindepth 1)" ] || fail "left pinned: $(find /sys/fs/bpf -mindepth 1)"
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig where no tier works"
pass
