//! Runs the demo of `examples/demo.rs` with a small load, so that CI exercises its code path:
//! broker, workers, clients, a worker killed with SIGKILL half-way and restarted, the report.
//!
//! The killable worker is a child process. The example starts itself for that; here it is
//! this test binary, started to run only `the_demos_child_worker`, which serves until its
//! stdin closes.

use std::io;
use std::process::Command;

#[allow(dead_code)] // the example's `main` and argument parsing are not used here
#[path = "../examples/demo.rs"]
mod demo;

/// Tells the child test which broker to serve.
const CHILD_ENDPOINT: &str = "MAJORDOMO_DEMO_CHILD_ENDPOINT";

fn child_worker(endpoint: &str) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "the_demos_child_worker",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads=1", "--quiet"])
        .env(CHILD_ENDPOINT, endpoint);
    Ok(command)
}

#[test]
#[ignore = "the demo's killable worker, run as a child process by the demo test"]
fn the_demos_child_worker() {
    if let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) {
        demo::serve_victim(&endpoint).expect("child worker");
    }
}

#[test]
fn the_demo_gets_every_reply_exactly_once_although_a_worker_is_killed_half_way() {
    let options = demo::Options {
        requests: 2_000,
        workers: 2,
        clients: 4,
        body_bytes: 32,
        progress: false,
        victim: child_worker,
    };
    let report = demo::run(&options).expect("the demo runs");
    println!("{report}");

    assert_eq!(report.checked, 2_000);
    assert_eq!((report.errors, report.lost, report.duplicated), (0, 0, 0));
    assert!(report.is_ok());
    let kill = report.kill.as_ref().expect("the child worker was killed");
    assert!(kill.at >= 1_000, "killed after {} replies", kill.at);
    assert_ne!(kill.killed_pid, kill.restarted_pid);
    assert_eq!(report.latencies_us.len(), 2_000);
    assert!(report.latency(0.5) <= report.latency(0.99));
    // Every request the broker dispatched and never saw answered was resent by its client.
    let unanswered = report.broker.requests_dispatched - report.broker.replies_routed;
    assert!(report.resent() >= unanswered, "{report}");
}
