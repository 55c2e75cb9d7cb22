//! Compiles the BPF-LSM program and generates its Rust skeleton (types included).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAM: &str = "src/bpf/minerguard.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    SkeletonBuilder::new()
        .source(PROGRAM)
        // Kept beside the skeleton: src/contract.rs's layout test reads its BTF.
        .obj(out.join("minerguard.bpf.o"))
        // alu32/jmp32 code lets the verifier bound the 32-bit return value
        // (6.12 insists it is within [-4095, 0]).
        .clang_args(["-I", "src/bpf", "-mcpu=v3", "-Wall", "-Werror"])
        .build_and_generate(out.join("minerguard.skel.rs"))
        .unwrap_or_else(|e| panic!("building {PROGRAM}: {e:#}"));
    println!("cargo:rerun-if-changed=src/bpf");
    commit();
    // For the upgrade test (tests/systemd-vm): an agent whose contract version differs.
    println!("cargo::rustc-check-cfg=cfg(minerguard_next_abi)");
    println!("cargo:rerun-if-env-changed=MINERGUARD_NEXT_ABI");
    if env::var_os("MINERGUARD_NEXT_ABI").is_some() {
        println!("cargo:rustc-cfg=minerguard_next_abi");
    }
}

/// The commit built, for `minerguard version`: MINERGUARD_COMMIT if set (a package built
/// from a tarball), else git's HEAD, else "unknown".
fn commit() {
    println!("cargo:rerun-if-env-changed=MINERGUARD_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = env::var("MINERGUARD_COMMIT").ok().or_else(|| {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=MINERGUARD_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}
