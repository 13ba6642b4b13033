//! `mdp bench`: a load generator. Sends `--requests` echo requests, each with a unique body,
//! from `--clients` clients with `--in-flight` requests each, checks every reply for its exact
//! content, and reports throughput, latency percentiles and errors.
//!
//! Without `--broker` it runs **embedded**: our broker on `tcp://127.0.0.1:*` and `--workers`
//! echo workers, all started here, so that it needs no setup. `--kill-one` runs one of those
//! workers in a child process (this same binary, with the hidden `--child-worker` flag) and
//! kills it with SIGKILL half-way, then starts another: a crash, with no REPLY and no
//! DISCONNECT. With `--broker` it loads someone else's broker and workers.
//!
//! The clients are the library's [`AsyncClient`](majordomo_worker::AsyncClient)s: MDP/0.1 has
//! no request id, and the async client gives each request in flight a socket of its own, so a
//! reply is matched to its request by the socket and the bench builds no frame itself.

mod embedded;
mod load;
mod report;

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{CliError, CliResult};
use embedded::Embedded;
use load::{Load, Plan};
use report::{KillReport, Report};

/// Digits of the request id at the start of every body: the smallest `--size`.
const ID_DIGITS: usize = 12;

/// Load a broker with echo requests; report throughput, latency and errors.
#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Without --broker (or MDP_BROKER), it starts its own broker and echo workers: \
no setup needed. Every request body is unique (a sequence number, then filler) and every reply \
must be its exact echo. The progress bar shows on a terminal only; the report goes to stdout. \
Exit status: 0 if every request got exactly one correct reply, 1 if not, 2 for a bad flag, \
3 if the load could not run.

Examples:
  mdp bench                                  # embedded: broker + 4 echo workers, 100 000 requests
  mdp bench --kill-one                       # the same, one worker SIGKILLed half-way and restarted
  mdp bench --clients 16 --in-flight 8 --size 1024 --requests 1000000
  mdp bench --broker tcp://127.0.0.1:5555 --service echo --json | jq .latency_us"
)]
pub struct Args {
    /// Clients, each with its own connections to the broker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,

    /// Requests in all, shared out between the clients.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub requests: u64,

    /// Bytes per request body (at least 12: the body starts with its 12-digit id).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(12..=256 * 1024 * 1024))]
    pub size: u32,

    /// The service to load; embedded workers register under this name.
    #[arg(long, default_value = "echo")]
    pub service: String,

    /// Requests each client keeps in flight at once (each on a socket of its own).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub in_flight: u32,

    /// How long a request waits for its reply before it is sent again: 500ms, 2s, 1.5s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How many times a request is sent again (on a new socket) after a timeout.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,

    /// Load this broker (or comma-separated list to fail over between) instead of an
    /// embedded one (its workers are someone else's).
    #[arg(long, env = "MDP_BROKER", value_name = "ENDPOINT")]
    pub broker: Option<String>,

    /// Embedded echo workers.
    #[arg(long, default_value_t = 4, conflicts_with = "broker",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub workers: u32,

    /// Kill one embedded worker with SIGKILL half-way and start another (a crash).
    #[arg(long, conflicts_with = "broker")]
    pub kill_one: bool,

    /// Print the report as one JSON object, and nothing else on stdout.
    #[arg(long)]
    pub json: bool,

    /// Runs the killable echo worker of `--kill-one` against ENDPOINT, until stdin closes.
    #[arg(long, hide = true, value_name = "ENDPOINT")]
    pub child_worker: Option<String>,
}

/// Runs the load and prints the report.
pub fn run(args: Args) -> CliResult {
    if let Some(endpoint) = &args.child_worker {
        return embedded::serve_child(endpoint, &args.service);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut target = Target::start(&args)?;
    let plan = Plan::new(&args, target.endpoint());
    let load = Arc::new(Load::new(plan));
    let started = Instant::now();
    let task = runtime.spawn(Arc::clone(&load).run());
    let kill = watch(&load, &mut target, &task, args.kill_one)?;
    let latencies = runtime
        .block_on(task)
        .map_err(|e| CliError::Failed(e.to_string()))??;
    let elapsed = started.elapsed();
    let broker_stats = target.stop()?;
    let report = Report::new(&args, &load, latencies, elapsed, kill, broker_stats);
    report.print(args.json)?;
    report.verdict()
}

/// Parses `500ms`, `2s` or `1.5s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(number) => (number, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(""), 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration like 500ms or 2s"))
}

/// What is loaded: our own broker and workers, or someone else's broker.
enum Target {
    Embedded(Box<Embedded>),
    External(String),
}

impl Target {
    fn start(args: &Args) -> Result<Target, CliError> {
        match &args.broker {
            Some(endpoint) => Ok(Target::External(endpoint.clone())),
            None => Embedded::start(args).map(|e| Target::Embedded(Box::new(e))),
        }
    }

    fn endpoint(&self) -> &str {
        match self {
            Target::Embedded(embedded) => embedded.endpoint(),
            Target::External(endpoint) => endpoint,
        }
    }

    fn kill_and_restart(&mut self, at: u64) -> Result<Option<KillReport>, CliError> {
        match self {
            Target::Embedded(embedded) => embedded.kill_and_restart(at),
            Target::External(_) => Ok(None),
        }
    }

    /// Stops what we started; the embedded broker's counters.
    fn stop(self) -> Result<Option<majordomo_worker::broker::BrokerStats>, CliError> {
        match self {
            Target::Embedded(embedded) => embedded.stop().map(Some),
            Target::External(_) => Ok(None),
        }
    }
}

/// Until the load is done: draws the progress bar (on a terminal only) and, with
/// `--kill-one`, kills and restarts the child worker once half of the requests are done.
fn watch<T>(
    load: &Load,
    target: &mut Target,
    task: &tokio::task::JoinHandle<T>,
    kill_one: bool,
) -> Result<Option<KillReport>, CliError> {
    let bar = progress_bar(load.requests());
    let mut kill = None;
    let mut pending_kill = kill_one;
    while !task.is_finished() {
        let done = load.done();
        if pending_kill && done >= load.requests().div_ceil(2) {
            pending_kill = false;
            kill = target.kill_and_restart(done)?;
            if let Some(kill) = &kill {
                bar.println(kill.to_string());
            }
        }
        bar.set_position(done);
        let rate = done as f64 / bar.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{} req/s", report::grouped(rate as u64)));
        thread::sleep(Duration::from_millis(20));
    }
    bar.set_position(load.done());
    bar.finish_and_clear();
    Ok(kill)
}

/// A bar on stderr when it is a terminal; a hidden one otherwise.
fn progress_bar(len: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {human_pos}/{human_len}  {msg}  eta {eta}",
    )
    .map(|style| style.progress_chars("#>."));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_must_be_positive() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "0s", "-1s", "fast", "1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
