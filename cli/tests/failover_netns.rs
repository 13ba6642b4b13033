//! Clients fail over between brokers in network namespaces of the test's own: `mdp bench`
//! with a list of two brokers, `mdp worker`s on both, and broker 1 SIGKILLed mid-load.
//!
//! ```text
//!  netns mdp-fo-<pid>-c (clients, workers)      netns mdp-fo-<pid>-b1 (mdp broker, :5555)
//!    vc1 10.233.1.1/30  <------- veth ------->  vb1 10.233.1.2/30
//!                                               netns mdp-fo-<pid>-b2 (mdp broker, :5555)
//!    vc2 10.233.2.1/30  <------- veth ------->  vb2 10.233.2.2/30
//! ```
//!
//! Every request must get exactly one correct reply (nothing lost). The workers append each
//! body they run (a 12-digit id) to a log, so the requests run twice, whose first reply died
//! with broker 1, are counted. The addresses exist only inside these namespaces and the fixed
//! port 5555 is each namespace's alone, as in `tests/partition.rs`.
//!
//! Needs root and iproute2. When it cannot run it prints one `skipped: <why>` line on stderr
//! and passes: not root, no `ip` binary, `ip netns add` refused, or `MDP_SKIP_NETNS` set.
//!
//! ```text
//! sudo -E cargo nextest run -p majordomo-cli --test failover_netns --no-capture   # figures
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;

const PORT: u16 = 5555;
const REQUESTS: u64 = 1500;
/// Broker 1 is killed once the workers ran this many requests.
const KILL_AT: u64 = 400;
/// Each attempt's timeout in the bench: a request in flight at the killed broker waits this
/// long before it goes to broker 2.
const TIMEOUT_MS: u64 = 300;
const WATCHDOG: Duration = Duration::from_secs(60);

#[test]
fn bench_with_two_brokers_loses_nothing_when_one_is_killed_mid_load() {
    if let Some(reason) = skip_reason() {
        return skipped(&reason);
    }
    let lab = match Lab::create() {
        Ok(lab) => lab,
        Err(reason) => return skipped(&reason),
    };
    // Brokers heartbeat as fast as the workers expect: 100 ms.
    let bind = format!("tcp://*:{PORT}");
    let broker = ["broker", "--bind", &bind, "--heartbeat-ms", "100"];
    let mut b1 = lab.spawn("b1", &broker);
    let _b2 = lab.spawn("b2", &broker);
    let log = lab.dir.join("runs.log");
    let _workers: Vec<Daemon> = [1, 2]
        .iter()
        .map(|b| {
            let worker = lab.spawn(
                "c",
                &[
                    "worker",
                    "echo",
                    "--broker",
                    &endpoint(*b),
                    "--concurrency",
                    "2",
                    "--heartbeat-ms",
                    "100",
                    "--reconnect-ms",
                    "100",
                    "--",
                    "tee",
                    "-a",
                    &log.to_string_lossy(),
                ],
            );
            lab.wait_until_served(*b);
            worker
        })
        .collect();
    let served_before = runs(&log).values().sum::<u32>();

    let list = format!("{},{}", endpoint(1), endpoint(2));
    let timeout = format!("{TIMEOUT_MS}ms");
    let requests = REQUESTS.to_string();
    let bench = lab.spawn(
        "c",
        &[
            "bench",
            "--broker",
            &list,
            "--requests",
            &requests,
            "--clients",
            "4",
            "--size",
            "12",
            "--timeout",
            &timeout,
            "--retries",
            "5",
            "--json",
        ],
    );
    let started = Instant::now();
    while (runs(&log).values().sum::<u32>() as u64) < u64::from(served_before) + KILL_AT {
        assert!(started.elapsed() < WATCHDOG, "the load did not start");
        thread::sleep(Duration::from_millis(5));
    }
    let _ = b1.0.kill();
    let output = bench.wait();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["correct"], REQUESTS, "{report}");
    let runs = runs(&log);
    let ran = runs.keys().filter(|id| id.parse::<u64>().is_ok()).count() as u64;
    assert!(ran >= REQUESTS, "{ran} ids run");
    let twice: u32 = runs.values().map(|n| n - 1).sum();
    let max_ms = report["latency_us"]["max"].as_f64().unwrap_or(0.0) / 1000.0;
    let _ = writeln!(
        std::io::stderr(),
        "netns: {REQUESTS} requests, 4 clients, timeout {TIMEOUT_MS} ms, broker 1 killed after \
         {KILL_AT}: 0 lost, {twice} run twice, {} retried, longest request {max_ms:.0} ms",
        report["retried"]
    );
    assert!(
        max_ms < (TIMEOUT_MS * 5) as f64,
        "failover took {max_ms} ms"
    );
}

fn endpoint(broker: u8) -> String {
    format!("tcp://10.233.{broker}.2:{PORT}")
}

/// How many times each id was run: the log is 12-digit ids, one write each (`tee -a` appends
/// atomically), with the probes' bodies among them.
fn runs(log: &PathBuf) -> HashMap<String, u32> {
    let bytes = std::fs::read(log).unwrap_or_default();
    let mut runs = HashMap::new();
    for id in bytes.chunks(12).filter(|c| c.len() == 12) {
        *runs.entry(text(id)).or_default() += 1;
    }
    runs
}

fn skipped(reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

fn skip_reason() -> Option<String> {
    if std::env::var_os("MDP_SKIP_NETNS").is_some() {
        return Some("MDP_SKIP_NETNS is set".into());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout));
    if uid.ok().as_deref().map(str::trim) != Some("0") {
        return Some("network namespaces need root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`ip -V` failed: {}", text(&out.stderr))),
        Err(error) => Some(format!("no usable `ip` binary (iproute2): {error}")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

/// A child killed when dropped.
struct Daemon(Child);

impl Daemon {
    fn wait(mut self) -> Output {
        let started = Instant::now();
        while self.0.try_wait().expect("try_wait").is_none() {
            assert!(started.elapsed() < WATCHDOG, "mdp did not finish in time");
            thread::sleep(Duration::from_millis(20));
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        use std::io::Read;
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        }
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_end(&mut stderr);
        }
        let status = self.0.wait().expect("wait");
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The namespaces, their links and a scratch directory; dropping it deletes them all.
struct Lab {
    prefix: String,
    dir: PathBuf,
}

impl Lab {
    fn create() -> Result<Lab, String> {
        let prefix = format!("mdp-fo-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let lab = Lab { prefix, dir };
        for side in ["c", "b1", "b2"] {
            let name = lab.ns(side);
            let _ = ip(&["netns", "del", &name]);
            let out = ip(&["netns", "add", &name]);
            if !out.status.success() {
                return Err(format!("`ip netns add` failed: {}", text(&out.stderr)));
            }
            lab.ip_in(side, &["link", "set", "lo", "up"]);
        }
        for b in ["1", "2"] {
            let (vc, vb, side) = (format!("vc{b}"), format!("vb{b}"), format!("b{b}"));
            let peer = lab.ns(&side);
            lab.ip_in(
                "c",
                &[
                    "link", "add", &vc, "type", "veth", "peer", "name", &vb, "netns", &peer,
                ],
            );
            lab.ip_in(
                "c",
                &["addr", "add", &format!("10.233.{b}.1/30"), "dev", &vc],
            );
            lab.ip_in(
                &side,
                &["addr", "add", &format!("10.233.{b}.2/30"), "dev", &vb],
            );
            lab.ip_in("c", &["link", "set", &vc, "up"]);
            lab.ip_in(&side, &["link", "set", &vb, "up"]);
        }
        Ok(lab)
    }

    fn ns(&self, side: &str) -> String {
        format!("{}-{side}", self.prefix)
    }

    fn ip_in(&self, side: &str, args: &[&str]) {
        let ns = self.ns(side);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        let out = ip(&all);
        assert!(
            out.status.success(),
            "ip {}: {}",
            all.join(" "),
            text(&out.stderr)
        );
    }

    /// `mdp ARGS` inside namespace `side` (`ip netns exec` execs in place: the child's pid
    /// is mdp's, so killing the child kills mdp).
    fn spawn(&self, side: &str, args: &[&str]) -> Daemon {
        // Only what is read is piped: a daemon's unread log must never fill a pipe.
        let read = matches!(args.first(), Some(&"bench" | &"ping"));
        let pipe = || if read { Stdio::piped() } else { Stdio::null() };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(side)])
            .arg(cargo_bin("mdp"))
            .args(args)
            .env_remove("MDP_BROKER")
            .stdin(Stdio::null())
            .stdout(pipe())
            .stderr(pipe())
            .spawn()
            .expect("spawn mdp");
        Daemon(child)
    }

    /// Waits until broker `b` answers that `echo` has workers, from the clients' namespace.
    fn wait_until_served(&self, b: u8) {
        let started = Instant::now();
        loop {
            let ping = self.spawn(
                "c",
                &[
                    "ping",
                    "echo",
                    "--broker",
                    &endpoint(b),
                    "--timeout",
                    "300ms",
                ],
            );
            if ping.wait().status.success() {
                return;
            }
            assert!(started.elapsed() < WATCHDOG, "no worker at broker {b}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for side in ["c", "b1", "b2"] {
            let _ = ip(&["netns", "del", &self.ns(side)]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
