//! `mdp check worker --bind ENDPOINT`: plays a broker (a ROUTER bound at ENDPOINT) for any
//! worker the user starts against it, and checks what the worker does on the wire.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use majordomo_worker::protocol::WorkerMessage;

use super::peer::{decode_worker, worker_frames, Frame, Peer};
use super::report::{ms, Check, Outcome, Report, Transcript};
use super::worker_checks::LATER;
use crate::error::{CliError, CliResult};

/// Play a broker at ENDPOINT and check the worker that connects to it.
///
/// Start your worker against ENDPOINT after (or just before) this; the check waits up to
/// --wait-ms for its READY. Exit code 0 when every check passes, 1 when one fails.
#[derive(Debug, ClapArgs)]
#[command(after_help = "Examples:\n  \
    mdp check worker --bind tcp://127.0.0.1:5556 &\n  \
    my-worker --broker tcp://127.0.0.1:5556\n  \
    mdp check worker --bind tcp://127.0.0.1:5556 --heartbeat-ms 1000 --slow-body 'sleep 3' --json")]
pub struct Args {
    /// Where to bind the broker's ROUTER, e.g. tcp://127.0.0.1:5556.
    #[arg(long)]
    pub bind: String,
    /// The heartbeat interval the worker was started with; heartbeats must come at least
    /// this often (plus --tolerance-ms). Defaults to the reference 2500.
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub heartbeat_ms: u64,
    /// Lateness allowed on each heartbeat interval. Defaults to a quarter of the heartbeat
    /// plus 100 ms.
    #[arg(long)]
    pub tolerance_ms: Option<u64>,
    /// How long to wait for the worker's READY, at the start and after the DISCONNECT
    /// (covers its reconnect delay). Defaults to 10000.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub wait_ms: u64,
    /// How long the worker may take to answer a request. Defaults to 5000.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub reply_ms: u64,
    /// A request body your worker takes longer than the heartbeat on: with it, heartbeats
    /// while busy are checked too. Skipped without it.
    #[arg(long)]
    pub slow_body: Option<String>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Binds, waits for the worker and runs the checks.
pub fn run(args: Args) -> CliResult {
    let context = zmq::Context::new();
    let router = Peer::bind(&context, &args.bind, "broker".to_owned())?;
    let endpoint = router.last_endpoint().unwrap_or_else(|| args.bind.clone());
    if std::io::stderr().is_terminal() {
        eprintln!(
            "mdp: waiting up to {} ms for a worker's READY at {endpoint}",
            args.wait_ms
        );
    }
    let mut broker = FakeBroker::new(router, &args);
    let report = broker.run_all(&endpoint, &args)?;
    super::finish(&report, args.json)
}

/// A ROUTER that heartbeats the current worker socket while it waits for messages.
pub(super) struct FakeBroker {
    router: Peer,
    start: Instant,
    pub(super) heartbeat: Duration,
    pub(super) tolerance: Duration,
    pub(super) wait: Duration,
    pub(super) reply: Duration,
    /// The identity of the worker socket we talk to.
    pub(super) worker: Option<Frame>,
    /// When the current worker socket's READY arrived.
    pub(super) ready_at: Instant,
    next_beat: Instant,
}

impl FakeBroker {
    fn new(router: Peer, args: &Args) -> FakeBroker {
        let heartbeat = Duration::from_millis(args.heartbeat_ms);
        let tolerance = args.tolerance_ms.map_or(
            heartbeat / 4 + Duration::from_millis(100),
            Duration::from_millis,
        );
        FakeBroker {
            router,
            start: Instant::now(),
            heartbeat,
            tolerance,
            wait: Duration::from_millis(args.wait_ms),
            reply: Duration::from_millis(args.reply_ms),
            worker: None,
            ready_at: Instant::now(),
            next_beat: Instant::now(),
        }
    }

    fn run_all(&mut self, endpoint: &str, args: &Args) -> Result<Report, CliError> {
        let mut report = Report {
            subject: "worker",
            endpoint: endpoint.to_owned(),
            checks: Vec::new(),
            observed: Vec::new(),
            notes: Vec::new(),
        };
        report.observe("heartbeat_declared_ms", ms(self.heartbeat));
        report.observe("heartbeat_tolerance_ms", ms(self.tolerance));
        let check = self.ready_first(&mut report)?;
        report.checks.push(check);
        if self.worker.is_none() {
            for name in LATER {
                report
                    .checks
                    .push(Check::skipped(name, "no worker said READY"));
            }
            return Ok(report);
        }
        let check = self.heartbeat_cadence(&mut report)?;
        report.checks.push(check);
        let check = self.envelope_kept(&mut report)?;
        report.checks.push(check);
        report
            .checks
            .push(self.heartbeat_while_busy(args.slow_body.as_deref())?);
        report.checks.push(self.malformed_survived()?);
        let check = self.new_socket_after_disconnect(&mut report)?;
        report.checks.push(check);
        Ok(report)
    }

    pub(super) fn transcript(&self) -> Transcript {
        Transcript::new(self.start)
    }

    /// Sends `message` to the current worker socket.
    pub(super) fn send(&mut self, t: &mut Transcript, frames: Vec<Frame>) -> Result<(), CliError> {
        let Some(identity) = self.worker.clone() else {
            return Ok(());
        };
        let mut routed = vec![identity];
        routed.extend(frames);
        self.router.send(t, &routed)
    }

    /// The next message from any worker socket within `wait`, as (identity, frames after
    /// it); HEARTBEATs to the current worker go out on time meanwhile.
    pub(super) fn next(
        &mut self,
        t: &mut Transcript,
        wait: Duration,
    ) -> Result<Option<(Frame, Vec<Frame>)>, CliError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.worker.is_some() && Instant::now() >= self.next_beat {
                self.send(t, worker_frames(WorkerMessage::Heartbeat))?;
                self.next_beat = Instant::now() + self.heartbeat;
            }
            let until = if self.worker.is_some() {
                deadline.min(self.next_beat)
            } else {
                deadline
            };
            if let Some(mut frames) = self
                .router
                .recv(t, until.saturating_duration_since(Instant::now()))?
            {
                let identity = frames.remove(0);
                return Ok(Some((identity, frames)));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// The first message must be READY, exactly `""`, `MDPW01`, `0x01`, service.
    fn ready_first(&mut self, report: &mut Report) -> Result<Check, CliError> {
        let mut t = self.transcript();
        t.heartbeats = true;
        let deadline = Instant::now() + self.wait;
        let Some((identity, frames)) = self.next(&mut t, self.wait)? else {
            let detail = format!("no message from a worker in {} ms", self.wait.as_millis());
            return Ok(t.finish("ready-first", Outcome::Fail, detail));
        };
        if let Some(service) = ready_service(&frames) {
            self.adopt(report, identity, &service);
            return Ok(t.finish(
                "ready-first",
                Outcome::Pass,
                "READY first, exactly \"\", MDPW01, 0x01, service",
            ));
        }
        let detail = format!(
            "the first message was {}, not a well-formed READY",
            describe(&frames)
        );
        // Go on with the checks if a READY comes after all.
        let left = deadline.saturating_duration_since(Instant::now());
        while let Some((identity, frames)) = self.next(&mut t, left)? {
            if let Some(service) = ready_service(&frames) {
                self.adopt(report, identity, &service);
                break;
            }
        }
        Ok(t.finish("ready-first", Outcome::Fail, detail))
    }

    pub(super) fn adopt(&mut self, report: &mut Report, identity: Frame, service: &[u8]) {
        report.observe("service", String::from_utf8_lossy(service).into_owned());
        report.observe("identity", super::report::hex(&identity));
        self.worker = Some(identity);
        self.ready_at = Instant::now();
        self.next_beat = Instant::now() + self.heartbeat;
    }
}

/// The service of a well-formed READY.
pub(super) fn ready_service(frames: &[Frame]) -> Option<Frame> {
    match decode_worker(frames) {
        Some(WorkerMessage::Ready { service }) => Some(service),
        _ => None,
    }
}

/// A message in a few words: its command, or what is wrong with it.
pub(super) fn describe(frames: &[Frame]) -> String {
    match WorkerMessage::decode(frames.to_vec()) {
        Ok(message) => message.command().name().to_owned(),
        Err(error) => format!("a malformed message ({error})"),
    }
}
