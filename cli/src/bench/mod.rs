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

mod args;
mod embedded;
mod load;
mod report;

use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use args::Args;

use crate::error::{CliError, CliResult};
use embedded::Embedded;
use load::{Load, Plan};
use report::{KillReport, Report};

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
