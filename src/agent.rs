//! `minerguard run`: the agent. `Agent::start` validates the policy, loads the program on the
//! pinned maps it adopts, applies the policy, attaches, proves and pins; `run` is the event
//! loop (ring buffer -> decode -> output) until SIGTERM/SIGINT, reloading on SIGHUP; `stop`
//! leaves enforcement in place (see `pins`).

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, MapHandle, OpenObject, RingBufferBuilder};
use nix::errno::Errno;
use nix::poll::PollTimeout;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use tracing::{error, info, warn};

use crate::attach::{self, Links, Optional};
use crate::bpf::{MinerguardMaps, MinerguardSkel, MinerguardSkelBuilder};
use crate::contract::Tier;
use crate::cri;
use crate::delivery;
use crate::enrich;
use crate::event::Tally;
use crate::journal;
use crate::maps::{self, Config, Layer, ListMaps, Lists};
use crate::metrics;
use crate::output;
use crate::pins;
use crate::policy::{DriftMode, LayerMode, Mode, Policy};
use crate::webhook;

pub struct Options {
    pub policy: PathBuf,
    /// Wins over the policy's mode, at start and on every reload.
    pub mode: Option<Mode>,
    /// The tier to enforce with; `None`: the strongest that works here.
    pub tier: Option<Tier>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The operator allowed a non-loopback metrics address (`--metrics-allow-remote`).
    pub metrics_allow_remote: bool,
    /// The schema of the lines on stdout (and of the webhook's bodies).
    pub format: output::Format,
    /// How long a storm's repeats are held for one summary line (zero: never).
    pub storm_window: Duration,
    /// Where to POST each event as well, if anywhere.
    pub webhook: Option<webhook::Url>,
    /// The container runtime's CRI socket (`None`: the runtimes' defaults).
    pub cri_socket: Option<PathBuf>,
    /// For tests: fail the start once the policy is in the maps, before attaching, to
    /// prove that a failed start leaves the pinned state as it found it.
    pub fail_after_policy: bool,
}

/// How often the loop wakes without events while something may still follow the last event
/// (see GRACE). Signals end the wait at once.
const TICK: Duration = Duration::from_secs(1);

/// After an event or a signal, the loop keeps waking once a TICK for this long: what follows
/// an event on other threads (stdout write failures, webhook retries, lost-event counts, pod
/// metadata misses) is then logged and published within a tick. Quiet for this long, the loop
/// sleeps until the next event, signal or storm summary due: an idle agent never wakes.
const GRACE: Duration = Duration::from_secs(30);

/// How long a stop waits for the output thread to write what is queued: a stalled stdout
/// must not hold the stop until systemd kills the agent (TimeoutStopSec).
const STOP_DRAIN: Duration = Duration::from_secs(3);

/// systemd's watchdog (`WatchdogSec=` in the unit): the event loop says WATCHDOG=1 every half
/// timeout (as sd_watchdog_enabled(3) advises), so an agent whose loop is wedged is killed and
/// restarted (the pinned program enforces meanwhile). The only periodic wake-up left, and only
/// under a supervisor that asks for it.
struct Watchdog {
    every: Option<Duration>,
    last: Option<std::time::Instant>,
}

impl Watchdog {
    fn from_env() -> Watchdog {
        let timeout = sd_notify::watchdog_enabled();
        if let Some(timeout) = timeout {
            info!(timeout = ?timeout, "systemd watchdog enabled");
        }
        Watchdog {
            every: timeout.map(|t| t / 2),
            last: None,
        }
    }

    /// When the next ping is due, if the watchdog is on.
    fn next(&self) -> Option<Instant> {
        let every = self.every?;
        Some(self.last.map_or_else(Instant::now, |last| last + every))
    }

    fn ping(&mut self) {
        let Some(every) = self.every else { return };
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < every)
        {
            return;
        }
        self.last = Some(now);
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            warn!(error = %e, "cannot notify systemd's watchdog");
        }
    }
}

struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    /// Each of these signals (and SIGUSR1, which `minerguard mode` sends after it changed the
    /// mode, so that the loop logs it) writes a byte here, after setting its flag: the loop
    /// waits on it, so a signal that lands just before the wait starts still ends it (a flag
    /// alone would be seen only at the next event, which may never come).
    wake: UnixStream,
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
        let (wake, writer) = UnixStream::pair().context("creating the signals' wake-up socket")?;
        wake.set_nonblocking(true)
            .context("creating the signals' wake-up socket")?;
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGUSR1] {
            let writer = writer
                .try_clone()
                .context("creating the signals' wake-up socket")?;
            signal_hook::low_level::pipe::register(sig, writer)
                .context("installing the signals' wake-up")?;
        }
        Ok(Signals { stop, reload, wake })
    }

    /// Empties the wake-up socket; whether a signal wrote to it.
    fn drain(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut woke = false;
        while let Ok(n) = (&self.wake).read(&mut buf) {
            if n == 0 {
                break;
            }
            woke = true;
        }
        woke
    }
}

/// What the agent has put into the kernel, so that a reload can move from it.
struct Applied {
    lists: Lists,
    config: Config,
    mode: Mode,
    /// Events lost so far, as last logged.
    lost: u64,
}

/// The running agent: owns the loaded object (whose storage the caller owns: libbpf-rs's
/// skeletons borrow it), the link that keeps it attached, and what it applied.
pub struct Agent<'obj> {
    opts: Options,
    signals: Signals,
    skel: MinerguardSkel<'obj>,
    /// Pinned too; held so that the links live as long as the agent even if the pins are
    /// removed.
    _links: Links,
    applied: Applied,
    /// Exactly one agent at a time; `disable` waits for it.
    _lock: pins::Lock,
}

/// What the ready record says of a behaviour layer: its mode, or "unavailable".
fn layer_state(setting: Option<LayerMode>, mode: Mode, available: bool) -> &'static str {
    if !available {
        return "unavailable";
    }
    setting.map_or(mode.as_str(), LayerMode::as_str)
}

/// Logs each `[behavior] allow_*` entry that does not exist here (it allows nothing).
fn warn_unresolved(missing: &[String]) {
    for problem in missing {
        warn!(%problem, "[behavior] allow entry not found on this node: it allows nothing");
    }
}

/// The config entry a policy asks for.
/// `optional`: which optional programs this kernel has loaded.
fn config_for(
    policy: &Policy,
    lists: &Lists,
    host_mnt_ns: u32,
    tier: Tier,
    optional: Optional,
) -> Config {
    Config {
        scope: policy.scope,
        memfd_block: policy.memfd_block,
        has_prefixes: !lists.prefixes.is_empty(),
        identity: policy.identity,
        mmap: policy.mmap && tier.denies_calls(),
        argv: policy.argv.enabled,
        hash: optional.hashes && !policy.sha256.is_empty(),
        drift: optional.drift && policy.drift.mode != DriftMode::Off,
        drift_audit: policy.drift.mode == DriftMode::Audit,
        randomx: Layer::from_policy(policy.behavior.randomx, true),
        msr: Layer::from_policy(policy.behavior.msr, tier.denies_calls()),
        hugepages: Layer::from_policy(policy.behavior.hugepages, tier.denies_calls()),
        host_mnt_ns,
        agent_pid: Some(std::process::id()),
        tier: Some(tier),
    }
}

fn list_maps<'a>(maps: &'a MinerguardMaps<'_>) -> ListMaps<'a> {
    ListMaps {
        names: &maps.mg_names,
        prefixes: &maps.mg_prefixes,
        memfd_allow: &maps.mg_memfd_allow,
        arg_rules: &maps.mg_arg_rules,
        arg_values: &maps.mg_arg_values,
        domains: &maps.mg_domains,
        hashes: &maps.mg_hashes,
        drift_allow: &maps.mg_drift_allow,
        tuning_allow: &maps.mg_tuning_allow,
    }
}

/// Moves the maps from one policy to another with no instant in which an entry listed in
/// both is missing or unreachable: additions first, then the config entry with every check
/// either policy turns on (prefixes, identity, mmap, argv), then the mode, then removals, then the
/// final config. A failure stops before any removal, so the old policy stays whole.
fn move_policy(
    maps: &MinerguardMaps<'_>,
    from: (&Lists, Config),
    to: (&Lists, Config, Mode),
) -> Result<()> {
    let (old, old_config) = from;
    let (new, config, mode) = to;
    let lists = list_maps(maps);
    lists.add(old, new)?;
    let interim = Config {
        has_prefixes: config.has_prefixes || old_config.has_prefixes,
        identity: config.identity || old_config.identity,
        mmap: config.mmap || old_config.mmap,
        argv: config.argv || old_config.argv,
        hash: config.hash || old_config.hash,
        drift: config.drift || old_config.drift,
        // Report-only in between only if both are: block wins.
        drift_audit: config.drift_audit && old_config.drift_audit,
        randomx: config.randomx.union(old_config.randomx),
        msr: config.msr.union(old_config.msr),
        hugepages: config.hugepages.union(old_config.hugepages),
        ..config
    };
    maps::write_config(&maps.mg_config, interim)?;
    maps::write_mode(&maps.mg_mode, mode)?;
    wait_for_running_checks();
    lists.remove(old, new)?;
    maps::write_config(&maps.mg_config, config)?;
    let forgotten = maps::forget_unlisted(&maps.mg_identities, new)?;
    if forgotten > 0 {
        info!(
            forgotten,
            "forgot remembered files whose name the policy no longer lists"
        );
    }
    Ok(())
}

/// Returns once every exec check that may have begun before the call has finished. A check
/// makes two lookups (names, then patterns) and reads the config between them; an exec whose
/// first lookup came before a reload's additions could otherwise make its second after the
/// reload's removals, and find neither the old entry nor the new one. BPF-LSM programs run
/// inside an RCU read-side section, and membarrier(MEMBARRIER_CMD_GLOBAL) is
/// synchronize_rcu(): a grace period, a few milliseconds.
fn wait_for_running_checks() {
    // SAFETY: membarrier takes no pointers; it only waits.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if rc != 0 {
        // Not available (nohz_full CPUs, a syscall filter): a grace period rarely takes longer.
        warn!(
            error = %std::io::Error::last_os_error(),
            "membarrier(MEMBARRIER_CMD_GLOBAL) failed: waiting 100 ms for running exec checks instead"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What an adopted set of maps held before this agent changed them.
struct Previous {
    lists: Lists,
    config: Config,
    mode: Mode,
}

impl<'obj> Agent<'obj> {
    /// Everything up to `minerguard ready`. Validates before touching the kernel; once
    /// this returns, the program is attached, proven and pinned. A start that fails after
    /// changing adopted maps puts back what they held.
    pub fn start(opts: Options, storage: &'obj mut MaybeUninit<OpenObject>) -> Result<Self> {
        let policy = Policy::load(&opts.policy)?;
        let (lists, missing) = Lists::from_policy(&policy);
        if lists.patterns() == 0 {
            warn!(policy = %opts.policy.display(), "the policy lists no names: nothing will be blocked");
        }
        let signals = Signals::register()?;
        pins::ensure_bpffs()?;
        let lock = pins::Lock::take()?;
        let tier = attach::choose(opts.tier)?;

        let mut open = MinerguardSkelBuilder::default()
            .open(storage)
            .context("opening minerguard's BPF object")?;
        // For developers: the verifier's log level for every program (4: statistics only),
        // printed with RUST_LOG=libbpf=debug even when the load succeeds.
        if let Ok(level) = std::env::var("MINERGUARD_VERIFIER_LOG") {
            for mut prog in open.open_object_mut().progs_mut() {
                prog.set_log_level(level.parse().unwrap_or(4));
            }
        }
        let optional = Optional::detect(tier);
        attach::select(&mut open, tier, optional);
        if !optional.drift && policy.drift.mode != DriftMode::Off {
            warn!(
                drift = policy.drift.mode.as_str(),
                tier = %tier,
                "drift cannot be checked here: it needs the lsm tier and overlayfs's types, \
                 from the overlay module's BTF (/sys/kernel/btf/overlay: Linux 5.11 or newer, \
                 overlay loaded before the agent starts); every other layer is enforced"
            );
        }
        if !tier.denies_calls() && policy.mmap {
            warn!(
                tier = %tier,
                "files mapped executable (the dynamic loader's launches, preloaded libraries) \
                 are not checked on the kill tier: that needs the lsm or fmod_ret tier"
            );
        }
        let tuning = [policy.behavior.msr, policy.behavior.hugepages];
        if !tier.denies_calls() && tuning.iter().any(|m| *m != Some(LayerMode::Off)) {
            warn!(
                tier = %tier,
                "MSR writes and huge-page reservations are not checked on the kill tier (an \
                 open cannot be killed before it returns): that needs the lsm or fmod_ret tier"
            );
        }
        warn_unresolved(&missing);
        if !optional.hashes && !policy.sha256.is_empty() {
            warn!(
                sha256 = policy.sha256.len(),
                tier = %tier,
                "files cannot be hashed here (it needs the lsm tier on Linux 5.18 or newer \
                 with IMA built in): the policy's sha256 list is not enforced; every other \
                 layer is"
            );
        }
        let adopted = pins::adopt(open.open_object_mut())?;
        let mut skel = attach::load(open, tier)?;
        let config = config_for(&policy, &lists, attach::host_mnt_ns(&skel)?, tier, optional);
        let mode = opts.mode.unwrap_or(policy.mode);
        // What a previous agent left in the adopted maps (events it could not read queue too).
        let previous = if adopted {
            Some(Previous {
                lists: list_maps(&skel.maps).read(),
                config: maps::config(&skel.maps.mg_config)?,
                mode: maps::mode(&skel.maps.mg_mode)?,
            })
        } else {
            None
        };
        let enforced = Self::enforce(
            &mut skel,
            &opts,
            previous.as_ref(),
            (&lists, config, mode),
            (tier, optional),
        );
        let links = match enforced {
            Ok(links) => links,
            Err(e) => {
                if let Some(previous) = &previous {
                    restore(&skel.maps, previous, (&lists, config));
                }
                return Err(e);
            }
        };
        if adopted {
            info!("adopted the pinned program's maps: events queued while no agent ran follow");
        }
        drop_capabilities();

        let lost = maps::stats(&skel.maps.mg_stats)?.lost;
        if lost > 0 {
            warn!(
                lost_total = lost,
                "events were lost since the program was loaded"
            );
        }
        info!(
            tier = %tier,
            mode = %mode,
            scope = config.scope.as_str(),
            names = lists.patterns(),
            memfd_block = config.memfd_block,
            identity = config.identity,
            mmap = config.mmap,
            argv = config.argv,
            sha256 = if optional.hashes { lists.hashes.len().to_string() } else { "unavailable".to_string() },
            drift = if optional.drift { policy.drift.mode.as_str() } else { "unavailable" },
            randomx = layer_state(policy.behavior.randomx, mode, true),
            msr = layer_state(policy.behavior.msr, mode, tier.denies_calls()),
            hugepages = layer_state(policy.behavior.hugepages, mode, tier.denies_calls()),
            policy = %opts.policy.display(),
            "minerguard ready"
        );
        notify_ready();
        Ok(Agent {
            opts,
            signals,
            skel,
            _links: links,
            applied: Applied {
                lists,
                config,
                mode,
                lost,
            },
            _lock: lock,
        })
    }

    /// Applies the policy, attaches, proves and pins: the part of `start` that changes the
    /// kernel's state.
    /// `previous`: what adopted maps held (`None`: fresh maps).
    fn enforce(
        skel: &mut MinerguardSkel<'obj>,
        opts: &Options,
        previous: Option<&Previous>,
        policy: (&Lists, Config, Mode),
        (tier, optional): (Tier, Optional),
    ) -> Result<Links> {
        let (lists, config, mode) = policy;
        let fresh = Lists::default();
        let from = previous.map_or((&fresh, config), |p| (&p.lists, p.config));
        move_policy(&skel.maps, from, (lists, config, mode))?;
        if opts.fail_after_policy {
            bail!("failing the start after applying the policy, as --fail-after-policy asks");
        }
        let mut links = attach::attach(skel, tier, optional)?;
        attach::probe(&skel.maps, config, tier)?;
        pins::install(skel, &mut links, previous.is_some())?;
        Ok(links)
    }

    /// The event loop, until SIGTERM or SIGINT. It only moves records from the ring buffer to
    /// the output queue: writing them is the output thread's (`delivery`), so a stalled
    /// stdout never delays a reload, a stop or the watchdog.
    pub fn run(&mut self) -> Result<()> {
        // Under journald, events go to it natively, marked as events (journal.rs).
        let out: Box<dyn std::io::Write + Send> = if journal::connected(std::io::stdout()) {
            info!("stdout is the journal: events are sent to journald with MINERGUARD_KIND=event");
            Box::new(journal::Events::new()?)
        } else {
            Box::new(delivery::RawStdout)
        };
        let (sender, mut delivery) =
            delivery::start(out, delivery::LIMITS, delivery::STATE_PATH.into())?;
        let tally = Arc::new(Tally::default());
        delivery.publish_events(Arc::clone(&tally));
        // Its own queue and thread: a receiver that is down or slow holds up neither this
        // loop nor stdout.
        let hook = match &self.opts.webhook {
            Some(url) => {
                let (hook, webhook) = webhook::start(url.clone(), webhook::LIMITS)?;
                delivery.watch_webhook(webhook.counters());
                info!(
                    webhook = url.shown(),
                    "events are also POSTed to the webhook"
                );
                Some((hook, webhook))
            }
            None => None,
        };
        delivery.report();
        let pods = self.start_cri(&delivery);
        if let Some(addr) = self.opts.metrics_addr {
            metrics::serve(
                addr,
                self.opts.metrics_allow_remote,
                delivery.counters(),
                hook.as_ref().map(|(_, w)| w.counters()),
                Arc::clone(&tally),
            );
        }
        // The ring buffer borrows its map for as long as it lives: an owned handle on the
        // events map (not the skeleton's) leaves `self` free for reloads meanwhile.
        let events = MapHandle::try_from(&self.skel.maps.mg_events)
            .context("opening the event ring buffer")?;
        // Shared by the ring buffer's callback and this loop (storms' summaries), on this
        // thread only: the callback runs inside `poll`, never while the loop holds it.
        let encoder = RefCell::new(
            output::Encoder::new(self.opts.format, self.opts.storm_window)
                .counting(tally)
                .with_pods(pods),
        );
        // Records read, so the loop knows whether a wake brought events.
        let read = Cell::new(0u64);
        let read_count = &read;
        let mut ring = RingBufferBuilder::new();
        let queue = &sender;
        let hook_queue = hook.as_ref().map(|(h, _)| h);
        let callback_encoder = &encoder;
        ring.add(&events, move |data: &[u8]| {
            read_count.set(read_count.get().wrapping_add(1));
            // Whatever the record holds, the callback returns 0: an error or a panic here
            // would stop the consumer on this record, and every restart would meet it again.
            let Ok(mut encoder) = callback_encoder.try_borrow_mut() else {
                queue.skipped(&anyhow::anyhow!("the encoder is busy (a bug: re-entered)"));
                return 0;
            };
            match encoder.next(data, &enrich::Clocks::now(), Instant::now()) {
                Ok(Some(line)) => deliver(line, queue, hook_queue),
                Ok(None) => {}
                Err(err) => queue.skipped(&err),
            }
            0
        })
        .context("setting up the event ring buffer")?;
        let ring = ring.build().context("setting up the event ring buffer")?;

        // One wait for both the ring buffer (its own epoll fd) and the signals' wake-up.
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .context("creating the event loop's epoll instance")?;
        // SAFETY: the fd is the ring buffer's, open for as long as `ring` lives; it is only
        // borrowed for this registration (epoll keeps its own reference to the file).
        let ring_fd = unsafe { BorrowedFd::borrow_raw(ring.epoll_fd()) };
        epoll
            .add(ring_fd, EpollEvent::new(EpollFlags::EPOLLIN, 0))
            .context("waiting on the event ring buffer")?;
        epoll
            .add(&self.signals.wake, EpollEvent::new(EpollFlags::EPOLLIN, 1))
            .context("waiting on the signals' wake-up")?;

        let mut watchdog = Watchdog::from_env();
        let mut busy_until: Option<Instant> = None;
        let mut ready = [EpollEvent::empty(); 2];
        while !self.signals.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wake_at = [
                busy_until.map(|until| until.min(now + TICK)),
                encoder.try_borrow().ok().and_then(|e| e.next_due()),
                watchdog.next(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = match wake_at {
                None => PollTimeout::NONE,
                // Rounded up: waking a little early would only spin until the moment.
                Some(at) => PollTimeout::try_from(
                    at.saturating_duration_since(now) + Duration::from_millis(1),
                )
                .unwrap_or(PollTimeout::MAX),
            };
            match epoll.wait(&mut ready, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("waiting for events"),
            }
            let before = read.get();
            match ring.consume() {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading events from the ring buffer"),
            }
            let now = Instant::now();
            if self.signals.drain() || read.get() != before {
                busy_until = Some(now + GRACE);
            } else if busy_until.is_some_and(|until| until <= now) {
                busy_until = None;
            }
            summaries(&encoder, &sender, hook_queue, false);
            if self.signals.reload.swap(false, Ordering::Relaxed) {
                self.reload();
            }
            self.watch_mode();
            self.report_lost();
            delivery.report();
            watchdog.ping();
        }
        // Drain what was queued before the stop, storms' counts included. The pinned link
        // keeps the node protected.
        let _ = ring.consume();
        drop(ring);
        summaries(&encoder, &sender, hook_queue, true);
        if let Some((hook, webhook)) = hook {
            webhook.finish(STOP_DRAIN, hook);
        }
        delivery.finish(STOP_DRAIN, sender);
        Ok(())
    }

    /// The CRI client for pod metadata. Its misses are published with the delivery counters.
    fn start_cri(&self, delivery: &delivery::Delivery) -> Option<cri::Cri> {
        let socket = cri::Socket(self.opts.cri_socket.clone());
        match cri::Cri::start(socket.clone()) {
            Ok(cri) => {
                info!(socket = %socket, "pod metadata from the container runtime's CRI socket");
                delivery.counters().set_pods(cri.clone());
                Some(cri)
            }
            Err(e) => {
                warn!(error = format!("{e:#}"), "events carry no pod metadata");
                None
            }
        }
    }

    /// Leaves the pinned program enforcing and marks the agent gone in the config entry.
    pub fn stop(self) {
        let config = Config {
            agent_pid: None,
            ..self.applied.config
        };
        if let Err(e) = maps::write_config(&self.skel.maps.mg_config, config) {
            warn!(
                error = format!("{e:#}"),
                "cannot clear the agent pid in the kernel config map"
            );
        }
        info!("stopping; enforcement stays in place (`minerguard disable` removes it)");
    }
}

/// Queues a line for stdout and, if there is one, the webhook.
fn deliver(line: Vec<u8>, sender: &delivery::Sender, hook: Option<&webhook::Sender>) {
    // The webhook's copy first: queuing it never waits, stdout's may.
    if let Some(hook) = hook {
        hook.send(&line);
    }
    sender.send(line)
}

/// Queues the lines of storms' summaries that are due (all of them when `stopping`).
fn summaries(
    encoder: &RefCell<output::Encoder>,
    sender: &delivery::Sender,
    hook: Option<&webhook::Sender>,
    stopping: bool,
) {
    let Ok(mut encoder) = encoder.try_borrow_mut() else {
        return;
    };
    for line in encoder.summaries(&enrich::Clocks::now(), Instant::now(), stopping) {
        match line {
            Ok(line) => deliver(line, sender, hook),
            Err(err) => sender.skipped(&err),
        }
    }
}

/// Puts back what adopted maps held before a failed start changed them.
fn restore(maps: &MinerguardMaps<'_>, previous: &Previous, applied: (&Lists, Config)) {
    // The whole previous entry goes back, the owning agent's pid included.
    match move_policy(
        maps,
        applied,
        (&previous.lists, previous.config, previous.mode),
    ) {
        Ok(()) => info!("the failed start left the pinned policy as it found it"),
        Err(e) => error!(
            error = format!("{e:#}"),
            "cannot put back the pinned policy after a failed start: run `minerguard run` again"
        ),
    }
}

/// After start, only map reads and writes remain (reloads, mode, counters): CAP_BPF. The
/// others (CAP_SYS_ADMIN, CAP_PERFMON) are dropped for the agent's lifetime, so a flaw in
/// its event or metrics path cannot load or attach programs.
fn drop_capabilities() {
    use caps::{CapSet, Capability, CapsHashSet};
    let keep: CapsHashSet = [Capability::CAP_BPF].into_iter().collect();
    let result = caps::set(None, CapSet::Effective, &keep)
        .and_then(|()| caps::set(None, CapSet::Permitted, &keep))
        .and_then(|()| caps::clear(None, CapSet::Inheritable));
    if let Err(e) = result {
        warn!(error = %e, "cannot drop capabilities after start; keeping them");
    }
}

fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "cannot notify systemd that the agent is ready");
        }
    }
}

impl Agent<'_> {
    /// Applies the policy file again (what SIGHUP does). An invalid policy changes nothing.
    pub fn reload(&mut self) {
        let (opts, applied, maps) = (&self.opts, &mut self.applied, &self.skel.maps);
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
        let (new, missing) = Lists::from_policy(&policy);
        warn_unresolved(&missing);
        let optional = Optional {
            hashes: self._links.hash.is_some(),
            drift: self._links.drift.is_some(),
        };
        let config = config_for(
            &policy,
            &new,
            applied.config.host_mnt_ns,
            self._links.tier,
            optional,
        );
        let mode = opts.mode.unwrap_or(policy.mode);
        if let Err(e) = move_policy(maps, (&applied.lists, applied.config), (&new, config, mode)) {
            // A failure before the removals leaves every old entry in the maps (some new
            // ones may be there too). Re-read what the maps hold, so the next reload moves
            // from the truth.
            error!(
                error = format!("{e:#}"),
                "policy reload failed while updating the kernel; the running policy stays in force"
            );
            applied.lists = list_maps(maps).read();
            return;
        }
        let added = new.names.difference(&applied.lists.names).count()
            + new.prefixes.difference(&applied.lists.prefixes).count();
        let removed = applied.lists.names.difference(&new.names).count()
            + applied.lists.prefixes.difference(&new.prefixes).count();
        applied.lists = new;
        applied.config = config;
        applied.mode = mode;
        info!(
            names = applied.lists.patterns(),
            added,
            removed,
            mode = %applied.mode,
            scope = applied.config.scope.as_str(),
            memfd_block = applied.config.memfd_block,
            identity = applied.config.identity,
            mmap = applied.config.mmap,
            argv = applied.config.argv,
            "policy reloaded"
        );
    }

    /// Logs a mode flipped from outside (`minerguard mode`), so the log tells what is in force.
    fn watch_mode(&mut self) {
        let applied = &mut self.applied;
        match maps::mode(&self.skel.maps.mg_mode) {
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

    /// Makes every lost event visible in the log: losses happen while events flow, so the
    /// wakes that read them (and the GRACE ticks after) see the count.
    fn report_lost(&mut self) {
        let applied = &mut self.applied;
        match maps::stats(&self.skel.maps.mg_stats) {
            Ok(s) if s.lost > applied.lost => {
                warn!(
                    lost = s.lost - applied.lost,
                    lost_total = s.lost,
                    "events lost: the ring buffer was full (the execs were still enforced)"
                );
                applied.lost = s.lost;
            }
            Ok(_) => {}
            Err(e) => warn!(error = format!("{e:#}"), "cannot read the kernel counters"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KEY=value` from the shipped unit.
    fn unit(key: &str) -> String {
        let text = include_str!("../systemd/minerguard.service");
        let prefix = format!("{key}=");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{key}= missing from the unit"))
            .to_string()
    }

    fn seconds(value: &str) -> u64 {
        value.strip_suffix('s').unwrap().parse().unwrap()
    }

    #[test]
    fn the_unit_arms_a_watchdog_the_loop_feeds() {
        let timeout = Duration::from_secs(seconds(&unit("WatchdogSec")));
        // The loop pings every half timeout: its only periodic wake-up, so not too often.
        assert!(timeout >= Duration::from_secs(30), "{timeout:?}");
        assert!(
            timeout <= Duration::from_secs(120),
            "a wedge goes unnoticed too long"
        );
    }

    #[test]
    fn the_unit_bounds_tasks_and_memory_with_margin() {
        // main, output, log, webhook and its DNS lookup, cri, cri-watch, the metrics accept
        // thread and workers; the probe and `kill`.
        let threads = 5 + 1 + crate::metrics::BOUNDS.workers;
        let tasks: usize = unit("TasksMax").parse().unwrap();
        assert!(tasks >= 3 * (threads + 2), "TasksMax={tasks}");
        let mib: u64 = unit("MemoryMax")
            .strip_suffix('M')
            .unwrap()
            .parse()
            .unwrap();
        // Measured: 10 MiB resident, ~30 MiB for the largest policy, ~10 MiB of maps.
        assert!((128..=1024).contains(&mib), "MemoryMax={mib}M");
    }

    #[test]
    fn journald_never_drops_what_the_agent_sends() {
        let interval = seconds(&unit("LogRateLimitIntervalSec"));
        let burst: u64 = unit("LogRateLimitBurst").parse().unwrap();
        let events =
            u64::from(delivery::LINES_BURST) + interval * u64::from(delivery::LINES_PER_SEC);
        assert!(burst >= events + events / 10, "{burst} < {events} + 10%");
    }

    #[test]
    fn the_unit_provides_the_published_state_directory() {
        let dir = unit("RuntimeDirectory");
        assert_eq!(
            std::path::Path::new(delivery::STATE_PATH).parent(),
            Some(std::path::Path::new("/run").join(dir).as_path())
        );
    }
}
