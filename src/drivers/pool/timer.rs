//! The supervisor's named deadlines, one table per slot.

/// One of a slot's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// When a dead worker is built again, after its backoff.
    Restart = 0,
    /// When a replacement the broker has not acknowledged is given up.
    HandOver = 1,
    /// Until when the slot does not try another recycle after one was given up.
    RecycleRetry = 2,
    /// When the slot next looks whether the broker has heard the replacement: a broker
    /// heartbeats a fresh worker within one heartbeat, and the slot cannot be woken by it.
    HeardCheck = 3,
    /// When an old worker that has not replied since its replacement was heard leaves all
    /// the same.
    Retire = 4,
}

impl From<Timer> for usize {
    fn from(timer: Timer) -> usize {
        timer as usize
    }
}

/// The deadlines of a pool slot, one per [`Timer`].
pub(crate) type TimerTable = crate::timers::TimerTable<Timer, 5>;
