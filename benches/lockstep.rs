//! The worker against its ceiling, across processes: CPU per request and request rate of our
//! worker versus a raw DEALER echo, in alternating rounds; memory after a million requests;
//! idle cost; the broker by worker count against a raw forwarder.
//!
//! ```text
//! cargo bench --bench lockstep                      # everything, ~3 minutes
//! BENCH_QUICK=1 cargo bench --bench lockstep        # a smoke run, ~40 s
//! BENCH_ONLY=tcp,inproc cargo bench --bench lockstep  # some sections: tcp inproc memory idle broker
//! cargo bench --features tokio --bench lockstep     # with the async worker as a peer too
//! ```
//!
//! The echo peer runs in a child process (this same executable, re-run with `--role`), so its
//! CPU time (all threads: libzmq's I/O thread included) is read from `/proc/<pid>/task/*/
//! schedstat` before and after each batch. inproc cannot cross processes: there the peer is a
//! thread and its CPU is that thread's (plus the action thread and libzmq's threads). Results
//! go to stdout and to `target/bench/` (`report.md`, `rate_by_size.csv`).

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::{ShutdownHandle, Worker, WorkerConfig};
use support::broker::{Backend, Client, Router, Setup};
use support::echo::{self, Mode};
use support::{median, proc, quantile, quick, Driver, SIZES};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--role") {
        return child(&args[i + 1], &args[i + 3]);
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |s: &str| only.is_empty() || only.split(',').any(|o| o == s);
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench".into());
    std::fs::create_dir_all(&out).unwrap();
    let mut report = Report::default();
    report.line(&format!("machine: {}", proc::machine()));
    report.line(&format!(
        "load average at start: {:.2}{}",
        proc::load_average(),
        if quick() { " (BENCH_QUICK)" } else { "" }
    ));
    let mut csv = String::from(
        "transport,size,mode,rounds,requests_per_s,cpu_us_per_request,least_cpu_us_per_request,best_requests_per_s\n",
    );
    if wanted("tcp") {
        lockstep_tcp(&mut report, &mut csv);
    }
    if wanted("inproc") {
        lockstep_inproc(&mut report, &mut csv);
    }
    if wanted("memory") {
        memory(&mut report);
    }
    if wanted("idle") {
        idle(&mut report);
    }
    if wanted("broker") {
        broker(&mut report);
    }
    report.line(&format!("load average at end: {:.2}", proc::load_average()));
    std::fs::write(format!("{out}/report.md"), &report.text).unwrap();
    if wanted("tcp") || wanted("inproc") {
        std::fs::write(format!("{out}/rate_by_size.csv"), csv).unwrap();
    }
    println!("\nwritten to {out}/report.md and {out}/rate_by_size.csv");
}

/// The child process: one echo peer (or an idle worker with library defaults).
fn child(role: &str, endpoint: &str) {
    let context = zmq::Context::new();
    if role == "idle-worker" {
        let config = WorkerConfig::new(endpoint, support::SERVICE).context(context);
        Worker::new(config, |r| r).unwrap().run().unwrap();
        return;
    }
    echo::run(Mode::parse(role).expect("role"), &context, endpoint, None);
}

#[derive(Default)]
struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, line: &str) {
        println!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
    }
}

/// One measured batch: CPU nanoseconds of the peer and wall time.
#[derive(Clone, Copy)]
struct Batch {
    cpu_us_per_request: f64,
    rate: f64,
}

/// An echo peer with the driver in front of it; `cpu` reads the peer's CPU nanoseconds.
struct Peer {
    mode: Mode,
    driver: Driver,
    cpu: Box<dyn Fn() -> u64>,
    child: Option<Child>,
    stop: Option<(ShutdownHandle, thread::JoinHandle<()>)>,
}

impl Peer {
    fn process(context: &zmq::Context, mode: Mode) -> Peer {
        let mut driver = Driver::bind(context, "tcp://127.0.0.1:*");
        let (mut command, role) = match mode {
            Mode::Baseline => (Command::new(baseline_exe().unwrap()), baseline_role()),
            _ => (child_command(), mode),
        };
        let child = command
            .args(["--role", role.name(), "--endpoint", &driver.endpoint])
            .spawn()
            .unwrap();
        driver.accept();
        let pid = child.id();
        Peer {
            mode,
            driver,
            cpu: Box::new(move || proc::process_cpu_ns(pid)),
            child: Some(child),
            stop: None,
        }
    }

    fn thread(context: &zmq::Context, mode: Mode, endpoint: &str) -> Peer {
        let mut driver = Driver::bind(context, endpoint);
        let shutdown = ShutdownHandle::new();
        let (tx, rx) = mpsc::channel();
        let (ctx, ep, sd) = (context.clone(), driver.endpoint.clone(), shutdown.clone());
        let handle = thread::spawn(move || {
            tx.send(proc::current_tid()).unwrap();
            echo::run(mode, &ctx, &ep, Some(sd));
        });
        let tid = rx.recv().unwrap();
        driver.accept();
        let pid = std::process::id();
        let mut tids = vec![tid];
        tids.extend(proc::tasks_named(pid, "ZMQbg"));
        if mode == Mode::Threaded {
            // Ours is the newest action thread.
            tids.extend(proc::tasks_named(pid, "mdp-action").into_iter().max());
        }
        Peer {
            mode,
            driver,
            cpu: Box::new(move || proc::threads_cpu_ns(pid, &tids)),
            child: None,
            stop: Some((shutdown, handle)),
        }
    }

    fn measure(&mut self, body: &[u8], count: u64) -> Batch {
        let cpu = (self.cpu)();
        let start = Instant::now();
        for _ in 0..count {
            let len = self.driver.round_trip(body);
            debug_assert_eq!(len, body.len());
        }
        let elapsed = start.elapsed();
        let cpu = (self.cpu)() - cpu;
        Batch {
            cpu_us_per_request: cpu as f64 / 1e3 / count as f64,
            rate: count as f64 / elapsed.as_secs_f64(),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((shutdown, handle)) = self.stop.take() {
            shutdown.shutdown();
            if matches!(self.mode, Mode::Raw | Mode::RawCopy) {
                self.driver.stop_raw();
            }
            let _ = handle.join();
        }
    }
}

/// This executable, to be re-run as a child; `BENCH_CHILD_WRAP="strace -f -c -o FILE"` (for
/// example) runs it under another program, for profiling only.
fn child_command() -> Command {
    let exe = std::env::current_exe().unwrap();
    match std::env::var("BENCH_CHILD_WRAP") {
        Ok(wrap) if !wrap.trim().is_empty() => {
            let mut words = wrap.split_whitespace();
            let mut command = Command::new(words.next().unwrap());
            command.args(words).arg(exe);
            command
        }
        _ => Command::new(exe),
    }
}

/// Another build of this benchmark whose worker to compare with (`BENCH_BASELINE_EXE`).
fn baseline_exe() -> Option<String> {
    std::env::var("BENCH_BASELINE_EXE")
        .ok()
        .filter(|e| !e.is_empty())
}

/// The peer the baseline build runs (`BENCH_BASELINE_ROLE`, e.g. `threaded`): `worker` unless
/// told otherwise.
fn baseline_role() -> Mode {
    std::env::var("BENCH_BASELINE_ROLE")
        .ok()
        .and_then(|role| Mode::parse(&role))
        .unwrap_or(Mode::Worker)
}

/// The body sizes to sweep: `BENCH_SIZES=16,1048576` or all of [`SIZES`].
fn sizes() -> Vec<usize> {
    match std::env::var("BENCH_SIZES") {
        Ok(list) if !list.is_empty() => list.split(',').map(|s| s.parse().unwrap()).collect(),
        _ => SIZES.to_vec(),
    }
}

/// Requests per batch and rounds for a body size.
fn plan(size: usize) -> (u64, usize) {
    // Short batches and many rounds: on a shared machine some batches are disturbed, and
    // the medians and minimums below need enough clean ones.
    let (count, rounds) = match size {
        16 => (1500, 31),
        s if s <= 1024 => (1500, 11),
        s if s <= 64 * 1024 => (600, 11),
        _ => (100, 31),
    };
    if quick() {
        (count / 3, 3)
    } else {
        (count, rounds)
    }
}

/// Modes measured at a size: all four at the sizes of the goals, raw and worker elsewhere.
/// `BENCH_MODES=raw,worker` narrows them (raw always comes first: ratios are to it).
fn modes_for(transport: &str, size: usize) -> Vec<Mode> {
    let modes: &[Mode] = if size == 16 {
        Mode::ALL
    } else if size == 1024 * 1024 {
        &Mode::ALL[..4]
    } else {
        &[Mode::Raw, Mode::Worker]
    };
    let only = std::env::var("BENCH_MODES").unwrap_or_default();
    let baseline = (transport == "tcp" && baseline_exe().is_some()).then_some(Mode::Baseline);
    modes
        .iter()
        .copied()
        .chain(baseline)
        .filter(|m| *m == Mode::Raw || only.is_empty() || only.split(',').any(|o| o == m.name()))
        .collect()
}

fn lockstep_tcp(report: &mut Report, csv: &mut String) {
    let context = zmq::Context::new();
    let baseline = baseline_exe().map(|_| Mode::Baseline);
    let mut peers: Vec<Peer> = Mode::ALL
        .iter()
        .copied()
        .chain(baseline)
        .map(|m| Peer::process(&context, m))
        .collect();
    report.line("\n## Lockstep round trip, tcp loopback, peer in its own process\n");
    run_lockstep(report, csv, "tcp", &mut peers);
}

fn lockstep_inproc(report: &mut Report, csv: &mut String) {
    let context = zmq::Context::new();
    let mut peers: Vec<Peer> = Mode::ALL
        .iter()
        .map(|&m| Peer::thread(&context, m, &format!("inproc://bench-{}", m.name())))
        .collect();
    report.line("\n## Lockstep round trip, inproc, peer on a thread (thread CPU time)\n");
    run_lockstep(report, csv, "inproc", &mut peers);
}

/// Alternating rounds at every size; a table of medians and ratios to raw.
fn run_lockstep(report: &mut Report, csv: &mut String, transport: &str, peers: &mut [Peer]) {
    report.line(
        "| body | peer | rounds x requests | rate (req/s) | CPU/request (µs) | rate / raw | CPU / raw | paired CPU ratio (min..max) | least CPU/request (µs) | least CPU / raw | best rate / raw |",
    );
    report.line("|---|---|---|---|---|---|---|---|---|---|---|");
    for size in sizes() {
        let body = vec![0x5au8; size];
        let (count, rounds) = plan(size);
        let modes = modes_for(transport, size);
        let mut batches: Vec<Vec<Batch>> = vec![Vec::new(); modes.len()];
        let index: Vec<usize> = modes
            .iter()
            .map(|&m| peers.iter().position(|p| p.mode == m).unwrap())
            .collect();
        for &i in &index {
            peers[i].measure(&body, count / 5 + 1); // warm-up
        }
        for round in 0..rounds {
            // Alternate the order so that drift and warm-up cancel out.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..modes.len()).collect()
            } else {
                (0..modes.len()).rev().collect()
            };
            for i in order {
                let batch = peers[index[i]].measure(&body, count);
                batches[i].push(batch);
            }
        }
        let raw_cpu: Vec<f64> = batches[0].iter().map(|b| b.cpu_us_per_request).collect();
        let mut raw_cpu_sorted = raw_cpu.clone();
        let raw_cpu_median = median(&mut raw_cpu_sorted);
        let raw_rate = median(&mut batches[0].iter().map(|b| b.rate).collect::<Vec<_>>());
        let raw_least = raw_cpu_sorted.first().copied().unwrap_or(0.0);
        let best_rate = |b: &[Batch]| b.iter().map(|b| b.rate).fold(0.0, f64::max);
        let raw_best_rate = best_rate(&batches[0]);
        for (i, &mode) in modes.iter().enumerate() {
            let mut cpu: Vec<f64> = batches[i].iter().map(|b| b.cpu_us_per_request).collect();
            let mut paired: Vec<f64> = cpu.iter().zip(&raw_cpu).map(|(c, r)| c / r).collect();
            let cpu_median = median(&mut cpu);
            let rate = median(&mut batches[i].iter().map(|b| b.rate).collect::<Vec<_>>());
            let paired_median = median(&mut paired);
            let least = cpu.first().copied().unwrap_or(0.0);
            let best_rate_ratio = best_rate(&batches[i]) / raw_best_rate;
            report.line(&format!(
                "| {} | {} | {} x {} | {:.0} | {:.1} | {:.3} | {:.3} | {:.3} ({:.2}..{:.2}) | {:.1} | {:.3} | {:.3} |",
                human(size),
                mode.name(),
                rounds,
                count,
                rate,
                cpu_median,
                rate / raw_rate,
                cpu_median / raw_cpu_median,
                paired_median,
                paired.first().copied().unwrap_or(0.0),
                paired.last().copied().unwrap_or(0.0),
                least,
                least / raw_least,
                best_rate_ratio,
            ));
            let _ = writeln!(
                csv,
                "{transport},{size},{},{rounds},{rate:.1},{cpu_median:.2},{least:.2},{:.1}",
                mode.name(),
                best_rate(&batches[i])
            );
        }
    }
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// Resident memory of a worker process after 10 000 and after 1 000 000 requests.
fn memory(report: &mut Report) {
    let context = zmq::Context::new();
    let total: u64 = if quick() { 200_000 } else { 1_000_000 };
    report.line(
        "\n## Memory: worker process RSS by requests answered (16 B bodies, 16 in flight, tcp)\n",
    );
    report.line(
        "| peer | after 10 000 | after 100 000 | after {total} | growth 10 000 -> {total} |"
            .replace("{total}", &total.to_string())
            .as_str(),
    );
    report.line("|---|---|---|---|---|");
    // Only the inline worker: it reads nothing while its action runs, so requests can queue
    // in its socket. A threaded worker reads on, and drops a second REQUEST while busy as
    // MDP requires (a broker never sends one).
    let mode = Mode::Worker;
    let mut peer = Peer::process(&context, mode);
    let pid = peer.child.as_ref().unwrap().id();
    let body = [0u8; 16];
    peer.driver.pipelined(&body, 10_000, 16);
    let at_10k = proc::rss_kib(pid);
    peer.driver.pipelined(&body, 90_000, 16);
    let at_100k = proc::rss_kib(pid);
    peer.driver.pipelined(&body, total - 100_000, 16);
    let at_total = proc::rss_kib(pid);
    report.line(&format!(
        "| {} | {} KiB | {} KiB | {} KiB | {:+} KiB |",
        mode.name(),
        at_10k,
        at_100k,
        at_total,
        at_total as i64 - at_10k as i64
    ));
}

/// CPU and wake-ups of an idle worker with the library defaults, the driver heartbeating it
/// like a broker every 2.5 s.
fn idle(report: &mut Report) {
    let context = zmq::Context::new();
    let seconds = if quick() { 10 } else { 60 };
    let mut driver = Driver::bind(&context, "tcp://127.0.0.1:*");
    let mut child = child_command()
        .args(["--role", "idle-worker", "--endpoint", &driver.endpoint])
        .spawn()
        .unwrap();
    driver.accept();
    let pid = child.id();
    let heartbeat = Duration::from_millis(2500);
    driver.play_idle_broker(Duration::from_secs(1), heartbeat);
    let (cpu, switches) = (proc::process_cpu_ns(pid), proc::voluntary_switches(pid));
    let received = driver.play_idle_broker(Duration::from_secs(seconds), heartbeat);
    let cpu = proc::process_cpu_ns(pid) - cpu;
    let switches = proc::voluntary_switches(pid) - switches;
    let _ = child.kill();
    let _ = child.wait();
    report.line(&format!(
        "\n## Idle worker over {seconds} s (library defaults: heartbeat 2.5 s)\n"
    ));
    report.line(&format!(
        "CPU {:.1} ms in {seconds} s ({:.3}% of a core); {} voluntary context switches ({:.1}/s, all threads); {} messages (HEARTBEATs) sent to the broker",
        cpu as f64 / 1e6,
        cpu as f64 / 1e7 / seconds as f64,
        switches,
        switches as f64 / seconds as f64,
        received
    ));
}

/// Throughput and latency through our broker and through a raw forwarder, by worker count.
fn broker(report: &mut Report) {
    let context = zmq::Context::new();
    let (count, rounds) = if quick() { (4000, 1) } else { (10_000, 3) };
    report
        .line("\n## Through a broker, tcp loopback, everything in this process (2 cores shared)\n");
    report.line(&format!(
        "16 B bodies, {count} requests per round, {rounds} alternating rounds, medians. \
         Router CPU: the broker's (or forwarder's) thread, per request."
    ));
    report.line("");
    report.line("| workers | in flight | router + workers | req/s | p50 (µs) | p99 (µs) | router CPU/request (µs) |");
    report.line("|---|---|---|---|---|---|---|");
    let setups = [
        (Router::Ours, Backend::Worker, "our broker + our workers"),
        (Router::Ours, Backend::RawEcho, "our broker + raw MDP echo"),
        (
            Router::Raw,
            Backend::RawEcho,
            "raw forwarder + raw MDP echo",
        ),
    ];
    for workers in [1usize, 2, 4] {
        let windows: &[u64] = if workers == 1 {
            &[1, 2]
        } else {
            &[2 * workers as u64]
        };
        let running: Vec<Setup> = setups
            .iter()
            .map(|&(r, b, _)| Setup::start(&context, r, b, workers))
            .collect();
        for &window in windows {
            let mut results: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); setups.len()];
            for round in 0..rounds {
                let order: Vec<usize> = if round % 2 == 0 {
                    (0..setups.len()).collect()
                } else {
                    (0..setups.len()).rev().collect()
                };
                for i in order {
                    let setup = &running[i];
                    let pid = std::process::id();
                    let cpu = proc::task_cpu_ns(pid, setup.router_tid);
                    let mut client = Client::connect(&context, &setup.client_endpoint);
                    let run = client.run(count, window, 16);
                    let cpu = proc::task_cpu_ns(pid, setup.router_tid) - cpu;
                    results[i].push((
                        run.rate(),
                        quantile(&run.latencies_us, 0.5),
                        quantile(&run.latencies_us, 0.99),
                        cpu as f64 / 1e3 / count as f64,
                    ));
                }
            }
            for (i, &(_, _, name)) in setups.iter().enumerate() {
                let col = |f: fn(&(f64, f64, f64, f64)) -> f64| {
                    median(&mut results[i].iter().map(f).collect::<Vec<_>>())
                };
                report.line(&format!(
                    "| {workers} | {window} | {name} | {:.0} | {:.0} | {:.0} | {:.1} |",
                    col(|r| r.0),
                    col(|r| r.1),
                    col(|r| r.2),
                    col(|r| r.3),
                ));
            }
        }
        for setup in running {
            setup.stop();
        }
    }
}
