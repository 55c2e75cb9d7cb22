# Harness self-test: the VM is what the other scenarios assume, so their failures mean
# something about the agent, not about the test rig. Needs no working agent.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh

# The kernel honoured the suite's lsm= (a kernel that ignored it would make "nolsm" vacuous).
want=$(sed -n 's/.*lsm=\([^ ]*\).*/\1/p' /proc/cmdline)
have=$(cat /sys/kernel/security/lsm)
echo "lsm= on cmdline: ${want:-none}; active: $have"
case ",$want," in *,bpf,*) w=1 ;; *) w=0 ;; esac
case ",$have," in *,bpf,*) h=1 ;; *) h=0 ;; esac
[ "$w" = "$h" ] || fail "bpf in lsm= is $w but bpf active is $h ($have)"
[ -e /sys/kernel/btf/vmlinux ] || fail "kernel has no BTF (/sys/kernel/btf/vmlinux)"
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || fail "bpffs not mounted"

# The agent binary starts (all its shared libraries are in the image).
minerguard --help >/dev/null 2>&1 || fail "minerguard --help fails: $(minerguard --help 2>&1 | head -n 3)"

# A copy of /bin/sleep is real coreutils, runs under any name, and really sleeps.
cp /bin/sleep /tmp/xmrig
/tmp/xmrig --version | grep -q coreutils || fail "/bin/sleep is not coreutils"
try_exec /mg/pidexec /tmp/xmrig 1
expect_ran "/tmp/xmrig 1"
awk -v s="$EXEC_SECS" 'BEGIN { exit !(s >= 0.9) }' || fail "/tmp/xmrig 1 took $EXEC_SECS s"
/bin/true || fail "/bin/true fails"

# run_as_tester really drops to 1000:1000; in_cgroup really moves; both compose with pidexec.
try_exec in_cgroup mgh run_as_tester /mg/pidexec sh -c 'id -u; id -g; cat /proc/self/cgroup'
expect_ran "id as tester in a cgroup"
[ "$(tr '\n' ' ' </tmp/exec.out)" = "1000 1000 0::/mgh " ] || fail "tester/cgroup: got $(cat /tmp/exec.out)"
[ -n "$EXEC_PID" ] || fail "pidexec recorded no pid"
[ "$(stat -c %i /sys/fs/cgroup/mgh)" -gt 0 ] || fail "cgroup inode is 0"

# The event helpers select by JSON field, whatever the key order, and a number is not a
# string (on a made-up events file).
printf '%s\n' '{"action":"blocked","pid":12,"matched_name":"xmrig"}' \
	'{"pid":123,"matched_name":"xmrig","action":"audited","ppid":12}' \
	'{"matched_name":"true","action":"blocked","pid":"12"}' > "$EVENTS"
[ "$(count_events)" = 3 ] || fail "count_events: $(count_events) (want 3)"
[ "$(count_events pid:=12)" = 1 ] || fail "count_events pid:=12: $(count_events pid:=12) (want 1)"
[ "$(count_events pid=12)" = 1 ] || fail "count_events pid=12 (the string): $(count_events pid=12) (want 1)"
[ "$(count_events matched_name=xmrig action=audited)" = 1 ] || fail "count_events 2 conditions"
[ "$(count_events action=audited matched_name=xmrig)" = 1 ] || fail "count_events 2 conditions, other order"
[ "$(count_events matched_name=true)" = 1 ] || fail "count_events matched_name=true (the string)"
[ "$(count_events matched_name:=true)" = 0 ] || fail "count_events matched_name:=true (the boolean)"
[ "$(count_events matched_name=minerd)" = 0 ] || fail "count_events no match: $(count_events matched_name=minerd)"
[ "$(count_events '.pid == 123 or .pid == 12')" = 2 ] || fail "count_events with a jq expression"
[ "$(pid_events 12 | grep -c .)" = 2 ] || fail "pid_events 12 (pid or ppid): $(pid_events 12)"
printf '{"action":"blocked","pid":7' >> "$EVENTS"     # a line the agent is still writing
[ "$(count_events)" = 3 ] || fail "count_events read a partial line: $(count_events)"
echo 'not JSON' > "$EVENTS"
count_events >/dev/null 2>&1      # fails the scenario (in a subshell here: the reason stays)
[ -s "$MG_RUN/reason" ] || fail "an events file that is not JSON went unnoticed"
rm "$MG_RUN/reason"
rm "$EVENTS"
[ "$(count_events)" = 0 ] || fail "count_events without file: $(count_events)"
pass
