# Without bpf in lsm= the agent must refuse to start, fast, telling the user which kernel
# parameter to add; also when its LSM-list check is skipped and only its probe can tell.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
case ",$(cat /sys/kernel/security/lsm)," in *,bpf,*) fail "harness: the BPF LSM is active in the nolsm suite" ;; esac
write_policy /tmp/policy.toml enforce xmrig minerd

# try_run ARGS...: run the agent (60 s cap), expect a quick non-zero exit; stderr in /tmp/err.
try_run() {
	t0=$(now)
	timeout 60 minerguard run --policy /tmp/policy.toml "$@" >/tmp/out 2>/tmp/err
	rc=$?
	secs=$(elapsed "$t0")
	echo "minerguard run${*:+ $*}: status $rc after $secs s; stderr:"
	cat /tmp/err
	[ "$rc" != 0 ] || fail "minerguard run${*:+ $*} exited 0 without the BPF LSM"
	[ "$rc" != 143 ] || fail "minerguard run${*:+ $*} still running after 60 s"
	awk -v s="$secs" 'BEGIN { exit !(s < 20) }' || fail "minerguard run${*:+ $*} took $secs s to give up"
	grep -q 'lsm=' /tmp/err || fail "stderr of run${*:+ $*} does not mention lsm=: $(head -c 300 /tmp/err)"
}
try_run
grep -q 'bpf' /tmp/err || fail "stderr does not mention bpf: $(head -c 300 /tmp/err)"
try_run --skip-lsm-list-check

[ -z "$(pidof minerguard)" ] || fail "a minerguard process is left running"
left=$(find /sys/fs/bpf -mindepth 1 | tr '\n' ' ')
[ -z "$left" ] || fail "left pinned in bpffs: $left"
cp /bin/sleep /tmp/xmrig
try_exec /mg/pidexec /tmp/xmrig 0
expect_ran "xmrig after the failed starts"
pass
