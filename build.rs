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
}
