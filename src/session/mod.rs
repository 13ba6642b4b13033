//! The worker's protocol state machine: messages and time in, actions out.
//!
//! A [`Session`] never touches a socket and never reads the clock: every input carries `now`,
//! and the I/O layer ([`Worker`](crate::Worker)) carries out the [`Action`]s it queues and
//! sleeps until [`Session::next_deadline`]. This is what lets the tests run an hour of
//! heartbeats in microseconds, and what a user with their own event loop can drive directly.
//!
//! ```text
//!          start / reconnect timer
//!   Start ─────────────────────────┐        REQUEST         ┌──────┐
//!     │                            ▼     ─────────────────▶ │      │
//!     │                       ┌────────┐                    │ Busy │
//!     │                       │  Idle  │ ◀───────────────── │      │
//!     │                       └────────┘   handle_reply     └──────┘
//!     │                        │      ▲       (REPLY sent)      │
//!     │    DISCONNECT from     │      │ reconnect timer          │ shutdown: finish,
//!     │    broker, or silent   ▼      │ (new socket, READY)      │ REPLY, then stop
//!     │    for heartbeat x  ┌─────────┐                          │
//!     │    liveness         │ Backoff │                          │
//!     │                     └─────────┘                          │
//!     │  shutdown                │ shutdown                      ▼
//!     └──────────────────────────┴────────────────────────▶  Stopped
//!                                   (DISCONNECT, close)
//! ```
//!
//! Timers: HEARTBEAT is due `heartbeat` after the previous one (checked on every turn, busy or
//! not); the broker expires `heartbeat × liveness` after it was last heard, counted only while
//! idle (brokers do not heartbeat busy workers), re-armed fresh when a reply is sent.
//!
//! The session owns every protocol decision: it decodes what the broker sent
//! ([`Session::handle_frames`]), queues READY after each new socket, builds the panic and
//! timeout replies, times requests, counts everything in one [`WorkerStats`], and reports the
//! worker's life as [`Event`]s ([`Session::poll_event`]). A driver only moves frames, time and
//! the action's results in, and carries [`Action`]s out.

pub(crate) mod backoff;
#[cfg(test)]
mod tests;
mod timer;

use std::collections::VecDeque;
use std::ops::Deref;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, trace, warn};

pub use crate::events::DisconnectReason;
use crate::events::{Event, RequestOutcome, WorkerId};
use crate::protocol::{Command, WorkerMessage};
use crate::stats::WorkerStats;
use backoff::Backoff;
use timer::{Timer, TimerTable};

/// Connection attempts in a row on which no broker answered before a worker reports it
/// unreachable ([`Event::BrokerUnreachable`], [`WorkerStats::broker_unreachable`], a warning
/// in the log). Three: one attempt can fail for a broker restarting, two for one that takes
/// its time; a third in a row, each a liveness window or a failed connect long, is a fault an
/// operator wants to hear about rather than a worker polling quietly for ever.
pub const UNREACHABLE_AFTER: u32 = 3;

/// Most request durations a session keeps for a driver that has not read them.
const MAX_DURATIONS: usize = 16;

/// The session's settings, taken from a validated [`WorkerConfig`](crate::WorkerConfig).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The worker's identity in events.
    pub id: WorkerId,
    /// The service name sent in READY.
    pub service: Vec<u8>,
    /// The broker endpoints to rotate through (at least one).
    pub endpoints: Vec<String>,
    /// Whether to queue [`Event`]s for [`Session::poll_event`]; off, none is built.
    pub events: bool,
    /// The reply body sent for a request whose action panicked.
    pub panic_reply: Vec<Vec<u8>>,
    /// Interval between HEARTBEATs.
    pub heartbeat: Duration,
    /// Heartbeats of broker silence, while idle, before reconnecting.
    pub liveness: u32,
    /// First reconnect delay.
    pub reconnect: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Whether a graceful stop sends DISCONNECT.
    pub send_disconnect: bool,
    /// Seed for the reconnect jitter.
    pub seed: u64,
    /// Longest a request may take before it is answered with `timeout_reply`; the action's
    /// late result is then dropped. Only meaningful when the action runs on its own thread.
    pub request_timeout: Option<Duration>,
    /// The reply body sent for a request whose deadline passed.
    pub timeout_reply: Vec<Vec<u8>>,
    /// How long a shutdown waits for the request in the action before it answers it with
    /// `timeout_reply` (see [`Session::handle_cancel`]); `None` waits for the action. For a
    /// driver that can cancel its action: the async worker.
    pub shutdown_grace: Option<Duration>,
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet connected: the first [`Session::handle_timeout`] connects.
    Start,
    /// Waiting out a reconnect delay with no socket open.
    Backoff,
    /// Drained: no socket, waiting for [`Session::handle_resume`].
    Paused,
    /// Connected and registered, no request in flight.
    Idle,
    /// Connected, a request is being worked on.
    Busy,
    /// Shut down for good.
    Stopped,
}

/// Something the I/O layer must carry out, in queue order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<F> {
    /// Close any socket still open and open a new one (new routing identity) to endpoint
    /// number `endpoint`. The session queues READY right after it, first and only once.
    Connect {
        /// Index into the endpoint list.
        endpoint: usize,
    },
    /// Send a message on the current socket.
    Send(WorkerMessage<F>),
    /// Give a request body to the action; answer with [`Session::handle_reply`].
    Deliver {
        /// The request body frames.
        body: Vec<F>,
    },
    /// Close the current socket: with the configured linger if `graceful`, else at once.
    Close {
        /// Why the socket is closed.
        reason: DisconnectReason,
        /// Whether pending messages deserve the linger.
        graceful: bool,
    },
    /// A drain finished: the socket is closed and the session waits to be resumed.
    Drained,
    /// The session is over; no further action will come.
    Stopped,
}

/// What became of a reply handed to [`Session::handle_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// A REPLY was queued for sending.
    Sent,
    /// No request was in flight: a second reply to one request is dropped.
    NoRequest,
    /// The connection the request came on is gone; the broker cannot route the reply.
    ConnectionLost,
    /// The request was already answered with the timeout reply; this late result is dropped.
    Late,
}

/// What became of a message the driver tried to send, for [`Session::handle_sent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome<E> {
    /// The socket took it.
    Sent,
    /// The socket could not take it within its send timeout (a full pipe): nothing was sent.
    WouldBlock,
    /// The send failed with `E` for another reason (the context was terminated, ...).
    Failed(E),
}

/// A request handed to the action and not yet returned by it.
#[derive(Debug)]
struct InFlight<F> {
    /// `None` once the request was answered with the timeout reply.
    envelope: Option<Vec<F>>,
    connection: u64,
    /// When it was handed to the action.
    started: Instant,
    /// Body bytes, counted only when events are on.
    bytes: usize,
}

/// A request that arrived while the action was still busy with a timed-out one.
#[derive(Debug)]
struct Held<F> {
    envelope: Vec<F>,
    body: Vec<F>,
    arrived: Instant,
}

/// What a stop request leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    Drain,
}

/// The worker protocol state machine. `F` is the frame type.
#[derive(Debug)]
pub struct Session<F> {
    config: SessionConfig,
    state: State,
    timers: TimerTable,
    backoff: Backoff,
    endpoint: usize,
    connection: u64,
    heard: bool,
    /// When the current connection was asked for.
    connected_at: Option<Instant>,
    /// Connections in a row on which the broker was never heard, and when the first began.
    unanswered: (u32, Option<Instant>),
    in_flight: Option<InFlight<F>>,
    held: Option<Held<F>>,
    stopping: Option<Stop>,
    /// Set while [`handle_cancel`](Self::handle_cancel) answers a request (for the log).
    cancelling: bool,
    actions: VecDeque<Action<F>>,
    events: VecDeque<Event>,
    /// How long the last requests took to finish, for the driver's metrics: at most
    /// [`MAX_DURATIONS`] kept (the oldest dropped), so a driver that never reads them costs
    /// nothing more.
    durations: VecDeque<Duration>,
    stats: WorkerStats,
}

impl<F: Deref<Target = [u8]> + for<'a> From<&'a [u8]>> Session<F> {
    /// A session in [`State::Start`]; the first [`handle_timeout`](Self::handle_timeout)
    /// connects to endpoint 0.
    pub fn new(config: SessionConfig) -> Session<F> {
        let backoff = Backoff::new(config.reconnect, config.reconnect_max, config.seed);
        Session {
            config,
            state: State::Start,
            timers: TimerTable::default(),
            backoff,
            endpoint: 0,
            connection: 0,
            heard: false,
            connected_at: None,
            unanswered: (0, None),
            in_flight: None,
            held: None,
            stopping: None,
            cancelling: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            durations: VecDeque::new(),
            stats: WorkerStats::default(),
        }
    }

    /// The worker's identity in events.
    pub fn id(&self) -> &WorkerId {
        &self.config.id
    }

    /// The address of the endpoint in use or next to be used.
    pub fn endpoint_address(&self) -> &str {
        self.config
            .endpoints
            .get(self.endpoint)
            .map_or("", String::as_str)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The endpoint index in use or next to be used.
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// The counters so far.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            in_flight: self.in_flight.is_some(),
            ..self.stats
        }
    }

    /// The next event about the worker's life, if any (none unless
    /// [`SessionConfig::events`] is on).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn emit(&mut self, event: impl FnOnce(WorkerId) -> Event) {
        if self.config.events {
            self.events.push_back(event(self.config.id.clone()));
        }
    }

    /// When the next HEARTBEAT is due while connected: a driver that cannot run the session
    /// while an inline action runs sends it for the session, and reports it with
    /// [`handle_heartbeats_sent`](Self::handle_heartbeats_sent).
    pub fn heartbeat_due(&self) -> Option<Instant> {
        match self.state {
            State::Idle | State::Busy => self.timers.get(Timer::Heartbeat),
            _ => None,
        }
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        self.config.heartbeat
    }

    /// Whether the broker sent anything (but DISCONNECT) on the current connection.
    pub fn broker_heard(&self) -> bool {
        self.heard && matches!(self.state, State::Idle | State::Busy)
    }

    /// Whether a request is in flight (handed to the action and not yet answered).
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether the request in the action was already answered (by its deadline, or by
    /// [`handle_cancel`](Self::handle_cancel)): only a late result is awaited, which a driver
    /// that can cancel the action need not wait for (it then reports an empty
    /// [`handle_reply`](Self::handle_reply)).
    pub fn is_awaiting_late_result(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.envelope.is_none())
    }

    /// Whether a shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stopping == Some(Stop::Shutdown) || self.state == State::Stopped
    }

    /// Whether the broker knows this worker now, as far as the worker can tell: heard on the
    /// current connection, and neither draining nor stopping (for a readiness check).
    pub fn registered(&self) -> bool {
        self.broker_heard() && !self.is_draining() && !self.is_stopping()
    }

    /// How long a request that finished took, from its arrival to its answer (by the
    /// action, the panic reply or the timeout reply, or dropped with its connection): one
    /// per finished request, oldest first.
    pub(crate) fn poll_request_duration(&mut self) -> Option<Duration> {
        self.durations.pop_front()
    }

    /// Whether a drain was asked for and not yet resumed.
    pub fn is_draining(&self) -> bool {
        self.stopping == Some(Stop::Drain) || self.state == State::Paused
    }

    /// In [`State::Backoff`]: the attempt number and when the next connect is due.
    pub fn backoff(&self) -> Option<(u32, Instant)> {
        match self.state {
            State::Backoff => self
                .timers
                .get(Timer::Reconnect)
                .map(|at| (self.backoff.attempt(), at)),
            _ => None,
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work to do;
    /// `None` when only an input can move the session on.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Start => None,
            _ => self.timers.next_deadline(),
        }
    }

    /// Whether actions are queued for the I/O layer.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next action to carry out, if any.
    pub fn poll_action(&mut self) -> Option<Action<F>> {
        self.actions.pop_front()
    }

    /// Runs every timer due at `now` (and, in [`State::Start`], connects).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.is_due(Timer::Grace, now) {
            // The session logs it: the request in hand gets the timeout reply.
            self.timers.stop(Timer::Grace);
            self.handle_cancel(now);
        }
        match self.state {
            State::Start => self.connect(now),
            State::Backoff if self.timers.is_due(Timer::Reconnect, now) => {
                self.timers.stop(Timer::Reconnect);
                if self.in_flight.is_none() {
                    self.connect(now);
                }
            }
            State::Idle | State::Busy => self.handle_connected_timeout(now),
            State::Backoff | State::Paused | State::Stopped => {}
        }
    }

    fn handle_connected_timeout(&mut self, now: Instant) {
        if self.timers.is_due(Timer::BrokerExpiry, now) {
            warn!(
                silent_for = ?(self.config.heartbeat * self.config.liveness),
                "broker silent, reconnecting"
            );
            self.disconnect(now, DisconnectReason::BrokerSilent);
            return;
        }
        if self.timers.is_due(Timer::RequestDeadline, now) {
            self.time_out_request(now);
        }
        if self.timers.is_due(Timer::Heartbeat, now) {
            debug!("sending heartbeat");
            self.stats.heartbeats_sent += 1;
            self.actions
                .push_back(Action::Send(WorkerMessage::Heartbeat));
            self.timers
                .set(Timer::Heartbeat, now + self.config.heartbeat);
        }
    }

    /// Takes a message as the socket received it: decodes it, and drops (logs and counts) a
    /// malformed one. The connection is kept either way.
    pub fn handle_frames(&mut self, now: Instant, frames: Vec<F>) {
        trace!(frames = frames.len(), "received");
        match WorkerMessage::decode(frames) {
            Ok(message) => self.handle_message(now, message),
            Err(error) => {
                self.stats.malformed_dropped += 1;
                warn!(%error, "malformed message from broker, dropped");
            }
        }
    }

    /// Takes a decoded message from the broker.
    pub fn handle_message(&mut self, now: Instant, message: WorkerMessage<F>) {
        if !matches!(self.state, State::Idle | State::Busy) {
            self.stats.unexpected_dropped += 1;
            debug!(command = %message.command(), "message with no connection, dropped");
            return;
        }
        if let WorkerMessage::Disconnect = message {
            info!("broker sent DISCONNECT");
            self.disconnect(now, DisconnectReason::BrokerDisconnected);
            return;
        }
        self.backoff.reset();
        self.mark_heard();
        if self.state == State::Idle {
            self.reset_broker_expiry(now);
        }
        match message {
            WorkerMessage::Heartbeat => self.handle_broker_heartbeat(now),
            WorkerMessage::Request { envelope, body } => self.handle_request(now, envelope, body),
            other => {
                self.stats.unexpected_dropped += 1;
                warn!(command = %other.command(), "broker sent a worker-only command, dropped");
            }
        }
    }

    /// Answers a broker HEARTBEAT with ours when ours is three quarters due, and sets the
    /// next one a little after the broker's next: an idle worker then wakes once per
    /// heartbeat interval for both directions instead of twice. Ours is never later than
    /// `heartbeat × 9/8` after the last, far inside any broker's liveness window.
    fn handle_broker_heartbeat(&mut self, now: Instant) {
        debug!("heartbeat from broker");
        let Some(due) = self.timers.get(Timer::Heartbeat) else {
            return;
        };
        let quarter = self.config.heartbeat / 4;
        if self.state != State::Idle || due.saturating_duration_since(now) > quarter {
            return;
        }
        debug!("sending heartbeat, in answer to the broker's");
        self.stats.heartbeats_sent += 1;
        self.actions
            .push_back(Action::Send(WorkerMessage::Heartbeat));
        let slack = self.config.heartbeat / 8;
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat + slack);
    }

    fn handle_request(&mut self, now: Instant, envelope: Vec<F>, body: Vec<F>) {
        if self.state == State::Idle && self.held.is_none() {
            if self.in_flight.is_none() {
                self.deliver(envelope, body, now);
                return;
            }
            // The action still works on a request answered by timeout: the broker saw our
            // reply and may send the next one. Hold it until the action is free.
            debug!("request held until the action is free");
            self.state = State::Busy;
            self.timers.stop(Timer::BrokerExpiry);
            self.held = Some(Held {
                envelope,
                body,
                arrived: now,
            });
            self.arm_request_deadline(now);
            return;
        }
        // A broker must not send a second request to a busy worker.
        self.stats.unexpected_dropped += 1;
        warn!("request while busy, dropped");
    }

    fn deliver(&mut self, envelope: Vec<F>, body: Vec<F>, arrived: Instant) {
        self.stats.requests += 1;
        let mut bytes = 0;
        if self.config.events {
            let frames = body.len();
            bytes = body.iter().map(|f| f.len()).sum();
            debug!(frames, bytes, "request");
            self.emit(|worker| Event::RequestStarted {
                worker,
                frames,
                bytes,
            });
        }
        self.in_flight = Some(InFlight {
            envelope: Some(envelope),
            connection: self.connection,
            started: arrived,
            bytes,
        });
        if self.state == State::Idle {
            self.state = State::Busy;
        }
        self.timers.stop(Timer::BrokerExpiry);
        self.arm_request_deadline(arrived);
        self.actions.push_back(Action::Deliver { body });
    }

    fn arm_request_deadline(&mut self, arrived: Instant) {
        match self.config.request_timeout {
            Some(timeout) => self.timers.set(Timer::RequestDeadline, arrived + timeout),
            None => self.timers.stop(Timer::RequestDeadline),
        }
    }

    /// Answers the request whose deadline passed with the timeout reply: the held one if
    /// there is one (the action has not even started it), else the one in the action.
    fn time_out_request(&mut self, now: Instant) {
        self.timers.stop(Timer::RequestDeadline);
        let envelope = match self.held.take() {
            Some(held) => Some(held.envelope),
            None => self.in_flight.as_mut().and_then(|f| f.envelope.take()),
        };
        let Some(envelope) = envelope else {
            return;
        };
        if !self.cancelling {
            warn!(timeout = ?self.config.request_timeout, "request deadline passed, sending timeout reply");
        }
        let started = self.in_flight.as_ref().map_or(now, |f| f.started);
        self.send_timeout_reply(now, envelope);
        self.finished(now, started, RequestOutcome::TimedOut);
        if self.stopping.is_some() {
            // Only the action's late result is awaited now, and it may never come.
            self.finish_stop();
        }
    }

    fn send_timeout_reply(&mut self, now: Instant, envelope: Vec<F>) {
        self.stats.timeouts += 1;
        self.stats.replies += 1;
        let body = self
            .config
            .timeout_reply
            .iter()
            .map(|frame| F::from(frame.as_slice()))
            .collect();
        self.actions
            .push_back(Action::Send(WorkerMessage::Reply { envelope, body }));
        self.state = State::Idle;
        self.reset_broker_expiry(now);
    }

    /// Takes the action's answer to the in-flight request and queues the REPLY.
    ///
    /// The broker gets a fresh liveness deadline from `now`: time spent in the action is never
    /// counted as broker silence.
    pub fn handle_reply(&mut self, now: Instant, body: Vec<F>) -> ReplyOutcome {
        self.answer(now, body, RequestOutcome::Replied)
    }

    /// Reports that the action panicked on the in-flight request (`message` is the panic's
    /// text): the request is answered with the panic reply, and the worker serves on.
    pub fn handle_panic(&mut self, now: Instant, message: String) -> ReplyOutcome {
        self.stats.panics += 1;
        error!(panic = %message, "action panicked, sending the panic reply");
        let request_bytes = self.in_flight.as_ref().map_or(0, |f| f.bytes);
        self.emit(|worker| Event::ActionPanicked {
            worker,
            message,
            request_bytes,
        });
        let body = self
            .config
            .panic_reply
            .iter()
            .map(|frame| F::from(frame.as_slice()))
            .collect();
        self.answer(now, body, RequestOutcome::Panicked)
    }

    fn answer(&mut self, now: Instant, body: Vec<F>, outcome: RequestOutcome) -> ReplyOutcome {
        let Some(in_flight) = self.in_flight.take() else {
            warn!("reply with no request in flight, dropped");
            return ReplyOutcome::NoRequest;
        };
        let outcome = match in_flight.envelope {
            None => {
                self.stats.late_replies += 1;
                warn!("late result of a timed-out request, dropped");
                self.emit(|worker| Event::LateReplyDropped { worker });
                ReplyOutcome::Late
            }
            Some(envelope)
                if self.state == State::Busy && in_flight.connection == self.connection =>
            {
                self.stats.replies += 1;
                self.actions
                    .push_back(Action::Send(WorkerMessage::Reply { envelope, body }));
                self.state = State::Idle;
                self.timers.stop(Timer::RequestDeadline);
                self.reset_broker_expiry(now);
                self.finished(now, in_flight.started, outcome);
                ReplyOutcome::Sent
            }
            Some(_) => {
                warn!("reply for a connection that is gone, dropped");
                self.finished(now, in_flight.started, RequestOutcome::ConnectionLost);
                ReplyOutcome::ConnectionLost
            }
        };
        self.after_action_free(now);
        outcome
    }

    fn finished(&mut self, now: Instant, started: Instant, outcome: RequestOutcome) {
        let duration = now.saturating_duration_since(started);
        debug!(?outcome, ?duration, "request finished");
        if self.durations.len() == MAX_DURATIONS {
            self.durations.pop_front();
        }
        self.durations.push_back(duration);
        self.emit(|worker| Event::RequestFinished {
            worker,
            duration,
            outcome,
        });
    }

    /// The action just became free: start the held request, finish a stop, or connect.
    fn after_action_free(&mut self, now: Instant) {
        if let Some(held) = self.held.take() {
            if self.stopping.is_some() {
                // Stopping: the action will not take new work, but the broker is owed a reply.
                self.send_timeout_reply(now, held.envelope);
                self.finish_stop();
            } else {
                self.deliver(held.envelope, held.body, held.arrived);
            }
            return;
        }
        if self.stopping.is_some() {
            self.finish_stop();
        } else if self.state == State::Backoff && self.timers.get(Timer::Reconnect).is_none() {
            // The reconnect delay ran out while the action was busy: connect now.
            self.connect(now);
        }
    }

    /// Answers the request in hand now with the timeout reply, as if its deadline had passed
    /// (a driver does so when a shutdown's grace period ends before the action did). A stop
    /// waiting for that request then completes.
    pub fn handle_cancel(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.held.is_some() {
            warn!("grace period over: the request in hand gets the timeout reply");
            self.cancelling = true;
            self.time_out_request(now);
            self.cancelling = false;
        }
    }

    /// Reports that the driver dropped (cancelled) the action of a request already answered
    /// (by its deadline or by [`handle_cancel`](Self::handle_cancel)): the action is free
    /// again. Counted as a late result, as if it had come and been dropped.
    pub fn handle_action_cancelled(&mut self, now: Instant) {
        if self.is_awaiting_late_result() {
            debug!("action of an answered request cancelled");
            self.in_flight = None;
            self.stats.late_replies += 1;
            self.after_action_free(now);
        }
    }

    /// For a driver that can cancel its action (drop its future): true when the request in
    /// the action was already answered (by its deadline or a shutdown's grace), and the driver
    /// must drop the action now; the session takes it as cancelled, as with
    /// [`handle_action_cancelled`](Self::handle_action_cancelled).
    pub fn poll_cancel(&mut self, now: Instant) -> bool {
        let cancel = self.is_awaiting_late_result();
        self.handle_action_cancelled(now);
        cancel
    }

    /// Feeds the state of the shutdown and drain handles, as a driver reads them on each
    /// turn: a shutdown once, a drain or a resume when the drained flag changed. True when a
    /// shutdown began with this call.
    pub fn handle_controls(&mut self, now: Instant, shutdown: bool, drained: bool) -> bool {
        if shutdown {
            let began = !self.is_stopping();
            if began {
                self.handle_shutdown(now);
                self.arm_grace(now);
            }
            return began;
        }
        if drained && !self.is_draining() {
            self.handle_drain(now);
        } else if !drained && self.is_draining() {
            self.handle_resume(now);
        }
        false
    }

    /// A shutdown began with a request in the action: it gets `shutdown_grace` to finish.
    fn arm_grace(&mut self, now: Instant) {
        let grace = self.config.shutdown_grace;
        if let Some(at) = grace
            .filter(|_| self.is_busy())
            .and_then(|g| now.checked_add(g))
        {
            self.timers.set(Timer::Grace, at);
        }
    }

    /// Asks for a graceful stop: an in-flight request is finished and answered first, then
    /// DISCONNECT (if configured) and a lingering close.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.state == State::Stopped || self.stopping == Some(Stop::Shutdown) {
            return;
        }
        info!(busy = self.in_flight.is_some(), "shutdown requested");
        self.request_stop(now, Stop::Shutdown);
    }

    /// Asks for a drain: like a shutdown (the request in hand is finished and answered, then
    /// DISCONNECT and a lingering close) but the session then waits in [`State::Paused`] for
    /// [`handle_resume`](Self::handle_resume).
    pub fn handle_drain(&mut self, now: Instant) {
        if self.stopping.is_some() || matches!(self.state, State::Paused | State::Stopped) {
            return;
        }
        info!(busy = self.in_flight.is_some(), "drain requested");
        self.request_stop(now, Stop::Drain);
    }

    /// Re-registers a drained session (new socket, READY); cancels a drain still waiting for
    /// its request to finish.
    pub fn handle_resume(&mut self, now: Instant) {
        match (self.state, self.stopping) {
            (State::Paused, _) => {
                info!("resuming");
                self.stopping = None;
                self.connect_to(now, self.endpoint);
                self.emit(|worker| Event::Resumed { worker });
            }
            (_, Some(Stop::Drain)) => self.stopping = None,
            _ => {}
        }
    }

    fn request_stop(&mut self, now: Instant, stop: Stop) {
        self.stopping = Some(stop);
        // A held request is owed a reply but the action will not take new work.
        if let Some(held) = self.held.take() {
            self.send_timeout_reply(now, held.envelope);
        }
        // Finish now unless the action works on a request the broker still awaits; a late
        // result of a timed-out request may never come and is not waited for.
        let awaited = self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.envelope.is_some());
        if !awaited {
            self.finish_stop();
        }
    }

    fn finish_stop(&mut self) {
        if self.state == State::Stopped {
            return;
        }
        let stop = self.stopping.unwrap_or(Stop::Shutdown);
        if matches!(self.state, State::Idle | State::Busy) {
            if self.config.send_disconnect {
                self.actions
                    .push_back(Action::Send(WorkerMessage::Disconnect));
            }
            let reason = match stop {
                Stop::Shutdown => DisconnectReason::Shutdown,
                Stop::Drain => DisconnectReason::Drained,
            };
            self.close(reason, true);
        }
        self.timers.stop_all();
        match stop {
            Stop::Shutdown => {
                info!("worker stopped");
                self.state = State::Stopped;
                self.actions.push_back(Action::Stopped);
                self.emit(|worker| Event::Stopped { worker });
            }
            Stop::Drain => {
                info!("drained");
                self.state = State::Paused;
                self.stopping = None;
                self.actions.push_back(Action::Drained);
                self.emit(|worker| Event::Drained { worker });
            }
        }
    }

    /// Reports that the socket could not be opened or connected: back off and try the next
    /// endpoint.
    pub fn handle_connect_failed(&mut self, now: Instant) {
        if matches!(self.state, State::Idle | State::Busy) {
            self.disconnect(now, DisconnectReason::ConnectFailed);
        }
    }

    /// Reports that the connection under the socket is gone (dropped, or refused in the
    /// security handshake), as the socket monitor tells: close, back off and connect anew,
    /// as after a DISCONNECT from the broker.
    pub fn handle_connection_lost(&mut self, now: Instant, reason: DisconnectReason) {
        match reason {
            DisconnectReason::AuthenticationFailed => self.stats.auth_failures += 1,
            _ => self.stats.connections_lost += 1,
        }
        if matches!(self.state, State::Idle | State::Busy) {
            self.disconnect(now, reason);
        }
    }

    /// Reports what became of a `command` the driver tried to send. A full pipe is expected
    /// (a broker that stopped reading): the message is dropped and counted, and the session
    /// goes on (liveness decides about the broker).
    ///
    /// # Errors
    ///
    /// The error of a send that failed otherwise: the driver cannot recover from it by itself.
    pub fn handle_sent<E>(&mut self, command: Command, outcome: SendOutcome<E>) -> Result<(), E> {
        match outcome {
            SendOutcome::Sent => Ok(()),
            SendOutcome::WouldBlock => {
                self.stats.send_failures += 1;
                warn!(%command, "send timed out on a full pipe, message dropped");
                Ok(())
            }
            SendOutcome::Failed(error) => Err(error),
        }
    }

    /// Reports `count` HEARTBEATs the driver sent on the session's behalf while an inline
    /// action ran, the last at `last`: the next one is due a heartbeat after it.
    pub fn handle_heartbeats_sent(&mut self, last: Instant, count: u64) {
        if count == 0 || !matches!(self.state, State::Idle | State::Busy) {
            return;
        }
        self.stats.heartbeats_sent += count;
        self.timers
            .set(Timer::Heartbeat, last + self.config.heartbeat);
    }

    /// The driver is being dropped while connected: say DISCONNECT (if configured), so the
    /// broker forgets the worker at once instead of after its expiry.
    pub fn handle_drop(&mut self) {
        if matches!(self.state, State::Idle | State::Busy) && self.config.send_disconnect {
            debug!("dropped while connected, sending DISCONNECT");
            self.actions
                .push_back(Action::Send(WorkerMessage::Disconnect));
        }
    }

    fn connect(&mut self, now: Instant) {
        let endpoint = match self.state {
            State::Start => self.endpoint,
            _ => (self.endpoint + 1) % self.config.endpoints.len().max(1),
        };
        self.connect_to(now, endpoint);
    }

    fn connect_to(&mut self, now: Instant, endpoint: usize) {
        if self.state != State::Start {
            self.stats.reconnects += 1;
        }
        self.endpoint = endpoint;
        self.connection += 1;
        self.heard = false;
        self.connected_at = Some(now);
        self.state = State::Idle;
        self.actions.push_back(Action::Connect {
            endpoint: self.endpoint,
        });
        let broker = self.endpoint_address().to_string();
        info!(%broker, "connecting, sending READY");
        self.emit(|worker| Event::Connected { worker, broker });
        let service = F::from(self.config.service.as_slice());
        self.actions
            .push_back(Action::Send(WorkerMessage::Ready { service }));
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat);
        self.reset_broker_expiry(now);
    }

    fn close(&mut self, reason: DisconnectReason, graceful: bool) {
        info!(?reason, "disconnected");
        self.actions.push_back(Action::Close { reason, graceful });
        self.emit(|worker| Event::Disconnected { worker, reason });
    }

    /// The broker answered on this connection: a stretch of unanswered attempts ends.
    fn mark_heard(&mut self) {
        self.heard = true;
        self.unanswered = (0, None);
        if std::mem::take(&mut self.stats.broker_unreachable) {
            let broker = self.endpoint_address().to_string();
            info!(%broker, "a broker answers again");
            self.emit(|worker| Event::BrokerReachable { worker, broker });
        }
    }

    /// Counts a connection that ends without the broker ever heard on it, and says so once
    /// when [`UNREACHABLE_AFTER`] of them come in a row.
    fn count_unanswered(&mut self, now: Instant) {
        if self.heard {
            return;
        }
        let (count, since) = &mut self.unanswered;
        *count = count.saturating_add(1);
        let since = *since.get_or_insert(self.connected_at.unwrap_or(now));
        let attempts = *count;
        if attempts != UNREACHABLE_AFTER {
            return;
        }
        let silent_for = now.saturating_duration_since(since);
        self.stats.unreachable += 1;
        self.stats.broker_unreachable = true;
        warn!(
            attempts,
            ?silent_for,
            brokers = ?self.config.endpoints,
            "no broker answered through several connection attempts in a row; still trying"
        );
        self.emit(|worker| Event::BrokerUnreachable {
            worker,
            attempts,
            silent_for,
        });
    }

    fn disconnect(&mut self, now: Instant, reason: DisconnectReason) {
        self.count_unanswered(now);
        self.close(reason, false);
        // A shutdown's grace outlives the connection: the action may still be busy.
        let grace = self.timers.get(Timer::Grace);
        self.timers.stop_all();
        if let Some(at) = grace {
            self.timers.set(Timer::Grace, at);
        }
        if self.held.take().is_some() {
            // Its connection is gone: nobody can route a reply to it.
            warn!("held request lost with its connection");
        }
        self.state = State::Backoff;
        let delay = self.backoff.next_delay();
        let attempt = self.backoff.attempt();
        warn!(?reason, attempt, ?delay, "reconnecting");
        self.timers.set(Timer::Reconnect, now + delay);
        self.emit(|worker| Event::Reconnecting {
            worker,
            attempt,
            delay,
        });
    }

    fn reset_broker_expiry(&mut self, now: Instant) {
        let window = self.config.heartbeat * self.config.liveness;
        self.timers.set(Timer::BrokerExpiry, now + window);
    }
}
