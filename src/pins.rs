//! Enforcement that outlives the daemon: the program, its link and its maps pinned in bpffs.
//! A new agent adopts the pinned maps and takes over the link with no gap; only
//! `minerguard disable` removes them.
//!
//! ```text
//! /sys/fs/bpf/minerguard/link           the exec check's link: while pinned, execs are checked
//! /sys/fs/bpf/minerguard/prog           the program behind it (its name says the tier)
//! /sys/fs/bpf/minerguard/mmap-link      the mmap hook's link (files mapped executable)
//! /sys/fs/bpf/minerguard/mmap-prog      the program behind it
//! /sys/fs/bpf/minerguard/open-link      the file-open hook's link (MSR, huge pages)
//! /sys/fs/bpf/minerguard/open-prog      the program behind it
//! /sys/fs/bpf/minerguard/argv-link      the argument check's link (sched_process_exec)
//! /sys/fs/bpf/minerguard/argv-prog      the program behind it
//! /sys/fs/bpf/minerguard/behavior-link  the behaviour check's link (x86_fpu_regs_activated)
//! /sys/fs/bpf/minerguard/behavior-prog  the program behind it
//! /sys/fs/bpf/minerguard/maps-vN/       names, prefixes, memfd_allow, config, mode,
//!                                       identities, arg_rules, arg_values, domains,
//!                                       stats, events
//! ```

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::{Link, MapCore, MapHandle, OpenObject, ProgramMut};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use tracing::{info, warn};

use crate::attach::Links;
use crate::bpf::MinerguardSkel;
use crate::contract::{Tier, ABI};
use crate::maps::{self, ListMaps, Stats};
use crate::policy::Mode;

pub const PIN_DIR: &str = "/sys/fs/bpf/minerguard";
/// Held by the one agent (and by `disable` while it removes the pins); holds its pid.
const LOCK_DIR: &str = "/run/minerguard";
const LOCK_FILE: &str = "/run/minerguard/agent.lock";

/// A map another process needs: its pin name under `maps-vN/` and its name in the object.
struct PinnedMap {
    pin: &'static str,
    map: &'static str,
}

const fn pinned_as(pin: &'static str, map: &'static str) -> PinnedMap {
    PinnedMap { pin, map }
}

const NAMES: PinnedMap = pinned_as("names", "mg_names");
const PREFIXES: PinnedMap = pinned_as("prefixes", "mg_prefixes");
const MEMFD_ALLOW: PinnedMap = pinned_as("memfd_allow", "mg_memfd_allow");
const CONFIG: PinnedMap = pinned_as("config", "mg_config");
const MODE: PinnedMap = pinned_as("mode", "mg_mode");
const STATS: PinnedMap = pinned_as("stats", "mg_stats");
const EVENTS: PinnedMap = pinned_as("events", "mg_events");
/// Filled by the programs: files blocked by name, remembered across restarts.
const IDENTITIES: PinnedMap = pinned_as("identities", "mg_identities");
const ARG_RULES: PinnedMap = pinned_as("arg_rules", "mg_arg_rules");
const ARG_VALUES: PinnedMap = pinned_as("arg_values", "mg_arg_values");
const DOMAINS: PinnedMap = pinned_as("domains", "mg_domains");
const HASHES: PinnedMap = pinned_as("hashes", "mg_hashes");
const DRIFT_ALLOW: PinnedMap = pinned_as("drift_allow", "mg_drift_allow");
const TUNING_ALLOW: PinnedMap = pinned_as("tuning_allow", "mg_tuning_allow");
/// Filled by the programs: digests of files hashed, kept while they are unchanged.
const HASHED_FILES: PinnedMap = pinned_as("hashed_files", "mg_hashed_files");
/// Filled by the behaviour check: each thread's rounding modes, the processes reported (an
/// agent's restart neither resets a count nor reports a process again).
const FPU_WATCH: PinnedMap = pinned_as("fpu_watch", "mg_fpu_watch");
const FPU_REPORTED: PinnedMap = pinned_as("fpu_reported", "mg_fpu_reported");

/// Every pinned map, the one list. The .bss map is private to one program.
const PINNED_MAPS: [PinnedMap; 17] = [
    NAMES,
    PREFIXES,
    MEMFD_ALLOW,
    CONFIG,
    MODE,
    STATS,
    EVENTS,
    IDENTITIES,
    ARG_RULES,
    ARG_VALUES,
    DOMAINS,
    HASHES,
    HASHED_FILES,
    DRIFT_ALLOW,
    TUNING_ALLOW,
    FPU_WATCH,
    FPU_REPORTED,
];

/// The programs' pins, `(link, program)` under PIN_DIR, the exec hook's last: its link is
/// the one `status` reads as "enforcing".
const MMAP_PINS: (&str, &str) = ("mmap-link", "mmap-prog");
const OPEN_PINS: (&str, &str) = ("open-link", "open-prog");
const ARGV_PINS: (&str, &str) = ("argv-link", "argv-prog");
const BEHAVIOR_PINS: (&str, &str) = ("behavior-link", "behavior-prog");
/// Only where the kernel can hash (`attach::hashes_supported`).
const HASH_PINS: (&str, &str) = ("hash-link", "hash-prog");
const MMAP_HASH_PINS: (&str, &str) = ("mmap-hash-link", "mmap-hash-prog");
/// Only where drift can be checked (`attach::drift_supported`).
const DRIFT_PINS: (&str, &str) = ("drift-link", "drift-prog");
const MMAP_DRIFT_PINS: (&str, &str) = ("mmap-drift-link", "mmap-drift-prog");
const EXEC_PINS: (&str, &str) = ("link", "prog");

/// The programs as the kernel lists them (names cut to 15 bytes).
const HOOK_PROGRAMS: [&str; 13] = [
    "mg_bprm_check",
    "mg_bprm_fmod",
    "mg_exec_kill",
    "mg_mmap_file",
    "mg_mmap_fmod",
    "mg_file_open",
    "mg_open_fmod",
    "mg_exec_args",
    "mg_fpu_switch",
    "mg_bprm_hash",
    "mg_mmap_hash",
    "mg_bprm_drift",
    "mg_mmap_drift",
];

fn pinned(map_name: &std::ffi::OsStr) -> Option<&'static PinnedMap> {
    PINNED_MAPS.iter().find(|p| map_name == p.map)
}

fn maps_dir() -> PathBuf {
    Path::new(PIN_DIR).join(format!("maps-v{ABI}"))
}

fn link_path() -> PathBuf {
    Path::new(PIN_DIR).join(EXEC_PINS.0)
}

fn map_path(map: &PinnedMap) -> PathBuf {
    maps_dir().join(map.pin)
}

pub fn config_path() -> PathBuf {
    map_path(&CONFIG)
}

/// Whether a filesystem of `fstype` is mounted at `at` (anywhere, if `at` is None).
pub fn is_mounted(fstype: &str, at: Option<&str>) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts.lines().any(|l| {
        let mut fields = l.split(' ').skip(1);
        let (dir, kind) = (fields.next(), fields.next());
        kind == Some(fstype) && at.is_none_or(|at| dir == Some(at))
    })
}

pub fn ensure_bpffs() -> Result<()> {
    if is_mounted("bpf", Some("/sys/fs/bpf")) {
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

/// Before load: makes the object adopt the maps a previous agent pinned, when every one
/// matches this object's definition. Returns whether it does; if not, fresh maps replace
/// them at `install`.
pub fn adopt(object: &mut OpenObject) -> Result<bool> {
    for map in object.maps() {
        let Some(pin) = pinned(map.name()) else {
            continue;
        };
        let path = map_path(pin);
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
    }
    for mut map in object.maps_mut() {
        if let Some(pin) = pinned(map.name()) {
            let path = map_path(pin);
            map.reuse_pinned_map(&path)
                .with_context(|| format!("adopting the pinned map {}", path.display()))?;
        }
    }
    Ok(true)
}

/// Since Linux 5.19 a pin's file mode alone decides who may open it (and so change what is
/// enforced): root only, whatever the umask.
const PIN_MODE: u32 = 0o600;
const PIN_DIR_MODE: u32 = 0o700;

fn restrict(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting {} to mode {mode:o}", path.display()))
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
    restrict(&tmp, PIN_MODE)?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// The agent lock: exactly one agent runs, and `disable` cannot remove the pins while an
/// agent is adopting them. The file holds the holder's pid.
pub struct Lock(Flock<fs::File>);

fn lock_file() -> Result<fs::File> {
    fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(LOCK_FILE)
        .with_context(|| format!("opening {LOCK_FILE}"))
}

/// The pid recorded by whoever holds the lock.
fn lock_holder(file: &mut fs::File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// How often (20 ms apart) a held lock's file is read before its holder is called unknown.
const HOLDER_READ_TRIES: u32 = 50;

/// The lock if it is free, else the pid its holder recorded (if it could be read).
fn try_lock() -> Result<std::result::Result<Flock<fs::File>, Option<u32>>> {
    match Flock::lock(lock_file()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Ok(lock)),
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            // The holder writes its pid just after taking the lock: a reader that comes
            // in between sees an empty file, so it looks again for a moment.
            for _ in 0..HOLDER_READ_TRIES {
                if let Some(pid) = lock_holder(&mut file) {
                    return Ok(Err(Some(pid)));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(Err(None))
        }
        Err((_, errno)) => bail!("cannot lock {LOCK_FILE}: {errno}"),
    }
}

impl Lock {
    /// Takes the lock or says who holds it.
    pub fn take() -> Result<Lock> {
        match try_lock()? {
            Ok(lock) => {
                let mut lock = Lock(lock);
                lock.record()?;
                Ok(lock)
            }
            Err(Some(pid)) => {
                bail!("another minerguard agent (pid {pid}) already runs; stop it first")
            }
            Err(None) => {
                bail!("another minerguard process holds {LOCK_FILE}; try again when it is done")
            }
        }
    }

    /// Waits up to `timeout` for the lock (e.g. for a stopping agent to exit).
    pub fn wait(timeout: Duration) -> Result<Lock> {
        let deadline = Instant::now() + timeout;
        loop {
            match Lock::take() {
                Ok(lock) => return Ok(lock),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The pid of the agent holding the lock, if one does (without taking it).
    pub fn holder() -> Result<Option<u32>> {
        Ok(try_lock()?.err().flatten())
    }

    fn record(&mut self) -> Result<()> {
        let file: &mut fs::File = &mut self.0;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {LOCK_FILE}"))
    }
}

/// Pins a program and its link under their `(link, program)` names, each over what was there.
fn pin_program(pins: (&str, &str), prog: &mut ProgramMut<'_>, link: &mut Link) -> Result<()> {
    pin_over(&Path::new(PIN_DIR).join(pins.1), |p| prog.pin(p))?;
    pin_over(&Path::new(PIN_DIR).join(pins.0), |p| link.pin(p))
}

/// Pins an optional layer's two programs (exec, mmap) and links, or, when this agent does
/// not run it, removes what an earlier agent pinned for it.
fn pin_layer(
    pins: ((&str, &str), (&str, &str)),
    progs: (&mut ProgramMut<'_>, &mut ProgramMut<'_>),
    links: Option<&mut (Link, Link)>,
) -> Result<()> {
    match links {
        Some((exec, mmap)) => {
            pin_program(pins.0, progs.0, exec)?;
            pin_program(pins.1, progs.1, mmap)
        }
        None => {
            unpin(pins.0)?;
            unpin(pins.1)
        }
    }
}

/// Removes a program's pins, the link first (detaching it unless another holder keeps it).
fn unpin(pins: (&str, &str)) -> Result<()> {
    for name in [pins.0, pins.1] {
        let path = Path::new(PIN_DIR).join(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                info!(pin = %path.display(), "removed the pin of a layer this agent does not run")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}

/// After attach and probe: makes this program the pinned one. The new link is attached
/// before the old pin is replaced, so there is no moment without a program checking execs.
/// `ensure_bpffs` must have run (the agent does it before it looks at the pins).
pub fn install(skel: &mut MinerguardSkel<'_>, links: &mut Links, adopted: bool) -> Result<()> {
    use libbpf_rs::skel::Skel;
    fs::create_dir_all(maps_dir()).with_context(|| format!("creating {}", maps_dir().display()))?;
    restrict(Path::new(PIN_DIR), PIN_DIR_MODE)?;
    restrict(&maps_dir(), PIN_DIR_MODE)?;
    if !adopted {
        for mut map in skel.object_mut().maps_mut() {
            if let Some(pin) = pinned(map.name()) {
                pin_over(&map_path(pin), |p| map.pin(p))?;
            }
        }
    }
    let progs = &mut skel.progs;
    let (exec, calls) = match links.tier {
        Tier::Lsm => (
            &mut progs.mg_bprm_check,
            Some((&mut progs.mg_mmap_file, &mut progs.mg_file_open)),
        ),
        Tier::FmodRet => (
            &mut progs.mg_bprm_fmod,
            Some((&mut progs.mg_mmap_fmod, &mut progs.mg_open_fmod)),
        ),
        Tier::Kill => (&mut progs.mg_exec_kill, None),
    };
    // A layer this agent does not run (another tier, a kernel without it) loses the pins
    // an earlier agent left: they would keep checking with the old policy's programs.
    let (mmap, open) = calls.unzip();
    match (mmap, links.mmap.as_mut()) {
        (Some(prog), Some(link)) => pin_program(MMAP_PINS, prog, link)?,
        _ => unpin(MMAP_PINS)?,
    }
    match (open, links.open.as_mut()) {
        (Some(prog), Some(link)) => pin_program(OPEN_PINS, prog, link)?,
        _ => unpin(OPEN_PINS)?,
    }
    pin_program(ARGV_PINS, &mut progs.mg_exec_args, &mut links.argv)?;
    pin_program(BEHAVIOR_PINS, &mut progs.mg_fpu_switch, &mut links.behavior)?;
    let hash = (&mut progs.mg_bprm_hash, &mut progs.mg_mmap_hash);
    pin_layer((HASH_PINS, MMAP_HASH_PINS), hash, links.hash.as_mut())?;
    let drift = (&mut progs.mg_bprm_drift, &mut progs.mg_mmap_drift);
    pin_layer((DRIFT_PINS, MMAP_DRIFT_PINS), drift, links.drift.as_mut())?;
    pin_program(EXEC_PINS, exec, &mut links.exec)?;
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

/// minerguard's hook programs the kernel still holds, and the links attaching them. A
/// link's id goes before the kernel detaches its program (the release runs from a work
/// queue, and under emulation patching the trampoline back takes a while); the program's id
/// goes only after: a detach is complete when the program is gone.
fn loaded_hooks() -> (usize, usize) {
    let ours: Vec<u32> = libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| HOOK_PROGRAMS.iter().any(|name| p.name == *name))
        .map(|p| p.id)
        .collect();
    let links = libbpf_rs::query::LinkInfoIter::default()
        .filter(|l| ours.contains(&l.prog_id))
        .count();
    (ours.len(), links)
}

/// Removes every pin, the link first, then waits (up to 10 s) until the kernel has really
/// detached the program: a user told "no longer checked" must be able to rely on it, and
/// older kernels may finish a detach a moment after the last reference went. The caller
/// holds the agent lock, so no agent attaches meanwhile. Returns whether anything was pinned.
pub fn remove() -> Result<bool> {
    if !Path::new(PIN_DIR).exists() {
        return Ok(false);
    }
    let pins = [
        EXEC_PINS,
        MMAP_PINS,
        ARGV_PINS,
        BEHAVIOR_PINS,
        HASH_PINS,
        MMAP_HASH_PINS,
        DRIFT_PINS,
        MMAP_DRIFT_PINS,
        OPEN_PINS,
    ]
    .into_iter()
    .flat_map(|(link, prog)| [link, prog])
    .map(|name| Path::new(PIN_DIR).join(name));
    for path in pins {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    fs::remove_dir_all(PIN_DIR).with_context(|| format!("removing {PIN_DIR}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (programs, links) = loaded_hooks();
        if programs == 0 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            if links > 0 {
                bail!(
                    "the pins are removed, but the kernel still has {links} link(s) of \
                     minerguard's programs attached: a process holds one open (find it with \
                     `bpftool link`)"
                );
            }
            bail!(
                "the pins are removed and nothing is attached, but {programs} of minerguard's \
                 programs are still loaded: a process holds one open (find it with `bpftool \
                 prog`)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the pins say: `status` (text and JSON) and the metrics endpoint show this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The link is pinned: execs are being checked.
    pub enforcing: bool,
    /// How: the tier the agent that pinned it chose (`None` when nothing is pinned).
    pub tier: Option<Tier>,
    /// `None` when nothing is pinned.
    pub mode: Option<Mode>,
    /// Names and prefix patterns in the kernel's maps.
    pub names: usize,
    /// Files remembered after a block (the identity layer), at most `MAX_IDENTITIES`.
    pub remembered: usize,
    /// The daemon that owns the program, if it still runs.
    pub agent_pid: Option<u32>,
    /// `None` when nothing is pinned.
    pub counters: Option<Stats>,
}

impl Snapshot {
    /// Nothing of this ABI is pinned.
    pub fn unpinned() -> Snapshot {
        Snapshot {
            enforcing: false,
            tier: None,
            mode: None,
            names: 0,
            remembered: 0,
            agent_pid: None,
            counters: None,
        }
    }
}

/// Handles on the pinned maps that other commands read, opened once.
pub struct Pinned {
    config: MapHandle,
    mode: MapHandle,
    names: MapHandle,
    prefixes: MapHandle,
    memfd_allow: MapHandle,
    stats: MapHandle,
    identities: MapHandle,
    hashes: MapHandle,
    drift_allow: MapHandle,
    tuning_allow: MapHandle,
    arg_rules: MapHandle,
    arg_values: MapHandle,
    domains: MapHandle,
}

impl Pinned {
    /// `None` when nothing of this ABI is pinned. An incomplete set (an agent crashed
    /// while pinning) is an error that says so; `run` replaces it, `disable` removes it.
    pub fn open() -> Result<Option<Pinned>> {
        // try_exists: a user who may not look into the pin directory is told so, not told
        // that nothing is enforced.
        let path = config_path();
        if !path
            .try_exists()
            .with_context(|| format!("looking for {}", path.display()))?
        {
            return Ok(None);
        }
        if let Some(missing) = PINNED_MAPS.iter().find(|m| !map_path(m).exists()) {
            bail!(
                "the pins under {} are incomplete ({} is missing: an agent stopped while pinning); \
                 `minerguard run` replaces them, `minerguard disable` removes them",
                maps_dir().display(),
                missing.pin
            );
        }
        let open = |map: &PinnedMap| {
            MapHandle::from_pinned_path(map_path(map))
                .with_context(|| format!("opening {}", map_path(map).display()))
        };
        Ok(Some(Pinned {
            config: open(&CONFIG)?,
            mode: open(&MODE)?,
            names: open(&NAMES)?,
            prefixes: open(&PREFIXES)?,
            memfd_allow: open(&MEMFD_ALLOW)?,
            stats: open(&STATS)?,
            identities: open(&IDENTITIES)?,
            hashes: open(&HASHES)?,
            drift_allow: open(&DRIFT_ALLOW)?,
            tuning_allow: open(&TUNING_ALLOW)?,
            arg_rules: open(&ARG_RULES)?,
            arg_values: open(&ARG_VALUES)?,
            domains: open(&DOMAINS)?,
        }))
    }

    pub fn mode_map(&self) -> &dyn MapCore {
        &self.mode
    }

    /// The daemon that owns the pinned program, if it still runs. Reads only the config
    /// entry, unlike `snapshot`, which walks every list.
    pub fn agent_pid(&self) -> Result<Option<u32>> {
        Ok(maps::config(&self.config)?
            .agent_pid
            .filter(|&pid| is_agent(pid)))
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let lists = ListMaps {
            names: &self.names,
            prefixes: &self.prefixes,
            memfd_allow: &self.memfd_allow,
            arg_rules: &self.arg_rules,
            arg_values: &self.arg_values,
            domains: &self.domains,
            hashes: &self.hashes,
            drift_allow: &self.drift_allow,
            tuning_allow: &self.tuning_allow,
        }
        .read();
        let config = maps::config(&self.config)?;
        Ok(Snapshot {
            enforcing: link_path().exists(),
            tier: config.tier,
            mode: Some(maps::mode(&self.mode)?),
            names: lists.patterns(),
            // Bounded by the map's size (MAX_IDENTITIES).
            remembered: self.identities.keys().count(),
            agent_pid: config.agent_pid.filter(|&pid| is_agent(pid)),
            counters: Some(maps::stats(&self.stats)?),
        })
    }
}

/// The snapshot of whatever is pinned.
pub fn snapshot() -> Result<Snapshot> {
    match Pinned::open()? {
        Some(p) => p.snapshot(),
        None => Ok(Snapshot::unpinned()),
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
    use libbpf_rs::skel::OpenSkel;

    #[test]
    fn layout_keeps_maps_per_abi() {
        assert_eq!(
            config_path(),
            Path::new(&format!("/sys/fs/bpf/minerguard/maps-v{ABI}/config"))
        );
        assert_eq!(link_path(), Path::new("/sys/fs/bpf/minerguard/link"));
    }

    #[test]
    fn every_pinned_map_is_in_the_object() {
        let mut storage = std::mem::MaybeUninit::uninit();
        let skel = crate::bpf::open_for_test(&mut storage);
        let names: Vec<_> = skel
            .open_object()
            .maps()
            .map(|m| m.name().to_os_string())
            .collect();
        for pin in &PINNED_MAPS {
            assert!(names.iter().any(|n| n == pin.map), "{} missing", pin.map);
        }
    }

    #[test]
    fn status_json_keeps_its_keys() {
        let json = serde_json::to_value(Snapshot::unpinned()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "enforcing": false, "tier": null, "mode": null, "names": 0, "remembered": 0, "agent_pid": null, "counters": null })
        );
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
