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
//!   `heartbeat × liveness` are forgotten without a word.
//!
//! Beyond the reference broker, which never expires a busy worker, a busy worker that has
//! shown that it heartbeats while busy (two HEARTBEATs during one request: one alone may have
//! crossed the REQUEST on the wire, from a worker that stops heartbeating when busy, as the
//! zguide workers do) is expired like an idle one once silent for `heartbeat × liveness`:
//! a killed worker no longer stays registered for good. A worker that never heartbeats while
//! busy is never expired while busy, as in the reference broker. The request of a worker
//! forgotten while busy (expired, DISCONNECT, second READY) is answered by nobody
//! (`requests_lost`), unless `requeue_on_worker_loss` allows it to be queued again for
//! another worker (`requests_requeued`), at the back of its service's queue like a new one.
//! - `mmi.service` answers `200` or `404`; any other `mmi.` name answers `501` (8/MMI), but
//!   for two extensions of ours (8/MMI reserves the namespace for such introspection):
//!   - `mmi.services`: `200`, then one frame per known service name, sorted bytewise (a
//!     service is known while it has a worker or a queued request);
//!   - `mmi.stats` with service names as body frames (none: every known service): `200`,
//!     then six frames per service: its name, workers (busy or idle), waiting (idle)
//!     workers, queued requests, requests served (replies routed since the service was
//!     last created), and the age in milliseconds of its oldest queued request (`0` when
//!     none), each number as decimal ASCII. An unknown name is reported with zeros.
//!
//! Beyond the reference broker, what clients can make it hold is bounded: a service with
//! neither workers nor queued requests is forgotten; a request for a new service beyond
//! `max_services`, or beyond `max_queued_total` queued requests, is dropped; with a
//! `max_queue_age`, requests queued that long are dropped. Totals are kept, never recounted:
//! no input and no timer costs time in proportion to the number of services.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace, warn};

use super::stats::BrokerStats;
use crate::protocol::{ClientMessage, Command, ProtocolError, WorkerMessage};
#[cfg(feature = "metrics")]
pub(crate) use services::ServiceReport;
use services::{Refusal, Services};
use throttle::Throttle;

/// A frame as the broker keeps it.
pub(crate) type Frame = Vec<u8>;

/// The settings the state machine needs, from a validated [`BrokerConfig`](super::BrokerConfig).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) heartbeat: Duration,
    pub(crate) expiry: Duration,
    pub(crate) max_queue: usize,
    pub(crate) max_queued_total: usize,
    pub(crate) max_services: usize,
    pub(crate) max_queue_age: Option<Duration>,
    pub(crate) requeue_on_worker_loss: u32,
}

/// HEARTBEATs during one request that prove a worker heartbeats while busy. One is no proof:
/// a worker that heartbeats only while idle may have sent it just before the REQUEST reached
/// it. It cannot send a second one until it has replied.
const BUSY_BEATS_PROOF: u8 = 2;

#[derive(Debug)]
struct Worker {
    service: Frame,
    expiry: Instant,
    busy: bool,
    /// HEARTBEATs received during the request in hand, up to [`BUSY_BEATS_PROOF`].
    busy_beats: u8,
    /// Whether it has heartbeated while busy: from then on it is expired when silent, busy
    /// or idle.
    beats_while_busy: bool,
    /// A copy of the request in hand, kept only when `requeue_on_worker_loss` is not zero.
    in_flight: Option<InFlight>,
}

impl Worker {
    /// Whether `heartbeat × liveness` of silence makes the broker forget it now.
    fn expires_when_silent(&self) -> bool {
        !self.busy || self.beats_while_busy
    }
}

/// The request a busy worker has in hand, kept so that it can be queued again if the worker
/// is lost.
#[derive(Debug)]
struct InFlight {
    client: Frame,
    body: Vec<Frame>,
    /// Times it was queued again already.
    requeues: u32,
}

/// The broker's state machine.
#[derive(Debug)]
pub(crate) struct BrokerState {
    settings: Settings,
    services: Services,
    workers: HashMap<Frame, Worker>,
    outbox: VecDeque<Vec<Frame>>,
    next_heartbeat: Instant,
    stats: BrokerStats,
    /// One per [`Refusal`], in its order.
    refusal_warnings: [Throttle; 3],
    expiry_warnings: Throttle,
    /// The time of the input being handled.
    now: Instant,
    /// How long dispatched requests waited in their queue.
    queue_times: QueueTimes,
}

/// Bucket bounds of [`QueueTimes`], in seconds: 100 µs doubling to about 105 s.
pub(crate) const QUEUE_TIME_BUCKETS: usize = 21;

/// A histogram of the time requests waited in a queue, kept as plain counts so that the
/// state machine stays free of any metrics library; read by the metrics at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct QueueTimes {
    /// Requests with a wait at most bucket `i`'s bound (not cumulative); the last bucket
    /// takes everything above.
    pub(crate) counts: [u64; QUEUE_TIME_BUCKETS + 1],
    pub(crate) sum_seconds: f64,
    pub(crate) count: u64,
}

impl QueueTimes {
    /// The upper bound of bucket `i`, in seconds.
    pub(crate) fn bound(i: usize) -> f64 {
        0.0001 * f64::from(1u32 << i.min(31))
    }

    fn observe(&mut self, wait: Duration) {
        let seconds = wait.as_secs_f64();
        let bucket = (0..QUEUE_TIME_BUCKETS)
            .find(|&i| seconds <= Self::bound(i))
            .unwrap_or(QUEUE_TIME_BUCKETS);
        self.counts[bucket] += 1;
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// Each service as the metrics report it, and the queue times: taken on request only (a
/// scrape), never per loop turn.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) services: Vec<(String, ServiceReport)>,
    pub(crate) queue_times: QueueTimes,
}

impl BrokerState {
    /// An empty broker whose first heartbeat is due `heartbeat` after `now`.
    pub(crate) fn new(settings: Settings, now: Instant) -> BrokerState {
        BrokerState {
            settings,
            services: Services::new(settings),
            workers: HashMap::new(),
            outbox: VecDeque::new(),
            next_heartbeat: now + settings.heartbeat,
            now,
            queue_times: QueueTimes::default(),
            stats: BrokerStats::default(),
            refusal_warnings: Default::default(),
            expiry_warnings: Throttle::default(),
        }
    }

    /// Handles one message as the ROUTER received it: sender identity, then the frames.
    /// Requests too old to serve are dropped first, so that none is ever dispatched late.
    pub(crate) fn handle_message(&mut self, now: Instant, mut frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        self.now = now;
        self.expire_requests(now);
        let sender = frames.remove(0);
        trace!(sender = %Id(&sender), ?frames, "received");
        self.touch(now, &sender);
        if is_client_message(&frames) {
            match ClientMessage::decode(frames) {
                Ok(message) => self.handle_client(now, sender, message),
                Err(error) => self.drop_malformed("client", &sender, error),
            }
        } else {
            match WorkerMessage::decode(frames) {
                Ok(message) => self.handle_worker(now, sender, message),
                Err(error) => self.drop_malformed("worker", &sender, error),
            }
        }
    }

    /// Drops requests queued too long; when the heartbeat is due, sends heartbeats, expires
    /// silent workers and gives back the memory of forgotten services.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.expire_requests(now);
        if now < self.next_heartbeat {
            return;
        }
        self.purge_expired(now);
        self.send_heartbeats();
        self.services.shrink_if_sparse();
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
        match self.services.next_expiry() {
            Some(expiry) => expiry.min(self.next_heartbeat),
            None => self.next_heartbeat,
        }
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

    /// Takes back a message whose peer is gone (the socket has no connection for its
    /// identity: `ZMQ_ROUTER_MANDATORY`). A worker's connection gone means the worker is:
    /// it is forgotten at once instead of at its expiry, and a REQUEST sent to it, which never
    /// left, is queued again as it was and goes to the next worker. A client gone gets nothing.
    pub(crate) fn handle_unroutable(&mut self, mut frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        let identity = frames.remove(0);
        let Some(worker) = self.workers.remove(&identity) else {
            self.stats.replies_unroutable += 1;
            debug!(client = %Id(&identity), "client gone, reply dropped");
            return;
        };
        self.stats.workers_gone += 1;
        self.services.remove_worker(&worker.service, &identity);
        info!(worker = %Id(&identity), service = %text(&worker.service), "worker connection gone, worker forgotten");
        if let Ok(WorkerMessage::Request { envelope, body }) = WorkerMessage::decode(frames) {
            let requeues = worker.in_flight.map_or(0, |r| r.requeues);
            let client = envelope.into_iter().next().unwrap_or_default();
            match self
                .services
                .requeue(self.now, &worker.service, client, body, requeues)
            {
                Ok(()) => self.stats.requests_undelivered += 1,
                Err(refusal) => {
                    self.stats.requests_lost += 1;
                    warn!(service = %text(&worker.service), bound = refusal.bound(), "request for a worker that was gone not queued again: queue bound reached");
                }
            }
        }
        self.dispatch(&worker.service);
    }

    /// The counters so far and the gauges now; kept, not recounted, so it is cheap.
    pub(crate) fn stats(&self) -> BrokerStats {
        BrokerStats {
            workers: self.workers.len(),
            waiting_workers: self.services.waiting(),
            queued_requests: self.services.queued(),
            services: self.services.len(),
            services_forgotten: self.services.forgotten(),
            ..self.stats
        }
    }

    fn handle_client(&mut self, now: Instant, client: Frame, message: ClientMessage<Frame>) {
        self.stats.requests_received += 1;
        let ClientMessage { service, body } = message;
        if service.starts_with(b"mmi.") {
            return self.handle_mmi(now, client, service, body);
        }
        match self.services.enqueue(now, &service, client, body) {
            Ok(()) => self.dispatch(&service),
            Err(refusal) => self.refuse(now, &service, refusal),
        }
    }

    /// Counts a request that was not queued, and says why at warn, once a second at most.
    fn refuse(&mut self, now: Instant, service: &[u8], refusal: Refusal) {
        let s = &self.settings;
        let (counter, limit) = match refusal {
            Refusal::TooManyServices => (&mut self.stats.services_refused, s.max_services),
            Refusal::TotalFull => (
                &mut self.stats.requests_dropped_total_bound,
                s.max_queued_total,
            ),
            Refusal::QueueFull => (&mut self.stats.requests_dropped, s.max_queue),
        };
        let bound = refusal.bound();
        *counter += 1;
        self.services.record_dropped(service);
        let service = text(service);
        match self.refusal_warnings[refusal as usize].allow(now) {
            Some(held_back) => {
                warn!(%service, bound, limit, held_back, "bound reached, request dropped")
            }
            None => debug!(%service, bound, limit, "bound reached, request dropped"),
        }
    }

    /// Drops the requests queued for `max_queue_age` or longer.
    fn expire_requests(&mut self, now: Instant) {
        let expired = self.services.expire(now);
        if expired == 0 {
            return;
        }
        self.stats.requests_expired += expired as u64;
        let max_queue_age = self.settings.max_queue_age;
        match self.expiry_warnings.allow(now) {
            Some(held_back) => {
                warn!(
                    expired,
                    ?max_queue_age,
                    held_back,
                    "queued requests expired, dropped"
                )
            }
            None => debug!(expired, ?max_queue_age, "queued requests expired, dropped"),
        }
    }

    /// Every service's figures and the queue times, for the metrics.
    #[cfg(feature = "metrics")]
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            services: self
                .services
                .names()
                .into_iter()
                .map(|name| {
                    let report = self.services.report(&name);
                    (String::from_utf8_lossy(&name).into_owned(), report)
                })
                .collect(),
            queue_times: self.queue_times.clone(),
        }
    }

    /// Answers the 8/MMI names: `mmi.service` (200/404), our extensions `mmi.services` and
    /// `mmi.stats` (layouts in the module docs), and 501 for any other `mmi.` name.
    fn handle_mmi(&mut self, now: Instant, client: Frame, service: Frame, body: Vec<Frame>) {
        self.stats.mmi_requests += 1;
        let reply = match service.as_slice() {
            b"mmi.service" => {
                let served = body.first().is_some_and(|n| self.services.is_served(n));
                vec![if served {
                    b"200".to_vec()
                } else {
                    b"404".to_vec()
                }]
            }
            b"mmi.services" => std::iter::once(b"200".to_vec())
                .chain(self.services.names())
                .collect(),
            b"mmi.stats" => self.mmi_stats(now, body),
            _ => vec![b"501".to_vec()],
        };
        debug!(service = %text(&service), code = %text(&reply[0]), "mmi lookup");
        self.send_client(client, service, reply);
    }

    /// `200`, then six frames per service asked for (all when none is named): name, workers,
    /// waiting, queued, served, age of the oldest queued request in ms, as decimal text.
    fn mmi_stats(&self, now: Instant, names: Vec<Frame>) -> Vec<Frame> {
        let names = if names.is_empty() {
            self.services.names()
        } else {
            names
        };
        let mut reply = Vec::with_capacity(1 + 6 * names.len());
        reply.push(b"200".to_vec());
        for name in names {
            let r = self.services.report(&name);
            let age = r
                .oldest
                .map_or(0, |at| now.saturating_duration_since(at).as_millis());
            reply.push(name);
            for value in [r.workers as u128, r.waiting as u128, r.queued as u128] {
                reply.push(value.to_string().into_bytes());
            }
            reply.push(r.served.to_string().into_bytes());
            reply.push(age.to_string().into_bytes());
        }
        reply
    }

    fn handle_worker(&mut self, now: Instant, sender: Frame, message: WorkerMessage<Frame>) {
        let known = self.workers.contains_key(&sender);
        match message {
            WorkerMessage::Ready { service } if known => self.refuse_second_ready(sender, service),
            WorkerMessage::Ready { service } => self.register(now, sender, service),
            WorkerMessage::Reply { envelope, body } if known => {
                self.handle_reply(sender, envelope, body)
            }
            WorkerMessage::Heartbeat if known => self.handle_heartbeat(&sender),
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
        self.services.add_worker(&service);
        let worker = Worker {
            service,
            expiry: now + self.settings.expiry,
            busy: false,
            busy_beats: 0,
            beats_while_busy: false,
            in_flight: None,
        };
        self.workers.insert(identity.clone(), worker);
        self.make_waiting(identity);
    }

    fn refuse_second_ready(&mut self, identity: Frame, service: Frame) {
        warn!(worker = %Id(&identity), service = %text(&service), "second READY from a worker, disconnecting");
        self.lose_worker(&identity);
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
                self.services.record_served(&service);
                self.send_client(client, service, body);
            }
            Err(_) => self.drop_unexpected(&identity, "REPLY envelope is not one client address"),
        }
        self.make_waiting(identity);
    }

    fn handle_disconnect(&mut self, identity: Frame, known: bool) {
        if known {
            info!(worker = %Id(&identity), "worker disconnected");
            self.lose_worker(&identity);
        }
    }

    fn disconnect_unknown(&mut self, identity: Frame, command: Command) {
        debug!(worker = %Id(&identity), %command, "message from an unknown worker, disconnecting");
        self.stats.disconnects_sent += 1;
        self.send_worker(identity, WorkerMessage::Disconnect);
    }

    /// Counts a HEARTBEAT of a busy worker towards the proof that it heartbeats while busy.
    fn handle_heartbeat(&mut self, identity: &[u8]) {
        debug!(worker = %Id(identity), "heartbeat");
        let Some(worker) = self.workers.get_mut(identity) else {
            return;
        };
        self.stats.heartbeats_received += 1;
        if worker.busy {
            worker.busy_beats = worker.busy_beats.saturating_add(1).min(BUSY_BEATS_PROOF);
            worker.beats_while_busy |= worker.busy_beats >= BUSY_BEATS_PROOF;
        }
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
        worker.in_flight = None;
        let service = worker.service.clone();
        self.services.push_waiting(&service, identity);
        self.dispatch(&service);
    }

    /// Pairs queued requests with waiting workers, oldest with least recently used.
    fn dispatch(&mut self, service: &[u8]) {
        let keep_copies = self.settings.requeue_on_worker_loss > 0;
        while let Some((identity, request)) = self.services.next_pair(service) {
            if let Some(worker) = self.workers.get_mut(&identity) {
                worker.busy = true;
                worker.busy_beats = 0;
                worker.in_flight = keep_copies.then(|| InFlight {
                    client: request.client.clone(),
                    body: request.body.clone(),
                    requeues: request.requeues,
                });
            }
            let waited = self.now.saturating_duration_since(request.at);
            self.queue_times.observe(waited);
            self.stats.requests_dispatched += 1;
            let message = WorkerMessage::Request {
                envelope: vec![request.client],
                body: request.body,
            };
            self.outbox.push_back(routed(identity, message.encode()));
        }
    }

    /// Forgets the workers silent for `heartbeat × liveness`: idle ones, and busy ones that
    /// heartbeat while busy (their request is lost or queued again).
    fn purge_expired(&mut self, now: Instant) {
        let expired: Vec<(Frame, bool)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.expires_when_silent() && w.expiry <= now)
            .map(|(identity, w)| (identity.clone(), w.busy))
            .collect();
        for (identity, busy) in expired {
            info!(worker = %Id(&identity), busy, "worker expired");
            self.stats.workers_expired += 1;
            self.stats.busy_workers_expired += u64::from(busy);
            self.lose_worker(&identity);
        }
    }

    /// Idle workers get a HEARTBEAT: a pass over the workers, never over the services.
    fn send_heartbeats(&mut self) {
        let waiting: Vec<Frame> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.busy)
            .map(|(identity, _)| identity.clone())
            .collect();
        debug!(workers = waiting.len(), "sending heartbeats");
        for identity in waiting {
            self.stats.heartbeats_sent += 1;
            self.send_worker(identity, WorkerMessage::Heartbeat);
        }
    }

    fn delete_worker(&mut self, identity: &[u8]) {
        if let Some(worker) = self.workers.remove(identity) {
            self.services.remove_worker(&worker.service, identity);
        }
    }

    /// Forgets a worker that will not reply; the request it had in hand, if any, is queued
    /// again (while the worker still keeps its service known) or counted lost.
    fn lose_worker(&mut self, identity: &[u8]) {
        let Some(worker) = self.workers.remove(identity) else {
            return;
        };
        if worker.busy {
            self.handle_lost_request(identity, &worker.service, worker.in_flight);
        }
        self.services.remove_worker(&worker.service, identity);
        self.dispatch(&worker.service);
    }

    /// The request of a worker lost while busy: queued again while its requeues last
    /// (`requeue_on_worker_loss`) and the queue bounds allow, otherwise answered by nobody.
    fn handle_lost_request(&mut self, worker: &[u8], service: &[u8], request: Option<InFlight>) {
        let limit = self.settings.requeue_on_worker_loss;
        let Some(request) = request.filter(|r| r.requeues < limit) else {
            self.stats.requests_lost += 1;
            warn!(worker = %Id(worker), service = %text(service), requeue_on_worker_loss = limit, "worker lost while busy, its request is not answered");
            return;
        };
        let requeues = request.requeues + 1;
        match self
            .services
            .requeue(self.now, service, request.client, request.body, requeues)
        {
            Ok(()) => {
                self.stats.requests_requeued += 1;
                info!(worker = %Id(worker), service = %text(service), requeues, "worker lost while busy, its request queued again");
            }
            Err(refusal) => {
                self.stats.requests_lost += 1;
                warn!(worker = %Id(worker), service = %text(service), bound = refusal.bound(), "worker lost while busy, its request is not answered: queue bound reached");
            }
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

mod services;
mod throttle;

#[cfg(test)]
mod lost_workers;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
