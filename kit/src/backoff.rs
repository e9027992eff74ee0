//! Exponential backoff with jitter: the one formula every retry loop uses
//! (calls to other services, step retries, publishing, webhook deliveries).

use std::time::Duration;

/// 50-100% of `delay`, varied by the clock's sub-millisecond digits, so
/// callers that failed together do not retry in lockstep.
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + (crate::clock::now_micros().rem_euclid(1000) as f64) / 2000.0)
}

/// Successive waits: `initial`, then multiplied by `multiplier` per retry up
/// to `max`, each one jittered.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    multiplier: f64,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, multiplier: f64, max: Duration) -> Self {
        Self {
            next: initial.min(max),
            multiplier: if multiplier.is_finite() && multiplier >= 1.0 {
                multiplier
            } else {
                1.0
            },
            max,
        }
    }

    /// Doubling from `initial` up to `max`.
    pub fn doubling(initial: Duration, max: Duration) -> Self {
        Self::new(initial, 2.0, max)
    }

    /// The un-jittered wait before retry number `retry` (0 for the first
    /// retry), for loops whose state is stored (webhook deliveries).
    pub fn nth(&self, retry: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(i32::try_from(retry.min(64)).unwrap_or(64));
        scaled(self.next, factor, self.max)
    }

    /// The wait before the next try (jittered), advancing the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = scaled(self.next, self.multiplier, self.max);
        jittered(delay)
    }
}

/// `delay * factor`, at most `max` (also when the product overflows).
fn scaled(delay: Duration, factor: f64, max: Duration) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor)
        .unwrap_or(max)
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_stays_within_half_to_full() {
        let mut backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_millis(350));
        let bounds = [100, 200, 350, 350];
        for full in bounds {
            let delay = backoff.next_delay();
            let full = Duration::from_millis(full);
            assert!(delay >= full / 2 && delay <= full, "{delay:?} vs {full:?}");
        }
    }

    #[test]
    fn nth_is_the_plain_sequence() {
        let backoff = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(backoff.nth(0), Duration::from_secs(1));
        assert_eq!(backoff.nth(3), Duration::from_secs(8));
        assert_eq!(backoff.nth(40), Duration::from_secs(300));
        assert_eq!(backoff.nth(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_nonsense_multiplier_does_not_shrink_or_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), f64::NAN, Duration::from_secs(5));
        assert!(backoff.next_delay() >= Duration::from_millis(500));
        let mut huge = Backoff::new(Duration::from_secs(1), 1e300, Duration::from_secs(5));
        huge.next_delay();
        assert!(huge.next_delay() <= Duration::from_secs(5));
    }
}
