//! The session's named deadlines.

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
    /// When a shutdown stops waiting for the request in the action and answers it with the
    /// timeout reply (`shutdown_grace`).
    Grace = 4,
}

impl From<Timer> for usize {
    fn from(timer: Timer) -> usize {
        timer as usize
    }
}

/// The deadlines of the session, one per [`Timer`].
pub(crate) type TimerTable = crate::timers::TimerTable<Timer, 5>;
