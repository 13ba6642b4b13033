//! `mdp bench`, the real binary: embedded runs with a small load, the JSON report, the kill and
//! restart of a worker (what `make demo` shows), and refused flags.

use assert_cmd::Command;
use serde_json::Value;

fn mdp() -> Command {
    let mut command = Command::cargo_bin("mdp").expect("the mdp binary");
    // An embedded run, whatever the environment says.
    command.env_remove("MDP_BROKER");
    command
}

/// Runs `mdp bench --json` with `args`; the exit code and the one JSON object on stdout.
fn bench_json(args: &[&str]) -> (Option<i32>, Value) {
    let output = mdp()
        .args(["bench", "--json"])
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is missing or not a number in {report}"))
}

#[test]
fn an_embedded_bench_checks_every_reply_and_prints_only_json() {
    let (code, report) = bench_json(&["--requests", "2000"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["mode"], "embedded");
    assert_eq!(report["ok"], true);
    assert_eq!(report["workers"], 4);
    assert_eq!(report["service"], "echo");
    assert!(report["broker"]
        .as_str()
        .is_some_and(|b| b.starts_with("tcp://127.0.0.1:")));
    for field in ["/requests", "/replies", "/correct", "/sent"] {
        assert_eq!(number(&report, field), 2000.0, "{field}");
    }
    for field in [
        "/errors/total",
        "/errors/timeouts",
        "/errors/wrong_replies",
        "/errors/other",
    ] {
        assert_eq!(number(&report, field), 0.0, "{field}");
    }
    for field in ["/lost", "/duplicated", "/retried"] {
        assert_eq!(number(&report, field), 0.0, "{field}");
    }
    let percentiles: Vec<f64> = ["min", "p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|p| number(&report, &format!("/latency_us/{p}")))
        .collect();
    assert!(percentiles[0] > 0.0, "{percentiles:?}");
    assert!(
        percentiles.windows(2).all(|w| w[0] <= w[1]),
        "{percentiles:?}"
    );
    assert!(number(&report, "/throughput_rps") > 0.0);
    assert_eq!(number(&report, "/broker_stats/replies_routed"), 2000.0);
    assert!(report["kill"].is_null());
}

#[test]
fn a_worker_killed_half_way_is_restarted_and_no_request_is_lost() {
    let (code, report) = bench_json(&[
        "--kill-one",
        "--requests",
        "2000",
        "--workers",
        "2",
        "--clients",
        "4",
        "--size",
        "32",
        "--timeout",
        "300ms",
    ]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(number(&report, "/correct"), 2000.0);
    assert_eq!(number(&report, "/lost"), 0.0);
    assert_eq!(number(&report, "/duplicated"), 0.0);
    assert_eq!(number(&report, "/errors/total"), 0.0);
    let kill = &report["kill"];
    assert!(number(kill, "/at") >= 1000.0, "{kill}");
    let killed = number(kill, "/killed_pid");
    let restarted = number(kill, "/restarted_pid");
    assert!(
        killed > 0.0 && restarted > 0.0 && killed != restarted,
        "{kill}"
    );
    // Every attempt beyond the first was a retry after a timeout; every request the broker
    // dispatched and never saw answered (lost with the killed worker) was sent again. A
    // dispatch the ROUTER refused (the worker's connection was already gone) is no loss: the
    // broker dispatched that request again itself, so it counts twice in `dispatched`.
    let retried = number(&report, "/retried");
    assert_eq!(number(&report, "/sent"), 2000.0 + retried);
    let dispatched = number(&report, "/broker_stats/requests_dispatched");
    let routed = number(&report, "/broker_stats/replies_routed");
    let undelivered = number(&report, "/broker_stats/requests_undelivered");
    assert!(retried >= dispatched - routed - undelivered, "{report}");
}

#[test]
fn the_human_report_names_the_kill_and_the_verdict() {
    let output = mdp()
        .args([
            "bench",
            "--kill-one",
            "--requests",
            "400",
            "--timeout",
            "300ms",
        ])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    for line in [
        "throughput",
        "p99.9",
        "killed with SIGKILL",
        "lost         0",
        "result       OK",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn bad_bench_flags_are_usage_errors_with_exit_code_2() {
    for args in [
        &["--no-such-flag"][..],
        &["--clients", "0"],
        &["--size", "4"],
        &["--timeout", "soon"],
        &["--kill-one", "--broker", "tcp://127.0.0.1:5555"],
    ] {
        let output = mdp().arg("bench").args(args).output().expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
