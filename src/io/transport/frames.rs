//! Whole multipart messages in and out of a DEALER (the worker's and the client's), through
//! signal interruptions; every failure is a [`TransportError`] naming the call.

use std::time::{Duration, Instant};

use zmq::Message;

use super::{failed, TransportError, ZmqOperation};
use crate::millis::{millis_i32, millis_i64};
use crate::session::SendOutcome;

/// Receives one whole multipart message; `None` when nothing is waiting (or a signal
/// interrupted the call: the caller's loop simply comes back).
///
/// # Errors
///
/// A failed [`ZmqOperation::Recv`].
#[inline]
pub(crate) fn try_recv_frames(
    socket: &zmq::Socket,
) -> Result<Option<Vec<Message>>, TransportError> {
    recv_frames(socket, zmq::DONTWAIT).map_err(failed(ZmqOperation::Recv))
}

/// Receives one whole multipart message, waiting up to `timeout` in a blocking receive (no
/// poll: the cheapest wait there is); `None` if none came.
///
/// # Errors
///
/// A failed [`ZmqOperation::Recv`] (setting the receive timeout included).
#[inline]
pub(crate) fn recv_frames_timeout(
    socket: &zmq::Socket,
    timeout: Duration,
) -> Result<Option<Vec<Message>>, TransportError> {
    let received = match socket.set_rcvtimeo(millis_i32(timeout)) {
        Ok(()) => recv_frames(socket, 0),
        Err(error) => Err(error),
    };
    received.map_err(failed(ZmqOperation::Recv))
}

/// The first part with `flags` (`None` on `EAGAIN`: nothing within the timeout), then the rest.
pub(super) fn recv_frames(
    socket: &zmq::Socket,
    flags: i32,
) -> Result<Option<Vec<Message>>, zmq::Error> {
    let mut first = Message::new();
    match socket.recv(&mut first, flags) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut more = first.get_more();
    let mut frames = Vec::with_capacity(if more { 8 } else { 1 });
    frames.push(first);
    // The remaining parts of a multipart message arrive together with the first one.
    while more {
        let mut frame = Message::new();
        match socket.recv(&mut frame, 0) {
            Ok(()) => {}
            // The rest of a multipart message is already here; a signal can still interrupt.
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
        more = frame.get_more();
        frames.push(frame);
    }
    Ok(Some(frames))
}

/// Waits up to `timeout` for a message, through signal interruptions, and receives it whole
/// as owned byte vectors (the client's reply); `None` if none came in time.
///
/// # Errors
///
/// A failed [`ZmqOperation::Poll`] while waiting, or [`ZmqOperation::Recv`].
pub(crate) fn recv_bytes_timeout(
    socket: &zmq::Socket,
    timeout: Duration,
) -> Result<Option<Vec<Vec<u8>>>, TransportError> {
    if !wait_readable(socket, timeout).map_err(failed(ZmqOperation::Poll))? {
        return Ok(None);
    }
    let frames = socket
        .recv_multipart(0)
        .map_err(failed(ZmqOperation::Recv))?;
    Ok(Some(frames))
}

/// Waits until `socket` has a message to read or `timeout` has passed, through signal
/// interruptions; true when a message is waiting.
fn wait_readable(socket: &zmq::Socket, timeout: Duration) -> Result<bool, zmq::Error> {
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
        match socket.poll(zmq::POLLIN, millis_i64(left)) {
            Ok(ready) => return Ok(ready > 0),
            Err(zmq::Error::EINTR) if !left.is_zero() => continue,
            Err(zmq::Error::EINTR) => return Ok(false),
            Err(error) => return Err(error),
        }
    }
}

/// Sends frames as one multipart message, waiting up to the socket's send timeout. A send
/// that times out sends nothing (ZeroMQ accepts the rest of a multipart message once it
/// accepted its first part, so only the first part can block, time out or be interrupted by
/// a signal). An interrupted first part is sent again: it is always a small header frame here
/// (the empty delimiter, or a one-byte kind).
#[inline]
pub(crate) fn send_frames(
    socket: &zmq::Socket,
    frames: Vec<Message>,
) -> SendOutcome<TransportError> {
    send_outcome(send_frames_waiting(socket, frames))
}

fn send_frames_waiting(socket: &zmq::Socket, frames: Vec<Message>) -> Result<(), zmq::Error> {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.into_iter().enumerate() {
        let flags = if i < last { zmq::SNDMORE } else { 0 };
        if i == 0 && frame.len() <= 64 {
            send_retrying(socket, &frame, flags)?;
        } else {
            socket.send(frame, flags)?;
        }
    }
    Ok(())
}

fn send_retrying(socket: &zmq::Socket, frame: &[u8], flags: i32) -> Result<(), zmq::Error> {
    loop {
        match socket.send(frame, flags) {
            Err(zmq::Error::EINTR) => continue,
            other => return other,
        }
    }
}

/// Sends frames as one multipart message without waiting: a full pipe is
/// [`SendOutcome::WouldBlock`], and nothing was sent.
pub(crate) fn try_send_frames(
    socket: &zmq::Socket,
    frames: Vec<Message>,
) -> SendOutcome<TransportError> {
    send_outcome(send_frames_now(socket, frames))
}

fn send_frames_now(socket: &zmq::Socket, frames: Vec<Message>) -> Result<(), zmq::Error> {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.into_iter().enumerate() {
        let flags = if i < last { zmq::SNDMORE } else { 0 };
        socket.send(frame, flags | zmq::DONTWAIT)?;
    }
    Ok(())
}

/// What a send's result means to the session: a full pipe (`EAGAIN`: the send timed out, or
/// found the pipe full) sent nothing; any other error is a failed [`ZmqOperation::Send`].
#[inline]
fn send_outcome(sent: Result<(), zmq::Error>) -> SendOutcome<TransportError> {
    match sent {
        Ok(()) => SendOutcome::Sent,
        Err(zmq::Error::EAGAIN) => SendOutcome::WouldBlock,
        Err(source) => SendOutcome::Failed(failed(ZmqOperation::Send)(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pipe_would_block_and_any_other_send_error_failed() {
        assert!(matches!(send_outcome(Ok(())), SendOutcome::Sent));
        assert!(matches!(
            send_outcome(Err(zmq::Error::EAGAIN)),
            SendOutcome::WouldBlock
        ));
        match send_outcome(Err(zmq::Error::ETERM)) {
            SendOutcome::Failed(error) => {
                assert_eq!(error.operation, ZmqOperation::Send);
                assert_eq!(error.source, zmq::Error::ETERM);
            }
            other => panic!("expected a failed send, got {other:?}"),
        }
    }
}
