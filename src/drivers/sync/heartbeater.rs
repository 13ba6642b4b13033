//! Heartbeats while an inline action runs.
//!
//! An inline worker cannot run its loop while the action runs in its thread, yet two of six
//! real brokers expire a worker that stays silent about 9 s, busy or not (see MDP.md). So
//! before calling the action the worker *parks* its DEALER in a [`Parking`] with the time the
//! next HEARTBEAT is due, and takes it back afterwards. One thread per process, the
//! heartbeater, sends HEARTBEAT through every socket parked past its due time. The socket
//! moves between threads under a mutex, which gives the memory barrier ZeroMQ asks for when
//! another thread uses a socket.
//!
//! Cost per request: two uncontended locks and one atomic load. The heartbeater is woken only
//! when a socket is parked with a due time earlier than the one it sleeps to: about once per
//! heartbeat interval per busy worker, never per request, and never while workers are idle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tracing::{debug, warn};
use zmq::Message;

use crate::io::transport::{self, Connection};
use crate::protocol::WorkerMessage;
use crate::session::SendOutcome;

/// Where one worker parks its socket while its inline action runs.
#[derive(Default)]
pub(crate) struct Parking {
    slot: Mutex<Slot>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parking")
    }
}

#[derive(Default)]
struct Slot {
    connection: Option<Connection>,
    due: Option<Instant>,
    every: Duration,
    /// Set on park; cleared by the heartbeater once `due` has passed with nothing parked.
    armed: bool,
    sent: u64,
    last: Option<Instant>,
}

/// What happened while the socket was parked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Parked {
    /// HEARTBEATs sent by the heartbeater.
    pub(crate) sent: u64,
    /// When the last one was sent.
    pub(crate) last: Option<Instant>,
}

impl Parking {
    /// A parking place known to the process's heartbeater; `None` if its thread cannot be
    /// started (then an inline worker is silent while its action runs, as in 0.1).
    pub(crate) fn new() -> Option<Arc<Parking>> {
        let heartbeater = heartbeater()?;
        let parking = Arc::new(Parking::default());
        heartbeater.register(&parking);
        Some(parking)
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `connection` to the heartbeater, which sends HEARTBEAT on its socket at `due`
    /// and every `every` after it until [`take`](Self::take). Its monitor goes with it: a
    /// monitor must never be closed apart from its socket (`transport::stop_monitor`).
    pub(crate) fn park(&self, connection: Connection, due: Instant, every: Duration) {
        {
            let mut slot = self.slot();
            slot.connection = Some(connection);
            slot.due = Some(due);
            slot.every = every;
            slot.armed = true;
            slot.sent = 0;
            slot.last = None;
        }
        if let Some(heartbeater) = HEARTBEATER.get().and_then(Option::as_ref) {
            heartbeater.arm(due);
        }
    }

    /// Takes the connection back, with what was sent meanwhile.
    pub(crate) fn take(&self) -> (Option<Connection>, Parked) {
        let mut slot = self.slot();
        let parked = Parked {
            sent: slot.sent,
            last: slot.last,
        };
        (slot.connection.take(), parked)
    }

    /// Sends what is due at `now`; returns when this place next needs the heartbeater.
    fn beat(&self, now: Instant) -> Option<Instant> {
        let mut slot = self.slot();
        let due = slot.due?;
        if let Some(connection) = &slot.connection {
            if due > now {
                return Some(due);
            }
            let frames = WorkerMessage::<Message>::Heartbeat.encode();
            match transport::try_send_frames(&connection.socket, frames) {
                SendOutcome::Sent => debug!("heartbeat sent while the action runs"),
                SendOutcome::WouldBlock => debug!("heartbeat while busy not sent: pipe full"),
                SendOutcome::Failed(error) => debug!(%error, "heartbeat while busy not sent"),
            }
            slot.sent += 1;
            slot.last = Some(now);
            let next = now.checked_add(slot.every);
            slot.due = next;
            return next;
        }
        if slot.armed && due > now {
            return Some(due);
        }
        slot.armed = false;
        None
    }
}

/// The process's heartbeater: the parking places and the thread that serves them.
struct Heartbeater {
    places: Mutex<Vec<Weak<Parking>>>,
    wake: Sender<()>,
    /// When the thread next wakes by itself, in nanoseconds after `epoch`; `u64::MAX` while
    /// it sleeps until woken.
    next_wake: AtomicU64,
    epoch: Instant,
}

static HEARTBEATER: OnceLock<Option<Heartbeater>> = OnceLock::new();

fn heartbeater() -> Option<&'static Heartbeater> {
    HEARTBEATER
        .get_or_init(|| {
            let (wake, woken) = crossbeam_channel::bounded(1);
            let spawned = thread::Builder::new()
                .name("mdp-heartbeater".into())
                .spawn(move || run(&woken));
            match spawned {
                Ok(_) => Some(Heartbeater {
                    places: Mutex::new(Vec::new()),
                    wake,
                    next_wake: AtomicU64::new(u64::MAX),
                    epoch: Instant::now(),
                }),
                Err(error) => {
                    warn!(%error, "cannot start the heartbeater thread: inline workers stay silent while their action runs");
                    None
                }
            }
        })
        .as_ref()
}

impl Heartbeater {
    fn register(&self, parking: &Arc<Parking>) {
        let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
        places.retain(|p| p.strong_count() > 0);
        places.push(Arc::downgrade(parking));
    }

    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        nanos.min(u128::from(u64::MAX - 1)) as u64
    }

    /// Wakes the thread if it would sleep past `due`.
    fn arm(&self, due: Instant) {
        if self.nanos(due) < self.next_wake.load(Ordering::SeqCst) {
            let _ = self.wake.try_send(());
        }
    }

    /// One pass over every place; returns the earliest time a place needs the thread.
    fn beat_all(&self, now: Instant) -> Option<Instant> {
        // Anyone parking during the pass sees "asleep" and wakes the thread again.
        self.next_wake.store(u64::MAX, Ordering::SeqCst);
        let places: Vec<Arc<Parking>> = {
            let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
            places.retain(|p| p.strong_count() > 0);
            places.iter().filter_map(Weak::upgrade).collect()
        };
        let next = places.iter().filter_map(|p| p.beat(now)).min();
        if let Some(next) = next {
            self.next_wake.store(self.nanos(next), Ordering::SeqCst);
        }
        next
    }
}

fn run(woken: &Receiver<()>) {
    // The heartbeater is published by `get_or_init` once this thread runs: wait for it.
    let heartbeater = loop {
        match HEARTBEATER.get() {
            Some(Some(heartbeater)) => break heartbeater,
            Some(None) => return,
            None => thread::yield_now(),
        }
    };
    loop {
        let now = Instant::now();
        let woke = match heartbeater.beat_all(now) {
            Some(next) => woken
                .recv_timeout(next.saturating_duration_since(now))
                .is_ok(),
            None => woken.recv().is_ok(),
        };
        let _ = woke;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (zmq::Context, zmq::Socket, Connection) {
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).expect("router");
        let endpoint = format!("inproc://heartbeater-test-{name}");
        router.bind(&endpoint).expect("bind");
        let options = transport::SocketOptions {
            linger: Duration::ZERO,
            send_timeout: Duration::ZERO,
            max_message_size: u64::MAX,
            plain: None,
            curve: None,
            retry: None,
        };
        let dealer = transport::open_dealer(&context, &endpoint, &options).expect("dealer");
        (context, router, dealer)
    }

    #[test]
    fn a_parked_socket_gets_heartbeats_at_its_due_times_until_taken_back() {
        let (_context, router, dealer) = pair("due");
        let parking = Parking::new().expect("heartbeater");
        let every = Duration::from_millis(20);
        let start = Instant::now();
        parking.park(dealer, start + every, every);
        // Three heartbeats arrive, each the MDP frames behind the routing identity.
        for _ in 0..3 {
            router.set_rcvtimeo(10_000).expect("rcvtimeo");
            let frames = router.recv_multipart(0).expect("heartbeat");
            assert_eq!(&frames[1..], &[b"".to_vec(), b"MDPW01".to_vec(), vec![4]]);
        }
        let (socket, parked) = parking.take();
        assert!(socket.is_some());
        assert!(parked.sent >= 3, "sent {}", parked.sent);
        assert!(parked.last.expect("last") >= start + every * 3);
        // Taken back: nothing more is sent.
        let sent = parked.sent;
        thread::sleep(every * 3);
        assert_eq!(parking.take().1.sent, sent);
    }

    #[test]
    fn a_socket_taken_back_before_its_due_time_gets_no_heartbeat() {
        let (_context, router, dealer) = pair("early");
        let parking = Parking::new().expect("heartbeater");
        parking.park(
            dealer,
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let (socket, parked) = parking.take();
        assert!(socket.is_some());
        assert_eq!(parked, Parked::default());
        router.set_rcvtimeo(0).expect("rcvtimeo");
        assert!(router.recv_multipart(0).is_err());
    }
}
