//! The Rust face of the kernel/userspace contract, `src/bpf/minerguard.h`. Every shared type
//! and limit comes from the skeleton's generated `types` (built from the object's BTF); this
//! module only adds byte views (`plain`, as the libbpf-rs examples do), constructors for map
//! keys, and the constants the kernel cannot carry in BTF. Nothing is re-encoded by hand.
//! `tests::every_field_matches_the_object` compares every field with the compiled object.

use std::mem::size_of;

use anyhow::{bail, Result};

pub use crate::bpf::types::{
    mg_action, mg_allow_key, mg_allow_kind, mg_arg_kind, mg_arg_rule, mg_arg_value, mg_config,
    mg_config_flag, mg_event, mg_hook, mg_identity, mg_limit, mg_match, mg_mode, mg_name,
    mg_name_kind, mg_prefix, mg_scope, mg_sha256, mg_stat, mg_tier,
};

/// Bump when a type of `minerguard.h` changes layout: maps pinned by an agent of another ABI
/// are then replaced, not adopted. `tests::abi_fingerprint_is_current` guards it. (Built with
/// MINERGUARD_NEXT_ABI=1, the next number: how the systemd VM test makes a package whose
/// contract changed, to upgrade to.)
pub const ABI: u32 = if cfg!(minerguard_next_abi) { 10 } else { 9 };

/// Longest listed name in bytes (the key keeps one byte for the NUL).
pub const NAME_MAX_BYTES: usize = mg_limit::MG_NAME_LEN.0 as usize - 1;
pub const MAX_NAMES: usize = mg_limit::MG_MAX_NAMES.0 as usize;
pub const MAX_PREFIXES: usize = mg_limit::MG_MAX_PREFIXES.0 as usize;
pub const MAX_MEMFD_ALLOW: usize = mg_limit::MG_MAX_MEMFD_ALLOW.0 as usize;
pub const MAX_IDENTITIES: usize = mg_limit::MG_MAX_IDENTITIES.0 as usize;
pub const MAX_ARG_RULES: usize = mg_limit::MG_MAX_ARG_RULES.0 as usize;
pub const MAX_ARG_VALUES: usize = mg_limit::MG_MAX_ARG_VALUES.0 as usize;
pub const MAX_DOMAINS: usize = mg_limit::MG_MAX_DOMAINS.0 as usize;
pub const MAX_HASHES: usize = mg_limit::MG_MAX_HASHES.0 as usize;
pub const SHA256_LEN: usize = mg_limit::MG_SHA256_LEN.0 as usize;
pub const MAX_DRIFT_ALLOW: usize = mg_limit::MG_MAX_DRIFT_ALLOW.0 as usize;
pub const MAX_TUNING_ALLOW: usize = mg_limit::MG_MAX_TUNING_ALLOW.0 as usize;
/// The most bytes of a command line an event carries (its buffer is larger: see the header).
pub const CMDLINE_LEN: usize = mg_limit::MG_CMDLINE_LEN.0 as usize;
/// The argument the functional probe passes: the rules map lists it as MG_ARG_PROBE, so the
/// process that receives it is killed before it runs, whatever the mode.
pub const ARGV_PROBE: &str = "--minerguard-argv-probe";
/// What the kernel prefixes a memfd's dentry name with (MEMFD_PREFIX in the program).
pub const MEMFD_PREFIX: &str = "memfd:";
/// The name of the daemon's probe memfd. The program matches a memfd by the name its creator
/// chose (its dentry is `memfd:minerguard-lsm-probe`), so this is the names map key, with
/// the value `MG_NAME_PROBE`.
pub const PROBE_NAME: &str = "minerguard-lsm-probe";

/// How the exec check enforces (`enum mg_tier`), strongest first: the exec fails with EPERM
/// from the BPF LSM hook (`lsm`) or from the function that calls every LSM (`fmod_ret`), or
/// the new program is killed before its first instruction (`kill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Lsm,
    FmodRet,
    Kill,
}

impl Tier {
    /// Strongest first: the order `--tier auto` tries them in.
    pub const ALL: [Tier; 3] = [Tier::Lsm, Tier::FmodRet, Tier::Kill];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Lsm => "lsm",
            Tier::FmodRet => "fmod_ret",
            Tier::Kill => "kill",
        }
    }

    pub fn raw(self) -> mg_tier {
        match self {
            Tier::Lsm => mg_tier::MG_TIER_LSM,
            Tier::FmodRet => mg_tier::MG_TIER_FMOD_RET,
            Tier::Kill => mg_tier::MG_TIER_KILL,
        }
    }

    /// Whether the tier can make a call fail (EPERM), which the checks of files mapped
    /// executable and of files opened for writing need: the kill tier cannot (a mapping or an
    /// open cannot be killed before it returns).
    pub fn denies_calls(self) -> bool {
        self != Tier::Kill
    }

    /// `None` for 0 (never written) or a value this version does not know.
    pub fn from_raw(raw: u32) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.raw().0 == raw)
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// SAFETY: generated from C structs of integers and integer arrays (enums are u32 newtypes,
// padding is explicit), so every byte pattern is a valid value and there are no pointers.
unsafe impl plain::Plain for mg_config {}
unsafe impl plain::Plain for mg_event {}
unsafe impl plain::Plain for mg_name {}
unsafe impl plain::Plain for mg_prefix {}
unsafe impl plain::Plain for mg_arg_rule {}
unsafe impl plain::Plain for mg_arg_value {}
unsafe impl plain::Plain for mg_sha256 {}
unsafe impl plain::Plain for mg_allow_key {}
unsafe impl plain::Plain for mg_name_kind {}
unsafe impl plain::Plain for mg_identity {}

/// The bytes of a contract value, as a map update or a test wants them.
pub fn bytes<T: plain::Plain>(value: &T) -> &[u8] {
    // SAFETY: `Plain` types have no padding the compiler may leave uninitialised (see above).
    unsafe { plain::as_bytes(value) }
}

/// A contract value from the bytes the kernel gave (a map value, a ring buffer record).
pub fn from_bytes<T: plain::Plain + Default>(data: &[u8]) -> Result<T> {
    let mut value = T::default();
    if plain::copy_from_bytes(&mut value, data).is_err() {
        bail!(
            "{} bytes from the kernel where {} were expected: the BPF object and the daemon disagree",
            data.len(),
            size_of::<T>()
        );
    }
    Ok(value)
}

/// The bytes of a C string field up to its first NUL, as text.
pub fn c_str(field: &[i8]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl mg_name {
    /// A zero-padded key. The policy validator has already refused longer names; cutting
    /// here could only ever make a key that matches nothing.
    pub fn new(name: &str) -> mg_name {
        let mut key = mg_name::default();
        for (dst, &b) in key
            .name
            .iter_mut()
            .zip(name.as_bytes().iter().take(NAME_MAX_BYTES))
        {
            *dst = b as i8;
        }
        key
    }

    pub fn text(&self) -> String {
        c_str(&self.name)
    }
}

impl mg_prefix {
    /// An LPM trie key: the pattern's length in bits, then the pattern.
    pub fn new(prefix: &str) -> mg_prefix {
        mg_prefix {
            prefixlen: (prefix.len().min(NAME_MAX_BYTES) * 8) as u32,
            name: mg_name::new(prefix),
        }
    }

    pub fn text(&self) -> String {
        let mut name = self.name.text();
        name.truncate(self.prefixlen as usize / 8);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Written and read by the programs only; the daemon pins the map and never decodes it.
    use crate::bpf::types::{mg_file_key, mg_fpu_watch, mg_hashed};
    use libbpf_rs::btf::types::{Array, Composite, MemberAttr};
    use libbpf_rs::btf::{Btf, BtfKind, BtfType, HasSize, TypeId};
    use std::collections::BTreeSet;
    use std::mem::offset_of;

    const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/minerguard.bpf.o"));

    fn btf() -> Btf<'static> {
        Btf::from_raw("minerguard", OBJECT)
            .expect("parsing the object's BTF")
            .expect("the object has BTF")
    }

    fn type_size(btf: &Btf<'_>, id: TypeId) -> usize {
        let ty = btf
            .type_by_id::<BtfType<'_>>(id)
            .expect("a member's type")
            .skip_mods_and_typedefs();
        match ty.kind() {
            BtfKind::Array => {
                let array = Array::try_from(ty).expect("an array");
                array.capacity() * type_size(btf, array.contained_type().type_id())
            }
            BtfKind::Int => libbpf_rs::btf::types::Int::try_from(ty).unwrap().size(),
            BtfKind::Enum => libbpf_rs::btf::types::Enum::try_from(ty).unwrap().size(),
            BtfKind::Struct | BtfKind::Union => Composite::try_from(ty).unwrap().size(),
            other => panic!("unexpected member kind {other:?}"),
        }
    }

    /// (field, offset, size) of each field of a struct.
    type Fields = Vec<(String, usize, usize)>;

    /// A struct's name, its size and its fields.
    type Layout = (&'static str, usize, Fields);

    /// Name, offset and size of every member of `name` in the object's BTF, and its size.
    fn btf_layout(btf: &Btf<'_>, name: &str) -> (usize, Fields) {
        let ty = btf
            .type_by_name::<Composite<'_>>(name)
            .unwrap_or_else(|| panic!("struct {name} is not in the object's BTF"));
        let members = ty
            .iter()
            .map(|m| {
                let offset = match m.attr {
                    MemberAttr::Normal { offset } => offset as usize / 8,
                    MemberAttr::BitField { .. } => panic!("{name}: no bitfields in the contract"),
                };
                let field = m
                    .name
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned());
                (field, offset, type_size(btf, m.ty))
            })
            .collect();
        (ty.size(), members)
    }

    fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
        size_of::<F>()
    }

    /// The Rust layout of a generated struct: its size and (field, offset, size) of each
    /// field the macro lists. Listing a field that does not exist is a compile error.
    macro_rules! rust_layout {
        ($ty:ident { $($field:ident),* $(,)? }) => {
            (
                stringify!($ty),
                size_of::<$ty>(),
                vec![$((
                    stringify!($field).to_string(),
                    offset_of!($ty, $field),
                    field_size::<$ty, _>(|v| &v.$field),
                )),*],
            )
        };
    }

    fn contract() -> Vec<Layout> {
        vec![
            rust_layout!(mg_name { name }),
            rust_layout!(mg_prefix { prefixlen, name }),
            rust_layout!(mg_config {
                agent_pid,
                scope,
                flags,
                host_mnt_ns,
                tier
            }),
            rust_layout!(mg_arg_rule { len, kind, id }),
            rust_layout!(mg_arg_value {
                prefixlen,
                id,
                value
            }),
            rust_layout!(mg_sha256 { digest }),
            rust_layout!(mg_hashed {
                mtime_sec,
                mtime_nsec,
                ctime_nsec,
                ctime_sec,
                size,
                sha256
            }),
            rust_layout!(mg_file_key {
                ino,
                dev,
                generation
            }),
            rust_layout!(mg_identity {
                mtime_sec,
                mtime_nsec,
                reserved,
                size,
                name
            }),
            rust_layout!(mg_allow_key { id, dev, kind }),
            rust_layout!(mg_fpu_watch {
                window_start_ns,
                changes,
                last_rc
            }),
            rust_layout!(mg_event {
                boot_ns,
                cgroup_id,
                pid,
                tid,
                ppid,
                uid,
                gid,
                mnt_ns,
                action,
                mode,
                matched_on,
                matched_prefix,
                host,
                hook,
                tier,
                comm,
                matched_name,
                file_name,
                filename,
                cgroup_name,
                observed_changes,
                observed_ms,
                cmdline_len,
                cmdline_cut,
                cmdline,
            }),
        ]
    }

    /// Tetragon's alignchecker idea: the compiled program and the daemon agree on the size
    /// and offset of every field of every struct they share, and no field goes unchecked.
    #[test]
    fn every_field_matches_the_object() {
        let btf = btf();
        for (name, size, fields) in contract() {
            let (btf_size, btf_fields) = btf_layout(&btf, name);
            assert_eq!(size, btf_size, "size of struct {name}");
            assert_eq!(
                fields, btf_fields,
                "struct {name}: (field, offset, size) in Rust vs the BPF object"
            );
        }
    }

    #[test]
    fn limits_are_the_maps_sizes() {
        let mut storage = std::mem::MaybeUninit::uninit();
        let skel = crate::bpf::open_for_test(&mut storage);
        let maps = &skel.maps;
        // A reload holds two of the largest policies at once, and the probe's name.
        assert_eq!(maps.mg_names.max_entries() as usize, 2 * MAX_NAMES + 1);
        assert_eq!(maps.mg_prefixes.max_entries() as usize, 2 * MAX_PREFIXES);
        assert_eq!(
            maps.mg_memfd_allow.max_entries() as usize,
            2 * MAX_MEMFD_ALLOW
        );
        assert_eq!(
            maps.mg_names.max_entries(),
            mg_limit::MG_NAMES_CAPACITY.0,
            "the program's own capacity"
        );
        assert_eq!(maps.mg_names.key_size() as usize, size_of::<mg_name>());
        assert_eq!(maps.mg_prefixes.key_size() as usize, size_of::<mg_prefix>());
        assert_eq!(maps.mg_config.value_size() as usize, size_of::<mg_config>());
        assert_eq!(maps.mg_stats.max_entries(), mg_stat::MG_STAT_MAX.0);
        assert_eq!(maps.mg_identities.max_entries() as usize, MAX_IDENTITIES);
        assert_eq!(
            maps.mg_arg_rules.max_entries() as usize,
            2 * MAX_ARG_RULES + 1
        );
        assert_eq!(
            maps.mg_arg_values.max_entries() as usize,
            2 * MAX_ARG_VALUES
        );
        assert_eq!(maps.mg_domains.max_entries() as usize, 2 * MAX_DOMAINS);
        assert_eq!(maps.mg_hashes.max_entries() as usize, 2 * MAX_HASHES);
        assert_eq!(
            maps.mg_drift_allow.max_entries() as usize,
            2 * MAX_DRIFT_ALLOW
        );
        assert_eq!(
            maps.mg_tuning_allow.max_entries() as usize,
            2 * MAX_TUNING_ALLOW
        );
        assert_eq!(
            maps.mg_tuning_allow.key_size() as usize,
            size_of::<mg_allow_key>()
        );
        assert_eq!(maps.mg_hashes.key_size() as usize, SHA256_LEN);
        assert_eq!(
            maps.mg_arg_rules.value_size() as usize,
            size_of::<mg_arg_rule>()
        );
        assert_eq!(
            maps.mg_arg_values.key_size() as usize,
            size_of::<mg_arg_value>()
        );
        assert_eq!(
            maps.mg_identities.key_size() as usize,
            size_of::<mg_file_key>()
        );
        assert_eq!(
            maps.mg_identities.value_size() as usize,
            size_of::<mg_identity>()
        );
        assert_eq!(size_of::<mg_name>(), NAME_MAX_BYTES + 1);
    }

    /// Fails when the shared layout changes: bump ABI, then update the fingerprint here.
    #[test]
    fn abi_fingerprint_is_current() {
        let btf = btf();
        let mut text = String::new();
        for (name, _, _) in contract() {
            let (size, fields) = btf_layout(&btf, name);
            text += &format!("{name}:{size}:{fields:?};");
        }
        // FNV-1a: stable across Rust releases, unlike DefaultHasher.
        let fingerprint = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(
            (ABI, fingerprint),
            (9, 15160691205619672014),
            "layout: {text}"
        );
    }

    #[test]
    fn every_contract_struct_is_checked() {
        // A struct added to minerguard.h (mg_*) must be added to `contract()` too.
        let btf = btf();
        let listed: BTreeSet<&str> = contract().iter().map(|(n, _, _)| *n).collect();
        let in_object: BTreeSet<String> = btf
            .type_by_kind::<libbpf_rs::btf::types::Struct<'_>>()
            .filter_map(|s| s.name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| n.starts_with("mg_"))
            .collect();
        // Program-private structs (not read by the daemon) live in minerguard.bpf.c.
        let private = ["mg_names_read", "mg_hit", "mg_found", "mg_args_read"];
        let shared: BTreeSet<&str> = in_object
            .iter()
            .map(String::as_str)
            .filter(|n| !private.contains(n))
            .collect();
        assert_eq!(shared, listed);
    }

    #[test]
    fn tiers_round_trip_and_zero_is_none() {
        for tier in Tier::ALL {
            assert_eq!(Tier::from_raw(tier.raw().0), Some(tier));
        }
        assert_eq!(Tier::from_raw(0), None);
        assert_eq!(
            serde_json::to_value(Tier::FmodRet).unwrap(),
            serde_json::json!("fmod_ret")
        );
    }

    #[test]
    fn keys_are_zero_padded_and_round_trip() {
        let key = mg_name::new("xmrig");
        assert_eq!(&bytes(&key)[..5], b"xmrig");
        assert!(bytes(&key)[5..].iter().all(|&b| b == 0));
        assert_eq!(key.text(), "xmrig");
        let prefix = mg_prefix::new("xmrig");
        assert_eq!(&bytes(&prefix)[..4], &40u32.to_ne_bytes());
        assert_eq!(&bytes(&prefix)[4..9], b"xmrig");
        assert_eq!(prefix.text(), "xmrig");
        assert!(from_bytes::<mg_config>(&[0; 3]).is_err());
    }
}
