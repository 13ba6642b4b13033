//! A test broker made of a plain ROUTER socket, and helpers to run a worker on a thread.
#![allow(dead_code)]

pub mod process;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::{
    Error, Message, Received, ShutdownHandle, Worker, WorkerAction, WorkerConfig, WorkerStats,
};

/// Longest any single wait in a test may take before the test fails instead of hanging.
pub const WATCHDOG: Duration = Duration::from_secs(10);

pub type Frames = Vec<Vec<u8>>;

pub const READY: u8 = 1;
pub const REQUEST: u8 = 2;
pub const REPLY: u8 = 3;
pub const HEARTBEAT: u8 = 4;
pub const DISCONNECT: u8 = 5;

/// A unique inproc endpoint name.
pub fn inproc(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "inproc://{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A ROUTER that plays the broker.
pub struct TestBroker {
    pub context: zmq::Context,
    pub router: zmq::Socket,
    pub endpoint: String,
}

impl TestBroker {
    /// Binds `tcp://127.0.0.1:*` in a context of its own.
    pub fn tcp() -> TestBroker {
        TestBroker::bind(zmq::Context::new(), "tcp://127.0.0.1:*")
    }

    /// Binds `endpoint` in `context`.
    pub fn bind(context: zmq::Context, endpoint: &str) -> TestBroker {
        let router = context.socket(zmq::ROUTER).expect("router");
        router.set_linger(0).expect("linger");
        router.bind(endpoint).expect("bind");
        let endpoint = router
            .get_last_endpoint()
            .expect("last endpoint")
            .expect("utf-8 endpoint");
        TestBroker {
            context,
            router,
            endpoint,
        }
    }

    /// The next message from any worker within `timeout`: (identity, frames after it).
    pub fn try_recv(&self, timeout: Duration) -> Option<(Vec<u8>, Frames)> {
        let ms = timeout.as_millis() as i64;
        if self.router.poll(zmq::POLLIN, ms).expect("poll") == 0 {
            return None;
        }
        let mut frames = self.router.recv_multipart(0).expect("recv");
        let identity = frames.remove(0);
        Some((identity, frames))
    }

    /// The next message, or a test failure after the watchdog.
    pub fn recv(&self) -> (Vec<u8>, Frames) {
        self.try_recv(WATCHDOG)
            .expect("no message from the worker within the watchdog")
    }

    /// The next message that is not a HEARTBEAT.
    pub fn recv_skipping_heartbeats(&self) -> (Vec<u8>, Frames) {
        loop {
            let (identity, frames) = self.recv();
            if !is_command(&frames, HEARTBEAT) {
                return (identity, frames);
            }
        }
    }

    /// Waits for READY, checks its exact layout, and returns the worker's identity.
    pub fn expect_ready(&self, service: &str) -> Vec<u8> {
        let (identity, frames) = self.recv();
        assert_eq!(
            frames,
            vec![
                b"".to_vec(),
                b"MDPW01".to_vec(),
                vec![READY],
                service.as_bytes().to_vec()
            ],
            "expected READY first"
        );
        identity
    }

    /// Sends raw frames to the worker `identity`.
    pub fn send(&self, identity: &[u8], frames: &[&[u8]]) {
        self.router
            .send(identity, zmq::SNDMORE)
            .expect("send identity");
        self.router.send_multipart(frames, 0).expect("send frames");
    }

    /// Sends a REQUEST with `envelope` and `body`.
    pub fn request(&self, identity: &[u8], envelope: &[&[u8]], body: &[&[u8]]) {
        let mut frames: Vec<&[u8]> = vec![b"", b"MDPW01", &[REQUEST]];
        frames.extend_from_slice(envelope);
        frames.push(b"");
        frames.extend_from_slice(body);
        self.send(identity, &frames);
    }

    /// Waits for the REPLY (skipping heartbeats) and returns (envelope, body).
    pub fn expect_reply(&self, identity: &[u8]) -> (Frames, Frames) {
        let (from, frames) = self.recv_skipping_heartbeats();
        assert_eq!(from, identity, "reply from another socket: {frames:?}");
        assert!(is_command(&frames, REPLY), "expected REPLY, got {frames:?}");
        let rest = &frames[3..];
        let delimiter = rest
            .iter()
            .position(Vec::is_empty)
            .expect("reply without delimiter");
        (rest[..delimiter].to_vec(), rest[delimiter + 1..].to_vec())
    }
}

/// Whether `frames` is a worker message with `command`.
pub fn is_command(frames: &Frames, command: u8) -> bool {
    frames.len() >= 3 && frames[0].is_empty() && frames[1] == b"MDPW01" && frames[2] == [command]
}

/// Fast settings for tests: 20 ms heartbeats; liveness long enough that a test broker which
/// never heartbeats is not dropped during a test, unless a test lowers it.
pub fn config(endpoint: &str, service: &str) -> WorkerConfig {
    init_logging();
    WorkerConfig::new(endpoint, service)
        .heartbeat(Duration::from_millis(20))
        .liveness(500)
        .reconnect(Duration::from_millis(10))
        .reconnect_max(Duration::from_millis(40))
        .linger(Duration::from_millis(200))
}

/// Logs to the test's output when `RUST_LOG` is set (`RUST_LOG=debug cargo test ...`).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A worker running `receive()` in a loop on its own thread.
pub struct RunningWorker {
    pub shutdown: ShutdownHandle,
    done: crossbeam_channel::Receiver<(Result<(), Error>, Vec<Received>, WorkerStats)>,
}

/// The I/O drivers over the one session: every test of the shared table runs on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Inline,
    Threaded,
    #[cfg(feature = "tokio")]
    Async,
}

/// Turns `fn name(driver: Driver)` test bodies into one `#[test]` per driver:
/// `inline::name`, `threaded::name` and (with the tokio feature) `tokio::name`.
#[macro_export]
macro_rules! for_each_driver {
    ($($name:ident),* $(,)?) => {
        mod inline {
            $(#[test] fn $name() { super::$name(super::common::Driver::Inline) })*
        }
        mod threaded {
            $(#[test] fn $name() { super::$name(super::common::Driver::Threaded) })*
        }
        #[cfg(feature = "tokio")]
        mod tokio {
            $(#[test] fn $name() { super::$name(super::common::Driver::Async) })*
        }
    };
}

impl RunningWorker {
    pub fn spawn<A: WorkerAction + Send + 'static>(config: WorkerConfig, action: A) -> Self {
        RunningWorker::start(Worker::new(config, action).expect("valid config"))
    }

    /// Runs `action` on `driver`. The async driver calls the (blocking, sync) test action
    /// through `spawn_blocking`, on a current-thread runtime of its own thread.
    pub fn spawn_with<A: WorkerAction + Send + 'static>(
        driver: Driver,
        config: WorkerConfig,
        action: A,
    ) -> Self {
        match driver {
            Driver::Inline => RunningWorker::spawn(config, action),
            Driver::Threaded => RunningWorker::spawn_threaded(config, action),
            #[cfg(feature = "tokio")]
            Driver::Async => RunningWorker::spawn_async(config, action),
        }
    }

    #[cfg(feature = "tokio")]
    fn spawn_async<A: WorkerAction + Send + 'static>(config: WorkerConfig, action: A) -> Self {
        use std::sync::{Arc, Mutex};
        let action = Arc::new(Mutex::new(action));
        let action = move |body: Vec<Message>| {
            let action = Arc::clone(&action);
            async move {
                let call = move || action.lock().unwrap_or_else(|e| e.into_inner()).call(body);
                match tokio::task::spawn_blocking(call).await {
                    Ok(reply) => reply,
                    Err(error) => std::panic::resume_unwind(error.into_panic()),
                }
            }
        };
        let worker = majordomo_worker::AsyncWorker::new(config, action).expect("valid config");
        let shutdown = worker.shutdown_handle();
        let (tx, done) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let result = runtime.block_on(worker.run());
            let (result, stats) = match result {
                Ok(summary) => (Ok(()), summary.total),
                Err(error) => (Err(error), WorkerStats::default()),
            };
            // What `receive()` would have returned: one Handled per reply, then ShutDown.
            let mut outcomes = vec![Received::Handled; stats.replies as usize];
            outcomes.push(Received::ShutDown);
            let _ = tx.send((result, outcomes, stats));
        });
        RunningWorker { shutdown, done }
    }

    /// Runs a worker with its action on a thread of its own.
    pub fn spawn_threaded<A: WorkerAction + Send + 'static>(
        config: WorkerConfig,
        action: A,
    ) -> Self {
        RunningWorker::start(Worker::threaded(config, action).expect("valid config"))
    }

    /// Runs `worker`'s receive loop on a thread.
    pub fn start<A: WorkerAction + Send + 'static>(mut worker: Worker<A>) -> Self {
        let shutdown = worker.shutdown_handle();
        let (tx, done) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            let mut outcomes = Vec::new();
            let result = loop {
                match worker.receive() {
                    Ok(Received::Handled) => outcomes.push(Received::Handled),
                    Ok(Received::ShutDown) => {
                        outcomes.push(Received::ShutDown);
                        break Ok(());
                    }
                    Err(e) => break Err(e),
                }
            };
            let stats = worker.stats();
            drop(worker);
            let _ = tx.send((result, outcomes, stats));
        });
        RunningWorker { shutdown, done }
    }

    /// Stops the worker and returns its outcomes and stats, failing after the watchdog.
    pub fn stop(self) -> (Vec<Received>, WorkerStats, Duration) {
        let asked = Instant::now();
        self.shutdown.shutdown();
        let (result, outcomes, stats) = self
            .done
            .recv_timeout(WATCHDOG)
            .expect("worker did not stop within the watchdog");
        result.expect("worker loop failed");
        (outcomes, stats, asked.elapsed())
    }
}

/// An echo action.
pub fn echo(request: Vec<Message>) -> Vec<Message> {
    request
}

pub fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}
