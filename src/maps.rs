//! The policy as the kernel's maps hold it (lists, mode, scope), and the counters read back.
//! Keys and values are the contract's generated types (`contract`), written as their bytes.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use serde::Serialize;

use crate::contract::{
    bytes, from_bytes, mg_allow_key, mg_allow_kind, mg_arg_kind, mg_arg_rule, mg_arg_value,
    mg_config, mg_config_flag, mg_identity, mg_mode, mg_name, mg_name_kind, mg_prefix, mg_scope,
    mg_sha256, mg_stat, mg_tier, Tier, ARGV_PROBE, PROBE_NAME,
};
use crate::policy::{Behavior, LayerMode, Mode, Policy, Scope};

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
    /// The argument layer's rules, each `KIND:TEXT` (`flag:--donate-level`, see `ArgRule`).
    pub arg_rules: BTreeSet<String>,
    /// `--coin=monero`.
    pub arg_values: BTreeSet<String>,
    /// Pool domains, none under another (it would never be the longest match's only reason).
    pub domains: BTreeSet<String>,
    /// SHA-256 digests, lower-case hex.
    pub hashes: BTreeSet<String>,
    /// Path prefixes from which drift is allowed.
    pub drift_allow: BTreeSet<String>,
    /// Programs and cgroups that may tune (`[behavior] allow_*`), as the kernel knows them:
    /// `program:DEV:INO` (a file's device in the kernel's encoding, its inode) or `cgroup:ID`.
    pub tuning_allow: BTreeSet<String>,
}

/// Where the cgroup v2 hierarchy is mounted: `allow_cgroups` paths are under it.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `[behavior] allow_*` resolved to what the kernel compares (see `Lists::tuning_allow`), and
/// one line for each entry that does not exist on this node (a tool not installed here is not
/// an error: a fleet shares one policy).
pub fn resolve_tuning_allow(behavior: &Behavior) -> (BTreeSet<String>, Vec<String>) {
    use nix::sys::stat::{major, minor};
    use std::os::unix::fs::MetadataExt;
    let (mut resolved, mut missing) = (BTreeSet::new(), Vec::new());
    for path in &behavior.allow_programs {
        match std::fs::metadata(path) {
            // The kernel's dev_t: the major above 20 bits of minor (kdev_t.h).
            Ok(m) => {
                let dev = (major(m.dev()) << 20) | minor(m.dev());
                resolved.insert(format!("program:{dev}:{}", m.ino()));
            }
            Err(e) => missing.push(format!("allow_programs entry {path}: {e}")),
        }
    }
    for path in &behavior.allow_cgroups {
        let full = format!("{CGROUP_ROOT}{}", path.trim_end_matches('/'));
        match std::fs::metadata(&full) {
            // A cgroup v2's id is its directory's inode number.
            Ok(m) => {
                resolved.insert(format!("cgroup:{}", m.ino()));
            }
            Err(e) => missing.push(format!("allow_cgroups entry {path} ({full}): {e}")),
        }
    }
    (resolved, missing)
}

/// A `Lists::tuning_allow` entry as its map key (anything unparsable: a key that matches
/// nothing, never written by `resolve_tuning_allow`).
fn tuning_allow_key(entry: &str) -> Vec<u8> {
    let mut key = mg_allow_key::default();
    let mut parts = entry.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("program"), Some(dev), Some(ino)) => {
            key.kind = mg_allow_kind::MG_ALLOW_PROGRAM;
            key.dev = dev.parse().unwrap_or(0);
            key.id = ino.parse().unwrap_or(0);
        }
        (Some("cgroup"), Some(id), None) => {
            key.kind = mg_allow_kind::MG_ALLOW_CGROUP;
            key.id = id.parse().unwrap_or(0);
        }
        _ => {}
    }
    bytes(&key).to_vec()
}

/// The kinds of argument rules, as `Lists::arg_rules` spells them.
const ARG_KINDS: [(&str, mg_arg_kind); 5] = [
    ("scheme", mg_arg_kind::MG_ARG_PREFIX),
    ("flag", mg_arg_kind::MG_ARG_FLAG),
    ("pool", mg_arg_kind::MG_ARG_POOL),
    ("option", mg_arg_kind::MG_ARG_OPTION),
    ("probe", mg_arg_kind::MG_ARG_PROBE),
];

/// The id under which an option's values are keyed: stable across agents and reloads
/// (FNV-1a of the option), so a value entry needs no lookup of its option's entry.
fn option_id(option: &str) -> u32 {
    option.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `pool.minexmr.com` -> `moc.rmxenim.loop`: a trie finds the listed domains a host is under.
fn reversed(domain: &str) -> String {
    domain.chars().rev().collect()
}

impl Lists {
    /// The policy's lists as the maps hold them, and the `[behavior] allow_*` entries that do
    /// not exist on this node (they allow nothing: the agent logs them).
    pub fn from_policy(policy: &Policy) -> (Lists, Vec<String>) {
        let (tuning_allow, missing) = resolve_tuning_allow(&policy.behavior);
        let argv = &policy.argv;
        let (mut arg_rules, mut arg_values, mut domains) = Default::default();
        if argv.enabled {
            let rule = |kind: &str, text: &str| format!("{kind}:{text}");
            arg_rules = (argv.schemes.iter().map(|s| rule("scheme", s)))
                .chain(argv.flags.iter().map(|s| rule("flag", s)))
                .chain(argv.pool_options.iter().map(|s| rule("pool", s)))
                .chain(
                    argv.option_values
                        .iter()
                        .filter_map(|v| v.split_once('='))
                        .map(|(o, _)| rule("option", o)),
                )
                .collect();
            arg_values = argv.option_values.iter().cloned().collect();
            // A domain under another listed one adds nothing, and in the trie it would hide
            // its parent: "pool.x.com" would be the longest match of "evilpool.x.com" and fail
            // the label check that "x.com" passes.
            domains =
                argv.domains
                    .iter()
                    .filter(|d| {
                        !argv.domains.iter().any(|parent| {
                            d.len() > parent.len() && d.ends_with(&format!(".{parent}"))
                        })
                    })
                    .cloned()
                    .collect();
        }
        let lists = Lists {
            names: policy.names.iter().cloned().collect(),
            prefixes: policy.prefixes.iter().cloned().collect(),
            memfd_allow: policy.memfd_allow.iter().cloned().collect(),
            arg_rules,
            arg_values,
            domains,
            hashes: policy.sha256.iter().cloned().collect(),
            drift_allow: policy.drift.allow.iter().cloned().collect(),
            tuning_allow,
        };
        (lists, missing)
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
    /// An entry from a key and its value.
    decode: fn(&[u8], &[u8]) -> Result<String>,
}

fn name_key(name: &str) -> Vec<u8> {
    bytes(&mg_name::new(name)).to_vec()
}

fn name_text(key: &[u8], _: &[u8]) -> Result<String> {
    Ok(from_bytes::<mg_name>(key)?.text())
}

/// `KIND:TEXT` of an argument rule, split.
fn arg_rule(entry: &str) -> (mg_arg_kind, &str) {
    let (kind, text) = entry.split_once(':').unwrap_or(("flag", entry));
    let kind = ARG_KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .map_or(mg_arg_kind::MG_ARG_FLAG, |(_, k)| *k);
    (kind, text)
}

/// `--option=value` of an option value, as its values-map key.
fn arg_value_key(entry: &str) -> Vec<u8> {
    let (option, value) = entry.split_once('=').unwrap_or((entry, ""));
    // The trie matches the id, the value and its NUL: exactly this value.
    let value = mg_name::new(value);
    let len = value.text().len();
    bytes(&mg_arg_value {
        prefixlen: ((4 + len + 1) * 8) as u32,
        id: option_id(option),
        value,
    })
    .to_vec()
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
    decode: |key, _| Ok(from_bytes::<mg_prefix>(key)?.text()),
};
const ARG_RULES: Table = Table {
    what: "argument rules",
    key: |entry| bytes(&mg_prefix::new(arg_rule(entry).1)).to_vec(),
    value: |entry| {
        let (kind, text) = arg_rule(entry);
        bytes(&mg_arg_rule {
            len: text.len() as u32,
            kind,
            id: option_id(text),
        })
        .to_vec()
    },
    decode: |key, value| {
        let text = from_bytes::<mg_prefix>(key)?.text();
        let rule: mg_arg_rule = from_bytes(value)?;
        let Some((kind, _)) = ARG_KINDS.iter().find(|(_, k)| *k == rule.kind) else {
            bail!("unknown argument rule kind {}", rule.kind.0);
        };
        Ok(format!("{kind}:{text}"))
    },
};
const ARG_VALUES: Table = Table {
    what: "argument values",
    key: arg_value_key,
    value: |entry| bytes(&mg_name::new(entry)).to_vec(),
    decode: |_, value| Ok(from_bytes::<mg_name>(value)?.text()),
};
const HASHES: Table = Table {
    what: "sha256",
    key: |hex| bytes(&sha256_key(hex)).to_vec(),
    value: |_| mg_name_kind::MG_NAME_LISTED.0.to_ne_bytes().to_vec(),
    decode: |key, value| {
        if from_bytes::<mg_name_kind>(value)? == mg_name_kind::MG_NAME_PROBE {
            return Ok(format!("probe:{}", hex(key)));
        }
        Ok(hex(&from_bytes::<mg_sha256>(key)?.digest))
    },
};

/// A digest's bytes from its hex (validated by the policy; anything else gives zeros).
pub fn sha256_key(hex: &str) -> mg_sha256 {
    let mut key = mg_sha256::default();
    for (i, byte) in key.digest.iter_mut().enumerate() {
        *byte = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    key
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Path prefixes, stored as name patterns are.
const DRIFT_ALLOW: Table = Table {
    what: "drift allow",
    ..PREFIXES
};

const TUNING_ALLOW: Table = Table {
    what: "tuning allow",
    key: tuning_allow_key,
    value: |_| 1u32.to_ne_bytes().to_vec(),
    decode: |key, _| {
        let key: mg_allow_key = from_bytes(key)?;
        match key.kind {
            mg_allow_kind::MG_ALLOW_PROGRAM => Ok(format!("program:{}:{}", key.dev, key.id)),
            mg_allow_kind::MG_ALLOW_CGROUP => Ok(format!("cgroup:{}", key.id)),
            other => bail!("unknown tuning allow kind {}", other.0),
        }
    },
};
const DOMAINS: Table = Table {
    what: "pool domains",
    key: |d| bytes(&mg_prefix::new(&reversed(d))).to_vec(),
    value: |d| (d.len() as u32).to_ne_bytes().to_vec(),
    decode: |key, _| Ok(reversed(&from_bytes::<mg_prefix>(key)?.text())),
};

/// What a move from `old` to `new` deletes: the entries of `old` that `new` lacks, but for
/// those whose key `new` still uses (an argument rule whose kind changed: the additions
/// updated its value in place).
fn removed<'a>(
    table: &Table,
    old: &'a BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Vec<&'a String> {
    let kept: BTreeSet<Vec<u8>> = new.iter().map(|e| (table.key)(e)).collect();
    old.iter()
        .filter(|e| !new.contains(*e) && !kept.contains(&(table.key)(e)))
        .collect()
}
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
    let entries: Vec<&String> = if adding {
        new.difference(old).collect()
    } else {
        removed(table, old, new)
    };
    for entry in entries {
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
        .filter_map(|key| {
            let value = map.lookup(&key, MapFlags::ANY).ok()??;
            (table.decode)(&key, &value).ok()
        })
        .filter(|entry| entry != PROBE_NAME && !entry.starts_with("probe:"))
        .collect()
}

/// The list maps of one loaded (or pinned) program.
pub struct ListMaps<'a> {
    pub names: &'a dyn MapCore,
    pub prefixes: &'a dyn MapCore,
    pub memfd_allow: &'a dyn MapCore,
    pub arg_rules: &'a dyn MapCore,
    pub arg_values: &'a dyn MapCore,
    pub domains: &'a dyn MapCore,
    pub hashes: &'a dyn MapCore,
    pub drift_allow: &'a dyn MapCore,
    pub tuning_allow: &'a dyn MapCore,
}

impl ListMaps<'_> {
    /// What the maps hold, e.g. what a previous agent left.
    pub fn read(&self) -> Lists {
        Lists {
            names: read(self.names, &NAMES),
            prefixes: read(self.prefixes, &PREFIXES),
            memfd_allow: read(self.memfd_allow, &MEMFD_ALLOW),
            arg_rules: read(self.arg_rules, &ARG_RULES),
            arg_values: read(self.arg_values, &ARG_VALUES),
            domains: read(self.domains, &DOMAINS),
            hashes: read(self.hashes, &HASHES),
            drift_allow: read(self.drift_allow, &DRIFT_ALLOW),
            tuning_allow: read(self.tuning_allow, &TUNING_ALLOW),
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
        let values = (
            self.arg_values,
            &ARG_VALUES,
            &old.arg_values,
            &new.arg_values,
        );
        let rules = (self.arg_rules, &ARG_RULES, &old.arg_rules, &new.arg_rules);
        // Values before the rules that lead to them when adding; after them when removing.
        let (first, then) = if adding {
            (values, rules)
        } else {
            (rules, values)
        };
        for (map, table, old, new) in [
            (self.names, &NAMES, &old.names, &new.names),
            (self.prefixes, &PREFIXES, &old.prefixes, &new.prefixes),
            (
                self.memfd_allow,
                &MEMFD_ALLOW,
                &old.memfd_allow,
                &new.memfd_allow,
            ),
            first,
            then,
            (self.domains, &DOMAINS, &old.domains, &new.domains),
            (self.hashes, &HASHES, &old.hashes, &new.hashes),
            (
                self.drift_allow,
                &DRIFT_ALLOW,
                &old.drift_allow,
                &new.drift_allow,
            ),
            (
                self.tuning_allow,
                &TUNING_ALLOW,
                &old.tuning_allow,
                &new.tuning_allow,
            ),
        ] {
            change(map, table, adding, old, new)?;
        }
        Ok(())
    }
}

/// Forgets the files remembered under a name (or pattern) that `lists` no longer has: a name
/// taken out of the policy (a false positive fixed) must not keep its files blocked. Returns
/// how many were forgotten. Meanwhile the kernel still denies them: the safe side.
pub fn forget_unlisted(identities: &dyn MapCore, lists: &Lists) -> Result<usize> {
    let mut forgotten = 0;
    for key in identities.keys() {
        let Some(value) = identities
            .lookup(&key, MapFlags::ANY)
            .context("reading the kernel's remembered files")?
        else {
            continue; // gone meanwhile (least recently used, or changed)
        };
        let name = from_bytes::<mg_identity>(&value)?.name.text();
        let listed =
            lists.names.contains(&name) || lists.prefixes.iter().any(|p| name.starts_with(p));
        if !listed {
            match identities.delete(&key) {
                Ok(()) => forgotten += 1,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("forgetting a remembered file"),
            }
        }
    }
    Ok(forgotten)
}

/// Lists the digest of the hash probe's content: an exec of it is denied, never reported.
pub fn insert_hash_probe(hashes: &dyn MapCore, digest: &mg_sha256) -> Result<()> {
    hashes
        .update(
            bytes(digest),
            &mg_name_kind::MG_NAME_PROBE.0.to_ne_bytes(),
            MapFlags::ANY,
        )
        .context("adding the probe digest to the kernel hashes map")
}

pub fn delete_hash_probe(hashes: &dyn MapCore, digest: &mg_sha256) -> Result<()> {
    hashes
        .delete(bytes(digest))
        .context("removing the probe digest from the kernel hashes map")
}

/// Lists the argument the functional probe passes: whoever receives it is killed.
pub fn insert_argv_probe(rules: &dyn MapCore) -> Result<()> {
    let entry = format!("probe:{ARGV_PROBE}");
    rules
        .update(
            &(ARG_RULES.key)(&entry),
            &(ARG_RULES.value)(&entry),
            MapFlags::ANY,
        )
        .context("adding the probe argument to the kernel argument rules map")
}

pub fn delete_argv_probe(rules: &dyn MapCore) -> Result<()> {
    rules
        .delete(&(ARG_RULES.key)(ARGV_PROBE))
        .context("removing the probe argument from the kernel argument rules map")
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

/// A behaviour layer's three bits: checked at all, then only reported or stopped whatever
/// the mode (neither: the mode decides).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    pub on: bool,
    pub audit: bool,
    pub enforce: bool,
}

impl Layer {
    /// `mode`: the policy's setting (`None`: follows the mode); `available`: whether the
    /// kernel can run the layer's check with this tier.
    pub fn from_policy(mode: Option<LayerMode>, available: bool) -> Layer {
        Layer {
            on: available && mode != Some(LayerMode::Off),
            audit: mode == Some(LayerMode::Audit),
            enforce: mode == Some(LayerMode::Enforce),
        }
    }

    /// While a reload moves from `self` to `other`: on if either is, stopping wins over
    /// reporting.
    pub fn union(self, other: Layer) -> Layer {
        Layer {
            on: self.on || other.on,
            audit: self.audit && other.audit,
            enforce: self.enforce || other.enforce,
        }
    }

    fn bits(self, flags: [mg_config_flag; 3]) -> [(bool, mg_config_flag); 3] {
        [
            (self.on, flags[0]),
            (self.audit, flags[1]),
            (self.enforce, flags[2]),
        ]
    }

    fn from_bits(raw: mg_config_flag, flags: [mg_config_flag; 3]) -> Layer {
        let on = |flag: mg_config_flag| raw.0 & flag.0 != 0;
        Layer {
            on: on(flags[0]),
            audit: on(flags[1]),
            enforce: on(flags[2]),
        }
    }
}

/// Each behaviour layer's bits in `mg_config.flags`: on, audit, enforce.
const RANDOMX_FLAGS: [mg_config_flag; 3] = [
    mg_config_flag::MG_CONFIG_RANDOMX,
    mg_config_flag::MG_CONFIG_RANDOMX_AUDIT,
    mg_config_flag::MG_CONFIG_RANDOMX_ENFORCE,
];
const MSR_FLAGS: [mg_config_flag; 3] = [
    mg_config_flag::MG_CONFIG_MSR,
    mg_config_flag::MG_CONFIG_MSR_AUDIT,
    mg_config_flag::MG_CONFIG_MSR_ENFORCE,
];
const HUGEPAGES_FLAGS: [mg_config_flag; 3] = [
    mg_config_flag::MG_CONFIG_HUGEPAGES,
    mg_config_flag::MG_CONFIG_HUGEPAGES_AUDIT,
    mg_config_flag::MG_CONFIG_HUGEPAGES_ENFORCE,
];

/// The config map's single entry (the mode has a map of its own: `write_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub scope: Scope,
    pub memfd_block: bool,
    /// The prefixes map has entries (a lookup there is skipped otherwise).
    pub has_prefixes: bool,
    /// Remember files blocked by name; deny them under any other name.
    pub identity: bool,
    /// Check files mapped executable too.
    pub mmap: bool,
    /// Check the arguments of every exec.
    pub argv: bool,
    /// Hash the files executed or mapped executable (the policy lists digests, and the
    /// kernel can).
    pub hash: bool,
    /// Check files from an overlayfs upper layer...
    pub drift: bool,
    /// ...and only report them.
    pub drift_audit: bool,
    /// RandomX's rounding-mode pattern.
    pub randomx: Layer,
    /// MSR devices and the msr module's allow_writes opened for writing.
    pub msr: Layer,
    /// Huge-page reservation files opened for writing from containers.
    pub hugepages: Layer,
    /// Mount namespace inode of PID 1: processes in it are the host's.
    pub host_mnt_ns: u32,
    /// The daemon that owns the pinned program, if one runs.
    pub agent_pid: Option<u32>,
    /// The exec check's tier in force (`None`: never written).
    pub tier: Option<Tier>,
}

impl Config {
    fn to_raw(self) -> mg_config {
        let flags = self
            .flags()
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |flags, (_, flag)| flags | flag.0);
        mg_config {
            agent_pid: self.agent_pid.unwrap_or(0),
            scope: self.scope.into(),
            flags: mg_config_flag(flags),
            host_mnt_ns: self.host_mnt_ns,
            tier: self.tier.map_or(mg_tier(0), Tier::raw),
        }
    }

    /// Each switch beside its bit of `mg_config.flags`.
    fn flags(&self) -> Vec<(bool, mg_config_flag)> {
        use mg_config_flag as F;
        let layers = [
            self.randomx.bits(RANDOMX_FLAGS),
            self.msr.bits(MSR_FLAGS),
            self.hugepages.bits(HUGEPAGES_FLAGS),
        ];
        let switches = [
            (self.memfd_block, F::MG_CONFIG_MEMFD_BLOCK),
            (self.has_prefixes, F::MG_CONFIG_PREFIXES),
            (self.identity, F::MG_CONFIG_IDENTITY),
            (self.mmap, F::MG_CONFIG_MMAP),
            (self.argv, F::MG_CONFIG_ARGV),
            (self.hash, F::MG_CONFIG_HASH),
            (self.drift, F::MG_CONFIG_DRIFT),
            (self.drift_audit, F::MG_CONFIG_DRIFT_AUDIT),
        ];
        switches
            .into_iter()
            .chain(layers.into_iter().flatten())
            .collect()
    }

    fn from_raw(raw: mg_config) -> Result<Config> {
        use mg_config_flag as F;
        let on = |flag: mg_config_flag| raw.flags.0 & flag.0 != 0;
        Ok(Config {
            scope: raw.scope.try_into()?,
            memfd_block: on(F::MG_CONFIG_MEMFD_BLOCK),
            has_prefixes: on(F::MG_CONFIG_PREFIXES),
            identity: on(F::MG_CONFIG_IDENTITY),
            mmap: on(F::MG_CONFIG_MMAP),
            argv: on(F::MG_CONFIG_ARGV),
            hash: on(F::MG_CONFIG_HASH),
            drift: on(F::MG_CONFIG_DRIFT),
            drift_audit: on(F::MG_CONFIG_DRIFT_AUDIT),
            randomx: Layer::from_bits(raw.flags, RANDOMX_FLAGS),
            msr: Layer::from_bits(raw.flags, MSR_FLAGS),
            hugepages: Layer::from_bits(raw.flags, HUGEPAGES_FLAGS),
            host_mnt_ns: raw.host_mnt_ns,
            agent_pid: (raw.agent_pid != 0).then_some(raw.agent_pid),
            tier: Tier::from_raw(raw.tier.0),
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
    /// Processes killed before their first instruction (the argument layer).
    pub killed: u64,
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
        killed: read(mg_stat::MG_STAT_KILLED)?,
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
            argv: false,
            hash: false,
            drift: false,
            drift_audit: false,
            randomx: Layer::default(),
            msr: Layer::default(),
            hugepages: Layer::default(),
            host_mnt_ns: 0,
            agent_pid: None,
            tier: None,
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
            argv: true,
            hash: true,
            drift: true,
            drift_audit: true,
            randomx: Layer {
                on: true,
                audit: true,
                enforce: false,
            },
            msr: Layer {
                on: true,
                audit: false,
                enforce: true,
            },
            hugepages: Layer {
                on: false,
                audit: true,
                enforce: true,
            },
            host_mnt_ns: 4026531841,
            agent_pid: Some(42),
            tier: Some(Tier::FmodRet),
        };
        let raw: mg_config = from_bytes(bytes(&config.to_raw())).unwrap();
        assert_eq!(Config::from_raw(raw).unwrap(), config);
    }

    #[test]
    fn list_entries_round_trip_through_their_maps() {
        for (table, entry) in [
            (&NAMES, "minerd"),
            (&PREFIXES, "xmrig"),
            (&MEMFD_ALLOW, "memfd:runc_cloned:/proc/self/exe"),
            (&ARG_RULES, "scheme:stratum+tcp://"),
            (&ARG_RULES, "pool:-o"),
            (&ARG_VALUES, "--coin=monero"),
            (&DOMAINS, "supportxmr.com"),
            (&HASHES, "00ff".repeat(16).as_str()),
            (&TUNING_ALLOW, "program:2049:1234567"),
            (&TUNING_ALLOW, "cgroup:4242"),
        ] {
            let (key, value) = ((table.key)(entry), (table.value)(entry));
            assert_eq!(
                (table.decode)(&key, &value).unwrap(),
                entry,
                "{}",
                table.what
            );
        }
        assert_eq!((PREFIXES.value)("xmrig"), 5u32.to_ne_bytes());
    }

    #[test]
    fn argument_rules_are_keyed_as_the_kernel_looks_them_up() {
        let rule: mg_arg_rule = from_bytes(&(ARG_RULES.value)("option:--coin")).unwrap();
        assert_eq!((rule.len, rule.kind), (6, mg_arg_kind::MG_ARG_OPTION));
        // The value's key carries the option's id, which the rule hands to the kernel.
        let value: mg_arg_value = from_bytes(&arg_value_key("--coin=monero")).unwrap();
        assert_eq!(
            (value.id, value.value.text()),
            (rule.id, "monero".to_string())
        );
        assert_eq!(
            value.prefixlen,
            (4 + 6 + 1) * 8,
            "the id, the value and its NUL"
        );
        // A domain is looked up reversed, so that a trie finds the domains a host is under.
        let key: mg_prefix = from_bytes(&(DOMAINS.key)("supportxmr.com")).unwrap();
        assert_eq!(key.text(), "moc.rmxtroppus");
        assert_eq!(key.prefixlen, 14 * 8);
    }

    #[test]
    fn a_rule_whose_kind_changes_is_updated_not_removed() {
        let old: BTreeSet<String> = ["flag:--x".to_string()].into();
        let new: BTreeSet<String> = ["pool:--x".to_string()].into();
        assert!(removed(&ARG_RULES, &old, &new).is_empty());
        // Elsewhere an entry the new policy lacks is removed.
        let new: BTreeSet<String> = ["flag:--y".to_string()].into();
        assert_eq!(removed(&ARG_RULES, &old, &new), ["flag:--x"]);
        let names: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let kept: BTreeSet<String> = ["b".to_string()].into();
        assert_eq!(removed(&NAMES, &names, &kept), ["a"]);
    }

    #[test]
    fn domains_under_another_are_left_to_it() {
        let mut policy = Policy::parse("mode = \"enforce\"\nnames = []\n").unwrap();
        policy.argv.domains = vec!["x.com".into(), "pool.x.com".into(), "y.org".into()];
        let (lists, _) = Lists::from_policy(&policy);
        assert_eq!(
            lists.domains,
            ["x.com".to_string(), "y.org".to_string()].into()
        );
        assert!(lists.arg_rules.contains("option:--coin"));
        assert!(lists.arg_rules.contains("scheme:stratum+tcp://"));
        policy.argv.enabled = false;
        assert!(Lists::from_policy(&policy).0.arg_rules.is_empty());
    }
}
