//! `mdp check broker ENDPOINT`: a conformance check of any MDP/0.1 broker, driven by raw
//! DEALER workers (fresh identities) and DEALER/REQ clients with bounded waits.
//!
//! The safe checks run first. The ones that can bring a fragile broker down (MDP.md's table:
//! the zguide Python broker dies after a second READY or a DISCONNECT, wdl83 exits on a
//! message from a worker it does not know, the Node broker on a client message without a
//! service) run last, each followed by a liveness probe; once the broker stops answering,
//! the rest is skipped and the report says after which check.
//!
//! When a check gets no answer at all (nothing was received on any of its sockets), nothing
//! is checked further: the report says that nothing answered at the endpoint, and the exit
//! code is 4, as for every tool where nothing answers. The run leaves nothing behind on a broker that answers: each request it sends
//! is served by one of its workers, and, once the broker has shown that it handles a
//! worker's DISCONNECT (the `worker-disconnect` check), each worker it registered and that
//! is still registered sends DISCONNECT at the end; otherwise they are left to the broker's
//! expiry, and a note says so.

use std::rc::Rc;
use std::time::Duration;

use clap::Args as ClapArgs;
use majordomo_worker::protocol::WorkerMessage;

use super::broker_checks as checks;
use super::lab::Lab;
use super::peer::{worker_frames, Peer};
use super::report::{Check, Outcome, Report};
use crate::error::{CliError, CliResult};

/// Check that a broker at ENDPOINT follows MDP/0.1, and report its dialect.
///
/// Exit code 0 when every check passes, 1 when one fails.
#[derive(Debug, ClapArgs)]
#[command(after_help = "Examples:\n  \
    mdp check broker tcp://127.0.0.1:5555\n  \
    mdp check broker --heartbeat-ms 3000 --json tcp://broker:5555 | jq .dialect\n  \
    mdp check broker --long tcp://127.0.0.1:5555   # also waits up to 15 s for busy-worker expiry")]
pub struct Args {
    /// The broker's endpoint, e.g. tcp://127.0.0.1:5555.
    pub endpoint: String,
    /// The broker's heartbeat interval as far as you know it: the heartbeat check waits up to
    /// 3 times this for two HEARTBEATs. Defaults to the reference broker's 2500.
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub heartbeat_ms: u64,
    /// How long to wait for a message that must come. Defaults to 1500.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub wait_ms: u64,
    /// Also wait up to 15 s to see whether the broker expires a busy, silent worker, and wait
    /// out the heartbeat × 3 liveness window before a last liveness probe (a broker that
    /// crashes some seconds after a DISCONNECT is caught then). Off by default.
    #[arg(long)]
    pub long: bool,
    /// Skip the check of this name (repeatable), e.g. one a broker is known to crash on, so
    /// that the checks after it run.
    #[arg(long, value_name = "CHECK")]
    pub skip: Vec<String>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks and prints the report.
pub fn run(args: Args) -> CliResult {
    check_skips(&args.skip)?;
    let report = Runner::new(&args).run_all()?;
    if report
        .observed
        .iter()
        .any(|(k, v)| *k == NOTHING_ANSWERED && v == true)
    {
        report.print(args.json);
        return Err(CliError::Unreachable(nothing_answered(&args.endpoint)));
    }
    report.finish(args.json)
}

/// The observation set when a check got no answer at all.
const NOTHING_ANSWERED: &str = "nothing_answered";

fn nothing_answered(endpoint: &str) -> String {
    format!("nothing answered at {endpoint}: is a broker running there?")
}

/// A failed check that received nothing on any socket: nothing answers at the endpoint.
fn got_no_answer(check: &Check) -> bool {
    check.outcome == Outcome::Fail && check.seen.iter().all(|seen| seen.sent)
}

/// Refuses a `--skip` that names no check (a typo would silently run the check).
fn check_skips(skips: &[String]) -> CliResult {
    let safe = checks::SAFE.iter().map(|(name, _)| *name);
    let names: Vec<&str> = safe
        .chain(super::broker_risky::risky(true).into_iter().map(|(n, _)| n))
        .collect();
    match skips.iter().find(|s| !names.contains(&s.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(CliError::Usage(format!(
            "--skip {unknown}: no such check; the checks are {}",
            names.join(", ")
        ))),
    }
}

/// The run: the lab, and which checks run in it.
struct Runner {
    lab: Lab,
    /// With `--long`: the checks that wait long run too.
    long: bool,
    /// The checks skipped with `--skip`.
    skip: Vec<String>,
}

impl Runner {
    fn new(args: &Args) -> Runner {
        let wait = Duration::from_millis(args.wait_ms);
        let heartbeat = Duration::from_millis(args.heartbeat_ms);
        Runner {
            lab: Lab::new(&args.endpoint, wait, heartbeat),
            long: args.long,
            skip: args.skip.clone(),
        }
    }

    fn run_all(&self) -> Result<Report, CliError> {
        let mut report = Report {
            subject: "broker",
            endpoint: self.lab.endpoint.clone(),
            checks: Vec::new(),
            observed: Vec::new(),
            notes: Vec::new(),
        };
        report.notes.push(format!(
            "services used: {}-*; heartbeat hint {} ms, waits {} ms",
            self.lab.prefix,
            self.lab.heartbeat.as_millis(),
            self.lab.wait.as_millis()
        ));
        for (name, check) in checks::SAFE {
            let result = if self.skip.iter().any(|s| s == name) {
                Check::skipped(name, "skipped with --skip")
            } else {
                check(&self.lab, &mut report.observed)?
            };
            let silent = got_no_answer(&result);
            report.checks.push(result);
            if silent {
                self.skip_the_rest(&mut report);
                return Ok(report);
            }
        }
        self.run_risky(&mut report)?;
        self.disconnect_workers(&mut report)?;
        Ok(report)
    }

    /// After a check that got no answer at all: every other check is skipped, and why.
    fn skip_the_rest(&self, report: &mut Report) {
        let why = nothing_answered(&self.lab.endpoint);
        let safe = checks::SAFE.iter().map(|(name, _)| *name);
        let risky = super::broker_risky::risky(self.long).into_iter();
        for name in safe.chain(risky.map(|(name, _)| name)) {
            if report.checks.iter().all(|c| c.name != name) {
                report.checks.push(Check::skipped(name, why.clone()));
            }
        }
        report.observe(NOTHING_ANSWERED, true);
        report.notes.push(why);
    }

    /// The workers still registered send DISCONNECT, if the broker is known to handle it.
    fn disconnect_workers(&self, report: &mut Report) -> Result<(), CliError> {
        let handled = report
            .checks
            .iter()
            .any(|c| c.name == "worker-disconnect" && c.outcome == Outcome::Pass);
        let stopped = report
            .observed
            .iter()
            .any(|(k, v)| *k == "stopped_answering_after" && !v.is_null());
        let workers: Vec<Rc<Peer>> = self.lab.take_workers();
        let registered: Vec<&Rc<Peer>> = workers.iter().filter(|w| !w.disconnected()).collect();
        if !handled || stopped {
            report.notes.push(format!(
                "{} worker(s) of this run were left for the broker to expire: without a passed \
                 worker-disconnect check, a DISCONNECT might bring it down",
                registered.len()
            ));
            return Ok(());
        }
        let mut t = self.lab.transcript();
        for worker in &registered {
            worker.send(&mut t, &worker_frames(WorkerMessage::Disconnect))?;
        }
        report.observe("workers_disconnected_at_end", registered.len());
        Ok(())
    }

    /// The checks that can bring a fragile broker down, each followed by a liveness probe.
    fn run_risky(&self, report: &mut Report) -> Result<(), CliError> {
        let mut stopped: Option<&'static str> = None;
        for check in super::broker_risky::risky(self.long) {
            if let Some(after) = stopped {
                report.checks.push(Check::skipped(
                    check.0,
                    format!("the broker stopped answering after {after}"),
                ));
                continue;
            }
            if self.skip.iter().any(|s| s == check.0) {
                report
                    .checks
                    .push(Check::skipped(check.0, "skipped with --skip"));
                continue;
            }
            let mut result = (check.1)(&self.lab, &mut report.observed)?;
            let mut t = self.lab.transcript();
            if self.lab.probe(&mut t)? {
                result.detail += "; the broker still answers";
            } else {
                stopped = Some(check.0);
                result.outcome = Outcome::Fail;
                if !result.detail.contains("stopped answering") {
                    result.detail += "; then the broker stopped answering";
                }
            }
            result.seen.extend(t.finish("", Outcome::Pass, "").seen);
            report.checks.push(result);
        }
        if stopped.is_none() && self.long {
            stopped = self.final_probe(report)?;
        }
        if !self.long {
            report.observe(
                "busy_worker_expiry",
                "not checked (run with --long to wait up to 15 s for it)",
            );
            report.notes.push(
                "busy-worker expiry and crashes that come seconds after a check were not waited \
                 for: run with --long"
                    .to_owned(),
            );
        }
        report.observe("stopped_answering_after", stopped);
        match stopped {
            Some("alive-at-end") => report.notes.push(
                "the broker stopped answering some seconds after the last check (a delayed crash)"
                    .to_owned(),
            ),
            Some(after) => report.notes.push(format!(
                "the broker stopped answering after the check {after}"
            )),
            None => {}
        }
        Ok(())
    }

    /// With `--long`: waits out the reference liveness window, then probes once more.
    fn final_probe(&self, report: &mut Report) -> Result<Option<&'static str>, CliError> {
        std::thread::sleep(self.lab.heartbeat * 3 + Duration::from_secs(1));
        let mut t = self.lab.transcript();
        let alive = self.lab.probe(&mut t)?;
        let outcome = if alive { Outcome::Pass } else { Outcome::Fail };
        let waited = (self.lab.heartbeat * 3 + Duration::from_secs(1)).as_millis();
        let detail = if alive {
            format!("still answering {waited} ms after the last check")
        } else {
            format!("no longer answering {waited} ms after the last check")
        };
        report
            .checks
            .push(t.finish("alive-at-end", outcome, detail));
        Ok((!alive).then_some("alive-at-end"))
    }
}
