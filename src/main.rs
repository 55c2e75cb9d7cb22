//! minerguard: blocks cryptominer executions in the kernel with a BPF-LSM program.
//! This file is the command line only; ARCHITECTURE.md maps the modules.

mod agent;
mod attach;
mod bpf;
mod commands;
mod contract;
mod cri;
mod delivery;
mod doctor;
mod enrich;
mod event;
mod falco;
mod intel;
mod maps;
mod metrics;
mod output;
mod pins;
mod policy;
mod ratelimit;

use std::io::IsTerminal;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

use crate::contract::Tier;
use crate::policy::Mode;

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
        mode: Option<ModeArg>,
        /// Format of the logs on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// Schema of the events on stdout: json (minerguard's) or falco (Falco's alert, as
        /// Falcosidekick and Falco's pipelines take it).
        #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
        output_format: OutputFormat,
        /// Serve Prometheus metrics at http://ADDR/metrics (loopback only, e.g. 127.0.0.1:9464).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// The container runtime's CRI socket, for the pod metadata of events (default: the
        /// first of containerd's /run/containerd/containerd.sock and CRI-O's
        /// /var/run/crio/crio.sock that exists).
        #[arg(long, value_name = "PATH")]
        cri_socket: Option<PathBuf>,
        /// How to enforce: auto takes the strongest tier this kernel proves it can run
        /// (lsm: BPF LSM, EPERM; fmod_ret: EPERM without bpf in lsm=; kill: SIGKILL before
        /// the first instruction).
        #[arg(long, value_enum, default_value_t = TierArg::Auto)]
        tier: TierArg,
        /// For tests: fail the start after the policy is in the maps, before attaching.
        #[arg(long, hide = true)]
        fail_after_policy: bool,
    },
    /// Show whether enforcement is active, the mode, the names and the kernel's counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop the agent if it runs and remove the pinned program: execs are no longer checked.
    Disable,
    /// Before rollout: what this kernel offers, which enforcement tiers work here and what to
    /// change (exit 0 when some tier can enforce). Run as root: it tries each tier.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Validate a policy file without touching the kernel.
    Check { path: PathBuf },
    /// Print the policy's `sha256` line for files: they are then denied whatever their name.
    Hash {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Switch the running agent between audit and enforce; the next exec sees the new mode.
    Mode {
        #[arg(value_enum)]
        mode: ModeArg,
    },
    /// Print a policy drop-in (policy.d/*.toml) made of a Falco rules file's miner lists:
    /// process names, pool domains, Stratum schemes.
    ImportFalco {
        /// A Falco rules file (e.g. rules/falco-sandbox_rules.yaml).
        rules: PathBuf,
    },
    /// The version, the commit built, the kernel contract's version and libbpf's.
    Version {
        #[arg(long)]
        json: bool,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), as the package installs it.
    #[command(hide = true)]
    Manpage,
}

/// The policy's modes on the command line (the policy model knows nothing of clap).
#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Let the exec run and report it.
    Audit,
    /// Fail the exec with EPERM and report it.
    Enforce,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Audit => Mode::Audit,
            ModeArg::Enforce => Mode::Enforce,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TierArg {
    Auto,
    Lsm,
    // Spelled as the tier is everywhere else (status, events, metrics), not kebab-case.
    #[value(name = "fmod_ret")]
    FmodRet,
    Kill,
}

impl TierArg {
    fn tier(self) -> Option<Tier> {
        match self {
            TierArg::Auto => None,
            TierArg::Lsm => Some(Tier::Lsm),
            TierArg::FmodRet => Some(Tier::FmodRet),
            TierArg::Kill => Some(Tier::Kill),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Json,
    Falco,
}

impl From<OutputFormat> for output::Format {
    fn from(f: OutputFormat) -> output::Format {
        match f {
            OutputFormat::Json => output::Format::Json,
            OutputFormat::Falco => output::Format::Falco,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Log lines queued for stderr at most; beyond that they are dropped (a stalled journal).
const LOG_LINES: usize = 1_000;

/// Where log records go. Directly to stderr during start-up; then, once `detach` is called,
/// through a thread of their own, so that a stalled journald cannot block the event loop
/// (reloads, stops, the watchdog) in a `warn!`. The thread is started only then because
/// capabilities belong to threads: one started during start-up would keep the capabilities
/// the agent drops once it is ready.
#[derive(Clone, Default)]
struct Stderr(Arc<OnceLock<NonBlocking>>);

enum StderrWriter {
    Direct(std::io::Stderr),
    Queued(NonBlocking),
}

impl std::io::Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            StderrWriter::Direct(w) => w.write(buf),
            StderrWriter::Queued(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            StderrWriter::Direct(w) => w.flush(),
            StderrWriter::Queued(w) => w.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> StderrWriter {
        match self.0.get() {
            Some(queued) => StderrWriter::Queued(queued.clone()),
            None => StderrWriter::Direct(std::io::stderr()),
        }
    }
}

/// The logging of `run`; dropping it writes out what is queued.
struct Logs {
    stderr: Stderr,
    guard: Option<WorkerGuard>,
}

impl Logs {
    /// From now on, log records go through the log thread.
    fn detach(&mut self) {
        let (queued, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(LOG_LINES)
            .thread_name("log")
            .finish(std::io::stderr());
        if self.stderr.0.set(queued).is_ok() {
            self.guard = Some(guard);
        }
    }
}

fn init_logging(format: LogFormat) -> Logs {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = Stderr::default();
    // Colour only for a person at a terminal: the journal and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(stderr.clone());
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
    Logs {
        stderr,
        guard: None,
    }
}

/// `minerguard run`: the agent, until SIGTERM or SIGINT.
fn run(opts: agent::Options, logs: &mut Logs) -> Result<()> {
    if let Some(addr) = opts.metrics_addr {
        metrics::check_addr(addr)?;
    }
    // The loaded object lives here: the agent's skeleton borrows it (libbpf-rs 0.27).
    let mut storage = MaybeUninit::uninit();
    let mut agent = agent::Agent::start(opts, &mut storage)?;
    // Ready, with only the capabilities it keeps: threads may start now.
    logs.detach();
    let result = agent.run();
    agent.stop();
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            policy,
            mode,
            log_format,
            output_format,
            metrics_addr,
            cri_socket,
            tier,
            fail_after_policy,
        } => {
            let mut logs = init_logging(log_format);
            let result = run(
                agent::Options {
                    policy,
                    mode: mode.map(Mode::from),
                    tier: tier.tier(),
                    metrics_addr,
                    format: output_format.into(),
                    cri_socket,
                    fail_after_policy,
                },
                &mut logs,
            );
            // Every log record before the final error line.
            drop(logs);
            result
        }
        Cmd::Status { json } => match commands::status(json) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Cmd::Disable => commands::disable(),
        Cmd::Check { path } => return commands::check(&path),
        Cmd::Doctor { json } => return doctor::doctor(json),
        Cmd::Hash { paths } => return commands::hash(&paths),
        Cmd::Mode { mode } => commands::set_mode(mode.into()),
        Cmd::Version { json } => commands::version(json),
        Cmd::ImportFalco { rules } => falco::import(&rules),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "minerguard",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Cmd::Manpage => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .section("8")
                .render(&mut std::io::stdout())
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minerguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
