//! `minerguard run`: policy -> kernel maps -> attach -> probe, then the event loop
//! (ring buffer -> decode -> output), SIGHUP reloads and SIGTERM/SIGINT stops.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::{ErrorKind, MapCore, MapMut, RingBufferBuilder};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};

use crate::event;
use crate::lsm;
use crate::maps;
use crate::output;
use crate::policy::{Mode, Policy};

pub struct Options {
    pub policy: PathBuf,
    /// Wins over the policy's mode, at start and on every reload.
    pub mode: Option<Mode>,
    pub skip_lsm_list_check: bool,
}

/// How often the loop wakes without events, to notice signals, mode flips and lost events.
const TICK: Duration = Duration::from_millis(200);

struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals> {
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing the SIGTERM/SIGINT handler")?;
        }
        signal_hook::flag::register(SIGHUP, Arc::clone(&reload))
            .context("installing the SIGHUP handler")?;
        Ok(Signals { stop, reload })
    }
}

/// The config map pinned for `minerguard mode`; unpinned when the agent stops.
struct ConfigPin;

impl ConfigPin {
    fn pin(config: &mut MapMut<'_>) -> Result<ConfigPin> {
        ensure_bpffs()?;
        fs::create_dir_all(maps::PIN_DIR).with_context(|| format!("creating {}", maps::PIN_DIR))?;
        // A pin left by an agent that was killed belongs to a map nobody uses any more.
        let _ = fs::remove_file(maps::CONFIG_PIN);
        config
            .pin(maps::CONFIG_PIN)
            .with_context(|| format!("pinning the config map at {}", maps::CONFIG_PIN))?;
        Ok(ConfigPin)
    }
}

impl Drop for ConfigPin {
    fn drop(&mut self) {
        let _ = fs::remove_file(maps::CONFIG_PIN);
        let _ = fs::remove_dir(maps::PIN_DIR);
    }
}

fn ensure_bpffs() -> Result<()> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        "/sys/fs/bpf",
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("mounting the BPF filesystem at /sys/fs/bpf")
}

/// What the agent has put into the kernel, so that a reload can move from it.
struct Applied {
    names: BTreeSet<String>,
    mode: Mode,
}

pub fn run(opts: Options) -> Result<()> {
    // Validate everything before the kernel is touched.
    let policy = Policy::load(&opts.policy)?;
    let mode = opts.mode.unwrap_or(policy.mode);
    if policy.names.is_empty() {
        warn!(policy = %opts.policy.display(), "the policy lists no names: nothing will be blocked");
    }
    let signals = Signals::register()?;
    if !opts.skip_lsm_list_check {
        lsm::check_active_list()?;
    }

    let mut storage = MaybeUninit::uninit();
    let mut skel = lsm::load(&mut storage)?;
    maps::set_mode(&skel.maps.mg_config, mode)?;
    let names: BTreeSet<String> = policy.names.into_iter().collect();
    maps::insert_names(&skel.maps.mg_names, names.iter().map(String::as_str))?;
    let link = lsm::attach(&skel)?;
    lsm::probe(&skel.maps.mg_names)?;
    let _pin = ConfigPin::pin(&mut skel.maps.mg_config)?;

    let maps = &skel.maps;
    let mut stdout = io::stdout().lock();
    let mut output_failed = false;
    let mut ring = RingBufferBuilder::new();
    ring.add(&maps.mg_events, move |data: &[u8]| {
        match event::decode(data) {
            Ok(e) => {
                if let Err(err) = output::write(&mut stdout, &output::Record::new(&e)) {
                    // Enforcement does not depend on the output; say it once, keep going.
                    if !output_failed {
                        error!(error = %err, "cannot write events to stdout");
                        output_failed = true;
                    }
                }
            }
            Err(err) => error!(error = %err, "undecodable event"),
        }
        0
    })
    .context("setting up the event ring buffer")?;
    let ring = ring.build().context("setting up the event ring buffer")?;

    let mut applied = Applied { names, mode };
    let mut lost = maps::stats(&maps.mg_stats)?.lost;
    info!(mode = %mode, names = applied.names.len(), policy = %opts.policy.display(), "minerguard ready");
    notify_ready();

    while !signals.stop.load(Ordering::Relaxed) {
        match ring.poll(TICK) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading events from the ring buffer"),
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            reload(&opts, &mut applied, &maps.mg_names, &maps.mg_config);
        }
        watch_mode(&mut applied, &maps.mg_config);
        lost = report_lost(&maps.mg_stats, lost);
    }

    info!("stopping: detaching the BPF LSM program");
    // Drain what was queued before the stop, then detach.
    let _ = ring.consume();
    drop(ring);
    drop(link);
    Ok(())
}

fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "cannot notify systemd that the agent is ready");
        }
    }
}

/// Applies the policy file again. A policy that fails validation changes nothing.
fn reload(opts: &Options, applied: &mut Applied, names_map: &dyn MapCore, config: &dyn MapCore) {
    let policy = match Policy::load(&opts.policy) {
        Ok(p) => p,
        Err(e) => {
            error!(
                policy = %opts.policy.display(),
                error = %e,
                "policy reload rejected: the running policy and mode stay in force"
            );
            return;
        }
    };
    let names: BTreeSet<String> = policy.names.into_iter().collect();
    if let Err(e) = maps::replace_names(names_map, &applied.names, &names) {
        // Additions come before removals, so the old names are all still in the map; some of
        // the new ones may be too, and the next reload accounts for them.
        error!(
            error = format!("{e:#}"),
            "policy reload failed while updating the kernel; the running policy stays in force"
        );
        applied.names.extend(names);
        return;
    }
    let added = names.difference(&applied.names).count();
    let removed = applied.names.difference(&names).count();
    applied.names = names;
    let mode = opts.mode.unwrap_or(policy.mode);
    if let Err(e) = maps::set_mode(config, mode) {
        error!(error = format!("{e:#}"), mode = %mode, "cannot apply the reloaded policy's mode");
    } else {
        applied.mode = mode;
    }
    info!(names = applied.names.len(), added, removed, mode = %applied.mode, "policy reloaded");
}

/// Logs a mode flipped from outside (`minerguard mode`), so the log tells what is in force.
fn watch_mode(applied: &mut Applied, config: &dyn MapCore) {
    match maps::mode(config) {
        Ok(mode) if mode != applied.mode => {
            info!(from = %applied.mode, to = %mode, "mode changed at runtime");
            applied.mode = mode;
        }
        Ok(_) => {}
        Err(e) => warn!(
            error = format!("{e:#}"),
            "cannot read the mode from the kernel"
        ),
    }
}

/// Makes every lost event visible in the log, within a tick of its loss.
fn report_lost(stats: &dyn MapCore, seen: u64) -> u64 {
    match maps::stats(stats) {
        Ok(s) if s.lost > seen => {
            warn!(
                lost = s.lost - seen,
                lost_total = s.lost,
                "events lost: the ring buffer was full (the execs were still enforced)"
            );
            s.lost
        }
        Ok(_) => seen,
        Err(e) => {
            warn!(error = format!("{e:#}"), "cannot read the kernel counters");
            seen
        }
    }
}
