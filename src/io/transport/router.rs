//! The broker's sockets: its ROUTER (bound, read and written without waiting) and the REP
//! socket of its ZAP handler. Every failure is a [`TransportError`] naming the call, except a
//! bind, whose error the broker reports with the endpoint.

use std::time::Duration;

use super::{failed, set_linger, set_max_message_size, TransportError, ZmqOperation};
use crate::io::security::CurveKeys;

/// The broker's ROUTER, not yet bound: `linger`, `max_message_size`, a listen `backlog`, and
/// `ZMQ_ROUTER_MANDATORY`, so a message for a peer whose connection is gone fails instead
/// of vanishing; a PLAIN server if `plain`, a CURVE server with `curve`'s keys.
pub(crate) fn open_router(
    context: &zmq::Context,
    linger: Duration,
    max_message_size: u64,
    backlog: i32,
    plain: bool,
    curve: Option<&CurveKeys>,
) -> Result<zmq::Socket, TransportError> {
    let socket = context
        .socket(zmq::ROUTER)
        .map_err(failed(ZmqOperation::Socket))?;
    set_linger(&socket, linger)?;
    set_max_message_size(&socket, max_message_size)?;
    socket
        .set_backlog(backlog)
        .map_err(failed(ZmqOperation::SetBacklog))?;
    socket
        .set_router_mandatory(true)
        .map_err(failed(ZmqOperation::SetRouterMandatory))?;
    if plain {
        socket
            .set_plain_server(true)
            .map_err(failed(ZmqOperation::SetPlainServer))?;
    }
    if let Some(keys) = curve {
        socket
            .set_curve_server(true)
            .map_err(failed(ZmqOperation::SetCurveServer))?;
        socket
            .set_curve_secretkey(&keys.secret_key())
            .map_err(failed(ZmqOperation::SetCurveSecretKey))?;
    }
    Ok(socket)
}

/// Binds `socket` to `endpoint`.
///
/// # Errors
///
/// ZeroMQ's error (address in use, unknown interface, ...), for the caller to report with
/// the endpoint.
pub(crate) fn bind(socket: &zmq::Socket, endpoint: &str) -> Result<(), zmq::Error> {
    socket.bind(endpoint)
}

/// The endpoint `socket` was last bound to, a wildcard port resolved; `None` if ZeroMQ
/// cannot tell.
pub(crate) fn bound_endpoint(socket: &zmq::Socket) -> Option<String> {
    socket.get_last_endpoint().ok()?.ok()
}

/// Receives one whole multipart message from the ROUTER as owned byte vectors (the broker
/// keeps frames beyond the receive); `None` when nothing is waiting or a signal interrupted
/// the call.
///
/// # Errors
///
/// A failed [`ZmqOperation::Recv`].
#[inline]
pub(crate) fn try_recv_routed(
    router: &zmq::Socket,
) -> Result<Option<Vec<Vec<u8>>>, TransportError> {
    try_recv_bytes(router).map_err(failed(ZmqOperation::Recv))
}

#[inline]
fn try_recv_bytes(socket: &zmq::Socket) -> Result<Option<Vec<Vec<u8>>>, zmq::Error> {
    match socket.recv_multipart(zmq::DONTWAIT) {
        Ok(frames) => Ok(Some(frames)),
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Why a [`send_routed`] failed.
#[derive(Debug)]
pub(crate) enum RoutedSendError {
    /// No peer has the identity of the first frame (`EHOSTUNREACH` on a ROUTER with
    /// `ZMQ_ROUTER_MANDATORY`): nothing was sent, and the frames come back whole.
    Unroutable(Vec<Vec<u8>>),
    /// Any other failure (a full pipe: `EAGAIN`, as a failed [`ZmqOperation::Send`]);
    /// nothing was sent.
    Failed(TransportError),
}

/// Sends `frames` (the peer's identity first) on a ROUTER without waiting. The identity
/// frame goes first on its own, borrowed: a ROUTER refuses a message for a gone peer at its
/// first frame, so on `EHOSTUNREACH` the caller gets the message back instead of losing it;
/// the others are handed to ZeroMQ without a copy.
#[inline]
pub(crate) fn send_routed(
    router: &zmq::Socket,
    frames: Vec<Vec<u8>>,
) -> Result<(), RoutedSendError> {
    let last = frames.len().saturating_sub(1);
    let Some(identity) = frames.first() else {
        return Ok(());
    };
    let flags = if last > 0 { zmq::SNDMORE } else { 0 };
    match router.send(&identity[..], flags | zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EHOSTUNREACH) => return Err(RoutedSendError::Unroutable(frames)),
        Err(error) => return Err(send_failed(error)),
    }
    // The rest of a message whose first part was accepted is accepted too.
    for (i, frame) in frames.into_iter().enumerate().skip(1) {
        let flags = if i < last { zmq::SNDMORE } else { 0 };
        router
            .send(frame, flags | zmq::DONTWAIT)
            .map_err(send_failed)?;
    }
    Ok(())
}

fn send_failed(error: zmq::Error) -> RoutedSendError {
    RoutedSendError::Failed(failed(ZmqOperation::Send)(error))
}

/// The REP socket of a ZAP handler, not yet bound: linger 0 (an unanswered request is of no
/// use once the broker stops).
///
/// # Errors
///
/// A failed [`ZmqOperation::Socket`] or [`ZmqOperation::SetLinger`].
pub(crate) fn open_zap_handler(context: &zmq::Context) -> Result<zmq::Socket, TransportError> {
    let socket = context
        .socket(zmq::REP)
        .map_err(failed(ZmqOperation::Socket))?;
    set_linger(&socket, Duration::ZERO)?;
    Ok(socket)
}

/// Receives one ZAP request; `None` when nothing is waiting.
///
/// # Errors
///
/// A failed [`ZmqOperation::RecvZapRequest`].
pub(crate) fn try_recv_zap_request(
    zap: &zmq::Socket,
) -> Result<Option<Vec<Vec<u8>>>, TransportError> {
    try_recv_bytes(zap).map_err(failed(ZmqOperation::RecvZapRequest))
}

/// Sends the reply to the ZAP request just received.
///
/// # Errors
///
/// A failed [`ZmqOperation::SendZapReply`].
pub(crate) fn send_zap_reply(zap: &zmq::Socket, reply: Vec<Vec<u8>>) -> Result<(), TransportError> {
    zap.send_multipart(reply, 0)
        .map_err(failed(ZmqOperation::SendZapReply))
}
