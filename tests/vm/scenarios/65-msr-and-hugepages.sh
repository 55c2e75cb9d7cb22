# Behaviour at start (issue 11): XMRig's "MSR mod" opens /dev/cpu/N/msr for writing (after
# turning on the msr module's allow_writes) and a miner reserves huge pages through
# vm.nr_hugepages or sysfs. With [behavior] msr and hugepages enforced, each open for writing
# fails with EPERM (one event, hook "open", matched_on "msr" or "hugepages"): an MSR device
# under any name (char major 202), the module parameter, the huge-page files from a container
# (another mount namespace; the host's own tuning is left alone). Reading is never denied.
# A program or a cgroup (and its sub-cgroups) on the allow-list may; audit reports and lets
# it happen; off does nothing; left out, the layer follows the mode. The pinned program keeps
# denying after the agent stops. On the kill tier (no open can be stopped there) the agent
# says the layer is unavailable, and the open happens.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
mgopen=/mg/bin/mgopen
mknod /tmp/mg-msr c 202 0 || fail "cannot make an MSR device node"
write_policy /tmp/policy.toml enforce mg-sentinel
printf '[behavior]\nmsr = "enforce"\nhugepages = "enforce"\n' >> /tmp/policy.toml
start_agent /tmp/policy.toml

if [ "$BLOCKED" = killed ]; then
	grep '"minerguard ready"' "$AGENT_LOG" | grep '"msr":"unavailable"' | grep -q '"hugepages":"unavailable"' ||
		fail "the kill tier's ready record does not say msr and hugepages are unavailable"
	grep -q "MSR writes and huge-page reservations are not checked on the kill tier" "$AGENT_LOG" ||
		fail "no warning that MSR writes are not checked on the kill tier"
	try_exec /mg/pidexec "$mgopen" /tmp/mg-msr w
	[ "$EXEC_RC" != 1 ] || fail "an MSR open was denied on the kill tier, which has no such check"
	expect_no_event "an MSR open on the kill tier"
	stop_agent || fail "agent exited with status $? on SIGTERM"
	minerguard disable >/dev/null 2>&1
	pass
fi
grep '"minerguard ready"' "$AGENT_LOG" | grep '"msr":"enforce"' | grep -q '"hugepages":"enforce"' ||
	fail "the ready record does not say msr and hugepages are enforced"
[ -d /sys/module/msr ] || insmod /lib/modules/msr.ko || fail "cannot load the msr module"
hp=/proc/sys/vm/nr_hugepages
for hp_sys in /sys/kernel/mm/hugepages/hugepages-*/nr_hugepages; do break; done
[ -e "$hp_sys" ] || fail "no /sys/kernel/mm/hugepages/hugepages-*/nr_hugepages"
command -v unshare >/dev/null || fail "no unshare in the image"

# expect_denied WHAT: the last try_exec's open failed with EPERM (mgopen's status is the errno).
expect_denied() {
	[ "$EXEC_RC" = 1 ] || fail "$1 was not denied with EPERM: status $EXEC_RC, stderr: $EXEC_ERR"
}

# MSR: any char device of major 202, whatever its name or directory; the kernel's own node;
# the module parameter. Reading is left alone.
try_exec /mg/pidexec "$mgopen" /tmp/mg-msr w
expect_denied "opening /tmp/mg-msr (char 202:0) for writing"
expect_exec_event enforce msr "/dev/cpu/*/msr" mg-msr hook=open filename=mg-msr
try_exec /mg/pidexec "$mgopen" /dev/cpu/0/msr w
expect_denied "opening /dev/cpu/0/msr for writing"
expect_exec_event enforce msr "/dev/cpu/*/msr" msr hook=open
try_exec /mg/pidexec "$mgopen" /sys/module/msr/parameters/allow_writes w
expect_denied "opening /sys/module/msr/parameters/allow_writes for writing"
expect_exec_event enforce msr /sys/module/msr/parameters/allow_writes allow_writes hook=open
try_exec /mg/pidexec "$mgopen" /tmp/mg-msr r
expect_ran "opening /tmp/mg-msr for reading"
expect_no_event "reading an MSR"

# Huge pages: the host's own tuning runs; from a container (another mount namespace) the
# reservation files cannot be opened for writing, procfs or sysfs, but can be read.
try_exec /mg/pidexec "$mgopen" "$hp" w
expect_ran "opening $hp for writing on the host"
expect_no_event "the host's huge-page tuning"
try_exec /mg/pidexec unshare -m "$mgopen" "$hp" w
expect_denied "opening $hp for writing from a container"
expect_exec_event enforce hugepages nr_hugepages nr_hugepages hook=open host:=false
try_exec /mg/pidexec unshare -m "$mgopen" "$hp_sys" w
expect_denied "opening $hp_sys for writing from a container"
expect_exec_event enforce hugepages nr_hugepages nr_hugepages hook=open host:=false
try_exec /mg/pidexec unshare -m "$mgopen" "$hp" r
expect_ran "reading $hp from a container"
expect_no_event "reading the huge-page count"

# The allow-list: a program by its file (a copy of the same helper elsewhere is another
# file), a cgroup with its sub-cgroups; an entry missing on this node is logged, not fatal.
cp "$mgopen" /tmp/mg-tuner
mkdir -p /sys/fs/cgroup/mg-tuning/child
printf 'allow_programs = ["/tmp/mg-tuner", "/usr/sbin/not-installed"]\nallow_cgroups = ["/mg-tuning"]\n' >> /tmp/policy.toml
reload_agent
wait_for_log "allow entry not found" || fail "no warning for the allow entry missing on this node"
try_exec /mg/pidexec /tmp/mg-tuner /tmp/mg-msr w
expect_ran "the allowed program opening /tmp/mg-msr for writing"
expect_no_event "the allowed program"
try_exec /mg/pidexec "$mgopen" /tmp/mg-msr w
expect_denied "an unlisted program opening /tmp/mg-msr for writing"
try_exec in_cgroup mg-tuning/child /mg/pidexec unshare -m "$mgopen" "$hp" w
expect_ran "a container in a sub-cgroup of an allowed cgroup opening $hp for writing"
expect_no_event "the allowed cgroup"

# Audit reports and lets it happen; off does nothing; left out, the layer follows the mode.
write_policy /tmp/policy.toml enforce mg-sentinel
printf '[behavior]\nmsr = "audit"\nhugepages = "off"\n' >> /tmp/policy.toml
reload_agent
try_exec /mg/pidexec "$mgopen" /tmp/mg-msr w
expect_ran "opening /tmp/mg-msr for writing with msr = audit"
expect_events 1 "pid:=$EXEC_PID" action=audited matched_on=msr hook=open
try_exec /mg/pidexec unshare -m "$mgopen" "$hp" w
expect_ran "opening $hp from a container with hugepages = off"
expect_no_event "hugepages = off"
write_policy /tmp/policy.toml enforce mg-sentinel
reload_agent
set_mode audit
try_exec /mg/pidexec "$mgopen" /tmp/mg-msr w
expect_ran "opening /tmp/mg-msr for writing in audit mode"
expect_exec_event audit msr "/dev/cpu/*/msr" mg-msr hook=open
set_mode enforce
try_exec /mg/pidexec "$mgopen" /tmp/mg-msr w
expect_denied "opening /tmp/mg-msr for writing in enforce mode, msr following it"

# Pinned: denied with no agent running, until `minerguard disable`.
stop_agent || fail "agent exited with status $? on SIGTERM"
try_exec "$mgopen" /tmp/mg-msr w
expect_denied "opening /tmp/mg-msr for writing after the agent stopped"
minerguard disable >/dev/null 2>&1 || fail "minerguard disable failed"
try_exec "$mgopen" /tmp/mg-msr w
expect_ran "opening /tmp/mg-msr for writing after minerguard disable"
rmdir /sys/fs/cgroup/mg-tuning/child /sys/fs/cgroup/mg-tuning
pass
