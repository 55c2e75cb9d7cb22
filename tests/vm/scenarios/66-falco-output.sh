# Falco-compatible output (issue 13): with --output-format falco, the stopped exec is one
# line as Falco writes an alert, which Falcosidekick accepts (a known priority, a rule, an
# RFC 3339 time, output fields) and Falco's pipelines read by Falco's field names: the
# process, its pid and parent, the user (name resolved), the tags of Falco's miner rules.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
write_policy /tmp/policy.toml enforce xmrig
start_agent /tmp/policy.toml --output-format falco
cp /bin/sleep /tmp/xmrig
try_exec run_as_tester /mg/pidexec /tmp/xmrig 1
expect_blocked "/tmp/xmrig"
if [ "$BLOCKED" = killed ]; then rule="Cryptominer process killed"; else rule="Cryptominer execution blocked"; fi
user=$(awk -F: '$3 == 1000 { print $1; exit }' /etc/passwd)
_ev_poll "(.output_fields[\"proc.pid\"] == $EXEC_PID)" ||
	fail "no Falco alert for pid $EXEC_PID within 10 s: $(tail -n 3 "$EVENTS")"
alert=$(cat /tmp/mg-ev.out)
echo "  alert: $alert"
for cond in ".rule == \"$rule\"" '.priority == "Critical"' '.source == "minerguard"' \
	'(.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$"))' '(.hostname | length > 0)' \
	'(.tags | index("T1496") and index("mitre_impact") and index("host"))' \
	'.output_fields["proc.name"] == "xmrig"' '.output_fields["proc.exepath"] == "/tmp/xmrig"' \
	'.output_fields["proc.cmdline"] == "xmrig 1"' '.output_fields["proc.args"] == "1"' \
	'.output_fields["user.uid"] == 1000' "(.output_fields[\"user.name\"] == $(if [ -n "$user" ]; then echo "\"$user\""; else echo null; fi))" \
	"(.output_fields[\"minerguard.action\"] == \"$BLOCKED\")" '(.output | test("Critical"))' \
	'(.output_fields["k8s.pod.name"] == null)'; do
	[ "$(printf '%s\n' "$alert" | jq "$cond")" = true ] || fail "the Falco alert fails [$cond]: $alert"
done
stop_agent || fail "agent exited with status $? on SIGTERM"
minerguard disable >/dev/null 2>&1
pass
