//! Logging a repeated condition at a bounded rate: the first occurrence at once, then at
//! most one record per interval, which says how many occurrences it stands for. A flood
//! (events undeliverable, accept failing) then costs the journal a line per interval, and
//! nothing is hidden: the counts add up.

use std::time::{Duration, Instant};

pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    /// Occurrences since the last record.
    pending: u64,
}

impl RateLimit {
    pub const fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Counts `n` occurrences; returns how many the caller should report now (they add up to
    /// every occurrence), or `None` while within the interval of the last record.
    pub fn hit(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.pending = self.pending.saturating_add(n);
        self.flush(now)
    }

    /// Occurrences counted but not yet reported, if the interval allows reporting them now.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        if self.pending == 0 {
            return None;
        }
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_one_per_interval_and_nothing_lost() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(Duration::from_secs(10));
        assert_eq!(limit.hit(1, t0), Some(1));
        let mut reported = 1;
        for i in 1..1000 {
            if let Some(n) = limit.hit(1, t0 + Duration::from_millis(i)) {
                reported += n;
            }
        }
        assert_eq!(reported, 1, "records within the interval");
        assert_eq!(limit.flush(t0 + Duration::from_secs(5)), None);
        assert_eq!(limit.flush(t0 + Duration::from_secs(10)), Some(999));
        assert_eq!(limit.flush(t0 + Duration::from_secs(30)), None);
    }
}
