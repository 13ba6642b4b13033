//! What only the async worker does: many registrations served at once by tasks, futures
//! cancelled at their deadline or after the shutdown grace, a `run()` future that can be
//! dropped, both runtime flavours. The protocol behaviour it shares with the sync worker is
//! tested by the shared driver table (tests/worker.rs, tests/lifecycle.rs, ...).
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{config, frames, is_command, TestBroker as RawBroker, DISCONNECT, HEARTBEAT};
use majordomo_worker::testkit::TestBroker;
use majordomo_worker::{AsyncWorker, Message};

/// Counts live futures: how many requests are in an action at once, and how many futures
/// were dropped before they finished (cancelled).
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    cancelled: AtomicUsize,
}

struct InAction(Arc<Gauge>, bool);

impl InAction {
    fn enter(gauge: &Arc<Gauge>) -> InAction {
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.peak.fetch_max(now, Ordering::SeqCst);
        InAction(Arc::clone(gauge), false)
    }
}

impl Drop for InAction {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An action that awaits `delay` (a timer, not a blocking sleep) and echoes.
fn sleepy(gauge: &Arc<Gauge>, delay: Duration) -> impl majordomo_worker::AsyncAction {
    let gauge = Arc::clone(gauge);
    move |request: Vec<Message>| {
        let gauge = Arc::clone(&gauge);
        async move {
            let mut guard = InAction::enter(&gauge);
            tokio::time::sleep(delay).await;
            guard.1 = true;
            request
        }
    }
}

/// `count` requests sent at once from threads of sync clients; the replies, in order.
fn requests_at_once(broker: &TestBroker, count: usize) -> Vec<Vec<Vec<u8>>> {
    let clients: Vec<_> = (0..count)
        .map(|i| {
            let mut client = broker.client().expect("client");
            thread::spawn(move || client.request("sleepy", &[format!("r{i}")]).expect("reply"))
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_registrations_serve_fifty_slow_requests_at_once() {
    let broker = TestBroker::tcp().expect("broker");
    let gauge = Arc::new(Gauge::default());
    let worker = broker
        .spawn_async_worker("sleepy", 50, sleepy(&gauge, Duration::from_millis(200)))
        .await
        .expect("worker");
    assert_eq!(broker.stats().workers, 50);
    let started = Instant::now();
    let replies = {
        let broker = &broker;
        tokio::task::block_in_place(|| requests_at_once(broker, 50))
    };
    let took = started.elapsed();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply, &vec![format!("r{i}").into_bytes()]);
    }
    // One at a time they would take 10 s.
    assert!(
        gauge.peak.load(Ordering::SeqCst) >= 25,
        "peak {:?}",
        gauge.peak
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let summary = worker.stop().await.expect("stop");
    assert_eq!(summary.workers.len(), 50);
    assert_eq!(summary.total.replies, 50);
    assert_eq!(gauge.cancelled.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_past_its_deadline_has_its_future_dropped_and_gets_the_timeout_reply() {
    let broker = RawBroker::tcp();
    let gauge = Arc::new(Gauge::default());
    let cfg = config(&broker.endpoint, "sleepy").request_timeout(Duration::from_millis(50));
    let worker = AsyncWorker::new(cfg, sleepy(&gauge, Duration::from_secs(30))).expect("worker");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    let broker = tokio::task::spawn_blocking(move || {
        let id = broker.expect_ready("sleepy");
        broker.request(&id, &[b"c"], &[b"forever"]);
        let (envelope, body) = broker.expect_reply(&id);
        (broker, envelope, body)
    });
    let (_broker, envelope, body) = broker.await.expect("broker");
    assert_eq!(envelope, frames(&[b"c"]));
    assert_eq!(body, frames(&[b"error: worker request timed out"]));
    stop.shutdown();
    let summary = run.await.expect("join").expect("run");
    assert_eq!(
        gauge.cancelled.load(Ordering::SeqCst),
        1,
        "the future was dropped"
    );
    assert_eq!((summary.total.timeouts, summary.total.replies), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_grace_period_then_cancels_and_answers_with_the_timeout_reply() {
    let broker = RawBroker::tcp();
    let gauge = Arc::new(Gauge::default());
    let grace = Duration::from_millis(150);
    let cfg = config(&broker.endpoint, "sleepy").shutdown_grace(grace);
    let worker = AsyncWorker::new(cfg, sleepy(&gauge, Duration::from_secs(30))).expect("worker");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    let id = {
        let broker = &broker;
        tokio::task::block_in_place(|| broker.expect_ready("sleepy"))
    };
    broker.request(&id, &[b"c"], &[b"forever"]);
    while gauge.now.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let asked = Instant::now();
    stop.shutdown();
    let summary = run.await.expect("join").expect("run");
    let took = asked.elapsed();
    assert!(
        took >= grace,
        "stopped after {took:?}, before the grace period"
    );
    assert!(took < grace * 10, "stopped after {took:?}");
    assert_eq!(gauge.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(summary.total.timeouts, 1);
    // The broker saw the timeout reply, then DISCONNECT.
    let (_, body) = broker.expect_reply(&id);
    assert_eq!(body, frames(&[b"error: worker request timed out"]));
    let (_, last) = broker.recv_skipping_heartbeats();
    assert!(is_command(&last, DISCONNECT), "{last:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_future_is_answered_with_the_panic_reply_and_the_worker_serves_on() {
    let broker = TestBroker::tcp().expect("broker");
    let action = |request: Vec<Message>| async move {
        tokio::task::yield_now().await;
        if &request[0][..] == b"boom" {
            panic!("asked to explode");
        }
        request
    };
    let worker = broker
        .spawn_async_worker("sleepy", 1, action)
        .await
        .expect("worker");
    let mut client = broker.client().expect("client");
    let replies = tokio::task::spawn_blocking(move || {
        let boom = client.request("sleepy", &["boom"]).expect("panic reply");
        let fine = client.request("sleepy", &["fine"]).expect("reply");
        (boom, fine)
    })
    .await
    .expect("client");
    assert_eq!(replies.0, vec![b"error: worker action panicked".to_vec()]);
    assert_eq!(replies.1, vec![b"fine".to_vec()]);
    let summary = worker.stop().await.expect("stop");
    assert_eq!((summary.total.panics, summary.total.replies), (1, 2));
}

#[test]
fn dropping_the_run_future_closes_every_socket_at_once() {
    let broker = TestBroker::tcp().expect("broker");
    // The worker's own context: terminating it blocks while any socket of it is open.
    let context = zmq::Context::new();
    let gauge = Arc::new(Gauge::default());
    let cfg = broker
        .worker_config("sleepy")
        .context(context.clone())
        .concurrency(8);
    let worker = AsyncWorker::new(cfg, sleepy(&gauge, Duration::from_secs(30))).expect("worker");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let run = worker.run();
        // Registered and idle, then the future is dropped mid-way.
        let _ = tokio::time::timeout(Duration::from_millis(300), run).await;
    });
    drop(runtime);
    let (done, terminated) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        drop(context);
        let _ = done.send(());
    });
    assert!(
        terminated.recv_timeout(Duration::from_secs(5)).is_ok(),
        "the context did not terminate: a socket was left open"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_of_heartbeats_while_the_action_runs_does_not_stall_the_next_request() {
    let broker = RawBroker::tcp();
    let gauge = Arc::new(Gauge::default());
    let worker = AsyncWorker::new(
        config(&broker.endpoint, "sleepy"),
        sleepy(&gauge, Duration::from_millis(50)),
    )
    .expect("worker");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    let served = tokio::task::spawn_blocking(move || {
        let id = broker.expect_ready("sleepy");
        broker.request(&id, &[b"c"], &[b"first"]);
        // Two hundred messages land while the action awaits its timer.
        for _ in 0..200 {
            broker.send(&id, &[b"", b"MDPW01", &[HEARTBEAT]]);
        }
        let first = broker.expect_reply(&id).1;
        broker.request(&id, &[b"c"], &[b"second"]);
        (first, broker.expect_reply(&id).1)
    })
    .await
    .expect("broker");
    assert_eq!(served, (frames(&[b"first"]), frames(&[b"second"])));
    stop.shutdown();
    run.await.expect("join").expect("run");
}

#[test]
fn a_process_stopped_by_sigterm_delivers_every_reply_and_disconnect_before_it_exits() {
    use std::process::Command;
    let binary = common::process::example_binary("async_worker");
    for round in 0..3 {
        let broker = RawBroker::tcp();
        let mut child = Command::new(&binary)
            .args(["--broker", &broker.endpoint, "--service", "slow"])
            .args(["--concurrency", "4", "--work-ms", "300"])
            .spawn()
            .expect("async_worker");
        let ids: Vec<Vec<u8>> = (0..4).map(|_| broker.expect_ready("slow")).collect();
        // 8 MiB each: the four replies cannot all wait in the kernel's socket buffers, so
        // libzmq's I/O thread is still writing them when run() returns.
        let body = vec![0x5a_u8; 8 << 20];
        for (i, id) in ids.iter().enumerate() {
            broker.request(id, &[format!("c{i}").as_bytes()], &[&body]);
        }
        thread::sleep(Duration::from_millis(100)); // all four busy
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let status = child.wait().expect("wait");
        assert!(status.success(), "round {round}: {status:?}");
        // The process is gone: whatever it sent must be here already.
        let (mut replies, mut disconnects) = (0, 0);
        while let Some((_, frames)) = broker.try_recv(Duration::from_millis(200)) {
            let whole = frames.last().is_some_and(|b| b.len() == body.len());
            replies += usize::from(is_command(&frames, common::REPLY) && whole);
            disconnects += usize::from(is_command(&frames, DISCONNECT));
        }
        assert_eq!((replies, disconnects), (4, 4), "round {round}");
    }
}
