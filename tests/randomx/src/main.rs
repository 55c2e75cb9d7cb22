//! mg-randomx SECONDS: computes RandomX hashes (light mode) for SECONDS, as a miner's worker
//! thread does, printing "hashing" once the cache is ready and the number of hashes at the
//! end. The input changes every hash (a nonce), as in mining; nothing is sent anywhere.

use std::io::Write;
use std::time::{Duration, Instant};

use randomx_rs::{RandomXCache, RandomXFlag, RandomXVM};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // Light mode: no dataset (2 GiB), no huge pages; the interpreter or the JIT, as the CPU
    // allows (both set the rounding mode with CFROUND).
    let flags = RandomXFlag::get_recommended_flags();
    let cache = RandomXCache::new(flags, b"minerguard test key").expect("cache");
    let vm = RandomXVM::new(flags, Some(cache), None).expect("vm");
    println!("hashing");
    let _ = std::io::stdout().flush();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut input = *b"minerguard test block header 00000000";
    let mut hashes = 0u64;
    while Instant::now() < end {
        input[29..37].copy_from_slice(format!("{:08x}", hashes as u32).as_bytes());
        let hash = vm.calculate_hash(&input).expect("hash");
        std::hint::black_box(hash);
        hashes += 1;
    }
    println!("done: {hashes} hashes in {seconds} s");
}
