//! I/O-bound load: each request's action waits 100 ms (a timer for the async worker, a
//! sleeping thread for the sync pool), and the client keeps 1 000 requests in flight through
//! our broker. One worker process at a time: an `AsyncWorker` with `concurrency(1000)`
//! against a sync `WorkerPool` of 1 000 inline workers, in alternating rounds. Reports the
//! rate, the worker process's CPU per request, its OS threads and its RSS.
//!
//! ```text
//! cargo bench --features tokio --bench io_bound          # 3 rounds of 20 000 requests each
//! BENCH_QUICK=1 cargo bench --features tokio --bench io_bound
//! ```

#[path = "support/mod.rs"]
mod support;

use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Message, WorkerConfig};
use support::broker::Client;
use support::{proc, quick, SERVICE};

const IN_FLIGHT: usize = 1000;
const WORK: Duration = Duration::from_millis(100);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--role") {
        return child(&args[i + 1], &args[i + 3]);
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let (requests, rounds) = if quick() { (5_000, 1) } else { (20_000, 3) };
    println!("machine: {}", proc::machine());
    println!("load average at start: {:.2}", proc::load_average());
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*").max_queue(100_000))
        .expect("broker")
        .spawn()
        .expect("broker thread");
    let context = zmq::Context::new();
    println!(
        "\n## {IN_FLIGHT} in flight, each action waits {WORK:?}, {requests} requests a round, {rounds} alternating rounds\n"
    );
    println!("| worker | round | rate (req/s) | p50 (ms) | p99 (ms) | worker CPU/request (µs) | threads | RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|");
    for round in 1..=rounds {
        for role in ["async", "pool"] {
            measure(role, round, &broker, &context, requests);
        }
    }
    println!("\nload average at end: {:.2}", proc::load_average());
    let _ = broker.stop();
}

fn measure(
    role: &str,
    round: usize,
    broker: &majordomo_worker::broker::BrokerHandle,
    context: &zmq::Context,
    requests: u64,
) {
    let registered = broker.stats().workers;
    let mut child = spawn(role, broker.endpoint());
    let start = Instant::now();
    while broker.stats().workers < registered + IN_FLIGHT {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "registration stalled"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id();
    let mut client = Client::connect(context, broker.endpoint());
    client.run(IN_FLIGHT as u64, IN_FLIGHT as u64, 16); // warm-up: every worker once
    let (cpu, threads, rss) = (
        proc::process_cpu_ns(pid),
        proc::tasks(pid).len(),
        proc::rss_kib(pid),
    );
    let run = client.run(requests, IN_FLIGHT as u64, 16);
    let cpu = proc::process_cpu_ns(pid) - cpu;
    println!(
        "| {role} | {round} | {:.0} | {:.1} | {:.1} | {:.1} | {threads} | {} |",
        run.rate(),
        support::quantile(&run.latencies_us, 0.5) / 1e3,
        support::quantile(&run.latencies_us, 0.99) / 1e3,
        cpu as f64 / 1e3 / requests as f64,
        rss / 1024,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    // Let the broker forget them before the next worker registers.
    let start = Instant::now();
    while broker.stats().workers > registered && start.elapsed() < Duration::from_secs(30) {
        thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(role: &str, endpoint: &str) -> Child {
    Command::new(std::env::current_exe().expect("exe"))
        .args(["--role", role, "--endpoint", endpoint])
        .spawn()
        .expect("child")
}

/// A worker process: the async worker or the sync pool, until SIGTERM.
fn child(role: &str, endpoint: &str) {
    let config = WorkerConfig::new(endpoint, SERVICE);
    match role {
        "async" => run_async(config),
        _ => run_pool(config),
    }
}

#[cfg(feature = "tokio")]
fn run_async(config: WorkerConfig) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let action = |request: Vec<Message>| async move {
            tokio::time::sleep(WORK).await;
            request
        };
        let worker =
            majordomo_worker::AsyncWorker::new(config.concurrency(IN_FLIGHT), action).unwrap();
        worker
            .shutdown_handle()
            .shutdown_on_tokio_signals()
            .unwrap();
        worker.run().await.unwrap();
    });
}

#[cfg(not(feature = "tokio"))]
fn run_async(_: WorkerConfig) {
    panic!("the async worker needs --features tokio");
}

fn run_pool(config: WorkerConfig) {
    let action = || {
        |request: Vec<Message>| {
            thread::sleep(WORK);
            request
        }
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(config, IN_FLIGHT, action))
        .start()
        .unwrap();
    let _signals = pool.shutdown_handle().shutdown_on_signals().unwrap();
    pool.join();
}
