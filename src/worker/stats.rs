//! Worker counters, published to atomics so a pool can read them from another thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::session::SessionStats;

/// A snapshot of a worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Requests handed to the action.
    pub requests: u64,
    /// Replies sent (the action's, panic replies and timeout replies).
    pub replies: u64,
    /// Requests whose action panicked (each answered with the panic reply).
    pub panics: u64,
    /// Requests answered with the timeout reply.
    pub timeouts: u64,
    /// Late results of timed-out requests, dropped.
    pub late_replies: u64,
    /// Sockets opened after the first one.
    pub reconnects: u64,
    /// HEARTBEATs sent.
    pub heartbeats_sent: u64,
    /// Messages from the broker dropped because their frames were malformed.
    pub malformed_dropped: u64,
    /// Valid messages dropped because they made no sense in the worker's state.
    pub unexpected_dropped: u64,
    /// Messages that could not be sent within the send timeout.
    pub send_failures: u64,
    /// Connections refused by the broker's authentication (ZAP) handler: wrong credentials.
    pub auth_failures: u64,
    /// Connections dropped under the socket, as its monitor saw: the broker went away, a
    /// message broke `max_message_size`, or a security handshake failed on a protocol error.
    /// Each is followed by a reconnect on a new socket.
    pub connections_lost: u64,
    /// Whether a request is in the action right now.
    pub in_flight: bool,
}

impl WorkerStats {
    /// Requests that failed: panics plus timeouts.
    pub fn failures(&self) -> u64 {
        self.panics + self.timeouts
    }

    /// Adds `other`'s counters to these (`in_flight` becomes "any in flight").
    pub fn add(&mut self, other: &WorkerStats) {
        self.requests += other.requests;
        self.replies += other.replies;
        self.panics += other.panics;
        self.timeouts += other.timeouts;
        self.late_replies += other.late_replies;
        self.reconnects += other.reconnects;
        self.heartbeats_sent += other.heartbeats_sent;
        self.malformed_dropped += other.malformed_dropped;
        self.unexpected_dropped += other.unexpected_dropped;
        self.send_failures += other.send_failures;
        self.auth_failures += other.auth_failures;
        self.connections_lost += other.connections_lost;
        self.in_flight |= other.in_flight;
    }
}

/// The worker's own counters, beside the session's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IoCounters {
    pub(crate) panics: u64,
    pub(crate) malformed_dropped: u64,
    pub(crate) send_failures: u64,
    pub(crate) auth_failures: u64,
    pub(crate) connections_lost: u64,
}

/// Counters readable from any thread; written by the worker once per loop turn.
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    requests: AtomicU64,
    replies: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    late_replies: AtomicU64,
    reconnects: AtomicU64,
    heartbeats_sent: AtomicU64,
    malformed_dropped: AtomicU64,
    unexpected_dropped: AtomicU64,
    send_failures: AtomicU64,
    auth_failures: AtomicU64,
    connections_lost: AtomicU64,
    in_flight: AtomicBool,
}

impl StatsCell {
    pub(crate) fn publish(&self, session: &SessionStats, io: &IoCounters, in_flight: bool) {
        let r = Ordering::Relaxed;
        self.requests.store(session.requests, r);
        self.replies.store(session.replies, r);
        self.panics.store(io.panics, r);
        self.timeouts.store(session.timeouts, r);
        self.late_replies.store(session.late_replies, r);
        self.reconnects.store(session.reconnects, r);
        self.heartbeats_sent.store(session.heartbeats_sent, r);
        self.malformed_dropped.store(io.malformed_dropped, r);
        self.unexpected_dropped
            .store(session.unexpected_messages, r);
        self.send_failures.store(io.send_failures, r);
        self.auth_failures.store(io.auth_failures, r);
        self.connections_lost.store(io.connections_lost, r);
        self.in_flight.store(in_flight, r);
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        let r = Ordering::Relaxed;
        WorkerStats {
            requests: self.requests.load(r),
            replies: self.replies.load(r),
            panics: self.panics.load(r),
            timeouts: self.timeouts.load(r),
            late_replies: self.late_replies.load(r),
            reconnects: self.reconnects.load(r),
            heartbeats_sent: self.heartbeats_sent.load(r),
            malformed_dropped: self.malformed_dropped.load(r),
            unexpected_dropped: self.unexpected_dropped.load(r),
            send_failures: self.send_failures.load(r),
            auth_failures: self.auth_failures.load(r),
            connections_lost: self.connections_lost.load(r),
            in_flight: self.in_flight.load(r),
        }
    }
}
