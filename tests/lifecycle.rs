//! Panics, long requests on the action thread, deadlines, drain/resume and events, against a
//! test broker made of a plain ROUTER socket.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use majordomo_worker::session::DisconnectReason;
use majordomo_worker::{ConfigError, DrainHandle, Error, Event, Events, Message, Worker};

fn panics_on_boom(request: Vec<Message>) -> Vec<Message> {
    if &request[0][..] == b"boom" {
        panic!("asked to explode");
    }
    request
}

fn check_panic_then_service(broker: &TestBroker, id: &[u8]) {
    broker.request(id, &[b"c1"], &[b"boom"]);
    let (envelope, body) = broker.expect_reply(id);
    assert_eq!(envelope, frames(&[b"c1"]));
    assert_eq!(body, frames(&[b"error: worker action panicked"]));
    broker.request(id, &[b"c2"], &[b"fine"]);
    assert_eq!(
        broker.expect_reply(id),
        (frames(&[b"c2"]), frames(&[b"fine"]))
    );
}

fn a_panicking_action_is_answered_with_the_panic_reply_and_the_worker_serves_on(driver: Driver) {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn_with(driver, config(&broker.endpoint, "svc"), panics_on_boom);
    let id = broker.expect_ready("svc");
    check_panic_then_service(&broker, &id);
    let (_, stats, _) = worker.stop();
    assert_eq!(
        (stats.panics, stats.replies, stats.reconnects),
        (1, 2, 0),
        "{driver:?}"
    );
}

fn a_custom_panic_reply_is_sent_as_configured(driver: Driver) {
    let broker = TestBroker::tcp();
    let cfg = config(&broker.endpoint, "svc").panic_reply(vec![b"500".to_vec(), b"".to_vec()]);
    let worker = RunningWorker::spawn_with(driver, cfg, panics_on_boom);
    let id = broker.expect_ready("svc");
    broker.request(&id, &[b"c"], &[b"boom"]);
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"500", b""]));
    worker.stop();
}

fn a_request_of_five_liveness_windows_keeps_heartbeating_and_never_reconnects(driver: Driver) {
    let broker = TestBroker::tcp();
    // Liveness window 3 x 20 ms = 60 ms; the request takes 300 ms.
    let cfg = config(&broker.endpoint, "slow").liveness(3);
    let action = |request: Vec<Message>| {
        thread::sleep(Duration::from_millis(300));
        request
    };
    let worker = RunningWorker::spawn_with(driver, cfg, action);
    let id = broker.expect_ready("slow");
    broker.request(&id, &[b"c"], &[b"long"]);
    let mut heartbeats = 0;
    let reply = loop {
        let (from, frames) = broker.recv();
        assert_eq!(from, id, "a new socket means a false reconnect");
        if is_command(&frames, HEARTBEAT) {
            heartbeats += 1;
        } else {
            break frames;
        }
    };
    assert!(is_command(&reply, REPLY), "expected REPLY, got {reply:?}");
    assert_eq!(&reply[3..], &frames(&[b"c", b"", b"long"])[..]);
    // 300 ms of 20 ms heartbeats: about 15; a loaded machine may delay some.
    assert!(
        heartbeats >= 5,
        "only {heartbeats} heartbeats during the request"
    );
    broker.send(&id, &[b"", b"MDPW01", &[HEARTBEAT]]);
    broker.request(&id, &[b"c"], &[b"again"]);
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"again"]));
    let (_, stats, _) = worker.stop();
    assert_eq!(stats.reconnects, 0);
}

fn a_passed_deadline_sends_the_timeout_reply_and_the_late_result_is_dropped(driver: Driver) {
    let broker = TestBroker::tcp();
    let cfg = config(&broker.endpoint, "slow").request_timeout(Duration::from_millis(100));
    let action = |request: Vec<Message>| {
        if &request[0][..] == b"slow" {
            thread::sleep(Duration::from_millis(400));
        }
        request
    };
    let worker = RunningWorker::spawn_with(driver, cfg, action);
    let id = broker.expect_ready("slow");
    let sent = Instant::now();
    broker.request(&id, &[b"c1"], &[b"slow"]);
    let (envelope, body) = broker.expect_reply(&id);
    let waited = sent.elapsed();
    assert_eq!(envelope, frames(&[b"c1"]));
    assert_eq!(body, frames(&[b"error: worker request timed out"]));
    assert!(
        waited < Duration::from_millis(380),
        "timeout reply after {waited:?}"
    );
    // The late result must never reach the broker: only heartbeats until it is long done.
    let until = sent + Duration::from_millis(600);
    while let Some((_, frames)) = broker.try_recv(until.saturating_duration_since(Instant::now())) {
        assert!(is_command(&frames, HEARTBEAT), "unexpected {frames:?}");
    }
    broker.request(&id, &[b"c2"], &[b"quick"]);
    assert_eq!(
        broker.expect_reply(&id),
        (frames(&[b"c2"]), frames(&[b"quick"]))
    );
    let (_, stats, _) = worker.stop();
    assert_eq!(
        (stats.timeouts, stats.late_replies, stats.replies),
        (1, 1, 2)
    );
}

#[test]
fn request_timeout_on_an_inline_worker_is_refused() {
    let cfg = config("tcp://127.0.0.1:5555", "svc").request_timeout(Duration::from_secs(1));
    match Worker::new(cfg, echo) {
        Err(Error::Config(ConfigError::InvalidValue { field, .. })) => {
            assert_eq!(field, "request_timeout")
        }
        other => panic!("expected a request_timeout error, got {other:?}"),
    }
}

fn drain_disconnects_and_goes_quiet_and_resume_registers_a_new_socket(driver: Driver) {
    let broker = TestBroker::tcp();
    let drain = DrainHandle::new();
    let worker = RunningWorker::spawn_with(
        driver,
        config(&broker.endpoint, "svc").drain_handle(drain.clone()),
        echo,
    );
    let first = broker.expect_ready("svc");
    drain.drain();
    let (from, got) = broker.recv_skipping_heartbeats();
    assert_eq!(from, first);
    assert!(
        is_command(&got, DISCONNECT),
        "expected DISCONNECT, got {got:?}"
    );
    assert!(
        broker.try_recv(Duration::from_millis(150)).is_none(),
        "a drained worker must not talk to the broker"
    );
    drain.resume();
    let (second, got) = broker.recv();
    assert!(is_command(&got, READY), "expected READY, got {got:?}");
    assert_ne!(first, second);
    broker.request(&second, &[b"c"], &[b"back"]);
    assert_eq!(broker.expect_reply(&second).1, frames(&[b"back"]));
    worker.stop();
}

fn events_tell_the_worker_life_in_order(driver: Driver) {
    let broker = TestBroker::tcp();
    let events = Events::bounded(64);
    let drain = DrainHandle::new();
    let cfg = config(&broker.endpoint, "svc")
        .events(&events)
        .drain_handle(drain.clone());
    let worker = RunningWorker::spawn_with(driver, cfg, panics_on_boom);
    let id = broker.expect_ready("svc");
    broker.request(&id, &[b"c"], &[b"hello"]);
    broker.expect_reply(&id);
    broker.request(&id, &[b"c"], &[b"boom"]);
    broker.expect_reply(&id);
    drain.drain();
    broker.recv_skipping_heartbeats(); // DISCONNECT
    worker.stop();
    let seen: Vec<Event> = events.receiver().try_iter().collect();
    let names: Vec<String> = seen.iter().map(describe).collect();
    assert_eq!(
        names,
        vec![
            "connected",
            "started 1 frame 5 bytes",
            "finished Replied",
            "started 1 frame 4 bytes",
            "panicked: asked to explode",
            "finished Panicked",
            "disconnected Drained",
            "drained",
            "stopped",
        ]
    );
    assert_eq!(events.dropped(), 0);
}

fn describe(event: &Event) -> String {
    match event {
        Event::Connected { .. } => "connected".into(),
        Event::RequestStarted { frames, bytes, .. } => {
            format!("started {frames} frame {bytes} bytes")
        }
        Event::RequestFinished { outcome, .. } => format!("finished {outcome:?}"),
        Event::ActionPanicked { message, .. } => format!("panicked: {message}"),
        Event::Disconnected { reason, .. } => format!("disconnected {reason:?}"),
        Event::Drained { .. } => "drained".into(),
        Event::Stopped { .. } => "stopped".into(),
        other => format!("{other:?}"),
    }
}

fn reconnect_events_carry_the_reason_attempt_and_delay(driver: Driver) {
    let broker = TestBroker::tcp();
    let events = Events::bounded(64);
    let cfg = config(&broker.endpoint, "svc").events(&events);
    let worker = RunningWorker::spawn_with(driver, cfg, echo);
    let id = broker.expect_ready("svc");
    broker.send(&id, &[b"", b"MDPW01", &[DISCONNECT]]);
    broker.recv_skipping_heartbeats(); // the new READY
    worker.stop();
    let seen: Vec<Event> = events.receiver().try_iter().collect();
    let disconnected = seen.iter().position(|e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::BrokerDisconnected,
                ..
            }
        )
    });
    let disconnected = disconnected.expect("a Disconnected event");
    match &seen[disconnected + 1] {
        Event::Reconnecting { attempt, delay, .. } => {
            assert_eq!(*attempt, 1);
            assert!(*delay <= Duration::from_millis(10), "delay {delay:?}");
        }
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    assert!(matches!(seen[disconnected + 2], Event::Connected { .. }));
}

#[test]
fn shutdown_mid_request_on_the_action_thread_sends_the_reply_then_disconnect() {
    let broker = TestBroker::tcp();
    let action = |request: Vec<Message>| {
        thread::sleep(Duration::from_millis(150));
        request
    };
    let worker = RunningWorker::spawn_threaded(config(&broker.endpoint, "slow"), action);
    let id = broker.expect_ready("slow");
    broker.request(&id, &[b"c"], &[b"finish"]);
    thread::sleep(Duration::from_millis(30));
    let (outcomes, stats, _) = worker.stop();
    assert_eq!(broker.expect_reply(&id).1, frames(&[b"finish"]));
    let (_, got) = broker.recv_skipping_heartbeats();
    assert!(
        is_command(&got, DISCONNECT),
        "expected DISCONNECT, got {got:?}"
    );
    assert_eq!(stats.replies, 1);
    assert_eq!(outcomes.len(), 2);
}

crate::for_each_driver!(
    a_panicking_action_is_answered_with_the_panic_reply_and_the_worker_serves_on,
    a_custom_panic_reply_is_sent_as_configured,
    a_request_of_five_liveness_windows_keeps_heartbeating_and_never_reconnects,
    drain_disconnects_and_goes_quiet_and_resume_registers_a_new_socket,
    events_tell_the_worker_life_in_order,
    reconnect_events_carry_the_reason_attempt_and_delay,
);

// A deadline needs an action the worker can leave running or cancel: not the inline one.
#[test]
fn threaded_a_passed_deadline_sends_the_timeout_reply_and_the_late_result_is_dropped() {
    a_passed_deadline_sends_the_timeout_reply_and_the_late_result_is_dropped(Driver::Threaded);
}

#[cfg(feature = "tokio")]
#[test]
fn tokio_a_passed_deadline_sends_the_timeout_reply_and_the_late_result_is_dropped() {
    a_passed_deadline_sends_the_timeout_reply_and_the_late_result_is_dropped(Driver::Async);
}
