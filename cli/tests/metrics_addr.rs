//! `--metrics-addr` of `mdp broker` and `mdp worker`: real processes on ports reserved just
//! before, a request through them, and their `/metrics` and `/healthz` over plain HTTP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command as StdCommand, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use assert_cmd::Command;

/// Longest any wait of these tests may take before it fails.
const WATCHDOG: Duration = Duration::from_secs(10);

/// An `mdp` child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` distinct ports nobody listens on right now (bound together, read, released).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind :0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

fn spawn(args: &[&str]) -> Running {
    let child = StdCommand::new(cargo_bin("mdp"))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mdp");
    Running(child)
}

/// GET `path` on `127.0.0.1:port`: the status and the body, `None` while nobody listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(WATCHDOG)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

/// The value of the sample `series` (everything before the value) in `/metrics` of `port`.
fn sample(port: u16, series: &str) -> Option<f64> {
    let (_, text) = get(port, "/metrics")?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn broker_and_worker_metrics_count_a_request_and_the_worker_is_healthy_once_registered() {
    let [port, broker_metrics, worker_metrics] = free_ports();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let broker_addr = format!("127.0.0.1:{broker_metrics}");
    let worker_addr = format!("127.0.0.1:{worker_metrics}");
    let _broker = spawn(&[
        "broker",
        "--bind",
        &endpoint,
        "--heartbeat-ms",
        "100",
        "--metrics-addr",
        &broker_addr,
    ]);
    wait_until("the broker serves /healthz", || {
        get(broker_metrics, "/healthz").is_some()
    });
    let _worker = spawn(&[
        "worker",
        "echo",
        "--broker",
        &endpoint,
        "--heartbeat-ms",
        "100",
        "--reconnect-ms",
        "100",
        "--metrics-addr",
        &worker_addr,
        "--",
        "cat",
    ]);
    wait_until("the worker is ready", || {
        get(worker_metrics, "/healthz") == Some((200, "ready\n".into()))
    });

    let output = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args([
            "call",
            "--broker",
            &endpoint,
            "--timeout",
            "5s",
            "echo",
            "hi",
        ])
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp call");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"hi");

    for (port, series) in [
        (
            broker_metrics,
            r#"mdp_broker_service_requests_total{service="echo"}"#,
        ),
        (
            broker_metrics,
            r#"mdp_broker_service_replies_total{service="echo"}"#,
        ),
        (
            worker_metrics,
            r#"mdp_worker_requests_total{service="echo"}"#,
        ),
        (
            worker_metrics,
            r#"mdp_worker_replies_total{service="echo"}"#,
        ),
    ] {
        wait_until(&format!("{series} is 1 on :{port}"), || {
            sample(port, series) == Some(1.0)
        });
    }
    assert_eq!(
        sample(worker_metrics, r#"mdp_worker_registered{service="echo"}"#),
        Some(1.0)
    );
}

#[test]
fn a_metrics_addr_that_is_not_ip_port_is_a_usage_error() {
    for subcommand in [&["broker"][..], &["worker", "echo"]] {
        let output = Command::cargo_bin("mdp")
            .expect("the mdp binary")
            .args(subcommand)
            .args(["--metrics-addr", "localhost"])
            .args(if subcommand.len() > 1 {
                &["--", "cat"][..]
            } else {
                &[]
            })
            .timeout(WATCHDOG)
            .output()
            .expect("run mdp");
        assert_eq!(output.status.code(), Some(2), "{subcommand:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("invalid value 'localhost' for '--metrics-addr <ADDR>'"),
            "{stderr}"
        );
    }
}

#[test]
fn a_metrics_addr_in_use_fails_with_exit_3_and_says_so() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    let addr = taken.local_addr().expect("local address").to_string();
    let [port] = free_ports();
    let output = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(["broker", "--bind", &format!("tcp://127.0.0.1:{port}")])
        .args(["--metrics-addr", &addr])
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp broker");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("mdp: cannot serve metrics on {addr}")),
        "{stderr}"
    );
}
