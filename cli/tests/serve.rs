//! `mdp worker`, `mdp call`, `mdp ping` and `mdp broker` against a real broker: our library's
//! on a free port of 127.0.0.1, or `mdp broker` itself on a port reserved just before.

use std::path::PathBuf;
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use assert_cmd::Command;
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig};

/// Longest any wait of these tests may take before it fails.
const WATCHDOG: Duration = Duration::from_secs(10);

fn broker() -> BrokerHandle {
    let config = BrokerConfig::new("tcp://127.0.0.1:*").heartbeat(Duration::from_millis(100));
    Broker::bind(config).expect("bind").spawn().expect("spawn")
}

/// An `mdp` child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mdp worker SERVICE [flags] -- command` and waits until `registrations` of its
/// workers wait at the broker.
fn worker(broker: &BrokerHandle, service: &str, flags: &[&str], command: &[&str]) -> Running {
    let before = broker.stats().waiting_workers;
    let registrations = flags
        .iter()
        .position(|f| *f == "--concurrency")
        .map_or(1, |i| flags[i + 1].parse().expect("a number"));
    let child = StdCommand::new(cargo_bin("mdp"))
        .args(["worker", service, "--broker", broker.endpoint()])
        .args(["--heartbeat-ms", "100", "--reconnect-ms", "100"])
        .args(flags)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn mdp worker");
    let running = Running(child);
    wait_until("the worker registers", || {
        broker.stats().waiting_workers >= before + registrations
    });
    running
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// `mdp call --broker … ARGS`, with a 5 s `--timeout` unless ARGS give one.
fn mdp_call(broker: &BrokerHandle, args: &[&str]) -> Output {
    let timeout: &[&str] = if args.contains(&"--timeout") {
        &[]
    } else {
        &["--timeout", "5s"]
    };
    Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(["call", "--broker", broker.endpoint()])
        .args(timeout)
        .args(args)
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp call")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_cat_worker_answers_with_the_same_frames_raw_and_lines() {
    let broker = broker();
    let _raw = worker(&broker, "echo", &[], &["cat"]);
    let _lines = worker(&broker, "echo-lines", &["--frames", "lines"], &["cat"]);

    let output = mdp_call(&broker, &["echo", "hello ", "world"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "hello world");

    let output = mdp_call(
        &broker,
        &[
            "echo-lines",
            "--frames",
            "lines",
            "--output",
            "json",
            "a",
            "",
            "b c",
        ],
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "[\"a\",\"\",\"b c\"]\n");

    let output = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(["call", "echo-lines", "--broker", broker.endpoint()])
        .args(["--frames", "lines", "--output", "hex"])
        .write_stdin("ab\ncd\n")
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp call");
    assert_eq!(stdout(&output), "6162\n6364\n");
}

#[test]
fn a_tr_worker_uppercases() {
    let broker = broker();
    let _worker = worker(&broker, "upper", &[], &["tr", "a-z", "A-Z"]);
    let output = mdp_call(&broker, &["upper", "hello"]);
    assert_eq!(stdout(&output), "HELLO");
}

#[test]
fn a_failing_command_gets_the_error_reply_with_its_status_and_stderr() {
    let broker = broker();
    let command = ["sh", "-c", "echo oops >&2; exit 3"];
    let _worker = worker(&broker, "fail", &[], &command);
    let output = mdp_call(&broker, &["fail", "x"]);
    assert_eq!(output.status.code(), Some(0), "an error reply is a reply");
    assert_eq!(stdout(&output), "error: 3: oops");
}

#[test]
fn the_worker_environment_names_service_slot_and_frame_count() {
    let broker = broker();
    let command = ["sh", "-c", "echo $MDP_SERVICE $MDP_WORKER_ID $MDP_FRAMES"];
    let _worker = worker(&broker, "env", &[], &command);
    let output = mdp_call(&broker, &["env", "a", "b", "c"]);
    assert_eq!(stdout(&output), "env 1 3\n");
}

#[test]
fn a_slow_command_gets_the_timeout_reply_and_its_whole_process_group_dies() {
    let broker = broker();
    let pid_file = temp_path("pgid");
    let script = format!("echo $$ > {}; sleep 30 & sleep 30", pid_file.display());
    let flags = ["--timeout", "300ms"];
    let _worker = worker(&broker, "slow", &flags, &["sh", "-c", &script]);

    let started = Instant::now();
    let output = mdp_call(&broker, &["slow", "--retries", "0", "x"]);
    assert_eq!(stdout(&output), "error: worker request timed out");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let group: i32 = std::fs::read_to_string(&pid_file)
        .expect("the command wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    let _ = std::fs::remove_file(&pid_file);
    wait_until("no process of the group is left", || {
        live_processes_in_group(group).is_empty()
    });
}

#[test]
fn concurrent_registrations_run_slow_commands_side_by_side() {
    let broker = broker();
    let flags = ["--concurrency", "4"];
    let _worker = worker(&broker, "nap", &flags, &["sh", "-c", "sleep 0.3; cat"]);
    let endpoint = broker.endpoint().to_string();
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let endpoint = endpoint.clone();
            thread::spawn(move || {
                let config = ClientConfig::new(endpoint)
                    .timeout(Duration::from_secs(5))
                    .retries(0);
                let mut client = Client::connect(config).expect("client");
                client.request("nap", &[format!("{i}")]).expect("reply")
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(
            call.join().expect("call"),
            vec![format!("{i}").into_bytes()]
        );
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(900), "took {elapsed:?}");
}

#[test]
fn call_exits_0_on_a_reply_1_without_a_worker_and_2_on_a_bad_flag() {
    let broker = broker();
    let _worker = worker(&broker, "echo", &[], &["cat"]);
    assert_eq!(mdp_call(&broker, &["echo", "x"]).status.code(), Some(0));

    let output = mdp_call(&broker, &["nobody", "--timeout", "200ms", "--retries", "0"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no worker for `nobody`"));

    let output = mdp_call(&broker, &["echo", "--output", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn ping_exits_0_for_a_service_with_workers_and_1_without() {
    let broker = broker();
    let _worker = worker(&broker, "echo", &[], &["cat"]);
    let ping = |service: &str| {
        Command::cargo_bin("mdp")
            .expect("the mdp binary")
            .args(["ping", service, "--broker", broker.endpoint(), "--json"])
            .timeout(WATCHDOG)
            .output()
            .expect("run mdp ping")
    };
    let output = ping("echo");
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains("\"workers\":true"),
        "{}",
        stdout(&output)
    );
    let output = ping("nobody");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("\"workers\":false"),
        "{}",
        stdout(&output)
    );
}

/// The ghost of issue 15: an `mdp worker` SIGKILLed mid-request used to stay registered for
/// good, so `mdp ping` said "has workers" and new requests queued behind it.
#[test]
fn a_busy_mdp_worker_killed_mid_request_is_expired_and_ping_then_finds_no_worker() {
    let broker = broker();
    let pid_file = temp_path("ghost-pgid");
    let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
    let mut worker = worker(&broker, "ghost", &[], &["sh", "-c", &script]);
    let endpoint = broker.endpoint().to_string();
    let call = thread::spawn(move || {
        let config = ClientConfig::new(endpoint)
            .timeout(Duration::from_secs(2))
            .retries(0);
        Client::connect(config)
            .expect("client")
            .request("ghost", &["x"])
    });
    wait_until("the request runs", || {
        broker.stats().requests_dispatched >= 1
    });
    // Three HEARTBEATs after the dispatch: at least two sent while busy.
    let beats = broker.stats().heartbeats_received;
    wait_until("the busy worker heartbeats", || {
        broker.stats().heartbeats_received >= beats + 3
    });
    worker.0.kill().expect("SIGKILL mdp worker");
    let killed = Instant::now();
    wait_until("the broker forgets the worker", || {
        broker.stats().workers == 0
    });
    let took = killed.elapsed();
    eprintln!("a busy worker SIGKILLed at heartbeat 100 ms, liveness 3: expired after {took:?}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(1),
        "expired {took:?} after SIGKILL; liveness 300 ms"
    );
    let ping = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(["ping", "ghost", "--broker", broker.endpoint(), "--json"])
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp ping");
    assert_eq!(ping.status.code(), Some(1), "{}", stdout(&ping));
    assert!(
        stdout(&ping).contains("\"workers\":false"),
        "{}",
        stdout(&ping)
    );
    let stats = broker.stats();
    assert_eq!((stats.busy_workers_expired, stats.requests_lost), (1, 1));
    kill_group_in(&pid_file);
    assert!(
        call.join().expect("call").is_err(),
        "nobody answers by default"
    );
}

/// SIGKILLs the process group whose leader wrote its pid in `pid_file`, and removes it.
fn kill_group_in(pid_file: &std::path::Path) {
    let group = std::fs::read_to_string(pid_file).expect("the command wrote its pid");
    let _ = std::fs::remove_file(pid_file);
    let status = StdCommand::new("kill")
        .args(["-KILL", "--", &format!("-{}", group.trim())])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn sigterm_lets_the_running_command_finish_and_reply_then_the_worker_exits_0() {
    let broker = broker();
    let mut worker = worker(&broker, "nap", &[], &["sh", "-c", "sleep 0.3; echo done"]);
    let endpoint = broker.endpoint().to_string();
    let call = thread::spawn(move || {
        let config = ClientConfig::new(endpoint)
            .timeout(Duration::from_secs(5))
            .retries(0);
        Client::connect(config)
            .expect("client")
            .request("nap", &["x"])
    });
    wait_until("the request runs", || {
        broker.stats().requests_dispatched >= 1
    });
    terminate(&worker.0);
    assert_eq!(
        call.join().expect("call").expect("reply"),
        vec![b"done\n".to_vec()]
    );
    assert_eq!(wait_exit(&mut worker.0), Some(0));
}

#[test]
fn a_command_that_does_not_exist_is_refused_at_start() {
    let output = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(["worker", "svc", "--", "no-such-command-for-mdp"])
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp worker");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-command-for-mdp"), "{stderr}");
}

#[test]
fn a_bad_worker_setting_is_refused_with_the_librarys_message() {
    let output = Command::cargo_bin("mdp")
        .expect("the mdp binary")
        .args(["worker", "svc", "--liveness", "0", "--", "cat"])
        .timeout(WATCHDOG)
        .output()
        .expect("run mdp worker");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("liveness = 0 is invalid"), "{stderr}");
}

#[test]
fn mdp_broker_serves_and_exits_0_on_sigterm() {
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut broker = Running(
        StdCommand::new(cargo_bin("mdp"))
            .args(["broker", "--bind", &endpoint, "--heartbeat-ms", "100"])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mdp broker"),
    );
    let _worker = Running(
        StdCommand::new(cargo_bin("mdp"))
            .args([
                "worker",
                "echo",
                "--broker",
                &endpoint,
                "--heartbeat-ms",
                "100",
            ])
            .args(["--reconnect-ms", "100", "--", "cat"])
            .spawn()
            .expect("spawn mdp worker"),
    );
    let config = ClientConfig::new(&endpoint)
        .timeout(Duration::from_millis(200))
        .retries(0);
    let mut client = Client::connect(config).expect("client");
    wait_until("the worker registers", || {
        client.has_service("echo").unwrap_or(false)
    });
    assert_eq!(
        client.request("echo", &["hi"]).expect("reply"),
        vec![b"hi".to_vec()]
    );
    terminate(&broker.0);
    assert_eq!(wait_exit(&mut broker.0), Some(0));
}

fn terminate(child: &Child) {
    let status = StdCommand::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the process did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A port nobody listens on right now (bound, read, released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
    listener.local_addr().expect("local address").port()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mdp-test-{name}-{}", std::process::id()))
}

/// The processes of `group` that are not zombies (a zombie is dead; only its exit status
/// waits for a parent).
fn live_processes_in_group(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
            fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str())
        })
        .collect()
}
