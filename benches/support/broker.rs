//! Through a broker: our `Broker`, or a raw ROUTER-to-ROUTER forwarder with no MDP logic;
//! behind it our workers or raw MDP echo workers; in front a raw client keeping a window of
//! requests in flight and timing each one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::{Message, ShutdownHandle, Worker, WorkerConfig};

use super::{proc, SERVICE};

/// What routes the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Router {
    /// Our `Broker`.
    Ours,
    /// Two ROUTERs and a queue of idle workers: frames moved by position, nothing checked.
    Raw,
}

/// What answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Our `Worker::new` with an echo action.
    Worker,
    /// A DEALER that sends READY, then turns each REQUEST into a REPLY by flipping the
    /// command byte (and answers a HEARTBEAT with one).
    RawEcho,
}

/// A running broker (or forwarder) with its workers, all threads of this process.
pub struct Setup {
    pub client_endpoint: String,
    pub router_tid: u32,
    stop: Arc<AtomicBool>,
    broker_stop: Option<majordomo_worker::broker::StopHandle>,
    worker_shutdown: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
}

impl Setup {
    /// Starts `router` with `workers` workers of kind `backend` on tcp loopback, and waits
    /// until the first request goes through.
    pub fn start(
        context: &zmq::Context,
        router: Router,
        backend: Backend,
        workers: usize,
    ) -> Setup {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        let mut broker_stop = None;
        let (client_endpoint, worker_endpoint) = match router {
            Router::Ours => {
                let broker =
                    Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*").context(context.clone()))
                        .unwrap();
                let endpoint = broker.endpoint().to_string();
                broker_stop = Some(broker.stop_handle());
                threads.push(thread::spawn(move || {
                    tx.send(proc::current_tid()).unwrap();
                    broker.run().unwrap();
                }));
                (endpoint.clone(), endpoint)
            }
            Router::Raw => {
                let frontend = bound_router(context);
                let backend = bound_router(context);
                let endpoints = (last_endpoint(&frontend), last_endpoint(&backend));
                let stop = Arc::clone(&stop);
                threads.push(thread::spawn(move || {
                    tx.send(proc::current_tid()).unwrap();
                    forward(&frontend, &backend, &stop);
                }));
                endpoints
            }
        };
        let router_tid = rx.recv().unwrap();
        let worker_shutdown = ShutdownHandle::new();
        for _ in 0..workers {
            let context = context.clone();
            let endpoint = worker_endpoint.clone();
            let stop = Arc::clone(&stop);
            let shutdown = worker_shutdown.clone();
            threads.push(thread::spawn(move || match backend {
                Backend::Worker => {
                    let config = WorkerConfig::new(endpoint, SERVICE)
                        .context(context)
                        .shutdown_handle(shutdown)
                        .linger(Duration::ZERO);
                    Worker::new(config, |request: Vec<Message>| request)
                        .unwrap()
                        .run()
                        .unwrap();
                }
                Backend::RawEcho => raw_mdp_echo(&context, &endpoint, &stop),
            }));
        }
        let setup = Setup {
            client_endpoint,
            router_tid,
            stop,
            broker_stop,
            worker_shutdown,
            threads,
        };
        // Every worker registered: as many requests in flight as workers all come back.
        let mut client = Client::connect(context, &setup.client_endpoint);
        client.run(workers as u64 * 4, workers as u64, 16);
        setup
    }

    /// Stops everything and joins the threads.
    pub fn stop(self) {
        self.worker_shutdown.shutdown();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(stop) = &self.broker_stop {
            stop.stop();
        }
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

fn bound_router(context: &zmq::Context) -> zmq::Socket {
    let socket = context.socket(zmq::ROUTER).unwrap();
    socket.set_linger(0).unwrap();
    socket.bind("tcp://127.0.0.1:*").unwrap();
    socket
}

fn last_endpoint(socket: &zmq::Socket) -> String {
    socket.get_last_endpoint().unwrap().unwrap()
}

fn recv_frames(socket: &zmq::Socket, frames: &mut Vec<Message>) -> bool {
    frames.clear();
    loop {
        let mut frame = Message::new();
        if socket.recv(&mut frame, zmq::DONTWAIT).is_err() {
            return false;
        }
        let more = frame.get_more();
        frames.push(frame);
        if !more {
            return true;
        }
    }
}

fn send_frames(socket: &zmq::Socket, frames: impl IntoIterator<Item = Message>) {
    let mut frames = frames.into_iter().peekable();
    while let Some(frame) = frames.next() {
        let flags = if frames.peek().is_some() {
            zmq::SNDMORE
        } else {
            0
        };
        socket.send(frame, flags).unwrap();
    }
}

/// The raw forwarder (the zguide's load-balancing broker, minus everything optional).
fn forward(frontend: &zmq::Socket, backend: &zmq::Socket, stop: &AtomicBool) {
    let mut idle: std::collections::VecDeque<Message> = Default::default();
    let mut frames = Vec::with_capacity(8);
    while !stop.load(Ordering::Relaxed) {
        let mut items = [
            backend.as_poll_item(zmq::POLLIN),
            frontend.as_poll_item(zmq::POLLIN),
        ];
        let count = if idle.is_empty() { 1 } else { 2 };
        zmq::poll(&mut items[..count], 100).unwrap();
        if items[0].is_readable() {
            while recv_frames(backend, &mut frames) {
                // worker, "", MDPW01, command, [client, "", body...]
                let mut it = frames.drain(..);
                let worker = it.next().unwrap();
                let command = it.nth(2).map_or(0, |c| c.first().copied().unwrap_or(0));
                if command == 3 {
                    let client = it.next().unwrap();
                    let _delimiter = it.next();
                    let head = [
                        client,
                        Message::new(),
                        Message::from(&b"MDPC01"[..]),
                        Message::from(SERVICE),
                    ];
                    send_frames(frontend, head.into_iter().chain(it));
                }
                if command == 1 || command == 3 {
                    idle.push_back(worker);
                }
            }
        }
        if count == 2 && items[1].is_readable() {
            while !idle.is_empty() && recv_frames(frontend, &mut frames) {
                // client, "", MDPC01, service, body...
                let worker = idle.pop_front().unwrap();
                let mut it = frames.drain(..);
                let client = it.next().unwrap();
                let head = [
                    worker,
                    Message::new(),
                    Message::from(&b"MDPW01"[..]),
                    Message::from(&[2u8][..]),
                    client,
                    Message::new(),
                ];
                send_frames(backend, head.into_iter().chain(it.skip(3)));
            }
        }
    }
}

/// A worker with no logic: READY, then every REQUEST back as a REPLY, HEARTBEAT for HEARTBEAT.
pub fn raw_mdp_echo(context: &zmq::Context, endpoint: &str, stop: &AtomicBool) {
    let socket = super::echo::raw_dealer(context, endpoint);
    let mut frames = Vec::with_capacity(8);
    while !stop.load(Ordering::Relaxed) {
        if socket.poll(zmq::POLLIN, 100).unwrap() == 0 {
            continue;
        }
        while recv_frames(&socket, &mut frames) {
            match frames.get(2).and_then(|c| c.first().copied()) {
                Some(2) => {
                    frames[2] = Message::from(&[3u8][..]);
                    send_frames(&socket, frames.drain(..));
                }
                Some(4) => send_frames(&socket, frames.drain(..)),
                _ => {}
            }
        }
    }
}

/// A DEALER client keeping a window of requests in flight.
pub struct Client {
    socket: zmq::Socket,
}

/// What a client run measured.
#[derive(Debug, Clone, Default)]
pub struct ClientRun {
    pub requests: u64,
    pub elapsed: Duration,
    /// Round-trip latency of each request, in microseconds, sorted.
    pub latencies_us: Vec<f64>,
}

impl ClientRun {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

impl Client {
    pub fn connect(context: &zmq::Context, endpoint: &str) -> Client {
        let socket = context.socket(zmq::DEALER).unwrap();
        socket.set_linger(0).unwrap();
        socket
            .set_rcvtimeo(super::WATCHDOG.as_millis() as i32)
            .unwrap();
        socket.connect(endpoint).unwrap();
        Client { socket }
    }

    /// Sends `count` requests of `size` bytes, at most `window` in flight at once.
    pub fn run(&mut self, count: u64, window: u64, size: usize) -> ClientRun {
        let mut body = vec![0u8; size.max(8)];
        let mut started = vec![None; count as usize];
        let mut latencies = Vec::with_capacity(count as usize);
        let mut frames = Vec::with_capacity(8);
        let begin = Instant::now();
        let (mut sent, mut received) = (0u64, 0u64);
        while received < count {
            while sent < count && sent - received < window {
                body[..8].copy_from_slice(&sent.to_le_bytes());
                started[sent as usize] = Some(Instant::now());
                let head = [&b""[..], b"MDPC01", SERVICE.as_bytes()];
                for part in head {
                    self.socket.send(part, zmq::SNDMORE).unwrap();
                }
                self.socket.send(&body[..], 0).unwrap();
                sent += 1;
            }
            frames.clear();
            loop {
                let mut frame = Message::new();
                self.socket
                    .recv(&mut frame, 0)
                    .expect("no reply within the watchdog");
                let more = frame.get_more();
                frames.push(frame);
                if !more {
                    break;
                }
            }
            let seq = frames
                .last()
                .and_then(|b| b.get(..8))
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .expect("reply body carries the sequence number");
            if let Some(at) = started.get_mut(seq as usize).and_then(Option::take) {
                latencies.push(at.elapsed().as_secs_f64() * 1e6);
                received += 1;
            }
        }
        let elapsed = begin.elapsed();
        latencies.sort_by(|a, b| a.total_cmp(b));
        ClientRun {
            requests: count,
            elapsed,
            latencies_us: latencies,
        }
    }
}
