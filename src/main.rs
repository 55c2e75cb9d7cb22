//! minerguard: blocks cryptominer executions in the kernel with a BPF-LSM program.
//! This file is the command line only; ARCHITECTURE.md maps the modules.

mod agent;
mod attach;
mod bpf;
mod commands;
mod config;
mod contract;
mod cri;
mod delivery;
mod doctor;
mod enrich;
mod event;
mod falco;
mod intel;
mod journal;
mod maps;
mod metrics;
mod output;
mod pins;
mod policy;
mod ratelimit;
mod storm;
mod webhook;

use std::io::IsTerminal;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, ModeArg, OutputFormat, TierArg};

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
        /// Settings file [default: /etc/minerguard/config.toml, when it exists]. It holds
        /// what these flags hold (policy, mode, output_format, log_format, webhook_url,
        /// metrics_addr, tier) and cri_socket; a flag given wins over the file.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The policy file [default: /etc/minerguard/policy.toml].
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Overrides the policy's mode (at start and on every reload).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Format of the logs on stderr (under journald, each line starts with its `<N>`
        /// priority) [default: text].
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Schema of the events on stdout (or in journald's MESSAGE, under systemd): json (minerguard's) or falco (Falco's alert, as
        /// Falcosidekick and Falco's pipelines take it) [default: json].
        #[arg(long, value_enum)]
        output_format: Option<OutputFormat>,
        /// Also POST each event (in the output format, Content-Type application/json) to
        /// this http(s) URL: a webhook, or Falcosidekick (http://HOST:2801/).
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; loopback
        /// only, unless --metrics-allow-remote).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<SocketAddr>,
        /// Let --metrics-addr be an address other hosts can reach (a cluster's Prometheus).
        /// The endpoint has no authentication and shows the node's policy counts: restrict
        /// who can reach it (NetworkPolicy, firewall).
        #[arg(long, requires = "metrics_addr")]
        metrics_allow_remote: bool,
        /// The container runtime's CRI socket, for the pod metadata of events (default: the
        /// first of containerd's /run/containerd/containerd.sock and CRI-O's
        /// /var/run/crio/crio.sock that exists).
        #[arg(long, value_name = "PATH")]
        cri_socket: Option<PathBuf>,
        /// How to enforce: auto takes the strongest tier this kernel proves it can run
        /// (lsm: BPF LSM, EPERM; fmod_ret: EPERM without bpf in lsm=; kill: SIGKILL before
        /// the first instruction) [default: auto].
        #[arg(long, value_enum)]
        tier: Option<TierArg>,
        /// A storm (one container stopped again and again for the same thing) is one line at
        /// once, then one line per this many seconds with the count it stands for; 0 writes
        /// every event [default: 10].
        #[arg(long, value_name = "SECONDS")]
        storm_window: Option<u64>,
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
    /// Validate without touching the kernel: POLICY alone; or, without POLICY or with
    /// --config, what `run` would read: the settings file (default
    /// /etc/minerguard/config.toml, when it exists), then the policy it names.
    Check {
        #[arg(value_name = "POLICY")]
        path: Option<PathBuf>,
        /// The settings file to validate.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
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
    // Under journald, each line starts with its priority (journal.rs).
    let prefix = journal::connected(std::io::stderr());
    match format {
        LogFormat::Text => builder
            .event_format(journal::Prioritized {
                inner: tracing_subscriber::fmt::format(),
                prefix,
            })
            .init(),
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(journal::Prioritized {
                inner: tracing_subscriber::fmt::format().json().flatten_event(true),
                prefix,
            })
            .init(),
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
        metrics::check_addr(addr, opts.metrics_allow_remote)?;
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
            config,
            policy,
            mode,
            log_format,
            output_format,
            webhook_url,
            metrics_addr,
            metrics_allow_remote,
            cri_socket,
            tier,
            storm_window,
            fail_after_policy,
        } => {
            let flags = config::Given {
                policy,
                mode,
                output_format,
                log_format,
                webhook_url: webhook_url.map(|u| toml::Spanned::new(0..0, u)),
                metrics_addr: metrics_addr.map(|a| toml::Spanned::new(0..0, a)),
                metrics_allow_remote: metrics_allow_remote.then_some(true),
                tier,
                storm_window,
                cri_socket: cri_socket.map(|p| toml::Spanned::new(0..0, p)),
            };
            let settings = config::load(config.as_deref())
                .and_then(|file| config::merge(flags, file.map(|f| f.1).unwrap_or_default()));
            match settings {
                Err(e) => Err(e),
                Ok(settings) => {
                    let mut logs = init_logging(settings.log_format);
                    let result = run(
                        agent::Options {
                            policy: settings.policy,
                            mode: settings.mode,
                            tier: settings.tier,
                            metrics_addr: settings.metrics_addr,
                            metrics_allow_remote: settings.metrics_allow_remote,
                            format: settings.output_format.into(),
                            webhook: settings.webhook,
                            storm_window: settings.storm_window,
                            cri_socket: settings.cri_socket,
                            fail_after_policy,
                        },
                        &mut logs,
                    );
                    // Every log record before the final error line.
                    drop(logs);
                    result
                }
            }
        }
        Cmd::Status { json } => match commands::status(json) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Cmd::Disable => commands::disable(),
        Cmd::Check { path, config } => return commands::check(path.as_deref(), config.as_deref()),
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
            // An error under journald, like the log's: `journalctl -p err` shows why it stopped.
            let priority = if journal::connected(std::io::stderr()) {
                "<3>"
            } else {
                ""
            };
            eprintln!("{priority}minerguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
