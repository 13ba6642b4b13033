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

mod backoff;
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
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet connected: the first [`Session::handle_timeout`] connects.
    Start,
    /// Waiting out a reconnect delay with no socket open.
    Backoff,
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
    /// Close the current socket: with the configured linger if `graceful`, else at once.
    Close {
        /// Why the socket is closed.
        reason: DisconnectReason,
        /// Whether pending messages deserve the linger.
        graceful: bool,
    },
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
}

#[derive(Debug)]
struct InFlight<F> {
    envelope: Vec<F>,
    connection: u64,
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
    in_flight: Option<InFlight<F>>,
    stopping: bool,
    actions: VecDeque<Action<F>>,
    stats: SessionStats,
}

impl<F> Session<F> {
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
            in_flight: None,
            stopping: false,
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

    /// Whether a request is in flight (handed to the action and not yet answered).
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        self.stopping
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
            State::Backoff | State::Stopped => {}
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
        if self.state == State::Idle {
            self.reset_broker_expiry(now);
        }
        match message {
            WorkerMessage::Heartbeat => debug!("heartbeat from broker"),
            WorkerMessage::Request { envelope, body } => self.handle_request(envelope, body),
            other => {
                self.stats.unexpected_messages += 1;
                warn!(command = %other.command(), "broker sent a worker-only command, dropped");
            }
        }
    }

    fn handle_request(&mut self, envelope: Vec<F>, body: Vec<F>) {
        if self.in_flight.is_some() || self.stopping {
            // A broker must not send a second request to a busy worker, and one that arrives
            // while stopping was sent before our DISCONNECT: the client's retry will handle it.
            self.stats.unexpected_messages += 1;
            warn!(
                busy = self.in_flight.is_some(),
                stopping = self.stopping,
                "request while busy or stopping, dropped"
            );
            return;
        }
        self.stats.requests += 1;
        self.in_flight = Some(InFlight {
            envelope,
            connection: self.connection,
        });
        self.state = State::Busy;
        self.timers.stop(Timer::BrokerExpiry);
        self.actions.push_back(Action::Deliver { body });
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
        let connected = matches!(self.state, State::Busy);
        let outcome = if connected && in_flight.connection == self.connection {
            self.stats.replies += 1;
            self.actions.push_back(Action::Send(WorkerMessage::Reply {
                envelope: in_flight.envelope,
                body,
            }));
            self.state = State::Idle;
            self.reset_broker_expiry(now);
            ReplyOutcome::Sent
        } else {
            warn!("reply for a connection that is gone, dropped");
            ReplyOutcome::ConnectionLost
        };
        if self.stopping {
            self.finish_shutdown();
        } else if self.state == State::Backoff && self.timers.get(Timer::Reconnect).is_none() {
            // The reconnect delay ran out while the action was busy: connect now.
            self.connect(now);
        }
        outcome
    }

    /// Asks for a graceful stop: an in-flight request is finished and answered first, then
    /// DISCONNECT (if configured) and a lingering close.
    pub fn handle_shutdown(&mut self, _now: Instant) {
        if self.stopping || self.state == State::Stopped {
            return;
        }
        self.stopping = true;
        info!(busy = self.in_flight.is_some(), "shutdown requested");
        if self.in_flight.is_none() {
            self.finish_shutdown();
        }
    }

    fn finish_shutdown(&mut self) {
        if matches!(self.state, State::Idle | State::Busy) {
            if self.config.send_disconnect {
                self.actions
                    .push_back(Action::Send(WorkerMessage::Disconnect));
            }
            self.actions.push_back(Action::Close {
                reason: DisconnectReason::Shutdown,
                graceful: true,
            });
        }
        self.timers.stop_all();
        self.state = State::Stopped;
        self.actions.push_back(Action::Stopped);
    }

    /// Reports that the socket could not be opened or connected: back off and try the next
    /// endpoint.
    pub fn handle_connect_failed(&mut self, now: Instant) {
        if matches!(self.state, State::Idle | State::Busy) {
            self.disconnect(now, DisconnectReason::ConnectFailed);
        }
    }

    fn connect(&mut self, now: Instant) {
        if self.state != State::Start {
            self.endpoint = (self.endpoint + 1) % self.config.endpoints.max(1);
            self.stats.reconnects += 1;
        }
        self.connection += 1;
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
