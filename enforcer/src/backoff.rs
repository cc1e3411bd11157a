//! Jittered exponential backoff between attempts to reach the control plane.

use std::time::Duration;

use rand::Rng;

/// Waits that double from `min` up to `max`, each drawn at random from the
/// upper half of its step so a fleet restarted together does not reconnect
/// in lockstep.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and never waiting longer than `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            step: min,
        }
    }

    /// The next wait; each call doubles the step until `max`.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// The longest wait, used when retrying something unlikely to heal soon.
    pub(crate) fn ceiling(&self) -> Duration {
        self.max
    }

    /// Starts again from `min` after a success.
    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_jittered_up_to_the_ceiling_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let first = b.next_wait();
        assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
        for _ in 0..20 {
            assert!(b.next_wait() <= Duration::from_secs(5));
        }
        assert!(b.next_wait() >= Duration::from_millis(2500));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
