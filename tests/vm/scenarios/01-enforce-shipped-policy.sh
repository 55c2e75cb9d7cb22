# The shipped policy, enforced, stops an unprivileged user's xmrig, and the one event it
# logs says who, what and where (pid, uid, cgroup) so an operator can act on it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
P=/etc/minerguard/policy.toml
[ -f "$P" ] || fail "the shipped policy.toml is not in the image (missing in the repo?)"
minerguard check "$P" >/tmp/check.out 2>&1 || fail "minerguard check rejects the shipped policy: $(cat /tmp/check.out)"
# --mode enforce: this tests the shipped *names*, whatever default mode the file ships with.
start_agent "$P" --mode enforce

in_cgroup mg1 run_as_tester cp /bin/sleep /tmp/xmrig || fail "tester cannot create /tmp/xmrig"
try_exec in_cgroup mg1 run_as_tester /mg/pidexec /tmp/xmrig 1
expect_blocked "/tmp/xmrig run by tester"
cg=$(stat -c %i /sys/fs/cgroup/mg1)
[ "$cg" -gt 0 ] || fail "cgroup mg1 has inode 0"
expect_events 1 action=$BLOCKED mode=enforce matched_name=xmrig matched_on=both \
	"pid:=$EXEC_PID" uid:=1000 gid:=1000 "cgroup_id:=$cg" filename=/tmp/xmrig \
	"cmdline=/tmp/xmrig 1" cmdline_truncated:=false
expect_events 1      # and nothing else: cp, su, sh are not miners
# A command line longer than an event carries (256 bytes, at most 32 arguments): its start,
# said to be cut.
# shellcheck disable=SC2046  # one argument per number
try_exec in_cgroup mg1 run_as_tester /mg/pidexec /tmp/xmrig $(seq 1000000001 1000000040)
expect_blocked "/tmp/xmrig with 40 long arguments"
expect_events 1 "pid:=$EXEC_PID" cmdline_truncated:=true \
	'(.cmdline | startswith("/tmp/xmrig 1000000001 1000000002 ") and length >= 250 and length <= 256)'
expect_events 2
stop_agent || fail "agent exited with status $? on SIGTERM"
pass
