//! What the kernel cannot say cheaply, added in userspace: wall-clock time, and the
//! container identity parsed from the cgroup name the kernel captured at the exec.

use std::time::{Duration, SystemTime};

use nix::time::{clock_gettime, ClockId};

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
pub fn wall_clock(boot_ns: u64) -> SystemTime {
    let now = SystemTime::now();
    let Ok(boot_now) = clock_gettime(ClockId::CLOCK_BOOTTIME) else {
        return now;
    };
    let boot_now = Duration::new(boot_now.tv_sec() as u64, boot_now.tv_nsec() as u32);
    let age = boot_now.saturating_sub(Duration::from_nanos(boot_ns));
    now.checked_sub(age).unwrap_or(now)
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
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64;
        let age = SystemTime::now()
            .duration_since(wall_clock(boot_ns - 2_000_000_000))
            .unwrap();
        assert!(
            age >= Duration::from_secs(2) && age < Duration::from_secs(3),
            "{age:?}"
        );
    }
}
