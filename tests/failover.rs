//! Clients given two brokers fail over: two brokers on `tcp://127.0.0.1:*`, two echo workers
//! on each, clients with the list `a,b` under load, and broker `a` stopped part-way. Every
//! request must get its exact echo (nothing lost); the requests a worker ran twice (their
//! first reply was lost with the broker) are counted and printed, as is the longest request,
//! which bounds the failover time.
//!
//! ```text
//! cargo nextest run --all-features --test failover --no-capture   # prints the figures
//! ```

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{config, RunningWorker, WATCHDOG};
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::Message;

const REQUESTS: u64 = 600;
const CLIENTS: u64 = 4;
/// Each attempt's timeout: the time a request in flight at the stopped broker waits before
/// it goes to the other one.
const TIMEOUT: Duration = Duration::from_millis(200);
/// Workers per broker.
const WORKERS: usize = 2;

/// How many times each request body was run, over every worker.
type Runs = Arc<Mutex<HashMap<Vec<u8>, u32>>>;

fn broker() -> BrokerHandle {
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(Duration::from_millis(20))
        .liveness(3);
    Broker::bind(config).expect("bind").spawn().expect("spawn")
}

/// Echo workers on `broker` that count what they run.
fn workers(broker: &BrokerHandle, runs: &Runs) -> Vec<RunningWorker> {
    let workers = (0..WORKERS)
        .map(|_| {
            let runs = Arc::clone(runs);
            let echo = move |request: Vec<Message>| {
                let body = request.first().map(|f| f.to_vec()).unwrap_or_default();
                *runs.lock().unwrap().entry(body).or_default() += 1;
                request
            };
            RunningWorker::spawn(config(broker.endpoint(), "echo").liveness(3), echo)
        })
        .collect();
    wait_for("workers registered", || broker.stats().workers == WORKERS);
    workers
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WATCHDOG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The client configuration: both brokers, `a` first.
fn client_config(a: &BrokerHandle, b: &BrokerHandle) -> ClientConfig {
    ClientConfig::new(format!("{},{}", a.endpoint(), b.endpoint()))
        .timeout(TIMEOUT)
        .retries(5)
}

/// What the load saw: replies per id, and the longest request.
#[derive(Default)]
struct Tally {
    replies: Mutex<HashMap<u64, u32>>,
    longest: Mutex<Duration>,
    done: AtomicU64,
}

impl Tally {
    fn record(&self, id: u64, took: Duration) {
        *self.replies.lock().unwrap().entry(id).or_default() += 1;
        let mut longest = self.longest.lock().unwrap();
        *longest = (*longest).max(took);
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Stops broker `a` once a third of the load is done; checks and prints the outcome.
fn stop_a_mid_load(a: BrokerHandle, tally: &Tally, load: impl FnOnce() + Send) -> Duration {
    thread::scope(|scope| {
        let handle = scope.spawn(load);
        wait_for("a third of the load", || {
            tally.done.load(Ordering::Relaxed) >= REQUESTS / 3
        });
        let served_by_a = a.stop().expect("stop broker a").replies_routed;
        assert!(served_by_a > 0, "broker a served nothing before it stopped");
        handle.join().expect("load thread");
    });
    *tally.longest.lock().unwrap()
}

/// Nothing lost, no reply delivered twice; the number of requests run twice.
fn check(tally: &Tally, runs: &Runs) -> u64 {
    let replies = tally.replies.lock().unwrap();
    assert_eq!(replies.len() as u64, REQUESTS, "requests without a reply");
    assert!(replies.values().all(|n| *n == 1), "a reply came twice");
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len() as u64, REQUESTS, "bodies run");
    runs.values().map(|n| u64::from(n - 1)).sum()
}

fn body(id: u64) -> Vec<u8> {
    format!("request-{id:06}").into_bytes()
}

#[test]
fn sync_clients_with_two_brokers_lose_nothing_when_one_stops_mid_load() {
    let (a, b) = (broker(), broker());
    let runs = Runs::default();
    let (wa, wb) = (workers(&a, &runs), workers(&b, &runs));
    let config = client_config(&a, &b);
    let tally = Tally::default();
    let next = AtomicU64::new(0);
    let longest = stop_a_mid_load(a, &tally, || {
        thread::scope(|scope| {
            for _ in 0..CLIENTS {
                let mut client = Client::connect(config.clone()).expect("client");
                let (tally, next) = (&tally, &next);
                scope.spawn(move || loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= REQUESTS {
                        return;
                    }
                    let started = Instant::now();
                    let reply = client.request("echo", &[body(id)]).expect("reply");
                    assert_eq!(reply, [body(id)]);
                    tally.record(id, started.elapsed());
                });
            }
        });
    });
    let duplicates = check(&tally, &runs);
    let _ = writeln!(
        std::io::stderr(),
        "sync: {REQUESTS} requests, {CLIENTS} clients, timeout {TIMEOUT:?}: 0 lost, \
         {duplicates} run twice, longest request {longest:?}"
    );
    assert!(longest < TIMEOUT * 4, "failover took {longest:?}");
    for worker in wa.into_iter().chain(wb) {
        worker.stop();
    }
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_client_with_two_brokers_loses_nothing_when_one_stops_mid_load() {
    let (a, b) = (broker(), broker());
    let runs = Runs::default();
    let (wa, wb) = (workers(&a, &runs), workers(&b, &runs));
    let config = client_config(&a, &b);
    let tally = Arc::new(Tally::default());
    let load_tally = Arc::clone(&tally);
    let longest = stop_a_mid_load(a, &tally, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = majordomo_worker::AsyncClient::connect(config).expect("client");
            let next = Arc::new(AtomicU64::new(0));
            let lanes: Vec<_> = (0..CLIENTS * 4)
                .map(|_| {
                    let (client, next, tally) = (client.clone(), next.clone(), load_tally.clone());
                    tokio::spawn(async move {
                        loop {
                            let id = next.fetch_add(1, Ordering::Relaxed);
                            if id >= REQUESTS {
                                return;
                            }
                            let started = Instant::now();
                            let reply = client.request("echo", &[body(id)]).await;
                            assert_eq!(reply.expect("reply"), [body(id)]);
                            tally.record(id, started.elapsed());
                        }
                    })
                })
                .collect();
            for lane in lanes {
                lane.await.expect("lane");
            }
        });
    });
    let duplicates = check(&tally, &runs);
    let _ = writeln!(
        std::io::stderr(),
        "async: {REQUESTS} requests, {} in flight, timeout {TIMEOUT:?}: 0 lost, \
         {duplicates} run twice, longest request {longest:?}",
        CLIENTS * 4
    );
    assert!(longest < TIMEOUT * 4, "failover took {longest:?}");
    for worker in wa.into_iter().chain(wb) {
        worker.stop();
    }
}
