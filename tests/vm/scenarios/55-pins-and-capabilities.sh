# Who can change enforcement (issue 9.12): every pin is root's, mode 0600 (directories
# 0700): since Linux 5.19 a pin's file mode alone decides who may open it. Once ready, the
# agent keeps only CAP_BPF (map reads and writes: reloads, mode, counters), and reloads
# still work with it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
cp /bin/true /tmp/xmrig
cp /bin/true /tmp/minerd
start_agent /tmp/policy.toml
find /sys/fs/bpf/minerguard | while read -r p; do
	want=600
	[ -d "$p" ] && want=700
	got=$(stat -c '%a %u:%g' "$p")
	echo "  $p: $got"
	[ "$got" = "$want 0:0" ] || { echo "$p: mode and owner $got, want $want 0:0" > /tmp/bad; }
done
[ -f /tmp/bad ] && fail "$(cat /tmp/bad)"
# A non-root user can neither read nor change enforcement.
run_as_tester minerguard mode audit > /tmp/mode.out 2>&1 && fail "a non-root user changed the mode: $(cat /tmp/mode.out)"
try_exec /tmp/xmrig
expect_blocked "xmrig after a non-root user tried to switch to audit"

cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' "/proc/$AGENT_PID/status")
cap_prm=$(sed -n 's/^CapPrm:[[:space:]]*//p' "/proc/$AGENT_PID/status")
echo "agent capabilities: effective $cap_eff, permitted $cap_prm"
# CAP_BPF is bit 39.
[ "$cap_eff" = 0000008000000000 ] || fail "the ready agent's effective capabilities are $cap_eff, want CAP_BPF only"
[ "$cap_prm" = 0000008000000000 ] || fail "the ready agent's permitted capabilities are $cap_prm, want CAP_BPF only"
write_policy /tmp/policy.toml enforce xmrig minerd
reload_agent
try_exec /tmp/minerd
expect_blocked "minerd, added by a reload under CAP_BPF alone"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
