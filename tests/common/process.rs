//! The real `echo_worker` example as a child process: build it, start it, signal it, read its
//! memory and whether it is inside its `--work-ms` sleep.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Lines of a child's log kept for a failure message.
const LOG_TAIL: usize = 40;

/// The `echo_worker` binary of the profile this test was built with, built (quietly) if
/// needed: `cargo test` builds examples, but a runner that builds only test targets may not.
pub fn echo_worker_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example_binary("echo_worker")).clone()
}

/// The binary of example `name`, built as [`echo_worker_binary`] builds its own.
pub fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    // The features this test was built with, so the example reuses the same library build.
    let features: Vec<&str> = [
        ("tokio", cfg!(feature = "tokio")),
        ("fuzzing", cfg!(feature = "fuzzing")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--example", name, "--profile"])
        .arg(profile)
        .args(["--features", &features.join(",")])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    let binary = profile_dir.join("examples").join(name);
    assert!(binary.exists(), "{} not found", binary.display());
    binary
}

/// A running `echo_worker`; killed (SIGKILL) when dropped, so a failing test leaves nothing.
pub struct ChildWorker {
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl ChildWorker {
    /// Starts `echo_worker` with `args`, logging at info without colours into a pipe of
    /// which the last lines are kept.
    pub fn spawn(args: &[String]) -> ChildWorker {
        let mut child = Command::new(echo_worker_binary())
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start echo_worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL + 1)));
        let keep = Arc::clone(&tail);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut tail = keep.lock().unwrap();
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        ChildWorker {
            child,
            tail,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"TERM"`, `"KILL"`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join(); // the pipe is closed: the log is complete
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines the worker logged.
    pub fn log_tail(&self) -> Vec<String> {
        self.tail.lock().unwrap().iter().cloned().collect()
    }

    /// A `name=value` number from the last log line containing `message`.
    pub fn logged_number(&self, message: &str, name: &str) -> Option<u64> {
        let tail = self.tail.lock().unwrap();
        let line = tail.iter().rev().find(|l| l.contains(message))?;
        let start = line.find(&format!("{name}="))? + name.len() + 1;
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(&format!("/proc/{}/status", self.pid()))
    }

    /// Whether the main thread (which runs the inline action) sleeps in `nanosleep`: inside
    /// `--work-ms`. `None` where the kernel does not say.
    pub fn in_work_sleep(&self) -> Option<bool> {
        let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", self.pid())).ok()?;
        if wchan.is_empty() || wchan == "0" {
            return None;
        }
        Some(wchan.contains("nanosleep"))
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `VmRSS` of a `/proc/<pid>/status` file, in KiB.
pub fn rss_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
