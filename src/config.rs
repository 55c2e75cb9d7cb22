//! The settings of `minerguard run`: `/etc/minerguard/config.toml` (optional) and the flags,
//! merged: a flag given wins over the file, the file over the defaults. Read once at start:
//! a reload (SIGHUP) re-reads the policy only.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::Deserialize;
use toml::Spanned;

use crate::contract::Tier;
use crate::output;
use crate::policy::{Lines, Mode};
use crate::webhook;

pub const DEFAULT_PATH: &str = "/etc/minerguard/config.toml";
pub const DEFAULT_POLICY: &str = "/etc/minerguard/policy.toml";

/// A settings file is a few lines; anything larger is not one.
const MAX_BYTES: u64 = 64 * 1024;

/// The policy's modes, as `--mode` and `mode =` spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierArg {
    #[default]
    Auto,
    Lsm,
    // Spelled as the tier is everywhere else (status, events, metrics), not kebab-case.
    #[value(name = "fmod_ret")]
    FmodRet,
    Kill,
}

impl TierArg {
    pub fn tier(self) -> Option<Tier> {
        match self {
            TierArg::Auto => None,
            TierArg::Lsm => Some(Tier::Lsm),
            TierArg::FmodRet => Some(Tier::FmodRet),
            TierArg::Kill => Some(Tier::Kill),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What `run`'s flags and the file can both set; `None`: not given there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Given {
    pub policy: Option<PathBuf>,
    pub mode: Option<ModeArg>,
    pub output_format: Option<OutputFormat>,
    pub log_format: Option<LogFormat>,
    pub webhook_url: Option<Spanned<String>>,
    pub metrics_addr: Option<Spanned<SocketAddr>>,
    /// A non-loopback metrics_addr is allowed (README: the risk).
    pub metrics_allow_remote: Option<bool>,
    pub tier: Option<TierArg>,
    /// Seconds a storm's repeats are held for one summary line (0: never).
    pub storm_window: Option<u64>,
    /// The container runtime's socket (CRI), for pod metadata.
    pub cri_socket: Option<Spanned<PathBuf>>,
}

/// `run`'s settings, merged and checked.
#[derive(Debug, PartialEq)]
pub struct Settings {
    pub policy: PathBuf,
    pub mode: Option<Mode>,
    pub output_format: OutputFormat,
    pub log_format: LogFormat,
    pub webhook: Option<webhook::Url>,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_allow_remote: bool,
    pub tier: Option<Tier>,
    pub storm_window: std::time::Duration,
    /// The container runtime's socket (CRI); `None`: the runtime's default sockets.
    pub cri_socket: Option<PathBuf>,
}

/// A storm's window unless set (README: storms).
pub const DEFAULT_STORM_WINDOW: u64 = 10;

/// A problem in the settings file, at `path:line:column`.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Reads the settings file: `explicit` (`--config`) must exist; the default may be absent
/// (then nothing is set by a file, `Ok(None)`).
pub fn load(explicit: Option<&Path>) -> Result<Option<(PathBuf, Given)>> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_PATH));
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && explicit.is_none() => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_BYTES {
        bail!(
            "{}: larger than {MAX_BYTES} bytes: not a minerguard settings file",
            path.display()
        );
    }
    let given = parse(&text).map_err(|(offset, message)| {
        let (line, column) = Lines::new(&text).position(offset);
        ConfigError {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    })?;
    Ok(Some((path.to_owned(), given)))
}

/// Parses and checks a settings file; a problem comes with its byte offset.
fn parse(text: &str) -> std::result::Result<Given, (usize, String)> {
    let given: Given = toml::from_str(text).map_err(|e| {
        (
            e.span().map_or(0, |s| s.start),
            e.message().trim_end().to_owned(),
        )
    })?;
    if let Some(url) = &given.webhook_url {
        webhook::Url::parse(url.get_ref())
            .map_err(|e| (url.span().start, format!("webhook_url: {e:#}")))?;
    }
    if let Some(addr) = &given.metrics_addr {
        crate::metrics::check_addr(*addr.get_ref(), given.metrics_allow_remote.unwrap_or(false))
            .map_err(|e| (addr.span().start, format!("metrics_addr: {e:#}")))?;
    }
    if let Some(socket) = &given.cri_socket {
        if !socket.get_ref().is_absolute() {
            return Err((
                socket.span().start,
                format!(
                    "cri_socket {:?}: the container runtime's socket must be an absolute path",
                    socket.get_ref()
                ),
            ));
        }
    }
    Ok(given)
}

/// The flags over the file over the defaults. The flags' own values are checked here too.
pub fn merge(flags: Given, file: Given) -> Result<Settings> {
    let webhook = match flags.webhook_url.or(file.webhook_url) {
        Some(url) => Some(webhook::Url::parse(url.get_ref())?),
        None => None,
    };
    let metrics_addr = flags
        .metrics_addr
        .or(file.metrics_addr)
        .map(Spanned::into_inner);
    let metrics_allow_remote = flags
        .metrics_allow_remote
        .or(file.metrics_allow_remote)
        .unwrap_or(false);
    if let Some(addr) = metrics_addr {
        crate::metrics::check_addr(addr, metrics_allow_remote)?;
    }
    Ok(Settings {
        policy: flags
            .policy
            .or(file.policy)
            .unwrap_or_else(|| DEFAULT_POLICY.into()),
        mode: flags.mode.or(file.mode).map(Mode::from),
        output_format: flags
            .output_format
            .or(file.output_format)
            .unwrap_or_default(),
        log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
        webhook,
        metrics_addr,
        metrics_allow_remote,
        tier: flags.tier.or(file.tier).unwrap_or_default().tier(),
        storm_window: std::time::Duration::from_secs(
            flags
                .storm_window
                .or(file.storm_window)
                .unwrap_or(DEFAULT_STORM_WINDOW),
        ),
        cri_socket: flags
            .cri_socket
            .or(file.cri_socket)
            .map(Spanned::into_inner),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Given {
        Given::default()
    }

    #[test]
    fn nothing_given_means_the_defaults() {
        let s = merge(flags(), Given::default()).unwrap();
        assert_eq!(
            s,
            Settings {
                policy: DEFAULT_POLICY.into(),
                mode: None,
                output_format: OutputFormat::Json,
                log_format: LogFormat::Text,
                webhook: None,
                metrics_addr: None,
                metrics_allow_remote: false,
                tier: None,
                storm_window: std::time::Duration::from_secs(DEFAULT_STORM_WINDOW),
                cri_socket: None,
            }
        );
    }

    const FULL: &str = r#"
policy = "/srv/mg/policy.toml"
mode = "audit"
output_format = "falco"
log_format = "json"
webhook_url = "https://sidekick.example:2801/"
metrics_addr = "127.0.0.1:9464"
tier = "fmod_ret"
cri_socket = "/run/containerd/containerd.sock"
"#;

    #[test]
    fn the_file_sets_every_setting() {
        let s = merge(flags(), parse(FULL).unwrap()).unwrap();
        assert_eq!(s.policy, Path::new("/srv/mg/policy.toml"));
        assert_eq!(s.mode, Some(Mode::Audit));
        assert_eq!(s.output_format, OutputFormat::Falco);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(
            s.webhook,
            Some(webhook::Url::parse("https://sidekick.example:2801/").unwrap())
        );
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.tier, Some(Tier::FmodRet));
        assert_eq!(
            s.cri_socket,
            Some(PathBuf::from("/run/containerd/containerd.sock"))
        );
    }

    #[test]
    fn a_flag_given_wins_over_the_file_and_the_rest_comes_from_the_file() {
        let given = Given {
            policy: Some("/tmp/p.toml".into()),
            mode: Some(ModeArg::Enforce),
            tier: Some(TierArg::Auto),
            webhook_url: Some(Spanned::new(0..0, "http://127.0.0.1:1/".into())),
            ..Given::default()
        };
        let s = merge(given, parse(FULL).unwrap()).unwrap();
        assert_eq!(s.policy, Path::new("/tmp/p.toml"));
        assert_eq!(s.mode, Some(Mode::Enforce));
        // `--tier auto` given explicitly wins over the file's fmod_ret.
        assert_eq!(s.tier, None);
        assert_eq!(s.webhook.unwrap().shown(), "http://127.0.0.1:1");
        // Not given as flags: the file's.
        assert_eq!(s.output_format, OutputFormat::Falco);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    }

    fn problem(text: &str) -> (usize, usize, String) {
        let (offset, message) = parse(text).unwrap_err();
        let (line, column) = Lines::new(text).position(offset);
        (line, column, message)
    }

    #[test]
    fn an_unknown_key_is_an_error_at_its_line() {
        let (line, column, message) =
            problem("mode = \"audit\"\n# a comment\nwebhook = \"http://x/\"\n");
        assert_eq!((line, column), (3, 1));
        assert!(message.contains("unknown field `webhook`"), "{message}");
        assert!(message.contains("webhook_url"), "lists the keys: {message}");
    }

    #[test]
    fn bad_values_are_errors_at_their_line() {
        for (text, line, says) in [
            ("\n\nmode = \"block\"\n", 3, "unknown variant `block`"),
            ("tier = \"fmod-ret\"\n", 1, "unknown variant `fmod-ret`"),
            ("\nwebhook_url = \"ftp://x/\"\n", 2, "must be http or https"),
            ("metrics_addr = \"0.0.0.0:9464\"\n", 1, "loopback"),
            (
                "metrics_addr = \"localhost\"\n",
                1,
                "invalid socket address",
            ),
            (
                "\ncri_socket = \"run/containerd.sock\"\n",
                2,
                "absolute path",
            ),
            ("policy = 3\n", 1, "invalid type"),
        ] {
            let (at, _, message) = problem(text);
            assert_eq!(at, line, "{text}: {message}");
            assert!(message.contains(says), "{text}: {message}");
        }
    }

    /// The example the package installs: every setting it shows, uncommented, is valid.
    #[test]
    fn the_shipped_example_is_valid_uncommented() {
        let shipped = include_str!("../config.toml");
        assert_eq!(
            parse(shipped).unwrap().policy,
            None,
            "a setting is not commented out"
        );
        let uncommented: String = shipped
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(uncommented.lines().count(), 10, "{uncommented}");
        let s = merge(Given::default(), parse(&uncommented).unwrap()).unwrap();
        assert_eq!(s.policy, Path::new(DEFAULT_POLICY));
        assert!(s.webhook.is_some() && s.cri_socket.is_some());
    }

    #[test]
    fn a_missing_default_file_is_fine_a_missing_explicit_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.toml");
        let e = format!("{:#}", load(Some(&missing)).unwrap_err());
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("No such file"), "{e}");
        std::fs::write(&missing, "tier = \"kill\"\nbogus = 1\n").unwrap();
        let e = load(Some(&missing)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2:1: unknown field `bogus`", missing.display())),
            "{e}"
        );
    }
}
