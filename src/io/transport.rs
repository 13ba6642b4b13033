//! The one place that sets up ZeroMQ sockets and moves whole messages through them, for the
//! worker, the client and the broker alike: socket options (security, size limit, linger,
//! send timeout), the worker's connection monitor, EINTR-safe receive, send and poll, and one
//! error type that carries the failed operation. Nothing outside `io` calls a socket.
//!
//! Here: the error, socket options, the DEALERs and the monitor. `frames` moves whole
//! messages through a DEALER, `poll` waits on a loop's inputs, `router` serves the broker's
//! ROUTER and ZAP sockets, `operation` names every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use zmq::Message;

use crate::io::security::{CurveClient, PlainCredentials};
use crate::millis::millis_i32;

mod frames;
mod operation;
mod poll;
mod router;

pub(crate) use frames::{
    recv_bytes_timeout, recv_frames_timeout, send_frames, try_recv_frames, try_send_frames,
};
pub use operation::ZmqOperation;
pub(crate) use poll::{poll_inputs, Ready};
pub(crate) use router::{
    bind, bound_endpoint, open_router, open_zap_handler, send_routed, send_zap_reply,
    try_recv_routed, try_recv_zap_request, RoutedSendError,
};

/// A ZeroMQ call that failed, and which one.
#[derive(Debug, thiserror::Error)]
#[error("zmq {operation} failed: {source}")]
pub(crate) struct TransportError {
    /// The call that failed.
    pub(crate) operation: ZmqOperation,
    /// ZeroMQ's error.
    #[source]
    pub(crate) source: zmq::Error,
}

impl TransportError {
    /// Whether the connect itself failed (a broker address that does not resolve, say): the
    /// broker's problem, to back off from, unlike failing to make or set up a socket.
    pub(crate) fn is_connect(&self) -> bool {
        self.operation == ZmqOperation::Connect
    }
}

/// Turns a `zmq::Error` into a [`TransportError`] naming `operation`.
pub(crate) fn failed(operation: ZmqOperation) -> impl FnOnce(zmq::Error) -> TransportError {
    move |source| TransportError { operation, source }
}

/// The options of a connecting socket (worker or client), set before it connects.
#[derive(Debug, Clone)]
pub(crate) struct SocketOptions {
    pub(crate) linger: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_message_size: u64,
    pub(crate) plain: Option<PlainCredentials>,
    pub(crate) curve: Option<CurveClient>,
    /// libzmq's own TCP reconnect interval under the socket (`ZMQ_RECONNECT_IVL`), when it
    /// should be shorter than libzmq's 100 ms.
    pub(crate) retry: Option<Duration>,
}

/// The longest `ZMQ_RECONNECT_IVL` a worker sets: libzmq's default.
pub(crate) const MAX_RETRY: Duration = Duration::from_millis(100);

/// A socket of `kind` with `options` applied, not yet connected.
pub(crate) fn open_socket(
    context: &zmq::Context,
    kind: zmq::SocketType,
    options: &SocketOptions,
) -> Result<zmq::Socket, TransportError> {
    let socket = context.socket(kind).map_err(failed(ZmqOperation::Socket))?;
    set_linger(&socket, options.linger)?;
    socket
        .set_sndtimeo(millis_i32(options.send_timeout))
        .map_err(failed(ZmqOperation::SetSendTimeout))?;
    set_max_message_size(&socket, options.max_message_size)?;
    if let Some(retry) = options.retry {
        socket
            .set_reconnect_ivl(millis_i32(retry).max(1))
            .map_err(failed(ZmqOperation::SetReconnectInterval))?;
    }
    if let Some(plain) = &options.plain {
        plain_client(&socket, plain)?;
    }
    if let Some(curve) = &options.curve {
        curve_client(&socket, curve)?;
    }
    Ok(socket)
}

/// Sets `ZMQ_LINGER`.
pub(crate) fn set_linger(socket: &zmq::Socket, linger: Duration) -> Result<(), TransportError> {
    socket
        .set_linger(millis_i32(linger))
        .map_err(failed(ZmqOperation::SetLinger))
}

/// Lets `socket` close at once, dropping what it still queues (`ZMQ_LINGER` 0). Nothing to
/// report: it fails only on a socket or context already gone, which closes at once anyway.
pub(crate) fn discard_on_close(socket: &zmq::Socket) {
    let _ = socket.set_linger(0);
}

/// Sets `ZMQ_MAXMSGSIZE` (validated to fit an `int64_t`).
pub(crate) fn set_max_message_size(socket: &zmq::Socket, size: u64) -> Result<(), TransportError> {
    socket
        .set_maxmsgsize(size.min(i64::MAX as u64) as i64)
        .map_err(failed(ZmqOperation::SetMaxMessageSize))
}

/// Makes `socket` a PLAIN client with `plain`'s credentials (before it connects).
fn plain_client(socket: &zmq::Socket, plain: &PlainCredentials) -> Result<(), TransportError> {
    socket
        .set_plain_username(Some(&plain.username))
        .map_err(failed(ZmqOperation::SetPlainUsername))?;
    socket
        .set_plain_password(Some(&plain.password))
        .map_err(failed(ZmqOperation::SetPlainPassword))
}

/// Makes `socket` a CURVE client (before it connects).
fn curve_client(socket: &zmq::Socket, curve: &CurveClient) -> Result<(), TransportError> {
    socket
        .set_curve_serverkey(&curve.server_key)
        .map_err(failed(ZmqOperation::SetCurveServerKey))?;
    socket
        .set_curve_publickey(&curve.keys.public_key())
        .map_err(failed(ZmqOperation::SetCurvePublicKey))?;
    socket
        .set_curve_secretkey(&curve.keys.secret_key())
        .map_err(failed(ZmqOperation::SetCurveSecretKey))
}

/// A DEALER connected to a broker, and the PAIR socket that receives its monitor events.
///
/// Dropping it stops the monitor before either socket closes (see [`stop_monitor`]): a
/// monitor left running into a closed PAIR blocks the context's I/O thread for ever.
pub(crate) struct Connection {
    pub(crate) socket: zmq::Socket,
    pub(crate) monitor: zmq::Socket,
    /// Whether the monitor saw the connection up (handshake passed) or the broker spoke:
    /// until then nothing sent on it can be delivered, and closing need not linger.
    pub(crate) up: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        stop_monitor(&mut self.socket, &self.monitor);
    }
}

/// Opens a DEALER socket (a fresh routing identity every time), starts its monitor and
/// connects it. The monitor is listening before the connect, so no event is missed.
pub(crate) fn open_dealer(
    context: &zmq::Context,
    endpoint: &str,
    options: &SocketOptions,
) -> Result<Connection, TransportError> {
    let (socket, monitor) = open_monitored_dealer(context, endpoint, options)?;
    Ok(Connection {
        socket,
        monitor,
        up: false,
    })
}

/// The two sockets of a [`Connection`], for a driver that wraps them in types of its own:
/// it must call [`stop_monitor`] before the second one closes.
pub(crate) fn open_monitored_dealer(
    context: &zmq::Context,
    endpoint: &str,
    options: &SocketOptions,
) -> Result<(zmq::Socket, zmq::Socket), TransportError> {
    let mut socket = open_socket(context, zmq::DEALER, options)?;
    let monitor = open_monitor(context, &socket)?;
    if let Err(error) = socket.connect(endpoint) {
        stop_monitor(&mut socket, &monitor);
        return Err(failed(ZmqOperation::Connect)(error));
    }
    Ok((socket, monitor))
}

/// Stops the monitor of `socket` while `monitor`, the PAIR that reads it, is still open.
/// Must run before that PAIR closes.
///
/// libzmq (4.3.4) sends monitor events with blocking sends from the context's I/O thread.
/// A DEALER closed with a linger goes on reporting its connection (DISCONNECTED) until it is
/// gone; with the reading PAIR closed first, that send waits for a peer that never comes,
/// and the I/O thread, and with it every socket of the context, new connections included,
/// stalls for ever (zeromq/libzmq#3575: a worker wedged after a broker restart). Stopping the
/// monitor first (`zmq_socket_monitor(socket, NULL, 0)`) closes the sending end instead.
/// The events still waiting are read off first, so that a send blocked on a full pipe (which
/// holds the monitor's lock) can finish.
pub(crate) fn stop_monitor(socket: &mut zmq::Socket, monitor: &zmq::Socket) {
    while let Ok(Some(_)) = try_recv_frames(monitor) {}
    let socket = socket.as_mut_ptr();
    // One of the crate's two `unsafe` calls: rust-zmq's `Socket::monitor` takes a `&str`, and the call
    // that stops a monitor needs a NULL endpoint, so it goes through the raw binding.
    // SAFETY: `socket` is the live handle of a socket this thread owns (borrowed mutably for
    // the call, so no other call runs on it meanwhile); a NULL endpoint with no events is
    // the documented way to stop its monitor, and touches nothing else. It fails only on a
    // socket already closed (ENOTSOCK) or a context terminated (ETERM), both harmless here.
    #[allow(unsafe_code)]
    let _ = unsafe { zmq_sys::zmq_socket_monitor(socket, std::ptr::null(), 0) };
}

/// A DEALER with `options`, connected to `endpoint` (the client's: no monitor). It queues
/// messages only on a connection that is up and past its handshake (`ZMQ_IMMEDIATE`): until
/// then a send waits, and one that times out tells that no connection came up, with nothing
/// sent. This tells the client what a monitor would, with no monitor socket to manage.
pub(crate) fn connect_dealer(
    context: &zmq::Context,
    endpoint: &str,
    options: &SocketOptions,
) -> Result<zmq::Socket, TransportError> {
    let socket = open_socket(context, zmq::DEALER, options)?;
    socket
        .set_immediate(true)
        .map_err(failed(ZmqOperation::SetImmediate))?;
    socket
        .connect(endpoint)
        .map_err(failed(ZmqOperation::Connect))?;
    Ok(socket)
}

/// What the socket monitor tells about the connection under a DEALER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// The connection is up and its security handshake passed.
    HandshakeSucceeded,
    /// The broker's ZAP handler refused the credentials, with this ZAP status code.
    AuthFailed { status: u32 },
    /// The handshake failed for another reason (mechanism mismatch, peer closed mid-way).
    HandshakeFailed { event: u16, value: u32 },
    /// An established connection dropped (broker gone, a message over `ZMQ_MAXMSGSIZE`).
    Disconnected,
}

/// The value of a HANDSHAKE_FAILED_PROTOCOL event when the two sides use different security
/// mechanisms (`ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH`): PLAIN against NULL, say.
pub(crate) const MECHANISM_MISMATCH: u32 = 0x1100_0002;

/// The events the worker acts on.
const MONITORED_EVENTS: u16 = event_number::HANDSHAKE_SUCCEEDED
    | event_number::HANDSHAKE_FAILED_AUTH
    | event_number::HANDSHAKE_FAILED_PROTOCOL
    | event_number::HANDSHAKE_FAILED_NO_DETAIL
    | event_number::DISCONNECTED;

/// The event numbers of `zmq.h` (stable since libzmq 4.3), read off `zmq::SocketEvent`.
mod event_number {
    pub(super) const DISCONNECTED: u16 = zmq::SocketEvent::DISCONNECTED as u16;
    pub(super) const HANDSHAKE_FAILED_NO_DETAIL: u16 =
        zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as u16;
    pub(super) const HANDSHAKE_SUCCEEDED: u16 = zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16;
    pub(super) const HANDSHAKE_FAILED_PROTOCOL: u16 =
        zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as u16;
    pub(super) const HANDSHAKE_FAILED_AUTH: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as u16;
}

/// Why a handshake failed, in words, for the log.
pub(crate) fn handshake_failure_cause(event: u16, value: u32) -> &'static str {
    match (event, value) {
        (event_number::HANDSHAKE_FAILED_PROTOCOL, MECHANISM_MISMATCH) => {
            "security mechanisms differ: check the credentials the broker expects"
        }
        (event_number::HANDSHAKE_FAILED_PROTOCOL, _) => "ZMTP protocol error",
        _ => "the broker closed the connection during the handshake",
    }
}

/// Starts the monitor of `socket` on a unique inproc endpoint and connects a PAIR to it.
fn open_monitor(
    context: &zmq::Context,
    socket: &zmq::Socket,
) -> Result<zmq::Socket, TransportError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let endpoint = format!(
        "inproc://mdp-worker-monitor-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    socket
        .monitor(&endpoint, i32::from(MONITORED_EVENTS))
        .map_err(failed(ZmqOperation::Monitor))?;
    let monitor = context
        .socket(zmq::PAIR)
        .map_err(failed(ZmqOperation::Socket))?;
    set_linger(&monitor, Duration::ZERO)?;
    monitor
        .connect(&endpoint)
        .map_err(failed(ZmqOperation::ConnectMonitor))?;
    Ok(monitor)
}

/// Reads one monitor event; `None` when nothing is waiting or the event is of no interest.
///
/// # Errors
///
/// A failed [`ZmqOperation::RecvMonitorEvent`].
pub(crate) fn try_recv_event(monitor: &zmq::Socket) -> Result<Option<LinkEvent>, TransportError> {
    let frames = frames::recv_frames(monitor, zmq::DONTWAIT)
        .map_err(failed(ZmqOperation::RecvMonitorEvent))?;
    Ok(frames.and_then(|frames| parse_event_frames(&frames)))
}

/// The event a monitor message carries, if it is one the worker acts on.
pub(crate) fn parse_event_frames(frames: &[Message]) -> Option<LinkEvent> {
    frames.first().and_then(|frame| parse_event(frame))
}

/// Parses the first frame of a monitor event: the event number (u16) and a value (u32), in
/// the host's byte order.
fn parse_event(frame: &[u8]) -> Option<LinkEvent> {
    let event = u16::from_ne_bytes(frame.get(0..2)?.try_into().ok()?);
    let value = u32::from_ne_bytes(frame.get(2..6)?.try_into().ok()?);
    match event {
        event_number::HANDSHAKE_SUCCEEDED => Some(LinkEvent::HandshakeSucceeded),
        event_number::HANDSHAKE_FAILED_AUTH => Some(LinkEvent::AuthFailed { status: value }),
        event_number::HANDSHAKE_FAILED_PROTOCOL | event_number::HANDSHAKE_FAILED_NO_DETAIL => {
            Some(LinkEvent::HandshakeFailed { event, value })
        }
        event_number::DISCONNECTED => Some(LinkEvent::Disconnected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(number: u16, value: u32) -> Vec<u8> {
        let mut frame = number.to_ne_bytes().to_vec();
        frame.extend_from_slice(&value.to_ne_bytes());
        frame
    }

    #[test]
    fn monitor_events_are_parsed_and_short_frames_ignored() {
        let cases = [
            (event(0x1000, 0), Some(LinkEvent::HandshakeSucceeded)),
            (
                event(0x4000, 400),
                Some(LinkEvent::AuthFailed { status: 400 }),
            ),
            (event(0x0200, 7), Some(LinkEvent::Disconnected)),
            (
                event(0x2000, 0x1100_0001),
                Some(LinkEvent::HandshakeFailed {
                    event: 0x2000,
                    value: 0x1100_0001,
                }),
            ),
            (event(0x0001, 0), None),
            (vec![0x00, 0x02, 0x00], None),
            (Vec::new(), None),
        ];
        for (frame, expected) in cases {
            assert_eq!(parse_event(&frame), expected, "{frame:?}");
        }
    }
}
