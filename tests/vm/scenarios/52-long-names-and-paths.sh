# Long names and long paths (issue 9.9). A prefix pattern matches every name that starts
# with it, however long (names of 64 bytes and more used to skip the lookup); the name a
# process will carry is found for any path exec accepts (PATH_MAX), even after thousands of
# slashes, and for basenames of any length a file system allows (NAME_MAX).
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce 'xmrig*' minerd mg-sentinel
start_agent /tmp/policy.toml
long60=$(printf '%060d' 0 | tr 0 x)
long200=$(printf '%0200d' 0 | tr 0 y)

# A file named xmrig- + 60 characters (66 bytes): the pattern still covers it.
cp /bin/true "/tmp/xmrig-$long60"
try_exec /mg/pidexec "/tmp/xmrig-$long60"
expect_blocked "xmrig-<60 x> (66 bytes, pattern xmrig*)"
# Events carry the first 63 bytes of a file name.
expect_exec_event enforce both 'xmrig*' "$(printf '%s' "xmrig-$long60" | cut -c1-63)"
# 206 bytes.
cp /bin/true "/tmp/xmrig-$long200"
try_exec /mg/pidexec "/tmp/xmrig-$long200"
expect_blocked "xmrig-<200 y> (206 bytes)"

# The process name through a symlink whose target is innocent: the file is "true", the
# name the process carries is the link's.
mkdir -p /tmp/d
ln -s /bin/true /tmp/d/minerd
ln -s /bin/true "/tmp/d/xmrig-$long200"
# 3,500 slashes before the name: a path of ~3.5 KB (PATH_MAX is 4,096).
slashes=$(printf '%03500d' 0 | tr 0 /)
try_exec /mg/pidexec "/tmp/d${slashes}minerd"
expect_blocked "minerd after 3,500 slashes"
expect_exec_event enforce process_name minerd true
try_exec /mg/pidexec "/tmp/d${slashes}xmrig-$long200"
expect_blocked "xmrig-<200 y> after 3,500 slashes (pattern, 206-byte basename)"
expect_exec_event enforce process_name 'xmrig*' true
# Not listed, same shape: runs.
ln -s /bin/true /tmp/d/innocent
try_exec /mg/pidexec "/tmp/d${slashes}innocent"
expect_ran "innocent after 3,500 slashes"
expect_no_event "innocent after 3,500 slashes"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
