//! Under systemd, what journald needs to tell records apart: each log record's severity, and
//! a field that marks events.
//!
//! systemd connects stdout and stderr to journald as streams and names the stream in
//! `JOURNAL_STREAM` ("device:inode"); a file descriptor whose fstat() matches it is the
//! journal (systemd.exec(5): the way a service learns it may upgrade its logging). Then:
//! - log lines on stderr start with sd-daemon's `<N>` prefix (sd-daemon(3)), which journald
//!   turns into `PRIORITY=N` (the unit's `SyslogLevelPrefix=`, on by default): the log stays
//!   a stream behind the log thread's bounded, lossy queue, so a stalled journald still never
//!   blocks the event loop in a `warn!`;
//! - events are sent with journald's native protocol (a datagram per event on its socket)
//!   carrying `MINERGUARD_KIND=event` and the line as `MESSAGE`, since a stream's records
//!   cannot carry fields of their own (stdout and stderr reach journald with the same ones).
//!   They are sent from the output thread, behind the delivery queue: a full journal socket
//!   stalls that thread only, and what it cannot take is counted as undelivered.
//!
//! Elsewhere (a terminal, a pipe, a file, a container runtime's log) nothing changes: plain
//! lines on stderr, JSON lines on stdout.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// journald's socket for the native protocol.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// The syslog priority events are sent at: notice, so that `journalctl -p warning` lists the
/// agent's own trouble (losses, rejected reloads) and not every blocked exec; events have
/// their own filter, `MINERGUARD_KIND=event`.
pub const EVENT_PRIORITY: u8 = 5;

/// Whether `fd` is the journal's stream, as `JOURNAL_STREAM` names it.
pub fn connected(fd: impl AsFd) -> bool {
    std::env::var("JOURNAL_STREAM").is_ok_and(|stream| is_stream(&stream, fd))
}

/// Whether `stream` ("device:inode", decimal) is the file `fd` is open on.
fn is_stream(stream: &str, fd: impl AsFd) -> bool {
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// A tracing level as a syslog priority (sd-daemon(3): `SD_ERR` 3 .. `SD_DEBUG` 7).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// A log line's formatter, with the `<N>` priority prefix first when `prefix` holds (stderr
/// is the journal). A record spanning lines gets its priority on the first only: ours are
/// single lines (libbpf's are trimmed, errors formatted with `{:#}`).
pub struct Prioritized<F> {
    pub inner: F,
    pub prefix: bool,
}

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        if self.prefix {
            write!(writer, "<{}>", priority(*event.metadata().level()))?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// Event lines to journald, one native record per line. Each `write` is one record: the
/// delivery's line writer hands over a whole line per call, and a record is taken whole or
/// not at all (a datagram), so a write never succeeds part-way.
pub struct Events {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Events {
    pub fn new() -> Result<Events> {
        Events::at(Path::new(SOCKET))
    }

    fn at(path: &Path) -> Result<Events> {
        Ok(Events {
            socket: UnixDatagram::unbound()
                .context("opening a socket for journald's native protocol")?,
            path: path.to_path_buf(),
        })
    }
}

/// The native protocol's record (systemd's "Native Journal Protocol"): `KEY=value` lines,
/// and the message in the binary form (name, newline, little-endian 64-bit length, bytes,
/// newline), which takes any bytes.
fn record(line: &[u8]) -> Vec<u8> {
    let message = line.strip_suffix(b"\n").unwrap_or(line);
    let mut r = Vec::with_capacity(message.len() + 96);
    r.extend_from_slice(format!("PRIORITY={EVENT_PRIORITY}\n").as_bytes());
    r.extend_from_slice(b"SYSLOG_IDENTIFIER=minerguard\nMINERGUARD_KIND=event\nMESSAGE\n");
    r.extend_from_slice(&(message.len() as u64).to_le_bytes());
    r.extend_from_slice(message);
    r.push(b'\n');
    r
}

impl Write for Events {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket
            .send_to(&record(buf), &self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("sending to journald: {e}")))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_stream_is_recognized_by_device_and_inode() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        assert!(is_stream(&format!("{}:{}", meta.dev(), meta.ino()), &file));
        assert!(!is_stream(
            &format!("{}:{}", meta.dev(), meta.ino() + 1),
            &file
        ));
        assert!(!is_stream(
            &format!("{}:{}", meta.dev() + 1, meta.ino()),
            &file
        ));
        for garbage in ["", ":", "1", "a:b", &format!("{}", meta.ino())] {
            assert!(!is_stream(garbage, &file), "{garbage:?}");
        }
    }

    /// What a subscriber writes, one buffer for all.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(json: bool, prefix: bool) -> Vec<String> {
        let out = Captured::default();
        let writer = out.clone();
        let make = move || writer.clone();
        let emit = || {
            tracing::error!("cannot reload");
            tracing::warn!(lost = 3, "events lost");
            tracing::info!("ready");
            tracing::debug!("detail");
        };
        let builder = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_ansi(false)
            .with_writer(make);
        if json {
            let subscriber = builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(Prioritized {
                    inner: tracing_subscriber::fmt::format().json().flatten_event(true),
                    prefix,
                })
                .finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            let subscriber = builder
                .event_format(Prioritized {
                    inner: tracing_subscriber::fmt::format(),
                    prefix,
                })
                .finish();
            tracing::subscriber::with_default(subscriber, emit);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn log_lines_carry_their_priority_for_the_journal() {
        for json in [false, true] {
            let lines = logged(json, true);
            assert_eq!(lines.len(), 4, "{lines:?}");
            for (line, (prio, text)) in lines.iter().zip([
                ("<3>", "cannot reload"),
                ("<4>", "events lost"),
                ("<6>", "ready"),
                ("<7>", "detail"),
            ]) {
                assert!(line.starts_with(prio) && line.contains(text), "{line}");
            }
            if json {
                // journald strips the prefix: what remains is the JSON record, whole.
                let v: serde_json::Value = serde_json::from_str(&lines[1][3..]).unwrap();
                assert_eq!(v["level"], "WARN");
                assert_eq!(v["lost"], 3);
            }
        }
    }

    #[test]
    fn no_prefix_off_the_journal() {
        for json in [false, true] {
            let lines = logged(json, false);
            assert_eq!(lines.len(), 4);
            assert!(lines.iter().all(|l| !l.starts_with('<')), "{lines:?}");
        }
    }

    /// Parses a native record: `KEY=value` lines and binary fields.
    fn fields(mut r: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !r.is_empty() {
            let nl = r.iter().position(|&b| b == b'\n').unwrap();
            let head = std::str::from_utf8(&r[..nl]).unwrap();
            if let Some((k, v)) = head.split_once('=') {
                out.push((k.to_string(), v.as_bytes().to_vec()));
                r = &r[nl + 1..];
            } else {
                let len = u64::from_le_bytes(r[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let value = r[nl + 9..nl + 9 + len].to_vec();
                assert_eq!(r[nl + 9 + len], b'\n');
                out.push((head.to_string(), value));
                r = &r[nl + 10 + len..];
            }
        }
        out
    }

    /// Through the real delivery path (queue, output thread, line writer) to a socket standing
    /// in for journald's.
    #[test]
    fn each_event_is_one_native_record_marked_as_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let journald = UnixDatagram::bind(&path).unwrap();
        let (sender, delivery) = crate::delivery::start(
            Events::at(&path).unwrap(),
            crate::delivery::LIMITS,
            dir.path().join("delivery.json"),
        )
        .unwrap();
        let lines: [&[u8]; 2] = [
            b"{\"action\":\"blocked\",\"comm\":\"a\\nb\"}\n",
            b"{\"action\":\"audited\"}\n",
        ];
        for line in lines {
            sender.send(line.to_vec());
        }
        delivery.finish(std::time::Duration::from_secs(5), sender);
        let mut buf = vec![0u8; 65536];
        for line in lines {
            let n = journald.recv(&mut buf).unwrap();
            let f = fields(&buf[..n]);
            let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            assert_eq!(get("MINERGUARD_KIND").as_deref(), Some(&b"event"[..]));
            assert_eq!(get("PRIORITY").as_deref(), Some(&b"5"[..]));
            assert_eq!(
                get("SYSLOG_IDENTIFIER").as_deref(),
                Some(&b"minerguard"[..])
            );
            assert_eq!(get("MESSAGE").as_deref(), Some(&line[..line.len() - 1]));
        }
    }

    #[test]
    fn a_journal_that_is_gone_is_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut events = Events::at(&dir.path().join("absent")).unwrap();
        let err = events.write(b"{}\n").unwrap_err();
        assert!(err.to_string().contains("sending to journald"), "{err}");
    }
}
