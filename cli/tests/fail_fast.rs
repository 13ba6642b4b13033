//! The tools fail fast and say why, and leave no request behind for a client long gone:
//! `mdp call`, `mdp bench`, `mdp ping`, `mdp services` and `mdp top` against a broker with no
//! worker for the service, and against an endpoint where nothing listens; and `mdp call` with a
//! list of brokers whose first is dead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use majordomo_worker::testkit::TestBroker;
use majordomo_worker::{zmq, Message};

/// Longest any `mdp` run of these tests may take before it fails.
const WATCHDOG: Duration = Duration::from_secs(20);

fn mdp(args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let output = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(args)
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
        started.elapsed(),
    )
}

/// A `tcp://127.0.0.1:PORT` where nothing listens: a port the OS gave and took back.
fn dead_endpoint() -> String {
    let router = zmq::Context::new().socket(zmq::ROUTER).expect("socket");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    router
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8")
}

/// Starts a worker for `service` that records every body it runs, then sends it one marker
/// request and waits for the reply: the broker hands queued requests out in order, so
/// anything queued before the marker has been run by then. The bodies run, marker last.
fn bodies_run_by_a_late_worker(broker: &TestBroker, service: &str) -> Vec<Vec<u8>> {
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&runs);
    let action = move |request: Vec<Message>| {
        let body = request.first().map(|f| f.to_vec()).unwrap_or_default();
        seen.lock().unwrap().push(body);
        request
    };
    let worker = broker.spawn_worker(service, action).expect("worker");
    let mut client = broker.client().expect("client");
    let reply = client.request(service, &["marker"]).expect("marker reply");
    assert_eq!(reply, [b"marker".to_vec()]);
    worker.stop().expect("stop worker");
    let runs = runs.lock().unwrap().clone();
    runs
}

#[test]
fn a_call_that_gives_up_on_a_service_without_workers_leaves_nothing_for_a_worker_started_later() {
    let broker = TestBroker::tcp().expect("broker");
    let (code, stdout, stderr, took) = mdp(&[
        "call",
        "nosuch",
        "hello",
        "--broker",
        broker.endpoint(),
        "--timeout",
        "300ms",
        "--retries",
        "3",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no worker for `nosuch`"), "{stderr}");
    assert!(!stderr.contains("mmi"), "{stderr}");
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    // A worker for it comes up well within 2 s of the call giving up.
    let runs = bodies_run_by_a_late_worker(&broker, "nosuch");
    assert_eq!(runs, [b"marker".to_vec()], "the given-up request was run");
}

#[test]
fn bench_against_a_service_without_workers_says_so_and_leaves_nothing_queued() {
    let broker = TestBroker::tcp().expect("broker");
    let (code, _, stderr, _) = mdp(&[
        "bench",
        "--broker",
        broker.endpoint(),
        "--service",
        "nosuch",
        "--requests",
        "100",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no worker for `nosuch`"), "{stderr}");
    assert_eq!(broker.stats().queued_requests, 0);
    let runs = bodies_run_by_a_late_worker(&broker, "nosuch");
    assert_eq!(runs, [b"marker".to_vec()], "bench left requests behind");
}

#[test]
fn ping_says_no_worker_without_internal_names() {
    let broker = TestBroker::tcp().expect("broker");
    let (code, _, stderr, _) = mdp(&["ping", "nosuch", "--broker", broker.endpoint()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no worker for `nosuch`"), "{stderr}");
    assert!(!stderr.contains("mmi"), "{stderr}");
}

#[test]
fn every_tool_says_nothing_answers_at_a_dead_endpoint_after_one_attempt_and_exits_4() {
    let dead = dead_endpoint();
    let timeout = Duration::from_millis(300);
    let runs: [&[&str]; 5] = [
        &["call", "echo", "x", "--retries", "3"],
        &["ping", "echo", "--retries", "3"],
        &["services"],
        &["top", "--once"],
        &["bench", "--requests", "50"],
    ];
    for args in runs {
        let mut all = args.to_vec();
        all.extend(["--broker", &dead, "--timeout", "300ms"]);
        let (code, stdout, stderr, took) = mdp(&all);
        let what = args[0];
        assert_eq!(code, Some(4), "{what}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("nothing answers at {dead}")),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("mmi"), "{what}: {stderr}");
        // One attempt, not `--retries` more: well under two timeouts (process start aside).
        assert!(
            took < timeout * 2 + Duration::from_millis(400),
            "{what}: took {took:?}"
        );
    }
}

#[test]
fn call_with_a_dead_broker_first_in_its_list_gets_the_reply_from_the_next() {
    let broker = TestBroker::tcp().expect("broker");
    let worker = broker
        .spawn_worker("echo", |r: Vec<Message>| r)
        .expect("worker");
    let list = format!("{},{}", dead_endpoint(), broker.endpoint());
    let (code, stdout, stderr, _) = mdp(&[
        "call",
        "echo",
        "hi",
        "--broker",
        &list,
        "--timeout",
        "300ms",
    ]);
    assert_eq!((code, stdout.as_str()), (Some(0), "hi"), "{stderr}");
    let (code, _, stderr, _) = mdp(&["call", "echo", "--broker", "tcp://127.0.0.1:1,"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("empty item at position 1"), "{stderr}");
    worker.stop().expect("stop worker");
}
