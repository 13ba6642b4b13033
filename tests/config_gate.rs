//! One settings gate: every configuration rule holds the same at every entry point (the
//! inline worker, the threaded worker and the pool, inline and threaded), with an error that
//! names the field. `Duration::MAX` in every duration field is refused, never a panic.

mod common;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{ConfigError, Error, Message, Received, Worker, WorkerConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Worker,
    Threaded,
    Pool,
    ThreadedPool,
    #[cfg(feature = "tokio")]
    Async,
}

const ENTRIES: &[Entry] = &[
    Entry::Worker,
    Entry::Threaded,
    Entry::Pool,
    Entry::ThreadedPool,
    #[cfg(feature = "tokio")]
    Entry::Async,
];

fn start(entry: Entry, config: WorkerConfig) -> Result<(), Error> {
    let service = |threaded| PoolService::new(config.clone(), 1, || echo).threaded(threaded);
    match entry {
        Entry::Worker => Worker::new(config, echo).map(drop),
        Entry::Threaded => Worker::threaded(config, echo).map(drop),
        Entry::Pool => WorkerPool::builder()
            .service(service(false))
            .start()
            .map(|pool| drop(pool.stop())),
        Entry::ThreadedPool => WorkerPool::builder()
            .service(service(true))
            .start()
            .map(|pool| drop(pool.stop())),
        #[cfg(feature = "tokio")]
        Entry::Async => {
            majordomo_worker::AsyncWorker::new(config, |r: Vec<Message>| async move { r }).map(drop)
        }
    }
}

fn base() -> WorkerConfig {
    // Port 1: nothing listens there; only the accepted cases even try to connect.
    WorkerConfig::new("tcp://127.0.0.1:1", "echo")
}

/// Each case: the config, the field its error must name.
fn cases() -> Vec<(WorkerConfig, &'static str)> {
    let max = Duration::MAX;
    vec![
        (base().heartbeat(Duration::ZERO), "heartbeat"),
        (base().heartbeat(max), "heartbeat"),
        (base().liveness(0), "liveness"),
        (base().liveness(u32::MAX), "liveness"),
        (base().reconnect(Duration::ZERO), "reconnect"),
        (base().reconnect(max), "reconnect"),
        (base().reconnect_max(max), "reconnect_max"),
        (
            base()
                .reconnect(Duration::from_secs(9))
                .reconnect_max(Duration::from_secs(1)),
            "reconnect_max",
        ),
        (base().linger(max), "linger"),
        (base().send_timeout(Duration::ZERO), "send_timeout"),
        (base().send_timeout(max), "send_timeout"),
        (base().request_timeout(Duration::ZERO), "request_timeout"),
        (base().request_timeout(max), "request_timeout"),
        (base().max_message_size(0), "max_message_size"),
        (base().plain_credentials("", "pw"), "plain_username"),
    ]
}

#[test]
fn every_rule_is_refused_alike_at_every_entry_point_naming_the_field() {
    for (config, field) in cases() {
        for &entry in ENTRIES {
            match start(entry, config.clone()) {
                Err(Error::Config(ConfigError::InvalidValue {
                    field: f, value, ..
                })) => {
                    assert_eq!(f, field, "{entry:?} {config:?}");
                    assert!(!value.is_empty(), "{entry:?}: the value is shown");
                }
                other => panic!("{entry:?} {field}: expected InvalidValue, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_request_timeout_needs_a_thread_at_every_inline_entry_point() {
    let config = base().request_timeout(Duration::from_secs(1));
    for &entry in ENTRIES {
        let result = start(entry, config.clone());
        match entry {
            Entry::Worker | Entry::Pool => match result {
                Err(Error::Config(ConfigError::InvalidValue { field, reason, .. })) => {
                    assert_eq!(field, "request_timeout");
                    assert!(reason.contains("threaded"), "{reason}");
                }
                other => panic!("{entry:?}: expected a refusal, got {other:?}"),
            },
            _ => assert!(result.is_ok(), "{entry:?}: {result:?}"),
        }
    }
}

#[test]
fn durations_at_the_bound_are_accepted() {
    let bound = majordomo_worker::config::MAX_DURATION;
    let config = base()
        .heartbeat(bound / 3)
        .liveness(3)
        .reconnect(bound)
        .reconnect_max(bound)
        .linger(bound)
        .send_timeout(bound)
        .request_timeout(bound);
    assert_eq!(config.validate(), Ok(()));
    assert!(Worker::threaded(config, echo).is_ok());
}

#[test]
fn receive_timeout_of_duration_max_waits_for_a_request_instead_of_panicking() {
    let broker = TestBroker::tcp();
    let mut worker = Worker::new(config(&broker.endpoint, "echo"), echo).expect("worker");
    let handle = thread::spawn(move || {
        let received = worker.receive_timeout(Duration::MAX);
        (received.expect("receive"), worker)
    });
    let id = broker.expect_ready("echo");
    broker.request(&id, &[b"client"], &[b"hello"]);
    let (_, body) = broker.expect_reply(&id);
    assert_eq!(body, frames(&[b"hello"]));
    let (received, _worker) = handle.join().expect("no panic");
    assert_eq!(received, Some(Received::Handled));
}

#[test]
fn a_worker_that_never_reached_a_broker_stops_at_once_despite_its_linger() {
    // A port nobody listens on: bound, read back, closed.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let linger = Duration::from_secs(5);
    let worker = RunningWorker::spawn(
        config(&endpoint, "echo").linger(linger),
        |r: Vec<Message>| r,
    );
    thread::sleep(Duration::from_millis(100)); // READY queued for a connection that never comes
    let asked = Instant::now();
    let (outcomes, _, _) = worker.stop();
    let took = asked.elapsed();
    assert_eq!(outcomes, vec![Received::ShutDown]);
    // 0.1 waited out the whole linger for READY and DISCONNECT that could never leave.
    assert!(
        took < linger / 2,
        "stop took {took:?} with a {linger:?} linger"
    );
}

#[test]
fn concurrency_and_shutdown_grace_belong_to_the_async_worker() {
    let cases = [
        (base().concurrency(2), "concurrency"),
        (
            base().shutdown_grace(Duration::from_secs(1)),
            "shutdown_grace",
        ),
    ];
    for (config, field) in cases {
        for &entry in &ENTRIES[..4] {
            match start(entry, config.clone()) {
                Err(Error::Config(ConfigError::InvalidValue { field: f, .. })) => {
                    assert_eq!(f, field, "{entry:?}")
                }
                other => panic!("{entry:?} {field}: expected a refusal, got {other:?}"),
            }
        }
    }
    for (config, field) in [
        (base().concurrency(0), "concurrency"),
        (base().concurrency(100_001), "concurrency"),
        (base().shutdown_grace(Duration::MAX), "shutdown_grace"),
    ] {
        for &entry in ENTRIES {
            match start(entry, config.clone()) {
                Err(Error::Config(ConfigError::InvalidValue { field: f, .. })) => {
                    assert_eq!(f, field, "{entry:?}")
                }
                other => panic!("{entry:?} {field}: expected a refusal, got {other:?}"),
            }
        }
    }
}
