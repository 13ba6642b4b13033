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

pub(crate) mod backoff;
#[cfg(test)]
mod tests;
mod timer;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::protocol::WorkerMessage;
use backoff::Backoff;
use timer::{Timer, TimerTable};

/// The session's settings, taken from a validated [`WorkerConfig`](crate::WorkerConfig).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Interval between HEARTBEATs.
    pub heartbeat: Duration,
    /// Heartbeats of broker silence, while idle, before reconnecting.
    pub liveness: u32,
    /// First reconnect delay.
    pub reconnect: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// How many broker endpoints to rotate through (at least 1).
    pub endpoints: usize,
    /// Whether a graceful stop sends DISCONNECT.
    pub send_disconnect: bool,
    /// Seed for the reconnect jitter.
    pub seed: u64,
    /// Longest a request may take before it is answered with `timeout_reply`; the action's
    /// late result is then dropped. Only meaningful when the action runs on its own thread.
    pub request_timeout: Option<Duration>,
    /// The reply body sent for a request whose deadline passed.
    pub timeout_reply: Vec<Vec<u8>>,
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

/// Why the session left a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The broker sent DISCONNECT.
    BrokerDisconnected,
    /// Nothing was heard from the broker for `heartbeat × liveness`.
    BrokerSilent,
    /// The socket could not be opened or connected.
    ConnectFailed,
    /// The worker is shutting down.
    Shutdown,
    /// The worker was drained.
    Drained,
    /// The transport dropped the connection under the socket: the broker went away, a
    /// message broke `max_message_size`, or the security handshake failed on a protocol error.
    ConnectionLost,
    /// The broker's ZAP handler refused the worker's credentials.
    AuthenticationFailed,
}

/// Something the I/O layer must carry out, in queue order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<F> {
    /// Open a new socket (new routing identity) to endpoint number `endpoint` and send READY
    /// on it, first and only once: the I/O layer owns the service name frame.
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
    /// The in-flight request's deadline passed: the `Send` of the timeout reply precedes this.
    RequestTimedOut,
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

/// Counters kept by the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Requests delivered to the action.
    pub requests: u64,
    /// Replies queued for sending.
    pub replies: u64,
    /// Sockets opened after the first one.
    pub reconnects: u64,
    /// HEARTBEATs queued for sending.
    pub heartbeats_sent: u64,
    /// Messages from the broker that were valid frames but wrong in context, dropped.
    pub unexpected_messages: u64,
    /// Requests answered with the timeout reply.
    pub timeouts: u64,
    /// Late results of timed-out requests, dropped.
    pub late_replies: u64,
}

/// A request handed to the action and not yet returned by it.
#[derive(Debug)]
struct InFlight<F> {
    /// `None` once the request was answered with the timeout reply.
    envelope: Option<Vec<F>>,
    connection: u64,
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
    in_flight: Option<InFlight<F>>,
    held: Option<Held<F>>,
    stopping: Option<Stop>,
    actions: VecDeque<Action<F>>,
    stats: SessionStats,
}

impl<F: for<'a> From<&'a [u8]>> Session<F> {
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
            in_flight: None,
            held: None,
            stopping: None,
            actions: VecDeque::new(),
            stats: SessionStats::default(),
        }
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
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Whether the broker sent anything (but DISCONNECT) on the current connection.
    pub fn broker_heard(&self) -> bool {
        self.heard && matches!(self.state, State::Idle | State::Busy)
    }

    /// Whether a request is in flight (handed to the action and not yet answered).
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stopping == Some(Stop::Shutdown) || self.state == State::Stopped
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

    /// Takes a decoded message from the broker.
    pub fn handle_message(&mut self, now: Instant, message: WorkerMessage<F>) {
        if !matches!(self.state, State::Idle | State::Busy) {
            self.stats.unexpected_messages += 1;
            debug!(command = %message.command(), "message with no connection, dropped");
            return;
        }
        if let WorkerMessage::Disconnect = message {
            info!("broker sent DISCONNECT");
            self.disconnect(now, DisconnectReason::BrokerDisconnected);
            return;
        }
        self.backoff.reset();
        self.heard = true;
        if self.state == State::Idle {
            self.reset_broker_expiry(now);
        }
        match message {
            WorkerMessage::Heartbeat => debug!("heartbeat from broker"),
            WorkerMessage::Request { envelope, body } => self.handle_request(now, envelope, body),
            other => {
                self.stats.unexpected_messages += 1;
                warn!(command = %other.command(), "broker sent a worker-only command, dropped");
            }
        }
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
        self.stats.unexpected_messages += 1;
        warn!("request while busy, dropped");
    }

    fn deliver(&mut self, envelope: Vec<F>, body: Vec<F>, arrived: Instant) {
        self.stats.requests += 1;
        self.in_flight = Some(InFlight {
            envelope: Some(envelope),
            connection: self.connection,
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
        warn!(timeout = ?self.config.request_timeout, "request deadline passed, sending timeout reply");
        self.send_timeout_reply(now, envelope);
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
        self.actions.push_back(Action::RequestTimedOut);
        self.state = State::Idle;
        self.reset_broker_expiry(now);
    }

    /// Takes the action's answer to the in-flight request and queues the REPLY.
    ///
    /// The broker gets a fresh liveness deadline from `now`: time spent in the action is never
    /// counted as broker silence.
    pub fn handle_reply(&mut self, now: Instant, body: Vec<F>) -> ReplyOutcome {
        let Some(in_flight) = self.in_flight.take() else {
            warn!("reply with no request in flight, dropped");
            return ReplyOutcome::NoRequest;
        };
        let outcome = match in_flight.envelope {
            None => {
                self.stats.late_replies += 1;
                warn!("late result of a timed-out request, dropped");
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
                ReplyOutcome::Sent
            }
            Some(_) => {
                warn!("reply for a connection that is gone, dropped");
                ReplyOutcome::ConnectionLost
            }
        };
        self.after_action_free(now);
        outcome
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
        let stop = self.stopping.unwrap_or(Stop::Shutdown);
        if matches!(self.state, State::Idle | State::Busy) {
            if self.config.send_disconnect {
                self.actions
                    .push_back(Action::Send(WorkerMessage::Disconnect));
            }
            self.actions.push_back(Action::Close {
                reason: match stop {
                    Stop::Shutdown => DisconnectReason::Shutdown,
                    Stop::Drain => DisconnectReason::Drained,
                },
                graceful: true,
            });
        }
        self.timers.stop_all();
        match stop {
            Stop::Shutdown => {
                self.state = State::Stopped;
                self.actions.push_back(Action::Stopped);
            }
            Stop::Drain => {
                self.state = State::Paused;
                self.stopping = None;
                self.actions.push_back(Action::Drained);
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
        if matches!(self.state, State::Idle | State::Busy) {
            self.disconnect(now, reason);
        }
    }

    fn connect(&mut self, now: Instant) {
        let endpoint = match self.state {
            State::Start => self.endpoint,
            _ => (self.endpoint + 1) % self.config.endpoints.max(1),
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
        self.state = State::Idle;
        self.actions.push_back(Action::Connect {
            endpoint: self.endpoint,
        });
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat);
        self.reset_broker_expiry(now);
    }

    fn disconnect(&mut self, now: Instant, reason: DisconnectReason) {
        self.actions.push_back(Action::Close {
            reason,
            graceful: false,
        });
        self.timers.stop_all();
        if self.held.take().is_some() {
            // Its connection is gone: nobody can route a reply to it.
            warn!("held request lost with its connection");
        }
        self.state = State::Backoff;
        let delay = self.backoff.next_delay();
        warn!(
            ?reason,
            attempt = self.backoff.attempt(),
            ?delay,
            "reconnecting"
        );
        self.timers.set(Timer::Reconnect, now + delay);
    }

    fn reset_broker_expiry(&mut self, now: Instant) {
        let window = self.config.heartbeat * self.config.liveness;
        self.timers.set(Timer::BrokerExpiry, now + window);
    }
}
