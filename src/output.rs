//! The event stream: one JSON object per line on stdout (schema in README.md).

use std::panic::{self, AssertUnwindSafe};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::enrich::{self, Clocks};
use crate::event::{self, Event};

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
        })
    }
}

/// A ring-buffer record as the JSON line to print, newline included. Never panics: this
/// runs inside libbpf's callback, where a panic cannot unwind and aborts the agent before
/// the consumer position advances, so every restart would die on the same record.
pub fn encode(data: &[u8], clocks: &Clocks) -> Result<Vec<u8>> {
    no_panic(|| {
        let e = event::decode(data)?;
        let mut line =
            serde_json::to_vec(&Record::new(&e, clocks)?).context("encoding an event")?;
        line.push(b'\n');
        Ok(line)
    })
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
