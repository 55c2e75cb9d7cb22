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
