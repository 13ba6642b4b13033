//! `mdp services` and `mdp top --once`, the real binary against our broker with an echo
//! worker (the testkit's, on `tcp://127.0.0.1:*`), and against a raw ROUTER that answers
//! 501 to every request, as any broker without our MMI extensions does.

use std::process::Output;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use assert_cmd::Command;
use majordomo_worker::testkit::{TestBroker, WorkerThread};
use majordomo_worker::Message;
use serde_json::Value;

/// Requests sent through the echo worker before each look.
const REQUESTS: u64 = 7;

fn mdp() -> Command {
    Command::cargo_bin("mdp").expect("the mdp binary")
}

/// Our broker with one echo worker that has answered [`REQUESTS`] requests.
fn busy_echo() -> (TestBroker, WorkerThread) {
    let broker = TestBroker::tcp().expect("broker");
    let worker = broker
        .spawn_worker("echo", |request: Vec<Message>| request)
        .expect("echo worker");
    let mut client = broker.client().expect("client");
    for i in 0..REQUESTS {
        let body = i.to_string();
        assert_eq!(
            client.request("echo", &[body.as_str()]).expect("reply"),
            vec![body.into_bytes()]
        );
    }
    (broker, worker)
}

/// A ROUTER on a free port that answers one request with `501`, as an MDP client reply.
fn router_answering_501() -> (String, JoinHandle<Vec<u8>>) {
    let context = zmq::Context::new();
    let router = context.socket(zmq::ROUTER).expect("socket");
    router.set_linger(0).expect("linger");
    router.set_rcvtimeo(10_000).expect("watchdog");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = router
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8");
    let answering = thread::spawn(move || {
        let frames = router.recv_multipart(0).expect("a request within 10 s");
        let (client, service) = (&frames[0], &frames[3]);
        let reply: [&[u8]; 5] = [client, b"", b"MDPC01", service, b"501"];
        router.send_multipart(reply, 0).expect("send");
        thread::sleep(Duration::from_millis(100)); // linger 0: let the reply leave
        service.clone()
    });
    (endpoint, answering)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&output.stdout)))
}

#[test]
fn services_lists_the_echo_service_with_its_worker_and_served_count() {
    let (broker, _worker) = busy_echo();
    let output = mdp()
        .args(["services", "--json", "--broker", broker.endpoint()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let report = json(&output);
    assert_eq!(report["broker"], broker.endpoint());
    let services = report["services"].as_array().expect("services");
    assert_eq!(services.len(), 1, "{report}");
    let echo = &services[0];
    assert_eq!(echo["name"], "echo");
    assert_eq!(echo["workers"], 1);
    assert_eq!(echo["waiting"], 1);
    assert_eq!(echo["queued"], 0);
    assert_eq!(echo["served"], REQUESTS);
    assert_eq!(echo["oldest_queued_ms"], 0);
}

#[test]
fn services_prints_a_table_by_default() {
    let (broker, _worker) = busy_echo();
    let output = mdp()
        .args(["services", "--broker", broker.endpoint()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["SERVICE", "WORKERS", "WAITING", "QUEUED", "SERVED", "OLDEST"],
            vec!["echo", "1", "1", "0", "7", "-"],
        ]
    );
}

#[test]
fn services_against_a_broker_that_answers_501_says_not_supported_and_exits_1() {
    let (endpoint, router) = router_answering_501();
    let output = mdp()
        .args(["services", "--timeout", "5s", "--broker", &endpoint])
        .output()
        .expect("run");
    assert_eq!(router.join().expect("router"), b"mmi.services");
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("this broker does not list its services"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
}

#[test]
fn top_once_prints_a_table_with_the_service_and_its_counts() {
    let (broker, _worker) = busy_echo();
    let output = mdp()
        .args(["top", "--once", broker.endpoint()])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains(broker.endpoint()), "{stdout}");
    assert!(
        lines[1].starts_with("1 service  1 worker (1 waiting)  0 queued  7 served"),
        "{stdout}"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("SERVICE"))
        .expect("header");
    let columns: Vec<&str> = lines[header].split_whitespace().collect();
    assert_eq!(
        columns,
        ["SERVICE", "WORKERS", "WAITING", "QUEUED", "SERVED", "RATE/S", "OLDEST"]
    );
    let echo: Vec<&str> = lines[header + 1].split_whitespace().collect();
    assert_eq!(echo, ["echo", "1", "1", "0", "7", "-", "-"], "{stdout}");
}

#[test]
fn top_without_a_terminal_prints_one_frame_and_exits() {
    let (broker, _worker) = busy_echo();
    let output = mdp()
        .args(["top", "--broker", broker.endpoint()])
        .timeout(Duration::from_secs(10))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.matches("SERVICE").count(), 1, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("echo ")), "{stdout}");
}

#[test]
fn top_once_against_a_broker_that_answers_501_says_not_supported() {
    let (endpoint, router) = router_answering_501();
    let output = mdp()
        .args(["top", "--once", "--timeout", "5s", &endpoint])
        .output()
        .expect("run");
    router.join().expect("router");
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&endpoint), "{stdout}");
    assert!(stdout.contains("does not list its services"), "{stdout}");
    assert!(!stdout.contains("SERVICE"), "{stdout}");
}

#[test]
fn top_refuses_an_interval_below_100ms_as_a_usage_error() {
    let output = mdp()
        .args(["top", "--once", "--interval", "10ms", "tcp://127.0.0.1:1"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--interval"));
}
