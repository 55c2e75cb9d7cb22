//! The event stream: one JSON object per line on stdout (schema in README.md), in
//! minerguard's own schema (`json`) or as Falco writes its alerts (`falco`: what Falcosidekick
//! and the pipelines built for Falco take).

use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use std::time::{Duration, Instant};

use crate::cri;
use crate::enrich::{self, Clocks};
use crate::event::{self, Event, Tally};
use crate::storm::{Storms, Verdict};

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
    /// The arguments, space-separated (argv[0] first): of the exec for an exec, of the process
    /// otherwise; null when unreadable.
    pub cmdline: Option<String>,
    /// The kernel read the first arguments only (README: event schema).
    pub cmdline_truncated: bool,
    pub mnt_ns: u32,
    /// In the host's mount namespace (PID 1's).
    pub host: bool,
    pub container_id: Option<&'a str>,
    pub container_runtime: Option<&'static str>,
    /// `NODE_NAME`, else the hostname.
    pub node_name: &'a str,
    /// From the container runtime (CRI); null when unknown (README: pod metadata).
    pub pod_name: Option<&'a str>,
    pub pod_namespace: Option<&'a str>,
    pub pod_uid: Option<&'a str>,
    pub pod_labels: Option<&'a BTreeMap<String, String>>,
    pub container_name: Option<&'a str>,
    pub image_repository: Option<&'a str>,
    pub image_tag: Option<&'a str>,
    pub image_digest: Option<&'a str>,
    /// `matched_on: "randomx"` only: what the kernel saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// How many events this line stands for: 1, or for a storm's summary (README: storms) the
    /// events of its window, the last of which this line shows.
    pub count: u64,
    /// A summary: when the first event it counts happened (null otherwise).
    pub first_time: Option<String>,
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

/// An empty string is not a name: the runtime leaves fields empty that it does not know.
fn known(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl<'a> Record<'a> {
    /// Adds what the container runtime said about the event's container.
    pub fn with_pod(mut self, meta: Option<&'a cri::Meta>) -> Record<'a> {
        let Some(meta) = meta else {
            return self;
        };
        self.container_name = known(&meta.container_name);
        self.image_repository = meta.image.repository.as_deref();
        self.image_tag = meta.image.tag.as_deref();
        self.image_digest = meta.image.digest.as_deref();
        if let Some(pod) = meta.pod.as_deref() {
            self.pod_name = known(&pod.name);
            self.pod_namespace = known(&pod.namespace);
            self.pod_uid = known(&pod.uid);
            self.pod_labels = Some(&pod.labels);
        }
        self
    }

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
            cmdline: (!e.args.is_empty()).then(|| e.args.join(" ")),
            cmdline_truncated: e.args_cut,
            mnt_ns: e.mnt_ns,
            host: e.host,
            container_id: container.map(|c| c.id),
            container_runtime: container.map(|c| c.runtime),
            node_name: "",
            pod_name: None,
            pod_namespace: None,
            pod_uid: None,
            pod_labels: None,
            container_name: None,
            image_repository: None,
            image_tag: None,
            image_digest: None,
            observed: e.observed.map(|(changes, ms)| Observed {
                changes,
                seconds: f64::from(ms) / 1000.0,
            }),
            count: 1,
            first_time: None,
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
/// send: the node's name, user names (looked up once per uid), the pod (from the runtime).
pub struct Encoder {
    format: Format,
    hostname: String,
    users: HashMap<u32, Option<String>>,
    storms: Storms,
    /// Every decoded event is counted here (the metrics' `minerguard_events_total`).
    tally: Arc<Tally>,
    pods: Option<cri::Cri>,
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
    /// `window`: how long a storm's repeats are held for one summary (zero: never).
    pub fn new(format: Format, window: Duration) -> Encoder {
        Encoder {
            format,
            hostname: node_name(),
            users: HashMap::new(),
            storms: Storms::new(window),
            tally: Arc::default(),
            pods: None,
        }
    }

    /// Counts decoded events in `tally` (shared with the metrics endpoint).
    pub fn counting(self, tally: Arc<Tally>) -> Encoder {
        Encoder { tally, ..self }
    }

    /// Names the pod of container events from `pods` (`None`: pod fields stay null).
    pub fn with_pods(mut self, pods: Option<cri::Cri>) -> Encoder {
        self.pods = pods;
        self
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

    /// A ring-buffer record as the JSON line to print, newline included, whatever storm it
    /// is part of (tests).
    #[cfg(test)]
    pub fn encode(&mut self, data: &[u8], clocks: &Clocks) -> Result<Vec<u8>> {
        no_panic(|| {
            let e = event::decode(data)?;
            self.line(&e, clocks, 1, None)
        })
    }

    /// A ring-buffer record as the JSON line to print, newline included, or `None` when it
    /// is a storm's repeat, held for the storm's next summary (`summaries`). Never panics:
    /// this runs inside libbpf's callback, where a panic cannot unwind and aborts the agent
    /// before the consumer position advances, so every restart would die on the same record.
    pub fn next(&mut self, data: &[u8], clocks: &Clocks, now: Instant) -> Result<Option<Vec<u8>>> {
        no_panic(|| {
            let e = event::decode(data)?;
            // Counted once decoded, whatever becomes of the line (a storm's repeat included):
            // the metric says what the kernel reported, minerguard_events_undelivered_total
            // what did not get out.
            self.tally.count(&e);
            match self.storms.admit(&e, data, now) {
                Verdict::Held => Ok(None),
                Verdict::Report => self.line(&e, clocks, 1, None).map(Some),
            }
        })
    }

    /// When the next storm summary falls due, if one is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.storms.next_due()
    }

    /// The lines of storms' summaries due at `now`; with `stopping`, every one held.
    pub fn summaries(
        &mut self,
        clocks: &Clocks,
        now: Instant,
        stopping: bool,
    ) -> Vec<Result<Vec<u8>>> {
        let due = if stopping {
            self.storms.drain()
        } else {
            self.storms.due(now)
        };
        due.into_iter()
            .map(|s| {
                no_panic(|| {
                    let e = event::decode(&s.record)?;
                    self.line(&e, clocks, s.count, Some(s.first_boot_ns))
                })
            })
            .collect()
    }

    fn line(
        &mut self,
        e: &Event,
        clocks: &Clocks,
        count: u64,
        first: Option<u64>,
    ) -> Result<Vec<u8>> {
        let user = match self.format {
            Format::Json => None,
            Format::Falco => self.user(e.uid),
        };
        let mut record = Record::new(e, clocks)?;
        record.count = count;
        if let Some(boot_ns) = first {
            record.first_time = enrich::rfc3339(clocks.wall_clock(boot_ns));
        }
        record.node_name = &self.hostname;
        // Bounded (cri::WAIT) for a container not learned yet; never for a host process.
        let meta = match (&self.pods, record.container_id) {
            (Some(pods), Some(id)) => pods.lookup(id),
            _ => None,
        };
        let record = record.with_pod(meta.as_deref());
        let mut line = match self.format {
            Format::Json => serde_json::to_vec(&record),
            Format::Falco => serde_json::to_vec(&falco(&record, e, user)),
        }
        .context("encoding an event")?;
        line.push(b'\n');
        Ok(line)
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

fn falco<'a>(r: &'a Record<'_>, e: &Event, user: Option<String>) -> FalcoAlert<'a> {
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
    // Falco's proc.cmdline is the process name and its arguments after argv[0].
    let args = e.args.get(1..).unwrap_or_default().join(" ");
    let cmdline = (!e.args.is_empty()).then(|| {
        if args.is_empty() {
            proc_name.to_string()
        } else {
            format!("{proc_name} {args}")
        }
    });
    let fields: BTreeMap<&'static str, Value> = [
        // (json! of an i128 would panic outside i64: the years 1678-2262 fit.)
        ("evt.time", json!(i64::try_from(r.wall_ns).ok())),
        ("proc.name", json!(proc_name)),
        ("proc.exepath", json!(r.filename)),
        ("proc.cmdline", json!(cmdline)),
        ("proc.args", json!((!e.args.is_empty()).then_some(&args))),
        ("proc.pid", json!(r.pid)),
        ("proc.ppid", json!(r.ppid)),
        ("user.uid", json!(r.uid)),
        ("user.name", json!(user)),
        ("container.id", json!(r.container_id)),
        ("container.name", json!(r.container_name)),
        ("container.image.repository", json!(r.image_repository)),
        ("container.image.tag", json!(r.image_tag)),
        ("container.image.digest", json!(r.image_digest)),
        ("k8s.pod.name", json!(r.pod_name)),
        ("k8s.ns.name", json!(r.pod_namespace)),
        ("k8s.pod.uid", json!(r.pod_uid)),
        // Falco's is a list of key:value.
        (
            "k8s.pod.labels",
            json!(r.pod_labels.map(|l| l
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>())),
        ),
        ("minerguard.action", json!(r.action)),
        ("minerguard.mode", json!(r.mode)),
        ("minerguard.matched_on", json!(r.matched_on)),
        ("minerguard.matched_name", json!(r.matched_name)),
        ("minerguard.hook", json!(r.hook)),
        ("minerguard.tier", json!(r.tier)),
        ("minerguard.comm", json!(r.comm)),
        ("minerguard.cgroup", json!(r.cgroup)),
        ("minerguard.host", json!(r.host)),
        ("minerguard.count", json!(r.count)),
        ("minerguard.first_time", json!(r.first_time)),
    ]
    .into_iter()
    .collect();
    let user_text = user.unwrap_or_else(|| "?".into());
    let output = format!(
        "{}: {priority} {rule} | process={proc_name} exe={} command={} pid={} ppid={} \
         user={user_text} user_uid={} container_id={} container={} image={} namespace={} pod={} \
         matched_on={} matched_name={} action={} tier={}{}",
        r.time,
        r.filename,
        cmdline.as_deref().unwrap_or("?"),
        r.pid,
        r.ppid,
        r.uid,
        r.container_id.unwrap_or("host"),
        // Falco's word for a field it does not know.
        r.container_name.unwrap_or("<NA>"),
        r.image_repository.unwrap_or("<NA>"),
        r.pod_namespace.unwrap_or("<NA>"),
        r.pod_name.unwrap_or("<NA>"),
        r.matched_on,
        r.matched_name,
        r.action,
        r.tier,
        match &r.first_time {
            Some(first) => format!(" count={} since={first}", r.count),
            None => String::new(),
        },
    );
    FalcoAlert {
        hostname: r.node_name,
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
        Encoder::new(Format::Json, Duration::ZERO).encode(data, clocks)
    }

    fn falco_line(data: &[u8]) -> serde_json::Value {
        let line = Encoder::new(Format::Falco, Duration::ZERO)
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
        assert_eq!(
            f["proc.cmdline"],
            "xmrig -o stratum+tcp://pool.example:3333"
        );
        assert_eq!(f["proc.args"], "-o stratum+tcp://pool.example:3333");
        assert!(f["k8s.pod.name"].is_null());
        let output = v["output"].as_str().unwrap();
        assert!(
            output.contains("Critical Cryptominer execution blocked")
                && output.contains("process=xmrig")
                && output.contains("command=xmrig -o stratum+tcp://pool.example:3333 pid="),
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

    fn a_pod() -> cri::Meta {
        cri::Meta {
            container_name: "miner".into(),
            image: cri::parse_image(
                "docker.io/library/mg-miner:1.0",
                "docker.io/library/mg-miner@sha256:abcd",
            ),
            pod: Some(std::sync::Arc::new(cri::Pod {
                name: "miner-a".into(),
                namespace: "mg-test".into(),
                uid: "0a0a0a0a-1111".into(),
                labels: [("app".to_string(), "miner".to_string())].into(),
            })),
        }
    }

    #[test]
    fn a_named_container_fills_the_pod_fields_in_both_formats() {
        let e = event::decode(&raw_blocked_xmrig()).unwrap();
        let meta = a_pod();
        let mut record = Record::new(&e, &Clocks::now()).unwrap();
        record.node_name = "node-1";
        let record = record.with_pod(Some(&meta));
        let v = serde_json::to_value(&record).unwrap();
        assert_eq!(v["node_name"], "node-1");
        assert_eq!(v["pod_name"], "miner-a");
        assert_eq!(v["pod_namespace"], "mg-test");
        assert_eq!(v["pod_uid"], "0a0a0a0a-1111");
        assert_eq!(v["pod_labels"], serde_json::json!({"app": "miner"}));
        assert_eq!(v["container_name"], "miner");
        assert_eq!(v["image_repository"], "docker.io/library/mg-miner");
        assert_eq!(v["image_tag"], "1.0");
        assert_eq!(v["image_digest"], "sha256:abcd");

        let alert = serde_json::to_value(falco(&record, &e, None)).unwrap();
        falcosidekick_accepts(&alert);
        assert_eq!(alert["hostname"], "node-1");
        let f = &alert["output_fields"];
        assert_eq!(f["k8s.pod.name"], "miner-a");
        assert_eq!(f["k8s.ns.name"], "mg-test");
        assert_eq!(f["k8s.pod.uid"], "0a0a0a0a-1111");
        assert_eq!(f["k8s.pod.labels"], serde_json::json!(["app:miner"]));
        assert_eq!(f["container.name"], "miner");
        assert_eq!(
            f["container.image.repository"],
            "docker.io/library/mg-miner"
        );
        assert_eq!(f["container.image.tag"], "1.0");
        assert_eq!(f["container.image.digest"], "sha256:abcd");
        let output = alert["output"].as_str().unwrap();
        assert!(
            output.contains(
                "container=miner image=docker.io/library/mg-miner namespace=mg-test pod=miner-a"
            ),
            "{output}"
        );
    }

    #[test]
    fn an_unnamed_container_has_null_pod_fields() {
        let line = encode(&raw_blocked_xmrig(), &Clocks::now()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert!(!v["node_name"].as_str().unwrap().is_empty());
        for key in [
            "pod_name",
            "pod_namespace",
            "pod_uid",
            "pod_labels",
            "container_name",
            "image_repository",
            "image_tag",
            "image_digest",
        ] {
            assert!(v[key].is_null(), "{key}: {v}");
        }
        let alert = falco_line(&raw_blocked_xmrig());
        for key in ["k8s.pod.name", "k8s.pod.labels", "container.image.tag"] {
            assert!(alert["output_fields"][key].is_null(), "{key}: {alert}");
        }
        let output = alert["output"].as_str().unwrap();
        assert!(output.contains("namespace=<NA> pod=<NA>"), "{output}");
    }

    #[test]
    fn a_storm_is_one_line_then_a_summary_with_its_count_and_first_time() {
        let clocks = Clocks::now();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let raw = raw_blocked_xmrig();
        let mut enc = Encoder::new(Format::Falco, w);
        let first = enc
            .next(&raw, &clocks, t0)
            .unwrap()
            .expect("the first is reported");
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["output_fields"]["minerguard.count"], 1);
        assert!(v["output_fields"]["minerguard.first_time"].is_null());
        for _ in 0..99 {
            assert!(enc.next(&raw, &clocks, t0).unwrap().is_none());
        }
        assert!(
            enc.summaries(&clocks, t0, false).is_empty(),
            "window still open"
        );
        let due = enc.summaries(&clocks, t0 + w, false);
        assert_eq!(due.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(due[0].as_ref().unwrap()).unwrap();
        falcosidekick_accepts(&v);
        assert_eq!(v["output_fields"]["minerguard.count"], 99);
        assert!(v["output_fields"]["minerguard.first_time"].is_string());
        assert!(
            v["output"].as_str().unwrap().contains(" count=99 since="),
            "{v}"
        );
        // Stopping writes what is held, whatever the window.
        let mut json = Encoder::new(Format::Json, w);
        json.next(&raw, &clocks, t0).unwrap();
        json.next(&raw, &clocks, t0).unwrap();
        let held = json.summaries(&clocks, t0, true);
        let v: serde_json::Value = serde_json::from_slice(held[0].as_ref().unwrap()).unwrap();
        assert_eq!(
            (v["count"].as_u64(), v["first_time"].is_string()),
            (Some(1), true)
        );
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
        assert_eq!(v["cmdline"], "xmrig -o stratum+tcp://pool.example:3333");
        assert_eq!(v["cmdline_truncated"], false);
        assert_eq!(
            (v["count"].as_u64(), v["first_time"].is_null()),
            (Some(1), true)
        );
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
            let falco = Encoder::new(Format::Falco, Duration::ZERO).encode(&garbage, &clocks);
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
