//! The one-shot commands, which act on the pinned state of a running (or gone) agent:
//! `status`, `mode`, `disable`, and `check`, which touches no kernel state at all.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

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
    Ok(())
}

fn print_status(s: &Snapshot) {
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
}

/// Exit status 3 when nothing is enforced, as `systemctl status` does for a stopped unit.
pub fn status(json: bool) -> Result<ExitCode> {
    let snapshot = pins::snapshot()?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&snapshot).context("encoding the status")?
        );
    } else {
        print_status(&snapshot);
    }
    Ok(if snapshot.enforcing {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
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
