//! `policy.toml`: parsing and validation. Nothing here touches the kernel, so a policy is
//! always checked whole before any map is changed.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::contract::{
    MAX_MEMFD_ALLOW, MAX_NAMES, MAX_PREFIXES, MEMFD_PREFIX, NAME_MAX_BYTES, PROBE_NAME,
};

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
}

/// Every problem found in one policy file, each with its position.
#[derive(Debug)]
pub struct PolicyError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
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
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    mode: Option<Spanned<Mode>>,
    scope: Option<Scope>,
    names: Option<Vec<Spanned<String>>>,
    memfd: Option<RawMemfd>,
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

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            path: path.to_owned(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the policy: {e}"),
            }],
        })?;
        Policy::parse(&text).map_err(|problems| PolicyError {
            path: path.to_owned(),
            problems,
        })
    }

    pub fn parse(text: &str) -> Result<Policy, Vec<Problem>> {
        let at = |span: Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            Problem {
                line,
                column,
                message,
            }
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_owned();
            vec![at(e.span().unwrap_or(0..0), message)]
        })?;

        let mut problems = Vec::new();
        let mode = match raw.mode {
            Some(mode) => *mode.get_ref(),
            None => {
                problems.push(at(
                    0..0,
                    "missing key `mode`: add mode = \"enforce\" or mode = \"audit\"".into(),
                ));
                Mode::Enforce
            }
        };
        let Some(raw_names) = raw.names else {
            problems.push(at(
                0..0,
                "missing key `names`: add names = [\"xmrig\", ...]".into(),
            ));
            return Err(problems);
        };
        let mut names = Vec::new();
        let mut prefixes = Vec::new();
        let mut first_seen: HashMap<&str, Range<usize>> = HashMap::new();
        for entry in &raw_names {
            let value = entry.get_ref().as_str();
            let (name, is_prefix) = match value.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (value, false),
            };
            let problem = if name.contains('*') {
                Some(format!(
                    "name {value:?}: '*' is only allowed at the end, to make a prefix pattern"
                ))
            } else if is_prefix && name.is_empty() {
                Some("a lone \"*\" would match every program".to_string())
            } else {
                name_problem(name)
            };
            if let Some(message) = problem {
                problems.push(at(entry.span(), message));
            } else if let Some(first) = first_seen.get(value) {
                let (line, column) = line_column(text, first.start);
                problems.push(at(
                    entry.span(),
                    format!("duplicate name {value:?} (first listed at {line}:{column})"),
                ));
            } else {
                first_seen.insert(value, entry.span());
                if is_prefix {
                    prefixes.push(name.to_owned());
                } else {
                    names.push(name.to_owned());
                }
            }
        }
        if names.len() > MAX_NAMES {
            problems.push(at(
                0..0,
                format!(
                    "too many names ({}): the kernel map holds at most {MAX_NAMES}",
                    names.len()
                ),
            ));
        }
        if prefixes.len() > MAX_PREFIXES {
            problems.push(at(
                0..0,
                format!(
                    "too many prefix patterns ({}): the kernel map holds at most {MAX_PREFIXES}",
                    prefixes.len()
                ),
            ));
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
                    "memfd allow entry {value:?} must be a memfd's file name, \"memfd:<name>\", as events show it"
                ))
            } else if value.contains('\0') {
                Some(format!("memfd allow entry {value:?} contains a NUL byte"))
            } else if value.len() > NAME_MAX_BYTES {
                Some(format!(
                    "memfd allow entry {value:?} is {} bytes long: the kernel map holds at most {NAME_MAX_BYTES}",
                    value.len()
                ))
            } else if memfd_allow.contains(value) {
                Some(format!("duplicate memfd allow entry {value:?}"))
            } else {
                None
            };
            match problem {
                Some(message) => problems.push(at(entry.span(), message)),
                None => memfd_allow.push(entry.into_inner()),
            }
        }
        if memfd_allow.len() > MAX_MEMFD_ALLOW {
            problems.push(at(
                0..0,
                format!("too many memfd allow entries: at most {MAX_MEMFD_ALLOW}"),
            ));
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Policy {
            mode,
            scope: raw.scope.unwrap_or_default(),
            names,
            prefixes,
            memfd_block: memfd.block.unwrap_or(false),
            memfd_allow,
        })
    }
}

/// Why `name` cannot be a listed name, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty name".into());
    }
    if name.contains('/') {
        return Some(format!(
            "name {name:?} contains '/': names are file names, not paths"
        ));
    }
    if name.contains('\0') {
        return Some(format!("name {name:?} contains a NUL byte"));
    }
    if name == "." || name == ".." {
        return Some(format!("name {name:?} can never be the name of a program"));
    }
    if name.len() > NAME_MAX_BYTES {
        return Some(format!(
            "name {name:?} is {} bytes long: the kernel map holds names of at most {NAME_MAX_BYTES} bytes",
            name.len()
        ));
    }
    if name == PROBE_NAME {
        return Some(format!(
            "name {name:?} is reserved for minerguard's own BPF LSM probe"
        ));
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        Policy::parse(text)
            .unwrap_err()
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
            ["3:1: unknown field `modes`, expected one of `mode`, `scope`, `names`, `memfd`"]
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
    fn error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "mode = \"enforce\"\nnames = [\"\"]\n").unwrap();
        let e = Policy::load(&path).unwrap_err().to_string();
        assert_eq!(e, format!("{}:2:10: empty name", path.display()));
    }
}
