//! `mdp check broker` and `mdp check worker`, the real binary against our broker and worker
//! (all pass) and against raw sockets that break the protocol (failures, exit code 1).
//!
//! Heartbeats are 100 ms and waits short, so each run takes a few seconds; every wait of the
//! tool is bounded, so no test can hang.

use std::net::TcpListener;
use std::process::{Child, Command as Process, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::testkit::WorkerThread;
use majordomo_worker::{Message, Worker, WorkerConfig};
use serde_json::Value;

const HEARTBEAT: Duration = Duration::from_millis(100);

fn mdp() -> Command {
    Command::cargo_bin("mdp").expect("the mdp binary")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Each check's name and result, for assertion messages.
fn results(report: &Value) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("result"), text("detail"))
        })
        .collect()
}

fn result_of(report: &Value, name: &str) -> String {
    results(report)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, r, _)| r)
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// A TCP port free a moment ago on 127.0.0.1.
fn free_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("address").port();
    format!("tcp://127.0.0.1:{port}")
}

#[test]
fn check_broker_passes_every_check_against_our_broker_and_reports_its_dialect() {
    let config = BrokerConfig::new("tcp://127.0.0.1:*").heartbeat(HEARTBEAT);
    let broker = Broker::bind(config).expect("bind").spawn().expect("spawn");
    let output = mdp()
        .args([
            "check",
            "broker",
            "--heartbeat-ms",
            "100",
            "--wait-ms",
            "1000",
        ])
        .args(["--json", broker.endpoint()])
        .output()
        .expect("run");
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{:#?}", results(&report));
    assert_eq!(report["passed"], true);
    assert_eq!(report["counts"]["fail"], 0);
    assert_eq!(report["counts"]["pass"], 11, "{:#?}", results(&report));
    let dialect = &report["dialect"];
    let interval = dialect["heartbeat_idle_ms"].as_u64().expect("an interval");
    assert!((50..=300).contains(&interval), "{interval} ms");
    assert!(dialect["heartbeat_busy"]
        .as_str()
        .unwrap()
        .starts_with("none"));
    assert_eq!(dialect["unknown_service"], "queued");
    assert_eq!(dialect["mmi_service"], "served 200, unknown 404");
    assert_eq!(dialect["mmi_other"], "mmi.foo: 501");
    assert!(dialect["client_reply"]
        .as_str()
        .unwrap()
        .starts_with("standard"));
    assert_eq!(dialect["stopped_answering_after"], Value::Null);
    let registration = &report["checks"][0];
    assert_eq!(registration["name"], "registration");
    assert_eq!(
        registration["frames_seen"][0]["frames"][1]["ascii"],
        "MDPW01"
    );
}

#[test]
fn check_broker_fails_against_a_router_that_answers_nothing() {
    let context = zmq::Context::new();
    let router = context.socket(zmq::ROUTER).expect("socket");
    router.set_linger(0).expect("linger");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = router
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8");
    let output = mdp()
        .args([
            "check",
            "broker",
            "--heartbeat-ms",
            "100",
            "--wait-ms",
            "200",
        ])
        .arg(&endpoint)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("FAIL registration: no REQUEST"), "{text}");
    assert_nothing_answered(&output, &endpoint);
}

/// Exit 4 (nothing answers, as for every tool), the first check failed, every other skipped
/// because nothing answered, and the error says so.
fn assert_nothing_answered(output: &Output, endpoint: &str) {
    assert_eq!(output.status.code(), Some(4));
    let text = String::from_utf8_lossy(&output.stdout);
    let said = format!("nothing answered at {endpoint}: is a broker running there?");
    assert_eq!(text.matches("FAIL").count(), 1, "{text}");
    assert!(text.contains("FAIL registration"), "{text}");
    assert_eq!(
        text.matches(&format!("SKIP heartbeat-idle: {said}"))
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.contains(&format!("SKIP malformed-client: {said}")),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim(), format!("mdp: {said}"));
}

#[test]
fn check_broker_stops_at_once_and_says_nothing_answered_where_nothing_listens() {
    let endpoint = free_endpoint();
    let started = Instant::now();
    let output = mdp()
        .args(["check", "broker", "--wait-ms", "300", &endpoint])
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run");
    let took = started.elapsed();
    assert_nothing_answered(&output, &endpoint);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn check_broker_leaves_no_queued_request_and_no_worker_behind() {
    // Workers are not expired during the run (liveness 100 × 100 ms): what is left is left.
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(HEARTBEAT)
        .liveness(100);
    let broker = Broker::bind(config).expect("bind").spawn().expect("spawn");
    let output = mdp()
        .args([
            "check",
            "broker",
            "--heartbeat-ms",
            "100",
            "--wait-ms",
            "500",
        ])
        .args(["--json", broker.endpoint()])
        .output()
        .expect("run");
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{:#?}", results(&report));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut stats = broker.stats();
    while (stats.workers, stats.queued_requests) != (0, 0) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        stats = broker.stats();
    }
    assert_eq!((stats.workers, stats.queued_requests), (0, 0), "{stats:?}");
    assert_eq!(stats.workers_expired, 0);
    assert!(report["dialect"]["workers_disconnected_at_end"].as_u64() > Some(0));
}

/// `mdp check worker --bind endpoint ARGS…`, started in the background.
fn spawn_check_worker(endpoint: &str, args: &[&str]) -> Child {
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("mdp"))
        .args([
            "check",
            "worker",
            "--bind",
            endpoint,
            "--heartbeat-ms",
            "100",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mdp");
    // Bound before the worker connects, or the worker's first READY waits for a retry.
    thread::sleep(Duration::from_millis(150));
    if let Ok(Some(status)) = child.try_wait() {
        panic!("mdp exited early: {status}");
    }
    child
}

/// Echoes, and takes 4 heartbeats over a request whose body is `slow`.
fn echo_or_sleep(request: Vec<Message>) -> Vec<Message> {
    if request.first().is_some_and(|f| &f[..] == b"slow") {
        thread::sleep(HEARTBEAT * 4);
    }
    request
}

#[test]
fn check_worker_passes_every_check_against_our_worker() {
    let endpoint = free_endpoint();
    let args = ["--tolerance-ms", "150", "--slow-body", "slow", "--json"];
    let check = spawn_check_worker(&endpoint, &args);
    let config = WorkerConfig::new(&endpoint, "mdp-check-test")
        .heartbeat(HEARTBEAT)
        .reconnect(HEARTBEAT)
        .reconnect_max(HEARTBEAT * 2);
    let worker = Worker::threaded(config, echo_or_sleep).expect("worker");
    let worker = WorkerThread::spawn(worker).expect("spawn worker");
    let output = check.wait_with_output().expect("mdp");
    drop(worker);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{:#?}", results(&report));
    assert_eq!(report["counts"]["pass"], 6, "{:#?}", results(&report));
    let observed = &report["observed"];
    assert_eq!(observed["service"], "mdp-check-test");
    assert_eq!(observed["reply_body"], "the request's body (an echo)");
    assert_ne!(observed["identity"], observed["identity_after_disconnect"]);
    let worst = observed["heartbeat_max_interval_ms"].as_u64().expect("ms");
    assert!(worst <= 250, "{worst} ms");
}

#[test]
fn check_worker_fails_a_worker_that_heartbeats_before_ready() {
    let endpoint = free_endpoint();
    let check = spawn_check_worker(&endpoint, &["--wait-ms", "1000", "--json"]);
    let context = zmq::Context::new();
    let dealer = context.socket(zmq::DEALER).expect("socket");
    dealer.set_linger(0).expect("linger");
    dealer.connect(&endpoint).expect("connect");
    let heartbeat: [&[u8]; 3] = [b"", b"MDPW01", &[0x04]];
    dealer.send_multipart(heartbeat, 0).expect("send");
    let output = check.wait_with_output().expect("mdp");
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(result_of(&report, "ready-first"), "fail");
    assert!(report["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("was HEARTBEAT, not a well-formed READY"));
    assert_eq!(result_of(&report, "envelope-kept"), "skip");
}

#[test]
fn both_sides_of_check_give_an_example_in_their_help() {
    for side in ["broker", "worker"] {
        let output = mdp().args(["check", side, "--help"]).output().expect("run");
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("Example"));
    }
}

#[test]
fn a_bad_endpoint_is_a_usage_error() {
    let output = mdp()
        .args(["check", "broker", "nonsense://x"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}
