//! The steps the sync worker ([`Worker`](crate::Worker), also run by the pool) and the tokio
//! worker ([`AsyncWorker`](crate::AsyncWorker)) take alike, written once. Each driver keeps
//! only its own way of waiting (a ZeroMQ poll, or tokio) and of running the action; what it
//! does with what came in, and how it reports, is here.
//!
//! Layer: between the session (pure, below) and the two drivers (above); it uses the
//! transport for the monitor and the socket options.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};
use zmq::Message;

use crate::drivers::request_timer::RequestTimer;
use crate::error::Error;
use crate::events::EventSink;
use crate::io::security::Hex;
use crate::io::transport::{self, LinkEvent, SocketOptions, TransportError};
use crate::session::{DisconnectReason, Session};
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::stats::StatsCell;

/// What the action produced for one request.
#[derive(Debug)]
pub(crate) enum ActionResult {
    /// The reply frames.
    Reply(Vec<Message>),
    /// The action panicked, with this message.
    Panicked(String),
}

impl From<Result<Vec<Message>, String>> for ActionResult {
    /// The output of [`panics::catch`](crate::drivers::panics::catch) around the action.
    fn from(caught: Result<Vec<Message>, String>) -> ActionResult {
        match caught {
            Ok(reply) => ActionResult::Reply(reply),
            Err(message) => ActionResult::Panicked(message),
        }
    }
}

/// Where a driver reports its session: the counters others read, the events, the request
/// durations for the metrics.
#[derive(Debug)]
pub(crate) struct Reports {
    stats: Arc<StatsCell>,
    events: Option<EventSink>,
    timer: RequestTimer,
}

impl Reports {
    pub(crate) fn new(
        stats: Arc<StatsCell>,
        events: Option<EventSink>,
        timer: RequestTimer,
    ) -> Reports {
        Reports {
            stats,
            events,
            timer,
        }
    }

    /// The counters, as others read them.
    pub(crate) fn stats(&self) -> &Arc<StatsCell> {
        &self.stats
    }

    /// Publishes the counters, hands the session's events to the sink and times the
    /// requests that finished.
    pub(crate) fn publish(&mut self, session: &mut Session<Message>) {
        self.stats.publish(session.stats(), session.registered());
        while let Some(event) = session.poll_event() {
            if let Some(sink) = &self.events {
                sink.emit(event);
            }
        }
        while let Some(duration) = session.poll_request_duration() {
            self.timer.observe(duration);
        }
    }

    /// The driver is gone: its counters are final (the metrics keep them in the totals of
    /// its service).
    pub(crate) fn retire(&mut self, session: &Session<Message>) {
        self.stats.publish(session.stats(), false);
        self.stats.retire();
    }
}

/// Feeds shutdown and drain requests from the handles to the session; true when this is
/// news to it (see [`Session::handle_controls`]).
pub(crate) fn check_controls(
    session: &mut Session<Message>,
    now: Instant,
    shutdown: &ShutdownHandle,
    drain: &DrainHandle,
) -> bool {
    session.handle_controls(now, shutdown.is_shutdown(), drain.is_drained())
}

/// Hands what the action produced to the session (the REPLY, or the panic reply).
pub(crate) fn handle_result(session: &mut Session<Message>, now: Instant, result: ActionResult) {
    let _ = match result {
        ActionResult::Reply(reply) => session.handle_reply(now, reply),
        ActionResult::Panicked(message) => session.handle_panic(now, message),
    };
}

/// A socket that could not be opened: a broker address that does not resolve or bind is
/// the broker's problem (the session backs off and tries the next one); failing to make or
/// set up a socket is ours, and fatal.
pub(crate) fn handle_open_failed(
    session: &mut Session<Message>,
    address: &str,
    error: TransportError,
) -> Result<(), Error> {
    warn!(broker = %address, %error, "cannot connect");
    session.handle_connect_failed(Instant::now());
    if error.is_connect() {
        Ok(())
    } else {
        Err(error.into())
    }
}

/// Acts on what the socket monitor saw: a connection refused in the handshake or dropped
/// under the socket is left at once (a new socket after the reconnect delay), instead of
/// leaving libzmq to retry it behind the session's back or waiting out broker liveness.
/// True when the connection is up (its handshake passed).
pub(crate) fn handle_link_event(
    session: &mut Session<Message>,
    now: Instant,
    event: LinkEvent,
    options: &SocketOptions,
) -> bool {
    let reason = match event {
        LinkEvent::HandshakeSucceeded => {
            debug!("connection up, handshake passed");
            return true;
        }
        LinkEvent::AuthFailed { status } => auth_failed(options, status),
        LinkEvent::HandshakeFailed { event, value } => {
            let cause = transport::handshake_failure_cause(event, value);
            warn!(
                cause,
                event, value, "security handshake failed, reconnecting"
            );
            DisconnectReason::ConnectionLost
        }
        LinkEvent::Disconnected => {
            warn!("connection to the broker dropped, reconnecting");
            DisconnectReason::ConnectionLost
        }
    };
    session.handle_connection_lost(now, reason);
    false
}

/// Logs credentials the broker refused; the session counts it, backs off and retries.
fn auth_failed(options: &SocketOptions, status: u32) -> DisconnectReason {
    match (&options.plain, &options.curve) {
        (Some(plain), _) => warn!(
            user = %plain.username,
            status,
            "authentication failed: broker rejected the PLAIN credentials, not registered"
        ),
        (None, Some(curve)) => warn!(
            public_key = %Hex(&curve.keys.public_key()),
            status,
            "authentication failed: broker rejected the CURVE key, not registered"
        ),
        (None, None) => warn!(
            status,
            "authentication failed: broker refused the connection"
        ),
    }
    DisconnectReason::AuthenticationFailed
}

/// Reads the monitor events waiting; true if one says the handshake passed.
pub(crate) fn read_up_events(monitor: &zmq::Socket) -> bool {
    let mut up = false;
    while let Ok(Some(event)) = transport::try_recv_event(monitor) {
        up |= event == LinkEvent::HandshakeSucceeded;
    }
    up
}

/// Closing a DEALER: lingering helps only what can still be delivered, never to a broker
/// that is gone or threw us out, nor on a connection that never came up.
pub(crate) fn close(socket: &zmq::Socket, graceful: bool, up: bool) {
    if !graceful || !up {
        transport::discard_on_close(socket);
    }
}
