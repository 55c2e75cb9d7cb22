//! The kernel maps: the policy written in (names, mode), counters read back. Keys and values
//! are the generated contract types of `src/bpf/minerguard.h`, so both sides share one layout.

use std::collections::BTreeSet;
use std::mem::size_of;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use crate::bpf::types::{mg_config, mg_mode, mg_name, mg_name_kind, mg_stat};
use crate::policy::Mode;

/// Longest listed name in bytes (the key keeps one byte for the NUL).
pub const NAME_MAX_BYTES: usize = size_of::<mg_name>() - 1;
/// The names map's `max_entries` (`MG_MAX_NAMES`); a test holds the two together.
pub const MAX_NAMES: usize = 65536;
/// The dentry name of the daemon's probe memfd (the kernel prefixes memfd names with `memfd:`).
pub const PROBE_NAME: &str = "memfd:minerguard-lsm-probe";
pub const PROBE_MEMFD_NAME: &str = "minerguard-lsm-probe";

fn name_key(name: &str) -> Vec<u8> {
    let mut key = vec![0u8; size_of::<mg_name>()];
    // The policy validator has already refused longer names; cutting here would only ever
    // make a key that cannot match.
    let len = name.len().min(NAME_MAX_BYTES);
    key[..len].copy_from_slice(&name.as_bytes()[..len]);
    key
}

fn kind_value(kind: mg_name_kind) -> [u8; 4] {
    kind.0.to_ne_bytes()
}

/// Adds every name of `names` that is not in the map yet.
pub fn insert_names<'a>(map: &dyn MapCore, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for name in names {
        map.update(
            &name_key(name),
            &kind_value(mg_name_kind::MG_NAME_LISTED),
            MapFlags::ANY,
        )
        .with_context(|| format!("adding {name:?} to the kernel names map"))?;
    }
    Ok(())
}

pub fn delete_names<'a>(map: &dyn MapCore, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    for name in names {
        map.delete(&name_key(name))
            .with_context(|| format!("removing {name:?} from the kernel names map"))?;
    }
    Ok(())
}

/// Moves the map from `old` to `new` with no moment in which a name of `new` is missing:
/// additions land before any removal.
pub fn replace_names(
    map: &dyn MapCore,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Result<()> {
    insert_names(map, new.difference(old).map(String::as_str))?;
    delete_names(map, old.difference(new).map(String::as_str))
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
    /// The daemon that owns the pinned program, if one runs.
    pub agent_pid: Option<u32>,
}

fn config_bytes(config: Config) -> Vec<u8> {
    let raw = mg_config {
        mode: match config.mode {
            Mode::Audit => mg_mode::MG_MODE_AUDIT,
            Mode::Enforce => mg_mode::MG_MODE_ENFORCE,
        },
        agent_pid: config.agent_pid.unwrap_or(0),
    };
    let mut bytes = Vec::with_capacity(size_of::<mg_config>());
    bytes.extend_from_slice(&raw.mode.0.to_ne_bytes());
    bytes.extend_from_slice(&raw.agent_pid.to_ne_bytes());
    bytes
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
    let word = |at: usize| -> Result<u32> {
        let raw: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .context("the kernel config entry is too short")?;
        Ok(u32::from_ne_bytes(raw))
    };
    let pid = word(4)?;
    Ok(Config {
        mode: mode_from_kernel(mg_mode(word(0)?))?,
        agent_pid: (pid != 0).then_some(pid),
    })
}

/// Changes the mode, keeping the rest of the entry.
pub fn set_mode(map: &dyn MapCore, mode: Mode) -> Result<Config> {
    let before = config(map)?;
    write_config(map, Config { mode, ..before })?;
    Ok(before)
}

/// The listed names in the map (the probe's entry aside), e.g. those a previous agent left.
pub fn names(map: &dyn MapCore) -> BTreeSet<String> {
    map.keys()
        .map(|key| {
            let end = key.iter().position(|&b| b == 0).unwrap_or(key.len());
            String::from_utf8_lossy(&key[..end]).into_owned()
        })
        .filter(|name| name != PROBE_NAME)
        .collect()
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
        assert_eq!(skel.maps.mg_names.key_size() as usize, NAME_MAX_BYTES + 1);
        let config = Config {
            mode: Mode::Audit,
            agent_pid: Some(1),
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

    #[test]
    fn keys_are_zero_padded() {
        let key = name_key("xmrig");
        assert_eq!(key.len(), 64);
        assert_eq!(&key[..5], b"xmrig");
        assert!(key[5..].iter().all(|&b| b == 0));
        assert!(PROBE_NAME.ends_with(PROBE_MEMFD_NAME));
    }

    #[test]
    fn config_encodes_enforce_as_zero() {
        // An entry never written reads as zero: it must mean enforce (fail closed).
        let never_written = Config {
            mode: Mode::Enforce,
            agent_pid: None,
        };
        assert_eq!(config_bytes(never_written), [0; 8]);
        assert_eq!(mode_from_kernel(mg_mode(0)).unwrap(), Mode::Enforce);
        assert_eq!(mode_from_kernel(mg_mode(1)).unwrap(), Mode::Audit);
        assert!(mode_from_kernel(mg_mode(7)).is_err());
    }
}
