//! minerguard: blocks cryptominer executions in the kernel with a BPF-LSM program.
//!
//! The data path, one module each: `policy` (policy.toml) -> `maps` (kernel maps) ->
//! `bpf` (the LSM hook, in C) -> ring buffer -> `event` (decoding) -> `enrich` -> `output`.
//! `lsm` loads, attaches and proves the hook; `daemon` runs the whole.

mod bpf;
mod daemon;
mod enrich;
mod event;
mod lsm;
mod maps;
mod output;
mod policy;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use libbpf_rs::{MapCore, MapHandle};

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
        /// For tests: skip the active-LSM list and let the functional probe decide.
        #[arg(long, hide = true)]
        skip_lsm_list_check: bool,
    },
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

fn set_mode(mode: Mode) -> Result<()> {
    let config = MapHandle::from_pinned_path(maps::CONFIG_PIN).with_context(|| {
        format!(
            "no running minerguard agent found (no pinned config map at {})",
            maps::CONFIG_PIN
        )
    })?;
    let before = maps::mode(&config as &dyn MapCore)?;
    maps::set_mode(&config, mode)?;
    println!("mode: {before} -> {mode}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            policy,
            mode,
            log_format,
            skip_lsm_list_check,
        } => {
            init_logging(log_format);
            daemon::run(daemon::Options {
                policy,
                mode,
                skip_lsm_list_check,
            })
        }
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
