//! A "chaos broker" for the soak: a transparent proxy between each worker and our broker that
//! now and then sends the worker garbage.
//!
//! Each worker slot gets a ROUTER frontend of its own (so everything is known per worker
//! process). Every worker socket seen on a frontend (one routing identity) gets a DEALER to
//! the broker, so the broker sees one peer per worker socket, as without the proxy; frames go
//! through unchanged both ways. The proxy only peeks at the command byte to know when a
//! worker is registered (first HEARTBEAT or REQUEST from the broker on its socket), when it
//! is inside a request, and when the broker threw it out (DISCONNECT).
//!
//! Garbage goes only to a worker's current, registered socket, and only shapes that cannot
//! decode, so each one must show up in the worker's `malformed_dropped`. A worker reads its
//! socket in order, so garbage sent before a DISCONNECT is always read; garbage on a socket
//! the worker abandoned without a DISCONNECT (broker silence, SIGKILL) may be lost unread
//! and is counted apart, as `garbage_maybe_lost`.
//!
//! One artefact of the proxy: a READY that a worker sent on a socket it then abandoned (the
//! broker was down longer than the worker's liveness) waits in that socket's DEALER until the
//! worker's next socket shows up, and may reach a broker that came back meanwhile. The broker
//! registers a "ghost" that never answers and expires it after `heartbeat × liveness`; a
//! request sent to it is lost and retried by its client. Without the proxy the worker's own
//! socket, closed with linger 0, would drop that READY. This is where the broker's `expired`
//! count in the report comes from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::rng::Rng;

const REQUEST: u8 = 2;
const REPLY: u8 = 3;
const DISCONNECT: u8 = 5;
/// A worker socket silent this long is gone (workers heartbeat every 100 ms).
const IDLE_LINK: Duration = Duration::from_secs(1);

/// What the proxy knows about one worker slot.
#[derive(Debug, Clone, Default)]
pub struct SlotStats {
    /// Garbage messages queued to the worker's socket.
    pub garbage_sent: u64,
    /// Of those, sent on sockets the worker abandoned without a DISCONNECT (maybe unread).
    pub garbage_maybe_lost: u64,
    /// When the broker first spoke (not DISCONNECT) on the worker's current socket.
    pub registered_at: Option<Instant>,
    /// Whether a REQUEST went to the worker and no REPLY came back yet.
    pub in_request: bool,
    /// Worker sockets seen.
    pub sockets: u64,
}

struct Shared {
    stop: AtomicBool,
    garbage: AtomicBool,
    slots: Mutex<Vec<SlotStats>>,
}

/// The running proxy.
pub struct ChaosProxy {
    frontends: Vec<String>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ChaosProxy {
    /// One frontend per slot on `tcp://127.0.0.1:*`, forwarding to `broker`; garbage about
    /// every `garbage_every` (randomised) once [`garbage`](Self::garbage) turns it on.
    pub fn start(slots: usize, broker: &str, garbage_every: Duration, seed: u64) -> ChaosProxy {
        let context = zmq::Context::new();
        let frontends: Vec<zmq::Socket> = (0..slots).map(|_| frontend(&context)).collect();
        let endpoints = frontends
            .iter()
            .map(|s| s.get_last_endpoint().unwrap().unwrap())
            .collect();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            garbage: AtomicBool::new(false),
            slots: Mutex::new(vec![SlotStats::default(); slots]),
        });
        let mut proxy = Proxy {
            context,
            broker: broker.to_string(),
            frontends,
            links: Vec::new(),
            shared: Arc::clone(&shared),
            rng: Rng::new(seed),
            garbage_every,
            next_garbage: Instant::now(),
        };
        let thread = thread::spawn(move || proxy.run());
        ChaosProxy {
            frontends: endpoints,
            shared,
            thread: Some(thread),
        }
    }

    /// The endpoint worker `slot` connects to.
    pub fn frontend(&self, slot: usize) -> &str {
        &self.frontends[slot]
    }

    /// Turns garbage on or off.
    pub fn garbage(&self, on: bool) {
        self.shared.garbage.store(on, Ordering::SeqCst);
    }

    pub fn slots(&self) -> Vec<SlotStats> {
        self.shared.slots.lock().unwrap().clone()
    }

    pub fn slot(&self, slot: usize) -> SlotStats {
        self.shared.slots.lock().unwrap()[slot].clone()
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn frontend(context: &zmq::Context) -> zmq::Socket {
    let socket = context.socket(zmq::ROUTER).unwrap();
    socket.set_linger(0).unwrap();
    // A send to a worker socket that is gone fails instead of vanishing: garbage is only
    // counted when it was queued to a live socket.
    socket.set_router_mandatory(true).unwrap();
    socket.bind("tcp://127.0.0.1:*").unwrap();
    socket
}

/// One worker socket and its DEALER to the broker.
struct Link {
    slot: usize,
    identity: Vec<u8>,
    dealer: zmq::Socket,
    last_from_worker: Instant,
    registered: bool,
    garbage: u64,
}

struct Proxy {
    context: zmq::Context,
    broker: String,
    frontends: Vec<zmq::Socket>,
    links: Vec<Link>,
    shared: Arc<Shared>,
    rng: Rng,
    garbage_every: Duration,
    next_garbage: Instant,
}

impl Proxy {
    fn run(&mut self) {
        while !self.shared.stop.load(Ordering::SeqCst) {
            let (front, back) = self.poll();
            // Links first, last index first: reading one may close it, and a frontend may
            // add or close links.
            for index in back.into_iter().rev() {
                self.read_link(index);
            }
            for slot in front {
                self.read_frontend(slot);
            }
            self.maybe_send_garbage();
            self.close_idle_links();
        }
    }

    /// Readable frontends (slot numbers) and links (indexes).
    fn poll(&self) -> (Vec<usize>, Vec<usize>) {
        let mut items: Vec<zmq::PollItem> = self
            .frontends
            .iter()
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        items.extend(
            self.links
                .iter()
                .map(|l| l.dealer.as_poll_item(zmq::POLLIN)),
        );
        zmq::poll(&mut items, 5).unwrap();
        let n = self.frontends.len();
        let ready = |range: std::ops::Range<usize>| {
            range
                .filter(|&i| items[i].is_readable())
                .collect::<Vec<usize>>()
        };
        (
            ready(0..n),
            ready(n..items.len()).iter().map(|i| i - n).collect(),
        )
    }

    fn read_frontend(&mut self, slot: usize) {
        while let Ok(mut frames) = self.frontends[slot].recv_multipart(zmq::DONTWAIT) {
            let identity = frames.remove(0);
            let index = self.link(slot, identity);
            let link = &mut self.links[index];
            link.last_from_worker = Instant::now();
            let _ = link.dealer.send_multipart(&frames, zmq::DONTWAIT);
            match command(&frames) {
                Some(REPLY) => self.shared.slots.lock().unwrap()[slot].in_request = false,
                Some(DISCONNECT) => self.close_link(index, Closed::ByWorker),
                _ => {}
            }
        }
    }

    fn read_link(&mut self, index: usize) {
        loop {
            let Some(link) = self.links.get(index) else {
                return;
            };
            let Ok(frames) = link.dealer.recv_multipart(zmq::DONTWAIT) else {
                return;
            };
            let slot = link.slot;
            let sent = self.frontends[slot]
                .send(&link.identity[..], zmq::SNDMORE | zmq::DONTWAIT)
                .and_then(|()| self.frontends[slot].send_multipart(&frames, zmq::DONTWAIT))
                .is_ok();
            if command(&frames) == Some(DISCONNECT) {
                // The worker reads in order: garbage sent before this is not lost.
                self.close_link(index, Closed::ByBroker);
                return;
            }
            if !sent || !self.is_current(index) {
                continue;
            }
            let mut stats = self.shared.slots.lock().unwrap();
            if command(&frames) == Some(REQUEST) {
                stats[slot].in_request = true;
            }
            if !self.links[index].registered {
                self.links[index].registered = true;
                stats[slot].registered_at = Some(Instant::now());
            }
        }
    }

    /// The link of `identity` on `slot`; a new identity is a new worker socket, which means
    /// the worker abandoned the others (one socket at a time, MDP rule 2).
    fn link(&mut self, slot: usize, identity: Vec<u8>) -> usize {
        if let Some(i) = self
            .links
            .iter()
            .position(|l| l.slot == slot && l.identity == identity)
        {
            return i;
        }
        while let Some(old) = self.links.iter().position(|l| l.slot == slot) {
            self.close_link(old, Closed::Abandoned);
        }
        let dealer = self.context.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_reconnect_ivl(20).unwrap();
        dealer.connect(&self.broker).unwrap();
        self.links.push(Link {
            slot,
            identity,
            dealer,
            last_from_worker: Instant::now(),
            registered: false,
            garbage: 0,
        });
        let mut stats = self.shared.slots.lock().unwrap();
        stats[slot].sockets += 1;
        stats[slot].in_request = false;
        self.links.len() - 1
    }

    fn is_current(&self, index: usize) -> bool {
        let slot = self.links[index].slot;
        self.links.iter().rposition(|l| l.slot == slot) == Some(index)
    }

    fn close_link(&mut self, index: usize, how: Closed) {
        let link = self.links.remove(index);
        if how != Closed::ByBroker {
            self.shared.slots.lock().unwrap()[link.slot].garbage_maybe_lost += link.garbage;
        }
        // The worker's own DISCONNECT, just forwarded, gets a moment to leave; what an
        // abandoned socket still queues (a READY nobody answered) must not reach the broker,
        // exactly as when the worker closes its own socket with linger 0.
        let linger = if how == Closed::ByWorker { 100 } else { 0 };
        let _ = link.dealer.set_linger(linger);
    }

    fn close_idle_links(&mut self) {
        let now = Instant::now();
        while let Some(i) = self
            .links
            .iter()
            .position(|l| now.duration_since(l.last_from_worker) > IDLE_LINK)
        {
            self.close_link(i, Closed::Abandoned);
        }
    }

    fn maybe_send_garbage(&mut self) {
        let now = Instant::now();
        if now < self.next_garbage {
            return;
        }
        let jitter = self.rng.below(self.garbage_every.as_micros() as u64 * 2);
        self.next_garbage = now + Duration::from_micros(jitter);
        if !self.shared.garbage.load(Ordering::SeqCst) {
            return;
        }
        let slot = self.rng.below(self.frontends.len() as u64) as usize;
        let Some(index) = self.links.iter().rposition(|l| l.slot == slot) else {
            return;
        };
        if !self.links[index].registered {
            return;
        }
        let frames = garbage(&mut self.rng);
        let link = &self.links[index];
        let sent = self.frontends[slot]
            .send(&link.identity[..], zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| self.frontends[slot].send_multipart(&frames, zmq::DONTWAIT))
            .is_ok();
        if sent {
            self.links[index].garbage += 1;
            self.shared.slots.lock().unwrap()[slot].garbage_sent += 1;
        }
    }
}

/// How a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The broker sent DISCONNECT.
    ByBroker,
    /// The worker sent DISCONNECT.
    ByWorker,
    /// The worker left it silently (a new socket, silence, SIGKILL).
    Abandoned,
}

/// The command byte of a worker message, if it has the MDPW01 shape.
fn command(frames: &[Vec<u8>]) -> Option<u8> {
    match frames {
        [empty, header, command, ..] if empty.is_empty() && header == b"MDPW01" => {
            match command.as_slice() {
                [byte] => Some(*byte),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A message no MDP/0.1 worker may accept: random frames or a malformed shape.
pub fn garbage(rng: &mut Rng) -> Vec<Vec<u8>> {
    let f = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
    match rng.below(12) {
        0 => f(&[b"", b"MDPW02", &[REQUEST], b"client", b"", b"body"]),
        1 => f(&[b"", b"MDPW01", &[0x09]]),
        2 => f(&[b"", b"MDPW01", &[REQUEST], b"client", b"body"]),
        3 => f(&[b"", b"MDPW01"]),
        4 => f(&[b"junk", b"MDPW01", &[4]]),
        5 => f(&[b"", b"MDPW01", &[4], b"trailing"]),
        6 => f(&[b"", b"MDPW01", &[REQUEST, REQUEST]]),
        7 => f(&[b"", b"MDPC01", b"soak", b"body"]),
        8 => f(&[b"", b"MDPW01", &[REQUEST], b"", b"no address"]),
        9 => f(&[b"", b"MDPW01", &[DISCONNECT], b"trailing"]),
        10 => f(&[b"", b"MDPW01", &[1]]),
        _ => {
            // Random frames: the first is never empty, so this never decodes.
            let count = 1 + rng.below(4) as usize;
            (0..count)
                .map(|i| {
                    let len = rng.below(48) as usize + usize::from(i == 0);
                    (0..len)
                        .map(|_| rng.below(256) as u8 | u8::from(i == 0))
                        .collect()
                })
                .collect()
        }
    }
}
