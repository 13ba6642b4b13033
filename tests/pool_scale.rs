//! A pool of thousands of workers in one process, against our own broker (in a process of
//! its own), and the limits a pool cannot get past (a given context's sockets).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Message, WorkerConfig};

/// The tests of this file run one at a time even under `cargo test` (nextest runs each in
/// a process of its own): 2 000 workers take 18 000 of the process's 20 000 descriptors.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const WORKERS: usize = 2_000;
/// Long enough for 2 000 workers to connect on a busy 2-core machine; the test fails
/// instead of hanging.
const REGISTRATION_WATCHDOG: Duration = Duration::from_secs(60);
/// Short heartbeats, yet not so short that 2 000 idle workers keep two cores busy with
/// them (the broker sends one per idle worker per beat, and each worker one back).
const HEARTBEAT: Duration = Duration::from_millis(500);

fn echo_factory() -> fn(Vec<Message>) -> Vec<Message> {
    |request| request
}

fn worker_config(endpoint: &str) -> WorkerConfig {
    common::init_logging();
    WorkerConfig::new(endpoint, "echo")
        .heartbeat(HEARTBEAT)
        .liveness(3)
        .reconnect(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(500))
}

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Our broker (the `broker` example) in a process of its own. A worker holds 9 file
/// descriptors (see `FDS_PER_WORKER` in src/drivers/pool/plan.rs) and a broker one more per worker:
/// 2 000 of each in one process need 20 000, a common hard limit (this machine's), which a
/// process without CAP_SYS_RESOURCE cannot raise. Its log tells what its stats would.
struct ChildBroker {
    child: Child,
    endpoint: String,
    /// Workers known now: READYs registered, less those that left or expired.
    workers: Arc<AtomicI64>,
    stopped: Arc<Mutex<Option<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl ChildBroker {
    fn spawn() -> ChildBroker {
        let mut child = Command::new(common::process::example_binary("broker"))
            .args([
                "--bind",
                "tcp://127.0.0.1:*",
                "--liveness",
                "3",
                "--heartbeat-ms",
            ])
            .arg(HEARTBEAT.as_millis().to_string())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the broker example");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let endpoint = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("broker listening on ").map(str::to_string))
            .expect("the broker's endpoint");
        let (workers, stopped) = (Arc::new(AtomicI64::new(0)), Arc::new(Mutex::new(None)));
        let (count, last) = (Arc::clone(&workers), Arc::clone(&stopped));
        let reader = thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("worker registered") {
                    count.fetch_add(1, Ordering::Relaxed);
                } else if line.contains("worker disconnected") || line.contains("worker expired") {
                    count.fetch_sub(1, Ordering::Relaxed);
                } else if let Some(stats) = line.strip_prefix("broker stopped: ") {
                    *last.lock().unwrap() = Some(stats.to_string());
                }
            }
        });
        ChildBroker {
            child,
            endpoint,
            workers,
            stopped,
            reader: Some(reader),
        }
    }

    fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed).max(0) as usize
    }

    /// SIGTERM, then the stats it printed on the way out.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "the broker did not stop");
            thread::sleep(Duration::from_millis(5));
        }
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader");
        }
        let stats = self.stopped.lock().unwrap().take();
        stats.expect("the broker's final stats")
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `name: number` field of a `BrokerStats` debug line.
fn stat(stats: &str, name: &str) -> Option<u64> {
    let start = stats.find(&format!("{name}: "))? + name.len() + 2;
    let digits: String = stats[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn a_pool_of_two_thousand_workers_registers_every_one_with_our_broker() {
    let _serial = serial();
    let broker = ChildBroker::spawn();
    let start = Instant::now();
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            worker_config(&broker.endpoint),
            WORKERS,
            echo_factory,
        ))
        .start()
        .unwrap();
    assert_eq!(pool.len(), WORKERS);
    while broker.workers() < WORKERS {
        assert!(
            start.elapsed() < REGISTRATION_WATCHDOG,
            "only {} of {WORKERS} workers registered after {:?}: pool {:?}",
            broker.workers(),
            start.elapsed(),
            pool.stats().total
        );
        thread::sleep(Duration::from_millis(10));
    }
    let registered = start.elapsed();
    println!(
        "pool_scale: {WORKERS} workers registered in {} ms, RSS {} MiB",
        registered.as_millis(),
        rss_kib() / 1024
    );
    let mut client = Client::connect(
        ClientConfig::new(&broker.endpoint)
            .timeout(Duration::from_secs(5))
            .retries(0),
    )
    .unwrap();
    for i in 0..20 {
        let body = format!("m{i}");
        assert_eq!(
            client.request("echo", &[body.as_str()]).unwrap(),
            vec![body.into_bytes()]
        );
    }
    let summary = pool.stop();
    assert_eq!(summary.workers.len(), WORKERS);
    assert_eq!(summary.total.replies, 20);
    assert_eq!(summary.restarts, 0);
    assert!(summary.workers.iter().all(|(id, _)| id.is_some()));
    let stats = broker.stop();
    // Every worker registered once; a worker that heard nothing for `heartbeat × liveness`
    // while 2 000 READYs queued up at the broker (seen on a machine loaded by other builds)
    // reconnects and registers again, and says so in its own counters.
    let registered = stat(&stats, "workers_registered").unwrap_or(0);
    assert!(
        (WORKERS as u64..=WORKERS as u64 + summary.total.reconnects).contains(&registered),
        "{stats} {:?}",
        summary.total
    );
    assert_eq!(stat(&stats, "workers_expired"), Some(0), "{stats}");
}

#[test]
fn a_given_context_with_more_workers_than_its_sockets_is_refused_at_start() {
    let _serial = serial();
    let context = zmq::Context::new();
    let err = WorkerPool::builder()
        .context(context)
        .service(PoolService::new(
            worker_config("inproc://pool-scale-refused"),
            400,
            echo_factory,
        ))
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "count = 400 workers on one given zmq context (1200 sockets) is invalid: \
         a zmq context allows 1023 sockets (ZMQ_MAX_SOCKETS) and each worker takes 3, one more worker \
         per recycling service: leave the context to the pool, which makes as many as it needs, or \
         run fewer workers"
    );
}

#[test]
fn a_given_context_fits_341_workers() {
    let _serial = serial();
    let context = zmq::Context::new();
    let endpoint = "inproc://pool-scale-341";
    let router = context.socket(zmq::ROUTER).unwrap();
    router.bind(endpoint).unwrap();
    let pool = WorkerPool::builder()
        .context(context.clone())
        .service(PoolService::new(worker_config(endpoint), 340, echo_factory))
        .start()
        .unwrap();
    // 340 workers (1020 sockets) and the test's ROUTER: every socket of the context in use.
    let mut readies = 0;
    let start = Instant::now();
    while readies < 340 {
        assert!(start.elapsed() < REGISTRATION_WATCHDOG, "{readies} READYs");
        if router.poll(zmq::POLLIN, 100).unwrap() > 0 {
            let frames = router.recv_multipart(0).unwrap();
            readies += usize::from(frames.get(3) == Some(&vec![1u8]));
        }
    }
    pool.stop();
}
