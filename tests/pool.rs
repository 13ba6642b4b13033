//! The worker pool against test brokers made of plain ROUTER sockets.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Event, Events, Message};

fn echo_factory() -> fn(Vec<Message>) -> Vec<Message> {
    echo
}

/// Collects `n` READYs and returns the identities, checking the service. Each worker's
/// first message must be its READY; a HEARTBEAT from a worker already seen may come in
/// between (a loaded machine can let a first worker's heartbeat overtake a second's READY).
fn readies(broker: &TestBroker, service: &str, n: usize) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = Vec::new();
    while ids.len() < n {
        let (identity, frames) = broker.recv();
        if ids.contains(&identity) && is_command(&frames, HEARTBEAT) {
            continue;
        }
        assert_eq!(
            frames,
            vec![
                b"".to_vec(),
                b"MDPW01".to_vec(),
                vec![READY],
                service.as_bytes().to_vec()
            ],
            "expected READY first from {identity:?}"
        );
        ids.push(identity);
    }
    ids
}

/// Receives until `n` DISCONNECTs arrived; returns their identities.
fn disconnects(broker: &TestBroker, n: usize) -> HashSet<Vec<u8>> {
    let mut seen = HashSet::new();
    while seen.len() < n {
        let (id, frames) = broker.recv_skipping_heartbeats();
        assert!(
            is_command(&frames, DISCONNECT),
            "expected DISCONNECT, got {frames:?}"
        );
        seen.insert(id);
    }
    seen
}

#[test]
fn each_pool_worker_has_its_own_socket_and_stop_disconnects_them_all() {
    let broker = TestBroker::tcp();
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            config(&broker.endpoint, "echo"),
            3,
            echo_factory,
        ))
        .start()
        .unwrap();
    assert_eq!(pool.len(), 3);
    let ids: HashSet<_> = readies(&broker, "echo", 3).into_iter().collect();
    assert_eq!(ids.len(), 3, "three workers, three identities");
    for (i, id) in ids.iter().enumerate() {
        broker.request(id, &[b"c"], &[format!("{i}").as_bytes()]);
        assert_eq!(broker.expect_reply(id).1, vec![format!("{i}").into_bytes()]);
    }
    let summary = pool.stop();
    assert_eq!(disconnects(&broker, 3), ids);
    assert_eq!(summary.workers.len(), 3);
    assert_eq!(summary.total.replies, 3);
    assert!(summary.workers.iter().all(|(_, s)| s.replies == 1));
}

#[test]
fn one_pool_serves_two_services_with_their_own_actions_and_counts() {
    let broker = TestBroker::tcp();
    let upper = || |request: Vec<Message>| vec![Message::from(request[0].to_ascii_uppercase())];
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            config(&broker.endpoint, "echo"),
            2,
            echo_factory,
        ))
        .service(PoolService::new(
            config(&broker.endpoint, "upper"),
            1,
            upper,
        ))
        .start()
        .unwrap();
    let mut services = Vec::new();
    for _ in 0..3 {
        let (id, frames) = broker.recv_skipping_heartbeats();
        assert!(is_command(&frames, READY));
        services.push((frames[3].clone(), id));
    }
    services.sort();
    let names: Vec<&[u8]> = services.iter().map(|(s, _)| s.as_slice()).collect();
    assert_eq!(names, vec![&b"echo"[..], b"echo", b"upper"]);
    let upper_id = &services[2].1;
    broker.request(upper_id, &[b"c"], &[b"shout"]);
    assert_eq!(broker.expect_reply(upper_id).1, frames(&[b"SHOUT"]));
    pool.stop();
}

#[test]
fn fan_out_runs_workers_on_every_broker_of_the_list() {
    let context = zmq::Context::new();
    let a = TestBroker::bind(context.clone(), &inproc("fan-a"));
    let b = TestBroker::bind(context.clone(), &inproc("fan-b"));
    let cfg = config(&format!("{},{}", a.endpoint, b.endpoint), "echo");
    let pool = WorkerPool::builder()
        .context(context)
        .service(PoolService::new(cfg, 2, echo_factory).fan_out(true))
        .start()
        .unwrap();
    assert_eq!(pool.len(), 4);
    for broker in [&a, &b] {
        let ids = readies(broker, "echo", 2);
        broker.request(&ids[0], &[b"c"], &[b"hi"]);
        assert_eq!(broker.expect_reply(&ids[0]).1, frames(&[b"hi"]));
    }
    let summary = pool.stop();
    assert_eq!(
        summary.total.reconnects, 0,
        "no worker moved to the other broker"
    );
}

#[test]
fn a_panicking_action_is_answered_and_the_pool_keeps_serving() {
    let broker = TestBroker::tcp();
    let factory = || {
        |request: Vec<Message>| {
            if &request[0][..] == b"boom" {
                panic!("boom");
            }
            request
        }
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            config(&broker.endpoint, "svc"),
            1,
            factory,
        ))
        .start()
        .unwrap();
    let id = broker.expect_ready("svc");
    broker.request(&id, &[b"c"], &[b"boom"]);
    assert_eq!(
        broker.expect_reply(&id).1,
        frames(&[b"error: worker action panicked"])
    );
    broker.request(&id, &[b"c"], &[b"ok"]);
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"ok"]));
    let summary = pool.stop();
    assert_eq!((summary.total.panics, summary.total.replies), (1, 2));
    assert_eq!(
        summary.restarts, 0,
        "an action panic does not kill the worker"
    );
}

#[test]
fn a_worker_whose_factory_dies_is_restarted_with_backoff() {
    let broker = TestBroker::tcp();
    let events = Events::bounded(64);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let factory = move || {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("first build fails");
        }
        echo
    };
    let pool = WorkerPool::builder()
        .events(&events)
        .restart_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .service(PoolService::new(
            config(&broker.endpoint, "svc"),
            1,
            factory,
        ))
        .start()
        .unwrap();
    let id = broker.expect_ready("svc");
    broker.request(&id, &[b"c"], &[b"alive"]);
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"alive"]));
    let summary = pool.stop();
    assert_eq!(summary.restarts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let restarted: Vec<_> = events
        .receiver()
        .try_iter()
        .filter_map(|e| match e {
            Event::WorkerRestarted {
                restarts, error, ..
            } => Some((restarts, error)),
            _ => None,
        })
        .collect();
    assert_eq!(restarted, vec![(1, "first build fails".to_string())]);
}

#[test]
fn a_restart_storm_is_bounded_and_reported() {
    let events = Events::bounded(64);
    let factory = || -> fn(Vec<Message>) -> Vec<Message> { panic!("always fails") };
    let pool = WorkerPool::builder()
        .events(&events)
        .max_restarts(3)
        .restart_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .service(PoolService::new(
            config("tcp://127.0.0.1:9", "svc"),
            1,
            factory,
        ))
        .start()
        .unwrap();
    let limit = events
        .receiver()
        .iter()
        .find_map(|e| match e {
            Event::RestartLimitReached { restarts, .. } => Some(restarts),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        limit, 4,
        "three restarts allowed, the fourth death gives up"
    );
    let summary = pool.stop();
    assert_eq!(summary.restarts, 3);
}

#[test]
fn drain_disconnects_every_worker_and_resume_registers_them_again() {
    let broker = TestBroker::tcp();
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            config(&broker.endpoint, "echo"),
            2,
            echo_factory,
        ))
        .start()
        .unwrap();
    let first: HashSet<_> = readies(&broker, "echo", 2).into_iter().collect();
    pool.drain();
    assert_eq!(disconnects(&broker, 2), first);
    assert!(
        broker.try_recv(Duration::from_millis(100)).is_none(),
        "drained means quiet"
    );
    pool.resume();
    let second: HashSet<_> = readies(&broker, "echo", 2).into_iter().collect();
    assert!(first.is_disjoint(&second), "resume registers new sockets");
    for id in &second {
        broker.request(id, &[b"c"], &[b"x"]);
        assert_eq!(broker.expect_reply(id).1, frames(&[b"x"]));
    }
    pool.stop();
}

#[test]
fn recycling_registers_the_new_worker_before_the_old_one_leaves() {
    let broker = TestBroker::tcp();
    let events = Events::bounded(64);
    let pool = WorkerPool::builder()
        .events(&events)
        .service(
            PoolService::new(config(&broker.endpoint, "echo"), 1, echo_factory)
                .recycle_after_requests(2),
        )
        .start()
        .unwrap();
    let old = broker.expect_ready("echo");
    for i in 0..2u8 {
        broker.request(&old, &[b"c"], &[&[i]]);
        assert_eq!(broker.expect_reply(&old).1, vec![vec![i]]);
    }
    let (new, frames1) = broker.recv_skipping_heartbeats();
    assert!(
        is_command(&frames1, READY),
        "the replacement registers first: {frames1:?}"
    );
    assert_ne!(new, old);
    // Until the broker answers the new socket, the old worker stays and serves.
    broker.request(&old, &[b"c"], &[b"still old"]);
    assert_eq!(broker.expect_reply(&old).1, frames(&[b"still old"]));
    broker.send(&new, &[b"", b"MDPW01", &[HEARTBEAT]]);
    let (from, frames2) = broker.recv_skipping_heartbeats();
    assert_eq!(from, old);
    assert!(
        is_command(&frames2, DISCONNECT),
        "then the old one leaves: {frames2:?}"
    );
    broker.request(&new, &[b"c"], &[b"new"]);
    assert_eq!(broker.expect_reply(&new).1, frames(&[b"new"]));
    let summary = pool.stop();
    assert_eq!(summary.recycles, 1);
    assert_eq!(summary.total.replies, 4, "counters survive recycling");
    assert!(events
        .receiver()
        .try_iter()
        .any(|e| matches!(e, Event::Recycled { .. })));
}

#[test]
fn stop_lets_the_request_in_flight_finish_and_answer_first() {
    let broker = TestBroker::tcp();
    let factory = || {
        |request: Vec<Message>| {
            thread::sleep(Duration::from_millis(150));
            request
        }
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(config(&broker.endpoint, "slow"), 1, factory).threaded(true))
        .start()
        .unwrap();
    let id = broker.expect_ready("slow");
    broker.request(&id, &[b"c"], &[b"finish"]);
    thread::sleep(Duration::from_millis(30));
    let summary = pool.stop();
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"finish"]));
    let (_, got) = broker.recv_skipping_heartbeats();
    assert!(
        is_command(&got, DISCONNECT),
        "expected DISCONNECT, got {got:?}"
    );
    assert_eq!(summary.total.replies, 1);
}

#[test]
fn stats_snapshots_count_requests_per_worker_while_running() {
    let broker = TestBroker::tcp();
    let pool = WorkerPool::builder()
        .service(PoolService::new(
            config(&broker.endpoint, "echo"),
            2,
            echo_factory,
        ))
        .start()
        .unwrap();
    let ids = readies(&broker, "echo", 2);
    for _ in 0..3 {
        broker.request(&ids[0], &[b"c"], &[b"x"]);
        broker.expect_reply(&ids[0]);
    }
    let stats = pool.stats();
    let mut counts: Vec<u64> = stats.workers.iter().map(|(_, s)| s.requests).collect();
    counts.sort();
    assert_eq!(counts, vec![0, 3]);
    assert_eq!(stats.total.requests, 3);
    pool.stop();
}

#[test]
fn a_service_with_zero_workers_is_refused() {
    let err = WorkerPool::builder()
        .service(PoolService::new(
            config("tcp://127.0.0.1:5555", "echo"),
            0,
            echo_factory,
        ))
        .start()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "count = 0 is invalid: a pool service needs at least one worker"
    );
}

#[test]
fn a_service_with_a_request_timeout_but_not_threaded_is_refused_at_start() {
    let cfg = config("tcp://127.0.0.1:5555", "svc").request_timeout(Duration::from_millis(100));
    let err = WorkerPool::builder()
        .service(PoolService::new(cfg, 1, echo_factory))
        .start()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("request_timeout = 100 ms is invalid"),
        "{err}"
    );
}

#[test]
fn restart_and_recycle_values_out_of_range_are_refused_at_start() {
    let start = |builder: majordomo_worker::pool::PoolBuilder, service: PoolService| {
        builder.service(service).start().unwrap_err().to_string()
    };
    let svc = || PoolService::new(config("tcp://127.0.0.1:5555", "echo"), 1, echo_factory);
    let ms = Duration::from_millis;
    let cases = [
        (
            start(WorkerPool::builder().restart_window(Duration::ZERO), svc()),
            "restart_window = 0 ms is invalid: must be greater than zero",
        ),
        (
            start(WorkerPool::builder().restart_backoff(ms(0), ms(10)), svc()),
            "restart_backoff.initial = 0 ms is invalid: must be greater than zero",
        ),
        (
            start(WorkerPool::builder().restart_backoff(ms(100), ms(10)), svc()),
            "restart_backoff.max = 10 ms is invalid: must be at least restart_backoff.initial",
        ),
        (
            start(
                WorkerPool::builder().restart_window(Duration::from_secs(30 * 86_400)),
                svc(),
            ),
            "restart_window = 2592000000 ms is invalid: must be at most 2^31-1 ms (about 24.8 days)",
        ),
        (
            start(WorkerPool::builder(), svc().recycle_after_requests(0)),
            "recycle_after_requests = 0 is invalid: must be at least 1",
        ),
        (
            start(WorkerPool::builder(), svc().recycle_after(Duration::ZERO)),
            "recycle_after = 0 ms is invalid: must be greater than zero",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}
