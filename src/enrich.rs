//! What the kernel cannot say cheaply, added in userspace: wall-clock time, and the
//! container identity parsed from the cgroup name the kernel captured at the exec.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::time::{clock_gettime, ClockId};

/// The two clocks read together, to turn the kernel's CLOCK_BOOTTIME stamps into wall-clock
/// time. Injectable so that tests can put "now" anywhere, 1969 included.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    /// Wall-clock time, in nanoseconds since the Unix epoch: negative before 1970 (a clock
    /// set back, or never set, on a node without an RTC).
    pub wall_ns: i128,
    /// CLOCK_BOOTTIME, in nanoseconds.
    pub boot_ns: Option<i128>,
}

impl Clocks {
    pub fn now() -> Clocks {
        let wall_ns = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => since.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        };
        let boot_ns = clock_gettime(ClockId::CLOCK_BOOTTIME)
            .ok()
            .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()));
        Clocks { wall_ns, boot_ns }
    }

    /// The wall-clock time (ns since the epoch, may be negative) of a CLOCK_BOOTTIME stamp.
    /// Signed arithmetic on 128 bits: no input can overflow or panic.
    pub fn wall_clock(&self, boot_stamp_ns: u64) -> i128 {
        match self.boot_ns {
            Some(boot_now) => self.wall_ns - (boot_now - i128::from(boot_stamp_ns)),
            // Never seen: without CLOCK_BOOTTIME, the time the event is read is the best guess.
            None => self.wall_ns,
        }
    }
}

/// RFC 3339 in UTC with nanoseconds (`1969-12-31T23:59:58.500000000Z`), or `None` for a time
/// outside the years 0000 to 9999, which RFC 3339 cannot write. (humantime, used before,
/// panics on times before 1970: inside the ring-buffer callback that aborted the agent.)
pub fn rfc3339(unix_ns: i128) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    ))
}

/// A container, as its runtime named its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Container<'a> {
    pub runtime: &'static str,
    pub id: &'a str,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Parses the leaf name of a cgroup v2 directory, in the shapes real runtimes use:
/// systemd driver units (`cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `docker-<id>.scope`, `libpod-<id>.scope`) and cgroupfs driver directories
/// (`/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`: a bare 64-hex id).
/// Anything else (a slice, a service, the root) is not a container.
pub fn container(cgroup_name: &str) -> Option<Container<'_>> {
    const SCOPES: [(&str, &str); 5] = [
        ("cri-containerd-", "containerd"),
        ("crio-conmon-", "cri-o"),
        ("crio-", "cri-o"),
        ("docker-", "docker"),
        ("libpod-", "podman"),
    ];
    if let Some(unit) = cgroup_name.strip_suffix(".scope") {
        for (prefix, runtime) in SCOPES {
            if let Some(id) = unit.strip_prefix(prefix) {
                // crio-conmon-<id> is the monitor of a container, not the container.
                if prefix == "crio-conmon-" {
                    return None;
                }
                return is_container_id(id).then_some(Container { runtime, id });
            }
        }
        return None;
    }
    is_container_id(cgroup_name).then_some(Container {
        runtime: "unknown",
        id: cgroup_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";

    #[test]
    fn container_ids_from_every_runtime_shape() {
        let cases = [
            // containerd / CRI, systemd driver (kubepods-burstable-pod<uid>.slice/...)
            (
                format!("cri-containerd-{ID}.scope"),
                Some(("containerd", ID)),
            ),
            // CRI-O, systemd driver
            (format!("crio-{ID}.scope"), Some(("cri-o", ID))),
            // Docker, systemd driver
            (format!("docker-{ID}.scope"), Some(("docker", ID))),
            // Podman
            (format!("libpod-{ID}.scope"), Some(("podman", ID))),
            // cgroupfs driver: /docker/<id>, /kubepods/burstable/pod<uid>/<id>
            (ID.to_string(), Some(("unknown", ID))),
            // Not containers
            (format!("crio-conmon-{ID}.scope"), None),
            (
                "kubepods-burstable-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice".into(),
                None,
            ),
            ("pod0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b".into(), None),
            ("session-3.scope".into(), None),
            ("ssh.service".into(), None),
            ("docker-abc.scope".into(), None),
            (ID.to_uppercase(), None),
            ("/".into(), None),
            (String::new(), None),
        ];
        for (name, want) in cases {
            let got = container(&name).map(|c| (c.runtime, c.id));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn boot_stamps_map_to_the_recent_past() {
        let clocks = Clocks::now();
        let boot_now = clocks.boot_ns.unwrap();
        let age = clocks.wall_ns - clocks.wall_clock((boot_now - 2_000_000_000) as u64);
        assert_eq!(age, 2_000_000_000);
    }

    #[test]
    fn times_before_1970_are_written_not_panicked_on() {
        // The clock was set to 1 s after the epoch while an event 3.5 s old was queued.
        let clocks = Clocks {
            wall_ns: 1_000_000_000,
            boot_ns: Some(10_000_000_000),
        };
        let t = clocks.wall_clock(6_500_000_000);
        assert_eq!(t, -2_500_000_000);
        assert_eq!(rfc3339(t).unwrap(), "1969-12-31T23:59:57.500000000Z");
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_764_215_608_123_456_789).unwrap(),
            "2025-11-27T03:53:28.123456789Z"
        );
        // Beyond what RFC 3339 can write: no time, no panic.
        assert_eq!(rfc3339(i128::MIN), None);
        assert_eq!(rfc3339(-62_167_219_200_000_000_001), None);
        assert_eq!(rfc3339(253_402_300_800_000_000_000), None);
    }
}
