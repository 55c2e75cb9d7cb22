//! The kernel maps: the policy written in (lists, mode, scope), counters read back. Keys and values
//! are the generated contract types of `src/bpf/minerguard.h`, so both sides share one layout.

use std::collections::BTreeSet;
use std::mem::size_of;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::bpf::types::{
    mg_config, mg_config_flag, mg_mode, mg_name, mg_name_kind, mg_scope, mg_stat,
};
use crate::policy::{Mode, Policy, Scope};

/// Longest listed name in bytes (the key keeps one byte for the NUL).
pub const NAME_MAX_BYTES: usize = size_of::<mg_name>() - 1;
/// The maps' `max_entries` (`MG_MAX_*`); a test holds them together.
pub const MAX_NAMES: usize = 65536;
pub const MAX_PREFIXES: usize = 4096;
pub const MAX_MEMFD_ALLOW: usize = 256;
/// What the kernel prefixes a memfd's name with in its dentry.
pub const MEMFD_PREFIX: &str = "memfd:";
/// The name of the daemon's probe memfd. The program matches a memfd by the name its
/// creator chose (its dentry is `memfd:minerguard-lsm-probe`), so this is the key.
pub const PROBE_NAME: &str = "minerguard-lsm-probe";

fn name_key(name: &str) -> Vec<u8> {
    let mut key = vec![0u8; size_of::<mg_name>()];
    // The policy validator has already refused longer names; cutting here would only ever
    // make a key that cannot match.
    let len = name.len().min(NAME_MAX_BYTES);
    key[..len].copy_from_slice(&name.as_bytes()[..len]);
    key
}

fn name_from_key(key: &[u8]) -> String {
    let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

/// An LPM trie key: the pattern's length in bits, then the pattern.
fn prefix_key(prefix: &str) -> Vec<u8> {
    let mut key = ((prefix.len().min(NAME_MAX_BYTES) * 8) as u32)
        .to_ne_bytes()
        .to_vec();
    key.extend(name_key(prefix));
    key
}

fn prefix_from_key(key: &[u8]) -> String {
    let bits = key
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes) as usize;
    let name = key.get(4..).unwrap_or_default();
    String::from_utf8_lossy(&name[..(bits / 8).min(name.len())]).into_owned()
}

fn kind_value(kind: mg_name_kind) -> [u8; 4] {
    kind.0.to_ne_bytes()
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
    decode: fn(&[u8]) -> String,
}

const NAMES: Table = Table {
    what: "names",
    key: name_key,
    value: |_| kind_value(mg_name_kind::MG_NAME_LISTED).to_vec(),
    decode: name_from_key,
};
const PREFIXES: Table = Table {
    what: "prefixes",
    key: prefix_key,
    value: |p| (p.len() as u32).to_ne_bytes().to_vec(),
    decode: prefix_from_key,
};
const MEMFD_ALLOW: Table = Table {
    what: "memfd allow",
    key: name_key,
    value: |_| 1u32.to_ne_bytes().to_vec(),
    decode: name_from_key,
};

/// Moves one map from `old` to `new` with no moment in which an entry of `new` is missing:
/// additions land before any removal.
fn replace(
    map: &dyn MapCore,
    table: &Table,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Result<()> {
    for entry in new.difference(old) {
        map.update(&(table.key)(entry), &(table.value)(entry), MapFlags::ANY)
            .with_context(|| format!("adding {entry:?} to the kernel {} map", table.what))?;
    }
    for entry in old.difference(new) {
        map.delete(&(table.key)(entry))
            .with_context(|| format!("removing {entry:?} from the kernel {} map", table.what))?;
    }
    Ok(())
}

fn read(map: &dyn MapCore, table: &Table) -> BTreeSet<String> {
    map.keys()
        .map(|key| (table.decode)(&key))
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

    /// Moves every map from `old` to `new`, additions first.
    pub fn replace(&self, old: &Lists, new: &Lists) -> Result<()> {
        replace(self.names, &NAMES, &old.names, &new.names)?;
        replace(self.prefixes, &PREFIXES, &old.prefixes, &new.prefixes)?;
        replace(
            self.memfd_allow,
            &MEMFD_ALLOW,
            &old.memfd_allow,
            &new.memfd_allow,
        )
    }
}

pub fn insert_probe(map: &dyn MapCore) -> Result<()> {
    map.update(
        &name_key(PROBE_NAME),
        &kind_value(mg_name_kind::MG_NAME_PROBE),
        MapFlags::ANY,
    )
    .context("adding the probe name to the kernel names map")
}

pub fn delete_probe(map: &dyn MapCore) -> Result<()> {
    map.delete(&name_key(PROBE_NAME))
        .context("removing the probe name from the kernel names map")
}

/// The config map's single entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub scope: Scope,
    pub memfd_block: bool,
    /// The prefixes map has entries (a lookup there is skipped otherwise).
    pub has_prefixes: bool,
    /// Mount namespace inode of PID 1: processes in it are the host's.
    pub host_mnt_ns: u32,
    /// The daemon that owns the pinned program, if one runs.
    pub agent_pid: Option<u32>,
}

fn config_bytes(c: Config) -> Vec<u8> {
    let mut flags = 0;
    if c.memfd_block {
        flags |= mg_config_flag::MG_CONFIG_MEMFD_BLOCK.0;
    }
    if c.has_prefixes {
        flags |= mg_config_flag::MG_CONFIG_PREFIXES.0;
    }
    let raw = mg_config {
        mode: match c.mode {
            Mode::Audit => mg_mode::MG_MODE_AUDIT,
            Mode::Enforce => mg_mode::MG_MODE_ENFORCE,
        },
        agent_pid: c.agent_pid.unwrap_or(0),
        scope: match c.scope {
            Scope::All => mg_scope::MG_SCOPE_ALL,
            Scope::Containers => mg_scope::MG_SCOPE_CONTAINERS,
        },
        flags: mg_config_flag(flags),
        host_mnt_ns: c.host_mnt_ns,
        reserved: 0,
    };
    [
        raw.mode.0,
        raw.agent_pid,
        raw.scope.0,
        raw.flags.0,
        raw.host_mnt_ns,
        raw.reserved,
    ]
    .iter()
    .flat_map(|w| w.to_ne_bytes())
    .collect()
}

pub fn mode_from_kernel(mode: mg_mode) -> Result<Mode> {
    match mode {
        mg_mode::MG_MODE_AUDIT => Ok(Mode::Audit),
        mg_mode::MG_MODE_ENFORCE => Ok(Mode::Enforce),
        other => bail!("unknown mode {} in the kernel", other.0),
    }
}

pub fn write_config(map: &dyn MapCore, config: Config) -> Result<()> {
    map.update(&0u32.to_ne_bytes(), &config_bytes(config), MapFlags::ANY)
        .context("writing the kernel config map")
}

pub fn config(map: &dyn MapCore) -> Result<Config> {
    let bytes = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the kernel config map")?
        .context("the kernel config map has no entry")?;
    let word = |i: usize| -> Result<u32> {
        let raw: [u8; 4] = bytes
            .get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok())
            .context("the kernel config entry is too short")?;
        Ok(u32::from_ne_bytes(raw))
    };
    let scope = match mg_scope(word(2)?) {
        mg_scope::MG_SCOPE_ALL => Scope::All,
        mg_scope::MG_SCOPE_CONTAINERS => Scope::Containers,
        other => bail!("unknown scope {} in the kernel", other.0),
    };
    let flags = word(3)?;
    let pid = word(1)?;
    Ok(Config {
        mode: mode_from_kernel(mg_mode(word(0)?))?,
        scope,
        memfd_block: flags & mg_config_flag::MG_CONFIG_MEMFD_BLOCK.0 != 0,
        has_prefixes: flags & mg_config_flag::MG_CONFIG_PREFIXES.0 != 0,
        host_mnt_ns: word(4)?,
        agent_pid: (pid != 0).then_some(pid),
    })
}

/// Changes the mode, keeping the rest of the entry.
pub fn set_mode(map: &dyn MapCore, mode: Mode) -> Result<Config> {
    let before = config(map)?;
    write_config(map, Config { mode, ..before })?;
    Ok(before)
}

/// The program's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    use crate::bpf::MinerguardSkelBuilder;
    use libbpf_rs::skel::SkelBuilder;
    use std::mem::MaybeUninit;

    #[test]
    fn contract_matches_the_bpf_object() {
        // Opening parses the ELF and BTF only: no privileges or BPF LSM needed.
        let mut storage = MaybeUninit::uninit();
        let skel = MinerguardSkelBuilder::default().open(&mut storage).unwrap();
        assert_eq!(skel.maps.mg_names.max_entries() as usize, MAX_NAMES);
        assert_eq!(skel.maps.mg_prefixes.max_entries() as usize, MAX_PREFIXES);
        assert_eq!(
            skel.maps.mg_memfd_allow.max_entries() as usize,
            MAX_MEMFD_ALLOW
        );
        assert_eq!(
            skel.maps.mg_prefixes.key_size() as usize,
            prefix_key("x").len()
        );
        assert_eq!(skel.maps.mg_names.key_size() as usize, NAME_MAX_BYTES + 1);
        let config = Config {
            agent_pid: Some(1),
            ..never_written()
        };
        assert_eq!(
            skel.maps.mg_config.value_size() as usize,
            config_bytes(config).len()
        );
        assert_eq!(
            skel.maps.mg_stats.max_entries(),
            mg_stat::MG_STAT_MAX.0,
            "one counter per mg_stat"
        );
    }

    fn never_written() -> Config {
        Config {
            mode: Mode::Enforce,
            scope: Scope::All,
            memfd_block: false,
            has_prefixes: false,
            host_mnt_ns: 0,
            agent_pid: None,
        }
    }

    #[test]
    fn prefix_keys_round_trip() {
        let key = prefix_key("xmrig");
        assert_eq!(&key[..4], &40u32.to_ne_bytes());
        assert_eq!(&key[4..9], b"xmrig");
        assert_eq!(key.len(), 4 + 64);
        assert_eq!(prefix_from_key(&key), "xmrig");
        assert_eq!(name_from_key(&name_key("minerd")), "minerd");
    }

    #[test]
    fn keys_are_zero_padded() {
        let key = name_key("xmrig");
        assert_eq!(key.len(), 64);
        assert_eq!(&key[..5], b"xmrig");
        assert!(key[5..].iter().all(|&b| b == 0));
    }

    #[test]
    fn config_encodes_enforce_as_zero() {
        // An entry never written reads as zero: it must mean enforce (fail closed).
        assert_eq!(config_bytes(never_written()), [0; 24]);
        assert_eq!(mode_from_kernel(mg_mode(0)).unwrap(), Mode::Enforce);
        assert_eq!(mode_from_kernel(mg_mode(1)).unwrap(), Mode::Audit);
        assert!(mode_from_kernel(mg_mode(7)).is_err());
    }
}
