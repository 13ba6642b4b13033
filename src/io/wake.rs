//! Waking a worker that waits in `zmq_poll`, from any thread, at once.
//!
//! A [`Waker`] is a connected pair of Unix sockets: [`wake`](Waker::wake) writes a byte, and
//! the read side's file descriptor sits in the worker's poll set next to its broker socket. It
//! costs two file descriptors and no ZeroMQ socket, so it does not count against a context's
//! socket limit. [`Wakers`] is the list a [`ShutdownHandle`](crate::ShutdownHandle) or
//! [`DrainHandle`](crate::DrainHandle) keeps of the workers it must wake.

use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, Weak};

/// One waiter's wake-up line.
#[derive(Debug)]
pub(crate) struct Waker {
    reader: UnixStream,
    writer: UnixStream,
}

impl Waker {
    /// A waker with nothing pending.
    pub(crate) fn new() -> io::Result<Arc<Waker>> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Arc::new(Waker { reader, writer }))
    }

    /// Makes the read side readable. Never blocks: a full buffer already means "wake up".
    pub(crate) fn wake(&self) {
        let _ = (&self.writer).write(&[1]);
    }

    /// The descriptor to poll for readability.
    pub(crate) fn fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// A second handle on the read side, for a reactor to wait on.
    #[cfg(feature = "tokio")]
    pub(crate) fn reader(&self) -> io::Result<UnixStream> {
        self.reader.try_clone()
    }

    /// Consumes every pending wake-up.
    pub(crate) fn clear(&self) {
        let mut buffer = [0u8; 64];
        while matches!((&self.reader).read(&mut buffer), Ok(n) if n > 0) {}
    }
}

/// The wakers of everyone who waits on one handle; dead ones are pruned as it goes.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    list: Mutex<Vec<Weak<Waker>>>,
}

impl Wakers {
    /// Adds `waker` to those woken by [`wake_all`](Self::wake_all).
    pub(crate) fn register(&self, waker: &Arc<Waker>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(waker));
    }

    /// Wakes every registered waker that still exists.
    pub(crate) fn wake_all(&self) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|weak| match weak.upgrade() {
            Some(waker) => {
                waker.wake();
                true
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(waker: &Waker) -> bool {
        let mut items = [zmq::PollItem::from_fd(waker.fd(), zmq::POLLIN)];
        zmq::poll(&mut items, 0).expect("poll") > 0
    }

    #[test]
    fn a_wake_makes_the_fd_readable_until_cleared() {
        let waker = Waker::new().expect("waker");
        assert!(!readable(&waker));
        waker.wake();
        waker.wake();
        assert!(readable(&waker));
        waker.clear();
        assert!(!readable(&waker));
    }

    #[test]
    fn wake_all_reaches_live_wakers_and_forgets_dropped_ones() {
        let wakers = Wakers::default();
        let kept = Waker::new().expect("waker");
        let dropped = Waker::new().expect("waker");
        wakers.register(&kept);
        wakers.register(&dropped);
        drop(dropped);
        wakers.wake_all();
        assert!(readable(&kept));
        assert_eq!(wakers.list.lock().expect("lock").len(), 1);
    }

    #[test]
    fn many_wakes_without_a_reader_never_block() {
        let waker = Waker::new().expect("waker");
        for _ in 0..1_000_000 {
            waker.wake();
        }
        waker.clear();
        assert!(!readable(&waker));
    }
}
