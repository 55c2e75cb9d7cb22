//! Compiles the BPF-LSM program and generates its Rust skeleton (types included).

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAM: &str = "src/bpf/minerguard.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("minerguard.skel.rs");
    SkeletonBuilder::new()
        .source(PROGRAM)
        // alu32/jmp32 code lets the verifier bound the 32-bit return value
        // (6.12 insists it is within [-4095, 0]).
        .clang_args(["-I", "src/bpf", "-mcpu=v3", "-Wall", "-Werror"])
        .build_and_generate(&out)
        .unwrap_or_else(|e| panic!("building {PROGRAM}: {e:#}"));
    println!("cargo:rerun-if-changed=src/bpf");
}
