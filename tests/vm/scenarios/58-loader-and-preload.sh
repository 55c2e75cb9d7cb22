# Loader launches and preloaded libraries (issue 10, layer 4): `ld-linux-x86-64.so.2 ./xmrig`
# never execs ./xmrig, it maps it executable; LD_PRELOAD maps a library the same way. Both
# are checked like an exec, by name and by identity: in enforce mode the mapping fails with
# EPERM (the loader gives up on the program; a preload is dropped and the program runs
# without it), in audit mode it runs; one event each, hook "mmap". Ordinary dynamic
# programs (which map their libraries) and the loader started on an unlisted program run.
# `[mmap] enabled = false` turns it off.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
ld=/lib64/ld-linux-x86-64.so.2
[ -x "$ld" ] || fail "no dynamic loader at $ld in the image"
libc=$(ls /lib/x86_64-linux-gnu/libc.so.6 /lib64/libc.so.6 /usr/lib/x86_64-linux-gnu/libc.so.6 2>/dev/null | head -n1)
[ -n "$libc" ] || fail "no libc.so.6 in the image"
write_policy /tmp/policy.toml enforce xmrig xmrig.so mg-sentinel
start_agent /tmp/policy.toml
mkdir -p /tmp/l
cp /bin/sleep /tmp/l/xmrig
cp "$libc" /tmp/l/xmrig.so

for mode in enforce audit; do
	set_mode "$mode"
	try_exec /mg/pidexec "$ld" /tmp/l/xmrig 0
	if [ "$mode" = enforce ]; then
		[ "$EXEC_RC" != 0 ] || fail "the loader ran /tmp/l/xmrig in enforce mode"
		echo "$EXEC_ERR" | grep -q "failed to map segment" ||
			fail "the loader does not say it could not map /tmp/l/xmrig: $EXEC_ERR"
	else
		expect_ran "$ld /tmp/l/xmrig (audit)"
	fi
	expect_exec_event "$mode" mmap xmrig xmrig hook=mmap filename=xmrig

	try_exec /mg/pidexec env LD_PRELOAD=/tmp/l/xmrig.so /bin/true
	expect_ran "/bin/true with LD_PRELOAD=/tmp/l/xmrig.so ($mode)"
	if [ "$mode" = enforce ]; then
		echo "$EXEC_ERR" | grep -q "cannot be preloaded" ||
			fail "the loader did not drop the denied preload: $EXEC_ERR"
	fi
	expect_exec_event "$mode" mmap xmrig.so xmrig.so hook=mmap
done
set_mode enforce

# Ordinary dynamic programs, and the loader on an unlisted program, run with no event.
try_exec /mg/pidexec /bin/sleep 0
expect_ran "/bin/sleep (maps libc executable)"
expect_no_event "/bin/sleep"
try_exec /mg/pidexec "$ld" /bin/true
expect_ran "$ld /bin/true"
expect_no_event "$ld /bin/true"

# Identity through the loader: the blocked file, renamed, started by the loader.
mv /tmp/l/xmrig /tmp/l/renamed
try_exec /mg/pidexec "$ld" /tmp/l/renamed 0
[ "$EXEC_RC" != 0 ] || fail "the loader ran /tmp/l/renamed (xmrig, renamed after its block)"
expect_exec_event enforce identity xmrig renamed hook=mmap

# Turned off: the loader runs a listed program again.
cp /bin/sleep /tmp/l/xmrig
printf '[mmap]\nenabled = false\n' >> /tmp/policy.toml
reload_agent
try_exec /mg/pidexec "$ld" /tmp/l/xmrig 0
expect_ran "$ld /tmp/l/xmrig with [mmap] enabled = false"
expect_no_event "$ld /tmp/l/xmrig with mmap off"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
