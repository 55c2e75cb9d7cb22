//! What the kernel cannot say cheaply, added in userspace: wall-clock time (and, as it is
//! resolved, the container identity).

use std::time::{Duration, SystemTime};

use nix::time::{clock_gettime, ClockId};

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall-clock time.
pub fn wall_clock(boot_ns: u64) -> SystemTime {
    let now = SystemTime::now();
    let Ok(boot_now) = clock_gettime(ClockId::CLOCK_BOOTTIME) else {
        return now;
    };
    let boot_now = Duration::new(boot_now.tv_sec() as u64, boot_now.tv_nsec() as u32);
    let age = boot_now.saturating_sub(Duration::from_nanos(boot_ns));
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_stamps_map_to_the_recent_past() {
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64;
        let age = SystemTime::now()
            .duration_since(wall_clock(boot_ns - 2_000_000_000))
            .unwrap();
        assert!(
            age >= Duration::from_secs(2) && age < Duration::from_secs(3),
            "{age:?}"
        );
    }
}
