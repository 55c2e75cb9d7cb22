//! The policy as the kernel's maps hold it (lists, mode, scope), and the counters read back.
//! Keys and values are the contract's generated types (`contract`), written as their bytes.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use serde::Serialize;

use crate::contract::{
    bytes, from_bytes, mg_config, mg_config_flag, mg_mode, mg_name, mg_name_kind, mg_prefix,
    mg_scope, mg_stat, PROBE_NAME,
};
use crate::policy::{Mode, Policy, Scope};

/// Conversions between a policy enum and its contract enum, both ways (the kernel's value
/// may be one this build does not know: an error, never a guess).
macro_rules! kernel_enum {
    ($what:literal, $policy:ident <-> $kernel:ident { $($variant:ident = $value:ident),+ }) => {
        impl From<$policy> for $kernel {
            fn from(value: $policy) -> $kernel {
                match value {
                    $($policy::$variant => $kernel::$value),+
                }
            }
        }

        impl TryFrom<$kernel> for $policy {
            type Error = anyhow::Error;
            fn try_from(value: $kernel) -> Result<$policy> {
                match value {
                    $($kernel::$value => Ok($policy::$variant),)+
                    other => bail!("unknown {} {} in the kernel", $what, other.0),
                }
            }
        }
    };
}

kernel_enum!("mode", Mode <-> mg_mode { Audit = MG_MODE_AUDIT, Enforce = MG_MODE_ENFORCE });
kernel_enum!("scope", Scope <-> mg_scope { All = MG_SCOPE_ALL, Containers = MG_SCOPE_CONTAINERS });

/// The lists of a policy as the kernel holds them, one map each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub names: BTreeSet<String>,
    /// Without their trailing `*`.
    pub prefixes: BTreeSet<String>,
    pub memfd_allow: BTreeSet<String>,
}

impl Lists {
    pub fn from_policy(policy: &Policy) -> Lists {
        Lists {
            names: policy.names.iter().cloned().collect(),
            prefixes: policy.prefixes.iter().cloned().collect(),
            memfd_allow: policy.memfd_allow.iter().cloned().collect(),
        }
    }

    /// Entries that can match an exec: names and prefix patterns.
    pub fn patterns(&self) -> usize {
        self.names.len() + self.prefixes.len()
    }
}

/// How one list is stored in its map.
struct Table {
    what: &'static str,
    key: fn(&str) -> Vec<u8>,
    value: fn(&str) -> Vec<u8>,
    decode: fn(&[u8]) -> Result<String>,
}

fn name_key(name: &str) -> Vec<u8> {
    bytes(&mg_name::new(name)).to_vec()
}

fn name_text(key: &[u8]) -> Result<String> {
    Ok(from_bytes::<mg_name>(key)?.text())
}

const NAMES: Table = Table {
    what: "names",
    key: name_key,
    value: |_| mg_name_kind::MG_NAME_LISTED.0.to_ne_bytes().to_vec(),
    decode: name_text,
};
const PREFIXES: Table = Table {
    what: "prefixes",
    key: |p| bytes(&mg_prefix::new(p)).to_vec(),
    value: |p| (p.len() as u32).to_ne_bytes().to_vec(),
    decode: |key| Ok(from_bytes::<mg_prefix>(key)?.text()),
};
const MEMFD_ALLOW: Table = Table {
    what: "memfd allow",
    key: name_key,
    value: |_| 1u32.to_ne_bytes().to_vec(),
    decode: name_text,
};

/// One half of moving a map from `old` to `new`: adds what only `new` has, or removes what
/// only `old` has. Callers add in every map before they remove in any, so no entry of both
/// is ever missing.
fn change(
    map: &dyn MapCore,
    table: &Table,
    adding: bool,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Result<()> {
    let (from, to) = if adding { (old, new) } else { (new, old) };
    for entry in to.difference(from) {
        let key = (table.key)(entry);
        let done = if adding {
            map.update(&key, &(table.value)(entry), MapFlags::ANY)
        } else {
            // Already absent is removed: a start that failed midway is rolled back with this.
            match map.delete(&key) {
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        done.with_context(|| {
            let verb = if adding { "adding" } else { "removing" };
            format!("{verb} {entry:?} in the kernel {} map", table.what)
        })?;
    }
    Ok(())
}

fn read(map: &dyn MapCore, table: &Table) -> BTreeSet<String> {
    map.keys()
        .filter_map(|key| (table.decode)(&key).ok())
        .filter(|entry| entry != PROBE_NAME)
        .collect()
}

/// The three list maps of one loaded (or pinned) program.
pub struct ListMaps<'a> {
    pub names: &'a dyn MapCore,
    pub prefixes: &'a dyn MapCore,
    pub memfd_allow: &'a dyn MapCore,
}

impl ListMaps<'_> {
    /// What the maps hold, e.g. what a previous agent left.
    pub fn read(&self) -> Lists {
        Lists {
            names: read(self.names, &NAMES),
            prefixes: read(self.prefixes, &PREFIXES),
            memfd_allow: read(self.memfd_allow, &MEMFD_ALLOW),
        }
    }

    /// Adds what `new` has and `old` lacks, in every map.
    pub fn add(&self, old: &Lists, new: &Lists) -> Result<()> {
        self.change(true, old, new)
    }

    /// Removes what `old` has and `new` lacks, in every map.
    pub fn remove(&self, old: &Lists, new: &Lists) -> Result<()> {
        self.change(false, old, new)
    }

    fn change(&self, adding: bool, old: &Lists, new: &Lists) -> Result<()> {
        change(self.names, &NAMES, adding, &old.names, &new.names)?;
        change(
            self.prefixes,
            &PREFIXES,
            adding,
            &old.prefixes,
            &new.prefixes,
        )?;
        change(
            self.memfd_allow,
            &MEMFD_ALLOW,
            adding,
            &old.memfd_allow,
            &new.memfd_allow,
        )
    }
}

pub fn insert_probe(names: &dyn MapCore) -> Result<()> {
    names
        .update(
            &name_key(PROBE_NAME),
            &mg_name_kind::MG_NAME_PROBE.0.to_ne_bytes(),
            MapFlags::ANY,
        )
        .context("adding the probe name to the kernel names map")
}

pub fn delete_probe(names: &dyn MapCore) -> Result<()> {
    names
        .delete(&name_key(PROBE_NAME))
        .context("removing the probe name from the kernel names map")
}

/// The config map's single entry (the mode has a map of its own: `write_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub scope: Scope,
    pub memfd_block: bool,
    /// The prefixes map has entries (a lookup there is skipped otherwise).
    pub has_prefixes: bool,
    /// Remember files blocked by name; deny them under any other name.
    pub identity: bool,
    /// Check files mapped executable too.
    pub mmap: bool,
    /// Mount namespace inode of PID 1: processes in it are the host's.
    pub host_mnt_ns: u32,
    /// The daemon that owns the pinned program, if one runs.
    pub agent_pid: Option<u32>,
}

impl Config {
    fn to_raw(self) -> mg_config {
        let mut flags = 0;
        if self.memfd_block {
            flags |= mg_config_flag::MG_CONFIG_MEMFD_BLOCK.0;
        }
        if self.has_prefixes {
            flags |= mg_config_flag::MG_CONFIG_PREFIXES.0;
        }
        if self.identity {
            flags |= mg_config_flag::MG_CONFIG_IDENTITY.0;
        }
        if self.mmap {
            flags |= mg_config_flag::MG_CONFIG_MMAP.0;
        }
        mg_config {
            agent_pid: self.agent_pid.unwrap_or(0),
            scope: self.scope.into(),
            flags: mg_config_flag(flags),
            host_mnt_ns: self.host_mnt_ns,
        }
    }

    fn from_raw(raw: mg_config) -> Result<Config> {
        let flags = raw.flags.0;
        Ok(Config {
            scope: raw.scope.try_into()?,
            memfd_block: flags & mg_config_flag::MG_CONFIG_MEMFD_BLOCK.0 != 0,
            has_prefixes: flags & mg_config_flag::MG_CONFIG_PREFIXES.0 != 0,
            identity: flags & mg_config_flag::MG_CONFIG_IDENTITY.0 != 0,
            mmap: flags & mg_config_flag::MG_CONFIG_MMAP.0 != 0,
            host_mnt_ns: raw.host_mnt_ns,
            agent_pid: (raw.agent_pid != 0).then_some(raw.agent_pid),
        })
    }
}

/// The value of a single-entry array map (config, mode); `what` names it in errors.
fn single(map: &dyn MapCore, what: &str) -> Result<Vec<u8>> {
    map.lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading the kernel {what} map"))?
        .with_context(|| format!("the kernel {what} map has no entry"))
}

fn write_single(map: &dyn MapCore, value: &[u8], what: &str) -> Result<()> {
    map.update(&0u32.to_ne_bytes(), value, MapFlags::ANY)
        .with_context(|| format!("writing the kernel {what} map"))
}

pub fn write_config(map: &dyn MapCore, config: Config) -> Result<()> {
    write_single(map, bytes(&config.to_raw()), "config")
}

pub fn config(map: &dyn MapCore) -> Result<Config> {
    Config::from_raw(from_bytes(&single(map, "config")?)?)
}

/// Sets the mode; the program reads it at the next exec. Touches nothing else.
pub fn write_mode(map: &dyn MapCore, mode: Mode) -> Result<()> {
    write_single(map, &mg_mode::from(mode).0.to_ne_bytes(), "mode")
}

pub fn mode(map: &dyn MapCore) -> Result<Mode> {
    let raw: [u8; 4] = single(map, "mode")?
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .context("the kernel mode entry is too short")?;
    Mode::try_from(mg_mode(u32::from_ne_bytes(raw)))
}

/// The program's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub checked: u64,
    pub blocked: u64,
    pub audited: u64,
    pub lost: u64,
}

pub fn stats(map: &dyn MapCore) -> Result<Stats> {
    let read = |stat: mg_stat| -> Result<u64> {
        let per_cpu = map
            .lookup_percpu(&stat.0.to_ne_bytes(), MapFlags::ANY)
            .context("reading the kernel counters")?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_ne_bytes)
            .sum())
    };
    Ok(Stats {
        checked: read(mg_stat::MG_STAT_CHECKED)?,
        blocked: read(mg_stat::MG_STAT_BLOCKED)?,
        audited: read(mg_stat::MG_STAT_AUDITED)?,
        lost: read(mg_stat::MG_STAT_LOST)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never_written() -> Config {
        Config {
            scope: Scope::All,
            memfd_block: false,
            has_prefixes: false,
            identity: false,
            mmap: false,
            host_mnt_ns: 0,
            agent_pid: None,
        }
    }

    #[test]
    fn config_encodes_enforce_as_zero() {
        // An entry never written reads as zero: it must mean enforce (fail closed), scope
        // all, no flags.
        assert!(bytes(&never_written().to_raw()).iter().all(|&b| b == 0));
        assert_eq!(Mode::try_from(mg_mode(0)).unwrap(), Mode::Enforce);
        assert_eq!(Mode::try_from(mg_mode(1)).unwrap(), Mode::Audit);
        assert!(Mode::try_from(mg_mode(7)).is_err());
    }

    #[test]
    fn config_round_trips() {
        let config = Config {
            scope: Scope::Containers,
            memfd_block: true,
            has_prefixes: true,
            identity: true,
            mmap: true,
            host_mnt_ns: 4026531841,
            agent_pid: Some(42),
        };
        let raw: mg_config = from_bytes(bytes(&config.to_raw())).unwrap();
        assert_eq!(Config::from_raw(raw).unwrap(), config);
    }

    #[test]
    fn list_keys_decode_to_their_entries() {
        assert_eq!((NAMES.decode)(&(NAMES.key)("minerd")).unwrap(), "minerd");
        assert_eq!(
            (PREFIXES.decode)(&(PREFIXES.key)("xmrig")).unwrap(),
            "xmrig"
        );
        assert_eq!((PREFIXES.value)("xmrig"), 5u32.to_ne_bytes());
    }
}
