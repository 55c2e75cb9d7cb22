//! `minerguard doctor`: what an operator needs to know before rolling the agent out on a
//! node: what the kernel offers, which enforcement tiers really work here (each tried the way
//! the agent tries it: loaded, attached, and made to stop a probe exec), which layers follow,
//! and what to change. Exit 0 when some tier can enforce.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

use serde::Serialize;

use crate::attach;
use crate::contract::Tier;
use crate::pins;

#[derive(Serialize)]
struct TierCheck {
    tier: Tier,
    works: bool,
    /// Why not, when it does not.
    reason: Option<String>,
}

/// Which layers the best tier brings (README: the tier x layer matrix).
#[derive(Serialize)]
struct Layers {
    names: bool,
    mmap: bool,
    arguments: bool,
    identity: bool,
    hashes: bool,
    drift: bool,
    /// RandomX's rounding-mode pattern (every tier: it kills from a tracepoint).
    randomx: bool,
    /// MSR writes and huge-page reservations (files opened for writing: lsm, fmod_ret).
    tuning: bool,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    btf: bool,
    active_lsms: Option<Vec<String>>,
    lockdown: Option<String>,
    bpffs: bool,
    cgroup_v2: bool,
    ima: bool,
    overlay_btf: bool,
    tiers: Vec<TierCheck>,
    /// The tier `minerguard run` takes here (`--tier auto`).
    tier: Option<Tier>,
    layers: Option<Layers>,
    /// `systemctl is-active minerguard`, where systemd runs.
    systemd_unit: Option<String>,
    /// What to change, most important first.
    advice: Vec<String>,
}

/// The bracketed choice of /sys/kernel/security/lockdown ("none", "integrity", ...).
fn lockdown() -> Option<String> {
    let text = fs::read_to_string("/sys/kernel/security/lockdown").ok()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_string())
}

fn systemd_unit() -> Option<String> {
    if !Path::new("/run/systemd/system").exists() {
        return None;
    }
    let out = Command::new("systemctl")
        .args(["is-active", "minerguard.service"])
        .output()
        .ok()?;
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Some(if state.is_empty() {
        "unknown".into()
    } else {
        state
    })
}

fn examine() -> Report {
    let active = attach::active_lsms();
    let root = nix::unistd::geteuid().is_root();
    let tiers: Vec<TierCheck> = Tier::ALL
        .into_iter()
        .map(|tier| {
            let outcome = if root {
                attach::trial(tier).map_err(|e| format!("{e:#}"))
            } else {
                Err("not tried: trying a tier needs root".to_string())
            };
            TierCheck {
                tier,
                works: outcome.is_ok(),
                reason: outcome.err(),
            }
        })
        .collect();
    let tier = tiers.iter().find(|t| t.works).map(|t| t.tier);
    let lockdown = lockdown();
    let report = Report {
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        lockdown,
        bpffs: pins::is_mounted("bpf", Some("/sys/fs/bpf")),
        cgroup_v2: pins::is_mounted("cgroup2", None),
        ima: attach::hashes_supported(),
        overlay_btf: attach::drift_supported(),
        layers: tier.map(|tier| {
            // As the agent decides them on this tier.
            let optional = attach::Optional::detect(tier);
            Layers {
                names: true,
                mmap: tier.denies_calls(),
                arguments: true,
                identity: true,
                hashes: optional.hashes,
                drift: optional.drift,
                randomx: true,
                tuning: tier.denies_calls(),
            }
        }),
        tier,
        tiers,
        systemd_unit: systemd_unit(),
        active_lsms: active,
        advice: Vec::new(),
    };
    Report {
        advice: advice(&report, root),
        ..report
    }
}

fn advice(r: &Report, root: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !root {
        out.push("run `minerguard doctor` as root: only then can it try the tiers".into());
    }
    if !r.btf {
        out.push(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): no tier can load without \
             CONFIG_DEBUG_INFO_BTF=y"
                .into(),
        );
    }
    if r.tier.is_none() && root {
        out.push("no tier can enforce here: see each tier's reason".into());
    }
    if r.tier.is_some_and(|t| t != Tier::Lsm) {
        out.push(format!(
            "for the lsm tier (EPERM from the BPF LSM hook, content hashes and drift): {}",
            attach::enable_hint(r.active_lsms.as_deref())
        ));
    }
    if r.tier == Some(Tier::Kill) {
        out.push(
            "on the kill tier a listed program is killed before its first instruction, but its \
             exec succeeds, and files mapped executable (loader launches, preloaded libraries) \
             are not checked"
                .into(),
        );
    }
    if r.lockdown.as_deref() == Some("confidentiality") {
        out.push(
            "kernel lockdown is in confidentiality mode, which forbids the kernel reads the \
             programs make: boot with lockdown=integrity"
                .into(),
        );
    }
    if !r.cgroup_v2 {
        out.push(
            "no cgroup v2 hierarchy is mounted: events cannot name containers (mount cgroup2 \
             or boot with systemd.unified_cgroup_hierarchy=1)"
                .into(),
        );
    }
    if r.tier == Some(Tier::Lsm) && !r.ima {
        out.push(
            "content hashes (sha256 in the policy) need Linux 5.18 or newer with IMA built in"
                .into(),
        );
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn print(r: &Report) {
    println!("kernel:       {}", r.kernel);
    println!("BTF:          {}", yes(r.btf));
    println!(
        "active LSMs:  {}",
        r.active_lsms
            .as_ref()
            .map_or("unknown (securityfs unreadable)".into(), |l| l.join(","))
    );
    println!(
        "lockdown:     {}",
        r.lockdown.as_deref().unwrap_or("unknown")
    );
    println!("bpffs:        {}", yes(r.bpffs));
    println!("cgroup v2:    {}", yes(r.cgroup_v2));
    println!("IMA (hashes): {}", yes(r.ima));
    println!("overlay BTF:  {}", yes(r.overlay_btf));
    for t in &r.tiers {
        match &t.reason {
            None => println!("tier {:<9} works", format!("{}:", t.tier)),
            Some(why) => println!("tier {:<9} no: {why}", format!("{}:", t.tier)),
        }
    }
    match (&r.tier, &r.layers) {
        (Some(tier), Some(l)) => println!(
            "would run:    tier {tier}; layers: names yes, mmap {}, arguments yes, identity yes, \
             hashes {}, drift {}, randomx yes, msr and huge pages {}",
            yes(l.mmap),
            yes(l.hashes),
            yes(l.drift),
            yes(l.tuning)
        ),
        _ => println!("would run:    nothing: no tier can enforce"),
    }
    if let Some(unit) = &r.systemd_unit {
        println!("systemd unit: {unit}");
    }
    for a in &r.advice {
        println!("advice:       {a}");
    }
}

pub fn doctor(json: bool) -> ExitCode {
    // Each refusal is in the report, in words: libbpf's own lines would only repeat it.
    libbpf_rs::set_print(None);
    let report = examine();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("minerguard: cannot write the report as JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print(&report);
    }
    if report.tier.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
