//! `--webhook-url`: each event line POSTed to an HTTP receiver (a webhook, Falcosidekick).
//! A bounded queue feeds a thread of its own, apart from stdout's (`delivery`): the event loop
//! only tries to queue a copy of the line, so an unreachable or slow receiver never slows
//! enforcement, the loop or stdout. Each event is tried a bounded number of times, with
//! backoff; one that is not delivered (queue full, tries used up, refused by the receiver) is
//! counted, logged at a bounded rate, served as `minerguard_webhook_undelivered_total` and
//! published for `minerguard status`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tracing::warn;
use ureq::http::Uri;

/// The receiver's URL, checked: http or https, with a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    url: String,
    /// Scheme, host and port only: what logs show (the path or query may carry a token).
    shown: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("webhook URL {url:?} is not a valid URL"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            bail!("webhook URL {url:?}: the scheme must be http or https");
        }
        let Some(authority) = uri.authority() else {
            bail!("webhook URL {url:?} has no host");
        };
        if authority.host().is_empty() {
            bail!("webhook URL {url:?} has no host");
        }
        // Credentials in the authority are not shown either.
        let host = authority.as_str().rsplit('@').next().unwrap_or_default();
        Ok(Url {
            url: url.to_owned(),
            shown: format!("{scheme}://{host}"),
        })
    }

    /// For logs: scheme, host and port.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// The bounds of webhook delivery (constants in the agent; tests shorten the waits).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events the queue holds; beyond that new events are dropped and counted.
    pub queue: usize,
    /// Tries per event, the first included.
    pub tries: u32,
    /// Pause after the first failed try; doubled after each next one, up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// For the whole request: resolve, connect, TLS, send, answer.
    pub request_timeout: Duration,
}

/// As many events as stdout's queue: a full ring buffer read at once is not dropped while the
/// receiver keeps up. About 3 MiB at 700 bytes an event.
pub const LIMITS: Limits = Limits {
    queue: crate::delivery::QUEUE_LINES,
    tries: 4,
    backoff: Duration::from_millis(500),
    backoff_max: Duration::from_secs(4),
    connect_timeout: Duration::from_secs(5),
    request_timeout: Duration::from_secs(10),
};

/// Why events did not reach the receiver, by cause.
#[derive(Default)]
pub struct Counters {
    /// The queue was full: the receiver did not keep up (or is down).
    pub queue_full: AtomicU64,
    /// Every try failed (connection, timeout, a 5xx answer).
    pub failed: AtomicU64,
    /// The receiver answered 4xx: the event will not be taken as it is, not retried.
    pub rejected: AtomicU64,
    /// Delivered (a 2xx answer).
    pub delivered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    /// Every event not delivered, whatever the cause.
    pub fn undelivered(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
    }

    fn note(&self, counter: &AtomicU64, error: impl FnOnce() -> String) {
        counter.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error());
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// The event loop's end of the queue: never blocks.
pub struct Sender {
    tx: SyncSender<Vec<u8>>,
    counters: Arc<Counters>,
    /// Events queued so far (the thread counts those it finished with: `Webhook::done`).
    queued: Cell<u64>,
}

impl Sender {
    /// Queues a copy of `line` (its newline is not sent), or counts it if the queue is full.
    pub fn send(&self, line: &[u8]) {
        let body = line.strip_suffix(b"\n").unwrap_or(line).to_vec();
        match self.tx.try_send(body) {
            Ok(()) => self.queued.set(self.queued.get() + 1),
            Err(TrySendError::Full(_)) => self.counters.note(&self.counters.queue_full, || {
                "the webhook queue is full: the receiver is not keeping up".into()
            }),
            Err(TrySendError::Disconnected(_)) => self.counters.note(&self.counters.failed, || {
                "the webhook thread is gone".into()
            }),
        }
    }
}

/// The agent's side: the counters and the thread.
pub struct Webhook {
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    /// Events the thread finished with (delivered or counted), in queue order.
    done: Arc<AtomicU64>,
}

/// Starts the thread that POSTs to `url`.
pub fn start(url: Url, limits: Limits) -> Result<(Sender, Webhook)> {
    let counters = Arc::new(Counters::default());
    let done = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::sync_channel(limits.queue);
    let agent = agent(limits);
    let thread = {
        let (counters, done) = (Arc::clone(&counters), Arc::clone(&done));
        thread::Builder::new()
            .name("webhook".into())
            .spawn(move || post_all(rx, &agent, &url, limits, &counters, &done))
            .context("starting the webhook thread")?
    };
    Ok((
        Sender {
            tx,
            counters: Arc::clone(&counters),
            queued: Cell::new(0),
        },
        Webhook {
            counters,
            thread: Some(thread),
            done,
        },
    ))
}

fn agent(limits: Limits) -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    ureq::Agent::config_builder()
        .timeout_connect(Some(limits.connect_timeout))
        .timeout_global(Some(limits.request_timeout))
        // 4xx and 5xx are answers to tell apart (rejected, retried), not transport errors.
        .http_status_as_error(false)
        // A receiver that moved is a configuration to fix, not a place to send alerts to.
        .max_redirects(0)
        // The system's trust store (/etc/ssl/certs): an operator's own CA works as it does
        // for every other client on the node.
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::PlatformVerifier)
                .build(),
        )
        .user_agent(concat!("minerguard/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// What one try came to.
enum Outcome {
    Delivered,
    /// Worth another try: no connection, a timeout, a 5xx, 408 or 429.
    Retry(String),
    /// A 4xx: the receiver will not take this body.
    Rejected(String),
}

fn post(agent: &ureq::Agent, url: &Url, body: &[u8]) -> Outcome {
    match agent
        .post(&url.url)
        .header("Content-Type", "application/json")
        .send(body)
    {
        Ok(mut answer) => {
            // Read (a bounded part of) the answer, so the connection can be used again.
            let _ = answer
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_vec();
            let status = answer.status();
            if status.is_success() {
                Outcome::Delivered
            } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Outcome::Rejected(format!("{} answered {status}", url.shown))
            } else {
                Outcome::Retry(format!("{} answered {status}", url.shown))
            }
        }
        Err(e) => Outcome::Retry(format!("{}: {e}", url.shown)),
    }
}

fn post_all(
    rx: Receiver<Vec<u8>>,
    agent: &ureq::Agent,
    url: &Url,
    limits: Limits,
    counters: &Counters,
    done: &AtomicU64,
) {
    // After an event used up its tries, the next ones get one try each until one is
    // delivered: a receiver that is down drains the queue at the pace of one failure per
    // event instead of one backoff series per event, and events queued meanwhile are
    // counted rather than delivered hours late.
    let mut failing = false;
    for body in rx {
        let tries = if failing { 1 } else { limits.tries.max(1) };
        let mut pause = limits.backoff;
        for attempt in 1..=tries {
            match post(agent, url, &body) {
                Outcome::Delivered => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    failing = false;
                    break;
                }
                Outcome::Rejected(e) => {
                    counters.note(&counters.rejected, || e);
                    failing = false;
                    break;
                }
                Outcome::Retry(e) if attempt == tries => {
                    counters.note(&counters.failed, || e);
                    failing = true;
                }
                Outcome::Retry(_) => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(limits.backoff_max);
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

impl Webhook {
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// After the last event is queued: lets the thread deliver what is queued for up to
    /// `wait` (a receiver that is down must not hold the stop), then counts what is left.
    pub fn finish(mut self, wait: Duration, sender: Sender) {
        let queued = sender.queued.get();
        drop(sender);
        let deadline = Instant::now() + wait;
        let Some(thread) = self.thread.take() else {
            return;
        };
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
            return;
        }
        // The process exits with them: count them as what they are, undelivered.
        let left = queued.saturating_sub(self.done.load(Ordering::Relaxed));
        self.counters.failed.fetch_add(left, Ordering::Relaxed);
        warn!(
            unsent = left,
            "the webhook receiver is not keeping up: events still queued at the stop are not sent"
        );
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// A real HTTP/1.1 receiver on loopback: collects POST bodies in arrival order, answers
    /// `status` after `delay` (held while `gate` is locked), one request per connection.
    pub struct Receiver {
        pub addr: SocketAddr,
        pub bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    pub fn receiver(listener: TcpListener, status: u16, gate: Option<Arc<Mutex<()>>>) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                if let Some(gate) = &gate {
                    drop(gate.lock().unwrap());
                }
                if let Some(body) = read_request(&stream) {
                    kept.lock().unwrap().push(body);
                    let _ = (&stream).write_all(
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                }
            }
        });
        Receiver { addr, bodies }
    }

    fn read_request(stream: &TcpStream) -> Option<Vec<u8>> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        assert!(line.starts_with("POST / HTTP/1.1"), "{line}");
        let mut length = 0;
        let mut json = false;
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let header = line.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().ok()?;
            }
            if header == "content-type: application/json" {
                json = true;
            }
        }
        assert!(json, "no Content-Type: application/json");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(body)
    }

    fn fast() -> Limits {
        Limits {
            queue: 64,
            tries: 3,
            backoff: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn line(i: usize) -> Vec<u8> {
        format!("{{\"event\":{i}}}\n").into_bytes()
    }

    fn url(addr: SocketAddr) -> Url {
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    /// Waits (bounded) for `done`; the tests assert on what is seen, not on time.
    fn until(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "not reached in 30 s");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn urls_are_checked_at_start() {
        assert!(Url::parse("https://sidekick.example:2801/").is_ok());
        let u = Url::parse("http://user:secret@hook.example/x?token=abc").unwrap();
        assert_eq!(u.shown(), "http://hook.example");
        for (bad, says) in [
            ("ftp://hook.example/", "must be http or https"),
            ("hook.example:2801", "must be http or https"),
            ("/events", "must be http or https"),
            ("http:// bad", "not a valid URL"),
        ] {
            let e = format!("{:#}", Url::parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn while_up_every_event_arrives_in_order_as_its_line() {
        let r = receiver(TcpListener::bind("127.0.0.1:0").unwrap(), 200, None);
        let (sender, webhook) = start(url(r.addr), fast()).unwrap();
        for i in 0..50 {
            sender.send(&line(i));
        }
        let counters = webhook.counters();
        webhook.finish(Duration::from_secs(30), sender);
        let bodies = r.bodies.lock().unwrap().clone();
        let want: Vec<Vec<u8>> = (0..50)
            .map(|i| line(i)[..line(i).len() - 1].to_vec())
            .collect();
        assert_eq!(bodies, want);
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 50);
        assert_eq!(counters.undelivered(), 0);
    }

    #[test]
    fn a_slow_receiver_blocks_neither_the_sender_nor_stdout() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let r = receiver(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            200,
            Some(Arc::clone(&gate)),
        );
        // Longer than the test: the request held is answered, not timed out and retried.
        let limits = Limits {
            queue: 8,
            request_timeout: Duration::from_secs(600),
            ..fast()
        };
        let (hook, webhook) = start(url(r.addr), limits).unwrap();
        let stdout = crate::delivery::tests::Shared::default();
        let dir = tempfile::tempdir().unwrap();
        let (out, delivery) = crate::delivery::start(
            stdout.clone(),
            crate::delivery::LIMITS,
            dir.path().join("d.json"),
        )
        .unwrap();
        // The agent's fan-out: the webhook's copy, then stdout.
        for i in 0..1000 {
            hook.send(&line(i));
            out.send(line(i));
        }
        // stdout got every line while the receiver held the first request.
        assert_eq!(stdout.lines(), 1000);
        let counters = webhook.counters();
        // 8 queued, and 1 in the thread's hands unless the queue filled before the thread
        // took the first: the rest counted, at once.
        let dropped = counters.queue_full.load(Ordering::Relaxed);
        assert!((991..=992).contains(&dropped), "{dropped}");
        assert_eq!(counters.undelivered(), dropped);
        delivery.finish(Duration::from_secs(5), out);
        drop(held);
        webhook.finish(Duration::from_secs(30), hook);
        // Once the receiver answers, the queued ones are delivered.
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 1000 - dropped);
        assert_eq!(r.bodies.lock().unwrap().len() as u64, 1000 - dropped);
        assert_eq!(counters.undelivered(), dropped);
    }

    #[test]
    fn while_down_drops_are_counted_and_once_back_delivery_resumes() {
        // A port that was free: nothing listens there until the receiver comes back.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (sender, webhook) = start(url(addr), fast()).unwrap();
        let counters = webhook.counters();
        let started = Instant::now();
        for i in 0..20 {
            sender.send(&line(i));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the sender waited"
        );
        until(|| counters.failed.load(Ordering::Relaxed) == 20);
        assert_eq!(counters.undelivered(), 20);
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 0);
        assert!(
            counters.last_error().contains(&addr.to_string()),
            "{}",
            counters.last_error()
        );

        let r = receiver(TcpListener::bind(addr).unwrap(), 200, None);
        for i in 20..30 {
            sender.send(&line(i));
        }
        webhook.finish(Duration::from_secs(30), sender);
        let bodies = r.bodies.lock().unwrap().clone();
        // The first event after the outage gets one try (the receiver was failing): it is
        // delivered, and every one after it.
        assert_eq!(bodies.len(), 10);
        assert_eq!(bodies[0], b"{\"event\":20}");
        assert_eq!(counters.delivered.load(Ordering::Relaxed), 10);
        assert_eq!(counters.undelivered(), 20);
    }

    #[test]
    fn a_stop_waits_a_bounded_time_and_counts_what_is_left() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let r = receiver(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            200,
            Some(Arc::clone(&gate)),
        );
        let limits = Limits {
            queue: 8,
            request_timeout: Duration::from_secs(600),
            ..fast()
        };
        let (sender, webhook) = start(url(r.addr), limits).unwrap();
        for i in 0..5 {
            sender.send(&line(i));
        }
        let counters = webhook.counters();
        let started = Instant::now();
        webhook.finish(Duration::from_millis(200), sender);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stop waited for the receiver"
        );
        assert_eq!(counters.failed.load(Ordering::Relaxed), 5);
        drop(held);
    }

    #[test]
    fn a_rejected_event_is_counted_and_not_retried() {
        let r = receiver(TcpListener::bind("127.0.0.1:0").unwrap(), 400, None);
        let (sender, webhook) = start(url(r.addr), fast()).unwrap();
        sender.send(&line(0));
        sender.send(&line(1));
        let counters = webhook.counters();
        webhook.finish(Duration::from_secs(30), sender);
        assert_eq!(r.bodies.lock().unwrap().len(), 2, "retried a 400");
        assert_eq!(counters.rejected.load(Ordering::Relaxed), 2);
        assert!(
            counters.last_error().contains("400"),
            "{}",
            counters.last_error()
        );
    }

    #[test]
    fn a_failing_receiver_is_tried_the_given_number_of_times() {
        let r = receiver(TcpListener::bind("127.0.0.1:0").unwrap(), 503, None);
        let (sender, webhook) = start(url(r.addr), fast()).unwrap();
        sender.send(&line(0));
        let counters = webhook.counters();
        webhook.finish(Duration::from_secs(30), sender);
        assert_eq!(r.bodies.lock().unwrap().len(), 3);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
    }
}
