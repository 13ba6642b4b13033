//! A silent network partition between the worker and its broker: the real `echo_worker`,
//! `broker` and `client` examples in network namespaces of the test's own, joined by veth pairs.
//!
//! ```text
//!  netns mdp-part-<pid>-w (worker)               netns mdp-part-<pid>-b1 (broker 1, :5555)
//!    vw1 10.233.1.1/30  <------- veth ------->  vb1 10.233.1.2/30
//!                                                netns mdp-part-<pid>-b2 (broker 2, :5555)
//!    vw2 10.233.2.1/30  <------- veth ------->  vb2 10.233.2.2/30
//! ```
//!
//! The worker is given `tcp://10.233.1.2:5555,tcp://10.233.2.2:5555`. Taking `vw1` down inside
//! the worker's namespace cuts broker 1 off without a FIN or an RST: the worker has to notice
//! the silence through its heartbeat liveness and rotate to broker 2. The addresses exist only
//! inside these namespaces and nothing is added to the root namespace, so no packet can reach
//! anything outside; the fixed port 5555 is safe because each namespace is the test's alone.
//!
//! Needs root and iproute2. When it cannot run it prints one `skipped: <why>` line on stderr
//! and passes: not root, no `ip` binary, `ip netns add` refused (a container without
//! CAP_SYS_ADMIN), or `MDP_SKIP_NETNS` set in the environment (to skip it on purpose).
//!
//! ```text
//! sudo -E cargo nextest run --test partition --no-capture   # prints the failover times
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The worker's and the brokers' heartbeat: short, so that the test takes a few seconds.
const HEARTBEAT: Duration = Duration::from_millis(100);
/// Heartbeats of silence before either side gives the other up.
const LIVENESS: u32 = 3;
/// The worker's first reconnect delay; the first backoff step draws from `[r/2, r]`.
const RECONNECT: Duration = Duration::from_millis(100);
/// What the measured failover may take beyond `HEARTBEAT × LIVENESS + RECONNECT`: one
/// `ip link set` run (the clock starts before it), the TCP and ZMTP handshakes with the other
/// broker, READY, dispatch, the echo, the reply to the client, and the 2 ms polling that
/// notices the client's exit; all debug builds on a 2-core machine busy with other builds.
/// Measured: 340–390 ms in all, within the nominal 400 ms, as the worker last heard broker 1
/// a little before the cut. A worker that first went back to the dead broker is caught by the
/// order of its connections, checked at the end, whatever the timing.
const SLACK: Duration = Duration::from_millis(400);
/// Each client's own reply timeout: well beyond the bound, so a late failover is measured
/// rather than cut short, and a missing one fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time given to a client started before the cut to connect and send its request.
const CLIENT_START: Duration = Duration::from_millis(200);
/// Longest wait for a broker to listen or the worker to stop.
const WATCHDOG: Duration = Duration::from_secs(5);
/// Inside each namespace; see the header.
const PORT: u16 = 5555;
const SERVICE: &str = "echo";

/// The longest accepted time from cutting a link to the reply through the other broker.
fn failover_bound() -> Duration {
    HEARTBEAT * LIVENESS + RECONNECT + SLACK
}

#[test]
fn a_silently_partitioned_worker_moves_to_the_other_broker_within_its_liveness_window() {
    if let Some(reason) = skip_reason() {
        return skipped(&reason);
    }
    let mut lab = match Lab::create() {
        Ok(lab) => lab,
        Err(reason) => return skipped(&reason),
    };
    let binaries = Binaries::build();
    lab.start_brokers(&binaries);
    lab.start_worker(&binaries);

    // 1. Healthy: the worker registers with broker 1, the first address, and serves.
    let reply = lab.echo(&binaries, Side::B1, "before").wait();
    assert_eq!(
        reply.body, "before",
        "no reply through broker 1 at the start"
    );

    // 2. Cut broker 1 off silently; a request waiting at broker 2 must be served in time.
    let failover = lab.failover(&binaries, Side::B1, Side::B2, "during-1");
    eprintln!("failover to broker 2: {failover:?}");

    // 3. Heal: the worker stays on broker 2 and serves; broker 1 answers again from the
    //    worker's namespace, and has forgotten the partitioned worker (404, not 200). Broker
    //    1 needs its own `heartbeat × liveness` (plus up to one heartbeat, as it purges when a
    //    heartbeat is due) to give the worker up, which can end after the failover did.
    lab.brokers[0].wait_for("worker expired", WATCHDOG);
    lab.link(Side::B1, "up");
    let reply = lab.echo(&binaries, Side::B2, "healed").wait();
    assert_eq!(
        reply.body, "healed",
        "no reply through broker 2 after healing"
    );
    let b1 = lab.broker_endpoint(Side::B1);
    let reply = lab
        .request(&binaries, Side::W, &b1, "mmi.service", SERVICE)
        .wait();
    assert_eq!(reply.body, "404", "broker 1 after healing: {reply:?}");

    // 4. Cut broker 2 off: the worker goes back to broker 1, in the same time.
    let failback = lab.failover(&binaries, Side::B2, Side::B1, "during-2");
    eprintln!("failback to broker 1: {failback:?}");

    lab.check_worker_history();
}

/// Says why the test did not run. Written to the stderr handle rather than with `eprintln!`,
/// which `cargo test` would capture and hide for a passing test (nextest shows a passing test's
/// output with `--success-output immediate` or `--no-capture`).
fn skipped(reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    if std::env::var_os("MDP_SKIP_NETNS").is_some() {
        return Some("MDP_SKIP_NETNS is set".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`ip -V` failed: {}", text(&out.stderr))),
        Err(error) => Some(format!("no usable `ip` binary (iproute2): {error}")),
    }
}

/// The three examples this test runs, built for the profile of this test binary as
/// `tests/common/process.rs` does it: a runner that builds only test targets skips examples.
struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    fn build() -> Binaries {
        // target/<profile>/deps/<test binary>
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(name) => name,
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--example", "broker", "--example"])
            .args(["echo_worker", "--example", "client", "--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --example ...");
        assert!(status.success(), "cargo build of the examples failed");
        Binaries {
            dir: profile_dir.join("examples"),
        }
    }

    fn path(&self, name: &str) -> String {
        let path = self.dir.join(name);
        assert!(path.exists(), "{} not found", path.display());
        path.to_string_lossy().into_owned()
    }
}

/// A namespace of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    W,
    B1,
    B2,
}

impl Side {
    fn suffix(self) -> &'static str {
        match self {
            Side::W => "w",
            Side::B1 => "b1",
            Side::B2 => "b2",
        }
    }

    /// The worker-side veth towards this broker, and the broker's address on its /30.
    fn link(self) -> (&'static str, &'static str) {
        match self {
            Side::B1 => ("vw1", "10.233.1.2"),
            Side::B2 => ("vw2", "10.233.2.2"),
            Side::W => unreachable!("the worker's namespace is the hub"),
        }
    }
}

/// The namespaces and the processes inside them. Dropping it (also while a failed assertion
/// unwinds) kills every child and deletes every namespace; the veths go with them.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    brokers: Vec<Daemon>,
    worker: Option<Daemon>,
}

impl Lab {
    /// Builds the namespaces and links; `Err` (skip) only when `ip netns add` is refused.
    fn create() -> Result<Lab, String> {
        let mut lab = Lab {
            prefix: format!("mdp-part-{}", std::process::id()),
            namespaces: Vec::new(),
            brokers: Vec::new(),
            worker: None,
        };
        for side in [Side::W, Side::B1, Side::B2] {
            let name = lab.ns(side);
            // Left over by an earlier run that was SIGKILLed under the same pid: ours by name.
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            let out = ip(&["netns", "add", &name]);
            if !out.status.success() {
                return Err(format!("`ip netns add` failed: {}", text(&out.stderr)));
            }
            lab.namespaces.push(name);
            lab.ip_in(side, &["link", "set", "lo", "up"]);
        }
        lab.wire(Side::B1, "vb1", "10.233.1.1/30", "10.233.1.2/30");
        lab.wire(Side::B2, "vb2", "10.233.2.1/30", "10.233.2.2/30");
        Ok(lab)
    }

    fn ns(&self, side: Side) -> String {
        format!("{}-{}", self.prefix, side.suffix())
    }

    /// A veth pair created directly inside the two namespaces (never in the root one).
    fn wire(&self, broker: Side, broker_dev: &str, worker_addr: &str, broker_addr: &str) {
        let (worker_dev, _) = broker.link();
        let peer_ns = self.ns(broker);
        let veth = ["link", "add", worker_dev, "type", "veth", "peer", "name"];
        self.ip_in(
            Side::W,
            &[&veth[..], &[broker_dev, "netns", &peer_ns]].concat(),
        );
        self.ip_in(Side::W, &["addr", "add", worker_addr, "dev", worker_dev]);
        self.ip_in(broker, &["addr", "add", broker_addr, "dev", broker_dev]);
        self.ip_in(Side::W, &["link", "set", worker_dev, "up"]);
        self.ip_in(broker, &["link", "set", broker_dev, "up"]);
    }

    /// Runs `ip -n <ns> args…`, failing the test if it fails.
    fn ip_in(&self, side: Side, args: &[&str]) {
        let ns = self.ns(side);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        let out = ip(&all);
        assert!(
            out.status.success(),
            "ip {} failed: {}",
            all.join(" "),
            text(&out.stderr)
        );
    }

    /// `ip link set <worker-side veth to broker> up|down`, inside the worker's namespace.
    fn link(&self, broker: Side, state: &str) {
        let (dev, _) = broker.link();
        self.ip_in(Side::W, &["link", "set", dev, state]);
    }

    fn broker_endpoint(&self, broker: Side) -> String {
        format!("tcp://{}:{PORT}", broker.link().1)
    }

    /// `ip netns exec <ns> <program> args…`: iproute2 execs the program in place, so the
    /// child's pid is the program's.
    fn command(&self, side: Side, program: &str, args: &[String]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(side), program])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn start_brokers(&mut self, binaries: &Binaries) {
        let args = strings(&[
            "--bind",
            &format!("tcp://*:{PORT}"),
            "--heartbeat-ms",
            &HEARTBEAT.as_millis().to_string(),
            "--liveness",
            &LIVENESS.to_string(),
        ]);
        for side in [Side::B1, Side::B2] {
            let command = self.command(side, &binaries.path("broker"), &args);
            self.brokers.push(Daemon::spawn(side.suffix(), command));
        }
        for broker in &self.brokers {
            broker.wait_for("broker listening", WATCHDOG);
        }
    }

    fn start_worker(&mut self, binaries: &Binaries) {
        let brokers = format!(
            "{},{}",
            self.broker_endpoint(Side::B1),
            self.broker_endpoint(Side::B2)
        );
        let args = strings(&[
            "--broker",
            &brokers,
            "--service",
            SERVICE,
            "--heartbeat-ms",
            &HEARTBEAT.as_millis().to_string(),
            "--liveness",
            &LIVENESS.to_string(),
            "--reconnect-ms",
            &RECONNECT.as_millis().to_string(),
            "--reconnect-max-ms",
            &(RECONNECT * 4).as_millis().to_string(),
        ]);
        let command = self.command(Side::W, &binaries.path("echo_worker"), &args);
        self.worker = Some(Daemon::spawn("worker", command));
    }

    /// An echo request to the broker of `side`, from inside its own namespace (over `lo`).
    fn echo(&self, binaries: &Binaries, side: Side, body: &str) -> PendingRequest {
        let local = format!("tcp://127.0.0.1:{PORT}");
        self.request(binaries, side, &local, SERVICE, body)
    }

    /// Starts the `client` example inside `side` for one request, without retries.
    fn request(
        &self,
        binaries: &Binaries,
        side: Side,
        endpoint: &str,
        service: &str,
        body: &str,
    ) -> PendingRequest {
        let timeout = CLIENT_TIMEOUT.as_millis().to_string();
        let args = strings(&[
            "--broker",
            endpoint,
            "--service",
            service,
            "--timeout-ms",
            &timeout,
            "--retries",
            "0",
            body,
        ]);
        let what = format!("{service} {body:?} via {endpoint} in {side:?}");
        PendingRequest::spawn(what, self.command(side, &binaries.path("client"), &args))
    }

    /// Queues a request at `to`, cuts the link to `from`, and returns the time from the cut
    /// to the reply, after asserting it is within the bound.
    fn failover(&self, binaries: &Binaries, from: Side, to: Side, body: &str) -> Duration {
        let mut pending = self.echo(binaries, to, body);
        thread::sleep(CLIENT_START);
        assert!(
            pending.still_waiting(),
            "{body}: the request through {to:?} was answered before the cut"
        );
        let cut = Instant::now();
        self.link(from, "down");
        let reply = pending.wait();
        assert_eq!(
            reply.body, body,
            "no reply through {to:?} after cutting {from:?}"
        );
        let took = reply.at - cut;
        assert!(
            took <= failover_bound(),
            "the reply through {to:?} came {took:?} after {from:?} was cut, more than \
             heartbeat × liveness + reconnect + slack = {:?}",
            failover_bound()
        );
        took
    }

    /// Stops the worker with SIGTERM and checks its whole history from its log: brokers
    /// 1, 2, 1 in that order, both moves for silence (no transport error ever surfaced, so the
    /// partitions were silent), and every request served once.
    fn check_worker_history(&mut self) {
        let worker = self.worker.as_mut().expect("worker started");
        worker.terminate(WATCHDOG);
        let log = worker.lines();
        let connected: Vec<&str> = log
            .iter()
            .filter(|l| l.contains("connecting, sending READY"))
            .filter_map(|l| l.split("broker=").last())
            .collect();
        let b1 = format!("tcp://10.233.1.2:{PORT}");
        let b2 = format!("tcp://10.233.2.2:{PORT}");
        assert_eq!(connected, [&b1, &b2, &b1], "worker connections");
        let silent = log
            .iter()
            .filter(|l| l.contains("reconnecting reason=BrokerSilent"));
        assert_eq!(silent.count(), 2, "reconnects for broker silence");
        assert!(
            !log.iter()
                .any(|l| l.contains("connection to the broker dropped")),
            "the transport reported the cut: the partition was not silent"
        );
        let stopped = log
            .iter()
            .find(|l| l.contains("stopped requests="))
            .expect("worker logged its stop");
        assert!(
            stopped.contains("requests=4") && stopped.contains("reconnects=2"),
            "{stopped}"
        );
        for broker in &self.brokers {
            assert!(
                !broker.lines().iter().any(|l| l.contains("panicked")),
                "a broker panicked"
            );
        }
        assert!(
            self.brokers[0]
                .lines()
                .iter()
                .any(|l| l.contains("worker expired")),
            "broker 1 never expired the partitioned worker"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = thread::panicking();
        for daemon in self.worker.iter_mut().chain(self.brokers.iter_mut()) {
            daemon.kill();
            if failed {
                eprintln!("--- {} log ---", daemon.name);
                daemon.lines().iter().for_each(|l| eprintln!("{l}"));
            }
        }
        for name in self.namespaces.drain(..).rev() {
            let out = ip(&["netns", "del", &name]);
            if !out.status.success() {
                eprintln!("ip netns del {name} failed: {}", text(&out.stderr));
            }
        }
    }
}

/// A long-running child (a broker or the worker) whose stdout and stderr lines are kept.
struct Daemon {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Daemon {
    fn spawn(name: &str, mut command: Command) -> Daemon {
        let mut child = command.spawn().expect("start ip netns exec");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![keep_lines(stdout, &log), keep_lines(stderr, &log)];
        Daemon {
            name: name.to_string(),
            child,
            log,
            readers,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a line contains `text`, failing the test after `timeout`.
    fn wait_for(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.lines().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "{}: no {text:?} within {timeout:?}: {:?}",
                self.name,
                self.lines()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then waits for the exit and the end of the log; fails after `timeout`.
    fn terminate(&mut self, timeout: Duration) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill -TERM");
        let status = wait_until(&mut self.child, Instant::now() + timeout)
            .unwrap_or_else(|| panic!("{} did not stop within {timeout:?}", self.name));
        self.readers.drain(..).for_each(|r| r.join().unwrap());
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.readers.drain(..).for_each(|r| {
            let _ = r.join();
        });
    }
}

/// A `client` run: one request, its reply frames on stdout.
struct PendingRequest {
    what: String,
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

#[derive(Debug)]
struct Reply {
    /// The reply frames, one per line.
    body: String,
    /// When the client was seen to have exited.
    at: Instant,
}

impl PendingRequest {
    fn spawn(what: String, mut command: Command) -> PendingRequest {
        let mut child = command.spawn().expect("start ip netns exec client");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        PendingRequest {
            what,
            child,
            started: Instant::now(),
            stdout: Some(read_all(stdout)),
            stderr: Some(read_all(stderr)),
        }
    }

    fn still_waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The reply; fails the test if the client failed or overran its own timeout.
    fn wait(mut self) -> Reply {
        let deadline = self.started + CLIENT_TIMEOUT + WATCHDOG;
        let status = wait_until(&mut self.child, deadline);
        let at = Instant::now();
        let Some(status) = status else {
            panic!("{}: the client hung past its timeout", self.what);
        };
        let stdout = self.stdout.take().unwrap().join().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        assert!(
            status.success(),
            "{}: client exited with {status} after {:?}: {}",
            self.what,
            at - self.started,
            stderr.trim()
        );
        Reply {
            body: stdout.trim_end().to_string(),
            at,
        }
    }
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        // Once reaped, std knows it and sends no signal.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls every 2 ms until `child` exits or `deadline` passes.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn keep_lines(pipe: impl Read + Send + 'static, log: &Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    let log = Arc::clone(log);
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push(line);
        }
    })
}

fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
