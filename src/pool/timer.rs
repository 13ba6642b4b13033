//! The supervisor's named deadlines, one table per slot.

use std::time::Instant;

/// One of a slot's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// When a dead worker is built again, after its backoff.
    Restart = 0,
    /// When a replacement the broker has not acknowledged is given up.
    HandOver = 1,
    /// Until when the slot does not try another recycle after one was given up.
    RecycleRetry = 2,
}

impl Timer {
    const COUNT: usize = 3;
    const ALL: [Timer; Timer::COUNT] = [Timer::Restart, Timer::HandOver, Timer::RecycleRetry];
}

/// A table of optional deadlines, one per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.data = [None; Timer::COUNT];
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline set, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        Timer::ALL.iter().filter_map(|&t| self.get(t)).min()
    }
}
