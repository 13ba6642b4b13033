//! The broker's pure core: messages and time in, frames to send out.
//!
//! [`BrokerState`] never touches a socket and never reads the clock. The socket loop hands it
//! every message the ROUTER received ([`handle_message`](BrokerState::handle_message)) and
//! the time ([`handle_timeout`](BrokerState::handle_timeout)), then sends what
//! [`poll_send`](BrokerState::poll_send) gives back, routing identity first.
//!
//! The semantics are those of the zguide reference broker (`mdbroker.c`):
//!
//! - READY from an unknown worker registers it as waiting; from a known one, DISCONNECT and
//!   forget it. HEARTBEAT or REPLY from an unknown worker: DISCONNECT (so that workers
//!   re-register after a broker restart). DISCONNECT from a worker: forget it.
//! - Requests go to the least recently used waiting worker of their service, or wait in the
//!   service's bounded queue. A REPLY goes back to the client and makes the worker waiting.
//! - Every `heartbeat`, waiting workers get a HEARTBEAT, and waiting workers silent for
//!   `heartbeat × liveness` are forgotten without a word. Busy workers are never expired.
//! - `mmi.service` answers `200` or `404`; any other `mmi.` name answers `501` (8/MMI).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace, warn};

use super::BrokerStats;
use crate::protocol::{ClientMessage, Command, ProtocolError, WorkerMessage};

/// A frame as the broker keeps it.
pub(crate) type Frame = Vec<u8>;

/// The settings the state machine needs, from a validated [`BrokerConfig`](super::BrokerConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) heartbeat: Duration,
    pub(crate) expiry: Duration,
    pub(crate) max_queue: usize,
}

#[derive(Debug)]
struct Request {
    client: Frame,
    body: Vec<Frame>,
}

#[derive(Debug, Default)]
struct Service {
    /// Requests waiting for a worker, oldest first.
    requests: VecDeque<Request>,
    /// Idle workers, least recently used first.
    waiting: VecDeque<Frame>,
    /// Workers registered, busy or idle.
    workers: usize,
}

#[derive(Debug)]
struct Worker {
    service: Frame,
    expiry: Instant,
    busy: bool,
}

/// The broker's state machine.
#[derive(Debug)]
pub(crate) struct BrokerState {
    settings: Settings,
    services: HashMap<Frame, Service>,
    workers: HashMap<Frame, Worker>,
    outbox: VecDeque<Vec<Frame>>,
    next_heartbeat: Instant,
    stats: BrokerStats,
}

impl BrokerState {
    /// An empty broker whose first heartbeat is due `heartbeat` after `now`.
    pub(crate) fn new(settings: Settings, now: Instant) -> BrokerState {
        BrokerState {
            settings,
            services: HashMap::new(),
            workers: HashMap::new(),
            outbox: VecDeque::new(),
            next_heartbeat: now + settings.heartbeat,
            stats: BrokerStats::default(),
        }
    }

    /// Handles one message as the ROUTER received it: sender identity, then the frames.
    pub(crate) fn handle_message(&mut self, now: Instant, mut frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        let sender = frames.remove(0);
        trace!(sender = %Id(&sender), ?frames, "received");
        self.touch(now, &sender);
        if is_client_message(&frames) {
            match ClientMessage::decode(frames) {
                Ok(message) => self.handle_client(sender, message),
                Err(error) => self.drop_malformed("client", &sender, error),
            }
        } else {
            match WorkerMessage::decode(frames) {
                Ok(message) => self.handle_worker(now, sender, message),
                Err(error) => self.drop_malformed("worker", &sender, error),
            }
        }
    }

    /// Sends heartbeats and expires silent workers when the heartbeat is due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_heartbeat {
            return;
        }
        self.purge_expired(now);
        self.send_heartbeats();
        self.next_heartbeat = now + self.settings.heartbeat;
    }

    /// Queues a DISCONNECT to every known worker and forgets them all (used on stop).
    pub(crate) fn handle_stop(&mut self) {
        let identities: Vec<Frame> = self.workers.keys().cloned().collect();
        for identity in identities {
            self.delete_worker(&identity);
            self.send_worker(identity, WorkerMessage::Disconnect);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.next_heartbeat
    }

    /// The next message to send, routing identity first.
    pub(crate) fn poll_send(&mut self) -> Option<Vec<Frame>> {
        self.outbox.pop_front()
    }

    /// Whether [`poll_send`](Self::poll_send) has anything.
    pub(crate) fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Counts a message the socket layer could not send.
    pub(crate) fn handle_send_failure(&mut self) {
        self.stats.send_failures += 1;
    }

    /// The counters so far and the gauges now.
    pub(crate) fn stats(&self) -> BrokerStats {
        BrokerStats {
            workers: self.workers.len(),
            waiting_workers: self.services.values().map(|s| s.waiting.len()).sum(),
            queued_requests: self.services.values().map(|s| s.requests.len()).sum(),
            ..self.stats
        }
    }

    fn handle_client(&mut self, client: Frame, message: ClientMessage<Frame>) {
        self.stats.requests_received += 1;
        let ClientMessage { service, body } = message;
        if service.starts_with(b"mmi.") {
            return self.handle_mmi(client, service, body);
        }
        let max_queue = self.settings.max_queue;
        let queue = &mut self.services.entry(service.clone()).or_default().requests;
        if queue.len() >= max_queue {
            self.stats.requests_dropped += 1;
            let queued = queue.len();
            warn!(service = %text(&service), queued, max_queue, "request queue full, request dropped");
            return;
        }
        queue.push_back(Request { client, body });
        self.dispatch(&service);
    }

    fn handle_mmi(&mut self, client: Frame, service: Frame, body: Vec<Frame>) {
        self.stats.mmi_requests += 1;
        let code: &[u8] = if service != b"mmi.service" {
            b"501"
        } else if body
            .first()
            .and_then(|name| self.services.get(name))
            .is_some_and(|s| s.workers > 0)
        {
            b"200"
        } else {
            b"404"
        };
        debug!(service = %text(&service), code = %text(code), "mmi lookup");
        self.send_client(client, service, vec![code.to_vec()]);
    }

    fn handle_worker(&mut self, now: Instant, sender: Frame, message: WorkerMessage<Frame>) {
        let known = self.workers.contains_key(&sender);
        match message {
            WorkerMessage::Ready { service } if known => self.refuse_second_ready(sender, service),
            WorkerMessage::Ready { service } => self.register(now, sender, service),
            WorkerMessage::Reply { envelope, body } if known => {
                self.handle_reply(sender, envelope, body)
            }
            WorkerMessage::Heartbeat if known => debug!(worker = %Id(&sender), "heartbeat"),
            WorkerMessage::Reply { .. } | WorkerMessage::Heartbeat => {
                self.disconnect_unknown(sender, message.command())
            }
            WorkerMessage::Disconnect => self.handle_disconnect(sender, known),
            WorkerMessage::Request { .. } => {
                self.drop_unexpected(&sender, "REQUEST sent by a worker")
            }
        }
    }

    fn register(&mut self, now: Instant, identity: Frame, service: Frame) {
        if service.starts_with(b"mmi.") {
            warn!(worker = %Id(&identity), service = %text(&service), "READY for a reserved mmi. service, disconnecting");
            self.stats.disconnects_sent += 1;
            return self.send_worker(identity, WorkerMessage::Disconnect);
        }
        info!(worker = %Id(&identity), service = %text(&service), "worker registered");
        self.stats.workers_registered += 1;
        self.services.entry(service.clone()).or_default().workers += 1;
        let worker = Worker {
            service,
            expiry: now + self.settings.expiry,
            busy: false,
        };
        self.workers.insert(identity.clone(), worker);
        self.make_waiting(identity);
    }

    fn refuse_second_ready(&mut self, identity: Frame, service: Frame) {
        warn!(worker = %Id(&identity), service = %text(&service), "second READY from a worker, disconnecting");
        self.delete_worker(&identity);
        self.stats.disconnects_sent += 1;
        self.send_worker(identity, WorkerMessage::Disconnect);
    }

    fn handle_reply(&mut self, identity: Frame, envelope: Vec<Frame>, body: Vec<Frame>) {
        let Some(worker) = self.workers.get(&identity) else {
            return;
        };
        if !worker.busy {
            return self.drop_unexpected(&identity, "REPLY with no request in flight");
        }
        let service = worker.service.clone();
        match <[Frame; 1]>::try_from(envelope) {
            Ok([client]) => {
                self.stats.replies_routed += 1;
                self.send_client(client, service, body);
            }
            Err(_) => self.drop_unexpected(&identity, "REPLY envelope is not one client address"),
        }
        self.make_waiting(identity);
    }

    fn handle_disconnect(&mut self, identity: Frame, known: bool) {
        if known {
            info!(worker = %Id(&identity), "worker disconnected");
            self.delete_worker(&identity);
        }
    }

    fn disconnect_unknown(&mut self, identity: Frame, command: Command) {
        debug!(worker = %Id(&identity), %command, "message from an unknown worker, disconnecting");
        self.stats.disconnects_sent += 1;
        self.send_worker(identity, WorkerMessage::Disconnect);
    }

    /// Refreshes the liveness of a known worker: any message proves it alive.
    fn touch(&mut self, now: Instant, identity: &[u8]) {
        if let Some(worker) = self.workers.get_mut(identity) {
            worker.expiry = now + self.settings.expiry;
        }
    }

    /// Puts a worker at the back of its service's waiting list and serves the queue.
    fn make_waiting(&mut self, identity: Frame) {
        let Some(worker) = self.workers.get_mut(&identity) else {
            return;
        };
        worker.busy = false;
        let service = worker.service.clone();
        self.services
            .entry(service.clone())
            .or_default()
            .waiting
            .push_back(identity);
        self.dispatch(&service);
    }

    /// Pairs queued requests with waiting workers, oldest with least recently used.
    fn dispatch(&mut self, service: &[u8]) {
        let Some(entry) = self.services.get_mut(service) else {
            return;
        };
        let pairs = entry.requests.len().min(entry.waiting.len());
        let workers = entry.waiting.drain(..pairs);
        for (identity, request) in workers.zip(entry.requests.drain(..pairs)) {
            if let Some(worker) = self.workers.get_mut(&identity) {
                worker.busy = true;
            }
            self.stats.requests_dispatched += 1;
            let message = WorkerMessage::Request {
                envelope: vec![request.client],
                body: request.body,
            };
            self.outbox.push_back(routed(identity, message.encode()));
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<Frame> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.busy && w.expiry <= now)
            .map(|(identity, _)| identity.clone())
            .collect();
        for identity in expired {
            info!(worker = %Id(&identity), "worker expired");
            self.stats.workers_expired += 1;
            self.delete_worker(&identity);
        }
    }

    fn send_heartbeats(&mut self) {
        let waiting: Vec<Frame> = self
            .services
            .values()
            .flat_map(|s| s.waiting.iter().cloned())
            .collect();
        debug!(workers = waiting.len(), "sending heartbeats");
        for identity in waiting {
            self.stats.heartbeats_sent += 1;
            self.send_worker(identity, WorkerMessage::Heartbeat);
        }
    }

    fn delete_worker(&mut self, identity: &[u8]) {
        let Some(worker) = self.workers.remove(identity) else {
            return;
        };
        let Some(service) = self.services.get_mut(&worker.service) else {
            return;
        };
        service.workers = service.workers.saturating_sub(1);
        service.waiting.retain(|w| w.as_slice() != identity);
        if service.workers == 0 && service.requests.is_empty() {
            self.services.remove(&worker.service);
        }
    }

    fn send_worker(&mut self, identity: Frame, message: WorkerMessage<Frame>) {
        self.outbox.push_back(routed(identity, message.encode()));
    }

    fn send_client(&mut self, client: Frame, service: Frame, body: Vec<Frame>) {
        let message = ClientMessage { service, body };
        self.outbox.push_back(routed(client, message.encode()));
    }

    fn drop_malformed(&mut self, peer: &'static str, sender: &[u8], error: ProtocolError) {
        self.stats.malformed_dropped += 1;
        warn!(peer, sender = %Id(sender), %error, "malformed message dropped");
    }

    fn drop_unexpected(&mut self, sender: &[u8], what: &'static str) {
        self.stats.unexpected_dropped += 1;
        warn!(worker = %Id(sender), what, "unexpected message dropped");
    }
}

/// A client message has an `MDPC…` header in frame 1; anything else is decoded (and judged)
/// as a worker message.
fn is_client_message(frames: &[Frame]) -> bool {
    frames
        .get(1)
        .is_some_and(|header| header.starts_with(b"MDPC"))
}

fn routed(identity: Frame, frames: Vec<Frame>) -> Vec<Frame> {
    let mut message = Vec::with_capacity(frames.len() + 1);
    message.push(identity);
    message.extend(frames);
    message
}

/// A service name or code for the log: text, lossy.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// A routing identity for the log: hex, cut after 32 bytes.
struct Id<'a>(&'a [u8]);

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.iter().take(32) {
            write!(f, "{byte:02x}")?;
        }
        if self.0.len() > 32 {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
