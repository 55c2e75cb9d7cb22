//! `policy.toml`: parsing and validation. Nothing here touches the kernel, so a policy is
//! always checked whole before any map is changed.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::contract::{
    MAX_ARG_RULES, MAX_ARG_VALUES, MAX_DOMAINS, MAX_DRIFT_ALLOW, MAX_HASHES, MAX_MEMFD_ALLOW,
    MAX_NAMES, MAX_PREFIXES, MAX_TUNING_ALLOW, MEMFD_PREFIX, NAME_MAX_BYTES, PROBE_NAME,
};
use crate::intel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Let the exec run and report it.
    Audit,
    /// Fail the exec with EPERM and report it.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which processes are blocked (in enforce mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every process.
    #[default]
    All,
    /// Processes outside the host's mount namespace: host processes are reported, not blocked.
    Containers,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Containers => "containers",
        }
    }
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub scope: Scope,
    /// Exact names.
    pub names: Vec<String>,
    /// Prefix patterns, without their trailing `*`.
    pub prefixes: Vec<String>,
    /// Block every exec from a memfd...
    pub memfd_block: bool,
    /// ...but those whose file name (`memfd:<name>`) is listed here.
    pub memfd_allow: Vec<String>,
    /// `[identity] enabled`: a file blocked under a listed name stays blocked under any other.
    pub identity: bool,
    /// `[mmap] enabled`: a file mapped executable (loader launches, LD_PRELOAD) is checked.
    pub mmap: bool,
    /// `[argv]`: the arguments of every exec, checked once the exec has replaced the program.
    pub argv: Argv,
    /// `sha256`: digests of files denied whatever their name (lower-case hex).
    pub sha256: Vec<String>,
    /// `[drift]`: files executed from a container's writable layer.
    pub drift: Drift,
    /// `[behavior]`: what a miner does, whatever it is called.
    pub behavior: Behavior,
}

/// `[behavior]`: each layer's mode (`None`: follows the policy's `mode`) and who may tune.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behavior {
    /// RandomX's rounding-mode pattern, at context switches.
    pub randomx: Option<LayerMode>,
    /// MSR devices and the msr module's allow_writes opened for writing.
    pub msr: Option<LayerMode>,
    /// Huge-page reservation files opened for writing from a container.
    pub hugepages: Option<LayerMode>,
    /// Programs (absolute paths, resolved to their files when the policy is applied) that may
    /// write MSRs and reserve huge pages.
    pub allow_programs: Vec<String>,
    /// Cgroups (paths under the cgroup v2 root, "/system.slice/tuned.service") whose
    /// processes, and their sub-cgroups', may.
    pub allow_cgroups: Vec<String>,
}

/// What a behaviour layer does, when it does not follow the policy's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerMode {
    Off,
    /// Report, never stop, whatever the mode.
    Audit,
    /// Stop (and report), whatever the mode.
    Enforce,
}

impl LayerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerMode::Off => "off",
            LayerMode::Audit => "audit",
            LayerMode::Enforce => "enforce",
        }
    }
}

/// What `[drift]` does with a file executed or mapped from an overlayfs upper layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftMode {
    #[default]
    Off,
    /// Report it, never deny it.
    Audit,
    /// Deny it (EPERM) in enforce mode.
    Block,
}

impl DriftMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftMode::Off => "off",
            DriftMode::Audit => "audit",
            DriftMode::Block => "block",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    pub mode: DriftMode,
    /// Path prefixes (as the container sees them) from which upper-layer files may run.
    pub allow: Vec<String>,
}

/// The argument layer's lists, validated (defaults from `intel` where the policy is silent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Argv {
    pub enabled: bool,
    /// An argument that starts with one of these (`stratum+tcp://`) is a miner's.
    pub schemes: Vec<String>,
    /// `--donate-level`, alone or `--donate-level=N`.
    pub flags: Vec<String>,
    /// Options whose value is a pool URL or host (`-o`, `--url`).
    pub pool_options: Vec<String>,
    /// `--coin=monero`: the option `--coin` with the value `monero`, glued or not.
    pub option_values: Vec<String>,
    /// Pool domains, lower case; a host under one matches too.
    pub domains: Vec<String>,
}

impl Default for Argv {
    fn default() -> Argv {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Argv {
            enabled: true,
            schemes: owned(intel::SCHEMES),
            flags: owned(intel::FLAGS),
            pool_options: owned(intel::POOL_OPTIONS),
            option_values: owned(intel::OPTION_VALUES),
            domains: owned(intel::DOMAINS),
        }
    }
}

/// At most this many problems are listed; the rest are counted. A policy generated wrong can
/// have a million bad entries: listing them all would drown the first, which is the one to fix.
pub const MAX_PROBLEMS: usize = 20;

/// Entries the kernel's maps can hold, all lists together.
const MAX_ENTRIES: usize = MAX_NAMES + MAX_PREFIXES + MAX_MEMFD_ALLOW;

/// A policy file is read up to this size: twice the largest policy the maps can hold,
/// written one longest entry a line (about 5 MB today).
pub const MAX_POLICY_BYTES: u64 = 2 * (MAX_ENTRIES as u64) * (NAME_MAX_BYTES as u64 + 8);

/// Strings a policy may hold to be parsed at all: four times what the maps can hold, so that
/// every valid policy, and any mistake of a plausible size, is parsed and its problems
/// located. Parsing costs about 260 bytes a string (a million bad entries peaked at 263 MiB),
/// and reloads run in the agent, under MemoryMax=256M: this keeps parsing under about 75 MiB.
const MAX_STRINGS: usize = 4 * MAX_ENTRIES;

/// Names and values echoed in messages are cut to this many characters, so that a
/// megabyte-long entry still gives a readable one-line message.
const SHOWN_CHARS: usize = 80;

/// Messages that come from the TOML parser may echo a value: cut them too.
const MESSAGE_CHARS: usize = 300;

/// The problems found in one policy file, each with its position: the first `MAX_PROBLEMS`,
/// and how many more there were.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Problems {
    pub list: Vec<Problem>,
    pub more: usize,
}

/// Every problem found in one policy file, each with its position.
#[derive(Debug)]
pub struct PolicyError {
    pub path: PathBuf,
    pub problems: Problems,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.list.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        if self.problems.more > 0 {
            let more = self.problems.more;
            let s = if more == 1 { "" } else { "s" };
            write!(f, "\n{}: and {more} more problem{s}", self.path.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

impl PolicyError {
    /// A problem of the whole file (no position in it).
    fn whole(path: &Path, message: String) -> PolicyError {
        PolicyError {
            path: path.to_owned(),
            problems: Problems {
                list: vec![Problem {
                    line: 0,
                    column: 0,
                    message,
                }],
                more: 0,
            },
        }
    }
}

/// Where each line starts, built once: finding a position is then a binary search, not a
/// rescan of the text (which made a policy with many bad entries take quadratic time).
pub(crate) struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    pub(crate) fn new(text: &'t str) -> Lines<'t> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        // starts[0] is 0 <= offset, so line >= 1 and line - 1 is an index.
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        // Only the problems listed are located, so counting characters within their line
        // stays bounded. A span off a character boundary (never seen) counts bytes.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, column + 1)
    }
}

/// Collects problems, locating and formatting only those that will be listed.
struct Collector<'t> {
    lines: Lines<'t>,
    problems: Problems,
}

impl<'t> Collector<'t> {
    fn new(text: &'t str) -> Collector<'t> {
        Collector {
            lines: Lines::new(text),
            problems: Problems::default(),
        }
    }

    /// A problem at byte `offset`; `message` is only called if the problem is listed, and
    /// can locate other offsets (a duplicate's first occurrence) with the `Lines` it gets.
    fn at(&mut self, offset: usize, message: impl FnOnce(&Lines<'_>) -> String) {
        if self.problems.list.len() >= MAX_PROBLEMS {
            self.problems.more += 1;
            return;
        }
        let (line, column) = self.lines.position(offset);
        self.problems.list.push(Problem {
            line,
            column,
            message: message(&self.lines),
        });
    }

    fn is_empty(&self) -> bool {
        self.problems.list.is_empty()
    }
}

/// `s` quoted as in Rust source, cut to `SHOWN_CHARS` characters (then followed by `...`).
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// A message cut to `MESSAGE_CHARS` characters.
fn cut_message(s: &str) -> String {
    match s.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Option<Spanned<Mode>>,
    scope: Option<Scope>,
    names: Option<Vec<Spanned<String>>>,
    memfd: Option<RawMemfd>,
    identity: Option<RawSwitch>,
    mmap: Option<RawSwitch>,
    argv: Option<RawArgv>,
    sha256: Option<Vec<Spanned<String>>>,
    drift: Option<RawDrift>,
    behavior: Option<RawBehavior>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBehavior {
    randomx: Option<LayerMode>,
    msr: Option<LayerMode>,
    hugepages: Option<LayerMode>,
    allow_programs: Option<Vec<Spanned<String>>>,
    allow_cgroups: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDrift {
    mode: Option<DriftMode>,
    allow: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawArgv {
    enabled: Option<bool>,
    schemes: Option<Vec<Spanned<String>>>,
    flags: Option<Vec<Spanned<String>>>,
    pool_options: Option<Vec<Spanned<String>>>,
    option_values: Option<Vec<Spanned<String>>>,
    domains: Option<Vec<Spanned<String>>>,
}

/// A layer that is on or off (`[identity]`, `[mmap]`): on unless the policy says otherwise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    enabled: Option<bool>,
}

impl RawSwitch {
    fn on(switch: Option<RawSwitch>) -> bool {
        switch.and_then(|s| s.enabled).unwrap_or(true)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemfd {
    block: Option<bool>,
    allow: Option<Vec<Spanned<String>>>,
}

impl Policy {
    /// Entries that can match an exec: names and prefix patterns (what `status` counts).
    pub fn patterns(&self) -> usize {
        self.names.len() + self.prefixes.len()
    }

    /// The policy file, with the files of its drop-in directory (`policy.toml` ->
    /// `policy.d/*.toml`, in name order) merged over it: each file validated on its own, its
    /// problems located in it.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let (mut policy, explicit) = load_part(path, Part::Main)?;
        let mut set_by: Vec<(&'static str, String, PathBuf)> = explicit
            .values
            .into_iter()
            .map(|(key, value)| (key, value, path.to_owned()))
            .collect();
        for dropin in dropins(path)? {
            let part = load_part(&dropin, Part::DropIn)?;
            merge(&mut policy, &mut set_by, part, &dropin)
                .map_err(|message| PolicyError::whole(&dropin, message))?;
        }
        Ok(policy)
    }

    /// A main policy's text alone (the tests'). Linear in the size of the text, however many
    /// problems it has.
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Policy, Problems> {
        Policy::parse_part(text, Part::Main).map(|(policy, _)| policy)
    }

    /// Whether `text` is a valid policy file (`validate_text`) or drop-in; if not, its first
    /// problem (`import-falco` checks what it writes with these).
    pub fn validate_text(text: &str) -> Result<(), String> {
        Policy::validate_part(text, Part::Main)
    }

    pub fn validate_dropin_text(text: &str) -> Result<(), String> {
        Policy::validate_part(text, Part::DropIn)
    }

    fn validate_part(text: &str, part: Part) -> Result<(), String> {
        match Policy::parse_part(text, part) {
            Ok(_) => Ok(()),
            Err(problems) => Err(problems
                .list
                .first()
                .map_or_else(String::new, |p| p.message.clone())),
        }
    }

    /// A main policy (`mode` and `names` required) or a drop-in (both optional), and what it
    /// sets explicitly (for merging: `merge`).
    fn parse_part(text: &str, part: Part) -> Result<(Policy, Explicit), Problems> {
        let mut problems = Collector::new(text);
        // Every string has two quotes (or six): counting them bounds the strings, and so the
        // memory parsing takes, before parsing. Quotes in comments only make it stricter.
        let strings = text.bytes().filter(|&b| b == b'"' || b == b'\'').count() / 2;
        if strings > MAX_STRINGS {
            problems.at(0, |_| {
                format!(
                    "the policy holds about {strings} strings, more than four times the {MAX_ENTRIES} entries the kernel's maps can hold; not parsed"
                )
            });
            return Err(problems.problems);
        }
        let raw: RawPolicy = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let message = cut_message(e.message().trim_end());
                problems.at(e.span().map_or(0, |s| s.start), |_| message);
                return Err(problems.problems);
            }
        };

        let explicit = Explicit::of(&raw);
        let mode = match raw.mode {
            Some(mode) => *mode.get_ref(),
            None if part == Part::DropIn => Mode::Enforce,
            None => {
                problems.at(0, |_| {
                    "missing key `mode`: add mode = \"enforce\" or mode = \"audit\"".into()
                });
                Mode::Enforce
            }
        };
        let raw_names = match raw.names {
            Some(names) => names,
            None if part == Part::DropIn => Vec::new(),
            None => {
                problems.at(0, |_| {
                    "missing key `names`: add names = [\"xmrig\", ...]".into()
                });
                return Err(problems.problems);
            }
        };
        let mut names = Vec::new();
        let mut prefixes = Vec::new();
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for entry in &raw_names {
            let value = entry.get_ref().as_str();
            let at = entry.span().start;
            let (name, is_prefix) = match value.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (value, false),
            };
            if name.contains('*') {
                problems.at(at, |_| {
                    format!(
                        "name {}: '*' is only allowed at the end, to make a prefix pattern",
                        shown(value)
                    )
                });
            } else if is_prefix && name.is_empty() {
                problems.at(at, |_| "a lone \"*\" would match every program".into());
            } else if let Some(problem) = name_problem(name) {
                problems.at(at, |_| problem.message(name));
            } else if let Some(&first) = first_seen.get(value) {
                problems.at(at, |lines| {
                    let (line, column) = lines.position(first);
                    format!(
                        "duplicate name {} (first listed at {line}:{column})",
                        shown(value)
                    )
                });
            } else {
                first_seen.insert(value, at);
                if is_prefix {
                    prefixes.push(name.to_owned());
                } else {
                    names.push(name.to_owned());
                }
            }
        }
        if names.len() > MAX_NAMES {
            problems.at(0, |_| {
                format!(
                    "too many names ({}): the kernel map holds at most {MAX_NAMES}",
                    names.len()
                )
            });
        }
        if prefixes.len() > MAX_PREFIXES {
            problems.at(0, |_| {
                format!(
                    "too many prefix patterns ({}): the kernel map holds at most {MAX_PREFIXES}",
                    prefixes.len()
                )
            });
        }

        let memfd = raw.memfd.unwrap_or(RawMemfd {
            block: None,
            allow: None,
        });
        let mut memfd_allow = Vec::new();
        for entry in memfd.allow.unwrap_or_default() {
            let value = entry.get_ref();
            let problem = if !value.starts_with(MEMFD_PREFIX) || value.len() == MEMFD_PREFIX.len() {
                Some(format!(
                    "memfd allow entry {} must be a memfd's file name, \"memfd:<name>\", as events show it",
                    shown(value)
                ))
            } else if value.contains('\0') {
                Some(format!(
                    "memfd allow entry {} contains a NUL byte",
                    shown(value)
                ))
            } else if value.len() > NAME_MAX_BYTES {
                Some(format!(
                    "memfd allow entry {} is {} bytes long: the kernel map holds at most {NAME_MAX_BYTES}",
                    shown(value),
                    value.len()
                ))
            } else if memfd_allow.contains(value) {
                Some(format!("duplicate memfd allow entry {}", shown(value)))
            } else {
                None
            };
            match problem {
                Some(message) => problems.at(entry.span().start, |_| message),
                None => memfd_allow.push(entry.into_inner()),
            }
        }
        if memfd_allow.len() > MAX_MEMFD_ALLOW {
            problems.at(0, |_| {
                format!("too many memfd allow entries: at most {MAX_MEMFD_ALLOW}")
            });
        }

        let argv = parse_argv(raw.argv.unwrap_or_default(), &mut problems);
        let mut sha256: Vec<String> = Vec::new();
        for entry in raw.sha256.unwrap_or_default() {
            let value = entry.get_ref().to_ascii_lowercase();
            let at = entry.span().start;
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.at(at, |_| {
                    format!(
                        "sha256 entry {} must be 64 hexadecimal digits (`minerguard hash FILE` prints them)",
                        shown(entry.get_ref())
                    )
                });
            } else if sha256.contains(&value) {
                problems.at(at, |_| {
                    format!("sha256 entry {} is listed twice", shown(&value))
                });
            } else {
                sha256.push(value);
            }
        }
        let raw_drift = raw.drift.unwrap_or_default();
        let drift = Drift {
            mode: raw_drift.mode.unwrap_or_default(),
            allow: absolute_paths(
                &mut problems,
                "[drift] allow",
                raw_drift.allow,
                "an absolute path prefix (\"/usr/local/bin/\")",
                token_problem,
            ),
        };
        if drift.allow.len() > MAX_DRIFT_ALLOW {
            problems.at(0, |_| {
                format!("[drift] allows at most {MAX_DRIFT_ALLOW} path prefixes")
            });
        }
        let raw_behavior = raw.behavior.unwrap_or_default();
        // Paths, not arguments: a space is allowed, a control character is not.
        let visible = |p: &str| {
            p.chars()
                .find(|c| c.is_control())
                .map(|c| format!("contains {c:?}"))
        };
        let behavior = Behavior {
            randomx: raw_behavior.randomx,
            msr: raw_behavior.msr,
            hugepages: raw_behavior.hugepages,
            allow_programs: absolute_paths(
                &mut problems,
                "[behavior] allow_programs",
                raw_behavior.allow_programs,
                "an absolute path (\"/usr/sbin/wrmsr\")",
                visible,
            ),
            allow_cgroups: absolute_paths(
                &mut problems,
                "[behavior] allow_cgroups",
                raw_behavior.allow_cgroups,
                "an absolute path under the cgroup v2 root (\"/system.slice/tuned.service\")",
                visible,
            ),
        };
        if behavior.allow_programs.len() + behavior.allow_cgroups.len() > MAX_TUNING_ALLOW {
            problems.at(0, |_| {
                format!("[behavior] allows at most {MAX_TUNING_ALLOW} programs and cgroups")
            });
        }
        if sha256.len() > MAX_HASHES {
            problems.at(0, |_| {
                format!("too many sha256 entries: at most {MAX_HASHES}")
            });
        }

        if !problems.is_empty() {
            return Err(problems.problems);
        }
        let policy = Policy {
            mode,
            scope: raw.scope.unwrap_or_default(),
            names,
            prefixes,
            memfd_block: memfd.block.unwrap_or(false),
            memfd_allow,
            identity: RawSwitch::on(raw.identity),
            mmap: RawSwitch::on(raw.mmap),
            argv,
            sha256,
            drift,
            behavior,
        };
        Ok((policy, explicit))
    }
}

/// The drop-in directory of a policy file: `policy.toml` -> `policy.d`.
pub fn dropin_dir(path: &Path) -> PathBuf {
    path.with_extension("d")
}

/// The `*.toml` files of the policy's drop-in directory, in name order (none if it does not
/// exist).
pub fn dropins(path: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let dir = dropin_dir(path);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PolicyError::whole(
                &dir,
                format!("cannot list the drop-ins: {e}"),
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads and parses one policy file (bounded in size).
fn load_part(path: &Path, part: Part) -> Result<(Policy, Explicit), PolicyError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| PolicyError::whole(path, format!("cannot read the policy: {e}")))?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(PolicyError::whole(path, format!(
            "the policy is larger than {MAX_POLICY_BYTES} bytes, twice the largest the kernel's maps can hold ({MAX_ENTRIES} entries of at most {NAME_MAX_BYTES} bytes); not parsed"
        )));
    }
    Policy::parse_part(&text, part).map_err(|problems| PolicyError {
        path: path.to_owned(),
        problems,
    })
}

/// Which kind of policy file is parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The policy file: `mode` and `names` are required.
    Main,
    /// A file of `<policy>.d/`: adds to the main policy, every key optional.
    DropIn,
}

/// What a policy file sets itself: each single-valued key it gives (with its value, as
/// text), and which of the argument layer's lists it gives (the others are defaults, which a
/// drop-in must not add).
#[derive(Default)]
struct Explicit {
    values: Vec<(&'static str, String)>,
    argv_lists: [bool; 5],
}

impl Explicit {
    fn of(raw: &RawPolicy) -> Explicit {
        let mut values = Vec::new();
        let mut set = |key: &'static str, value: Option<String>| {
            if let Some(v) = value {
                values.push((key, v));
            }
        };
        set(
            "mode",
            raw.mode.as_ref().map(|m| m.get_ref().as_str().into()),
        );
        set("scope", raw.scope.map(|s| s.as_str().into()));
        let flag = |b: Option<bool>| b.map(|b| b.to_string());
        set(
            "[memfd] block",
            flag(raw.memfd.as_ref().and_then(|m| m.block)),
        );
        set(
            "[identity] enabled",
            flag(raw.identity.as_ref().and_then(|s| s.enabled)),
        );
        set(
            "[mmap] enabled",
            flag(raw.mmap.as_ref().and_then(|s| s.enabled)),
        );
        set(
            "[argv] enabled",
            flag(raw.argv.as_ref().and_then(|a| a.enabled)),
        );
        set(
            "[drift] mode",
            raw.drift
                .as_ref()
                .and_then(|d| d.mode)
                .map(|m| m.as_str().into()),
        );
        let behavior = raw.behavior.as_ref();
        let layer = |pick: fn(&RawBehavior) -> Option<LayerMode>| {
            behavior.and_then(pick).map(|m| m.as_str().to_string())
        };
        set("[behavior] randomx", layer(|b| b.randomx));
        set("[behavior] msr", layer(|b| b.msr));
        set("[behavior] hugepages", layer(|b| b.hugepages));
        let argv = raw.argv.as_ref();
        let given = |pick: fn(&RawArgv) -> bool| argv.is_some_and(pick);
        Explicit {
            values,
            argv_lists: [
                given(|a| a.schemes.is_some()),
                given(|a| a.flags.is_some()),
                given(|a| a.pool_options.is_some()),
                given(|a| a.option_values.is_some()),
                given(|a| a.domains.is_some()),
            ],
        }
    }
}

/// `list` with the entries of `more` it lacks, in order.
fn add_all(list: &mut Vec<String>, more: Vec<String>) {
    for entry in more {
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
}

/// The policy with a drop-in merged over it: lists added, single-valued keys set where
/// nothing set them yet. `set_by`: which file set each key so far. A key set to another value
/// than an earlier file's is an error that names both files.
fn merge(
    policy: &mut Policy,
    set_by: &mut Vec<(&'static str, String, PathBuf)>,
    (dropin, explicit): (Policy, Explicit),
    path: &Path,
) -> Result<(), String> {
    for (key, value) in explicit.values {
        if let Some((_, earlier, file)) = set_by.iter().find(|(k, _, _)| *k == key) {
            if *earlier != value {
                return Err(format!(
                    "`{key}` is {value:?} here but {earlier:?} in {}: a drop-in adds to the \
                     policy, it cannot change what another file sets",
                    file.display()
                ));
            }
            continue;
        }
        match key {
            "mode" => policy.mode = dropin.mode,
            "scope" => policy.scope = dropin.scope,
            "[memfd] block" => policy.memfd_block = dropin.memfd_block,
            "[identity] enabled" => policy.identity = dropin.identity,
            "[mmap] enabled" => policy.mmap = dropin.mmap,
            "[argv] enabled" => policy.argv.enabled = dropin.argv.enabled,
            "[drift] mode" => policy.drift.mode = dropin.drift.mode,
            "[behavior] randomx" => policy.behavior.randomx = dropin.behavior.randomx,
            "[behavior] msr" => policy.behavior.msr = dropin.behavior.msr,
            "[behavior] hugepages" => policy.behavior.hugepages = dropin.behavior.hugepages,
            _ => {}
        }
        set_by.push((key, value, path.to_owned()));
    }
    add_all(&mut policy.names, dropin.names);
    add_all(&mut policy.prefixes, dropin.prefixes);
    add_all(&mut policy.memfd_allow, dropin.memfd_allow);
    add_all(&mut policy.sha256, dropin.sha256);
    add_all(&mut policy.drift.allow, dropin.drift.allow);
    add_all(
        &mut policy.behavior.allow_programs,
        dropin.behavior.allow_programs,
    );
    add_all(
        &mut policy.behavior.allow_cgroups,
        dropin.behavior.allow_cgroups,
    );
    let argv = &mut policy.argv;
    let lists = [
        (&mut argv.schemes, dropin.argv.schemes),
        (&mut argv.flags, dropin.argv.flags),
        (&mut argv.pool_options, dropin.argv.pool_options),
        (&mut argv.option_values, dropin.argv.option_values),
        (&mut argv.domains, dropin.argv.domains),
    ];
    for ((list, more), given) in lists.into_iter().zip(explicit.argv_lists) {
        if given {
            add_all(list, more);
        }
    }
    // The bounds hold for the whole, as for one file.
    let bounds = [
        ("names", policy.names.len(), MAX_NAMES),
        ("prefix patterns", policy.prefixes.len(), MAX_PREFIXES),
        (
            "memfd allow entries",
            policy.memfd_allow.len(),
            MAX_MEMFD_ALLOW,
        ),
        ("sha256 entries", policy.sha256.len(), MAX_HASHES),
        (
            "[drift] allow entries",
            policy.drift.allow.len(),
            MAX_DRIFT_ALLOW,
        ),
        (
            "[behavior] allow entries",
            policy.behavior.allow_programs.len() + policy.behavior.allow_cgroups.len(),
            MAX_TUNING_ALLOW,
        ),
        ("[argv] domains", policy.argv.domains.len(), MAX_DOMAINS),
    ];
    for (what, n, max) in bounds {
        if n > max {
            return Err(format!(
                "with this file the policy has {n} {what}: the kernel's maps hold at most {max}"
            ));
        }
    }
    Ok(())
}

/// Why a name cannot be listed. Its message is built only for the problems that are shown.
enum NameProblem {
    Empty,
    Slash,
    Nul,
    /// Whitespace or a control character, and which.
    Invisible(char),
    Dot,
    TooLong,
    Reserved,
}

impl NameProblem {
    fn message(&self, name: &str) -> String {
        let shown = shown(name);
        match self {
            NameProblem::Empty => "empty name".into(),
            NameProblem::Slash => {
                format!("name {shown} contains '/': names are file names, not paths")
            }
            NameProblem::Nul => format!("name {shown} contains a NUL byte"),
            NameProblem::Invisible(c) => {
                let what = if c.is_whitespace() {
                    "whitespace"
                } else {
                    "a control character"
                };
                format!(
                    "name {shown} contains {what} (U+{:04X}): names cannot contain whitespace or control characters",
                    u32::from(*c)
                )
            }
            NameProblem::Dot => format!("name {shown} can never be the name of a program"),
            NameProblem::TooLong => format!(
                "name {shown} is {} bytes long: the kernel map holds names of at most {NAME_MAX_BYTES} bytes",
                name.len()
            ),
            NameProblem::Reserved => {
                format!("name {shown} is reserved for minerguard's own BPF LSM probe")
            }
        }
    }
}

/// Why `name` cannot be a listed name, if it cannot.
/// One `[argv]` list: the policy's entries, each checked by `problem`, or the default.
fn argv_list(
    raw: Option<Vec<Spanned<String>>>,
    default: &[&str],
    what: &str,
    problem: fn(&str) -> Option<String>,
    problems: &mut Collector<'_>,
) -> Vec<String> {
    let Some(raw) = raw else {
        return default.iter().map(|s| s.to_string()).collect();
    };
    let mut list: Vec<String> = Vec::new();
    for entry in raw {
        let value = entry.get_ref();
        let at = entry.span().start;
        let found = if let Some(p) = token_problem(value) {
            Some(p)
        } else if let Some(p) = problem(value) {
            Some(p)
        } else if list.contains(value) {
            Some("is listed twice".to_string())
        } else {
            None
        };
        match found {
            Some(p) => problems.at(at, |_| format!("[argv] {what} {} {p}", shown(value))),
            None => list.push(entry.into_inner()),
        }
    }
    list
}

/// What every argument-layer entry must be: a token of 1 to 63 visible bytes.
fn token_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("contains {c:?}: arguments are matched one by one"));
    }
    if value.len() > NAME_MAX_BYTES {
        return Some(format!(
            "is {} bytes long: the kernel reads at most {NAME_MAX_BYTES} bytes of an argument",
            value.len()
        ));
    }
    None
}

/// A list of absolute paths (`[drift] allow`, `[behavior] allow_*`), each `kind`, passing
/// `extra`, without "..", listed once; the problems located in the file.
fn absolute_paths(
    problems: &mut Collector<'_>,
    key: &str,
    entries: Option<Vec<Spanned<String>>>,
    kind: &str,
    extra: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut accepted: Vec<String> = Vec::new();
    for entry in entries.unwrap_or_default() {
        let value = entry.get_ref();
        let problem = if !value.starts_with('/') {
            Some(format!("must be {kind}"))
        } else if let Some(p) = extra(value) {
            Some(p)
        } else if value.split('/').any(|c| c == "..") {
            Some("must not contain \"..\" (paths are matched as the kernel resolves them)".into())
        } else if accepted.contains(value) {
            Some("is listed twice".to_string())
        } else {
            None
        };
        match problem {
            Some(p) => problems.at(entry.span().start, |_| {
                format!("{key} entry {} {p}", shown(value))
            }),
            None => accepted.push(entry.into_inner()),
        }
    }
    accepted
}

fn option_problem(value: &str) -> Option<String> {
    (!value.starts_with('-') || value == "-" || value == "--" || value.contains('='))
        .then(|| "must be an option: \"-x\", \"--name\", without '='".into())
}

fn option_value_problem(value: &str) -> Option<String> {
    match value.split_once('=') {
        Some((option, v)) if option_problem(option).is_none() && !v.is_empty() => None,
        _ => Some("must be \"--option=value\" (it also matches \"--option value\")".into()),
    }
}

fn domain_problem(value: &str) -> Option<String> {
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !value.starts_with('.')
        && !value.ends_with('.')
        && !value.contains("..")
        && value.contains('.');
    (!ok).then(|| {
        "must be a domain in lower case (\"supportxmr.com\"); names under it match too".into()
    })
}

fn parse_argv(raw: RawArgv, problems: &mut Collector<'_>) -> Argv {
    let argv = Argv {
        enabled: raw.enabled.unwrap_or(true),
        schemes: argv_list(raw.schemes, intel::SCHEMES, "scheme", |_| None, problems),
        flags: argv_list(raw.flags, intel::FLAGS, "flag", option_problem, problems),
        pool_options: argv_list(
            raw.pool_options,
            intel::POOL_OPTIONS,
            "pool option",
            option_problem,
            problems,
        ),
        option_values: argv_list(
            raw.option_values,
            intel::OPTION_VALUES,
            "option value",
            option_value_problem,
            problems,
        ),
        domains: argv_list(
            raw.domains,
            intel::DOMAINS,
            "domain",
            domain_problem,
            problems,
        ),
    };
    // One option, one meaning: the kernel finds the longest listed start of an argument and
    // acts on what that entry is.
    let mut meaning: HashMap<&str, &str> = HashMap::new();
    let options = argv
        .option_values
        .iter()
        .filter_map(|v| v.split_once('=').map(|(o, _)| (o, "an option with values")));
    let all = argv
        .schemes
        .iter()
        .map(|s| (s.as_str(), "a scheme"))
        .chain(argv.flags.iter().map(|s| (s.as_str(), "a flag")))
        .chain(
            argv.pool_options
                .iter()
                .map(|s| (s.as_str(), "a pool option")),
        )
        .chain(options);
    for (entry, what) in all {
        match meaning.get(entry) {
            Some(&before) if before != what => problems.at(0, |_| {
                format!("[argv] {} is both {before} and {what}", shown(entry))
            }),
            _ => {
                meaning.insert(entry, what);
            }
        }
    }
    let rules = meaning.len() + 1;
    if rules > MAX_ARG_RULES {
        problems.at(0, |_| {
            format!("[argv] has {rules} schemes, flags and options: the kernel map holds at most {MAX_ARG_RULES}")
        });
    }
    if argv.option_values.len() > MAX_ARG_VALUES {
        problems.at(0, |_| {
            format!("[argv] has more than {MAX_ARG_VALUES} option values")
        });
    }
    if argv.domains.len() > MAX_DOMAINS {
        problems.at(0, |_| format!("[argv] has more than {MAX_DOMAINS} domains"));
    }
    argv
}

fn name_problem(name: &str) -> Option<NameProblem> {
    if name.is_empty() {
        return Some(NameProblem::Empty);
    }
    if name.contains('/') {
        return Some(NameProblem::Slash);
    }
    if name.contains('\0') {
        return Some(NameProblem::Nul);
    }
    // A name with whitespace or a control character is almost always a paste or typing
    // accident ("xmrig " with a trailing space, a tab, a newline): it would silently never
    // match the program meant, and echoed in events and logs it reads like another name.
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(NameProblem::Invisible(c));
    }
    if name == "." || name == ".." {
        return Some(NameProblem::Dot);
    }
    if name.len() > NAME_MAX_BYTES {
        return Some(NameProblem::TooLong);
    }
    if name == PROBE_NAME {
        return Some(NameProblem::Reserved);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        Policy::parse(text)
            .unwrap_err()
            .list
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn valid_policy() {
        let p = Policy::parse("mode = \"audit\"\nnames = [\"xmrig\", \"lolMiner\"]\n").unwrap();
        assert_eq!(p.mode, Mode::Audit);
        assert_eq!(p.scope, Scope::All);
        assert_eq!(p.names, ["xmrig", "lolMiner"]);
        assert!(p.prefixes.is_empty() && !p.memfd_block && p.memfd_allow.is_empty());
    }

    #[test]
    fn prefixes_scope_and_memfd() {
        let p = Policy::parse(
            "mode = \"enforce\"\nscope = \"containers\"\nnames = [\"xmrig*\", \"minerd\"]\n\
             [memfd]\nblock = true\nallow = [\"memfd:runc_cloned:/proc/self/exe\"]\n",
        )
        .unwrap();
        assert_eq!(p.scope, Scope::Containers);
        assert_eq!(p.names, ["minerd"]);
        assert_eq!(p.prefixes, ["xmrig"]);
        assert!(p.memfd_block);
        assert_eq!(p.memfd_allow, ["memfd:runc_cloned:/proc/self/exe"]);
    }

    #[test]
    fn bad_patterns_and_memfd_entries_are_located() {
        assert_eq!(
            problems(
                "mode = \"enforce\"\nnames = [\"*\", \"x*y\", \"a/b*\"]\n[memfd]\nallow = [\"runc\", \"memfd:\"]\n"
            ),
            [
                "2:10: a lone \"*\" would match every program",
                "2:15: name \"x*y\": '*' is only allowed at the end, to make a prefix pattern",
                "2:22: name \"a/b\" contains '/': names are file names, not paths",
                "4:10: memfd allow entry \"runc\" must be a memfd's file name, \"memfd:<name>\", as events show it",
                "4:18: memfd allow entry \"memfd:\" must be a memfd's file name, \"memfd:<name>\", as events show it",
            ]
        );
        let p = problems("mode = \"enforce\"\nscope = \"pods\"\nnames = []\n");
        assert!(p[0].starts_with("2:9: unknown variant `pods`"), "{p:?}");
    }

    #[test]
    fn shipped_policy_is_valid_and_covers_the_seed() {
        let text = include_str!("../policy.toml");
        let p = Policy::parse(text).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        // The seed's Falco macro and Falco's miner_binaries.
        for name in [
            "xmrig",
            "xmrig-notls",
            "xmrig-cuda",
            "minerd",
            "cgminer",
            "bfgminer",
            "cpuminer",
            "ethminer",
            "t-rex",
            "nbminer",
            "lolminer",
            "phoenixminer",
            "gminer",
            "teamredminer",
            "xmr-stak",
            "minergate",
            "ccminer",
            "sgminer",
            "claymore",
            "nanominer",
            "bminer",
            "wildrig",
            "srbminer",
            "lolMiner",
            "PhoenixMiner",
            "SRBMiner-MULTI",
        ] {
            assert!(p.names.iter().any(|n| n == name), "{name} missing");
        }
        // Names real programs carry must never be blocked.
        for name in [
            "miner", "docker", "systemd", "nginx", "sh", "sleep", "pause",
        ] {
            assert!(
                !p.names.iter().any(|n| n == name),
                "{name} is a false positive"
            );
        }
    }

    #[test]
    fn unknown_key_is_located() {
        assert_eq!(
            problems("mode = \"enforce\"\nnames = []\nmodes = 1\n"),
            ["3:1: unknown field `modes`, expected one of `mode`, `scope`, `names`, `memfd`, `identity`, `mmap`, `argv`, `sha256`, `drift`, `behavior`"]
        );
    }

    #[test]
    fn argv_lists_default_to_the_intel_and_are_validated() {
        let p = Policy::parse("mode = \"enforce\"\nnames = []\n").unwrap();
        assert_eq!(p.argv, Argv::default());
        assert!(p.argv.enabled && p.argv.domains.iter().any(|d| d == "supportxmr.com"));
        let p = Policy::parse("mode = \"enforce\"\nnames = []\n[argv]\nflags = [\"--my-flag\"]\n")
            .unwrap();
        assert_eq!(p.argv.flags, ["--my-flag"]);
        assert_eq!(
            p.argv.schemes,
            Argv::default().schemes,
            "other lists keep their defaults"
        );
        assert_eq!(
            problems(
                "mode = \"enforce\"\nnames = []\n[argv]\nflags = [\"donate\", \"--a b\"]\n\
                 option_values = [\"--coin\"]\ndomains = [\"Pool.COM\", \".x.com\"]\n\
                 pool_options = [\"--donate-level\"]\n"
            ),
            [
                "4:10: [argv] flag \"donate\" must be an option: \"-x\", \"--name\", without '='",
                "4:20: [argv] flag \"--a b\" contains ' ': arguments are matched one by one",
                "5:18: [argv] option value \"--coin\" must be \"--option=value\" (it also matches \"--option value\")",
                "6:12: [argv] domain \"Pool.COM\" must be a domain in lower case (\"supportxmr.com\"); names under it match too",
                "6:24: [argv] domain \".x.com\" must be a domain in lower case (\"supportxmr.com\"); names under it match too",
            ]
        );
        assert_eq!(
            problems("mode = \"enforce\"\nnames = []\n[argv]\nflags = [\"-o\"]\n"),
            ["1:1: [argv] \"-o\" is both a flag and a pool option"]
        );
    }

    #[test]
    fn sha256_entries_are_64_hex_digits_kept_in_lower_case() {
        let digest = "AB".repeat(32);
        let p = Policy::parse(&format!(
            "mode = \"enforce\"\nnames = []\nsha256 = [\"{digest}\"]\n"
        ))
        .unwrap();
        assert_eq!(p.sha256, ["ab".repeat(32)]);
        assert_eq!(
            problems("mode = \"enforce\"\nnames = []\nsha256 = [\"abc\"]\n"),
            ["3:11: sha256 entry \"abc\" must be 64 hexadecimal digits (`minerguard hash FILE` prints them)"]
        );
    }

    #[test]
    fn randomx_follows_the_mode_unless_set() {
        let head = "mode = \"enforce\"\nnames = []\n";
        assert_eq!(Policy::parse(head).unwrap().behavior, Behavior::default());
        let p = Policy::parse(&format!("{head}[behavior]\nrandomx = \"audit\"\n"));
        assert_eq!(p.unwrap().behavior.randomx, Some(LayerMode::Audit));
        let bad = problems(&format!("{head}[behavior]\nrandomx = \"block\"\n"));
        assert!(
            bad[0].starts_with("4:11: unknown variant `block`"),
            "{bad:?}"
        );
    }

    /// A policy file and its drop-ins (name, text) in a directory of their own.
    fn layered(main: &str, dropins: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, main).unwrap();
        let d = dropin_dir(&path);
        std::fs::create_dir(&d).unwrap();
        for (name, text) in dropins {
            std::fs::write(d.join(name), text).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn dropins_add_to_the_lists_in_name_order() {
        let main =
            "mode = \"enforce\"\nnames = [\"xmrig\"]\n[argv]\ndomains = [\"pool.example\"]\n";
        let base = format!(
            "names = [\"base*\"]\nsha256 = [\"{}\"]\n[behavior]\nmsr = \"audit\"\n",
            "ab".repeat(32)
        );
        let (_dir, path) = layered(
            main,
            &[
                (
                    "20-site.toml",
                    "names = [\"site-miner\", \"xmrig\"]\n[argv]\ndomains = [\"evil.example\"]\n",
                ),
                ("10-base.toml", &base),
                ("notes.txt", "not a policy"),
            ],
        );
        let p = Policy::load(&path).unwrap();
        assert_eq!(p.names, ["xmrig", "site-miner"]);
        assert_eq!(p.prefixes, ["base"]);
        assert_eq!(p.sha256, ["ab".repeat(32)]);
        assert_eq!(p.behavior.msr, Some(LayerMode::Audit));
        assert_eq!(p.mode, Mode::Enforce);
        // Lists a drop-in gives are added; those it does not give add no defaults.
        assert_eq!(p.argv.domains, ["pool.example", "evil.example"]);
        assert_eq!(p.argv.flags, Argv::default().flags);
    }

    #[test]
    fn a_dropin_cannot_change_what_another_file_sets() {
        let main = "mode = \"enforce\"\nnames = []\n";
        let (_dir, path) = layered(main, &[("50-x.toml", "mode = \"audit\"\n")]);
        let err = Policy::load(&path).unwrap_err().to_string();
        let dropin = dropin_dir(&path).join("50-x.toml");
        assert!(
            err.contains(&dropin.display().to_string())
                && err.contains(&path.display().to_string())
                && err.contains("`mode` is \"audit\" here but \"enforce\""),
            "{err}"
        );
        // The same value again, or a key nobody set, is fine.
        let (_dir, path) = layered(
            main,
            &[
                ("a.toml", "mode = \"enforce\"\n"),
                ("b.toml", "scope = \"containers\"\n"),
            ],
        );
        assert_eq!(Policy::load(&path).unwrap().scope, Scope::Containers);
    }

    #[test]
    fn a_dropins_problems_are_located_in_it() {
        let (_dir, path) = layered(
            "mode = \"enforce\"\nnames = []\n",
            &[("bad.toml", "names = [\"ok\",\n  \"a b\"]\n")],
        );
        let err = Policy::load(&path).unwrap_err();
        assert_eq!(err.path, dropin_dir(&path).join("bad.toml"));
        assert_eq!(
            (err.problems.list[0].line, err.problems.list[0].column),
            (2, 3)
        );
    }

    #[test]
    fn tuning_allows_absolute_programs_and_cgroups() {
        let head = "mode = \"enforce\"\nnames = []\n[behavior]\nmsr = \"enforce\"\nhugepages = \"audit\"\n";
        let p = Policy::parse(&format!(
            "{head}allow_programs = [\"/usr/sbin/wrmsr\"]\nallow_cgroups = [\"/system.slice/tuned.service\"]\n"
        ))
        .unwrap();
        assert_eq!(p.behavior.msr, Some(LayerMode::Enforce));
        assert_eq!(p.behavior.hugepages, Some(LayerMode::Audit));
        assert_eq!(p.behavior.allow_programs, ["/usr/sbin/wrmsr"]);
        assert_eq!(p.behavior.allow_cgroups, ["/system.slice/tuned.service"]);
        assert_eq!(
            problems(&format!(
                "{head}allow_programs = [\"wrmsr\", \"/a/../b\"]\nallow_cgroups = [\"/x\", \"/x\"]\n"
            )),
            [
                "6:19: [behavior] allow_programs entry \"wrmsr\" must be an absolute path (\"/usr/sbin/wrmsr\")",
                "6:28: [behavior] allow_programs entry \"/a/../b\" must not contain \"..\" (paths are matched as the kernel resolves them)",
                "7:24: [behavior] allow_cgroups entry \"/x\" is listed twice",
            ]
        );
    }

    #[test]
    fn drift_is_off_by_default_and_allows_absolute_prefixes() {
        let p = Policy::parse("mode = \"enforce\"\nnames = []\n").unwrap();
        assert_eq!(p.drift.mode, DriftMode::Off);
        let p = Policy::parse(
            "mode = \"enforce\"\nnames = []\n[drift]\nmode = \"block\"\nallow = [\"/app/\"]\n",
        )
        .unwrap();
        assert_eq!(
            (p.drift.mode, p.drift.allow),
            (DriftMode::Block, vec!["/app/".into()])
        );
        assert_eq!(
            problems(
                "mode = \"enforce\"\nnames = []\n[drift]\nallow = [\"app/\", \"/a/../tmp/\"]\n"
            ),
            [
                "4:10: [drift] allow entry \"app/\" must be an absolute path prefix (\"/usr/local/bin/\")",
                "4:18: [drift] allow entry \"/a/../tmp/\" must not contain \"..\" (paths are matched as the kernel resolves them)",
            ]
        );
    }

    #[test]
    fn identity_and_mmap_are_on_unless_turned_off() {
        let p = Policy::parse("mode = \"enforce\"\nnames = [\"xmrig\"]\n").unwrap();
        assert!(p.identity && p.mmap);
        let p = Policy::parse(
            "mode = \"enforce\"\nnames = []\n[identity]\nenabled = false\n[mmap]\nenabled = false\n",
        )
        .unwrap();
        assert!(!p.identity && !p.mmap);
        assert_eq!(
            problems("mode = \"enforce\"\nnames = []\n[mmap]\nenable = false\n"),
            ["4:1: unknown field `enable`, expected `enabled`"]
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let p = problems("mode = \"enforce\"\nnames = [\"xmrig\", 7]\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("2:19: invalid type: integer `7`"), "{p:?}");
    }

    #[test]
    fn bad_mode_is_located() {
        let p = problems("mode = \"block\"\nnames = []\n");
        assert!(p[0].starts_with("1:8: unknown variant `block`"), "{p:?}");
    }

    #[test]
    fn bad_names_are_each_located() {
        let long = "a".repeat(NAME_MAX_BYTES + 1);
        let text = format!(
            "mode = \"enforce\"\nnames = [\n  \"xmrig\",\n  \"\",\n  \"/tmp/xmrig\",\n  \"a\\u0000b\",\n  \"{long}\",\n  \"xmrig\",\n]\n"
        );
        assert_eq!(
            problems(&text),
            [
                "4:3: empty name".to_string(),
                "5:3: name \"/tmp/xmrig\" contains '/': names are file names, not paths".into(),
                "6:3: name \"a\\0b\" contains a NUL byte".into(),
                format!("7:3: name \"{long}\" is 64 bytes long: the kernel map holds names of at most 63 bytes"),
                "8:3: duplicate name \"xmrig\" (first listed at 3:3)".into(),
            ]
        );
    }

    #[test]
    fn whitespace_and_control_characters_are_rejected() {
        let text = "mode = \"enforce\"\nnames = [\"xmrig \", \"xm\\trig\", \"a\\u00a0b\", \"x\\u001bm\", \"y\\u007f\", \"ok-name\"]\n";
        assert_eq!(
            problems(text),
            [
                "2:10: name \"xmrig \" contains whitespace (U+0020): names cannot contain whitespace or control characters",
                "2:20: name \"xm\\trig\" contains whitespace (U+0009): names cannot contain whitespace or control characters",
                "2:31: name \"a\\u{a0}b\" contains whitespace (U+00A0): names cannot contain whitespace or control characters",
                "2:43: name \"x\\u{1b}m\" contains a control character (U+001B): names cannot contain whitespace or control characters",
                "2:55: name \"y\\u{7f}\" contains a control character (U+007F): names cannot contain whitespace or control characters",
            ]
        );
        // Prefix patterns are names too.
        let p = problems("mode = \"enforce\"\nnames = [\"xm rig*\"]\n");
        assert!(
            p[0].starts_with("2:10: name \"xm rig\" contains whitespace"),
            "{p:?}"
        );
    }

    #[test]
    fn problems_are_bounded_and_names_cut() {
        let long = format!("{}/", "x".repeat(10_000));
        let mut text = String::from("mode = \"enforce\"\nnames = [\n");
        text += &format!("  \"{long}\",\n");
        for i in 0..1000 {
            text += &format!("  \"bad/{i}\",\n");
        }
        text += "]\n";
        let err = Policy::parse(&text).unwrap_err();
        assert_eq!(err.list.len(), MAX_PROBLEMS);
        assert_eq!(err.more, 1001 - MAX_PROBLEMS);
        let first = &err.list[0].message;
        assert_eq!(
            first,
            &format!(
                "name \"{}\"... contains '/': names are file names, not paths",
                "x".repeat(80)
            )
        );
        assert_eq!((err.list[19].line, err.list[19].column), (22, 3));
        let shown = PolicyError {
            path: "p.toml".into(),
            problems: err,
        }
        .to_string();
        assert_eq!(shown.lines().count(), MAX_PROBLEMS + 1);
        assert!(
            shown.ends_with("\np.toml: and 981 more problems"),
            "{shown}"
        );
    }

    #[test]
    fn too_many_strings_are_refused_before_parsing() {
        let entries = "\"/\",".repeat(MAX_STRINGS + 1);
        let p = problems(&format!("mode = \"enforce\"\nnames = [{entries}]\n"));
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("1:1: the policy holds about"), "{p:?}");
        // At the bound, it is parsed and every problem counted.
        let entries = "\"/\",".repeat(MAX_STRINGS - 1);
        let err = Policy::parse(&format!("mode = \"enforce\"\nnames = [{entries}]\n")).unwrap_err();
        assert_eq!(err.list.len() + err.more, MAX_STRINGS - 1);
    }

    #[test]
    fn parser_messages_are_cut() {
        let p = problems(&format!("mode = \"{}\"\nnames = []\n", "z".repeat(5000)));
        assert_eq!(p.len(), 1);
        assert!(p[0].len() < 400 && p[0].ends_with("..."), "{p:?}");
    }

    #[test]
    fn longest_name_fits() {
        let name = "b".repeat(NAME_MAX_BYTES);
        assert!(Policy::parse(&format!("mode = \"audit\"\nnames = [\"{name}\"]")).is_ok());
    }

    #[test]
    fn missing_keys_are_reported() {
        assert_eq!(
            problems(""),
            [
                "1:1: missing key `mode`: add mode = \"enforce\" or mode = \"audit\"",
                "1:1: missing key `names`: add names = [\"xmrig\", ...]",
            ]
        );
    }

    #[test]
    fn probe_name_is_reserved() {
        let p = problems(&format!("mode = \"audit\"\nnames = [\"{PROBE_NAME}\"]"));
        assert!(p[0].contains("reserved"), "{p:?}");
    }

    #[test]
    fn an_oversized_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let mut text = String::from("mode = \"enforce\"\nnames = []\n");
        while text.len() as u64 <= MAX_POLICY_BYTES {
            text.push_str("# a comment line, over and over, to make the file too large\n");
        }
        std::fs::write(&path, &text).unwrap();
        let e = Policy::load(&path).unwrap_err().to_string();
        assert!(e.contains("the policy is larger than"), "{e}");
        // Just under the bound, the same text is read and valid.
        text.truncate(MAX_POLICY_BYTES as usize - 100);
        let cut = text.rfind('\n').unwrap() + 1;
        std::fs::write(&path, &text[..cut]).unwrap();
        assert!(Policy::load(&path).is_ok());
    }

    #[test]
    fn error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "mode = \"enforce\"\nnames = [\"\"]\n").unwrap();
        let e = Policy::load(&path).unwrap_err().to_string();
        assert_eq!(e, format!("{}:2:10: empty name", path.display()));
    }
}
