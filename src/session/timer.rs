//! The session's named deadlines.

use std::time::Instant;

/// One of the session's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// When the next HEARTBEAT is due.
    Heartbeat = 0,
    /// When the broker is presumed dead if nothing was heard from it.
    BrokerExpiry = 1,
    /// When to open a new socket after a backoff.
    Reconnect = 2,
    /// When the in-flight request is answered with the timeout reply.
    RequestDeadline = 3,
}

impl Timer {
    const COUNT: usize = 4;
    const ALL: [Timer; Timer::COUNT] = [
        Timer::Heartbeat,
        Timer::BrokerExpiry,
        Timer::Reconnect,
        Timer::RequestDeadline,
    ];
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
