//! The echo peers compared in the lockstep benchmarks. Each one answers the driver's REQUEST
//! frames; all but the worker re-send what they received with no protocol logic at all.

use std::time::Duration;

use majordomo_worker::{Message, ShutdownHandle, Worker, WorkerConfig};

use super::SERVICE;

/// Which echo peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The ceiling: a DEALER that re-sends the `zmq::Message`s it received, frame for frame.
    Raw,
    /// The same echo through `recv_multipart`/`send_multipart`: every frame copied into a
    /// `Vec<u8>` and handed back to ZeroMQ.
    RawCopy,
    /// Our worker, `Worker::new` with the action `|request| request`.
    Worker,
    /// Our worker, `Worker::threaded`: the action on a thread of its own.
    Threaded,
    /// `Worker::new` under a `tracing-subscriber` fmt subscriber at level WARN, as a
    /// service that logs warnings runs it: the worker's span and its debug/trace events are
    /// off. Measures what tracing costs when its level is off.
    WorkerTracing,
    /// `Worker::new` from another build of this benchmark (`BENCH_BASELINE_EXE`): the worker
    /// before a change, measured in the same alternating rounds as after it.
    Baseline,
    /// `AsyncWorker` with concurrency 1 on a current-thread tokio runtime, the action
    /// `|request| async move { request }` (built with `--features tokio` only).
    Async,
    /// `Worker::new` with `Metrics` attached: the cost of recording (built with `--features
    /// metrics` only).
    WorkerMetrics,
}

impl Mode {
    pub const ALL: &'static [Mode] = &[
        Mode::Raw,
        Mode::RawCopy,
        Mode::Worker,
        Mode::Threaded,
        Mode::WorkerTracing,
        #[cfg(feature = "tokio")]
        Mode::Async,
        #[cfg(feature = "metrics")]
        Mode::WorkerMetrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::RawCopy => "raw-copy",
            Mode::Worker => "worker",
            Mode::Threaded => "threaded",
            Mode::WorkerTracing => "worker-tracing-warn",
            Mode::Baseline => "worker-baseline",
            Mode::Async => "async",
            Mode::WorkerMetrics => "worker-metrics",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.iter().copied().find(|m| m.name() == name)
    }
}

/// Runs the echo peer `mode` against the driver at `endpoint` until stopped: a raw peer by
/// a one-frame STOP, a worker by `shutdown` (when given) or by the process ending.
pub fn run(mode: Mode, context: &zmq::Context, endpoint: &str, shutdown: Option<ShutdownHandle>) {
    match mode {
        Mode::Raw => raw_echo(context, endpoint),
        Mode::Baseline => panic!("the baseline runs from BENCH_BASELINE_EXE as --role worker"),
        Mode::RawCopy => raw_copy_echo(context, endpoint),
        Mode::Async => async_echo(context, endpoint, shutdown),
        Mode::WorkerMetrics => metrics_echo(context, endpoint, shutdown),
        Mode::Worker | Mode::Threaded | Mode::WorkerTracing => {
            // Thread-local, so that in-process peers keep no subscriber.
            let _subscriber = (mode == Mode::WorkerTracing).then(|| {
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::WARN)
                    .with_writer(std::io::stderr)
                    .finish();
                tracing::subscriber::set_default(subscriber)
            });
            let mut config = worker_config(endpoint).context(context.clone());
            if let Some(shutdown) = shutdown {
                config = config.shutdown_handle(shutdown);
            }
            let echo = |request: Vec<Message>| request;
            let mut worker = if mode == Mode::Threaded {
                Worker::threaded(config, echo).unwrap()
            } else {
                Worker::new(config, echo).unwrap()
            };
            worker.run().unwrap();
        }
    }
}

#[cfg(feature = "metrics")]
fn metrics_echo(context: &zmq::Context, endpoint: &str, shutdown: Option<ShutdownHandle>) {
    let metrics = majordomo_worker::metrics::Metrics::new();
    let mut config = worker_config(endpoint)
        .context(context.clone())
        .metrics(&metrics);
    if let Some(shutdown) = shutdown {
        config = config.shutdown_handle(shutdown);
    }
    Worker::new(config, |request: Vec<Message>| request)
        .unwrap()
        .run()
        .unwrap();
}

#[cfg(not(feature = "metrics"))]
fn metrics_echo(_: &zmq::Context, _: &str, _: Option<ShutdownHandle>) {
    panic!("the metrics peer needs --features metrics");
}

#[cfg(feature = "tokio")]
fn async_echo(context: &zmq::Context, endpoint: &str, shutdown: Option<ShutdownHandle>) {
    let mut config = worker_config(endpoint).context(context.clone());
    if let Some(shutdown) = shutdown {
        config = config.shutdown_handle(shutdown);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let worker =
        majordomo_worker::AsyncWorker::new(config, |request: Vec<Message>| async move { request })
            .unwrap();
    runtime.block_on(worker.run()).unwrap();
}

#[cfg(not(feature = "tokio"))]
fn async_echo(_: &zmq::Context, _: &str, _: Option<ShutdownHandle>) {
    panic!("the async peer needs --features tokio");
}

/// The worker's config in the lockstep benchmarks: library defaults, except a liveness so
/// long that the worker never gives up on a driver busy with another peer's round.
pub fn worker_config(endpoint: &str) -> WorkerConfig {
    WorkerConfig::new(endpoint, SERVICE)
        .liveness(100_000)
        .linger(Duration::ZERO)
}

/// A DEALER connected to `endpoint` that has sent a READY for [`SERVICE`].
pub fn raw_dealer(context: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.connect(endpoint).unwrap();
    // A READY-shaped hello, so that the driver learns the identity the same way for all.
    socket
        .send_multipart([&b""[..], b"MDPW01", &[1u8], SERVICE.as_bytes()], 0)
        .unwrap();
    socket
}

fn raw_echo(context: &zmq::Context, endpoint: &str) {
    let socket = raw_dealer(context, endpoint);
    let mut frames: Vec<Message> = Vec::with_capacity(8);
    loop {
        loop {
            let mut frame = Message::new();
            if socket.recv(&mut frame, 0).is_err() {
                return;
            }
            let more = frame.get_more();
            frames.push(frame);
            if !more {
                break;
            }
        }
        if frames.len() == 1 {
            return; // STOP
        }
        let last = frames.len() - 1;
        for (i, frame) in frames.drain(..).enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            socket.send(frame, flags).unwrap();
        }
    }
}

fn raw_copy_echo(context: &zmq::Context, endpoint: &str) {
    let socket = raw_dealer(context, endpoint);
    loop {
        let Ok(frames) = socket.recv_multipart(0) else {
            return;
        };
        if frames.len() == 1 {
            return; // STOP
        }
        socket.send_multipart(frames, 0).unwrap();
    }
}
