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

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use majordomo_worker::protocol::WorkerMessage;

use super::broker_checks as checks;
use super::peer::{client_frames, decode_client, decode_worker, worker_frames, Frame, Peer};
use super::report::{Check, Outcome, Report, Transcript};
use crate::error::CliResult;

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
    let lab = Lab::new(&args);
    let report = lab.run_all()?;
    if report
        .observed
        .iter()
        .any(|(k, v)| *k == NOTHING_ANSWERED && v == true)
    {
        super::print(&report, args.json);
        return Err(crate::error::CliError::Unreachable(nothing_answered(
            &args.endpoint,
        )));
    }
    super::finish(&report, args.json)
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
        Some(unknown) => Err(crate::error::CliError::Usage(format!(
            "--skip {unknown}: no such check; the checks are {}",
            names.join(", ")
        ))),
    }
}

/// How long a service name's worker sockets wait after READY before a client uses the service:
/// the READY travels on another connection than the request, and a broker that does not queue
/// requests for unknown services (wdl83) would refuse a request that overtook it.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a busy worker stays silent with `--long`.
pub(super) const LONG_SILENCE: Duration = Duration::from_secs(15);

/// The run's shared state: the context, the endpoint, the waits, and name counters.
pub(super) struct Lab {
    context: zmq::Context,
    pub(super) endpoint: String,
    start: Instant,
    /// Wait for a message that must come.
    pub(super) wait: Duration,
    /// Window in which a message must not come (or may come at once).
    pub(super) quiet: Duration,
    /// The broker's heartbeat, as the user told us.
    pub(super) heartbeat: Duration,
    pub(super) long: bool,
    skip: Vec<String>,
    prefix: String,
    names: Cell<u32>,
    /// Every worker registered, to DISCONNECT at the end.
    workers: RefCell<Vec<Rc<Peer>>>,
}

impl Lab {
    fn new(args: &Args) -> Lab {
        let wait = Duration::from_millis(args.wait_ms);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 0x1_0000);
        Lab {
            context: zmq::Context::new(),
            endpoint: args.endpoint.clone(),
            start: Instant::now(),
            wait,
            quiet: (wait / 3).min(Duration::from_millis(500)),
            heartbeat: Duration::from_millis(args.heartbeat_ms),
            long: args.long,
            skip: args.skip.clone(),
            prefix: format!("mdp-check-{}-{nanos:x}", std::process::id()),
            names: Cell::new(0),
            workers: RefCell::new(Vec::new()),
        }
    }

    fn run_all(&self) -> Result<Report, crate::error::CliError> {
        let mut report = Report {
            subject: "broker",
            endpoint: self.endpoint.clone(),
            checks: Vec::new(),
            observed: Vec::new(),
            notes: Vec::new(),
        };
        report.notes.push(format!(
            "services used: {}-*; heartbeat hint {} ms, waits {} ms",
            self.prefix,
            self.heartbeat.as_millis(),
            self.wait.as_millis()
        ));
        for (name, check) in checks::SAFE {
            let result = if self.skip.iter().any(|s| s == name) {
                Check::skipped(name, "skipped with --skip")
            } else {
                check(self, &mut report.observed)?
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
        let why = nothing_answered(&self.endpoint);
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
    fn disconnect_workers(&self, report: &mut Report) -> Result<(), crate::error::CliError> {
        let handled = report
            .checks
            .iter()
            .any(|c| c.name == "worker-disconnect" && c.outcome == Outcome::Pass);
        let stopped = report
            .observed
            .iter()
            .any(|(k, v)| *k == "stopped_answering_after" && !v.is_null());
        let workers: Vec<Rc<Peer>> = self.workers.take();
        let registered: Vec<&Rc<Peer>> = workers.iter().filter(|w| !w.disconnected()).collect();
        if !handled || stopped {
            report.notes.push(format!(
                "{} worker(s) of this run were left for the broker to expire: without a passed \
                 worker-disconnect check, a DISCONNECT might bring it down",
                registered.len()
            ));
            return Ok(());
        }
        let mut t = self.transcript();
        for worker in &registered {
            worker.send(&mut t, &worker_frames(WorkerMessage::Disconnect))?;
        }
        report.observe("workers_disconnected_at_end", registered.len());
        Ok(())
    }

    /// The checks that can bring a fragile broker down, each followed by a liveness probe.
    fn run_risky(&self, report: &mut Report) -> Result<(), crate::error::CliError> {
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
            let mut result = (check.1)(self, &mut report.observed)?;
            let mut t = self.transcript();
            if self.probe(&mut t)? {
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
    fn final_probe(
        &self,
        report: &mut Report,
    ) -> Result<Option<&'static str>, crate::error::CliError> {
        std::thread::sleep(self.heartbeat * 3 + Duration::from_secs(1));
        let mut t = self.transcript();
        let alive = self.probe(&mut t)?;
        let outcome = if alive { Outcome::Pass } else { Outcome::Fail };
        let waited = (self.heartbeat * 3 + Duration::from_secs(1)).as_millis();
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

    /// Whether the broker still serves: a fresh worker registers, a client's request reaches
    /// it and the worker's REPLY reaches the client.
    pub(super) fn probe(&self, t: &mut Transcript) -> Result<bool, crate::error::CliError> {
        let service = self.service();
        let worker = self.worker(t, &service)?;
        let (client, _) = self.client()?;
        let exchange = self.exchange(t, &worker, &client, &service, &[b"mdp-check probe"])?;
        Ok(exchange.reply.is_some())
    }

    /// A new transcript for one check.
    pub(super) fn transcript(&self) -> Transcript {
        Transcript::new(self.start)
    }

    fn next_number(&self) -> u32 {
        let n = self.names.get() + 1;
        self.names.set(n);
        n
    }

    /// A service name no other traffic uses.
    pub(super) fn service(&self) -> Frame {
        format!("{}-{}", self.prefix, self.next_number()).into_bytes()
    }

    /// A DEALER with an identity the broker never saw.
    pub(super) fn dealer(&self, role: &str) -> Result<Peer, crate::error::CliError> {
        let name = format!("{role}-{}", self.next_number());
        Peer::connect(&self.context, zmq::DEALER, &self.endpoint, name, None)
    }

    /// A DEALER worker that sent READY for `service` and waited [`SETTLE`]; kept until the
    /// end of the run, to DISCONNECT then.
    pub(super) fn worker(
        &self,
        t: &mut Transcript,
        service: &[u8],
    ) -> Result<Rc<Peer>, crate::error::CliError> {
        let worker = Rc::new(self.dealer("worker")?);
        let ready = WorkerMessage::Ready {
            service: service.to_vec(),
        };
        worker.send(t, &worker_frames(ready))?;
        self.workers.borrow_mut().push(Rc::clone(&worker));
        std::thread::sleep(SETTLE);
        Ok(worker)
    }

    /// A new worker for `service` answers the requests still queued for it (at most `count`,
    /// each within [`quiet`](Self::quiet)), so that the run leaves none behind.
    pub(super) fn serve_leftovers(
        &self,
        t: &mut Transcript,
        service: &[u8],
        count: usize,
    ) -> Result<usize, crate::error::CliError> {
        let worker = self.worker(t, service)?;
        let mut served = 0;
        while served < count {
            let Some((envelope, body)) = self.take_request(t, &worker, self.quiet)? else {
                break;
            };
            worker.send(t, &worker_frames(WorkerMessage::Reply { envelope, body }))?;
            served += 1;
        }
        Ok(served)
    }

    /// A DEALER client with a known identity, which a REQUEST's envelope should carry.
    pub(super) fn client(&self) -> Result<(Peer, Frame), crate::error::CliError> {
        let n = self.next_number();
        let identity = format!("{}-c{n}", self.prefix).into_bytes();
        let name = format!("client-{n}");
        let peer = Peer::connect(
            &self.context,
            zmq::DEALER,
            &self.endpoint,
            name,
            Some(&identity),
        )?;
        Ok((peer, identity))
    }

    /// A REQ client with a known identity.
    pub(super) fn req_client(&self) -> Result<(Peer, Frame), crate::error::CliError> {
        let n = self.next_number();
        let identity = format!("{}-r{n}", self.prefix).into_bytes();
        let name = format!("req-{n}");
        let peer = Peer::connect(
            &self.context,
            zmq::REQ,
            &self.endpoint,
            name,
            Some(&identity),
        )?;
        Ok((peer, identity))
    }

    /// The client sends `body` to `service`; the worker takes the REQUEST and echoes it.
    pub(super) fn exchange(
        &self,
        t: &mut Transcript,
        worker: &Peer,
        client: &Peer,
        service: &[u8],
        body: &[&[u8]],
    ) -> Result<Exchange, crate::error::CliError> {
        client.send(t, &client_frames(service, body))?;
        let Some((envelope, body)) = self.take_request(t, worker, self.wait)? else {
            return Ok(Exchange::default());
        };
        let reply = self.echo(t, worker, client, envelope.clone(), body.clone())?;
        Ok(Exchange {
            request: Some((envelope, body)),
            reply,
        })
    }

    /// The worker's next REQUEST within `wait` (HEARTBEATs are skipped): envelope and body.
    pub(super) fn take_request(
        &self,
        t: &mut Transcript,
        worker: &Peer,
        wait: Duration,
    ) -> Result<Option<Request>, crate::error::CliError> {
        let is_request =
            |f: &[Frame]| matches!(decode_worker(f), Some(WorkerMessage::Request { .. }));
        Ok(
            match worker
                .recv_until(t, wait, is_request)?
                .and_then(|f| decode_worker(&f))
            {
                Some(WorkerMessage::Request { envelope, body }) => Some((envelope, body)),
                _ => None,
            },
        )
    }

    /// The worker sends `body` back to `envelope`; returns the reply's body at `client`.
    pub(super) fn echo(
        &self,
        t: &mut Transcript,
        worker: &Peer,
        client: &Peer,
        envelope: Vec<Frame>,
        body: Vec<Frame>,
    ) -> Result<Option<Vec<Frame>>, crate::error::CliError> {
        worker.send(t, &worker_frames(WorkerMessage::Reply { envelope, body }))?;
        self.client_reply(t, client, self.wait)
    }

    /// The body of the next client reply within `wait`, if a well-formed one comes.
    pub(super) fn client_reply(
        &self,
        t: &mut Transcript,
        client: &Peer,
        wait: Duration,
    ) -> Result<Option<Vec<Frame>>, crate::error::CliError> {
        Ok(client
            .recv(t, wait)?
            .and_then(|f| decode_client(&f))
            .map(|m| m.body))
    }
}

/// A REQUEST as a worker received it: envelope and body.
pub(super) type Request = (Vec<Frame>, Vec<Frame>);

/// One request through the broker and its echo.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    /// The REQUEST the worker received: envelope and body.
    pub request: Option<Request>,
    /// The reply body the client received (status frames and all).
    pub reply: Option<Vec<Frame>>,
}

/// The body a client got, without the status frame some brokers put first (wdl83's
/// `success`): `None` if it is not `sent`, with or without one extra frame in front.
pub(super) fn strip_status<'a>(got: &'a [Frame], sent: &[Frame]) -> Option<&'a [Frame]> {
    if got == sent {
        Some(&[])
    } else if got.len() == sent.len() + 1 && got[1..] == *sent {
        Some(&got[..1])
    } else {
        None
    }
}
