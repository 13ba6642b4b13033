//! Broker churn: hundreds of broker lives in a row on one endpoint, at 100 ms heartbeats, and
//! a worker that must serve every one of them. Each driver is run: the inline worker in this
//! process and in a process of its own (the `echo_worker` example), the threaded worker, the
//! pool and the async worker; and once more with a broker process SIGKILLed at the end of each
//! life instead of stopped.
//!
//! A wedged worker shows as a life whose first request gets no answer: the test fails there,
//! naming the life. Each run prints how long the worker took to serve again after the broker
//! came back (BENCHMARKS.md, "Broker churn").
//!
//! `CHURN_LIVES` sets the number of lives (default 500).

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::process::{example_binary, ChildWorker};
use common::{Driver, RunningWorker};
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Message, WorkerConfig};

const HEARTBEAT: Duration = Duration::from_millis(100);
const RECONNECT: Duration = Duration::from_millis(20);
const REQUESTS_PER_LIFE: usize = 5;
/// How long one request may wait for the worker to be back before the life counts as wedged:
/// many times the reconnect delay and the broker's liveness window.
const WEDGED_AFTER: Duration = Duration::from_secs(5);

fn lives() -> usize {
    std::env::var("CHURN_LIVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn broker_config(endpoint: &str) -> BrokerConfig {
    BrokerConfig::new(endpoint)
        .heartbeat(HEARTBEAT)
        .liveness(3)
        .linger(Duration::ZERO)
}

fn worker_config(endpoint: &str, service: &str) -> WorkerConfig {
    common::init_logging();
    WorkerConfig::new(endpoint, service)
        .heartbeat(HEARTBEAT)
        .liveness(3)
        .reconnect(RECONNECT)
        .reconnect_max(Duration::from_millis(200))
        .linger(Duration::from_millis(100))
}

/// A free loopback endpoint, found by binding a wildcard port once.
fn free_endpoint() -> String {
    let broker = Broker::bind(broker_config("tcp://127.0.0.1:*")).expect("bind");
    let endpoint = broker.endpoint().to_string();
    drop(broker);
    endpoint
}

/// Binds `endpoint` again; the port was ours a moment ago, so a refusal is retried briefly.
fn bind_again(endpoint: &str) -> BrokerHandle {
    let start = Instant::now();
    loop {
        match Broker::bind(broker_config(endpoint)) {
            Ok(broker) => return broker.spawn().expect("spawn broker"),
            Err(error) if start.elapsed() < Duration::from_secs(5) => {
                let _ = error;
                thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("cannot bind {endpoint} again: {error}"),
        }
    }
}

/// Sends [`REQUESTS_PER_LIFE`] requests through the broker at `endpoint`, each answered with
/// its own body; returns how long the first answer took (the worker's way back), or which
/// request got no answer: the worker is wedged.
fn serve_one_life(endpoint: &str, service: &str, life: usize) -> Result<Duration, String> {
    let config = ClientConfig::new(endpoint).timeout(WEDGED_AFTER).retries(0);
    let mut client = Client::connect(config).expect("client");
    let start = Instant::now();
    let mut back = None;
    for i in 0..REQUESTS_PER_LIFE {
        let body = format!("life {life} request {i}");
        let reply = client
            .request(service, &[body.as_str()])
            .map_err(|e| format!("life {life}, request {i}: no answer ({e}): wedged"))?;
        assert_eq!(reply, vec![body.into_bytes()], "life {life}, request {i}");
        back.get_or_insert(start.elapsed());
    }
    Ok(back.unwrap_or_default())
}

/// How long each life waited for its first answer.
struct Figures(Vec<Duration>);

impl Figures {
    fn print(mut self, name: &str) {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() - 1) as f64 * q) as usize];
        println!(
            "churn {name}: {} lives, first answer after a restart: median {:?}, p90 {:?}, max {:?} \
             (reconnect {RECONNECT:?}, heartbeat {HEARTBEAT:?})",
            self.0.len(),
            at(0.5),
            at(0.9),
            at(1.0),
        );
    }
}

/// Runs every life with our broker in this process, stopped (DISCONNECT to its workers) at
/// the end of each.
fn churn_stopped(name: &str, endpoint: &str, service: &str) -> Result<(), String> {
    let mut figures = Vec::new();
    for life in 0..lives() {
        let broker = bind_again(endpoint);
        figures.push(serve_one_life(endpoint, service, life)?);
        broker.stop().expect("broker stops");
    }
    Figures(figures).print(name);
    Ok(())
}

fn echo(request: Vec<Message>) -> Vec<Message> {
    request
}

fn churn_driver(driver: Driver, name: &str) {
    let endpoint = free_endpoint();
    let service = format!("churn-{name}");
    let worker = RunningWorker::spawn_with(driver, worker_config(&endpoint, &service), echo);
    churn_stopped(name, &endpoint, &service).unwrap_or_else(|e| panic!("{e}"));
    let _ = worker.stop();
}

#[test]
fn an_inline_worker_serves_every_one_of_500_broker_lives() {
    churn_driver(Driver::Inline, "inline");
}

#[test]
fn a_threaded_worker_serves_every_one_of_500_broker_lives() {
    churn_driver(Driver::Threaded, "threaded");
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_worker_serves_every_one_of_500_broker_lives() {
    churn_driver(Driver::Async, "async");
}

#[test]
fn a_pool_serves_every_one_of_500_broker_lives() {
    let endpoint = free_endpoint();
    let service = "churn-pool";
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            worker_config(&endpoint, service),
            2,
            || echo as fn(Vec<Message>) -> Vec<Message>,
        ))
        .start()
        .expect("pool starts");
    churn_stopped("pool", &endpoint, service).unwrap_or_else(|e| panic!("{e}"));
    pool.shutdown_handle().shutdown();
    let summary = pool.join();
    assert!(summary.total.replies >= (lives() * REQUESTS_PER_LIFE) as u64);
}

/// The `echo_worker` example's flags for this test's timings.
fn child_worker_args(endpoint: &str, service: &str) -> Vec<String> {
    [
        "--broker",
        endpoint,
        "--service",
        service,
        "--heartbeat-ms",
        &HEARTBEAT.as_millis().to_string(),
        "--liveness",
        "3",
        "--reconnect-ms",
        &RECONNECT.as_millis().to_string(),
        "--reconnect-max-ms",
        "200",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_worker_process_serves_every_one_of_500_broker_lives() {
    let endpoint = free_endpoint();
    let service = "churn-process";
    let mut worker = ChildWorker::spawn(&child_worker_args(&endpoint, service));
    if let Err(wedged) = churn_stopped("process", &endpoint, service) {
        panic!("{wedged}\n{}", diagnose(&worker));
    }
    assert!(
        worker.wait_timeout(Duration::ZERO).is_none(),
        "the worker process died: {:?}",
        worker.log_tail()
    );
    worker.signal("TERM");
    let status = worker.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {:?}",
        worker.log_tail()
    );
}

/// Waits until something accepts TCP connections at `endpoint` (`tcp://HOST:PORT`).
fn wait_listening(endpoint: &str) {
    let address = endpoint.trim_start_matches("tcp://");
    let start = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            start.elapsed() < WEDGED_AFTER,
            "nothing listens at {endpoint}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// What a wedged worker process was doing: its last log lines, and its threads' stacks where
/// gdb is installed.
fn diagnose(worker: &ChildWorker) -> String {
    let stacks = Command::new("gdb")
        .args([
            "-p",
            &worker.pid().to_string(),
            "-batch",
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_else(|e| format!("(no gdb: {e})"));
    format!(
        "worker log:\n{}\nworker threads:\n{stacks}",
        worker.log_tail().join("\n")
    )
}

/// A broker process (the `broker` example) that is SIGKILLed when dropped.
struct BrokerProcess(Child);

impl BrokerProcess {
    fn spawn(binary: &std::path::Path, endpoint: &str) -> BrokerProcess {
        let child = Command::new(binary)
            .args(["--bind", endpoint, "--heartbeat-ms"])
            .arg(HEARTBEAT.as_millis().to_string())
            .args(["--liveness", "3"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the broker example");
        BrokerProcess(child)
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_worker_process_serves_every_one_of_500_lives_of_a_sigkilled_broker() {
    let broker_binary = example_binary("broker");
    let endpoint = free_endpoint();
    let service = "churn-killed";
    let mut worker = ChildWorker::spawn(&child_worker_args(&endpoint, service));
    let mut figures = Vec::new();
    for life in 0..lives() {
        let broker = BrokerProcess::spawn(&broker_binary, &endpoint);
        // Timed from when the new broker listens: a client connecting before would wait
        // libzmq's 100 ms retry of its own, which says nothing about the worker.
        wait_listening(&endpoint);
        match serve_one_life(&endpoint, service, life) {
            Ok(back) => figures.push(back),
            Err(wedged) => panic!("{wedged}\n{}", diagnose(&worker)),
        }
        broker.kill();
    }
    Figures(figures).print("sigkilled broker");
    assert!(
        worker.wait_timeout(Duration::ZERO).is_none(),
        "the worker process died: {:?}",
        worker.log_tail()
    );
    worker.kill();
}
