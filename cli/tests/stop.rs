//! Stopping is safe: `mdp worker` killed or signalled twice takes its commands (and their
//! process groups) with it, its first signal says what it waits for, and `mdp top` stopped
//! by a signal from outside gives the terminal back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig};

/// Longest any wait of these tests may take before it fails.
const WATCHDOG: Duration = Duration::from_secs(10);
/// How long the commands' processes may outlive a killed worker.
const DIES_WITHIN: Duration = Duration::from_secs(2);

fn broker() -> BrokerHandle {
    let config = BrokerConfig::new("tcp://127.0.0.1:*").heartbeat(Duration::from_millis(100));
    Broker::bind(config).expect("bind").spawn().expect("spawn")
}

/// An `mdp worker` process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mdp worker SERVICE` running `sh -c SCRIPT`, registered at `broker`, stderr piped.
fn worker(broker: &BrokerHandle, service: &str, flags: &[&str], script: &str) -> Running {
    let child = Command::new(cargo_bin("mdp"))
        .args(["worker", service, "--broker", broker.endpoint()])
        .args(["--heartbeat-ms", "100", "--reconnect-ms", "100"])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mdp worker");
    let running = Running(child);
    wait_until("the worker registers", WATCHDOG, || {
        broker.stats().waiting_workers >= 1
    });
    running
}

/// A script whose shell writes its pid (= its process group) to `pid_file`, then waits on
/// a foreground and a background `sleep`: three processes in the group.
fn group_script(pid_file: &Path) -> String {
    format!("echo $$ > {}; sleep 30 & sleep 30", pid_file.display())
}

/// Sends one request to `service` on a thread of its own (its answer is not awaited).
fn call_in_background(broker: &BrokerHandle, service: &str) {
    let config = ClientConfig::new(broker.endpoint())
        .timeout(Duration::from_secs(20))
        .retries(0);
    let service = service.to_string();
    thread::spawn(move || {
        let mut client = Client::connect(config).expect("client");
        let _ = client.request(&service, &["x"]);
    });
}

/// Waits until the command wrote its group to `pid_file` and all three processes run.
fn running_group(pid_file: &Path) -> i32 {
    let mut group = 0;
    wait_until("the command runs", WATCHDOG, || {
        group = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        group > 0 && live_processes_in_group(group).len() == 3
    });
    let _ = std::fs::remove_file(pid_file);
    group
}

#[test]
fn a_sigkilled_worker_takes_its_running_command_and_the_commands_group_with_it() {
    let broker = broker();
    let pid_file = temp_path("sigkill");
    let mut worker = worker(&broker, "slow", &[], &group_script(&pid_file));
    call_in_background(&broker, "slow");
    let group = running_group(&pid_file);

    signal(&worker.0, "KILL");
    let _ = worker.0.wait();
    wait_until("no process of the group is left", DIES_WITHIN, || {
        live_processes_in_group(group).is_empty()
    });
}

#[test]
fn the_first_signal_says_what_it_waits_for_and_the_second_kills_the_commands_group() {
    let broker = broker();
    let pid_file = temp_path("twice");
    let flags = ["--grace", "30s"];
    let mut worker = worker(&broker, "slow", &flags, &group_script(&pid_file));
    call_in_background(&broker, "slow");
    let group = running_group(&pid_file);

    signal(&worker.0, "INT");
    let mut stderr = worker.0.stderr.take().expect("piped stderr");
    let first = read_line(&mut stderr);
    assert_eq!(
        first,
        "mdp worker: stopping: waiting up to 30s for 1 running request(s); \
         a second Ctrl-C kills them"
    );
    assert_eq!(
        live_processes_in_group(group).len(),
        3,
        "the grace is running"
    );

    signal(&worker.0, "INT");
    let started = Instant::now();
    assert_eq!(wait_exit(&mut worker.0), Some(1));
    assert!(started.elapsed() < DIES_WITHIN, "{:?}", started.elapsed());
    assert_eq!(
        read_line(&mut stderr),
        "mdp worker: second signal: killed 1 running command(s), exiting"
    );
    wait_until("no process of the group is left", DIES_WITHIN, || {
        live_processes_in_group(group).is_empty()
    });
}

#[test]
fn top_stopped_by_sigterm_or_sigint_leaves_raw_mode_and_the_alternate_screen() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: no tmux to give mdp top a terminal");
        return;
    }
    for signal_name in ["TERM", "INT"] {
        let broker = broker();
        let tmux = Tmux::new(&format!("top-{signal_name}"));
        let stty_file = temp_path(&format!("stty-{signal_name}"));
        // After top, the shell records the terminal's mode.
        let script = format!(
            "{mdp} top {endpoint}; stty -a > {stty}; sleep 30",
            mdp = cargo_bin("mdp").display(),
            endpoint = broker.endpoint(),
            stty = stty_file.display()
        );
        tmux.run(&script);
        let mut top = 0;
        wait_until("mdp top is on the alternate screen", WATCHDOG, || {
            top = tmux
                .shell_pid()
                .map_or(0, |shell| children(shell).first().copied().unwrap_or(0));
            top > 0 && tmux.alternate_screen() && tmux.screen().contains("mdp top")
        });
        let kill = Command::new("kill")
            .args([&format!("-{signal_name}"), &top.to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success());
        wait_until("the shell records the terminal mode", WATCHDOG, || {
            std::fs::read_to_string(&stty_file).is_ok_and(|s| s.contains("icanon"))
        });
        let stty = std::fs::read_to_string(&stty_file).expect("stty output");
        let _ = std::fs::remove_file(&stty_file);
        let words: Vec<&str> = stty.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig"] {
            assert!(
                words.contains(&mode),
                "SIG{signal_name}: {mode} is off\n{stty}"
            );
        }
        assert!(!tmux.alternate_screen(), "SIG{signal_name}: still there");
    }
}

/// A tmux server of this test alone, with one session; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("mdp-test-{name}-{}", std::process::id()),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn run(&self, script: &str) {
        self.tmux(&[
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "sh",
            "-c",
            script,
        ]);
    }

    fn alternate_screen(&self) -> bool {
        self.tmux(&["display-message", "-p", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// The pid of the pane's shell.
    fn shell_pid(&self) -> Option<i32> {
        self.tmux(&["display-message", "-p", "#{pane_pid}"])
            .trim()
            .parse()
            .ok()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// One line of the child's stderr, without its newline.
fn read_line(pipe: &mut impl std::io::Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while pipe.read(&mut byte).expect("read stderr") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
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

fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mdp-stop-test-{name}-{}", std::process::id()))
}

/// The processes whose parent is `parent`.
fn children(parent: i32) -> Vec<i32> {
    processes()
        .filter(|&pid| stat_fields(pid).get(1) == Some(&parent.to_string()))
        .collect()
}

fn processes() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, ...
fn stat_fields(pid: i32) -> Vec<String> {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Vec::new();
    };
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    stat.rsplit_once(')').map_or(vec![], |(_, rest)| {
        rest.split_whitespace().map(String::from).collect()
    })
}

/// The processes of `group` that are not zombies (a zombie is dead; only its exit status
/// waits for a parent).
fn live_processes_in_group(group: i32) -> Vec<i32> {
    processes()
        .filter(|&pid| {
            let fields = stat_fields(pid);
            fields.first().is_some_and(|state| state != "Z")
                && fields.get(2) == Some(&group.to_string())
        })
        .collect()
}
