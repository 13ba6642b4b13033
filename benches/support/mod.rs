//! Shared by the benchmarks: the echo peers (raw DEALER and our worker), a ROUTER that plays
//! the broker and drives lockstep requests, CPU and memory readings from `/proc`, and a raw
//! ROUTER-to-ROUTER forwarder to compare our broker with.
#![allow(dead_code)]

pub mod broker;
pub mod echo;
pub mod proc;

use std::time::Duration;

use majordomo_worker::Message;

/// The service every benchmark worker registers.
pub const SERVICE: &str = "echo";
/// The client address the driver puts in every REQUEST envelope.
pub const CLIENT: &[u8] = b"client-0001";
/// Body sizes of the rate-by-size sweep: 16 B to 1 MiB.
pub const SIZES: [usize; 4] = [16, 1024, 64 * 1024, 1024 * 1024];
/// How long any wait may last before a benchmark gives up instead of hanging.
pub const WATCHDOG: Duration = Duration::from_secs(20);

/// A ROUTER playing the broker for one echo peer: learns the peer's identity from its first
/// message (READY, or the raw echo's READY-shaped hello), then sends REQUESTs one at a time.
pub struct Driver {
    pub router: zmq::Socket,
    pub endpoint: String,
    identity: Vec<u8>,
    reply: Vec<Message>,
}

impl Driver {
    /// Binds a ROUTER on `bind` (`tcp://127.0.0.1:*` or an inproc name).
    pub fn bind(context: &zmq::Context, bind: &str) -> Driver {
        let router = context.socket(zmq::ROUTER).expect("router");
        router.set_linger(0).expect("linger");
        router
            .set_rcvtimeo(WATCHDOG.as_millis() as i32)
            .expect("rcvtimeo");
        router.bind(bind).expect("bind");
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        Driver {
            router,
            endpoint,
            identity: Vec::new(),
            reply: Vec::with_capacity(8),
        }
    }

    /// Waits for the peer's first message and keeps its routing identity.
    pub fn accept(&mut self) {
        let frames = self
            .router
            .recv_multipart(0)
            .expect("no READY from the echo peer");
        self.identity = frames[0].clone();
    }

    /// One lockstep round trip: a REQUEST with `body`, then the reply (HEARTBEATs skipped).
    /// Returns the reply body's length.
    pub fn round_trip(&mut self, body: &[u8]) -> usize {
        self.send_request(body);
        self.recv_reply()
    }

    /// Sends `""`, `MDPW01`, REQUEST, client, `""`, body to the peer.
    pub fn send_request(&self, body: &[u8]) {
        let r = &self.router;
        r.send(&self.identity[..], zmq::SNDMORE).unwrap();
        r.send(&b""[..], zmq::SNDMORE).unwrap();
        r.send(&b"MDPW01"[..], zmq::SNDMORE).unwrap();
        r.send(&[2u8][..], zmq::SNDMORE).unwrap();
        r.send(CLIENT, zmq::SNDMORE).unwrap();
        r.send(&b""[..], zmq::SNDMORE).unwrap();
        r.send(Message::from(body), 0).unwrap();
    }

    /// The next reply from the peer, skipping HEARTBEATs; returns the last frame's length.
    pub fn recv_reply(&mut self) -> usize {
        loop {
            self.reply.clear();
            loop {
                let mut frame = Message::new();
                self.router
                    .recv(&mut frame, 0)
                    .expect("no reply within the watchdog");
                let more = frame.get_more();
                self.reply.push(frame);
                if !more {
                    break;
                }
            }
            // identity, "", MDPW01, command, ...: a HEARTBEAT has 4 frames.
            if self.reply.len() > 4 {
                return self.reply.last().map_or(0, |f| f.len());
            }
        }
    }

    /// Answers the peer's heartbeats for `duration`, as a broker does for an idle worker:
    /// one HEARTBEAT every `heartbeat`. Returns how many messages the peer sent.
    pub fn play_idle_broker(&self, duration: Duration, heartbeat: Duration) -> u64 {
        let end = std::time::Instant::now() + duration;
        let mut next = std::time::Instant::now() + heartbeat;
        let mut received = 0;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                return received;
            }
            if now >= next {
                let r = &self.router;
                r.send(&self.identity[..], zmq::SNDMORE).unwrap();
                r.send(&b""[..], zmq::SNDMORE).unwrap();
                r.send(&b"MDPW01"[..], zmq::SNDMORE).unwrap();
                r.send(&[4u8][..], 0).unwrap();
                next += heartbeat;
            }
            let wait = next.min(end).saturating_duration_since(now);
            if self
                .router
                .poll(zmq::POLLIN, wait.as_millis() as i64 + 1)
                .unwrap()
                > 0
            {
                let _ = self.router.recv_multipart(0).unwrap();
                received += 1;
            }
        }
    }

    /// Keeps `window` requests in flight until `count` replies came back.
    pub fn pipelined(&mut self, body: &[u8], count: u64, window: u64) {
        let mut sent = 0;
        let mut received = 0;
        while received < count {
            while sent < count && sent - received < window {
                self.send_request(body);
                sent += 1;
            }
            self.recv_reply();
            received += 1;
        }
    }

    /// Sends a one-frame STOP to a raw echo peer (a worker is stopped by its handle).
    pub fn stop_raw(&self) {
        let r = &self.router;
        r.send(&self.identity[..], zmq::SNDMORE).unwrap();
        r.send(&b"STOP"[..], 0).unwrap();
    }
}

/// Median of `values` (sorted in place); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The `q` quantile (0..=1) of sorted `values`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Whether `BENCH_QUICK` is set (shorter runs, for a smoke check).
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}
