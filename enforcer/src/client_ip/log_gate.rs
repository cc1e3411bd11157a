//! At most one warning per interval for a condition that can repeat with
//! every request; the others are counted and the count shown with the next.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// How often a repeating condition may warn.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Admits one warning per interval, lock-free.
#[derive(Debug)]
pub(crate) struct LogGate {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds since `start` before which no warning is admitted.
    next_ms: AtomicU64,
    /// Warnings refused since the last admitted one.
    suppressed: AtomicU64,
}

impl LogGate {
    /// A gate that admits its first warning at once.
    pub(crate) fn new(interval: Duration) -> Self {
        LogGate {
            start: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a warning may be logged now, `n` being how many were
    /// held back since the previous one; `None` when it must be held back.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.admit_at(now)
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let won = now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if won {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_with_the_count_held_back() {
        let gate = LogGate::new(Duration::from_millis(1_000));
        assert_eq!(gate.admit_at(0), Some(0));
        assert_eq!(gate.admit_at(10), None);
        assert_eq!(gate.admit_at(999), None);
        assert_eq!(gate.admit_at(1_000), Some(2));
        assert_eq!(gate.admit_at(1_500), None);
        assert_eq!(gate.admit_at(5_000), Some(1));
        assert_eq!(gate.admit_at(5_001), None);
    }
}
