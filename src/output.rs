//! The event stream: one JSON object per line on stdout (schema in README.md), in
//! minerguard's own schema (`json`) or as Falco writes its alerts (`falco`: what Falcosidekick
//! and the pipelines built for Falco take).

use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::enrich::{self, Clocks};
use crate::event::{self, Event, Tally};

#[derive(Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub action: &'static str,
    pub mode: &'static str,
    pub matched_name: &'a str,
    pub matched_on: &'static str,
    /// "exec", or "mmap" for a file mapped executable.
    pub hook: &'static str,
    /// The attach point that acted: "lsm", "fmod_ret" or "kill" (README: tiers).
    pub tier: &'static str,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The caller's name: the exec had not replaced it yet.
    pub comm: &'a str,
    /// The path as passed to exec (for a mapping: the file's name).
    pub filename: &'a str,
    /// The name of the file really executed (or mapped).
    pub file_name: &'a str,
    pub cgroup_id: u64,
    /// The leaf name of the caller's cgroup at the exec.
    pub cgroup: &'a str,
    pub mnt_ns: u32,
    /// In the host's mount namespace (PID 1's).
    pub host: bool,
    pub container_id: Option<&'a str>,
    pub container_runtime: Option<&'static str>,
    /// `matched_on: "randomx"` only: what the kernel saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// `time` in nanoseconds since the epoch (Falco's `evt.time`).
    #[serde(skip)]
    pub wall_ns: i128,
}

/// What a behaviour match saw: rounding-mode changes, and over how long.
#[derive(Serialize)]
pub struct Observed {
    pub changes: u32,
    pub seconds: f64,
}

impl<'a> Record<'a> {
    /// Fails only for a time RFC 3339 cannot write (before year 0 or after 9999).
    pub fn new(e: &'a Event, clocks: &Clocks) -> Result<Record<'a>> {
        let container = enrich::container(&e.cgroup_name);
        let wall_ns = clocks.wall_clock(e.boot_ns);
        let time = enrich::rfc3339(wall_ns).with_context(|| {
            format!("the event's time ({wall_ns} ns from the epoch) is outside the years 0000-9999")
        })?;
        Ok(Record {
            time,
            action: e.action.as_str(),
            mode: e.mode.as_str(),
            matched_name: &e.matched_name,
            matched_on: e.matched_on.as_str(),
            hook: e.hook.as_str(),
            tier: e.tier.as_str(),
            pid: e.pid,
            tid: e.tid,
            ppid: e.ppid,
            uid: e.uid,
            gid: e.gid,
            comm: &e.comm,
            filename: &e.filename,
            file_name: &e.file_name,
            cgroup_id: e.cgroup_id,
            cgroup: &e.cgroup_name,
            mnt_ns: e.mnt_ns,
            host: e.host,
            container_id: container.map(|c| c.id),
            container_runtime: container.map(|c| c.runtime),
            observed: e.observed.map(|(changes, ms)| Observed {
                changes,
                seconds: f64::from(ms) / 1000.0,
            }),
            wall_ns,
        })
    }
}

/// The schema of the lines on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// minerguard's own (README: event schema).
    Json,
    /// Falco's alert: time, rule, priority, source, hostname, tags, output, output_fields.
    Falco,
}

/// Turns ring-buffer records into lines, keeping what a line needs that the kernel does not
/// send: the node's name, user names (looked up once per uid).
pub struct Encoder {
    format: Format,
    hostname: String,
    users: HashMap<u32, Option<String>>,
    /// Every decoded event is counted here (the metrics' `minerguard_events_total`).
    tally: Arc<Tally>,
}

/// The node's name: `NODE_NAME` (Kubernetes' downward API sets it), else the hostname.
pub fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

/// Users looked up at most; beyond that, names are not cached (a node has few users).
const MAX_USERS: usize = 1024;

impl Encoder {
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
            hostname: node_name(),
            users: HashMap::new(),
            tally: Arc::default(),
        }
    }

    /// Counts decoded events in `tally` (shared with the metrics endpoint).
    pub fn counting(self, tally: Arc<Tally>) -> Encoder {
        Encoder { tally, ..self }
    }

    /// The user's name from the user database, if it has one.
    fn user(&mut self, uid: u32) -> Option<String> {
        if let Some(name) = self.users.get(&uid) {
            return name.clone();
        }
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        if self.users.len() < MAX_USERS {
            self.users.insert(uid, name.clone());
        }
        name
    }

    /// A ring-buffer record as the JSON line to print, newline included. Never panics:
    /// this runs inside libbpf's callback, where a panic cannot unwind and aborts the agent
    /// before the consumer position advances, so every restart would die on the same record.
    pub fn encode(&mut self, data: &[u8], clocks: &Clocks) -> Result<Vec<u8>> {
        no_panic(|| {
            let e = event::decode(data)?;
            // Counted once decoded, whatever becomes of the line: the metric says what the
            // kernel reported, minerguard_events_undelivered_total what did not get out.
            self.tally.count(&e);
            let record = Record::new(&e, clocks)?;
            let mut line = match self.format {
                Format::Json => serde_json::to_vec(&record),
                Format::Falco => {
                    let user = self.user(e.uid);
                    serde_json::to_vec(&falco(&record, &e, &self.hostname, user))
                }
            }
            .context("encoding an event")?;
            line.push(b'\n');
            Ok(line)
        })
    }
}

/// A record as Falco writes an alert (keys in Falco's order: its JSON library sorts them).
#[derive(Serialize)]
pub struct FalcoAlert<'a> {
    pub hostname: &'a str,
    /// One sentence, as Falco's: the time, the priority, the rule, then field=value pairs.
    pub output: String,
    /// Falco's field names, and minerguard's own under `minerguard.`; null when unknown.
    pub output_fields: BTreeMap<&'static str, serde_json::Value>,
    pub priority: &'static str,
    pub rule: &'static str,
    pub source: &'static str,
    /// Sorted, as Falco's.
    pub tags: Vec<&'static str>,
    pub time: &'a str,
}

/// The rule an event is reported under: one per thing stopped (or seen, in audit), stable
/// (pipelines key on it).
fn rule_of(e: &Event) -> &'static str {
    use crate::event::{Action, Hook};
    let audited = e.action == Action::Audited;
    match (e.hook, audited) {
        (Hook::Open, false) => "Cryptominer tuning blocked",
        (Hook::Open, true) => "Cryptominer tuning detected",
        (Hook::Switch, false) => "Cryptominer computation killed",
        (Hook::Switch, true) => "Cryptominer computation detected",
        (_, true) => "Cryptominer execution detected",
        (_, false) if e.action == Action::Killed => "Cryptominer process killed",
        (_, false) => "Cryptominer execution blocked",
    }
}

fn falco<'a>(
    r: &'a Record<'_>,
    e: &Event,
    hostname: &'a str,
    user: Option<String>,
) -> FalcoAlert<'a> {
    use serde_json::{json, Value};
    let rule = rule_of(e);
    let priority = if e.action == crate::event::Action::Audited {
        "Warning"
    } else {
        "Critical"
    };
    let mut tags = vec!["T1496", "minerguard", "mitre_impact", "process"];
    tags.push(if r.container_id.is_some() {
        "container"
    } else {
        "host"
    });
    tags.sort_unstable();
    // For an exec, the program being run is the process (proc.name as Falco reports an
    // exec); for a mapping, an open or a computation, the process that did it.
    let proc_name = match e.hook {
        crate::event::Hook::Exec => r.file_name,
        _ => r.comm,
    };
    let unknown = Value::Null;
    let fields: BTreeMap<&'static str, Value> = [
        // (json! of an i128 would panic outside i64: the years 1678-2262 fit.)
        ("evt.time", json!(i64::try_from(r.wall_ns).ok())),
        ("proc.name", json!(proc_name)),
        ("proc.exepath", json!(r.filename)),
        ("proc.cmdline", unknown.clone()),
        ("proc.pid", json!(r.pid)),
        ("proc.ppid", json!(r.ppid)),
        ("user.uid", json!(r.uid)),
        ("user.name", json!(user)),
        ("container.id", json!(r.container_id)),
        ("container.name", unknown.clone()),
        ("container.image.repository", unknown.clone()),
        ("k8s.pod.name", unknown.clone()),
        ("k8s.ns.name", unknown),
        ("minerguard.action", json!(r.action)),
        ("minerguard.mode", json!(r.mode)),
        ("minerguard.matched_on", json!(r.matched_on)),
        ("minerguard.matched_name", json!(r.matched_name)),
        ("minerguard.hook", json!(r.hook)),
        ("minerguard.tier", json!(r.tier)),
        ("minerguard.comm", json!(r.comm)),
        ("minerguard.cgroup", json!(r.cgroup)),
        ("minerguard.host", json!(r.host)),
    ]
    .into_iter()
    .collect();
    let user_text = user.unwrap_or_else(|| "?".into());
    let output = format!(
        "{}: {priority} {rule} | process={proc_name} exe={} pid={} ppid={} user={user_text} \
         user_uid={} container_id={} matched_on={} matched_name={} action={} tier={}",
        r.time,
        r.filename,
        r.pid,
        r.ppid,
        r.uid,
        r.container_id.unwrap_or("host"),
        r.matched_on,
        r.matched_name,
        r.action,
        r.tier,
    );
    FalcoAlert {
        hostname,
        output,
        output_fields: fields,
        priority,
        rule,
        source: "minerguard",
        tags,
        time: &r.time,
    }
}

/// Runs `f`, turning a panic (a bug of ours) into an error, so that the record is skipped
/// and the agent keeps enforcing and reporting.
pub fn no_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(anyhow!("bug: panicked while handling an event: {what}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::raw_blocked_xmrig;

    fn encode(data: &[u8], clocks: &Clocks) -> Result<Vec<u8>> {
        Encoder::new(Format::Json).encode(data, clocks)
    }

    fn falco_line(data: &[u8]) -> serde_json::Value {
        let line = Encoder::new(Format::Falco)
            .encode(data, &Clocks::now())
            .unwrap();
        assert!(line.ends_with(b"}\n") && line.iter().filter(|&&b| b == b'\n').count() == 1);
        serde_json::from_slice(&line).unwrap()
    }

    /// Falcosidekick's `FalcoPayload.Check()`: a known priority, a rule, a time, fields; and
    /// what its handlers type-assert (k8s names: strings or null).
    fn falcosidekick_accepts(v: &serde_json::Value) {
        let levels = [
            "emergency",
            "alert",
            "critical",
            "error",
            "warning",
            "notice",
            "informational",
            "info",
            "debug",
        ];
        let priority = v["priority"].as_str().unwrap().to_ascii_lowercase();
        assert!(levels.contains(&priority.as_str()), "{v}");
        assert!(!v["rule"].as_str().unwrap().is_empty(), "{v}");
        assert!(
            humantime::parse_rfc3339(v["time"].as_str().unwrap()).is_ok(),
            "{v}"
        );
        let fields = v["output_fields"].as_object().unwrap();
        assert!(!fields.is_empty(), "{v}");
        for k8s in ["k8s.ns.name", "k8s.pod.name"] {
            assert!(fields[k8s].is_null() || fields[k8s].is_string(), "{v}");
        }
    }

    #[test]
    fn a_falco_alert_passes_falcosidekicks_check_and_uses_falcos_field_names() {
        let v = falco_line(&raw_blocked_xmrig());
        falcosidekick_accepts(&v);
        assert_eq!(v["rule"], "Cryptominer execution blocked");
        assert_eq!(v["priority"], "Critical");
        assert_eq!(v["source"], "minerguard");
        assert!(!v["hostname"].as_str().unwrap().is_empty());
        let tags: Vec<&str> = v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let mut sorted = tags.clone();
        sorted.sort_unstable();
        assert_eq!(tags, sorted);
        for tag in ["T1496", "mitre_impact", "container"] {
            assert!(tags.contains(&tag), "{tags:?}");
        }
        let f = &v["output_fields"];
        assert_eq!(f["proc.name"], "xmrig");
        assert_eq!(f["proc.exepath"], "/tmp/xmrig");
        assert_eq!(f["proc.pid"], 100);
        assert_eq!(f["proc.ppid"], 1);
        assert_eq!(f["user.uid"], 1000);
        assert_eq!(
            f["container.id"],
            "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
        );
        assert_eq!(f["minerguard.action"], "blocked");
        assert_eq!(f["minerguard.matched_on"], "both");
        assert!(f["evt.time"].is_i64(), "{f}");
        assert!(f["proc.cmdline"].is_null() && f["k8s.pod.name"].is_null());
        let output = v["output"].as_str().unwrap();
        assert!(
            output.contains("Critical Cryptominer execution blocked")
                && output.contains("process=xmrig"),
            "{output}"
        );
    }

    #[test]
    fn an_audited_event_is_a_warning_under_its_own_rule() {
        let mut raw = raw_blocked_xmrig();
        let at = std::mem::offset_of!(crate::contract::mg_event, action);
        raw[at..at + 4].copy_from_slice(
            &crate::contract::mg_action::MG_ACTION_AUDITED
                .0
                .to_ne_bytes(),
        );
        let v = falco_line(&raw);
        falcosidekick_accepts(&v);
        assert_eq!(v["priority"], "Warning");
        assert_eq!(v["rule"], "Cryptominer execution detected");
    }

    #[test]
    fn record_has_the_documented_keys() {
        let line =
            String::from_utf8(encode(&raw_blocked_xmrig(), &Clocks::now()).unwrap()).unwrap();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["action"], "blocked");
        assert_eq!(v["mode"], "enforce");
        assert_eq!(v["matched_name"], "xmrig");
        assert_eq!(v["matched_on"], "both");
        assert_eq!(v["pid"], 100);
        assert_eq!(v["ppid"], 1);
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["filename"], "/tmp/xmrig");
        assert_eq!(v["cgroup_id"], 4242);
        assert_eq!(v["host"], false);
        assert_eq!(
            v["container_id"],
            "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
        );
        assert_eq!(v["container_runtime"], "docker");
        let time = v["time"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(time).is_ok() && time.ends_with('Z'),
            "{time}"
        );
    }

    #[test]
    fn an_event_before_1970_is_reported() {
        // The clock was set back to 1 s after the epoch; the event was queued 5 s before.
        let clocks = Clocks {
            wall_ns: 1_000_000_000,
            boot_ns: Some(10_000_000_000),
        };
        let line = encode(&raw_blocked_xmrig(), &clocks).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["time"], "1969-12-31T23:59:56.000000000Z");
        assert_eq!(v["matched_name"], "xmrig");
        assert_eq!(line.last(), Some(&b'\n'));
    }

    #[test]
    fn garbage_and_odd_records_are_errors_not_panics() {
        let clocks = Clocks::now();
        for garbage in [
            vec![],
            vec![0xff; 3],
            vec![0xa5; raw_blocked_xmrig().len()],
            vec![0x00; raw_blocked_xmrig().len() * 3],
        ] {
            assert!(encode(&garbage, &clocks).is_err(), "{garbage:?}");
            let falco = Encoder::new(Format::Falco).encode(&garbage, &clocks);
            assert!(falco.is_err(), "{garbage:?}");
        }
        // A time RFC 3339 cannot write: skipped with an error.
        let far = Clocks {
            wall_ns: i128::from(i64::MAX) * 1_000_000_000,
            boot_ns: Some(0),
        };
        let e = encode(&raw_blocked_xmrig(), &far).unwrap_err();
        assert!(e.to_string().contains("outside the years"), "{e}");
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let e = no_panic::<()>(|| panic!("boom")).unwrap_err();
        assert_eq!(e.to_string(), "bug: panicked while handling an event: boom");
        assert_eq!(no_panic(|| Ok(7)).unwrap(), 7);
    }
}
