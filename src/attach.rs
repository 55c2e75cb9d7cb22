//! Putting the program in force: choosing the tier (the strongest way of enforcing this
//! kernel proves it can run), loading the programs of that tier, attaching them, and proving
//! that they really enforce: a functional probe, since no list is proof either way (a kernel
//! can list `bpf` and refuse LSM programs, or attach one that never runs). Another way of
//! enforcing (another hook) belongs here too.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, ProgramMut};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::bpf::{MinerguardMaps, MinerguardSkel, MinerguardSkelBuilder, OpenMinerguardSkel};
use crate::contract::{Tier, ARGV_PROBE, PROBE_NAME};
use crate::maps::{self, Config};

const LSM_LIST: &str = "/sys/kernel/security/lsm";
const SECURITYFS: &str = "/sys/kernel/security";

/// How to turn BPF LSM on, given the LSMs active now (if known).
pub fn enable_hint(active: Option<&[String]>) -> String {
    let param = match active {
        Some(list) if list.iter().any(|l| l == "bpf") => {
            return "The kernel lists bpf among its active LSMs, yet BPF-LSM programs do not \
                    run: it must be built with CONFIG_BPF_LSM=y and CONFIG_DEBUG_INFO_BTF=y, \
                    and no sandbox may filter bpf(2)."
                .to_string();
        }
        Some(list) if !list.is_empty() => format!("lsm={},bpf", list.join(",")),
        _ => "lsm=<the LSMs your distribution enables>,bpf".to_string(),
    };
    format!(
        "To enable it, add the kernel parameter `{param}` (for GRUB: append it to \
         GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, reboot). \
         The kernel must also be built with CONFIG_BPF_LSM=y and CONFIG_DEBUG_INFO_BTF=y."
    )
}

/// The active LSMs, mounting securityfs if nobody has; `None` if they cannot be read.
pub fn active_lsms() -> Option<Vec<String>> {
    if !Path::new(LSM_LIST).exists() {
        // Best effort: a host without securityfs mounted still gets the probe.
        let _ = nix::mount::mount(
            Some("securityfs"),
            SECURITYFS,
            Some("securityfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
    }
    let list = fs::read_to_string(LSM_LIST).ok()?;
    Some(
        list.trim()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Why the kernel refused the programs of `tier`, in terms of what the node is missing.
fn load_refused(tier: Tier, err: libbpf_rs::Error) -> anyhow::Error {
    let active = active_lsms();
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push(
            "minerguard must run as root (it needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"
                .to_string(),
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        missing.push(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux): it needs CONFIG_DEBUG_INFO_BTF=y"
                .to_string(),
        );
    }
    if let Ok(syms) = fs::read_to_string("/proc/kallsyms") {
        if tier == Tier::Lsm && !syms.contains(" bpf_lsm_bprm_check_security") {
            missing.push("this kernel was built without CONFIG_BPF_LSM=y".to_string());
        }
    }
    let lockdown = fs::read_to_string(Path::new(SECURITYFS).join("lockdown")).unwrap_or_default();
    if lockdown.contains("[confidentiality]") {
        missing.push("kernel lockdown is in confidentiality mode, which forbids the kernel reads the program makes (boot with lockdown=integrity)".to_string());
    }
    let bpf_listed = active
        .as_ref()
        .is_some_and(|l| l.iter().any(|s| s == "bpf"));
    if tier == Tier::Lsm && !bpf_listed {
        missing.push(enable_hint(active.as_deref()));
    }
    // The verifier's refusals come back as EACCES, EINVAL or E2BIG (too complex), a sandbox's
    // as EPERM; libbpf-rs
    // keeps the errno only in its message (its ErrorKind folds EACCES and EPERM together).
    let text = err.to_string();
    let verifier = ["(os error 13)", "(os error 22)", "(os error 7)"]
        .iter()
        .any(|errno| text.contains(errno));
    if missing.is_empty() && verifier && nix::unistd::geteuid().is_root() {
        return anyhow!(
            "the kernel's verifier rejected minerguard's {tier} programs ({err}): this build \
             does not support this kernel; RUST_LOG=libbpf=debug shows the verifier's log \
             (please report it with `uname -r`)"
        );
    }
    let why = if missing.is_empty() {
        match tier {
            Tier::Lsm => format!(
                "the kernel lists bpf among its active LSMs ({}) and has BTF, yet refuses LSM \
                 programs: a seccomp or container sandbox that filters bpf(2) does this \
                 (RUST_LOG=libbpf=debug shows libbpf's log)",
                active.as_deref().map_or("unknown".into(), |l| l.join(","))
            ),
            Tier::FmodRet => "the kernel refuses fmod_ret programs: they need BPF trampolines \
                 (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, x86-64 or arm64), and a sandbox that \
                 filters bpf(2) refuses them too"
                .to_string(),
            Tier::Kill => "the kernel refuses BTF tracepoint programs (Linux 5.5 or newer with \
                 BTF is needed)"
                .to_string(),
        }
    } else {
        missing.join("; ")
    };
    anyhow!("the kernel refused minerguard's {tier} programs ({err}): {why}")
}

/// Which programs load with `tier` (a kernel refuses the whole object if one of its programs
/// cannot load): the tier's exec check (and mmap check, where the tier has one), the
/// argument check, and the optional layers where the kernel has them.
pub fn select(open: &mut OpenMinerguardSkel<'_>, tier: Tier, optional: Optional) {
    let progs = &mut open.progs;
    progs.mg_bprm_check.set_autoload(tier == Tier::Lsm);
    progs.mg_mmap_file.set_autoload(tier == Tier::Lsm);
    progs.mg_file_open.set_autoload(tier == Tier::Lsm);
    progs.mg_bprm_fmod.set_autoload(tier == Tier::FmodRet);
    progs.mg_mmap_fmod.set_autoload(tier == Tier::FmodRet);
    progs.mg_open_fmod.set_autoload(tier == Tier::FmodRet);
    progs.mg_exec_kill.set_autoload(tier == Tier::Kill);
    progs.mg_bprm_hash.set_autoload(optional.hashes);
    progs.mg_mmap_hash.set_autoload(optional.hashes);
    progs.mg_bprm_drift.set_autoload(optional.drift);
    progs.mg_mmap_drift.set_autoload(optional.drift);
}

/// Loads the opened object into the kernel; a refusal says what the node is missing.
pub fn load<'obj>(open: OpenMinerguardSkel<'obj>, tier: Tier) -> Result<MinerguardSkel<'obj>> {
    open.load().map_err(|e| load_refused(tier, e))
}

/// Tries `tier` on its own: loads only its exec check (on fresh maps, never pinned),
/// attaches it and runs the exec probe; everything is gone when this returns.
pub fn trial(tier: Tier) -> Result<()> {
    let mut storage = std::mem::MaybeUninit::uninit();
    let mut open = MinerguardSkelBuilder::default()
        .open(&mut storage)
        .context("opening minerguard's BPF object")?;
    select(&mut open, tier, Optional::NONE);
    for mut prog in open.open_object_mut().progs_mut() {
        if prog.name() != exec_program(tier) {
            prog.set_autoload(false);
        }
    }
    let skel = load(open, tier)?;
    // The probe is answered by the tier the config names (see exec_check).
    let config = Config {
        tier: Some(tier),
        ..Config::default()
    };
    maps::write_config(&skel.maps.mg_config, config)?;
    let _link = exec_check(&skel, tier)
        .attach()
        .map_err(|e| attach_refused(tier, "exec check", e))?;
    exec_probe(&skel.maps, tier)
}

/// The tier to enforce with: `requested`, or (None: auto) the strongest one whose trial
/// works. The requested one is proven by the start's own probe.
pub fn choose(requested: Option<Tier>) -> Result<Tier> {
    if let Some(tier) = requested {
        return Ok(tier);
    }
    let mut refusals = Vec::new();
    for tier in Tier::ALL {
        // Without bpf among the active LSMs the kernel never calls BPF-LSM programs: a trial
        // could only fail, after patching kernel text twice for nothing. (With bpf listed,
        // the trial still decides: a sandbox can list it and refuse the programs.)
        if tier == Tier::Lsm {
            if let Some(list) = active_lsms().filter(|l| !l.iter().any(|s| s == "bpf")) {
                let why = format!(
                    "bpf is not among the active LSMs ({}). {}",
                    list.join(","),
                    enable_hint(Some(&list))
                );
                refusals.push((tier, why));
                continue;
            }
        }
        match trial(tier) {
            Ok(()) => {
                for (weaker_than, why) in &refusals {
                    tracing::warn!(tier = %weaker_than, reason = %why, "tier unavailable");
                }
                return Ok(tier);
            }
            Err(e) => refusals.push((tier, format!("{e:#}"))),
        }
    }
    let why: Vec<String> = refusals
        .iter()
        .map(|(tier, why)| format!("{tier}: {why}"))
        .collect();
    bail!(
        "no enforcement tier works on this kernel, so minerguard cannot stop anything here. {}. \
         `minerguard doctor` shows what the node has.",
        why.join("; ")
    )
}

/// The exec check's program of `tier`, as the object names it.
pub fn exec_program(tier: Tier) -> &'static str {
    match tier {
        Tier::Lsm => "mg_bprm_check",
        Tier::FmodRet => "mg_bprm_fmod",
        Tier::Kill => "mg_exec_kill",
    }
}

fn exec_check<'a, 'obj>(skel: &'a MinerguardSkel<'obj>, tier: Tier) -> &'a ProgramMut<'obj> {
    match tier {
        Tier::Lsm => &skel.progs.mg_bprm_check,
        Tier::FmodRet => &skel.progs.mg_bprm_fmod,
        Tier::Kill => &skel.progs.mg_exec_kill,
    }
}

/// Why attaching `what` on `tier` failed, and what to change.
fn attach_refused(tier: Tier, what: &str, e: libbpf_rs::Error) -> anyhow::Error {
    match tier {
        Tier::Lsm => anyhow!(
            "attaching the {what} to its BPF LSM hook failed ({e}). {}",
            enable_hint(active_lsms().as_deref())
        ),
        Tier::FmodRet => anyhow!(
            "attaching the {what} with fmod_ret failed ({e}): the kernel needs BPF trampolines"
        ),
        Tier::Kill => {
            anyhow!("attaching the {what} to the sched_process_exec tracepoint failed ({e})")
        }
    }
}

/// The host's mount namespace: PID 1's, read in the kernel by the task iterator
/// (`mg_host_mnt_ns`), since the agent's unit may forbid opening /proc/1/ns/mnt.
pub fn host_mnt_ns(skel: &MinerguardSkel<'_>) -> Result<u32> {
    let link = skel
        .progs
        .mg_host_mnt_ns
        .attach()
        .context("attaching the task iterator that finds PID 1's mount namespace")?;
    let mut out = Vec::new();
    libbpf_rs::Iter::new(&link)
        .context("creating the task iterator")?
        .read_to_end(&mut out)
        .context("running the task iterator")?;
    if let Some(raw) = out.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        return Ok(u32::from_ne_bytes(raw));
    }
    // The iterator walks the agent's PID namespace only: an agent started inside one (a
    // sandbox, a container with its own PID namespace) does not see the host's PID 1. Its
    // own PID 1 is then the nearest thing to the host.
    // If even that is hidden (a sandbox's PID 1 may be another user's), the agent's own.
    use std::os::unix::fs::MetadataExt;
    let ns = fs::metadata("/proc/1/ns/mnt").or_else(|e| {
        tracing::warn!(
            error = %e,
            "PID 1's mount namespace is hidden from the agent: processes in the agent's own \
             mount namespace count as the host's (scope = \"containers\")"
        );
        fs::metadata("/proc/self/ns/mnt")
    });
    let ns = ns.context("reading the agent's mount namespace (/proc/self/ns/mnt)")?;
    u32::try_from(ns.ino()).context("the mount namespace's inode number exceeds 32 bits")
}

/// The links that keep the programs attached: dropping one detaches its program (unless
/// pinned).
pub struct Links {
    /// The tier of `exec` and `mmap`.
    pub tier: Tier,
    /// The exec check: bprm_check_security (lsm), security_bprm_check (fmod_ret) or
    /// sched_process_exec (kill).
    pub exec: Link,
    /// mmap_file: files mapped executable (none on the kill tier).
    pub mmap: Option<Link>,
    /// file_open: MSR and huge-page files opened for writing (none on the kill tier).
    pub open: Option<Link>,
    /// sched_process_exec: the arguments an exec passed.
    pub argv: Link,
    /// x86_fpu_regs_activated: the behaviour layer (RandomX's rounding modes).
    pub behavior: Link,
    /// The content-hash checks (bprm_check_security, mmap_file), where the kernel has them.
    pub hash: Option<(Link, Link)>,
    /// The drift checks (bprm_check_security, mmap_file), where the kernel has them.
    pub drift: Option<(Link, Link)>,
}

/// The programs a kernel may lack, decided before loading (a kernel refuses the whole object
/// if one of its programs cannot load).
#[derive(Clone, Copy, Debug)]
pub struct Optional {
    /// Content hashes: `hashes_supported`.
    pub hashes: bool,
    /// Drift: `drift_supported`.
    pub drift: bool,
}

impl Optional {
    pub const NONE: Optional = Optional {
        hashes: false,
        drift: false,
    };

    /// Both are LSM programs: other tiers cannot run them.
    pub fn detect(tier: Tier) -> Optional {
        Optional {
            hashes: tier == Tier::Lsm && hashes_supported(),
            drift: tier == Tier::Lsm && drift_supported(),
        }
    }
}

/// The running kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Whether drift can be checked: overlayfs's types come from the overlay module's BTF (5.11+,
/// CONFIG_DEBUG_INFO_BTF_MODULES; the module loaded), and bpf_d_path from an LSM program.
pub fn drift_supported() -> bool {
    kernel_version() >= (5, 11) && Path::new("/sys/kernel/btf/overlay").exists()
}

/// Whether this kernel can hash files in the hook: `bpf_ima_file_hash` (Linux 5.18) with IMA
/// built in. Decided before loading: a kernel without it refuses the whole object if the
/// hash programs are in it.
pub fn hashes_supported() -> bool {
    // IMA's securityfs directory (mounted by `active_lsms` if needed).
    kernel_version() >= (5, 18) && Path::new(SECURITYFS).join("ima").exists()
}

/// Attaches what `select` loaded for `tier`; `optional`: which optional programs were loaded.
pub fn attach(skel: &MinerguardSkel<'_>, tier: Tier, optional: Optional) -> Result<Links> {
    // The exec check last: once it is attached, all are.
    let argv = skel.progs.mg_exec_args.attach().map_err(|e| {
        anyhow!("attaching the argument check to the sched_process_exec tracepoint failed ({e})")
    })?;
    let behavior = skel.progs.mg_fpu_switch.attach().map_err(|e| {
        anyhow!(
            "attaching the behaviour check to the x86_fpu_regs_activated tracepoint failed ({e})"
        )
    })?;
    // The checks that make a call fail, where the tier can.
    let calls = match tier {
        Tier::Lsm => Some((&skel.progs.mg_mmap_file, &skel.progs.mg_file_open)),
        Tier::FmodRet => Some((&skel.progs.mg_mmap_fmod, &skel.progs.mg_open_fmod)),
        Tier::Kill => None,
    };
    let (mmap, open) = match calls {
        Some((mmap, open)) => (
            Some(
                mmap.attach()
                    .map_err(|e| attach_refused(tier, "mmap check", e))?,
            ),
            Some(
                open.attach()
                    .map_err(|e| attach_refused(tier, "file-open check", e))?,
            ),
        ),
        None => (None, None),
    };
    let exec = exec_check(skel, tier)
        .attach()
        .map_err(|e| attach_refused(tier, "exec check", e))?;
    // The optional layers after the name checks: a file denied by its name is not hashed.
    // Each has a program on both hooks, attached together.
    let pair = |layer: &str, exec: &ProgramMut<'_>, mmap: &ProgramMut<'_>| {
        let exec = exec
            .attach()
            .map_err(|e| attach_refused(tier, &format!("{layer} exec check"), e))?;
        let mmap = mmap
            .attach()
            .map_err(|e| attach_refused(tier, &format!("{layer} mmap check"), e))?;
        Ok::<_, anyhow::Error>((exec, mmap))
    };
    let progs = &skel.progs;
    let drift = optional
        .drift
        .then(|| pair("drift", &progs.mg_bprm_drift, &progs.mg_mmap_drift))
        .transpose()?;
    let hash = optional
        .hashes
        .then(|| pair("hash", &progs.mg_bprm_hash, &progs.mg_mmap_hash))
        .transpose()?;
    Ok(Links {
        tier,
        exec,
        mmap,
        open,
        argv,
        behavior,
        hash,
        drift,
    })
}

/// Proves that what `attach` attached enforces: an exec the check must stop (EPERM, or
/// SIGKILL on the kill tier), then a file mapped executable it must deny (when the policy
/// turns the mmap check on and the tier has one), then the hash and argument checks, when on.
pub fn probe(maps: &MinerguardMaps<'_>, config: Config, tier: Tier) -> Result<()> {
    // The exec probe first: when the tier cannot enforce here, its error says what to change.
    exec_probe(maps, tier)?;
    // (Off on the kill tier: config_for.)
    if config.mmap {
        let names = &maps.mg_names;
        maps::insert_probe(names)?;
        let outcome = mmap_probe();
        maps::delete_probe(names)?;
        if let Some(seen) = outcome.context("running the mmap probe")? {
            bail!(
                "the mmap check is not enforcing on this kernel: mapping a file with a listed \
                 name executable {seen}, where it must fail with EPERM"
            );
        }
    }
    if config.hash {
        hash_probe(&maps.mg_hashes)?;
    }
    if config.argv {
        argv_probe(&maps.mg_arg_rules)?;
    }
    Ok(())
}

/// Where the exec probe's link lives: the agent's runtime directory.
const PROBE_DIR: &str = "/run/minerguard";

/// Execs this program through a symlink named as the probe, so that the process name the
/// check reads is listed (as MG_NAME_PROBE): the lsm and fmod_ret tiers must fail the exec
/// with EPERM, the kill tier must kill the process before it runs. Unstopped, the program
/// exits at once on an unknown argument.
fn exec_probe(maps: &MinerguardMaps<'_>, tier: Tier) -> Result<()> {
    let names = &maps.mg_names;
    fs::create_dir_all(PROBE_DIR).with_context(|| format!("creating {PROBE_DIR}"))?;
    let link = Path::new(PROBE_DIR).join(PROBE_NAME);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink("/proc/self/exe", &link)
        .with_context(|| format!("creating the probe's link {}", link.display()))?;
    maps::insert_probe(names)?;
    let outcome = Command::new(&link)
        .arg("--minerguard-exec-probe")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    maps::delete_probe(names)?;
    let _ = fs::remove_file(&link);
    let stopped = match (&outcome, tier) {
        (Err(e), Tier::Lsm | Tier::FmodRet) => e.raw_os_error() == Some(libc::EPERM),
        (Ok(status), Tier::Kill) => {
            status.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32)
        }
        _ => false,
    };
    if stopped {
        return Ok(());
    }
    let seen = match outcome {
        Ok(status) => format!("ran and ended with {status}"),
        Err(e) => format!("failed: {e}"),
    };
    let hint = match tier {
        Tier::Lsm => enable_hint(active_lsms().as_deref()),
        Tier::FmodRet => "The kernel attached the fmod_ret program but did not run it.".into(),
        Tier::Kill => {
            "The kernel attached the tracepoint program but its signal did not arrive.".into()
        }
    };
    bail!(
        "the {tier} tier is not enforcing on this kernel: its program attached, but an exec \
         it must stop was not stopped (it {seen}). {hint}"
    )
}

/// The hash probe's content: a script whose interpreter does not exist, so that it never runs.
const HASH_PROBE: &[u8] = b"#!/nonexistent/minerguard-hash-probe-interpreter\n";

/// Execs a memfd whose content's digest is listed as the probe (and whose name is not
/// listed): with the hash check live, the exec fails with EPERM; without it, with ENOENT.
fn hash_probe(hashes: &dyn MapCore) -> Result<()> {
    use sha2::{Digest, Sha256};
    let mut digest = crate::contract::mg_sha256::default();
    digest.digest.copy_from_slice(&Sha256::digest(HASH_PROBE));
    maps::insert_hash_probe(hashes, &digest)?;
    let outcome = exec_memfd("minerguard-hash-probe", HASH_PROBE);
    maps::delete_hash_probe(hashes, &digest)?;
    match outcome.context("running the hash probe")? {
        Some(errno) if errno == nix::errno::Errno::EPERM as i32 => Ok(()),
        other => bail!(
            "the hash check is not enforcing on this kernel: an exec of a file whose digest is \
             listed {}",
            what_happened(other)
        ),
    }
}

/// A probe exec's outcome, in words: "ran", or "failed with ENOENT".
fn what_happened(errno: Option<i32>) -> String {
    match errno {
        None => "ran".to_string(),
        Some(errno) => format!("failed with {}", nix::errno::Errno::from_raw(errno)),
    }
}

/// Runs this program with the probe argument, which the argument check must kill before it
/// runs a single instruction (unkilled, it would exit at once on an unknown flag).
fn argv_probe(rules: &dyn MapCore) -> Result<()> {
    maps::insert_argv_probe(rules)?;
    let outcome = Command::new("/proc/self/exe")
        .arg(ARGV_PROBE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    maps::delete_argv_probe(rules)?;
    let status = outcome.context("running the argument check's probe")?;
    if status.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32) {
        return Ok(());
    }
    bail!(
        "the argument check is not enforcing on this kernel: a process given an argument it \
         must kill exited with {status} instead of being killed"
    )
}

/// What went wrong when mapping the probe memfd executable, or `None` if EPERM refused it.
fn mmap_probe() -> Result<Option<String>> {
    use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
    let fd = memfd_create(PROBE_NAME, MFdFlags::MFD_CLOEXEC).context("creating the probe memfd")?;
    let file = fs::File::from(fd);
    file.set_len(4096).context("sizing the probe memfd")?;
    let len = std::num::NonZeroUsize::new(4096).context("a page")?;
    // SAFETY: a fresh private mapping of our own memfd, unmapped before return, never read.
    let mapped = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_EXEC,
            MapFlags::MAP_PRIVATE,
            &file,
            0,
        )
    };
    match mapped {
        Err(nix::errno::Errno::EPERM) => Ok(None),
        Err(errno) => Ok(Some(format!("failed with {errno}"))),
        Ok(addr) => {
            // SAFETY: the mapping just made, of `len` bytes.
            let _ = unsafe { munmap(addr, len.get()) };
            Ok(Some("succeeded".to_string()))
        }
    }
}

/// Execs a memfd named `name` holding `content`: the errno, or `None` if it ran.
fn exec_memfd(name: &str, content: &[u8]) -> Result<Option<i32>> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).context("creating the probe memfd")?;
    let mut file = fs::File::from(fd);
    file.write_all(content).context("writing the probe memfd")?;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let spawned = Command::new(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Err(e) => Ok(e.raw_os_error()),
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_names_the_kernel_parameter() {
        let list = vec!["lockdown".to_string(), "capability".to_string()];
        assert!(enable_hint(Some(&list)).contains("`lsm=lockdown,capability,bpf`"));
        assert!(enable_hint(None).contains("lsm=<the LSMs your distribution enables>,bpf"));
        let with_bpf = vec!["lockdown".to_string(), "bpf".to_string()];
        assert!(!enable_hint(Some(&with_bpf)).contains(",bpf`"));
    }
}
