//! The Prometheus text endpoint (off by default; loopback only unless the operator allows
//! more with `--metrics-allow-remote`): the kernel's counters, read from the pinned maps at
//! each scrape, and the agent's own.
//!
//! A small server of its own on std, bounded by construction, because the agent must outlive
//! whatever a local user does to the port (tiny_http, used before, read headers without limit,
//! ran a thread per connection with no timeout, stopped accepting for good after one accept
//! error, and a port taken first made the agent exit):
//! - one accept thread and `WORKERS` connection threads, fixed; at most `QUEUED` accepted
//!   connections wait for them, and while they are all busy new ones wait in the kernel's
//!   listen backlog (bounded by it), not in the agent;
//! - a request head of at most `HEAD_MAX` bytes, read within `HEAD_DEADLINE` in all; answers
//!   written within `WRITE_TIMEOUT`; only `GET /metrics`; every connection closed after one
//!   answer;
//! - accept errors (EMFILE when descriptors run out) are counted, logged at a bounded rate and
//!   retried after a pause; a port that cannot be bound is retried in the background, never
//!   fatal: enforcement and events never depend on this endpoint.
//!
//! A local user can still keep the workers busy and delay scrapes (a failed scrape shows as
//! `up == 0` in Prometheus); the agent's memory, threads and descriptors stay bounded.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::{info, warn};

use crate::contract::Tier;
use crate::delivery::Counters;
use crate::event::{Action, MatchedOn, Tally};
use crate::pins::{Pinned, Snapshot};
use crate::ratelimit::RateLimit;

/// Refuses addresses other hosts could reach unless the operator said so: the endpoint has no
/// authentication and its counters describe the node's defences (policy size, mode, what was
/// blocked). A cluster's Prometheus scrapes the node's address, so the opt-in exists; the
/// endpoint's bounds against hostile clients are the same either way.
pub fn check_addr(addr: SocketAddr, allow_remote: bool) -> Result<()> {
    if !addr.ip().is_loopback() && !allow_remote {
        bail!(
            "--metrics-addr {addr}: not a loopback address; the endpoint has no authentication and \
             shows the node's policy counts, so other hosts may reach it only with \
             --metrics-allow-remote (then restrict who can, with a NetworkPolicy or a firewall)"
        );
    }
    Ok(())
}

/// The bounds of the endpoint (constants in the agent; tests shorten the waits).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Threads that read requests and answer them.
    pub workers: usize,
    /// Accepted connections waiting for a worker.
    pub queued: usize,
    /// Bytes of a request head (request line and headers); a scraper sends a few hundred.
    pub head_max: usize,
    /// Time to receive the whole head, from accept.
    pub head_deadline: Duration,
    pub write_timeout: Duration,
    /// Pause between attempts to bind a port that is taken.
    pub bind_retry: Duration,
    /// Pause after an accept error that only time can cure (descriptors or memory short).
    pub accept_backoff: Duration,
}

pub const BOUNDS: Bounds = Bounds {
    workers: 4,
    queued: 16,
    head_max: 4096,
    head_deadline: Duration::from_secs(2),
    write_timeout: Duration::from_secs(2),
    bind_retry: Duration::from_secs(5),
    accept_backoff: Duration::from_millis(100),
};

/// What the endpoint has done, for tests (and a debugger).
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub bound: AtomicBool,
    pub accept_errors: AtomicU64,
    pub answered: AtomicU64,
}

/// The body of a scrape, or why there is none.
pub type Source = dyn Fn() -> Result<String> + Send + Sync;

/// In the agent: serves the pinned maps' snapshot, the delivery counters (stdout's, the
/// webhook's) and the events counted by kind. Never fails: without metrics the agent still
/// enforces and reports.
pub fn serve(
    addr: SocketAddr,
    allow_remote: bool,
    delivery: Arc<Counters>,
    webhook: Option<Arc<crate::webhook::Counters>>,
    events: Arc<Tally>,
) {
    let pinned = match Pinned::open() {
        Ok(Some(p)) => Mutex::new(p),
        Ok(None) => {
            warn!(%addr, "metrics not served: nothing is pinned to read counters from");
            return;
        }
        Err(e) => {
            warn!(%addr, error = format!("{e:#}"), "metrics not served: cannot open the pinned maps");
            return;
        }
    };
    let source = move || {
        let snapshot = pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()?;
        Ok(render(
            &snapshot,
            delivery.undelivered(),
            webhook.as_ref().map(|w| w.undelivered()),
            delivery.pod_metadata_misses(),
            &events,
            &BUILD,
        ))
    };
    if let Err(e) = serve_with(addr, allow_remote, BOUNDS, Arc::new(source)) {
        warn!(%addr, error = format!("{e:#}"), "metrics not served");
    }
}

/// Starts the endpoint's threads; binding happens (and is retried) on the accept thread.
pub fn serve_with(
    addr: SocketAddr,
    allow_remote: bool,
    bounds: Bounds,
    source: Arc<Source>,
) -> Result<Arc<EndpointStats>> {
    check_addr(addr, allow_remote)?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the metrics endpoint is reachable from other hosts (--metrics-allow-remote): it has no authentication; restrict who can reach it");
    }
    let stats = Arc::new(EndpointStats::default());
    let (tx, rx) = mpsc::sync_channel::<TcpStream>(bounds.queued);
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..bounds.workers {
        let (rx, source, stats) = (Arc::clone(&rx), Arc::clone(&source), Arc::clone(&stats));
        thread::Builder::new()
            .name(format!("metrics-{i}"))
            .spawn(move || work(&rx, bounds, &*source, &stats))
            .context("starting a metrics thread")?;
    }
    let accept_stats = Arc::clone(&stats);
    thread::Builder::new()
        .name("metrics-accept".into())
        .spawn(move || {
            let listener = bind(addr, bounds, &accept_stats);
            accept(&listener, bounds, &tx, &accept_stats);
        })
        .context("starting the metrics accept thread")?;
    Ok(stats)
}

/// Binds `addr`, retrying every `bind_retry` until it can: another process may hold the port
/// for a while (a local user squatting it, an old agent still exiting).
fn bind(addr: SocketAddr, bounds: Bounds, stats: &EndpointStats) -> TcpListener {
    let mut log = RateLimit::new(Duration::from_secs(300));
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                stats.bound.store(true, Ordering::Relaxed);
                info!(%addr, "serving metrics at /metrics");
                return listener;
            }
            Err(e) => {
                if let Some(failures) = log.hit(1, Instant::now()) {
                    warn!(%addr, error = %e, failures, retry_every = ?bounds.bind_retry,
                        "cannot bind the metrics endpoint; retrying (enforcement and events are not affected)");
                }
                thread::sleep(bounds.bind_retry);
            }
        }
    }
}

fn accept(
    listener: &TcpListener,
    bounds: Bounds,
    tx: &mpsc::SyncSender<TcpStream>,
    stats: &EndpointStats,
) {
    let mut log = RateLimit::new(Duration::from_secs(60));
    loop {
        match listener.accept() {
            // Blocks while every worker is busy and the queue is full: further connections
            // then wait in the listen backlog, which the kernel bounds.
            Ok((stream, _)) => {
                if tx.send(stream).is_err() {
                    // Workers never return; if they did, nothing would answer: stop accepting.
                    warn!("metrics workers are gone: the endpoint stops");
                    return;
                }
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(errors) = log.hit(1, Instant::now()) {
                    warn!(error = %e, errors, "metrics endpoint cannot accept a connection; retrying");
                }
                let short = matches!(
                    e.raw_os_error(),
                    Some(
                        libc_errno::EMFILE
                            | libc_errno::ENFILE
                            | libc_errno::ENOBUFS
                            | libc_errno::ENOMEM
                    )
                );
                if short {
                    // Descriptors or memory come back only with time: pause instead of spinning.
                    thread::sleep(bounds.accept_backoff);
                }
            }
        }
    }
}

/// The errno values `accept` reports when the process or the system runs short.
mod libc_errno {
    use nix::errno::Errno;
    pub const EMFILE: i32 = Errno::EMFILE as i32;
    pub const ENFILE: i32 = Errno::ENFILE as i32;
    pub const ENOBUFS: i32 = Errno::ENOBUFS as i32;
    pub const ENOMEM: i32 = Errno::ENOMEM as i32;
}

fn work(rx: &Mutex<Receiver<TcpStream>>, bounds: Bounds, source: &Source, stats: &EndpointStats) {
    loop {
        // The lock is held only while waiting for the next connection.
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(stream) = next else { return };
        if answer(stream, bounds, source) {
            stats.answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why no request could be read.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The request line: method and target.
    Request(String, String),
    TooLarge,
    Malformed,
    /// Closed, timed out or failed: nobody to answer.
    Gone,
}

/// Reads a request head within the deadline and the size bound; keeps only the request line.
fn read_head(stream: &mut TcpStream, bounds: Bounds) -> Head {
    let deadline = Instant::now() + bounds.head_deadline;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A zero timeout would mean "block forever".
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Head::Gone;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Head::Gone,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Head::Gone,
        };
        // Search only where the end of the head can be: from the last 3 bytes already read.
        let from = head.len().saturating_sub(3);
        // Never more than one byte past the bound: enough to know the head is too large.
        let room = (bounds.head_max + 1).saturating_sub(head.len());
        head.extend_from_slice(&chunk[..n.min(room)]);
        let end = head[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| head[from..].windows(2).position(|w| w == b"\n\n"));
        if end.is_some() {
            break;
        }
        if head.len() > bounds.head_max {
            return Head::TooLarge;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Head::Malformed;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None) if version.starts_with("HTTP/1.") => {
            Head::Request(method.to_owned(), target.to_owned())
        }
        _ => Head::Malformed,
    }
}

/// One connection, one answer. Returns whether a scrape was answered.
fn answer(mut stream: TcpStream, bounds: Bounds, source: &Source) -> bool {
    let (status, extra, body) = match read_head(&mut stream, bounds) {
        Head::Gone => return false,
        Head::TooLarge => (
            "431 Request Header Fields Too Large",
            "",
            "request head too large\n".to_string(),
        ),
        Head::Malformed => ("400 Bad Request", "", "bad request\n".to_string()),
        Head::Request(method, _) if method != "GET" => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "only GET\n".to_string(),
        ),
        Head::Request(_, target) if target.split('?').next() != Some("/metrics") => {
            ("404 Not Found", "", "see /metrics\n".to_string())
        }
        Head::Request(..) => match source() {
            Ok(body) => (
                "200 OK",
                "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
                body,
            ),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "cannot read the counters for a scrape"
                );
                (
                    "500 Internal Server Error",
                    "",
                    "cannot read the counters\n".to_string(),
                )
            }
        },
    };
    let response = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = stream
        .set_write_timeout(Some(bounds.write_timeout))
        .and_then(|()| stream.write_all(response.as_bytes()));
    let _ = stream.shutdown(std::net::Shutdown::Both);
    sent.is_ok() && status.starts_with("200")
}

/// What `minerguard version` prints, for `minerguard_build_info`.
pub struct Build {
    pub version: &'static str,
    pub commit: &'static str,
}

pub const BUILD: Build = Build {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("MINERGUARD_COMMIT"),
};

/// A label value as the text format writes it: backslash, double quote and line feed escaped.
/// The commit comes from the build's environment (MINERGUARD_COMMIT): anything can be in it.
fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // HELP text escapes backslash and line feed (not quotes); ours are constants without
    // either, but the format's rule costs nothing to keep.
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// The Prometheus text exposition of a snapshot, the agent's counts and the build.
/// `webhook`: the webhook's undelivered events, when the agent has one.
pub fn render(
    s: &Snapshot,
    undelivered: u64,
    webhook: Option<u64>,
    pod_misses: u64,
    events: &Tally,
    build: &Build,
) -> String {
    let mut out = String::new();
    let counters = s.counters.unwrap_or_default();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    };
    metric(
        "minerguard_execs_checked_total",
        "counter",
        "Execs the LSM hook checked.",
        counters.checked,
    );
    metric(
        "minerguard_execs_blocked_total",
        "counter",
        "Execs and executable mappings denied with EPERM (enforce mode).",
        counters.blocked,
    );
    metric(
        "minerguard_processes_killed_total",
        "counter",
        "Processes killed before their first instruction (a miner's arguments; enforce mode).",
        counters.killed,
    );
    metric(
        "minerguard_execs_audited_total",
        "counter",
        "Matches allowed and reported (audit mode, or a host process under scope containers).",
        counters.audited,
    );
    metric(
        "minerguard_events_lost_total",
        "counter",
        "Events the ring buffer had no room for (the exec was still enforced).",
        counters.lost,
    );
    metric(
        "minerguard_events_undelivered_total",
        "counter",
        "Events the agent read but could not write to stdout (output queue full, write failed, undecodable).",
        undelivered,
    );
    if let Some(webhook) = webhook {
        metric(
            "minerguard_webhook_undelivered_total",
            "counter",
            "Events not delivered to --webhook-url (queue full, every try failed, or refused with a 4xx).",
            webhook,
        );
    }
    metric(
        "minerguard_pod_metadata_misses_total",
        "counter",
        "Container events written without pod metadata (the container runtime was down, slow, or did not know the container).",
        pod_misses,
    );
    metric(
        "minerguard_policy_names",
        "gauge",
        "Names in the kernel's policy map.",
        s.names as u64,
    );
    metric(
        "minerguard_remembered_files",
        "gauge",
        "Files the kernel remembers after blocking them by name (denied under any name).",
        s.remembered as u64,
    );
    metric(
        "minerguard_enforcing",
        "gauge",
        "1 while the LSM program is attached.",
        u64::from(s.enforcing),
    );
    metric(
        "minerguard_enforce_mode",
        "gauge",
        "1 in enforce mode, 0 in audit mode.",
        u64::from(s.mode == Some(crate::policy::Mode::Enforce)),
    );
    // One series per tier, 1 for the one in force: alerting can match on the label.
    header(
        &mut out,
        "minerguard_tier",
        "gauge",
        "The exec check's enforcement tier (1: in force).",
    );
    for tier in Tier::ALL {
        let _ = writeln!(
            out,
            "minerguard_tier{{tier=\"{tier}\"}} {}",
            u8::from(s.tier == Some(tier))
        );
    }
    // Every pair, zeros included: a series that appears only with its first event makes
    // `increase()` miss that event, and an alert on it fire late.
    header(
        &mut out,
        "minerguard_events_total",
        "counter",
        "Events the agent read, by action and what matched (the JSON events' action and matched_on); since the agent started.",
    );
    for action in Action::ALL {
        for matched_on in MatchedOn::ALL {
            let _ = writeln!(
                out,
                "minerguard_events_total{{action=\"{}\",matched_on=\"{}\"}} {}",
                action.as_str(),
                matched_on.as_str(),
                events.get(action, matched_on)
            );
        }
    }
    header(
        &mut out,
        "minerguard_build_info",
        "gauge",
        "The agent's version and commit (as `minerguard version` prints them); always 1.",
    );
    let _ = writeln!(
        out,
        "minerguard_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        label_value(build.version),
        label_value(build.commit)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Stats;
    use crate::policy::Mode;

    fn snapshot() -> Snapshot {
        Snapshot {
            enforcing: true,
            tier: Some(Tier::FmodRet),
            mode: Some(Mode::Audit),
            names: 39,
            remembered: 2,
            counters: Some(Stats {
                checked: 10,
                blocked: 2,
                killed: 5,
                audited: 3,
                lost: 1,
            }),
            agent_pid: Some(7),
        }
    }

    /// Two blocked by name, one killed for its arguments, as the encoder counts them.
    fn tally() -> Tally {
        let tally = Tally::default();
        let blocked = crate::event::decode(&crate::event::tests::raw_blocked_xmrig()).unwrap();
        let killed = crate::event::Event {
            action: Action::Killed,
            matched_on: MatchedOn::Argv,
            ..blocked.clone()
        };
        for e in [&blocked, &blocked, &killed] {
            tally.count(e);
        }
        tally
    }

    #[test]
    fn exposition_names_follow_prometheus_conventions() {
        let text = render(&snapshot(), 4, Some(6), 6, &tally(), &BUILD);
        assert!(text.contains(
            "# TYPE minerguard_execs_blocked_total counter\nminerguard_execs_blocked_total 2\n"
        ));
        assert!(text.contains("minerguard_events_lost_total 1\n"));
        assert!(text.contains("minerguard_processes_killed_total 5\n"));
        assert!(text.contains("minerguard_events_undelivered_total 4\n"));
        assert!(text.contains(
            "# TYPE minerguard_webhook_undelivered_total counter\nminerguard_webhook_undelivered_total 6\n"
        ));
        // Without a webhook, no webhook metric (rather than a 0 that suggests one works).
        let without = render(&Snapshot::unpinned(), 0, None, 0, &Tally::default(), &BUILD);
        assert!(!without.contains("webhook"), "{without}");
        assert!(text.contains("minerguard_pod_metadata_misses_total 6\n"));
        assert!(text.contains("minerguard_policy_names 39\n"));
        assert!(text.contains("minerguard_remembered_files 2\n"));
        assert!(text.contains("minerguard_enforce_mode 0\n"));
        assert!(text.contains(
            "minerguard_tier{tier=\"lsm\"} 0\nminerguard_tier{tier=\"fmod_ret\"} 1\nminerguard_tier{tier=\"kill\"} 0\n"
        ));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(name.starts_with("minerguard_"), "{line}");
            let counter = text.contains(&format!("# TYPE {name} counter"));
            assert_eq!(counter, name.ends_with("_total"), "{line}");
        }
    }

    #[test]
    fn events_are_counted_by_the_events_own_action_and_match() {
        let text = render(&snapshot(), 0, None, 0, &tally(), &BUILD);
        // The label values are the JSON event's `action` and `matched_on` strings.
        assert!(
            text.contains("minerguard_events_total{action=\"blocked\",matched_on=\"both\"} 2\n")
        );
        assert!(text.contains("minerguard_events_total{action=\"killed\",matched_on=\"argv\"} 1\n"));
        // Every pair is there from the start, at 0 until it happens.
        assert!(text
            .contains("minerguard_events_total{action=\"audited\",matched_on=\"hugepages\"} 0\n"));
        let series = text
            .lines()
            .filter(|l| l.starts_with("minerguard_events_total{"))
            .count();
        assert_eq!(series, Action::ALL.len() * MatchedOn::ALL.len());
    }

    #[test]
    fn build_info_carries_what_version_prints() {
        let text = render(&snapshot(), 0, None, 0, &Tally::default(), &BUILD);
        let line = format!(
            "minerguard_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            env!("MINERGUARD_COMMIT")
        );
        assert!(text.contains(&line), "{text}");
        assert!(text.contains("# TYPE minerguard_build_info gauge\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let build = Build {
            version: "1.0",
            commit: "a\\b\"c\nd",
        };
        let text = render(&snapshot(), 0, None, 0, &Tally::default(), &build);
        assert!(
            text.contains("minerguard_build_info{version=\"1.0\",commit=\"a\\\\b\\\"c\\nd\"} 1\n"),
            "{text}"
        );
        // The value stays on one line: nothing a scraper would read as a sample of its own.
        assert!(!text.lines().any(|l| l.starts_with('d')));
    }

    /// The exposition as an independent parser reads it (prometheus-parse, as Rust scrapers
    /// use it). It skips lines it cannot read instead of failing: every sample line must
    /// come out as a sample, typed as its `# TYPE` line says.
    #[test]
    fn a_prometheus_parser_reads_every_sample() {
        let text = render(&snapshot(), 4, None, 0, &tally(), &BUILD);
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(scrape.samples.len(), samples);
        let find = |name: &str, labels: &[(&str, &str)]| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .map(|s| s.value.clone())
        };
        use prometheus_parse::Value;
        assert_eq!(
            find(
                "minerguard_events_total",
                &[("action", "blocked"), ("matched_on", "both")]
            ),
            Some(Value::Counter(2.0))
        );
        assert_eq!(
            find(
                "minerguard_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(Value::Gauge(1.0))
        );
        assert_eq!(
            find("minerguard_execs_blocked_total", &[]),
            Some(Value::Counter(2.0))
        );
        // Each metric documented once, HELP before TYPE, TYPE before its samples.
        let mut documented = std::collections::HashSet::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(documented.insert(name.to_string()), "{name} twice");
                let next = lines.next().unwrap();
                assert!(next.starts_with(&format!("# TYPE {name} ")), "{next}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(documented.contains(name), "{line} before its HELP");
            }
        }
    }

    #[test]
    fn only_loopback_addresses_unless_allowed() {
        assert!(check_addr("127.0.0.1:9464".parse().unwrap(), false).is_ok());
        assert!(check_addr("[::1]:9464".parse().unwrap(), false).is_ok());
        for addr in ["0.0.0.0:9464", "10.1.2.3:9464", "[::]:9464"] {
            let err = check_addr(addr.parse().unwrap(), false).unwrap_err();
            assert!(format!("{err}").contains("--metrics-allow-remote"), "{err}");
            assert!(check_addr(addr.parse().unwrap(), true).is_ok());
        }
    }

    // --- The endpoint under attack. Each attack runs in a process of its own (the test binary
    // again, running one ignored test), so that its threads, memory and descriptor limit are
    // measured and changed without the other tests in the way.

    const CHILD: &str = "MG_METRICS_TEST_CHILD";

    /// Runs the ignored test `name` in a child process; fails with its output if it fails.
    fn in_child(name: &str) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, name)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{name} failed:\n{text}"
        );
    }

    /// Whether this process is the child meant to run `name` (and not a plain `--ignored` run).
    fn is_child(name: &str) -> bool {
        std::env::var(CHILD).is_ok_and(|n| n == name)
    }

    const FAKE_BODY: &str = "minerguard_fake 1\n";

    fn fake_source() -> Arc<Source> {
        Arc::new(|| Ok(FAKE_BODY.to_string()))
    }

    fn test_bounds() -> Bounds {
        Bounds {
            head_deadline: Duration::from_millis(500),
            write_timeout: Duration::from_millis(500),
            bind_retry: Duration::from_millis(100),
            accept_backoff: Duration::from_millis(20),
            ..BOUNDS
        }
    }

    /// A free loopback port (free when this returns; the endpoint binds it just after).
    fn free_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// Starts the endpoint on a fresh port and waits until it listens.
    /// A test in a process of its own (it changes process-wide limits, or measures the
    /// process): `$test` runs the test binary again for `$child`, which gets an endpoint
    /// proven to answer, its address and its stats.
    macro_rules! in_own_process {
        ($test:ident, $child:ident, |$addr:ident, $stats:tt| $body:block) => {
            #[test]
            fn $test() {
                in_child(concat!("metrics::tests::", stringify!($child)));
            }

            #[test]
            #[ignore = "run by its parent test, in a process of its own"]
            fn $child() {
                let Some(($addr, $stats)) =
                    child_server(concat!("metrics::tests::", stringify!($child)))
                else {
                    return;
                };
                $body
            }
        };
    }

    /// In the child process of test `name` only: a started endpoint, proven to answer.
    fn child_server(name: &str) -> Option<(SocketAddr, Arc<EndpointStats>)> {
        if !is_child(name) {
            return None;
        }
        let (addr, stats) = start();
        scrape(addr).unwrap();
        Some((addr, stats))
    }

    fn start() -> (SocketAddr, Arc<EndpointStats>) {
        let addr = free_port();
        let stats = serve_with(addr, false, test_bounds(), fake_source()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stats.bound.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "never bound");
            thread::sleep(Duration::from_millis(10));
        }
        (addr, stats)
    }

    /// One request; the whole answer, or the error.
    fn request(addr: SocketAddr, raw: &[u8]) -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(raw)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    }

    fn scrape(addr: SocketAddr) -> io::Result<String> {
        request(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        )
    }

    /// Scrapes until an answer comes, for at most `within`.
    fn scrape_within(addr: SocketAddr, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match scrape(addr) {
                Ok(answer) if answer.starts_with("HTTP/1.1 200") => return answer,
                other => assert!(Instant::now() < deadline, "no answer: {other:?}"),
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn answers_get_metrics_and_only_that() {
        let (addr, stats) = start();
        let ok = scrape(addr).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.ends_with(&format!("\r\n\r\n{FAKE_BODY}")), "{ok}");
        let with_query = request(
            addr,
            b"GET /metrics?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert!(with_query.starts_with("HTTP/1.1 200"), "{with_query}");
        let other = request(addr, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = request(addr, b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let junk = request(addr, b"\x16\x03\x01 hello\r\n\r\n").unwrap();
        assert!(junk.starts_with("HTTP/1.1 400"), "{junk}");
        assert_eq!(stats.answered.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_failing_source_is_a_500_not_a_crash() {
        let addr = free_port();
        let stats =
            serve_with(addr, false, test_bounds(), Arc::new(|| bail!("maps gone"))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stats.bound.load(Ordering::Relaxed) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let answer = scrape(addr).unwrap();
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    }

    /// A local user who binds the port first must not make the agent exit (it restarted in a
    /// loop): the endpoint keeps trying, and serves once the port is free.
    #[test]
    fn a_taken_port_is_retried_until_free() {
        let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = squatter.local_addr().unwrap();
        let stats = serve_with(addr, false, test_bounds(), fake_source())
            .expect("a taken port must not be an error");
        thread::sleep(Duration::from_millis(500));
        assert!(!stats.bound.load(Ordering::Relaxed));
        drop(squatter);
        let answer = scrape_within(addr, Duration::from_secs(5));
        assert!(answer.ends_with(FAKE_BODY), "{answer}");
    }

    in_own_process!(
        an_endless_header_line_is_cut,
        child_endless_header_line,
        |addr, _| {
            let before = rss_kib();
            // 256 MiB of one header line, never ended: the endpoint must stop reading at its bound.
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ").unwrap();
            let chunk = vec![b'a'; 1 << 20];
            let mut sent = 0usize;
            for _ in 0..256 {
                match s.write_all(&chunk) {
                    Ok(()) => sent += chunk.len(),
                    Err(_) => break, // the endpoint closed the connection: good
                }
            }
            let grew = rss_kib().saturating_sub(before);
            println!("sent {} MiB of header; RSS grew by {grew} KiB", sent >> 20);
            assert!(
                sent < 64 << 20,
                "the endpoint kept reading: {} MiB",
                sent >> 20
            );
            assert!(grew < 8 * 1024, "RSS grew by {grew} KiB");
            drop(s);
            let answer = scrape_within(addr, Duration::from_secs(5));
            assert!(answer.ends_with(FAKE_BODY));
        }
    );

    in_own_process!(
        thousands_of_idle_connections_stay_bounded,
        child_idle_connections,
        |addr, _| {
            use nix::sys::socket::{
                connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
            };
            let (threads_before, rss_before) = (threads(), rss_kib());
            let SocketAddr::V4(v4) = addr else { panic!() };
            let target = SockaddrIn::from(v4);
            // 3,000 connections that send nothing, or half a request head, and wait. Connected
            // without blocking: the attacker does not wait for the server to accept.
            let mut idle = Vec::new();
            for i in 0..3000 {
                let fd = socket(
                    AddressFamily::Inet,
                    SockType::Stream,
                    SockFlag::SOCK_NONBLOCK,
                    None,
                )
                .unwrap();
                let _ = connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &target);
                if i % 2 == 0 {
                    let _ = nix::unistd::write(&fd, b"GET /metrics HTTP/1.1\r\nHost:");
                }
                idle.push(fd);
            }
            thread::sleep(Duration::from_secs(2));
            let (threads_during, rss_during) = (threads(), rss_kib());
            println!(
            "threads {threads_before} -> {threads_during}, RSS {rss_before} -> {rss_during} KiB"
        );
            assert!(
                threads_during <= threads_before + 2,
                "{threads_during} threads"
            );
            assert!(rss_during < rss_before + 8 * 1024, "RSS {rss_during} KiB");
            let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
            // The attacker's 3,000, and at most the workers' and the queue's on the server side.
            assert!(
                fds <= 3000 + BOUNDS.workers + BOUNDS.queued + 16,
                "{fds} descriptors"
            );
            drop(idle);
            let answer = scrape_within(addr, Duration::from_secs(10));
            assert!(answer.ends_with(FAKE_BODY));
            assert_eq!(threads(), threads_before);
        }
    );

    in_own_process!(
        accept_recovers_after_descriptors_run_out,
        child_descriptors_run_out,
        |addr, stats| {
            use nix::sys::resource::{setrlimit, Resource};
            // The worker closes its side of that scrape just after answering: let it, or its
            // descriptor would come free after the hogging below and serve the next accept.
            thread::sleep(Duration::from_millis(300));
            setrlimit(Resource::RLIMIT_NOFILE, 256, 256).unwrap();
            // Use every descriptor, then free one for the client's socket: the connection
            // arrives, and the endpoint's accept fails with EMFILE.
            let mut hog = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                hog.push(f);
            }
            hog.pop();
            let mut client = TcpStream::connect(addr).unwrap();
            thread::sleep(Duration::from_millis(300));
            let errors = stats.accept_errors.load(Ordering::Relaxed);
            drop(hog);
            // The connection made while descriptors were out is answered once they are back...
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client
                .write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).unwrap();
            assert!(answer.ends_with(FAKE_BODY), "{answer}");
            // ...and so is every later one.
            assert!(scrape(addr).unwrap().ends_with(FAKE_BODY));
            assert!(
                errors > 0,
                "accept never failed: the test did not exhaust descriptors"
            );
            // Retried after a pause, not in a busy loop.
            assert!(errors < 100, "{errors} accept errors in 300 ms");
        }
    );
}
