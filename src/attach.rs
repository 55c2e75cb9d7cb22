//! Putting the program in force: loading it, attaching it to the LSM hook, and proving that
//! it really enforces here: the active LSM list first, then a functional probe, since the
//! list alone is not proof either way (a kernel can list `bpf` and refuse LSM programs, or
//! attach one that never runs). Another way of enforcing (another hook) belongs here too.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{Link, MapCore, ProgramMut};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::bpf::{MinerguardMaps, MinerguardSkel, OpenMinerguardSkel};
use crate::contract::{ARGV_PROBE, PROBE_NAME};
use crate::maps::{self, Config};

const LSM_LIST: &str = "/sys/kernel/security/lsm";
const SECURITYFS: &str = "/sys/kernel/security";

/// How to turn BPF LSM on, given the LSMs active now (if known).
fn enable_hint(active: Option<&[String]>) -> String {
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

/// Fails, with what to do, when the kernel's active LSM list lacks `bpf`.
pub fn check_active_list() -> Result<()> {
    match active_lsms() {
        Some(list) if list.iter().any(|l| l == "bpf") => Ok(()),
        Some(list) => bail!(
            "BPF LSM is not active on this kernel: the active LSMs are \"{}\", without \"bpf\", \
             so minerguard cannot block anything. {}",
            list.join(","),
            enable_hint(Some(&list))
        ),
        None => {
            tracing::warn!(
                path = LSM_LIST,
                "cannot read the active LSM list; relying on the functional probe"
            );
            Ok(())
        }
    }
}

/// Why the kernel refused the program, in terms of what the node is missing.
fn load_refused(err: libbpf_rs::Error) -> anyhow::Error {
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
        if !syms.contains(" bpf_lsm_bprm_check_security") {
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
    if !bpf_listed {
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
            "the kernel's verifier rejected minerguard's BPF program ({err}): this build does \
             not support this kernel; RUST_LOG=libbpf=debug shows the verifier's log (please \
             report it with `uname -r`)"
        );
    }
    let why = if missing.is_empty() {
        format!(
            "the kernel lists bpf among its active LSMs ({}) and has BTF, yet refuses LSM \
             programs: a seccomp or container sandbox that filters bpf(2) does this, and \
             minerguard cannot enforce under it (RUST_LOG=libbpf=debug shows libbpf's log)",
            active.as_deref().map_or("unknown".into(), |l| l.join(","))
        )
    } else {
        missing.join("; ")
    };
    anyhow!("the kernel refused minerguard's BPF LSM program ({err}): {why}")
}

/// Loads the opened object into the kernel; a refusal says what the node is missing.
pub fn load<'obj>(open: OpenMinerguardSkel<'obj>) -> Result<MinerguardSkel<'obj>> {
    open.load().map_err(load_refused)
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
    let raw: [u8; 4] = out
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .context("the task iterator did not find PID 1")?;
    Ok(u32::from_ne_bytes(raw))
}

/// The links that keep the programs attached: dropping one detaches its program (unless
/// pinned).
pub struct Links {
    /// bprm_check_security: execs.
    pub exec: Link,
    /// mmap_file: files mapped executable.
    pub mmap: Link,
    /// sched_process_exec: the arguments an exec passed.
    pub argv: Link,
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
    pub fn detect() -> Optional {
        Optional {
            hashes: hashes_supported(),
            drift: drift_supported(),
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

/// `optional`: which optional programs were loaded.
pub fn attach(skel: &MinerguardSkel<'_>, optional: Optional) -> Result<Links> {
    let refused = |hook: &str, e: libbpf_rs::Error| {
        anyhow!(
            "attaching to the {hook} LSM hook failed ({e}). {}",
            enable_hint(active_lsms().as_deref())
        )
    };
    // The exec hook last: once it is attached, all are.
    let argv = skel.progs.mg_exec_args.attach().map_err(|e| {
        anyhow!("attaching the argument check to the sched_process_exec tracepoint failed ({e})")
    })?;
    let mmap = skel
        .progs
        .mg_mmap_file
        .attach_lsm()
        .map_err(|e| refused("mmap_file", e))?;
    let exec = skel
        .progs
        .mg_bprm_check
        .attach_lsm()
        .map_err(|e| refused("bprm_check_security", e))?;
    // The optional layers after the name checks: a file denied by its name is not hashed.
    // Each has a program on both hooks, attached together.
    let pair =
        |layer: &str, exec: &ProgramMut<'_>, mmap: &ProgramMut<'_>| -> Result<(Link, Link)> {
            let exec = exec
                .attach_lsm()
                .map_err(|e| refused(&format!("bprm_check_security ({layer})"), e))?;
            let mmap = mmap
                .attach_lsm()
                .map_err(|e| refused(&format!("mmap_file ({layer})"), e))?;
            Ok((exec, mmap))
        };
    let progs = &skel.progs;
    let drift = optional
        .drift
        .then(|| pair("drift", &progs.mg_bprm_drift, &progs.mg_mmap_drift))
        .transpose()?;
    let hash = optional
        .hashes
        .then(|| pair("hashes", &progs.mg_bprm_hash, &progs.mg_mmap_hash))
        .transpose()?;
    Ok(Links {
        exec,
        mmap,
        argv,
        hash,
        drift,
    })
}

/// Execs, then maps executable, a memfd whose name is listed as the probe: with the hooks
/// live both are denied with EPERM, whatever the mode; without them, the `#!` line names a
/// missing interpreter and the exec fails with ENOENT, so nothing ever runs, and the mapping
/// succeeds (and is unmapped at once). The mmap hook only looks when the policy turns it on
/// (`config.mmap`). Then the hash and argument checks, when on.
pub fn probe(maps: &MinerguardMaps<'_>, config: Config) -> Result<()> {
    // The exec probe first: when BPF LSM is not active, its error says what to change.
    let names = &maps.mg_names;
    maps::insert_probe(names)?;
    let outcome = exec_probe().and_then(|exec| {
        let mmap = if config.mmap { mmap_probe()? } else { None };
        Ok((exec, mmap))
    });
    maps::delete_probe(names)?;
    let (exec, mmap) = outcome.context("running the BPF LSM probe")?;
    if exec != Some(nix::errno::Errno::EPERM as i32) {
        bail!(
            "BPF LSM is not enforcing on this kernel: minerguard's program attached, but an \
             exec it must deny was not denied (it {}). {}",
            what_happened(exec),
            enable_hint(active_lsms().as_deref())
        );
    }
    if let Some(seen) = mmap {
        bail!(
            "the mmap_file hook is not enforcing on this kernel: mapping a file with a listed \
             name executable {seen}, where it must fail with EPERM"
        );
    }
    if config.hash {
        hash_probe(&maps.mg_hashes)?;
    }
    if config.argv {
        argv_probe(&maps.mg_arg_rules)?;
    }
    Ok(())
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

/// The errno of the probe exec, or `None` if it ran.
fn exec_probe() -> Result<Option<i32>> {
    exec_memfd(PROBE_NAME, b"#!/nonexistent/minerguard-probe-interpreter\n")
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
