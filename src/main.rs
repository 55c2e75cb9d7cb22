//! minerguard: blocks cryptominer executions in the kernel with a BPF-LSM program.
//!
//! The data path, one module each: `policy` (policy.toml) -> `maps` (kernel maps) ->
//! `bpf` (the LSM hook, in C) -> ring buffer -> `event` (decoding) -> `enrich` -> `output`.
//! `lsm` loads, attaches and proves the hook; `pins` keeps it in force across restarts;
//! `daemon` runs the whole; `metrics` serves the counters.

mod bpf;
mod daemon;
mod enrich;
mod event;
mod lsm;
mod maps;
mod metrics;
mod output;
mod pins;
mod policy;

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::policy::{Mode, Policy};

const DEFAULT_POLICY: &str = "/etc/minerguard/policy.toml";

#[derive(Parser)]
#[command(
    name = "minerguard",
    version,
    about = "Blocks cryptominers in the kernel, before their first instruction runs (BPF LSM)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the policy, attach the BPF-LSM program and report events as JSON lines on stdout.
    Run {
        #[arg(long, default_value = DEFAULT_POLICY)]
        policy: PathBuf,
        /// Overrides the policy's mode (at start and on every reload).
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// Format of the logs on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Serve Prometheus metrics at http://ADDR/metrics (loopback only, e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// For tests: skip the active-LSM list and let the functional probe decide.
        #[arg(long, hide = true)]
        skip_lsm_list_check: bool,
    },
    /// Show whether enforcement is active, the mode, the names and the kernel's counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop the agent if it runs and remove the pinned program: execs are no longer checked.
    Disable,
    /// Validate a policy file without touching the kernel.
    Check { path: PathBuf },
    /// Switch the running agent between audit and enforce; the next exec sees the new mode.
    Mode {
        #[arg(value_enum)]
        mode: Mode,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: the journal and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    // libbpf's messages (verifier logs among them) go to the debug log: every failure they
    // describe also ends in an error of ours that says what to do, and libbpf's own advice
    // (e.g. "try raising 'ulimit -l'") is often beside the point.
    libbpf_rs::set_print(Some((
        libbpf_rs::PrintLevel::Debug,
        |_, msg| tracing::debug!(target: "libbpf", "{}", msg.trim_end()),
    )));
}

fn pinned() -> Result<pins::Pinned> {
    pins::Pinned::open()?.with_context(|| {
        format!(
            "minerguard is not enforcing: nothing is pinned at {} (start it with `minerguard run` or `systemctl start minerguard`)",
            pins::config_path().display()
        )
    })
}

fn set_mode(mode: Mode) -> Result<()> {
    let before = maps::set_mode(pinned()?.config_map(), mode)?;
    println!("mode: {} -> {mode}", before.mode);
    Ok(())
}

/// Exit status 3 when nothing is enforced, as `systemctl status` does for a stopped unit.
fn status(json: bool) -> Result<ExitCode> {
    let snapshot = match pins::Pinned::open()? {
        Some(p) => Some(p.snapshot()?),
        None => None,
    };
    if json {
        let value = match &snapshot {
            None => {
                serde_json::json!({ "enforcing": false, "mode": null, "names": 0, "agent_pid": null, "counters": null })
            }
            Some(s) => serde_json::json!({
                "enforcing": s.enforcing,
                "mode": s.mode.as_str(),
                "names": s.names,
                "agent_pid": s.agent_pid,
                "counters": {
                    "checked": s.stats.checked,
                    "blocked": s.stats.blocked,
                    "audited": s.stats.audited,
                    "lost": s.stats.lost,
                },
            }),
        };
        println!("{value}");
    } else {
        match &snapshot {
            None => println!(
                "enforcement: inactive (nothing pinned at {})",
                pins::PIN_DIR
            ),
            Some(s) => {
                let active = if s.enforcing {
                    "active"
                } else {
                    "inactive (the program is not attached)"
                };
                println!("enforcement: {active}");
                println!("mode:        {}", s.mode);
                println!("names:       {}", s.names);
                match s.agent_pid {
                    Some(pid) => println!("agent:       running (pid {pid})"),
                    None => println!("agent:       not running (the pinned program enforces on its own; events queue until an agent runs)"),
                }
                println!(
                    "counters:    {} checked, {} blocked, {} audited, {} events lost",
                    s.stats.checked, s.stats.blocked, s.stats.audited, s.stats.lost
                );
            }
        }
    }
    Ok(match snapshot {
        Some(s) if s.enforcing => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    })
}

fn disable() -> Result<()> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            policy,
            mode,
            log_format,
            metrics_addr,
            skip_lsm_list_check,
        } => {
            init_logging(log_format);
            metrics_addr
                .map_or(Ok(()), metrics::check_addr)
                .and_then(|()| {
                    daemon::run(daemon::Options {
                        policy,
                        mode,
                        skip_lsm_list_check,
                        metrics_addr,
                    })
                })
        }
        Cmd::Status { json } => match status(json) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Cmd::Disable => disable(),
        Cmd::Check { path } => match Policy::load(&path) {
            Ok(p) => {
                println!(
                    "{}: valid ({} names, mode {})",
                    path.display(),
                    p.names.len(),
                    p.mode
                );
                Ok(())
            }
            Err(e) => {
                // One `file:line:column: problem` line each, as compilers print them.
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        Cmd::Mode { mode } => set_mode(mode),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minerguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
