//! Heartbeats never stop: a worker busy with a long request keeps heartbeating in every mode,
//! so a broker that expires any worker silent for `liveness` heartbeats (the Node
//! `zmdp-suite` and wdl83/mdp brokers do so, busy or not: see MDP.md) keeps it. One table of
//! drivers, the same assertions for each.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use majordomo_worker::{Message, Received};

const INTERVAL: Duration = Duration::from_millis(20);
/// The strict broker's liveness: a worker silent this long is expired, busy or not.
const STRICT_LIVENESS: u32 = 3;
/// The request lasts ten heartbeats.
const WORK: Duration = Duration::from_millis(200);

const DRIVERS: &[Driver] = &[
    Driver::Inline,
    Driver::Threaded,
    #[cfg(feature = "tokio")]
    Driver::Async,
];

fn slow(request: Vec<Message>) -> Vec<Message> {
    thread::sleep(WORK);
    request
}

fn spawn(driver: Driver, endpoint: &str) -> RunningWorker {
    RunningWorker::spawn_with(driver, config(endpoint, "slow").heartbeat(INTERVAL), slow)
}

/// Plays a strict broker for one long request: records when each message of the worker
/// arrives, and fails the worker (as those brokers would) if it is ever silent for
/// `heartbeat × STRICT_LIVENESS`. Returns the arrival gaps and the REPLY's body.
fn serve_one_long_request(broker: &TestBroker, id: &[u8]) -> (Vec<Duration>, Frames) {
    broker.request(id, &[b"client-1"], &[b"long job"]);
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    loop {
        let (from, frames) = broker.recv();
        let now = Instant::now();
        gaps.push(now - last);
        last = now;
        assert_eq!(from, id, "a message from another socket: {frames:?}");
        if is_command(&frames, REPLY) {
            return (gaps, frames[5..].to_vec());
        }
        assert!(
            is_command(&frames, HEARTBEAT),
            "only HEARTBEATs before the REPLY, got {frames:?}"
        );
    }
}

#[test]
fn a_worker_busy_for_ten_heartbeats_keeps_heartbeating_in_every_mode() {
    for &driver in DRIVERS {
        let broker = TestBroker::tcp();
        let worker = spawn(driver, &broker.endpoint);
        let id = broker.expect_ready("slow");
        let (gaps, body) = serve_one_long_request(&broker, &id);
        assert_eq!(body, frames(&[b"long job"]), "{driver:?}");
        let window = INTERVAL * STRICT_LIVENESS;
        let heartbeats = gaps.len() - 1;
        // Ten heartbeats of work; scheduling noise may merge or delay a few, never all.
        assert!(
            heartbeats >= 5,
            "{driver:?}: {heartbeats} heartbeats during a {WORK:?} request"
        );
        let longest = gaps.iter().max().copied().unwrap_or_default();
        assert!(
            longest < window,
            "{driver:?}: silent for {longest:?}, a strict broker expires after {window:?}"
        );
        let (outcomes, stats, _) = worker.stop();
        assert_eq!(outcomes, vec![Received::Handled, Received::ShutDown]);
        assert_eq!(stats.reconnects, 0, "{driver:?}");
        assert!(stats.heartbeats_sent >= heartbeats as u64, "{driver:?}");
    }
}

#[test]
fn heartbeats_sent_while_busy_do_not_double_up_after_the_reply() {
    let broker = TestBroker::tcp();
    let worker = spawn(Driver::Inline, &broker.endpoint);
    let id = broker.expect_ready("slow");
    serve_one_long_request(&broker, &id);
    // After the reply the loop takes heartbeating back from the heartbeater: the next ones
    // keep the cadence instead of a burst of "overdue" heartbeats.
    let start = Instant::now();
    let mut beats = 0;
    while start.elapsed() < INTERVAL * 10 {
        if let Some((_, frames)) = broker.try_recv(INTERVAL * 3) {
            assert!(is_command(&frames, HEARTBEAT), "{frames:?}");
            beats += 1;
        }
    }
    assert!(beats <= 13, "{beats} heartbeats in 10 intervals");
    worker.stop();
}
