//! The one-shot commands, which act on the pinned state of a running (or gone) agent:
//! `status`, `mode`, `disable`, and `check`, which touches no kernel state at all.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

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
    let before = maps::set_mode(pinned()?.config_map(), mode)?;
    println!("mode: {} -> {mode}", before.mode);
    Ok(())
}

/// What `status` shows: the pins' snapshot, and what the running agent publishes.
#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    snapshot: Snapshot,
    /// Events the running agent read but could not write to stdout; `None` without an agent
    /// (or before it published).
    events_undelivered: Option<u64>,
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
    println!("mode:        {mode}");
    println!("names:       {}", s.names);
    match s.agent_pid {
        Some(pid) => println!("agent:       running (pid {pid})"),
        None => println!("agent:       not running (the pinned program enforces on its own; events queue until an agent runs)"),
    }
    println!(
        "counters:    {} checked, {} blocked, {} audited, {} events lost",
        counters.checked, counters.blocked, counters.audited, counters.lost
    );
    if let Some(undelivered) = status.events_undelivered {
        println!("undelivered: {undelivered} events read by the agent but not written to stdout");
    }
}

/// Exit status 3 when nothing is enforced, as `systemctl status` does for a stopped unit.
pub fn status(json: bool) -> Result<ExitCode> {
    let snapshot = pins::snapshot()?;
    let events_undelivered = snapshot
        .agent_pid
        .and_then(|pid| delivery::published(Path::new(delivery::STATE_PATH), pid));
    let status = Status {
        snapshot,
        events_undelivered,
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
        ExitCode::from(3)
    })
}

pub fn disable() -> Result<()> {
    if let Some(pid) = pins::Pinned::open()?
        .map(|p| p.agent_pid())
        .transpose()?
        .flatten()
    {
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
    if pins::remove()? {
        println!("enforcement removed: execs are no longer checked");
    } else {
        println!("nothing to remove: minerguard was not enforcing");
    }
    Ok(())
}

/// Validates a policy file; one `file:line:column: problem` line each, as compilers print them.
pub fn check(path: &Path) -> ExitCode {
    match Policy::load(path) {
        Ok(p) => {
            println!(
                "{}: valid ({} names, mode {})",
                path.display(),
                p.patterns(),
                p.mode
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
