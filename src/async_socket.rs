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

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use zmq::Message;

use crate::transport;

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
    // The crate's one `unsafe`: tokio asks the caller of `register_with_interest` to vouch
    // that the descriptor stays open and is not replaced while registered (I/O safety).
    #[allow(unsafe_code)]
    pub(crate) fn new(socket: zmq::Socket) -> io::Result<AsyncSocket> {
        let fd = SignalFd(socket.get_fd().map_err(io::Error::from)?);
        // SAFETY: `ZMQ_FD` stays open, unchanged, until the socket closes; `fd` is declared
        // before `socket` in `AsyncSocket`, so the registration is dropped (deregistered)
        // before the socket, and with it the descriptor, is closed. Nothing else closes it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(AsyncSocket { fd, socket })
    }

    /// The socket, for sends (never blocking: `DONTWAIT` or a send timeout) and options.
    pub(crate) fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Receives one whole multipart message, waiting without blocking the runtime.
    /// Cancel-safe: a message is taken out of the socket only in a poll that returns it.
    /// Takes `&mut self`: a `zmq::Socket` is `Send` but not `Sync`, and a future holding
    /// `&mut AsyncSocket` stays `Send` (one holding `&AsyncSocket` would not).
    pub(crate) async fn recv(&mut self) -> Result<Vec<Message>, zmq::Error> {
        loop {
            if let Some(frames) = transport::try_recv_frames(&self.socket)? {
                return Ok(frames);
            }
            let mut guard = self.fd.readable().await.map_err(io_to_zmq)?;
            // Tried once more under the guard: only a try that finds nothing may clear the
            // readiness, and tokio keeps any edge that arrived after the guard was taken.
            if let Some(frames) = transport::try_recv_frames(&self.socket)? {
                return Ok(frames);
            }
            guard.clear_ready();
        }
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
