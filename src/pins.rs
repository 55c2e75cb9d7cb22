//! Enforcement that outlives the daemon: the program, its LSM link and its maps pinned in
//! bpffs. A new agent adopts the pinned maps and takes over the link with no gap; only
//! `minerguard disable` removes them.
//!
//! ```text
//! /sys/fs/bpf/minerguard/link           the LSM link: while pinned, execs are checked
//! /sys/fs/bpf/minerguard/prog           the program behind it
//! /sys/fs/bpf/minerguard/maps-vN/       names, config, stats, events (N = ABI)
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::{Link, MapCore, MapHandle, OpenMapMut};
use tracing::{info, warn};

use crate::bpf::{MinerguardSkel, OpenMinerguardMaps};
use crate::maps::{self, ListMaps, Stats};
use crate::policy::Mode;

pub const PIN_DIR: &str = "/sys/fs/bpf/minerguard";
/// Bump when a type of `src/bpf/minerguard.h` changes layout: maps pinned by an agent of
/// another ABI are then replaced, not adopted. `abi_fingerprint_is_current` guards it.
pub const ABI: u32 = 2;

fn maps_dir() -> PathBuf {
    Path::new(PIN_DIR).join(format!("maps-v{ABI}"))
}

fn link_path() -> PathBuf {
    Path::new(PIN_DIR).join("link")
}

fn prog_path() -> PathBuf {
    Path::new(PIN_DIR).join("prog")
}

fn map_path(name: &str) -> PathBuf {
    maps_dir().join(name)
}

pub fn config_path() -> PathBuf {
    map_path("config")
}

/// The maps another process may need, by pin name. The scratch map is private to a program.
fn pinned_maps<'a, 'obj>(
    maps: &'a mut OpenMinerguardMaps<'obj>,
) -> [(&'static str, &'a mut OpenMapMut<'obj>); 6] {
    [
        ("names", &mut maps.mg_names),
        ("prefixes", &mut maps.mg_prefixes),
        ("memfd_allow", &mut maps.mg_memfd_allow),
        ("config", &mut maps.mg_config),
        ("stats", &mut maps.mg_stats),
        ("events", &mut maps.mg_events),
    ]
}

pub fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts.lines().any(|l| {
        let mut fields = l.split(' ');
        fields.next().is_some()
            && fields.next() == Some("/sys/fs/bpf")
            && fields.next() == Some("bpf")
    }) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        "/sys/fs/bpf",
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("mounting the BPF filesystem at /sys/fs/bpf (pins need it)")
}

/// Before load: makes the object reuse the maps a previous agent pinned, when each matches
/// this object's definition. Returns whether it does; if not, fresh maps replace them later.
pub fn reuse_maps(maps: &mut OpenMinerguardMaps<'_>) -> Result<bool> {
    let mut pinned = Vec::new();
    for (name, map) in pinned_maps(maps) {
        let path = map_path(name);
        if !path.exists() {
            return Ok(false);
        }
        let handle = MapHandle::from_pinned_path(&path)
            .with_context(|| format!("opening the pinned map {}", path.display()))?;
        let info = handle.info().context("reading a pinned map's definition")?;
        let same = handle.map_type() == map.map_type()
            && handle.key_size() == map.key_size()
            && handle.value_size() == map.value_size()
            && handle.max_entries() == map.max_entries()
            && info.info.map_flags == map.map_flags();
        if !same {
            warn!(map = %path.display(), "pinned map differs from this version's: replacing all pinned maps");
            return Ok(false);
        }
        pinned.push(path);
    }
    for ((_, map), path) in pinned_maps(maps).into_iter().zip(&pinned) {
        map.reuse_pinned_map(path)
            .with_context(|| format!("reusing the pinned map {}", path.display()))?;
    }
    Ok(true)
}

/// Pins `path` through `pin` at a temporary name, then renames it over `path`: whatever was
/// pinned there stays in place until the new object is.
fn pin_over(path: &Path, pin: impl FnOnce(&Path) -> libbpf_rs::Result<()>) -> Result<()> {
    // bpffs refuses names with a dot.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push("_new");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    pin(&tmp).with_context(|| format!("pinning {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// After attach and probe: makes this program the pinned one. The new link is attached
/// before the old pin is replaced, so there is no moment without a program checking execs.
/// `ensure_bpffs` must have run (the daemon does it before it looks at the pins).
pub fn install(skel: &mut MinerguardSkel<'_>, link: &mut Link, adopted_maps: bool) -> Result<()> {
    fs::create_dir_all(maps_dir()).with_context(|| format!("creating {}", maps_dir().display()))?;
    if !adopted_maps {
        let maps = &mut skel.maps;
        pin_over(&map_path("names"), |p| maps.mg_names.pin(p))?;
        pin_over(&map_path("prefixes"), |p| maps.mg_prefixes.pin(p))?;
        pin_over(&map_path("memfd_allow"), |p| maps.mg_memfd_allow.pin(p))?;
        pin_over(&map_path("config"), |p| maps.mg_config.pin(p))?;
        pin_over(&map_path("stats"), |p| maps.mg_stats.pin(p))?;
        pin_over(&map_path("events"), |p| maps.mg_events.pin(p))?;
    }
    pin_over(&prog_path(), |p| skel.progs.mg_bprm_check.pin(p))?;
    pin_over(&link_path(), |p| link.pin(p))?;
    // Maps of another ABI belonged to the program just replaced.
    for entry in fs::read_dir(PIN_DIR).context("listing the pins")?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("maps-v") && entry.path() != maps_dir() {
            info!(pins = %entry.path().display(), "removing the maps of a replaced version");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Removes every pin, the link first: the program stops checking execs at that moment.
/// Returns whether anything was pinned.
pub fn remove() -> Result<bool> {
    if !Path::new(PIN_DIR).exists() {
        return Ok(false);
    }
    for path in [link_path(), prog_path()] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    fs::remove_dir_all(PIN_DIR).with_context(|| format!("removing {PIN_DIR}"))?;
    Ok(true)
}

/// What the pins say, for `status`, metrics and a second agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The LSM link is pinned: execs are being checked.
    pub enforcing: bool,
    pub mode: Mode,
    /// Names and prefix patterns.
    pub names: usize,
    pub stats: Stats,
    /// The daemon that owns the program, if it still runs.
    pub agent_pid: Option<u32>,
}

/// Handles on the pinned maps, opened once.
pub struct Pinned {
    config: MapHandle,
    names: MapHandle,
    prefixes: MapHandle,
    memfd_allow: MapHandle,
    stats: MapHandle,
}

impl Pinned {
    /// `None` when nothing of this ABI is pinned.
    pub fn open() -> Result<Option<Pinned>> {
        if !config_path().exists() {
            return Ok(None);
        }
        let open = |name: &str| {
            MapHandle::from_pinned_path(map_path(name))
                .with_context(|| format!("opening {}", map_path(name).display()))
        };
        Ok(Some(Pinned {
            config: open("config")?,
            names: open("names")?,
            prefixes: open("prefixes")?,
            memfd_allow: open("memfd_allow")?,
            stats: open("stats")?,
        }))
    }

    pub fn config_map(&self) -> &dyn MapCore {
        &self.config
    }

    /// The daemon that owns the pinned program, if it still runs. Reads only the config
    /// entry, unlike `snapshot`, which walks every list.
    pub fn agent_pid(&self) -> Result<Option<u32>> {
        Ok(maps::config(&self.config)?
            .agent_pid
            .filter(|&pid| is_agent(pid)))
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let config = maps::config(&self.config)?;
        let lists = ListMaps {
            names: &self.names,
            prefixes: &self.prefixes,
            memfd_allow: &self.memfd_allow,
        }
        .read();
        Ok(Snapshot {
            enforcing: link_path().exists(),
            mode: config.mode,
            names: lists.patterns(),
            stats: maps::stats(&self.stats)?,
            agent_pid: self.agent_pid()?,
        })
    }
}

/// Whether `pid` is a live minerguard process (a recorded pid may have been reused).
pub fn is_agent(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|stat| stat.comm == "minerguard")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::types::{mg_config, mg_event, mg_name};
    use std::mem::{offset_of, size_of};

    /// Fails when the shared layout changes: bump ABI, then update the numbers here.
    #[test]
    fn abi_fingerprint_is_current() {
        let fingerprint = [
            size_of::<mg_name>(),
            size_of::<mg_config>(),
            size_of::<mg_event>(),
            offset_of!(mg_event, action),
            offset_of!(mg_event, comm),
            offset_of!(mg_event, matched_name),
            offset_of!(mg_event, file_name),
            offset_of!(mg_event, filename),
        ];
        assert_eq!((ABI, fingerprint), (2, [64, 24, 584, 40, 56, 72, 136, 200]));
    }

    #[test]
    fn layout_keeps_maps_per_abi() {
        assert_eq!(
            config_path(),
            Path::new("/sys/fs/bpf/minerguard/maps-v2/config")
        );
        assert_eq!(link_path(), Path::new("/sys/fs/bpf/minerguard/link"));
    }

    #[test]
    fn only_live_minerguard_processes_own_the_pins() {
        assert!(
            !is_agent(std::process::id()),
            "the test binary is not the agent"
        );
        assert!(!is_agent(u32::MAX));
    }
}
