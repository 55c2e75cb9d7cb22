# The arguments a miner receives (issue 10, layer 2): a pool URL scheme, a pool domain as a
# pool option's value (separate, after '=', glued to -o), a flag only miners take, an option
# value only miners pass. In enforce mode the process is killed before its first instruction
# (the helper's first act, creating /tmp/mg-ran, never happens; its parent sees SIGKILL) and
# one event says "killed", matched_on "argv" and the token; in audit mode it runs and is
# reported. Commands whose arguments look alike (gcc -o, curl -o, ssh -o, tar -C,
# --server.port=) run with no event. `[argv] enabled = false` turns it off.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce mg-sentinel
start_agent /tmp/policy.toml
cp /mg/bin/mgmarker /tmp/innocent

# run_with ARGS: /tmp/innocent with ARGS, through a shell that reads them from a file (a
# wrapper given them as its own arguments would be killed first), recording its pid.
run_with() {
	printf '%s\n' "$*" > /tmp/args
	rm -f /tmp/mg-ran
	try_exec sh -c 'echo $$ > /tmp/pid; exec /tmp/innocent $(cat /tmp/args)'
}

cat > /tmp/cases <<'CASES'
stratum+tcp:// -o stratum+tcp://pool.example.net:3333 -u wallet
stratum+ssl:// --url=stratum+ssl://203.0.113.9:443
stratum2+tcp:// stratum2+tcp://203.0.113.9:3333
pool.supportxmr.com -o pool.supportxmr.com:3333
pool.supportxmr.com -opool.supportxmr.com:443
xmr-eu1.nanopool.org --url=xmr-eu1.nanopool.org:14433
gulf.moneroocean.stream -t 2 --pool gulf.moneroocean.stream:10128
RX.UNMINEABLE.COM -o RX.UNMINEABLE.COM.:3333
--donate-level --donate-level 1
--donate-level --donate-level=1
--randomx-1gb-pages -t 2 --randomx-1gb-pages
--cpu-no-yield --cpu-no-yield
--coin=monero --coin monero
--coin=monero --coin=monero
-a=rx/0 -a rx/0
CASES
for mode in enforce audit; do
	set_mode "$mode"
	while read -r token args; do
		run_with "$args"
		if [ "$mode" = enforce ]; then
			[ "$EXEC_RC" = 137 ] || fail "/tmp/innocent $args: status $EXEC_RC, not killed (137)"
			[ -e /tmp/mg-ran ] && fail "/tmp/innocent $args ran an instruction before it was killed"
			action=killed
		else
			expect_ran "/tmp/innocent $args (audit)"
			[ -e /tmp/mg-ran ] || fail "/tmp/innocent $args did not run in audit mode"
			action=audited
		fi
		wait_for_event "pid:=$EXEC_PID" action=$action matched_on=argv "matched_name=$token" \
			file_name=innocent filename=/tmp/innocent hook=exec ||
			fail "no $action argv event naming $token for /tmp/innocent $args: $(pid_events "$EXEC_PID")"
		[ "$(count_events "pid:=$EXEC_PID")" = 1 ] || fail "more than one event for /tmp/innocent $args"
	done < /tmp/cases
done
set_mode enforce

# Look-alikes run, with no event.
while read -r args; do
	run_with "$args"
	expect_ran "/tmp/innocent $args"
	[ -e /tmp/mg-ran ] || fail "/tmp/innocent $args did not run"
	expect_no_event "/tmp/innocent $args"
done <<'BENIGN'
-o out x.c
-o file https://example.com/x
-o StrictHostKeyChecking=no host
-xf a.tar -C /tmp
-jar app.jar --server.port=8080
-o pool.supportxmr.com.evil.example:3333
-o notsupportxmr.com:3333
--donate-levels 1
--coin bitcoin
-P 4 -a rx
BENIGN

# Killed counts in status.
minerguard status --json > /tmp/status.json
[ "$(jq .counters.killed /tmp/status.json)" -ge 15 ] || fail "status does not count the killed: $(cat /tmp/status.json)"

# Turned off: the same arguments run.
printf '[argv]\nenabled = false\n' >> /tmp/policy.toml
reload_agent
run_with "-o stratum+tcp://pool.supportxmr.com:3333 --donate-level 1"
expect_ran "/tmp/innocent with pool arguments and [argv] enabled = false"
expect_no_event "/tmp/innocent with argv off"
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
