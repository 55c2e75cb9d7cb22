//! Decoding of the ring buffer records the LSM hook sends (`struct mg_event`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

use crate::contract::{
    c_str, from_bytes, mg_action, mg_event, mg_hook, mg_match, Tier, CMDLINE_LEN, SHA256_LEN,
};
use crate::maps::hex;
use crate::policy::Mode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Blocked,
    /// Killed (SIGKILL) before its first instruction: found past the point where an exec
    /// can fail.
    Killed,
    Audited,
}

impl Action {
    /// Every action, in the order `Tally` counts them.
    pub const ALL: [Action; 3] = [Action::Blocked, Action::Killed, Action::Audited];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Blocked => "blocked",
            Action::Killed => "killed",
            Action::Audited => "audited",
        }
    }
}

/// Which name of the exec was listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedOn {
    /// The file really executed (a symlink's target, a script's interpreter).
    File,
    /// The basename of the path passed to exec: the name the process would carry.
    ProcessName,
    Both,
    /// No name: the exec was from a memfd, and memfd execs are blocked.
    Memfd,
    /// No name: the file has no name on disk (O_TMPFILE, deleted), and such execs are blocked.
    Unlinked,
    /// No name: the file itself was blocked (or audited) before under a listed name, and has
    /// not changed since (a hardlink, a move, a symlink).
    Identity,
    /// A file mapped executable (by the dynamic loader, LD_PRELOAD) has a listed name.
    Mmap,
    /// An argument the new program received is a miner's (pool, flag, option value).
    Argv,
    /// The file's SHA-256 is listed.
    Hash,
    /// The file is in a container's writable layer (an overlayfs upper layer).
    Drift,
    /// The process computes like RandomX: its rounding mode keeps changing.
    Randomx,
    /// An MSR device, or the msr module's allow_writes, opened for writing.
    Msr,
    /// A huge-page reservation file opened for writing from a container.
    Hugepages,
}

impl MatchedOn {
    /// Every kind of match, in the order `Tally` counts them.
    pub const ALL: [MatchedOn; 13] = [
        MatchedOn::File,
        MatchedOn::ProcessName,
        MatchedOn::Both,
        MatchedOn::Memfd,
        MatchedOn::Unlinked,
        MatchedOn::Identity,
        MatchedOn::Mmap,
        MatchedOn::Argv,
        MatchedOn::Hash,
        MatchedOn::Drift,
        MatchedOn::Randomx,
        MatchedOn::Msr,
        MatchedOn::Hugepages,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatchedOn::File => "file",
            MatchedOn::ProcessName => "process_name",
            MatchedOn::Both => "both",
            MatchedOn::Memfd => "memfd",
            MatchedOn::Unlinked => "unlinked",
            MatchedOn::Identity => "identity",
            MatchedOn::Mmap => "mmap",
            MatchedOn::Argv => "argv",
            MatchedOn::Hash => "hash",
            MatchedOn::Drift => "drift",
            MatchedOn::Randomx => "randomx",
            MatchedOn::Msr => "msr",
            MatchedOn::Hugepages => "hugepages",
        }
    }
}

/// Where the check ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// An exec.
    Exec,
    /// A file mapped executable.
    Mmap,
    /// A thread switched out (the behaviour layer).
    Switch,
    /// A file opened for writing.
    Open,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Exec => "exec",
            Hook::Mmap => "mmap",
            Hook::Switch => "context_switch",
            Hook::Open => "open",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub boot_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub mnt_ns: u32,
    pub action: Action,
    pub mode: Mode,
    pub matched_on: MatchedOn,
    pub hook: Hook,
    /// The attach point that acted.
    pub tier: Tier,
    pub comm: String,
    /// The listed name, or the pattern (with its `*`) that matched.
    pub matched_name: String,
    pub file_name: String,
    pub filename: String,
    /// In the host's mount namespace.
    pub host: bool,
    /// The leaf name of the caller's cgroup, as it was at the exec.
    pub cgroup_name: String,
    /// A behaviour match: the changes seen, and over how many milliseconds.
    pub observed: Option<(u32, u32)>,
    /// The command line's arguments (argv[0] first) as far as the kernel read them; empty when
    /// unreadable (a page swapped out, a kernel thread).
    pub args: Vec<String>,
    /// More arguments (or bytes) than were read.
    pub args_cut: bool,
}

/// Events the agent decoded, by action and by what matched: for the metrics
/// (`minerguard_events_total`). A fixed table of atomics indexed by the enums, so counting
/// costs the event loop one relaxed add and no allocation, and a scrape reads it from another
/// thread without a lock.
#[derive(Debug, Default)]
pub struct Tally([[AtomicU64; MatchedOn::ALL.len()]; Action::ALL.len()]);

impl Tally {
    pub fn count(&self, e: &Event) {
        // Declaration order is the order of ALL (the test below holds them together).
        self.0[e.action as usize][e.matched_on as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, action: Action, matched_on: MatchedOn) -> u64 {
        self.0[action as usize][matched_on as usize].load(Ordering::Relaxed)
    }

    /// Every count at once, to tell whether any changed without allocating.
    pub fn snapshot(&self) -> [[u64; MatchedOn::ALL.len()]; Action::ALL.len()] {
        self.0
            .each_ref()
            .map(|row| row.each_ref().map(|n| n.load(Ordering::Relaxed)))
    }

    /// The non-zero counts by the events' own strings: action, then matched_on.
    pub fn named(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for action in Action::ALL {
            for matched_on in MatchedOn::ALL {
                let n = self.get(action, matched_on);
                if n > 0 {
                    out.entry(action.as_str().to_string())
                        .or_insert_with(BTreeMap::new)
                        .insert(matched_on.as_str().to_string(), n);
                }
            }
        }
        out
    }
}

pub fn decode(data: &[u8]) -> Result<Event> {
    let raw: mg_event = from_bytes(data)?;
    let action = match raw.action {
        mg_action::MG_ACTION_BLOCKED => Action::Blocked,
        mg_action::MG_ACTION_KILLED => Action::Killed,
        mg_action::MG_ACTION_AUDITED => Action::Audited,
        other => bail!("unknown action {} in an event", other.0),
    };
    let matched_on = match raw.matched_on {
        mg_match::MG_MATCH_FILE => MatchedOn::File,
        mg_match::MG_MATCH_PROCESS_NAME => MatchedOn::ProcessName,
        mg_match::MG_MATCH_BOTH => MatchedOn::Both,
        mg_match::MG_MATCH_MEMFD => MatchedOn::Memfd,
        mg_match::MG_MATCH_UNLINKED => MatchedOn::Unlinked,
        mg_match::MG_MATCH_IDENTITY => MatchedOn::Identity,
        mg_match::MG_MATCH_MMAP => MatchedOn::Mmap,
        mg_match::MG_MATCH_ARGV => MatchedOn::Argv,
        mg_match::MG_MATCH_HASH => MatchedOn::Hash,
        mg_match::MG_MATCH_DRIFT => MatchedOn::Drift,
        mg_match::MG_MATCH_RANDOMX => MatchedOn::Randomx,
        mg_match::MG_MATCH_MSR => MatchedOn::Msr,
        mg_match::MG_MATCH_HUGEPAGES => MatchedOn::Hugepages,
        other => bail!("unknown match kind {} in an event", other.0),
    };
    let hook = match mg_hook(u32::from(raw.hook)) {
        mg_hook::MG_HOOK_EXEC => Hook::Exec,
        mg_hook::MG_HOOK_MMAP => Hook::Mmap,
        mg_hook::MG_HOOK_SWITCH => Hook::Switch,
        mg_hook::MG_HOOK_OPEN => Hook::Open,
        other => bail!("unknown hook {} in an event", other.0),
    };
    let tier = Tier::from_raw(u32::from(raw.tier))
        .with_context(|| format!("unknown tier {} in an event", raw.tier))?;
    Ok(Event {
        boot_ns: raw.boot_ns,
        cgroup_id: raw.cgroup_id,
        pid: raw.pid,
        tid: raw.tid,
        ppid: raw.ppid,
        uid: raw.uid,
        gid: raw.gid,
        mnt_ns: raw.mnt_ns,
        action,
        mode: Mode::try_from(raw.mode)?,
        matched_on,
        hook,
        tier,
        comm: c_str(&raw.comm),
        matched_name: if matched_on == MatchedOn::Hash {
            // The digest's bytes, not text.
            let digest: Vec<u8> = raw.matched_name[..SHA256_LEN]
                .iter()
                .map(|&b| b as u8)
                .collect();
            hex(&digest)
        } else {
            c_str(&raw.matched_name) + if raw.matched_prefix != 0 { "*" } else { "" }
        },
        file_name: c_str(&raw.file_name),
        filename: c_str(&raw.filename),
        host: raw.host != 0,
        cgroup_name: c_str(&raw.cgroup_name),
        observed: (matched_on == MatchedOn::Randomx)
            .then_some((raw.observed_changes, raw.observed_ms)),
        args: args(&raw.cmdline, raw.cmdline_len),
        args_cut: raw.cmdline_cut != 0,
    })
}

/// The arguments in the first `len` bytes of `buf`, NUL-separated as in /proc/PID/cmdline (the
/// last one without its NUL when cut). Not UTF-8: replaced, as a log must stay readable.
fn args(buf: &[std::ffi::c_char], len: u32) -> Vec<String> {
    let len = (len as usize).min(CMDLINE_LEN).min(buf.len());
    let bytes: Vec<u8> = buf[..len].iter().map(|&b| b as u8).collect();
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::contract::{bytes, mg_mode};

    fn fill(dst: &mut [i8], s: &str) {
        for (d, b) in dst.iter_mut().zip(s.bytes()) {
            *d = b as i8;
        }
    }

    /// The bytes the kernel would send for a blocked `/tmp/xmrig`.
    pub(crate) fn raw_blocked_xmrig() -> Vec<u8> {
        let mut e = mg_event {
            boot_ns: 5_000_000_000,
            cgroup_id: 4242,
            pid: 100,
            tid: 101,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            mnt_ns: 4026531841,
            action: mg_action::MG_ACTION_BLOCKED,
            mode: mg_mode::MG_MODE_ENFORCE,
            matched_on: mg_match::MG_MATCH_BOTH,
            tier: crate::contract::mg_tier::MG_TIER_LSM.0 as u8,
            ..Default::default()
        };
        fill(&mut e.comm, "sh");
        fill(&mut e.matched_name, "xmrig");
        fill(&mut e.file_name, "xmrig");
        fill(&mut e.filename, "/tmp/xmrig");
        fill(
            &mut e.cgroup_name,
            "docker-3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a.scope",
        );
        let cmdline = "xmrig\0-o\0stratum+tcp://pool.example:3333\0";
        fill(&mut e.cmdline, cmdline);
        e.cmdline_len = cmdline.len() as u32;
        bytes(&e).to_vec()
    }

    #[test]
    fn the_tally_counts_each_action_and_match_apart() {
        // The table is indexed by the enums' discriminants: ALL must list them in that order.
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i, "{a:?}");
        }
        for (i, m) in MatchedOn::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i, "{m:?}");
        }
        let tally = Tally::default();
        let blocked = decode(&raw_blocked_xmrig()).unwrap();
        let audited = Event {
            action: Action::Audited,
            matched_on: MatchedOn::Argv,
            ..blocked.clone()
        };
        tally.count(&blocked);
        tally.count(&blocked);
        tally.count(&audited);
        assert_eq!(tally.get(Action::Blocked, MatchedOn::Both), 2);
        assert_eq!(tally.get(Action::Audited, MatchedOn::Argv), 1);
        let total: u64 = Action::ALL
            .iter()
            .flat_map(|&a| MatchedOn::ALL.iter().map(move |&m| (a, m)))
            .map(|(a, m)| tally.get(a, m))
            .sum();
        assert_eq!(total, 3);
        let named = serde_json::to_value(tally.named()).unwrap();
        assert_eq!(
            named,
            serde_json::json!({"blocked": {"both": 2}, "audited": {"argv": 1}})
        );
    }

    #[test]
    fn decodes_a_blocked_exec() {
        let e = decode(&raw_blocked_xmrig()).unwrap();
        assert_eq!(e.action, Action::Blocked);
        assert_eq!(e.mode, Mode::Enforce);
        assert_eq!(e.matched_on, MatchedOn::Both);
        assert_eq!((e.pid, e.tid, e.ppid, e.uid), (100, 101, 1, 1000));
        assert_eq!(e.comm, "sh");
        assert_eq!(e.matched_name, "xmrig");
        assert_eq!(e.filename, "/tmp/xmrig");
        assert_eq!(e.cgroup_id, 4242);
        assert!(!e.host);
        assert!(e.cgroup_name.starts_with("docker-3f1c"));
        assert_eq!(e.args, ["xmrig", "-o", "stratum+tcp://pool.example:3333"]);
        assert!(!e.args_cut);
    }

    #[test]
    fn command_lines_decode_whole_cut_empty_and_not_utf8() {
        let c = |s: &[u8]| s.iter().map(|&b| b as std::ffi::c_char).collect::<Vec<_>>();
        assert_eq!(args(&c(b"a\0\0b\0"), 5), ["a", "", "b"]);
        // Cut inside an argument: no NUL after it.
        assert_eq!(
            args(&c(b"xmrig\0--donate-le"), 17),
            ["xmrig", "--donate-le"]
        );
        assert!(args(&c(b"xmrig\0"), 0).is_empty());
        assert!(args(&c(b"\0"), 1).is_empty());
        assert_eq!(args(&c(b"a\xff\0"), 3), ["a\u{fffd}"]);
        // A length past the buffer (the kernel's own bound) is not trusted.
        assert_eq!(args(&c(b"ab"), u32::MAX), ["ab"]);
    }

    #[test]
    fn every_match_kind_decodes() {
        let at = std::mem::offset_of!(mg_event, matched_on);
        for (kind, name) in [
            (mg_match::MG_MATCH_FILE, "file"),
            (mg_match::MG_MATCH_PROCESS_NAME, "process_name"),
            (mg_match::MG_MATCH_BOTH, "both"),
            (mg_match::MG_MATCH_MEMFD, "memfd"),
            (mg_match::MG_MATCH_UNLINKED, "unlinked"),
            (mg_match::MG_MATCH_IDENTITY, "identity"),
            (mg_match::MG_MATCH_MMAP, "mmap"),
            (mg_match::MG_MATCH_ARGV, "argv"),
            (mg_match::MG_MATCH_HASH, "hash"),
            (mg_match::MG_MATCH_DRIFT, "drift"),
            (mg_match::MG_MATCH_RANDOMX, "randomx"),
            (mg_match::MG_MATCH_MSR, "msr"),
            (mg_match::MG_MATCH_HUGEPAGES, "hugepages"),
        ] {
            let mut raw = raw_blocked_xmrig();
            raw[at..at + 4].copy_from_slice(&kind.0.to_ne_bytes());
            assert_eq!(decode(&raw).unwrap().matched_on.as_str(), name);
        }
    }

    #[test]
    fn a_hash_match_reports_the_digest_in_hex() {
        let mut raw = raw_blocked_xmrig();
        let at = std::mem::offset_of!(mg_event, matched_on);
        raw[at..at + 4].copy_from_slice(&mg_match::MG_MATCH_HASH.0.to_ne_bytes());
        let name = std::mem::offset_of!(mg_event, matched_name);
        for (i, b) in raw[name..name + SHA256_LEN].iter_mut().enumerate() {
            *b = i as u8;
        }
        let e = decode(&raw).unwrap();
        assert_eq!(e.matched_name.len(), 64);
        assert!(e.matched_name.starts_with("000102"));
        assert!(e.matched_name.ends_with("1d1e1f"));
    }

    #[test]
    fn hooks_decode() {
        let at = std::mem::offset_of!(mg_event, hook);
        let mut raw = raw_blocked_xmrig();
        assert_eq!(decode(&raw).unwrap().hook, Hook::Exec);
        raw[at] = mg_hook::MG_HOOK_MMAP.0 as u8;
        assert_eq!(decode(&raw).unwrap().hook.as_str(), "mmap");
        raw[at] = mg_hook::MG_HOOK_SWITCH.0 as u8;
        assert_eq!(decode(&raw).unwrap().hook.as_str(), "context_switch");
        raw[at] = mg_hook::MG_HOOK_OPEN.0 as u8;
        assert_eq!(decode(&raw).unwrap().hook.as_str(), "open");
        raw[at] = 7;
        assert!(decode(&raw).is_err());
    }

    #[test]
    fn tiers_decode() {
        let at = std::mem::offset_of!(mg_event, tier);
        let mut raw = raw_blocked_xmrig();
        assert_eq!(decode(&raw).unwrap().tier, Tier::Lsm);
        raw[at] = crate::contract::mg_tier::MG_TIER_KILL.0 as u8;
        assert_eq!(decode(&raw).unwrap().tier, Tier::Kill);
        raw[at] = 0;
        assert!(decode(&raw).is_err(), "every program sets its tier");
    }

    #[test]
    fn prefix_matches_report_the_pattern() {
        let mut raw = raw_blocked_xmrig();
        raw[std::mem::offset_of!(mg_event, matched_prefix)] = 1;
        assert_eq!(decode(&raw).unwrap().matched_name, "xmrig*");
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let raw = raw_blocked_xmrig();
        assert!(decode(&raw[..raw.len() - 1]).is_err());
        let mut bad = raw.clone();
        let action_at = std::mem::offset_of!(mg_event, action);
        bad[action_at] = 9;
        assert!(decode(&bad).is_err());
    }
}
