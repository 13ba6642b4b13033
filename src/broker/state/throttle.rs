//! Warnings at most once per interval, so that a flood of bad requests does not flood the log.

use std::time::{Duration, Instant};

/// Shortest time between two warnings of one kind: an operator sees each kind of trouble at
/// once, and a flood of 100 000 dropped requests costs one line a second, not 100 000.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one warning through per [`WARN_INTERVAL`] and counts the ones held back.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    next: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// `Some(n)` if a warning may be logged at `now`, `n` being how many were held back since
    /// the last one; `None` if it must be held back (log it at debug instead).
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.held_back += 1;
            return None;
        }
        self.next = now.checked_add(WARN_INTERVAL);
        Some(std::mem::take(&mut self.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_goes_through_and_the_next_counts_those_held_back() {
        let t0 = Instant::now();
        let mut throttle = Throttle::default();
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0), None);
        assert_eq!(throttle.allow(t0 + WARN_INTERVAL / 2), None);
        assert_eq!(throttle.allow(t0 + WARN_INTERVAL), Some(2));
        assert_eq!(throttle.allow(t0 + WARN_INTERVAL * 3), Some(0));
    }
}
