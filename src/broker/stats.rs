//! What a broker counts, and the copy of it its handles and the metrics read.

use std::sync::{Arc, Mutex, PoisonError};

/// Counters and gauges of a broker, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Client requests received, `mmi.` lookups included.
    pub requests_received: u64,
    /// Requests sent to a worker.
    pub requests_dispatched: u64,
    /// Replies sent back to a client.
    pub replies_routed: u64,
    /// Requests dropped because their service's queue was full (`max_queue`).
    pub requests_dropped: u64,
    /// Requests dropped because `max_queued_total` requests were queued, all services together.
    pub requests_dropped_total_bound: u64,
    /// Requests for a new service name dropped because `max_services` services were known.
    pub services_refused: u64,
    /// Queued requests dropped after waiting `max_queue_age` for a worker.
    pub requests_expired: u64,
    /// Services forgotten (memory freed) when they had neither workers nor queued requests.
    pub services_forgotten: u64,
    /// `mmi.` lookups answered.
    pub mmi_requests: u64,
    /// Messages that did not decode (bad header, unknown command, too few frames, ...), dropped.
    pub malformed_dropped: u64,
    /// Valid messages that make no sense in context (a REQUEST sent by a worker, a REPLY with
    /// no request in flight), dropped.
    pub unexpected_dropped: u64,
    /// Workers registered by a READY.
    pub workers_registered: u64,
    /// Workers forgotten after `heartbeat × liveness` of silence: idle ones, and busy ones
    /// that had heartbeated while busy (`busy_workers_expired` of them).
    pub workers_expired: u64,
    /// Of `workers_expired`, the busy ones: each one's request was queued again
    /// (`requests_requeued`) or is answered by nobody (`requests_lost`).
    pub busy_workers_expired: u64,
    /// Requests of workers lost while busy (expired, DISCONNECT, second READY) queued again
    /// for another worker, under `requeue_on_worker_loss`: each one is a resend, so the
    /// request may run twice.
    pub requests_requeued: u64,
    /// Requests of workers lost while busy that nobody answers: `requeue_on_worker_loss` is
    /// zero (the default), their requeues are spent, or a queue bound refused the requeue.
    pub requests_lost: u64,
    /// DISCONNECTs sent for a protocol reason (second READY, unknown worker, `mmi.` READY).
    pub disconnects_sent: u64,
    /// HEARTBEATs sent to idle workers.
    pub heartbeats_sent: u64,
    /// HEARTBEATs received from registered workers, busy or idle.
    pub heartbeats_received: u64,
    /// Messages that could not be sent (a peer's pipe full), dropped.
    pub send_failures: u64,
    /// Workers forgotten because their connection was gone when the broker sent to them (a
    /// worker process that died, closed or was partitioned away, before its expiry): a
    /// REQUEST for it never left, and went back to its queue.
    pub workers_gone: u64,
    /// Requests queued again because the worker they were sent to was gone (never delivered:
    /// not a resend).
    pub requests_undelivered: u64,
    /// Replies (and `mmi.` answers) whose client was gone, dropped.
    pub replies_unroutable: u64,
    /// Connections whose PLAIN credentials the ZAP handler accepted.
    pub auth_accepted: u64,
    /// Connections the ZAP handler refused (unknown user, wrong password, other mechanism).
    pub auth_denied: u64,
    /// Workers known now, busy or idle.
    pub workers: usize,
    /// Idle workers now.
    pub waiting_workers: usize,
    /// Requests queued now, all services together.
    pub queued_requests: usize,
    /// Services known now: those with a worker or a queued request.
    pub services: usize,
}

/// The latest statistics of a running broker, shared with its handles.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedStats(Arc<Mutex<BrokerStats>>);

impl SharedStats {
    pub(crate) fn publish(&self, stats: BrokerStats) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = stats;
    }

    pub(crate) fn get(&self) -> BrokerStats {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
