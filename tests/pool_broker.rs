//! The pool through our own broker and client: the whole stack as a user runs it.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{config, WATCHDOG};
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::Message;

fn broker() -> BrokerHandle {
    broker_with_liveness(3)
}

fn broker_with_liveness(liveness: u32) -> BrokerHandle {
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(Duration::from_millis(20))
        .liveness(liveness);
    Broker::bind(config).unwrap().spawn().unwrap()
}

fn client(broker: &BrokerHandle) -> Client {
    let config = ClientConfig::new(broker.endpoint())
        .timeout(Duration::from_secs(2))
        .retries(0);
    Client::connect(config).unwrap()
}

/// Worker config for the pool: heartbeats matching the broker's, a real liveness window.
fn worker_config(broker: &BrokerHandle, service: &str) -> majordomo_worker::WorkerConfig {
    config(broker.endpoint(), service).liveness(3)
}

/// Waits until `check` holds, failing after the watchdog.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WATCHDOG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

fn echo_factory() -> fn(Vec<Message>) -> Vec<Message> {
    |request| request
}

#[test]
fn a_pool_of_four_on_two_services_serves_through_our_broker_and_leaves_cleanly() {
    let broker = broker();
    let upper = || {
        |request: Vec<Message>| {
            request
                .iter()
                .map(|f| Message::from(f.to_ascii_uppercase()))
                .collect::<Vec<_>>()
        }
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            worker_config(&broker, "echo"),
            3,
            echo_factory,
        ))
        .service(PoolService::new(worker_config(&broker, "upper"), 1, upper).threaded(true))
        .start()
        .unwrap();
    wait_for("4 registered workers", || broker.stats().workers == 4);
    let mut client = client(&broker);
    assert!(client.has_service("echo").unwrap());
    assert!(client.has_service("upper").unwrap());
    for i in 0..20 {
        let body = format!("m{i}");
        assert_eq!(
            client.request("echo", &[body.as_str()]).unwrap(),
            vec![body.into_bytes()]
        );
    }
    assert_eq!(
        client.request("upper", &["abc"]).unwrap(),
        vec![b"ABC".to_vec()]
    );
    let summary = pool.stop();
    assert_eq!(summary.total.replies, 21);
    // DISCONNECT, not expiry, removed them: the broker forgets them at once.
    wait_for("no registered worker", || broker.stats().workers == 0);
    assert_eq!(broker.stats().workers_expired, 0);
}

#[test]
fn a_panicking_action_gets_the_client_an_answer_and_the_pool_serves_on() {
    // A window of 200 ms, not 60: with RUST_BACKTRACE set, the panic hook symbolizes a
    // backtrace of a debug build, and on a loaded machine the heartbeats around it have been
    // seen to fall more than 60 ms apart, so the broker expired the busy worker and dropped
    // its panic reply (as it should: what this test checks is the reply, not the timing).
    let broker = broker_with_liveness(10);
    let factory = || {
        |request: Vec<Message>| {
            assert_ne!(&request[0][..], b"boom", "asked to explode");
            request
        }
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            worker_config(&broker, "fragile").liveness(10),
            1,
            factory,
        ))
        .start()
        .unwrap();
    let mut client = client(&broker);
    wait_for("a registered worker", || broker.stats().workers == 1);
    assert_eq!(
        client.request("fragile", &["boom"]).unwrap(),
        vec![b"error: worker action panicked".to_vec()]
    );
    assert_eq!(
        client.request("fragile", &["ok"]).unwrap(),
        vec![b"ok".to_vec()]
    );
    let summary = pool.stop();
    assert_eq!(summary.total.panics, 1);
}

#[test]
fn drain_takes_the_service_away_and_resume_brings_it_back() {
    let broker = broker();
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            worker_config(&broker, "echo"),
            2,
            echo_factory,
        ))
        .start()
        .unwrap();
    let mut client = client(&broker);
    wait_for("2 registered workers", || broker.stats().workers == 2);
    pool.drain();
    wait_for("the drain", || broker.stats().workers == 0);
    assert!(!client.has_service("echo").unwrap());
    pool.resume();
    wait_for("re-registration", || broker.stats().workers == 2);
    assert_eq!(
        client.request("echo", &["back"]).unwrap(),
        vec![b"back".to_vec()]
    );
    pool.stop();
}

#[test]
fn recycling_leaves_no_moment_without_a_worker() {
    let broker = broker();
    let pool = WorkerPool::builder()
        .service(
            PoolService::new(worker_config(&broker, "echo"), 1, echo_factory)
                .recycle_after_requests(3),
        )
        .start()
        .unwrap();
    let mut client = client(&broker);
    wait_for("a registered worker", || broker.stats().workers == 1);
    // No retries: a single request finding no worker, or stranded with a leaving one,
    // would time out and fail the test.
    for i in 0..30 {
        let body = format!("r{i}");
        let reply = client.request("echo", &[body.as_str()]);
        assert_eq!(reply.unwrap(), vec![body.into_bytes()], "request {i}");
    }
    let summary = pool.stop();
    assert!(summary.recycles >= 5, "only {} recycles", summary.recycles);
    assert_eq!(summary.total.replies, 30);
}

#[test]
fn a_request_of_five_liveness_windows_completes_without_reconnect_or_expiry() {
    let broker = broker();
    // Liveness window: 3 x 20 ms = 60 ms; the request takes 300 ms.
    let factory = || {
        |request: Vec<Message>| {
            thread::sleep(Duration::from_millis(300));
            request
        }
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(worker_config(&broker, "slow"), 1, factory).threaded(true))
        .start()
        .unwrap();
    let mut client = client(&broker);
    wait_for("a registered worker", || broker.stats().workers == 1);
    let heartbeats_before = pool.stats().total.heartbeats_sent;
    assert_eq!(
        client.request("slow", &["long"]).unwrap(),
        vec![b"long".to_vec()]
    );
    let stats = pool.stats().total;
    assert!(
        stats.heartbeats_sent - heartbeats_before >= 5,
        "heartbeats went on during the request"
    );
    assert_eq!(
        client.request("slow", &["again"]).unwrap(),
        vec![b"again".to_vec()]
    );
    let summary = pool.stop();
    assert_eq!(summary.total.reconnects, 0);
    assert_eq!(broker.stats().workers_expired, 0);
}

#[test]
fn a_deadline_reply_reaches_the_client_and_the_late_result_never_does() {
    let broker = broker();
    let factory = || {
        |request: Vec<Message>| {
            if &request[0][..] == b"slow" {
                thread::sleep(Duration::from_millis(400));
            }
            request
        }
    };
    let cfg = worker_config(&broker, "svc").request_timeout(Duration::from_millis(100));
    let pool = WorkerPool::builder()
        .service(PoolService::new(cfg, 1, factory).threaded(true))
        .start()
        .unwrap();
    let mut client = client(&broker);
    wait_for("a registered worker", || broker.stats().workers == 1);
    assert_eq!(
        client.request("svc", &["slow"]).unwrap(),
        vec![b"error: worker request timed out".to_vec()]
    );
    // The next request waits for the busy action; its own deadline (from its arrival)
    // passes first, so it is answered by timeout and never runs.
    assert_eq!(
        client.request("svc", &["held"]).unwrap(),
        vec![b"error: worker request timed out".to_vec()]
    );
    thread::sleep(Duration::from_millis(300)); // the slow action finishes meanwhile
    assert_eq!(
        client.request("svc", &["next"]).unwrap(),
        vec![b"next".to_vec()]
    );
    let summary = pool.stop();
    assert_eq!(summary.total.timeouts, 2);
    assert_eq!(summary.total.late_replies, 1);
    assert_eq!(
        summary.total.requests, 2,
        "the held request never reached the action"
    );
    assert_eq!(
        broker.stats().replies_routed,
        3,
        "exactly one REPLY per REQUEST"
    );
}
