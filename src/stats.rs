//! The worker's counters: one struct, kept by the session, published once per loop turn so a
//! pool (or any other thread) can read them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::events::WorkerId;

/// Declares [`WorkerStats`] from one list of counters, with [`WorkerStats::add`]: adding a
/// counter is one line here.
macro_rules! worker_stats {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A snapshot of a worker's counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct WorkerStats {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Whether a request is in the action right now.
            pub in_flight: bool,
            /// Whether no broker has answered through
            /// [`UNREACHABLE_AFTER`](crate::UNREACHABLE_AFTER) connection attempts in a row,
            /// now (cleared when one answers).
            pub broker_unreachable: bool,
        }

        impl WorkerStats {
            /// Adds `other`'s counters to these (`in_flight` becomes "any in flight", and
            /// `broker_unreachable` "any unreachable").
            pub fn add(&mut self, other: &WorkerStats) {
                $(self.$name += other.$name;)*
                self.in_flight |= other.in_flight;
                self.broker_unreachable |= other.broker_unreachable;
            }
        }
    };
}

worker_stats! {
    /// Requests handed to the action.
    requests,
    /// Replies sent (the action's, panic replies and timeout replies).
    replies,
    /// Requests whose action panicked (each answered with the panic reply).
    panics,
    /// Requests answered with the timeout reply.
    timeouts,
    /// Late results of timed-out requests, dropped.
    late_replies,
    /// Sockets opened after the first one.
    reconnects,
    /// HEARTBEATs sent, including those sent while an inline action ran.
    heartbeats_sent,
    /// Messages from the broker dropped because their frames were malformed.
    malformed_dropped,
    /// Valid messages dropped because they made no sense in the worker's state.
    unexpected_dropped,
    /// Messages that could not be sent within the send timeout.
    send_failures,
    /// Connections refused by the broker's authentication (ZAP) handler: wrong credentials.
    auth_failures,
    /// Connections dropped under the socket, as its monitor saw: the broker went away, a
    /// message broke `max_message_size`, or a security handshake failed on a protocol error.
    /// Each is followed by a reconnect on a new socket.
    connections_lost,
    /// Times no broker answered through [`UNREACHABLE_AFTER`](crate::UNREACHABLE_AFTER)
    /// connection attempts in a row (one per such stretch).
    unreachable,
}

impl WorkerStats {
    /// Requests that failed: panics plus timeouts.
    pub fn failures(&self) -> u64 {
        self.panics + self.timeouts
    }
}

/// What a group of workers did: a [`WorkerPool`](crate::pool::WorkerPool)'s slots or an
/// `AsyncWorker`'s registrations, each with its counters, and their total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per pool slot or async registration: the worker holding it and the counters of every
    /// worker that held it. A pool slot has no worker before its first start; an async
    /// registration always has one.
    pub workers: Vec<(Option<WorkerId>, WorkerStats)>,
    /// All counters added up.
    pub total: WorkerStats,
    /// Workers rebuilt after dying (always 0 for an async worker).
    pub restarts: u64,
    /// Workers replaced by recycling (always 0 for an async worker).
    pub recycles: u64,
}

impl Summary {
    /// Adds one slot's or registration's entry, and its counters to the total.
    pub(crate) fn push(&mut self, worker: Option<WorkerId>, stats: WorkerStats) {
        self.total.add(&stats);
        self.workers.push((worker, stats));
    }
}

/// Counters readable from any thread; written by the worker once per loop turn.
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    stats: Mutex<WorkerStats>,
    /// Whether the broker knows the worker now (it has heard from it on this connection, and
    /// the worker is neither draining nor reconnecting): what a health check asks.
    registered: AtomicBool,
    /// Set when the worker is gone: its last counters then go into the totals kept for its
    /// service, so that a replaced worker never makes a counter go down.
    retired: AtomicBool,
}

impl StatsCell {
    pub(crate) fn publish(&self, stats: WorkerStats, registered: bool) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        self.registered.store(registered, Ordering::Relaxed);
    }

    /// The worker is gone; its counters are final.
    pub(crate) fn retire(&self) {
        self.registered.store(false, Ordering::Relaxed);
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Whether [`retire`](Self::retire) was called.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // read by the metrics
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Whether the worker was registered at its last publication (read by the metrics, and
    /// by a pool hand-over to learn that the broker heard the replacement).
    pub(crate) fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_stats_sums_every_counter_and_ors_in_flight() {
        let one = WorkerStats {
            requests: 1,
            replies: 2,
            connections_lost: 3,
            in_flight: true,
            ..WorkerStats::default()
        };
        let mut sum = WorkerStats::default();
        sum.add(&one);
        sum.add(&one);
        assert_eq!(sum.requests, 2);
        assert_eq!(sum.replies, 4);
        assert_eq!(sum.connections_lost, 6);
        assert!(sum.in_flight);
    }

    #[test]
    fn a_summary_lists_each_worker_and_adds_their_counters_up() {
        let one = WorkerStats {
            requests: 2,
            replies: 1,
            ..WorkerStats::default()
        };
        let id = WorkerId::next("echo");
        let mut summary = Summary::default();
        summary.push(Some(id.clone()), one);
        summary.push(None, one);
        assert_eq!(summary.workers, vec![(Some(id), one), (None, one)]);
        assert_eq!((summary.total.requests, summary.total.replies), (4, 2));
        assert_eq!((summary.restarts, summary.recycles), (0, 0));
    }
}
