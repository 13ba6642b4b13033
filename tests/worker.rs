//! The worker against a test broker made of a plain ROUTER socket, frame by frame.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use majordomo_worker::{ConfigError, Error, Message, Received, Worker, WorkerConfig};

fn ready_is_the_first_message_and_has_the_exact_layout(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let identity = broker.expect_ready("echo");
    // Then only heartbeats, from the same socket.
    let (from, frames) = broker.recv();
    assert_eq!(from, identity);
    assert_eq!(
        frames,
        vec![b"".to_vec(), b"MDPW01".to_vec(), vec![HEARTBEAT]]
    );
    worker.stop();
}

fn request_bodies_of_every_shape_come_back_with_their_envelope(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let id = broker.expect_ready("echo");
    let binary: Vec<u8> = (0..=255).collect();
    type Shape<'a> = Vec<&'a [u8]>;
    let cases: Vec<(Shape, Shape)> = vec![
        (vec![b"client-1"], vec![b"hello"]),
        (vec![b"c"], vec![b"a", b"b", b"c", b"d"]),
        (vec![b"\x00\xff\xfe"], vec![&binary, b"\x00"]),
        (vec![b"c"], vec![b"", b"x", b""]),
        (vec![b"c"], vec![]),
        (vec![b"hop-1", b"\x80hop-2"], vec![b"two-frame envelope"]),
    ];
    for (envelope, body) in cases {
        broker.request(&id, &envelope, &body);
        let (got_envelope, got_body) = broker.expect_reply(&id);
        assert_eq!(got_envelope, frames(&envelope));
        assert_eq!(got_body, frames(&body));
    }
    let (_, stats, _) = worker.stop();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.replies, 6);
}

fn large_bodies_round_trip_intact(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let id = broker.expect_ready("echo");
    let big: Vec<u8> = (0..32 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    broker.request(&id, &[b"c"], &[&big, b"tail"]);
    let (envelope, body) = broker.expect_reply(&id);
    assert_eq!(envelope, frames(&[b"c"]));
    assert_eq!(body.len(), 2);
    assert!(body[0] == big, "32 MiB body changed on the way");
    assert_eq!(body[1], b"tail");
    worker.stop();
}

fn the_action_sees_exactly_the_request_body(driver: Driver) {
    let broker = TestBroker::tcp();
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let action = move |request: Vec<Message>| {
        let copy: Frames = request.iter().map(|f| f.to_vec()).collect();
        seen_tx.send(copy).unwrap();
        vec![Message::from("ok")]
    };
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "svc"), action);
    let id = broker.expect_ready("svc");
    broker.request(&id, &[b"c"], &[b"one", b"", b"three"]);
    let (_, body) = broker.expect_reply(&id);
    assert_eq!(body, frames(&[b"ok"]));
    assert_eq!(seen.try_recv().unwrap(), frames(&[b"one", b"", b"three"]));
    worker.stop();
}

fn heartbeats_keep_their_cadence_while_idle(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let id = broker.expect_ready("echo");
    let window = Duration::from_millis(400);
    let start = Instant::now();
    let mut heartbeats = 0;
    let end = start + window;
    while Instant::now() < end {
        // Saturating: the window may close between the check and the subtraction.
        if let Some((from, frames)) = broker.try_recv(end.saturating_duration_since(Instant::now()))
        {
            assert_eq!(from, id);
            assert!(is_command(&frames, HEARTBEAT), "unexpected {frames:?}");
            heartbeats += 1;
        }
    }
    let elapsed = start.elapsed();
    // 20 ms heartbeats over 400 ms: 20 expected; a loaded machine delays some, never adds any
    // (the last receive may overrun the window a little: the upper bound follows the clock).
    let most = elapsed.as_millis() as usize / 20 + 1;
    assert!(
        (8..=most).contains(&heartbeats),
        "{heartbeats} heartbeats in {elapsed:?}"
    );
    worker.stop();
}

fn heartbeats_are_sent_while_the_broker_keeps_sending(driver: Driver) {
    // A broker that heartbeats faster than the worker must not starve the worker's heartbeats
    // (the due-time rule: checked after every poll pass, including ones that received data).
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let id = broker.expect_ready("echo");
    let start = Instant::now();
    let mut heartbeats = 0;
    while start.elapsed() < Duration::from_millis(400) {
        broker.send(&id, &[b"", b"MDPW01", &[HEARTBEAT]]);
        if let Some((_, frames)) = broker.try_recv(Duration::from_millis(2)) {
            heartbeats += usize::from(is_command(&frames, HEARTBEAT));
        }
    }
    assert!(heartbeats >= 8, "only {heartbeats} heartbeats in 400 ms");
    worker.stop();
}

fn silent_broker_triggers_reconnect_on_a_new_socket_with_ready(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker =
        RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo").liveness(3), echo);
    let first = broker.expect_ready("echo");
    // Never answer: after 3 x 20 ms the worker gives up on this socket.
    let (second, got) = broker.recv_skipping_heartbeats();
    assert!(is_command(&got, READY), "expected READY, got {got:?}");
    assert_ne!(first, second, "reconnect must use a new socket");
    // And the new socket serves.
    broker.send(&second, &[b"", b"MDPW01", &[HEARTBEAT]]);
    broker.request(&second, &[b"c"], &[b"x"]);
    let (_, body) = broker.expect_reply(&second);
    assert_eq!(body, frames(&[b"x"]));
    let (_, stats, _) = worker.stop();
    assert!(stats.reconnects >= 1);
}

fn a_dead_first_address_rotates_to_the_second(driver: Driver) {
    let context = zmq::Context::new();
    let dead = inproc("dead");
    let live = TestBroker::bind(context.clone(), &inproc("live"));
    let cfg = config(&format!("{dead}, {}", live.endpoint), "echo")
        .liveness(3)
        .context(context);
    let worker = RunningWorker::spawn_with(driver, cfg, echo);
    let id = live.expect_ready("echo");
    live.request(&id, &[b"c"], &[b"via second"]);
    let (_, body) = live.expect_reply(&id);
    assert_eq!(body, frames(&[b"via second"]));
    let (_, stats, _) = worker.stop();
    assert_eq!(
        stats.reconnects, 1,
        "one move from the dead address to the live one"
    );
}

fn broker_disconnect_leads_to_a_new_socket_and_ready(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let first = broker.expect_ready("echo");
    broker.send(&first, &[b"", b"MDPW01", &[DISCONNECT]]);
    let (second, got) = broker.recv_skipping_heartbeats();
    assert!(is_command(&got, READY), "expected READY, got {got:?}");
    assert_ne!(first, second);
    broker.request(&second, &[b"c"], &[b"after"]);
    assert_eq!(broker.expect_reply(&second).1, frames(&[b"after"]));
    let (_, stats, _) = worker.stop();
    assert_eq!(stats.reconnects, 1);
}

fn every_malformed_shape_is_dropped_and_the_next_request_is_served(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "echo"), echo);
    let id = broker.expect_ready("echo");
    let malformed: Vec<Vec<&[u8]>> = vec![
        vec![b"not-empty", b"MDPW01", &[REQUEST], b"c", b"", b"x"],
        vec![b"", b"MDPW00", &[REQUEST], b"c", b"", b"x"],
        vec![b"", b"MDPW02", &[REQUEST], b"c", b"", b"x"],
        vec![b"", b"MDPC01", b"echo", b"x"],
        vec![b"", b"MDPW01", &[0x09]],
        vec![b"", b"MDPW01", b"\x02\x02", b"c", b"", b"x"],
        vec![b"", b"MDPW01", &[REQUEST], b"c", b"no delimiter"],
        vec![b"", b"MDPW01", &[REQUEST], b"", b"no address"],
        vec![b"", b"MDPW01"],
        vec![b""],
        vec![b"garbage"],
        vec![b"", b"MDPW01", &[HEARTBEAT], b"extra"],
    ];
    let count = malformed.len() as u64;
    for shape in &malformed {
        broker.send(&id, shape);
    }
    // Valid commands that a broker must not send to a worker.
    broker.send(&id, &[b"", b"MDPW01", &[READY], b"echo"]);
    broker.send(&id, &[b"", b"MDPW01", &[REPLY], b"c", b"", b"x"]);
    broker.request(&id, &[b"c"], &[b"still serving"]);
    let (envelope, body) = broker.expect_reply(&id);
    assert_eq!(envelope, frames(&[b"c"]));
    assert_eq!(body, frames(&[b"still serving"]));
    let (_, stats, _) = worker.stop();
    assert_eq!(stats.malformed_dropped, count);
    assert_eq!(stats.unexpected_dropped, 2);
    assert_eq!(
        stats.reconnects, 0,
        "malformed input must not cost the connection"
    );
    assert_eq!(stats.replies, 1);
}

fn shutdown_wakes_an_idle_worker_at_once_whatever_its_heartbeat(driver: Driver) {
    let broker = TestBroker::tcp();
    // Nothing but the shutdown can end the wait early: the next deadline is a minute away.
    let cfg = config(&broker.endpoint, "echo").heartbeat(Duration::from_secs(60));
    let worker = RunningWorker::spawn_with(driver, cfg, echo);
    let id = broker.expect_ready("echo");
    thread::sleep(Duration::from_millis(50)); // let the worker settle into its poll
    let (outcomes, _, took) = worker.stop();
    assert_eq!(outcomes, vec![Received::ShutDown]);
    // Woken at once (0.1 took up to its 100 ms poll cap); the bound is only scheduling noise.
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    let (from, frames) = broker.recv_skipping_heartbeats();
    assert_eq!(from, id);
    assert!(
        is_command(&frames, DISCONNECT),
        "expected DISCONNECT, got {frames:?}"
    );
}

fn shutdown_mid_request_sends_the_reply_then_disconnect(driver: Driver) {
    let broker = TestBroker::tcp();
    let (started_tx, started) = crossbeam_channel::bounded(1);
    let action = move |request: Vec<Message>| {
        started_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(100));
        request
    };
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "slow"), action);
    let id = broker.expect_ready("slow");
    broker.request(&id, &[b"c"], &[b"finish me"]);
    started.recv_timeout(WATCHDOG).expect("action started");
    let (outcomes, stats, _) = worker.stop();
    assert_eq!(outcomes, vec![Received::Handled, Received::ShutDown]);
    assert_eq!(stats.replies, 1);
    let (envelope, body) = broker.expect_reply(&id);
    assert_eq!((envelope, body), (frames(&[b"c"]), frames(&[b"finish me"])));
    let (_, frames) = broker.recv_skipping_heartbeats();
    assert!(
        is_command(&frames, DISCONNECT),
        "expected DISCONNECT, got {frames:?}"
    );
}

#[test]
fn receive_after_shutdown_returns_shutdown_at_once_without_a_socket() {
    let broker = TestBroker::tcp();
    let mut worker = Worker::new(config(&broker.endpoint, "echo"), echo).unwrap();
    worker.shutdown();
    let start = Instant::now();
    for _ in 0..1000 {
        assert_eq!(worker.receive().unwrap(), Received::ShutDown);
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    // Never connected, so the broker heard nothing at all.
    assert!(broker.try_recv(Duration::from_millis(50)).is_none());
}

fn a_long_action_is_followed_by_normal_service_without_reconnect(driver: Driver) {
    let broker = TestBroker::tcp();
    // Liveness window 60 ms; the first request takes 5 times that.
    let cfg = config(&broker.endpoint, "slow").liveness(3);
    let action = |request: Vec<Message>| {
        if &request[0][..] == b"long" {
            thread::sleep(Duration::from_millis(300));
        }
        request
    };
    let worker = RunningWorker::spawn_with(driver, cfg, action);
    let id = broker.expect_ready("slow");
    broker.request(&id, &[b"c"], &[b"long"]);
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"long"]));
    // Keep the worker's broker alive from here, as a real broker heartbeats idle workers.
    for i in 0..5u8 {
        broker.send(&id, &[b"", b"MDPW01", &[HEARTBEAT]]);
        broker.request(&id, &[b"c"], &[&[i]]);
        let (_, body) = broker.expect_reply(&id);
        assert_eq!(body, vec![vec![i]]);
    }
    let (_, stats, _) = worker.stop();
    assert_eq!(
        stats.reconnects, 0,
        "a long action must not look like broker silence"
    );
    assert_eq!(stats.replies, 6);
}

#[test]
fn bad_config_is_refused_at_construction_naming_the_field() {
    let bad = WorkerConfig::new("tcp://127.0.0.1:5555", "mmi.echo");
    match Worker::new(bad, echo) {
        Err(Error::Config(ConfigError::ReservedServiceName { name })) => {
            assert_eq!(name, "mmi.echo")
        }
        other => panic!("expected a reserved-name error, got {other:?}"),
    }
    let bad = WorkerConfig::new("tcp://127.0.0.1:5555", "echo").heartbeat(Duration::ZERO);
    let err = Worker::new(bad, echo).unwrap_err();
    assert_eq!(
        err.to_string(),
        "heartbeat = 0 ms is invalid: must be greater than zero"
    );
}

#[test]
fn dropping_a_connected_worker_sends_disconnect() {
    let broker = TestBroker::tcp();
    let (tx, rx) = crossbeam_channel::bounded(1);
    let endpoint = broker.endpoint.clone();
    let handle = thread::spawn(move || {
        let mut worker = Worker::new(config(&endpoint, "echo"), echo).unwrap();
        assert_eq!(worker.receive().unwrap(), Received::Handled);
        rx.recv_timeout(WATCHDOG).unwrap();
        drop(worker);
    });
    let id = broker.expect_ready("echo");
    broker.request(&id, &[b"c"], &[b"x"]);
    broker.expect_reply(&id);
    tx.send(()).unwrap();
    handle.join().unwrap();
    let (from, frames) = broker.recv_skipping_heartbeats();
    assert_eq!(from, id);
    assert!(
        is_command(&frames, DISCONNECT),
        "expected DISCONNECT, got {frames:?}"
    );
}

#[test]
fn receive_timeout_gives_up_when_idle_and_a_zero_timeout_serves_what_is_waiting() {
    let broker = TestBroker::tcp();
    let mut worker = Worker::new(config(&broker.endpoint, "echo"), echo).unwrap();
    worker.connect().unwrap();
    let id = broker.expect_ready("echo");
    let start = Instant::now();
    assert_eq!(
        worker.receive_timeout(Duration::from_millis(50)).unwrap(),
        None
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    broker.request(&id, &[b"c"], &[b"waiting"]);
    thread::sleep(Duration::from_millis(50)); // let it arrive in the worker's socket
    assert_eq!(
        worker.receive_timeout(Duration::ZERO).unwrap(),
        Some(Received::Handled)
    );
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"waiting"]));
    assert!(
        worker.broker_heard(),
        "a request proves the broker knows the worker"
    );
    assert_eq!(worker.stats().requests, 1);
}

crate::for_each_driver!(
    ready_is_the_first_message_and_has_the_exact_layout,
    request_bodies_of_every_shape_come_back_with_their_envelope,
    large_bodies_round_trip_intact,
    the_action_sees_exactly_the_request_body,
    heartbeats_keep_their_cadence_while_idle,
    heartbeats_are_sent_while_the_broker_keeps_sending,
    silent_broker_triggers_reconnect_on_a_new_socket_with_ready,
    a_dead_first_address_rotates_to_the_second,
    broker_disconnect_leads_to_a_new_socket_and_ready,
    every_malformed_shape_is_dropped_and_the_next_request_is_served,
    shutdown_wakes_an_idle_worker_at_once_whatever_its_heartbeat,
    shutdown_mid_request_sends_the_reply_then_disconnect,
    a_long_action_is_followed_by_normal_service_without_reconnect,
);
