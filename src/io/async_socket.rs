//! A ZeroMQ socket driven by tokio without blocking the runtime.
//!
//! libzmq exposes one file descriptor per socket (`ZMQ_FD`). It is **edge-triggered** and
//! only says that the socket's state *may* have changed: a message can be waiting while the
//! descriptor stays quiet, because a `zmq_send`, `zmq_recv` or `ZMQ_EVENTS` read already took
//! the notification in. So every wait here starts by *trying* the operation (a non-blocking
//! receive), waits on the descriptor only when that finds nothing, and clears tokio's
//! readiness only through the guard of the same wait (tokio clears it only if no new edge
//! came in meanwhile). A future is made anew after every send, so it tries first again.

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use zmq::Message;

use crate::io::transport::{self, failed, LinkEvent, TransportError, ZmqOperation};
use crate::session::SendOutcome;

/// The socket's `ZMQ_FD`, borrowed: libzmq owns and closes it.
#[derive(Debug)]
struct SignalFd(RawFd);

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A `zmq::Socket` with its `ZMQ_FD` registered with the tokio reactor of the current
/// runtime.
pub(crate) struct AsyncSocket {
    // Before the socket: the registration must go before libzmq closes the descriptor.
    fd: AsyncFd<SignalFd>,
    socket: zmq::Socket,
}

impl AsyncSocket {
    /// Registers `socket`; must be called inside a tokio runtime.
    // One of the crate's two `unsafe` calls: tokio asks the caller of
    // `register_with_interest` to vouch that the descriptor stays open and is not replaced
    // while registered (I/O safety).
    pub(crate) fn new(socket: zmq::Socket) -> io::Result<AsyncSocket> {
        AsyncSocket::try_new(socket).map_err(|(error, _)| error)
    }

    /// Registers `socket`, or hands it back with the error (a socket that must not simply
    /// be dropped: a monitored one, see `transport::stop_monitor`).
    #[allow(unsafe_code)]
    pub(crate) fn try_new(socket: zmq::Socket) -> Result<AsyncSocket, (io::Error, zmq::Socket)> {
        let fd = match socket.get_fd() {
            Ok(fd) => SignalFd(fd),
            Err(error) => return Err((error.into(), socket)),
        };
        // SAFETY: `ZMQ_FD` stays open, unchanged, until the socket closes; `fd` is declared
        // before `socket` in `AsyncSocket`, so the registration is dropped (deregistered)
        // before the socket, and with it the descriptor, is closed. Nothing else closes it.
        match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            Ok(fd) => Ok(AsyncSocket { fd, socket }),
            Err(error) => Err((io::Error::from(error), socket)),
        }
    }

    /// The socket, for sends (never blocking: `DONTWAIT` or a send timeout) and options.
    pub(crate) fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The socket, for calls that need it mutably.
    pub(crate) fn socket_mut(&mut self) -> &mut zmq::Socket {
        &mut self.socket
    }

    /// Receives one whole multipart message, waiting without blocking the runtime.
    /// Cancel-safe: a message is taken out of the socket only in a poll that returns it.
    /// Takes `&mut self`: a `zmq::Socket` is `Send` but not `Sync`, and a future holding
    /// `&mut AsyncSocket` stays `Send` (one holding `&AsyncSocket` would not).
    ///
    /// # Errors
    ///
    /// A failed [`ZmqOperation::Recv`].
    pub(crate) async fn recv(&mut self) -> Result<Vec<Message>, TransportError> {
        loop {
            if let Some(frames) = transport::try_recv_frames(&self.socket)? {
                return Ok(frames);
            }
            let mut guard = readable(&self.fd, ZmqOperation::Recv).await?;
            // Tried once more under the guard: only a try that finds nothing may clear the
            // readiness, and tokio keeps any edge that arrived after the guard was taken.
            if let Some(frames) = transport::try_recv_frames(&self.socket)? {
                return Ok(frames);
            }
            guard.clear_ready();
        }
    }

    /// Receives the next monitor event of this socket, a monitor's PAIR, as [`recv`](Self::recv)
    /// does a message; `None` for an event the worker does not act on.
    ///
    /// # Errors
    ///
    /// A failed [`ZmqOperation::RecvMonitorEvent`].
    pub(crate) async fn recv_event(&mut self) -> Result<Option<LinkEvent>, TransportError> {
        let frames = self.recv().await.map_err(|error| TransportError {
            operation: ZmqOperation::RecvMonitorEvent,
            source: error.source,
        })?;
        Ok(transport::parse_event_frames(&frames))
    }

    /// Sends `frames` as one multipart message without blocking the runtime: a send that
    /// finds the pipe full (`EAGAIN`: sends nothing) waits for the socket's descriptor and
    /// tries again. The future is `Send`, as that of [`recv`](Self::recv); dropped
    /// before it returns, it has sent the whole message or nothing.
    ///
    /// # Errors
    ///
    /// A failed [`ZmqOperation::Send`].
    pub(crate) async fn send_mut(&mut self, frames: &[Vec<u8>]) -> Result<(), TransportError> {
        loop {
            if try_send(&self.socket, frames)? {
                return Ok(());
            }
            let mut guard = readable(&self.fd, ZmqOperation::Send).await?;
            if try_send(&self.socket, frames)? {
                return Ok(());
            }
            guard.clear_ready();
        }
    }
}

/// Waits until the socket's descriptor may have changed; a reactor error is a failed
/// `operation`. Borrows the descriptor alone: a future holding `&AsyncSocket` would not be
/// `Send`.
async fn readable(
    fd: &AsyncFd<SignalFd>,
    operation: ZmqOperation,
) -> Result<AsyncFdReadyGuard<'_, SignalFd>, TransportError> {
    let ready = fd.readable().await;
    ready.map_err(|error| failed(operation)(io_to_zmq(error)))
}

/// Sends `frames` with `DONTWAIT`; false when the pipe is full and nothing was sent (once
/// ZeroMQ accepts the first part of a message, it accepts the rest).
///
/// A `zmq_send` that fails with `EAGAIN` reads the socket's pending commands only if a
/// millisecond or so passed since the last time (libzmq throttles it), so the descriptor can
/// stay signalled with a "writable again" command unread, and no new edge would ever come.
/// Reading `ZMQ_EVENTS` processes every pending command: after it, the pipe is writable
/// (send again) or the next command makes a new edge.
fn try_send(socket: &zmq::Socket, frames: &[Vec<u8>]) -> Result<bool, TransportError> {
    if send_now(socket, frames)? {
        return Ok(true);
    }
    let events = socket.get_events().map_err(failed(ZmqOperation::Send))?;
    if events.contains(zmq::POLLOUT) {
        return send_now(socket, frames);
    }
    Ok(false)
}

fn send_now(socket: &zmq::Socket, frames: &[Vec<u8>]) -> Result<bool, TransportError> {
    let messages = frames
        .iter()
        .map(|frame| Message::from(&frame[..]))
        .collect();
    match transport::try_send_frames(socket, messages) {
        SendOutcome::Sent => Ok(true),
        SendOutcome::WouldBlock => Ok(false),
        SendOutcome::Failed(error) => Err(error),
    }
}

impl std::fmt::Debug for AsyncSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSocket")
            .field("fd", &self.fd.get_ref().0)
            .finish()
    }
}

fn io_to_zmq(error: io::Error) -> zmq::Error {
    error
        .raw_os_error()
        .map_or(zmq::Error::EFAULT, zmq::Error::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair(context: &zmq::Context, name: &str) -> (zmq::Socket, zmq::Socket) {
        let a = context.socket(zmq::PAIR).expect("pair");
        a.bind(&format!("inproc://{name}")).expect("bind");
        let b = context.socket(zmq::PAIR).expect("pair");
        b.connect(&format!("inproc://{name}")).expect("connect");
        (a, b)
    }

    #[tokio::test]
    async fn a_burst_that_arrives_while_the_reader_is_busy_is_read_whole_without_a_hang() {
        let context = zmq::Context::new();
        let (reader, writer) = pair(&context, "async-socket-burst");
        let mut reader = AsyncSocket::new(reader).expect("register");
        // One message read, so the descriptor's edge is spent...
        writer.send("first", 0).expect("send");
        let first = reader.recv().await.expect("first");
        assert_eq!(&first[0][..], b"first");
        // ...then a burst while nobody waits: one edge at most, a thousand messages.
        for i in 0..1000 {
            writer.send(format!("m{i}").as_str(), 0).expect("send");
        }
        // Sends on the reader take the notification in too (the classic way to lose it).
        reader.socket().send("ping", 0).expect("send");
        for i in 0..1000 {
            let frames = tokio::time::timeout(Duration::from_secs(5), reader.recv())
                .await
                .unwrap_or_else(|_| panic!("hung before message {i}"))
                .expect("recv");
            assert_eq!(&frames[0][..], format!("m{i}").as_bytes());
        }
    }

    #[tokio::test]
    async fn a_send_that_finds_the_pipe_full_waits_until_the_peer_reads() {
        let context = zmq::Context::new();
        // High-water marks apply to pipes made after they are set: before bind and connect.
        let reader = context.socket(zmq::PAIR).expect("pair");
        reader.set_rcvhwm(1).expect("hwm");
        reader.bind("inproc://async-socket-full").expect("bind");
        let writer = context.socket(zmq::PAIR).expect("pair");
        writer.set_sndhwm(1).expect("hwm");
        writer
            .connect("inproc://async-socket-full")
            .expect("connect");
        let mut writer = AsyncSocket::new(writer).expect("register");
        let frames = vec![b"x".to_vec(), b"y".to_vec()];
        let mut sent = 0;
        // Fill the pipe until a send has to wait; the first that waits is left pending.
        let pending = loop {
            let send = tokio::time::timeout(Duration::from_millis(50), writer.send_mut(&frames));
            match send.await {
                Ok(result) => result.expect("send"),
                Err(_) => break sent,
            }
            sent += 1;
            assert!(sent < 100, "the pipe never filled");
        };
        // Bounded receives: a blocked thread would keep the runtime from shutting down.
        let drain = tokio::task::spawn_blocking(move || {
            (0..=pending)
                .map_while(|_| match reader.poll(zmq::POLLIN, 5000) {
                    Ok(1) => reader.recv_multipart(0).ok(),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        tokio::time::timeout(Duration::from_secs(5), writer.send_mut(&frames))
            .await
            .expect("sent once the reader made room")
            .expect("send");
        let received = drain.await.expect("join");
        assert_eq!(received.len(), pending + 1, "every message sent arrived");
        assert!(received.iter().all(|m| m == &frames), "whole messages");
    }

    #[tokio::test]
    async fn a_message_sent_later_wakes_a_waiting_reader() {
        let context = zmq::Context::new();
        let (reader, writer) = pair(&context, "async-socket-late");
        let mut reader = AsyncSocket::new(reader).expect("register");
        let send = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.send_multipart(["a", "b"], 0)
        });
        let frames = tokio::time::timeout(Duration::from_secs(5), reader.recv())
            .await
            .expect("woken")
            .expect("recv");
        assert_eq!(frames.len(), 2, "both parts of the message");
        send.await.expect("join").expect("send");
    }
}
