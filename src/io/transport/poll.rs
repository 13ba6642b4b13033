//! One wait on everything a loop listens to: a socket, a second one (the worker's monitor
//! until its connection is up, the broker's ZAP handler) and a wake-up line. The poll set is
//! built on the stack, so a wait allocates nothing.

use std::time::Duration;

use super::{failed, TransportError, ZmqOperation};
use crate::io::wake::Waker;
use crate::millis::millis_i64;

/// What a [`poll_inputs`] found readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ready {
    /// The main socket (the worker's DEALER, the broker's ROUTER).
    pub(crate) socket: bool,
    /// The second socket (the worker's monitor, the broker's ZAP handler).
    pub(crate) other: bool,
    /// The wake-up line.
    pub(crate) woken: bool,
}

/// Waits until `socket`, `other` or `waker`'s line is readable (those given), or `timeout`
/// has passed (`None`: until something happens). A signal interrupting the wait counts as
/// "nothing ready": signal handlers, e.g. the one wiring SIGTERM to shutdown, must never turn
/// into an error.
///
/// # Errors
///
/// A failed [`ZmqOperation::Poll`].
#[inline]
pub(crate) fn poll_inputs(
    socket: Option<&zmq::Socket>,
    other: Option<&zmq::Socket>,
    waker: Option<&Waker>,
    timeout: Option<Duration>,
) -> Result<Ready, TransportError> {
    // Placeholders, never polled: only the first `count` items go to `zmq_poll`.
    let mut items = [
        zmq::PollItem::from_fd(-1, zmq::PollEvents::empty()),
        zmq::PollItem::from_fd(-1, zmq::PollEvents::empty()),
        zmq::PollItem::from_fd(-1, zmq::PollEvents::empty()),
    ];
    let mut count = 0;
    let mut place = |item| {
        items[count] = item;
        count += 1;
        count - 1
    };
    let socket = socket.map(|s| place(s.as_poll_item(zmq::POLLIN)));
    let other = other.map(|s| place(s.as_poll_item(zmq::POLLIN)));
    let woken = waker.map(|w| place(zmq::PollItem::from_fd(w.fd(), zmq::POLLIN)));
    let items = &mut items[..count];
    match zmq::poll(items, timeout.map_or(-1, millis_i64)) {
        Ok(_) | Err(zmq::Error::EINTR) => {}
        Err(error) => return Err(failed(ZmqOperation::Poll)(error)),
    }
    let readable = |at: Option<usize>| at.is_some_and(|i| items[i].is_readable());
    Ok(Ready {
        socket: readable(socket),
        other: readable(other),
        woken: readable(woken),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(context: &zmq::Context, name: &str) -> (zmq::Socket, zmq::Socket) {
        let a = context.socket(zmq::PAIR).expect("pair");
        a.bind(&format!("inproc://{name}")).expect("bind");
        let b = context.socket(zmq::PAIR).expect("pair");
        b.connect(&format!("inproc://{name}")).expect("connect");
        (a, b)
    }

    #[test]
    fn each_input_is_reported_readable_in_its_own_place() {
        let context = zmq::Context::new();
        let (socket, socket_peer) = pair(&context, "poll-inputs-socket");
        let (other, other_peer) = pair(&context, "poll-inputs-other");
        let waker = Waker::new().expect("waker");
        let wait = Some(Duration::from_millis(500));
        let quiet = Some(Duration::ZERO);

        assert_eq!(
            poll_inputs(Some(&socket), Some(&other), Some(&waker), quiet).expect("poll"),
            Ready::default()
        );
        other_peer.send("event", 0).expect("send");
        assert_eq!(
            poll_inputs(Some(&socket), Some(&other), Some(&waker), wait).expect("poll"),
            Ready {
                other: true,
                ..Ready::default()
            }
        );
        socket_peer.send("frame", 0).expect("send");
        waker.wake();
        assert_eq!(
            poll_inputs(Some(&socket), None, Some(&waker), wait).expect("poll"),
            Ready {
                socket: true,
                woken: true,
                ..Ready::default()
            }
        );
        assert_eq!(
            poll_inputs(None, Some(&other), None, wait).expect("poll"),
            Ready {
                other: true,
                ..Ready::default()
            }
        );
        assert_eq!(
            poll_inputs(None, None, Some(&waker), wait).expect("poll"),
            Ready {
                woken: true,
                ..Ready::default()
            }
        );
    }
}
