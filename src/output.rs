//! The event stream: one JSON object per line on stdout (schema in README.md).

use std::io::Write;

use serde::Serialize;

use crate::enrich;
use crate::event::Event;

#[derive(Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub action: &'static str,
    pub mode: &'static str,
    pub matched_name: &'a str,
    pub matched_on: &'static str,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The caller's name: the exec had not replaced it yet.
    pub comm: &'a str,
    /// The path as passed to exec.
    pub filename: &'a str,
    /// The name of the file really executed.
    pub file_name: &'a str,
    pub cgroup_id: u64,
    /// The leaf name of the caller's cgroup at the exec.
    pub cgroup: &'a str,
    pub mnt_ns: u32,
    /// In the host's mount namespace (PID 1's).
    pub host: bool,
    pub container_id: Option<&'a str>,
    pub container_runtime: Option<&'static str>,
}

impl<'a> Record<'a> {
    pub fn new(e: &'a Event) -> Record<'a> {
        let container = enrich::container(&e.cgroup_name);
        Record {
            time: humantime::format_rfc3339_nanos(enrich::wall_clock(e.boot_ns)).to_string(),
            action: e.action.as_str(),
            mode: e.mode.as_str(),
            matched_name: &e.matched_name,
            matched_on: e.matched_on.as_str(),
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
        }
    }
}

/// Writes one record as a line and flushes it: a consumer tailing the stream (or a test)
/// must see each event when it happens, not when a buffer fills.
pub fn write(out: &mut impl Write, record: &Record<'_>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_blocked_xmrig};

    #[test]
    fn record_has_the_documented_keys() {
        let e = decode(&raw_blocked_xmrig()).unwrap();
        let mut out = Vec::new();
        write(&mut out, &Record::new(&e)).unwrap();
        let line = String::from_utf8(out).unwrap();
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
}
