//! The one-shot commands, which act on the pinned state of a running (or gone) agent:
//! `status`, `mode`, `disable`, and `check`, which touches no kernel state at all.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::contract::{Tier, MAX_IDENTITIES};
use crate::delivery;
use crate::maps;
use crate::pins::{self, Snapshot};
use crate::policy::{Mode, Policy};

fn pinned() -> Result<pins::Pinned> {
    pins::Pinned::open()?.with_context(|| {
        format!(
            "minerguard is not enforcing: nothing is pinned at {} (start it with `minerguard run` or `systemctl start minerguard`)",
            pins::config_path().display()
        )
    })
}

pub fn set_mode(mode: Mode) -> Result<()> {
    let pinned = pinned()?;
    let before = maps::mode(pinned.mode_map())?;
    maps::write_mode(pinned.mode_map(), mode)?;
    println!("mode: {before} -> {mode}");
    // The running agent then logs the change at once (it sleeps until an event otherwise).
    if let Ok(Some(pid)) = pinned.agent_pid() {
        notify_agent(pid);
    }
    Ok(())
}

/// SIGUSR1 to the agent, only if it runs this very file: an agent of another build (the one
/// an upgrade just replaced) may not handle it, and SIGUSR1's default action ends a process.
fn notify_agent(pid: u32) {
    use std::os::unix::fs::MetadataExt;
    let file = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    let mine = file("/proc/self/exe");
    if mine.is_some() && mine == file(&format!("/proc/{pid}/exe")) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
}

/// What `status` shows: the pins' snapshot, and what the running agent publishes.
#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    snapshot: Snapshot,
    /// Events the running agent read but could not write to stdout; `None` without an agent
    /// (or before it published).
    events_undelivered: Option<u64>,
    /// Events the running agent could not deliver to its `--webhook-url` (queue full, every
    /// try failed, refused); `None` without an agent or without a webhook.
    webhook_undelivered: Option<u64>,
    /// The running agent's version and commit (`minerguard_build_info`); `None` as above, or
    /// from an agent that did not publish them.
    agent_version: Option<String>,
    agent_commit: Option<String>,
    /// Events the running agent read since it started, by action then matched_on
    /// (`minerguard_events_total`); `None` as above.
    events: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    /// Container events the running agent wrote without pod metadata (the container runtime
    /// was down, slow, or did not know the container).
    pod_metadata_misses: Option<u64>,
}

fn print_status(status: &Status) {
    let s = &status.snapshot;
    let (Some(mode), Some(counters)) = (s.mode, s.counters) else {
        println!(
            "enforcement: inactive (nothing pinned at {})",
            pins::PIN_DIR
        );
        return;
    };
    let active = if s.enforcing {
        "active"
    } else {
        "inactive (the program is not attached)"
    };
    println!("enforcement: {active}");
    match s.tier {
        Some(tier) => println!("tier:        {tier} ({})", tier_meaning(tier)),
        None => println!("tier:        unknown"),
    }
    println!("mode:        {mode}");
    println!("names:       {}", s.names);
    println!(
        "remembered:  {} files blocked by name, denied under any name (at most {MAX_IDENTITIES})",
        s.remembered
    );
    match s.agent_pid {
        Some(pid) => match (&status.agent_version, &status.agent_commit) {
            (Some(version), Some(commit)) => {
                println!("agent:       running (pid {pid}), minerguard {version} (commit {commit})")
            }
            _ => println!("agent:       running (pid {pid})"),
        },
        None => println!("agent:       not running (the pinned program enforces on its own; events queue until an agent runs)"),
    }
    println!(
        "counters:    {} checked, {} blocked, {} killed, {} audited, {} events lost",
        counters.checked, counters.blocked, counters.killed, counters.audited, counters.lost
    );
    if let Some(events) = &status.events {
        let by_action: Vec<String> = events
            .iter()
            .map(|(action, by_match)| {
                let total: u64 = by_match.values().sum();
                let parts: Vec<String> = by_match.iter().map(|(m, n)| format!("{m} {n}")).collect();
                format!("{total} {action} ({})", parts.join(", "))
            })
            .collect();
        let text = if by_action.is_empty() {
            "none".to_string()
        } else {
            by_action.join("; ")
        };
        println!("events:      {text} since the agent started");
    }
    if let Some(undelivered) = status.events_undelivered {
        println!("undelivered: {undelivered} events read by the agent but not written to stdout");
    }
    if let Some(undelivered) = status.webhook_undelivered {
        println!("webhook:     {undelivered} events not delivered to the webhook");
    }
    if let Some(misses) = status.pod_metadata_misses {
        println!("pod misses:  {misses} container events without pod metadata (the runtime was down, slow, or did not know the container)");
    }
}

/// What a tier does to a listed exec, for `status`.
fn tier_meaning(tier: Tier) -> &'static str {
    match tier {
        Tier::Lsm => "BPF LSM: the exec fails with EPERM",
        Tier::FmodRet => "fmod_ret on security_bprm_check: the exec fails with EPERM",
        Tier::Kill => "sched_process_exec: the process is killed before its first instruction",
    }
}

/// `status`'s exit status when nothing is enforced, as `systemctl status` does for a stopped
/// unit.
const INACTIVE: u8 = 3;
/// `status`'s exit status when this user may not read the pins: not an answer about
/// enforcement, so neither 0 nor 3.
const NO_PERMISSION: u8 = 4;

/// For tests only (tests/cli.rs): the directory `status` checks it may read before it reads
/// the pins, instead of the pin directory. Nothing else uses it, and it can only make
/// `status` report less: it is never where pins are read from.
const PROBE_DIR_ENV: &str = "MINERGUARD_TEST_STATUS_PROBE_DIR";

/// Whether `e` says this user may not read minerguard's state: EACCES or EPERM anywhere in
/// its causes, from the filesystem (the pin directory is root's, mode 0700 under systemd) or
/// from the bpf() syscall (refused to unprivileged users on most distributions).
fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
            || cause
                .downcast_ref::<libbpf_rs::Error>()
                .is_some_and(|e| e.kind() == libbpf_rs::ErrorKind::PermissionDenied)
    })
}

/// Checks that the state under `dir` can be looked at: `Path::exists` says "absent" for a
/// path it may not see, and `status` then reported a running agent as inactive to any
/// non-root user.
fn probe(dir: &Path) -> Result<()> {
    let config = dir.join(
        pins::config_path()
            .strip_prefix(pins::PIN_DIR)
            .unwrap_or(Path::new("")),
    );
    match fs::metadata(&config) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", config.display())),
    }
}

/// The snapshot, or the exit status that stands for it when it cannot be had.
fn snapshot_or_exit(probe_dir: &Path) -> Result<std::result::Result<Snapshot, ExitCode>> {
    decide(probe(probe_dir).and_then(|()| pins::snapshot()))
}

/// A snapshot that could not be read for lack of permission becomes exit status 4, with a
/// message saying so; any other error stays an error (exit 1).
fn decide(read: Result<Snapshot>) -> Result<std::result::Result<Snapshot, ExitCode>> {
    match read {
        Ok(s) => Ok(Ok(s)),
        Err(e) if is_permission_denied(&e) => {
            eprintln!(
                "minerguard: permission denied reading minerguard's state ({e:#}): run `minerguard status` as root"
            );
            Ok(Err(ExitCode::from(NO_PERMISSION)))
        }
        Err(e) => Err(e),
    }
}

/// Exit status 0 when enforcing, 3 when nothing is enforced, 4 without permission to tell.
pub fn status(json: bool) -> Result<ExitCode> {
    let probe_dir =
        std::env::var_os(PROBE_DIR_ENV).map_or(PathBuf::from(pins::PIN_DIR), PathBuf::from);
    let snapshot = match snapshot_or_exit(&probe_dir)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let published = snapshot
        .agent_pid
        .and_then(|pid| delivery::published(Path::new(delivery::STATE_PATH), pid));
    let status = Status {
        snapshot,
        events_undelivered: published.as_ref().map(|p| p.events_undelivered),
        webhook_undelivered: published.as_ref().and_then(|p| p.webhook_undelivered),
        // An older agent's file has no build: say nothing rather than "".
        agent_version: published
            .as_ref()
            .map(|p| p.version.clone())
            .filter(|v| !v.is_empty()),
        agent_commit: published
            .as_ref()
            .map(|p| p.commit.clone())
            .filter(|c| !c.is_empty()),
        events: published.as_ref().map(|p| p.events.clone()),
        pod_metadata_misses: published.as_ref().map(|p| p.pod_metadata_misses),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&status).context("encoding the status")?
        );
    } else {
        print_status(&status);
    }
    Ok(if status.snapshot.enforcing {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INACTIVE)
    })
}

/// The running agent: the lock's holder, or the pid the pinned config records.
fn running_agent() -> Result<Option<u32>> {
    if let Some(pid) = pins::Lock::holder()?.filter(|&p| pins::is_agent(p)) {
        return Ok(Some(pid));
    }
    // Incomplete pins must not keep `disable` from removing them.
    Ok(pins::Pinned::open()
        .ok()
        .flatten()
        .and_then(|p| p.agent_pid().ok().flatten()))
}

pub fn disable() -> Result<()> {
    if let Some(pid) = running_agent()? {
        // The agent holds the link open: it must be gone for the link to go.
        let pid = Pid::from_raw(pid as i32);
        kill(pid, Signal::SIGTERM).with_context(|| format!("stopping the agent (pid {pid})"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while pins::is_agent(pid.as_raw() as u32) {
            if Instant::now() > deadline {
                bail!("the agent (pid {pid}) did not stop within 20 s; nothing was removed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("stopped the agent (pid {pid})");
    }
    // Held while the pins go: no agent can start and adopt them half removed.
    let _lock = pins::Lock::wait(Duration::from_secs(20))?;
    if pins::remove()? {
        println!("enforcement removed: execs are no longer checked");
    } else {
        println!("nothing to remove: minerguard was not enforcing");
    }
    Ok(())
}

/// Validates a policy file; one `file:line:column: problem` line each, as compilers print them.
/// `check [POLICY] [--config PATH]`: with POLICY alone, that policy only. Otherwise what
/// `run` would use: the settings file (PATH, else the default one when it exists), then the
/// policy (POLICY, else the one the settings name, else the default).
pub fn check(path: Option<&Path>, config: Option<&Path>) -> ExitCode {
    let mut named = None;
    if path.is_none() || config.is_some() {
        match crate::config::load(config) {
            Ok(Some((file, given))) => {
                named = given.policy;
                println!("{}: valid", file.display());
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let path = match path {
        Some(p) => p.to_owned(),
        None => named.unwrap_or_else(|| crate::config::DEFAULT_POLICY.into()),
    };
    let path = path.as_path();
    match Policy::load(path) {
        Ok(p) => {
            println!(
                "{}: valid ({} names, mode {})",
                path.display(),
                p.patterns(),
                p.mode
            );
            for dropin in crate::policy::dropins(path).unwrap_or_default() {
                println!("  with {}", dropin.display());
            }
            // Valid, but worth knowing before it is deployed here.
            for problem in crate::maps::resolve_tuning_allow(&p.behavior).1 {
                eprintln!("warning: [behavior] {problem}: on this node it allows nothing");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `sha256 = [...]` for the files, each digest with its path as a comment; a file that
/// cannot be read is an error on stderr (exit 1), the others are still printed.
pub fn hash(paths: &[PathBuf]) -> ExitCode {
    use sha2::{Digest, Sha256};
    let mut ok = true;
    println!("sha256 = [");
    for path in paths {
        let digest = std::fs::File::open(path).and_then(|mut f| {
            let mut hasher = Sha256::new();
            std::io::copy(&mut f, &mut hasher)?;
            Ok(hasher.finalize())
        });
        match digest {
            Ok(d) => println!("  \"{}\",  # {}", maps::hex(&d), path.display()),
            Err(e) => {
                eprintln!("minerguard: {}: {e}", path.display());
                ok = false;
            }
        }
    }
    println!("]");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_error(errno: nix::errno::Errno) -> anyhow::Error {
        anyhow::Error::from(io::Error::from_raw_os_error(errno as i32)).context("opening a pin")
    }

    #[test]
    fn eacces_and_eperm_mean_no_permission_other_errors_do_not() {
        use nix::errno::Errno;
        assert!(is_permission_denied(&os_error(Errno::EACCES)));
        assert!(is_permission_denied(&os_error(Errno::EPERM)));
        let bpf = anyhow::Error::from(libbpf_rs::Error::from(io::Error::from_raw_os_error(
            Errno::EPERM as i32,
        )))
        .context("opening /sys/fs/bpf/minerguard/maps-v1/config");
        assert!(is_permission_denied(&bpf));
        assert!(!is_permission_denied(&os_error(Errno::ENOENT)));
        assert!(!is_permission_denied(&os_error(Errno::EIO)));
        assert!(!is_permission_denied(&anyhow::anyhow!(
            "unknown mode 7 in the kernel"
        )));
    }

    #[test]
    fn an_absent_state_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(&dir.path().join("minerguard")).is_ok());
    }

    #[test]
    fn no_permission_is_exit_4_and_other_errors_stay_errors() {
        use nix::errno::Errno;
        for errno in [Errno::EACCES, Errno::EPERM] {
            assert_eq!(
                decide(Err(os_error(errno))).unwrap().unwrap_err(),
                ExitCode::from(NO_PERMISSION)
            );
        }
        assert!(decide(Err(os_error(Errno::EIO))).is_err());
        let unpinned = decide(Ok(Snapshot::unpinned())).unwrap().unwrap();
        assert!(!unpinned.enforcing);
    }

    /// Root searches any directory, so the probe's own EACCES is seen only as another user:
    /// tests/cli.rs runs `status` as nobody for that. Here: a path that is not a directory
    /// (ENOTDIR) must stay an error, neither "inactive" nor "no permission".
    #[test]
    fn a_state_that_cannot_be_looked_at_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("minerguard");
        fs::write(&file, "").unwrap();
        let e = probe(&file).unwrap_err();
        assert!(!is_permission_denied(&e), "{e:#}");
        assert!(snapshot_or_exit(&file).is_err());
    }
}

/// What `minerguard version` reports.
#[derive(serde::Serialize)]
struct Version {
    version: &'static str,
    commit: &'static str,
    /// The kernel contract (`contract::ABI`): agents of the same contract adopt each other's
    /// pinned maps; another one replaces them.
    contract: u32,
    libbpf: String,
}

/// `minerguard version [--json]`.
pub fn version(json: bool) -> Result<()> {
    // SAFETY: both return a constant of the linked libbpf; no arguments, no state.
    let (major, minor) = unsafe {
        (
            libbpf_sys::libbpf_major_version(),
            libbpf_sys::libbpf_minor_version(),
        )
    };
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("MINERGUARD_COMMIT"),
        contract: crate::contract::ABI,
        libbpf: format!("{major}.{minor}"),
    };
    if json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!(
            "minerguard {} (commit {}, contract {}, libbpf {})",
            v.version, v.commit, v.contract, v.libbpf
        );
    }
    Ok(())
}
