//! Idle cost at scale: a pool of idle workers at library defaults plus our broker
//! heartbeating them, all in this process; and how soon `shutdown()` reaches an idle worker.
//!
//! ```text
//! cargo bench --bench idle                         # 1 000 workers, 60 s measured
//! BENCH_QUICK=1 cargo bench --bench idle           # 1 000 workers, 15 s measured
//! BENCH_WORKERS=100 cargo bench --bench idle       # another pool size
//! ```
//!
//! CPU is read from `/proc/self/task/*/schedstat` (every thread: workers, broker, libzmq's I/O
//! threads), wake-ups from the threads' voluntary context switches.

#[path = "support/proc.rs"]
#[allow(dead_code)]
mod proc;

use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Message, Received, Worker, WorkerConfig};

const HEARTBEAT: Duration = Duration::from_millis(2500);
const WATCHDOG: Duration = Duration::from_secs(120);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and friends: nothing to list
    }
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seconds = if quick { 15 } else { 60 };
    println!("machine: {}", proc::machine());
    println!("load average at start: {:.2}", proc::load_average());
    idle_pool(workers, seconds);
    #[cfg(feature = "tokio")]
    idle_async(workers, seconds);
    shutdown_latency(if quick { 10 } else { 30 });
    println!("load average at end: {:.2}", proc::load_average());
}

fn idle_pool(workers: usize, seconds: u64) {
    let pid = std::process::id();
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("broker")
        .spawn()
        .expect("broker thread");
    let config = WorkerConfig::new(broker.endpoint(), "echo");
    let start = Instant::now();
    let pool = WorkerPool::builder()
        .service(PoolService::new(config, workers, || |r: Vec<Message>| r))
        .start()
        .expect("pool");
    while broker.stats().workers < workers {
        assert!(start.elapsed() < WATCHDOG, "registration stalled");
        thread::sleep(Duration::from_millis(10));
    }
    let registered = start.elapsed();
    thread::sleep(HEARTBEAT * 2); // settle: everyone heartbeats in its own rhythm
    let (cpu, switches) = (proc::process_cpu_ns(pid), proc::voluntary_switches(pid));
    let broker_tids = proc::tasks_named(pid, "mdp-broker");
    let broker_cpu = proc::threads_cpu_ns(pid, &broker_tids);
    thread::sleep(Duration::from_secs(seconds));
    let cpu = proc::process_cpu_ns(pid) - cpu;
    let switches = proc::voluntary_switches(pid) - switches;
    let broker_cpu = proc::threads_cpu_ns(pid, &broker_tids) - broker_cpu;
    let intervals = seconds as f64 / HEARTBEAT.as_secs_f64();
    println!("\n## {workers} idle workers and our broker in one process, {seconds} s\n");
    println!(
        "registered all {workers} in {registered:?}; RSS {} MiB",
        proc::rss_kib(pid) / 1024
    );
    println!(
        "CPU {:.1} ms = {:.2} % of a core (broker thread {:.2} %); {:.4} % per worker",
        cpu as f64 / 1e6,
        cpu as f64 / 1e7 / seconds as f64,
        broker_cpu as f64 / 1e7 / seconds as f64,
        cpu as f64 / 1e7 / seconds as f64 / workers as f64,
    );
    println!(
        "{switches} voluntary context switches: {:.2} per worker per heartbeat interval \
         (all threads, the broker's included)",
        switches as f64 / workers as f64 / intervals
    );
    let summary = pool.stop();
    println!("pool stopped: {} workers", summary.workers.len());
    let _ = broker.stop();
}

/// The same with an `AsyncWorker` of `workers` registrations on a 2-thread runtime.
#[cfg(feature = "tokio")]
fn idle_async(workers: usize, seconds: u64) {
    let pid = std::process::id();
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("broker")
        .spawn()
        .expect("broker thread");
    let config = WorkerConfig::new(broker.endpoint(), "echo").concurrency(workers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let worker = majordomo_worker::AsyncWorker::new(config, |r: Vec<Message>| async move { r })
        .expect("worker");
    let stop = worker.shutdown_handle();
    let start = Instant::now();
    let run = runtime.spawn(worker.run());
    while broker.stats().workers < workers {
        assert!(start.elapsed() < WATCHDOG, "registration stalled");
        thread::sleep(Duration::from_millis(10));
    }
    let registered = start.elapsed();
    thread::sleep(HEARTBEAT * 2);
    let (cpu, switches) = (proc::process_cpu_ns(pid), proc::voluntary_switches(pid));
    thread::sleep(Duration::from_secs(seconds));
    let cpu = proc::process_cpu_ns(pid) - cpu;
    let switches = proc::voluntary_switches(pid) - switches;
    let intervals = seconds as f64 / HEARTBEAT.as_secs_f64();
    println!("\n## AsyncWorker with {workers} idle registrations and our broker, {seconds} s\n");
    println!(
        "registered all {workers} in {registered:?}; RSS {} MiB; {} threads",
        proc::rss_kib(pid) / 1024,
        proc::tasks(pid).len()
    );
    println!(
        "CPU {:.1} ms = {:.2} % of a core; {:.2} voluntary switches per registration per heartbeat interval",
        cpu as f64 / 1e6,
        cpu as f64 / 1e7 / seconds as f64,
        switches as f64 / workers as f64 / intervals
    );
    stop.shutdown();
    let summary = runtime.block_on(run).expect("join").expect("run");
    println!("stopped: {} registrations", summary.workers.len());
    let _ = broker.stop();
}

/// Time from `shutdown()` to `receive()` returning, for an idle worker at library defaults.
fn shutdown_latency(rounds: usize) {
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("broker")
        .spawn()
        .expect("broker thread");
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let config = WorkerConfig::new(broker.endpoint(), "echo");
        let mut worker = Worker::new(config, |r: Vec<Message>| r).expect("worker");
        let stop = worker.shutdown_handle();
        let runner = thread::spawn(move || {
            let received = worker.receive();
            (Instant::now(), received.map_err(|e| e.to_string()))
        });
        thread::sleep(Duration::from_millis(200)); // registered, idle in its wait
        let asked = Instant::now();
        stop.shutdown();
        let (returned, received) = runner.join().expect("worker thread");
        assert_eq!(received, Ok(Received::ShutDown));
        samples.push(returned.duration_since(asked));
    }
    samples.sort();
    println!("\n## shutdown() to receive() returning, idle worker, {rounds} rounds\n");
    println!(
        "median {:?}, max {:?} (the reply-less stop: DISCONNECT sent, socket closed)",
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    let _ = broker.stop();
}
