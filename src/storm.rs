//! Storms: the same thing stopped again and again in one place (an exec loop in a container)
//! is reported once at once, then once per window with the count of what the window held,
//! before anything is encoded. A loop in one container then costs the log two lines per
//! window whatever its rate, and another container's event is never behind it. Nothing is
//! lost from the count: the lines' `count`s add up to every event the kernel sent.
//!
//! A storm is keyed by (cgroup, what matched, the name matched, the action): the cgroup stands
//! for the container (a container's processes share one), and a different name, a different
//! layer or a change from audit to enforce is news, reported at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::event::Event;

/// Storms followed at once; past this, events of new keys are reported one by one (the table
/// is not grown by whoever can make up names).
pub const MAX_STORMS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    cgroup_id: u64,
    matched_on: &'static str,
    matched_name: String,
    action: &'static str,
}

struct Storm {
    /// When the current window opened.
    opened: Instant,
    /// Events held back in the current window, and the last one's record and time (the
    /// summary reports the last occurrence, with the first one's time beside it).
    held: u64,
    last: Vec<u8>,
    first_boot_ns: u64,
}

/// What to do with an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Report it now, standing for itself only.
    Report,
    /// Held back: a later summary counts it.
    Held,
}

/// A summary due: the last held record, how many it stands for, and when the first was seen.
pub struct Summary {
    pub record: Vec<u8>,
    pub count: u64,
    pub first_boot_ns: u64,
}

pub struct Storms {
    window: Duration,
    open: HashMap<Key, Storm>,
}

impl Storms {
    /// A zero window reports every event by itself.
    pub fn new(window: Duration) -> Storms {
        Storms {
            window,
            open: HashMap::new(),
        }
    }

    /// Whether `e` (whose record is `raw`) is reported now or held for a summary.
    pub fn admit(&mut self, e: &Event, raw: &[u8], now: Instant) -> Verdict {
        if self.window.is_zero() {
            return Verdict::Report;
        }
        let key = Key {
            cgroup_id: e.cgroup_id,
            matched_on: e.matched_on.as_str(),
            matched_name: e.matched_name.clone(),
            action: e.action.as_str(),
        };
        if let Some(storm) = self.open.get_mut(&key) {
            if now.saturating_duration_since(storm.opened) < self.window {
                if storm.held == 0 {
                    storm.first_boot_ns = e.boot_ns;
                }
                storm.held += 1;
                storm.last.clear();
                storm.last.extend_from_slice(raw);
                return Verdict::Held;
            }
            // A window that ended with nothing held: this one is news again.
            self.open.remove(&key);
        }
        if self.open.len() < MAX_STORMS {
            self.open.insert(
                key,
                Storm {
                    opened: now,
                    held: 0,
                    last: Vec::new(),
                    first_boot_ns: 0,
                },
            );
        }
        Verdict::Report
    }

    /// The summaries of windows that have ended: one per storm that held events back. A storm
    /// that goes on opens its next window; one that held nothing is forgotten.
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let window = self.window;
        let mut out = Vec::new();
        self.open.retain(|_, storm| {
            if now.saturating_duration_since(storm.opened) < window {
                return true;
            }
            if storm.held == 0 {
                return false;
            }
            out.push(Summary {
                record: std::mem::take(&mut storm.last),
                count: std::mem::take(&mut storm.held),
                first_boot_ns: storm.first_boot_ns,
            });
            storm.opened = now;
            true
        });
        out
    }

    /// When the next summary falls due: the earliest end of a window that holds events back
    /// (`None`: nothing held, nothing to wake up for).
    pub fn next_due(&self) -> Option<Instant> {
        self.open
            .values()
            .filter(|s| s.held > 0)
            .map(|s| s.opened + self.window)
            .min()
    }

    /// Every summary still held, whatever its window (the agent is stopping).
    pub fn drain(&mut self) -> Vec<Summary> {
        self.open
            .drain()
            .filter(|(_, s)| s.held > 0)
            .map(|(_, s)| Summary {
                record: s.last,
                count: s.held,
                first_boot_ns: s.first_boot_ns,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, tests::raw_blocked_xmrig};

    fn event(cgroup_id: u64, name: &str) -> (Event, Vec<u8>) {
        let raw = raw_blocked_xmrig();
        let mut e = decode(&raw).unwrap();
        e.cgroup_id = cgroup_id;
        e.matched_name = name.into();
        (e, raw)
    }

    #[test]
    fn a_loop_is_one_line_then_one_summary_per_window_and_the_counts_add_up() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut storms = Storms::new(w);
        let (e, raw) = event(1, "xmrig");
        let mut reported = 0u64;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i * 25); // 25 s of a loop, 40 a second
            for s in storms.due(now) {
                reported += s.count;
            }
            if storms.admit(&e, &raw, now) == Verdict::Report {
                reported += 1;
            }
        }
        let lines_before_drain = reported;
        for s in storms.drain() {
            reported += s.count;
        }
        assert_eq!(reported, 1000, "every event counted once");
        assert!(lines_before_drain < 1000);
        assert!(storms.open.is_empty());
    }

    #[test]
    fn another_container_or_name_is_reported_at_once_during_a_storm() {
        let t0 = Instant::now();
        let mut storms = Storms::new(Duration::from_secs(10));
        let (a, raw) = event(1, "xmrig");
        assert_eq!(storms.admit(&a, &raw, t0), Verdict::Report);
        assert_eq!(storms.admit(&a, &raw, t0), Verdict::Held);
        let (b, raw_b) = event(2, "xmrig");
        assert_eq!(storms.admit(&b, &raw_b, t0), Verdict::Report);
        let (c, raw_c) = event(1, "minerd");
        assert_eq!(storms.admit(&c, &raw_c, t0), Verdict::Report);
        let mut audited = a.clone();
        audited.action = crate::event::Action::Audited;
        assert_eq!(storms.admit(&audited, &raw, t0), Verdict::Report);
    }

    #[test]
    fn a_summary_falls_due_only_while_events_are_held() {
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        let mut storms = Storms::new(window);
        let (e, raw) = event(7, "xmrig");
        assert_eq!(storms.admit(&e, &raw, t0), Verdict::Report);
        // Reported and nothing held: no wake-up is needed for it.
        assert_eq!(storms.next_due(), None);
        assert_eq!(
            storms.admit(&e, &raw, t0 + Duration::from_secs(3)),
            Verdict::Held
        );
        assert_eq!(storms.next_due(), Some(t0 + window));
        assert_eq!(storms.due(t0 + window).len(), 1);
        // The storm goes on in a new window, with nothing held yet.
        assert_eq!(storms.next_due(), None);
    }

    #[test]
    fn a_quiet_window_is_forgotten_and_the_next_event_is_news() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut storms = Storms::new(w);
        let (a, raw) = event(1, "xmrig");
        assert_eq!(storms.admit(&a, &raw, t0), Verdict::Report);
        assert!(storms.due(t0 + w).is_empty());
        assert_eq!(storms.admit(&a, &raw, t0 + w), Verdict::Report);
        // Without a tick in between, too.
        assert_eq!(storms.admit(&a, &raw, t0 + 3 * w), Verdict::Report);
    }

    #[test]
    fn a_summary_counts_the_window_and_the_storm_goes_on() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut storms = Storms::new(w);
        let (a, raw) = event(1, "xmrig");
        storms.admit(&a, &raw, t0);
        for _ in 0..5 {
            assert_eq!(storms.admit(&a, &raw, t0), Verdict::Held);
        }
        let due = storms.due(t0 + w);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 5);
        assert_eq!(due[0].record, raw);
        assert_eq!(storms.admit(&a, &raw, t0 + w), Verdict::Held);
    }

    #[test]
    fn zero_window_and_a_full_table_report_everything() {
        let t0 = Instant::now();
        let mut off = Storms::new(Duration::ZERO);
        let (a, raw) = event(1, "xmrig");
        assert_eq!(off.admit(&a, &raw, t0), Verdict::Report);
        assert_eq!(off.admit(&a, &raw, t0), Verdict::Report);
        let mut storms = Storms::new(Duration::from_secs(10));
        for id in 0..MAX_STORMS as u64 {
            let (e, raw) = event(id, "xmrig");
            storms.admit(&e, &raw, t0);
        }
        let (late, raw) = event(u64::MAX, "xmrig");
        assert_eq!(storms.admit(&late, &raw, t0), Verdict::Report);
        assert_eq!(storms.admit(&late, &raw, t0), Verdict::Report);
    }
}
