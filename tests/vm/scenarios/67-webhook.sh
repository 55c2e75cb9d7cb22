# The webhook sink (issue 13): with --webhook-url, the stopped exec is also POSTed, as the same
# Falco alert stdout gets, to an HTTP receiver (here a small python3 one on loopback, as
# Falcosidekick would take it: POST /, Content-Type application/json, one alert a body).
# Native only (tests/native/run): the VM images have no python3, and no suite lists it.
# shellcheck shell=sh source=../guest/lib.sh  # busybox sh; /mg/lib.sh in the VM
. /mg/lib.sh
command -v python3 >/dev/null || fail "python3 is needed for the receiver (native scenario only)"
cat > /tmp/receiver.py <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/tmp/posted", "ab") as f:
            f.write(self.path.encode() + b" " + self.headers.get("Content-Type", "").encode()
                    + b" " + body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open("/tmp/port.tmp", "w") as f:
    f.write(str(s.server_address[1]))
import os; os.rename("/tmp/port.tmp", "/tmp/port")
s.serve_forever()
PY
python3 /tmp/receiver.py &
RECEIVER=$!
wait_for_file /tmp/port 100 || fail "the receiver did not start"
port=$(cat /tmp/port)
write_policy /tmp/policy.toml enforce xmrig
start_agent /tmp/policy.toml --output-format falco --webhook-url "http://127.0.0.1:$port/"
grep -q '"events are also POSTed to the webhook"' "$AGENT_LOG" || fail "the agent does not say it posts to the webhook"
cp /bin/sleep /tmp/xmrig
try_exec run_as_tester /mg/pidexec /tmp/xmrig 1
expect_blocked "/tmp/xmrig"
_ev_poll "(.output_fields[\"proc.pid\"] == $EXEC_PID)" || fail "no alert on stdout for pid $EXEC_PID"
line=$(cat /tmp/mg-ev.out)
i=0
until [ -s /tmp/posted ] && grep -q "\"proc.pid\":$EXEC_PID[,}]" /tmp/posted; do
	i=$((i + 1))
	[ "$i" -ge 100 ] && fail "no POST naming pid $EXEC_PID within 10 s: $(cat /tmp/posted 2>/dev/null)"
	sleep 0.1
done
posted=$(grep "\"proc.pid\":$EXEC_PID[,}]" /tmp/posted | head -n 1)
echo "  posted: $posted"
case $posted in "/ application/json {"*) ;; *) fail "not a POST / with Content-Type application/json: $posted" ;; esac
body=${posted#/ application/json }
for cond in '.output_fields["proc.exepath"] == "/tmp/xmrig"' "(.output_fields[\"minerguard.action\"] == \"$BLOCKED\")" \
	'.priority == "Critical"' '(.rule | length > 0)'; do
	[ "$(printf '%s\n' "$body" | jq "$cond")" = true ] || fail "the posted alert fails [$cond]: $body"
done
# The same bytes as the stdout line (jq -c re-encodes both the same way).
[ "$(printf '%s\n' "$body" | jq -cS .)" = "$(printf '%s\n' "$line" | jq -cS .)" ] ||
	fail "the posted body differs from the stdout line: $body vs $line"
status=$(minerguard status --json) || true
[ "$(printf '%s\n' "$status" | jq '.webhook_undelivered')" = 0 ] || fail "status: webhook_undelivered is not 0: $status"
stop_agent || fail "agent exited with status $? on SIGTERM"
kill "$RECEIVER" 2>/dev/null
minerguard disable >/dev/null 2>&1
pass
