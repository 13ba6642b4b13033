//! How long a pool of N inline echo workers takes until our broker (tcp loopback) has
//! registered every one, and what it costs the pool's process: resident memory, CPU time,
//! threads and file descriptors. One line of figures per worker count. The broker runs in
//! a child process (this program, with `--broker-child`): a worker holds 9 descriptors and
//! the broker one more per worker, so 2 000 of both in one process would need 20 000.
//!
//! `cargo bench --bench pool_registration` (2 000 workers), or give the counts:
//! `cargo bench --bench pool_registration -- 100 1000 2000`. Add `--fds` to see what the file
//! descriptors are.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Message, WorkerConfig};
use support::proc;

/// Heartbeats as the scale test uses them.
const HEARTBEAT: Duration = Duration::from_millis(250);
const WATCHDOG: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--broker-child") {
        return broker_child();
    }
    let show_fds = args.iter().any(|a| a == "--fds");
    let mut counts: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if counts.is_empty() {
        counts.push(2_000);
    }
    println!("# {}", proc::machine());
    for workers in counts {
        measure(workers, show_fds);
    }
}

fn measure(workers: usize, show_fds: bool) {
    let pid = std::process::id();
    let broker = ChildBroker::spawn();
    let (rss_before, cpu_before, fds_before) =
        (proc::rss_kib(pid), proc::process_cpu_ns(pid), fds());
    let start = Instant::now();
    let worker = WorkerConfig::new(&broker.endpoint, "echo")
        .heartbeat(HEARTBEAT)
        .liveness(3);
    let echo = || |request: Vec<Message>| request;
    let pool = WorkerPool::builder()
        .service(PoolService::new(worker, workers, echo))
        .start()
        .expect("pool");
    let started = start.elapsed();
    while broker.workers.load(Ordering::Relaxed) < workers {
        assert!(start.elapsed() < WATCHDOG, "registration timed out");
        thread::sleep(Duration::from_millis(2));
    }
    let registered = start.elapsed();
    let cpu = proc::process_cpu_ns(pid).saturating_sub(cpu_before);
    let rss = proc::rss_kib(pid);
    let threads = proc::tasks(pid).len();
    let fds_after = fds();
    if show_fds {
        print_fd_kinds();
    }
    let reconnects = pool.stats().total.reconnects;
    let stop = Instant::now();
    pool.stop();
    let stopped = stop.elapsed();
    drop(broker);
    println!(
        "pool_registration workers={workers} start_ms={} registered_ms={} stop_ms={} cpu_ms={} \
         rss_mib={} rss_per_worker_kib={} threads={threads} fds_per_worker={:.1} reconnects={reconnects}",
        started.as_millis(),
        registered.as_millis(),
        stopped.as_millis(),
        cpu / 1_000_000,
        rss / 1024,
        rss.saturating_sub(rss_before) / workers as u64,
        fds_after.saturating_sub(fds_before) as f64 / workers as f64,
    );
}

fn fds() -> usize {
    fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// What the open descriptors are (eventfd, socket, eventpoll, ...), counted.
fn print_fd_kinds() {
    let mut kinds = BTreeMap::new();
    for entry in fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = fs::read_link(entry.path()).map_or("?".into(), |p| p.display().to_string());
        let kind = target.split(':').next().unwrap_or("?").to_string()
            + target.strip_prefix("anon_inode:").unwrap_or("");
        *kinds.entry(kind).or_insert(0usize) += 1;
    }
    println!("# fds: {kinds:?}");
}

/// The broker: prints its endpoint, then its count of known workers every 2 ms, until its
/// parent closes its stdin.
fn broker_child() {
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(HEARTBEAT)
        .liveness(3);
    let broker = Broker::bind(config).expect("bind").spawn().expect("broker");
    println!("endpoint {}", broker.endpoint());
    let gone = thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    });
    while !gone.is_finished() {
        println!("workers {}", broker.stats().workers);
        thread::sleep(Duration::from_millis(2));
    }
}

/// This program as the broker, in a process of its own.
struct ChildBroker {
    child: Child,
    endpoint: String,
    workers: Arc<AtomicUsize>,
}

impl ChildBroker {
    fn spawn() -> ChildBroker {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .arg("--broker-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the broker");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let endpoint = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("endpoint ").map(str::to_string))
            .expect("the broker's endpoint");
        let workers = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&workers);
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("workers ").and_then(|n| n.parse().ok()) {
                    count.store(n, Ordering::Relaxed);
                }
            }
        });
        ChildBroker {
            child,
            endpoint,
            workers,
        }
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
