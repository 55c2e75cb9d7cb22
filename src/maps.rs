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

impl From<Mode> for mg_mode {
    fn from(mode: Mode) -> mg_mode {
        match mode {
            Mode::Audit => mg_mode::MG_MODE_AUDIT,
            Mode::Enforce => mg_mode::MG_MODE_ENFORCE,
        }
    }
}

impl TryFrom<mg_mode> for Mode {
    type Error = anyhow::Error;
    fn try_from(mode: mg_mode) -> Result<Mode> {
        match mode {
            mg_mode::MG_MODE_AUDIT => Ok(Mode::Audit),
            mg_mode::MG_MODE_ENFORCE => Ok(Mode::Enforce),
            other => bail!("unknown mode {} in the kernel", other.0),
        }
    }
}

impl From<Scope> for mg_scope {
    fn from(scope: Scope) -> mg_scope {
        match scope {
            Scope::All => mg_scope::MG_SCOPE_ALL,
            Scope::Containers => mg_scope::MG_SCOPE_CONTAINERS,
        }
    }
}

impl TryFrom<mg_scope> for Scope {
    type Error = anyhow::Error;
    fn try_from(scope: mg_scope) -> Result<Scope> {
        match scope {
            mg_scope::MG_SCOPE_ALL => Ok(Scope::All),
            mg_scope::MG_SCOPE_CONTAINERS => Ok(Scope::Containers),
            other => bail!("unknown scope {} in the kernel", other.0),
        }
    }
}

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

/// The first half of moving one map from `old` to `new`: the caller adds everywhere before
/// it removes anywhere, so no entry of both is ever missing.
fn add(
    map: &dyn MapCore,
    table: &Table,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Result<()> {
    for entry in new.difference(old) {
        map.update(&(table.key)(entry), &(table.value)(entry), MapFlags::ANY)
            .with_context(|| format!("adding {entry:?} to the kernel {} map", table.what))?;
    }
    Ok(())
}

fn remove(
    map: &dyn MapCore,
    table: &Table,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Result<()> {
    for entry in old.difference(new) {
        map.delete(&(table.key)(entry))
            .with_context(|| format!("removing {entry:?} from the kernel {} map", table.what))?;
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
        add(self.names, &NAMES, &old.names, &new.names)?;
        add(self.prefixes, &PREFIXES, &old.prefixes, &new.prefixes)?;
        add(
            self.memfd_allow,
            &MEMFD_ALLOW,
            &old.memfd_allow,
            &new.memfd_allow,
        )
    }

    /// Removes what `old` has and `new` lacks, in every map.
    pub fn remove(&self, old: &Lists, new: &Lists) -> Result<()> {
        remove(self.names, &NAMES, &old.names, &new.names)?;
        remove(self.prefixes, &PREFIXES, &old.prefixes, &new.prefixes)?;
        remove(
            self.memfd_allow,
            &MEMFD_ALLOW,
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
            host_mnt_ns: raw.host_mnt_ns,
            agent_pid: (raw.agent_pid != 0).then_some(raw.agent_pid),
        })
    }
}

pub fn write_config(map: &dyn MapCore, config: Config) -> Result<()> {
    map.update(&0u32.to_ne_bytes(), bytes(&config.to_raw()), MapFlags::ANY)
        .context("writing the kernel config map")
}

pub fn config(map: &dyn MapCore) -> Result<Config> {
    let bytes = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the kernel config map")?
        .context("the kernel config map has no entry")?;
    Config::from_raw(from_bytes(&bytes)?)
}

/// Sets the mode; the program reads it at the next exec. Touches nothing else.
pub fn write_mode(map: &dyn MapCore, mode: Mode) -> Result<()> {
    map.update(
        &0u32.to_ne_bytes(),
        &mg_mode::from(mode).0.to_ne_bytes(),
        MapFlags::ANY,
    )
    .context("writing the kernel mode map")
}

pub fn mode(map: &dyn MapCore) -> Result<Mode> {
    let bytes = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the kernel mode map")?
        .context("the kernel mode map has no entry")?;
    let raw: [u8; 4] = bytes
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
