//! Getting event lines out: a bounded queue to a writer thread of their own, so that a
//! stalled stdout (journald busy, a full pipe) never holds up the event loop, which also
//! handles reloads, stops and the watchdog. Lines are written whole or not at all, and every
//! event that does not reach stdout is counted: the count is logged at a bounded rate,
//! served as `minerguard_events_undelivered_total` and published for `minerguard status`.
//!
//! While stdout keeps up, `Sender::send` returns only once its line is written (for at most
//! `WRITE_WAIT`): libbpf marks a record read when the callback returns, so an agent killed
//! (SIGKILL, OOM) between the two would otherwise lose a record it had read but not written,
//! which the next agent no longer sees, uncounted. Once a write takes longer, the sender
//! stops waiting until the queue has drained: a stall costs the loop `WRITE_WAIT` once.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::event::{Action, MatchedOn, Tally};
use crate::ratelimit::RateLimit;

type EventCounts = [[u64; MatchedOn::ALL.len()]; Action::ALL.len()];

/// Lines the queue holds: more than a full ring buffer (1 MiB, about 1,770 records, all read
/// at once by an agent that starts after events queued), so that draining it never drops
/// while stdout is slow. Lines are about 700 bytes (at most about 3.5 KiB, every string field
/// escaped): about 3 MiB, at most 14 MiB.
pub const QUEUE_LINES: usize = 4096;

/// How long `send` waits for its line to be written while stdout keeps up.
const WRITE_WAIT: Duration = Duration::from_millis(100);

/// Event lines written per second, sustained, and in a burst. A flood of denied execs (an
/// attacker's loop) must not turn into a flood of the journal, which costs the whole node CPU
/// and disk and rotates older records out: beyond this rate events are dropped and counted
/// here, where `status` and the metrics show them. journald's own limit for the unit is set
/// above this (systemd/minerguard.service), so that it never drops what the agent cannot see.
pub const LINES_PER_SEC: u32 = 1_000;
pub const LINES_BURST: u32 = 10_000;

/// Where the agent publishes its count for `minerguard status`, which otherwise reads only
/// the pinned maps. Why a file and not a map: the count is the daemon's, not the kernel's;
/// adding it to the pinned maps would change the kernel contract for a userspace number. A
/// file under /run (tmpfs, the unit's RuntimeDirectory) is readable without the bpf()
/// syscall, gone at reboot, and carries the pid, so a file left by a dead agent is ignored.
pub const STATE_PATH: &str = "/run/minerguard/delivery.json";

/// At most one log record per interval for a repeated delivery failure.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why events did not reach stdout, by cause.
#[derive(Default)]
pub struct Counters {
    /// The queue was full: stdout did not keep up.
    queue_full: AtomicU64,
    /// Writing failed (or the writer is gone).
    write_failed: AtomicU64,
    /// The record could not be decoded or encoded.
    skipped: AtomicU64,
    /// Beyond `LINES_PER_SEC`.
    rate_limited: AtomicU64,
    /// The last error, for the log.
    last_error: Mutex<Option<String>>,
    /// The CRI client, whose misses (events without pod metadata) are published with these.
    pods: std::sync::OnceLock<crate::cri::Cri>,
}

impl Counters {
    /// Every event not delivered, whatever the cause.
    pub fn undelivered(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
            + self.write_failed.load(Ordering::Relaxed)
            + self.skipped.load(Ordering::Relaxed)
            + self.rate_limited.load(Ordering::Relaxed)
    }

    /// Container events that went out without pod metadata (the runtime was down, slow, or
    /// did not know the container); 0 without a CRI client.
    pub fn pod_metadata_misses(&self) -> u64 {
        self.pods.get().map_or(0, crate::cri::Cri::misses)
    }

    /// Publishes `cri`'s misses with the delivery counters (once: the agent has one client).
    pub fn set_pods(&self, cri: crate::cri::Cri) {
        let _ = self.pods.set(cri);
    }

    fn note(&self, counter: &AtomicU64, error: impl FnOnce() -> String) {
        counter.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means another thread panicked mid-assignment: the value is
        // still a valid Option, take it.
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(error());
    }
}

/// Lines the writer has finished with (written, failed or dropped by the rate), in queue order.
#[derive(Default)]
struct Progress {
    done: Mutex<u64>,
    changed: Condvar,
}

impl Progress {
    fn advance(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.changed.notify_all();
    }
}

/// The event loop's end of the queue. Blocks for at most `WRITE_WAIT`, see the module's doc.
pub struct Sender {
    tx: SyncSender<Vec<u8>>,
    counters: Arc<Counters>,
    progress: Arc<Progress>,
    /// Lines queued so far.
    queued: Cell<u64>,
    /// A write took longer than `WRITE_WAIT`: do not wait again until the queue drains.
    stalled: Cell<bool>,
    wait: Duration,
}

impl Sender {
    /// Queues one line (newline included) and waits for it to be written, while stdout keeps
    /// up; counts it as undelivered if the queue is full.
    pub fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {
                let seq = self.queued.get() + 1;
                self.queued.set(seq);
                self.wait_written(seq);
            }
            Err(TrySendError::Full(_)) => self.counters.note(&self.counters.queue_full, || {
                format!("the output queue ({QUEUE_LINES} lines) is full: stdout is not keeping up")
            }),
            Err(TrySendError::Disconnected(_)) => {
                self.counters.note(&self.counters.write_failed, || {
                    "the output thread is gone".into()
                })
            }
        }
    }

    fn wait_written(&self, seq: u64) {
        let deadline = Instant::now() + self.wait;
        let mut done = self.progress.done.lock().unwrap_or_else(|e| e.into_inner());
        if self.stalled.get() {
            // Only this line is left in the queue: stdout caught up, wait for writes again.
            if *done + 1 < seq {
                return;
            }
            self.stalled.set(false);
        }
        while *done < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stalled.set(true);
                return;
            }
            done = match self.progress.changed.wait_timeout(done, left) {
                Ok((done, _)) => done,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Counts a record that could not be turned into a line.
    pub fn skipped(&self, error: &anyhow::Error) {
        self.counters.note(&self.counters.skipped, || {
            format!("event skipped: {error:#}")
        });
    }
}

/// Writes lines whole: after a write that failed part-way, the next line starts on a line of
/// its own, so a reader never sees two events glued into one invalid line.
pub struct LineWriter<W: Write> {
    out: W,
    /// The last line was cut: a newline is owed before the next one.
    broken: bool,
}

impl<W: Write> LineWriter<W> {
    pub fn new(out: W) -> LineWriter<W> {
        LineWriter { out, broken: false }
    }

    /// Writes `line` (ending in a newline); an error means it was not delivered whole.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.broken {
            // The newline is the cut line's end; if even it fails, this line is not started.
            self.write_all(b"\n")?;
            self.broken = false;
        }
        self.write_all(line)
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let mut written = 0;
        while !buf.is_empty() {
            let result = match self.out.write(buf) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "stdout accepted no bytes",
                )),
                Ok(n) => {
                    written += n;
                    buf = &buf[n..];
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            if written > 0 {
                self.broken = true;
            }
            return result;
        }
        Ok(())
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

/// File descriptor 1, written with write(2) directly: `std::io::Stdout` buffers, and a
/// buffered write reports success for bytes that may later fail, so a cut could not be seen.
pub struct RawStdout;

impl Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        nix::unistd::write(io::stdout(), buf).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A token bucket: `rate` lines a second, `burst` at once.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The bounds of delivery.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Lines the queue holds.
    pub queue: usize,
    pub per_sec: u32,
    pub burst: u32,
    /// How long `send` waits for its line to be written.
    pub wait: Duration,
}

pub const LIMITS: Limits = Limits {
    queue: QUEUE_LINES,
    per_sec: LINES_PER_SEC,
    burst: LINES_BURST,
    wait: WRITE_WAIT,
};

/// The agent's side of delivery: the counters, the writer thread, and reporting.
pub struct Delivery {
    counters: Arc<Counters>,
    writer: Option<JoinHandle<()>>,
    log: RateLimit,
    /// Events counted by kind, published for `status` with the undelivered counts.
    events: Arc<Tally>,
    /// What was last published: the undelivered totals (stdout, webhook), the pod-metadata
    /// misses and the events' counts.
    published: Option<(u64, Option<u64>, u64, EventCounts)>,
    reported: u64,
    /// The webhook's counters, when `--webhook-url` is given: published and logged here too.
    webhook: Option<Arc<crate::webhook::Counters>>,
    webhook_log: RateLimit,
    webhook_reported: u64,
    state_path: PathBuf,
    publish_failed: RateLimit,
}

/// Starts the writer thread on `out`, behind a queue of `limits.queue` lines.
pub fn start<W: Write + Send + 'static>(
    out: W,
    limits: Limits,
    state_path: PathBuf,
) -> Result<(Sender, Delivery)> {
    let counters = Arc::new(Counters::default());
    let progress = Arc::new(Progress::default());
    let (tx, rx) = mpsc::sync_channel(limits.queue);
    let writer = {
        let counters = Arc::clone(&counters);
        let progress = Arc::clone(&progress);
        let bucket = Bucket::new(limits.per_sec, limits.burst);
        thread::Builder::new()
            .name("output".into())
            .spawn(move || write_lines(rx, LineWriter::new(out), bucket, &counters, &progress))
            .context("starting the output thread")?
    };
    let sender = Sender {
        tx,
        counters: Arc::clone(&counters),
        progress,
        queued: Cell::new(0),
        stalled: Cell::new(false),
        wait: limits.wait,
    };
    Ok((
        sender,
        Delivery {
            counters,
            writer: Some(writer),
            log: RateLimit::new(LOG_EVERY),
            events: Arc::default(),
            published: None,
            reported: 0,
            webhook: None,
            webhook_log: RateLimit::new(LOG_EVERY),
            webhook_reported: 0,
            state_path,
            publish_failed: RateLimit::new(Duration::from_secs(600)),
        },
    ))
}

fn write_lines<W: Write>(
    rx: Receiver<Vec<u8>>,
    mut out: LineWriter<W>,
    mut bucket: Bucket,
    counters: &Counters,
    progress: &Progress,
) {
    for line in rx {
        if !bucket.take(Instant::now()) {
            counters.note(&counters.rate_limited, || {
                format!("more than {LINES_PER_SEC} events a second (burst {LINES_BURST}): the rest are dropped")
            });
        } else if let Err(e) = out.write_line(&line) {
            counters.note(&counters.write_failed, || {
                format!("cannot write an event to stdout: {e}")
            });
        }
        progress.advance();
    }
}

/// What `minerguard status` reads. The fields after the count may be missing from an older
/// agent's file.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub pid: u32,
    pub events_undelivered: u64,
    /// The running agent's build: after an upgrade, the binary on disk may not be it.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub commit: String,
    /// Events the agent read since it started, by action then matched_on (non-zero only).
    #[serde(default)]
    pub events: BTreeMap<String, BTreeMap<String, u64>>,
    /// Events not delivered to `--webhook-url`; absent without a webhook.
    #[serde(default)]
    pub webhook_undelivered: Option<u64>,
    /// Container events without pod metadata; absent in what an older agent published.
    #[serde(default)]
    pub pod_metadata_misses: u64,
}

impl Delivery {
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Reports the webhook's undelivered events along with stdout's.
    pub fn watch_webhook(&mut self, counters: Arc<crate::webhook::Counters>) {
        self.webhook = Some(counters);
    }

    /// Publishes `events`'s counts for `status` too.
    pub fn publish_events(&mut self, events: Arc<Tally>) {
        self.events = events;
    }

    /// Called from the event loop: logs new undelivered events (at a bounded rate) and
    /// publishes the count when it changed.
    pub fn report(&mut self) {
        let now = Instant::now();
        let total = self.counters.undelivered();
        if let Some(n) = self.log.hit(total.saturating_sub(self.reported), now) {
            self.reported += n;
            let c = &self.counters;
            let last = c
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            warn!(
                undelivered = n,
                undelivered_total = total,
                queue_full_total = c.queue_full.load(Ordering::Relaxed),
                write_failed_total = c.write_failed.load(Ordering::Relaxed),
                skipped_total = c.skipped.load(Ordering::Relaxed),
                rate_limited_total = c.rate_limited.load(Ordering::Relaxed),
                last_error = %last,
                "events not delivered to stdout (the execs were still enforced)"
            );
        }
        let webhook = self.webhook.as_ref().map(|w| w.undelivered());
        if let (Some(w), Some(total)) = (&self.webhook, webhook) {
            if let Some(n) = self
                .webhook_log
                .hit(total.saturating_sub(self.webhook_reported), now)
            {
                self.webhook_reported += n;
                warn!(
                    undelivered = n,
                    undelivered_total = total,
                    queue_full_total = w.queue_full.load(Ordering::Relaxed),
                    failed_total = w.failed.load(Ordering::Relaxed),
                    rejected_total = w.rejected.load(Ordering::Relaxed),
                    last_error = %w.last_error(),
                    "events not delivered to the webhook (the execs were still enforced)"
                );
            }
        }
        let counts = self.events.snapshot();
        let misses = self.counters.pod_metadata_misses();
        if self.published != Some((total, webhook, misses, counts)) {
            match publish(&self.state_path, total, webhook, misses, &self.events) {
                Ok(()) => self.published = Some((total, webhook, misses, counts)),
                Err(e) => {
                    if self.publish_failed.hit(1, now).is_some() {
                        warn!(
                            error = format!("{e:#}"),
                            "cannot publish the undelivered-event count for `minerguard status`"
                        );
                    }
                }
            }
        }
    }

    /// After the last event is queued: lets the writer finish for up to `wait`, so that a
    /// stalled stdout cannot hold up a stop (systemd would kill the agent), then reports.
    pub fn finish(mut self, wait: Duration, sender: Sender) {
        let queued = sender.queued.get();
        let progress = Arc::clone(&sender.progress);
        drop(sender);
        let deadline = Instant::now() + wait;
        if let Some(writer) = self.writer.take() {
            while !writer.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if writer.is_finished() {
                let _ = writer.join();
            } else {
                // The process exits with them: count them as what they are, undelivered.
                let done = *progress.done.lock().unwrap_or_else(|e| e.into_inner());
                let left = queued.saturating_sub(done);
                self.counters
                    .write_failed
                    .fetch_add(left, Ordering::Relaxed);
                warn!(
                    unwritten = left,
                    "stdout is stalled: events still queued at the stop are not written"
                );
            }
        }
        self.log = RateLimit::new(Duration::ZERO);
        self.webhook_log = RateLimit::new(Duration::ZERO);
        self.report();
        let _ = fs::remove_file(&self.state_path);
        if self.counters.undelivered() > 0 {
            info!(
                undelivered_total = self.counters.undelivered(),
                "events not delivered to stdout during this run"
            );
        }
    }
}

/// Writes the count atomically (a reader sees the old file or the new one, never half).
fn publish(
    path: &Path,
    total: u64,
    webhook: Option<u64>,
    misses: u64,
    events: &Tally,
) -> Result<()> {
    let dir = path.parent().context("the state path has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let body = serde_json::to_vec(&Published {
        pid: std::process::id(),
        events_undelivered: total,
        webhook_undelivered: webhook,
        version: env!("CARGO_PKG_VERSION").into(),
        commit: env!("MINERGUARD_COMMIT").into(),
        events: events.named(),
        pod_metadata_misses: misses,
    })
    .context("encoding the delivery state")?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// What the agent `pid` published, if it did (`None` for another agent's leftover).
pub fn published(path: &Path, pid: u32) -> Option<Published> {
    let text = fs::read(path).ok()?;
    let p: Published = serde_json::from_slice(&text).ok()?;
    (p.pid == pid).then_some(p)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Accepts `budget` bytes, then fails every write: a pipe whose reader went away
    /// part-way, or a journal stream that broke.
    struct FailsAfter {
        written: Vec<u8>,
        budget: usize,
        /// Writes after the failure succeed again (the stream recovered).
        recovers: bool,
        failed: bool,
    }

    impl Write for FailsAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written.len() >= self.budget && !(self.recovers && self.failed) {
                self.failed = true;
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            // Short writes, as a pipe gives them.
            let room = if self.failed {
                buf.len()
            } else {
                (self.budget - self.written.len()).min(buf.len())
            };
            let n = room.min(7);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(i: usize) -> Vec<u8> {
        format!("{{\"event\":{i},\"pad\":\"{}\"}}\n", "x".repeat(40)).into_bytes()
    }

    #[test]
    fn a_line_cut_by_a_failed_write_is_not_glued_to_the_next() {
        let mut out = LineWriter::new(FailsAfter {
            written: Vec::new(),
            budget: line(0).len() + 20,
            recovers: true,
            failed: false,
        });
        assert!(out.write_line(&line(0)).is_ok());
        assert!(out.write_line(&line(1)).is_err(), "cut part-way");
        assert!(out.write_line(&line(2)).is_ok());
        let text = String::from_utf8(out.into_inner().written).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let parsed: Vec<bool> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .collect();
        // The cut line stays cut, but alone: the events before and after parse.
        assert_eq!(parsed, [true, false, true], "{text}");
        assert!(text.ends_with(&String::from_utf8(line(2)).unwrap()));
    }

    #[test]
    fn every_line_not_written_is_counted() {
        let budget = line(0).len() * 3 + 10;
        let (sender, delivery) = start(
            FailsAfter {
                written: Vec::new(),
                budget,
                recovers: false,
                failed: false,
            },
            Limits {
                queue: 16,
                ..LIMITS
            },
            tempfile::tempdir().unwrap().path().join("d.json"),
        )
        .unwrap();
        // The queue holds all ten: only write failures count.
        for i in 0..10 {
            sender.send(line(i));
        }
        let counters = delivery.counters();
        delivery.finish(Duration::from_secs(5), sender);
        // Three whole lines, the fourth cut: seven not delivered.
        assert_eq!(counters.write_failed.load(Ordering::Relaxed), 7);
        assert_eq!(counters.undelivered(), 7);
    }

    /// A writer that blocks until told: a stalled journald.
    struct Stalled(Arc<Mutex<()>>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _held = self.0.lock().unwrap();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stdout_never_blocks_the_sender_and_drops_are_counted() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("delivery.json");
        let (sender, mut delivery) = start(
            Stalled(Arc::clone(&gate)),
            Limits { queue: 8, ..LIMITS },
            state.clone(),
        )
        .unwrap();
        let started = Instant::now();
        for i in 0..1000 {
            sender.send(line(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the sender waited for stdout: {:?}",
            started.elapsed()
        );
        // One wait of WRITE_WAIT, then none: 8 queued and 1 taken by the stalled writer, the
        // rest counted.
        let dropped = delivery.counters.queue_full.load(Ordering::Relaxed);
        assert!((991..=992).contains(&dropped), "{dropped}");
        delivery.report();
        let counts = published(&state, std::process::id()).map(|p| p.events_undelivered);
        assert_eq!(counts, Some(dropped));
        assert_eq!(published(&state, std::process::id() + 1), None);
        // A stop does not wait for the stall for longer than asked.
        let started = Instant::now();
        let counters = delivery.counters();
        delivery.finish(Duration::from_millis(200), sender);
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nothing was written: every line is counted, those queued (and the one the stalled
        // writer holds) as unwritten at the stop.
        assert_eq!(counters.undelivered(), 1000);
        assert_eq!(
            counters.write_failed.load(Ordering::Relaxed),
            1000 - dropped
        );
        drop(held);
    }

    /// Shared, so that the test can read what the writer thread wrote.
    #[derive(Clone, Default)]
    pub struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Shared {
        /// Lines written so far.
        pub fn lines(&self) -> usize {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        }
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_is_cut_to_the_rate_and_the_rest_counted() {
        let out = Shared::default();
        let limits = Limits {
            queue: 1000,
            per_sec: 10,
            burst: 50,
            wait: WRITE_WAIT,
        };
        let dir = tempfile::tempdir().unwrap();
        let (sender, delivery) = start(out.clone(), limits, dir.path().join("d.json")).unwrap();
        for i in 0..1000 {
            sender.send(line(i));
        }
        let counters = delivery.counters();
        delivery.finish(Duration::from_secs(5), sender);
        let written = out
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        // The burst, and what the rate refilled meanwhile (well under a second here).
        assert!((50..=60).contains(&written), "{written}");
        assert_eq!(
            counters.rate_limited.load(Ordering::Relaxed),
            1000 - written
        );
        assert_eq!(counters.undelivered(), 1000 - written);
    }

    /// While stdout keeps up, a line is written before `send` returns: an agent killed just
    /// after libbpf marked the record read has written it (the next agent cannot re-read it).
    #[test]
    fn while_stdout_keeps_up_send_returns_once_written() {
        let out = Shared::default();
        let dir = tempfile::tempdir().unwrap();
        let (sender, delivery) = start(out.clone(), LIMITS, dir.path().join("d.json")).unwrap();
        for i in 0..200 {
            sender.send(line(i));
            let written = out
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            assert_eq!(written, i + 1, "line {i} not written when send returned");
        }
        delivery.finish(Duration::from_secs(5), sender);
    }

    /// After a stall, once the queue drains, `send` waits for writes again.
    #[test]
    fn waiting_resumes_after_a_stall() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            wait: Duration::from_millis(50),
            ..LIMITS
        };
        let (sender, delivery) = start(
            Stalled(Arc::clone(&gate)),
            limits,
            dir.path().join("d.json"),
        )
        .unwrap();
        sender.send(line(0));
        assert!(sender.stalled.get());
        let started = Instant::now();
        sender.send(line(1));
        assert!(
            started.elapsed() < Duration::from_millis(40),
            "waited while stalled"
        );
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(5);
        while *delivery_done(&sender) < 2 {
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(5));
        }
        sender.send(line(2));
        assert!(!sender.stalled.get());
        assert_eq!(
            *delivery_done(&sender),
            3,
            "send returned before its line was written"
        );
        delivery.finish(Duration::from_secs(5), sender);
    }

    fn delivery_done(sender: &Sender) -> std::sync::MutexGuard<'_, u64> {
        sender.progress.done.lock().unwrap()
    }

    #[test]
    fn the_queue_holds_a_full_ring_buffer() {
        use libbpf_rs::skel::{OpenSkel, SkelBuilder};
        let mut storage = std::mem::MaybeUninit::uninit();
        let skel = crate::bpf::MinerguardSkelBuilder::default()
            .open(&mut storage)
            .unwrap();
        let ring = skel
            .open_object()
            .maps()
            .find(|m| m.name() == "mg_events")
            .unwrap()
            .max_entries() as usize;
        // Each record: the event and an 8-byte header, 8-byte aligned.
        let record = (std::mem::size_of::<crate::contract::mg_event>() + 8).next_multiple_of(8);
        assert!(
            QUEUE_LINES >= ring / record,
            "{QUEUE_LINES} < {}",
            ring / record
        );
    }
}
