//! Exponential reconnect backoff with jitter.

use std::time::Duration;

/// Doubling delays from `initial` up to `max`, each drawn uniformly from the upper half of its
/// step (`[d/2, d]`, "equal jitter") so that workers restarted together do not reconnect in
/// lockstep. Deterministic for a given seed, so tests can predict it.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max,
            attempt: 0,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The delay before the next attempt; each call doubles the step.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self
            .initial
            .checked_mul(1u32 << self.attempt.min(20))
            .map_or(self.max, |d| d.min(self.max));
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let nanos = half.as_nanos().min(u64::MAX as u128) as u64;
        let jitter = if nanos == 0 {
            0
        } else {
            self.next_random() % (nanos + 1)
        };
        half + Duration::from_nanos(jitter) + (step - half * 2)
    }

    /// Attempts made since the last reset.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial delay, once the broker was heard again.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_within_the_upper_half_and_stop_at_max() {
        let mut b = Backoff::new(100 * MS, 1000 * MS, 42);
        let steps = [100, 200, 400, 800, 1000, 1000, 1000];
        for step in steps {
            let d = b.next_delay();
            let step = step * MS;
            assert!(
                d >= step / 2 && d <= step,
                "delay {d:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        assert_eq!(b.attempt(), 7);
    }

    #[test]
    fn reset_returns_to_the_initial_step() {
        let mut b = Backoff::new(100 * MS, 10_000 * MS, 7);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        let d = b.next_delay();
        assert!(d >= 50 * MS && d <= 100 * MS, "{d:?}");
    }

    #[test]
    fn jitter_differs_between_seeds_and_repeats_for_one() {
        let run = |seed| {
            let mut b = Backoff::new(1000 * MS, 1000 * MS, seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(32), 3);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(32));
        }
    }
}
