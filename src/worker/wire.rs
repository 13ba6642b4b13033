//! Socket plumbing: open a DEALER, send and receive whole multipart messages.

use std::time::Duration;

use zmq::Message;

use crate::config::WorkerConfig;

/// Socket options derived from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketOptions {
    pub(crate) linger: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_message_size: u64,
}

impl SocketOptions {
    pub(crate) fn from_config(config: &WorkerConfig) -> SocketOptions {
        SocketOptions {
            linger: config.linger,
            send_timeout: config.send_timeout,
            max_message_size: config.max_message_size,
        }
    }
}

/// Opens a DEALER socket (a fresh routing identity every time) and connects it.
pub(crate) fn open_dealer(
    context: &zmq::Context,
    endpoint: &str,
    options: SocketOptions,
) -> Result<zmq::Socket, (&'static str, zmq::Error)> {
    let socket = context.socket(zmq::DEALER).map_err(|e| ("socket", e))?;
    socket
        .set_linger(millis_i32(options.linger))
        .map_err(|e| ("setsockopt(ZMQ_LINGER)", e))?;
    socket
        .set_sndtimeo(millis_i32(options.send_timeout))
        .map_err(|e| ("setsockopt(ZMQ_SNDTIMEO)", e))?;
    socket
        .set_maxmsgsize(options.max_message_size.min(i64::MAX as u64) as i64)
        .map_err(|e| ("setsockopt(ZMQ_MAXMSGSIZE)", e))?;
    socket.connect(endpoint).map_err(|e| ("connect", e))?;
    Ok(socket)
}

/// Receives one whole multipart message; `None` when nothing is waiting.
pub(crate) fn try_recv_frames(socket: &zmq::Socket) -> Result<Option<Vec<Message>>, zmq::Error> {
    recv_frames(socket, zmq::DONTWAIT)
}

/// Receives one whole multipart message, waiting up to `timeout` for it; `None` if none came.
///
/// A blocking receive wakes once per message. `zmq_poll` then a non-blocking receive costs
/// three more system calls per wake-up (a zero-timeout first pass, and an events check on each
/// side of the wait): several percent of a raw echo's CPU per request (see BENCHMARKS.md).
pub(crate) fn recv_frames_timeout(
    socket: &zmq::Socket,
    timeout: Duration,
) -> Result<Option<Vec<Message>>, zmq::Error> {
    socket.set_rcvtimeo(millis_i32(timeout))?;
    recv_frames(socket, 0)
}

/// Receives one whole multipart message with a blocking receive (no timeout).
pub(crate) fn recv_frames_blocking(socket: &zmq::Socket) -> Result<Vec<Message>, zmq::Error> {
    loop {
        if let Some(frames) = recv_frames(socket, 0)? {
            return Ok(frames);
        }
    }
}

/// The first part with `flags` (`None` on `EAGAIN`: nothing within the timeout), then the rest.
fn recv_frames(socket: &zmq::Socket, flags: i32) -> Result<Option<Vec<Message>>, zmq::Error> {
    let mut first = Message::new();
    match socket.recv(&mut first, flags) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut more = first.get_more();
    let mut frames = Vec::with_capacity(if more { 8 } else { 1 });
    frames.push(first);
    // The remaining parts of a multipart message arrive together with the first one.
    while more {
        let mut frame = Message::new();
        socket.recv(&mut frame, 0)?;
        more = frame.get_more();
        frames.push(frame);
    }
    Ok(Some(frames))
}

/// Sends frames as one multipart message. A send that times out sends nothing (ZeroMQ
/// accepts the rest of a multipart message once it accepted its first part).
pub(crate) fn send_frames(socket: &zmq::Socket, frames: Vec<Message>) -> Result<(), zmq::Error> {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.into_iter().enumerate() {
        let flags = if i < last { zmq::SNDMORE } else { 0 };
        socket.send(frame, flags)?;
    }
    Ok(())
}

/// Milliseconds for a ZeroMQ option, rounded up so that a short wait never becomes a busy spin.
pub(crate) fn millis_i32(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

/// Milliseconds for `zmq::poll`, rounded up.
pub(crate) fn millis_i64(d: Duration) -> i64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i64::MAX as u128) as i64
}
