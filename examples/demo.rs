//! The whole crate in one command: a broker, echo workers, clients under load, and one worker
//! killed for real half-way and restarted. Ends with a report; the exit code is 0 only if
//! every request got exactly one correct reply.
//!
//! ```text
//! make demo                                  # cargo run --release --example demo
//! cargo run --release --example demo -- --requests 20000 --workers 2 --clients 4
//! ```
//!
//! Flags: `--requests N` (default 100 000), `--workers N` (echo workers, default 4),
//! `--clients N` (client threads, default 8), `--body-bytes N` (default 64), `--no-progress`,
//! `--help`. The progress bar goes to stderr, the report to stdout.
//!
//! How it works:
//!
//! - The broker binds `tcp://127.0.0.1:*`. `workers - 1` echo workers run in this process
//!   (a `WorkerPool`); one more runs in a **child process** (this same program, started with
//!   `--victim-worker ENDPOINT`), so that it can be killed with SIGKILL: no DISCONNECT, no
//!   REPLY for the request it holds, its TCP connection simply vanishes. Killing a thread
//!   is not possible, and dropping a socket in-process would still be a polite close. The
//!   child also stops (gracefully) when its stdin closes, so it never outlives the demo.
//! - Each client thread has its own `Client` and sends one request at a time; every request
//!   body carries a unique id and the reply must be the exact echo of it.
//! - Half-way through, the child worker is killed and a new one started. MDP/0.1 has no
//!   redelivery: a request the dead worker held is lost at the broker. Its client times out
//!   (500 ms) and sends it again, on a **new socket**: a late reply to the first attempt,
//!   were there one, is addressed to the old socket and dropped by the broker, so it can never
//!   be taken for the answer to a later request.
//! - The report counts, per request id, the correct replies the clients got: `lost` (none),
//!   `duplicated` (more than one) and `errors` (timeouts after every retry, or a reply that is
//!   not the echo of its request) must all be 0.

use std::error::Error;
use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle, BrokerStats};
use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{zmq, Message, Worker, WorkerConfig};

const USAGE: &str =
    "usage: demo [--requests N] [--workers N] [--clients N] [--body-bytes N] [--no-progress]
  --requests    requests to send in all (default 100000)
  --workers     echo workers, one of them in a child process that gets killed (default 4)
  --clients     client threads, one request in flight each (default 8)
  --body-bytes  size of each request body, at least 12 for the id (default 64)
  --no-progress no progress bar on stderr";

const SERVICE: &str = "echo";
/// Heartbeat of broker and workers: a dead idle worker is forgotten after 3 of them.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long a client waits for a reply before sending the request again on a new socket.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
/// Resends after a timeout: a request fails only after 2 s without any reply.
const CLIENT_RETRIES: u32 = 3;
/// Longest wait for the workers to register, or for the last child worker to stop.
const STARTUP_WAIT: Duration = Duration::from_secs(10);
/// Digits of the id at the start of every body.
const ID_DIGITS: usize = 12;

/// Makes the command that runs the killable echo worker against `endpoint`.
pub type VictimCommand = fn(endpoint: &str) -> io::Result<Command>;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests in all.
    pub requests: u64,
    /// Echo workers, the child-process one included.
    pub workers: usize,
    /// Client threads.
    pub clients: usize,
    /// Bytes per request body.
    pub body_bytes: usize,
    /// Whether to draw the progress bar on stderr.
    pub progress: bool,
    /// How to start the child-process worker.
    pub victim: VictimCommand,
}

impl Options {
    fn defaults() -> Options {
        Options {
            requests: 100_000,
            workers: 4,
            clients: 8,
            body_bytes: 64,
            progress: io::stderr().is_terminal(),
            victim: own_victim_command,
        }
    }
}

/// The child worker as this very program with `--victim-worker ENDPOINT`.
fn own_victim_command(endpoint: &str) -> io::Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["--victim-worker", endpoint]);
    Ok(command)
}

/// The kill and restart of the child worker.
#[derive(Debug, Clone)]
pub struct KillReport {
    /// Replies received when the kill happened.
    pub at: u64,
    /// Process id of the killed worker.
    pub killed_pid: u32,
    /// Process id of its replacement.
    pub restarted_pid: u32,
    /// From the kill to the replacement's start.
    pub restart_took: Duration,
}

/// What happened, from the clients' point of view and the broker's.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options run.
    pub requests: u64,
    /// Echo workers.
    pub workers: usize,
    /// Client threads.
    pub clients: usize,
    /// Bytes per body.
    pub body_bytes: usize,
    /// The broker's endpoint.
    pub endpoint: String,
    /// From the first request to the last reply.
    pub elapsed: Duration,
    /// Round-trip times of answered requests, sorted, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Replies that were the exact echo of their request.
    pub checked: u64,
    /// Requests without a correct reply after every retry, and replies that were not the echo
    /// of their request.
    pub errors: u64,
    /// Request ids that never got a correct reply.
    pub lost: u64,
    /// Extra replies for an id that already had one.
    pub duplicated: u64,
    /// The kill and restart, if it happened.
    pub kill: Option<KillReport>,
    /// The broker's final counters.
    pub broker: BrokerStats,
    /// Requests answered by the in-process workers.
    pub in_process_requests: u64,
}

impl Report {
    /// Whether every request got exactly one correct reply.
    pub fn is_ok(&self) -> bool {
        self.errors == 0 && self.lost == 0 && self.duplicated == 0 && self.checked == self.requests
    }

    /// Requests the clients sent again after a timeout, as the broker counted them.
    pub fn resent(&self) -> u64 {
        self.broker.requests_received.saturating_sub(self.requests)
    }

    /// The latency at `quantile` (0.0 to 1.0).
    pub fn latency(&self, quantile: f64) -> Duration {
        let Some(last) = self.latencies_us.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        let index = ((last as f64) * quantile).round() as usize;
        Duration::from_micros(u64::from(self.latencies_us[index.min(last)]))
    }

    fn throughput(&self) -> f64 {
        self.checked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs the demo: starts everything, sends the load, kills and restarts the child worker
/// half-way, stops everything, and reports.
///
/// # Errors
///
/// Anything that stops the demo from running at all (a socket, a thread, the child process).
/// Lost or wrong replies are not errors: they are in the report.
pub fn run(options: &Options) -> Result<Report, Box<dyn Error>> {
    let options = Options {
        workers: options.workers.max(1),
        clients: options.clients.max(1),
        body_bytes: options.body_bytes.max(ID_DIGITS),
        ..options.clone()
    };
    let context = zmq::Context::new();
    let broker = Broker::bind(
        BrokerConfig::new("tcp://127.0.0.1:*")
            .heartbeat(HEARTBEAT)
            .context(context.clone()),
    )?
    .spawn()?;
    let endpoint = broker.endpoint().to_string();
    let pool = start_pool(&options, &endpoint, &context)?;
    let victim = Victim::start(&options, &endpoint)?;
    wait_for_workers(&broker, options.workers)?;

    let load = Load::new(&options);
    let Finished {
        latencies,
        kill,
        elapsed,
    } = load.run(&options, &endpoint, &context, victim)?;

    let in_process_requests = pool.map_or(0, |pool| pool.stop().total.requests);
    let broker = broker.stop()?;
    let (lost, duplicated) = load.tally();
    Ok(Report {
        requests: options.requests,
        workers: options.workers,
        clients: options.clients,
        body_bytes: options.body_bytes,
        endpoint,
        elapsed,
        latencies_us: latencies,
        checked: load.checked.load(Ordering::Relaxed),
        errors: load.errors.load(Ordering::Relaxed),
        lost,
        duplicated,
        kill,
        broker,
        in_process_requests,
    })
}

fn worker_config(endpoint: &str) -> WorkerConfig {
    WorkerConfig::new(endpoint, SERVICE)
        .heartbeat(HEARTBEAT)
        .reconnect(Duration::from_millis(100))
        .reconnect_max(Duration::from_secs(1))
        .linger(Duration::from_millis(500))
}

fn echo(request: Vec<Message>) -> Vec<Message> {
    request
}

/// The in-process echo workers: all but the child-process one.
fn start_pool(
    options: &Options,
    endpoint: &str,
    context: &zmq::Context,
) -> Result<Option<WorkerPool>, Box<dyn Error>> {
    let count = options.workers - 1;
    if count == 0 {
        return Ok(None);
    }
    let service = PoolService::new(worker_config(endpoint), count, || echo);
    let pool = WorkerPool::builder()
        .context(context.clone())
        .service(service)
        .start()?;
    Ok(Some(pool))
}

fn wait_for_workers(broker: &BrokerHandle, workers: usize) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + STARTUP_WAIT;
    while broker.stats().workers < workers {
        if Instant::now() >= deadline {
            let known = broker.stats().workers;
            return Err(format!("only {known} of {workers} workers registered").into());
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The echo worker in a child process, which can be killed for real.
struct Victim {
    child: Option<Child>,
}

impl Victim {
    /// Starts it with a pipe on stdin: when the pipe closes (we stop it, or we die), it stops.
    fn start(options: &Options, endpoint: &str) -> io::Result<Victim> {
        let child = (options.victim)(endpoint)?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Victim { child: Some(child) })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the worker gets no chance to reply or say DISCONNECT.
    fn kill(mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Closes its stdin, which it takes as a graceful shutdown; kills it if it is not gone
    /// within `patience`.
    fn stop(mut self, patience: Duration) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        drop(child.stdin.take());
        let deadline = Instant::now() + patience;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                child.kill()?;
                child.wait()?;
                return Ok(());
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the killable worker of the demo: an echo worker that stops gracefully when its stdin
/// closes. This is what `--victim-worker ENDPOINT` does.
///
/// # Errors
///
/// The worker's error if it cannot be built or fails for good.
pub fn serve_victim(endpoint: &str) -> Result<(), Box<dyn Error>> {
    let mut worker = Worker::new(worker_config(endpoint), echo)?;
    let shutdown = worker.shutdown_handle();
    thread::spawn(move || {
        let _ = io::stdin().read_to_end(&mut Vec::new());
        shutdown.shutdown();
    });
    worker.run()?;
    Ok(())
}

/// What the load left behind, besides the counters in [`Load`].
struct Finished {
    /// Sorted, in microseconds.
    latencies: Vec<u32>,
    kill: Option<KillReport>,
    elapsed: Duration,
}

/// The state the client threads share.
struct Load {
    requests: u64,
    body_bytes: usize,
    next_id: AtomicU64,
    done: AtomicU64,
    /// Client threads still sending.
    active: AtomicUsize,
    checked: AtomicU64,
    errors: AtomicU64,
    /// Correct replies per id.
    seen: Vec<AtomicU32>,
}

impl Load {
    fn new(options: &Options) -> Load {
        Load {
            requests: options.requests,
            body_bytes: options.body_bytes,
            next_id: AtomicU64::new(0),
            done: AtomicU64::new(0),
            active: AtomicUsize::new(options.clients),
            checked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            seen: (0..options.requests).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Runs the client threads; this thread draws the progress bar and kills the child worker
    /// half-way. Returns the sorted latencies, the kill, and the time it all took.
    fn run(
        &self,
        options: &Options,
        endpoint: &str,
        context: &zmq::Context,
        victim: Victim,
    ) -> Result<Finished, Box<dyn Error>> {
        let started = Instant::now();
        let config = ClientConfig::new(endpoint)
            .timeout(CLIENT_TIMEOUT)
            .retries(CLIENT_RETRIES)
            .context(context.clone());
        let (latencies, kill) = thread::scope(|scope| {
            let clients: Vec<_> = (0..options.clients)
                .map(|_| scope.spawn(|| self.client(config.clone())))
                .collect();
            let kill = self.watch(options, endpoint, victim, started);
            let mut latencies = Vec::new();
            for client in clients {
                match client.join() {
                    Ok(Ok(mine)) => latencies.extend(mine),
                    Ok(Err(error)) => return Err(error),
                    Err(_) => return Err("a client thread panicked".into()),
                }
            }
            Ok((latencies, kill?))
        })?;
        let elapsed = started.elapsed();
        let mut latencies = latencies;
        latencies.sort_unstable();
        Ok(Finished {
            latencies,
            kill,
            elapsed,
        })
    }

    /// One client thread: takes the next id until there is none left.
    fn client(&self, config: ClientConfig) -> Result<Vec<u32>, String> {
        let result = self.send_all(config);
        self.active.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn send_all(&self, config: ClientConfig) -> Result<Vec<u32>, String> {
        let mut client = Client::connect(config).map_err(|e| e.to_string())?;
        let mut latencies = Vec::new();
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id >= self.requests {
                return Ok(latencies);
            }
            let body = make_body(id, self.body_bytes);
            let sent = Instant::now();
            let reply = client.request(SERVICE, &[body.as_slice()]);
            let took = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
            match reply {
                Ok(reply) => {
                    latencies.push(took);
                    self.check(id, &body, &reply);
                }
                Err(error) => self.error(format_args!("request {id}: {error}")),
            }
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a reply: correct only if it is the exact echo of its request. A wrong one that
    /// carries another id counts for that id, so a reply delivered twice shows as duplicated.
    fn check(&self, id: u64, body: &[u8], reply: &[Vec<u8>]) {
        if reply.len() == 1 && reply[0] == body {
            self.checked.fetch_add(1, Ordering::Relaxed);
            self.seen[id as usize].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let other = reply.first().and_then(|frame| parse_id(frame));
        if let Some(other) = other.filter(|other| *other < self.requests) {
            self.seen[other as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.error(format_args!(
            "request {id}: reply is not its echo ({other:?})"
        ));
    }

    fn error(&self, what: fmt::Arguments<'_>) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("\nerror: {what}");
        }
    }

    /// Until every request is done: redraws the progress bar every 100 ms, and kills and
    /// restarts the child worker as soon as half of the requests are answered.
    fn watch(
        &self,
        options: &Options,
        endpoint: &str,
        victim: Victim,
        started: Instant,
    ) -> Result<Option<KillReport>, String> {
        let mut victim = Some(victim);
        let mut kill = None;
        let mut last_drawn = started;
        loop {
            let done = self.done.load(Ordering::Relaxed);
            if kill.is_none() && done >= self.requests.div_ceil(2) {
                if let Some(old) = victim.take() {
                    let (report, new) = kill_and_restart(options, endpoint, old, done)
                        .map_err(|e| format!("kill and restart: {e}"))?;
                    if options.progress {
                        eprintln!("\r{}", describe_kill(&report));
                    }
                    kill = Some(report);
                    victim = Some(new);
                }
            }
            if options.progress && last_drawn.elapsed() >= Duration::from_millis(100) {
                draw_progress(done, self.requests, started.elapsed());
                last_drawn = Instant::now();
            }
            if done >= self.requests || self.active.load(Ordering::Relaxed) == 0 {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        if options.progress {
            draw_progress(
                self.done.load(Ordering::Relaxed),
                self.requests,
                started.elapsed(),
            );
        }
        if options.progress {
            eprintln!();
        }
        if let Some(victim) = victim {
            victim.stop(STARTUP_WAIT).map_err(|e| e.to_string())?;
        }
        Ok(kill)
    }

    /// Lost ids (no correct reply) and extra replies, over every id.
    fn tally(&self) -> (u64, u64) {
        let mut lost = 0;
        let mut duplicated = 0;
        for seen in &self.seen {
            match seen.load(Ordering::Relaxed) {
                0 => lost += 1,
                n => duplicated += u64::from(n - 1),
            }
        }
        (lost, duplicated)
    }
}

fn kill_and_restart(
    options: &Options,
    endpoint: &str,
    old: Victim,
    at: u64,
) -> io::Result<(KillReport, Victim)> {
    let killed_pid = old.pid();
    let killed = Instant::now();
    old.kill()?;
    let new = Victim::start(options, endpoint)?;
    let report = KillReport {
        at,
        killed_pid,
        restarted_pid: new.pid(),
        restart_took: killed.elapsed(),
    };
    Ok((report, new))
}

/// The request body: the id in decimal, then filler that depends on the id.
fn make_body(id: u64, len: usize) -> Vec<u8> {
    let mut body = format!("{id:0width$}", width = ID_DIGITS).into_bytes();
    body.extend((0..len.saturating_sub(body.len())).map(|i| b'a' + ((id + i as u64) % 26) as u8));
    body
}

fn parse_id(frame: &[u8]) -> Option<u64> {
    std::str::from_utf8(frame.get(..ID_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

fn draw_progress(done: u64, total: u64, elapsed: Duration) {
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut stderr = io::stderr().lock();
    let _ = write!(
        stderr,
        "\r[{}{}] {}/{}  {} req/s   ",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        grouped(done),
        grouped(total),
        grouped(rate as u64)
    );
    let _ = stderr.flush();
}

fn describe_kill(kill: &KillReport) -> String {
    format!(
        "worker pid {} killed with SIGKILL after {} replies; restarted as pid {} ({:.1} ms later)",
        kill.killed_pid,
        grouped(kill.at),
        kill.restarted_pid,
        kill.restart_took.as_secs_f64() * 1e3
    )
}

/// `1234567` as `1 234 567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.broker;
        writeln!(f, "majordomo demo report")?;
        writeln!(
            f,
            "  setup            1 broker on {}, {} echo workers (1 in a child process), {} clients",
            self.endpoint, self.workers, self.clients
        )?;
        writeln!(
            f,
            "  requests         {} of {} bytes, each with a unique id",
            grouped(self.requests),
            self.body_bytes
        )?;
        writeln!(f, "  elapsed          {:.2} s", self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  throughput       {} req/s",
            grouped(self.throughput() as u64)
        )?;
        writeln!(
            f,
            "  latency          p50 {}   p99 {}   max {}",
            ms(self.latency(0.50)),
            ms(self.latency(0.99)),
            ms(self.latency(1.0))
        )?;
        writeln!(
            f,
            "  replies checked  {} (each the exact echo of its request)",
            grouped(self.checked)
        )?;
        writeln!(f, "  errors           {}", grouped(self.errors))?;
        writeln!(f, "  lost             {}", grouped(self.lost))?;
        writeln!(f, "  duplicated       {}", grouped(self.duplicated))?;
        match &self.kill {
            Some(kill) => writeln!(f, "  kill/restart     {}", describe_kill(kill))?,
            None => writeln!(f, "  kill/restart     did not happen")?,
        }
        writeln!(
            f,
            "  resent           {} request(s) sent again by their client after a {} ms timeout",
            grouped(self.resent()),
            CLIENT_TIMEOUT.as_millis()
        )?;
        writeln!(
            f,
            "  broker           {} received, {} dispatched, {} replies routed ({} never answered: lost with the killed worker)",
            grouped(b.requests_received),
            grouped(b.requests_dispatched),
            grouped(b.replies_routed),
            grouped(b.requests_dispatched.saturating_sub(b.replies_routed))
        )?;
        writeln!(
            f,
            "  served           {} by the in-process workers, the rest by the child processes",
            grouped(self.in_process_requests)
        )?;
        let verdict = if self.is_ok() {
            "OK: every request got exactly one correct reply"
        } else {
            "FAILED: some requests got no reply, a wrong one, or more than one"
        };
        write!(f, "  result           {verdict}")
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::defaults();
    while let Some(flag) = args.next() {
        if flag == "--no-progress" {
            options.progress = false;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--requests" => options.requests = number(&flag, &value)?,
            "--workers" => options.workers = number(&flag, &value)?,
            "--clients" => options.clients = number(&flag, &value)?,
            "--body-bytes" => options.body_bytes = number(&flag, &value)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.requests == 0 || options.workers == 0 || options.clients == 0 {
        return Err("--requests, --workers and --clients must be at least 1".into());
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value} is not a valid number"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(io::stderr)
        .init();
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--victim-worker") {
        let endpoint = args.nth(1).unwrap_or_default();
        return match serve_victim(&endpoint) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("demo victim worker: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_args(args) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}"); // --help
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(report) => {
            println!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::from(3)
        }
    }
}
