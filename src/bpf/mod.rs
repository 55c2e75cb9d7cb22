//! The kernel side: the generated skeleton of `minerguard.bpf.c` and the contract types.
#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    unused
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/minerguard.skel.rs"));
}
pub use skel::*;

/// For tests: the object opened, its ELF and BTF parsed; nothing is loaded, so no privileges
/// or BPF LSM are needed.
#[cfg(test)]
pub fn open_for_test(
    storage: &mut std::mem::MaybeUninit<libbpf_rs::OpenObject>,
) -> OpenMinerguardSkel<'_> {
    use libbpf_rs::skel::SkelBuilder;
    MinerguardSkelBuilder::default()
        .open(storage)
        .expect("opening the BPF object")
}
