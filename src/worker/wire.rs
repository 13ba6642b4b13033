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

/// Receives one whole multipart message; `None` when nothing is waiting (or a signal
/// interrupted the call: the caller's loop simply comes back).
pub(crate) fn try_recv_frames(socket: &zmq::Socket) -> Result<Option<Vec<Message>>, zmq::Error> {
    let mut first = Message::new();
    match socket.recv(&mut first, zmq::DONTWAIT) {
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

/// Sends frames as one multipart message. A send that times out sends nothing (ZeroMQ
/// accepts the rest of a multipart message once it accepted its first part, so only the first
/// part can block, time out or be interrupted by a signal). An interrupted first part is sent
/// again: it is always a small header frame here (the empty delimiter, or a one-byte kind).
pub(crate) fn send_frames(socket: &zmq::Socket, frames: Vec<Message>) -> Result<(), zmq::Error> {
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

/// Polls `items`; a signal interrupting the wait counts as "nothing ready" (signal handlers,
/// e.g. the one wiring SIGTERM to shutdown, must never turn into a worker error).
pub(crate) fn poll(items: &mut [zmq::PollItem<'_>], timeout: Duration) -> Result<i32, zmq::Error> {
    match zmq::poll(items, millis_i64(timeout)) {
        Err(zmq::Error::EINTR) => Ok(0),
        other => other,
    }
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
