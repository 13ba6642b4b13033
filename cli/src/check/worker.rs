//! `mdp check worker --bind ENDPOINT`: plays a broker (a ROUTER bound at ENDPOINT) for any
//! worker the user starts against it, and checks what the worker does on the wire.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args as ClapArgs;

use super::fake_broker::{FakeBroker, Timing};
use super::peer::Peer;
use super::report::{ms, Check, Report};
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
    let mut broker = FakeBroker::new(router, timing(&args));
    let report = run_all(&mut broker, &endpoint, &args)?;
    report.finish(args.json)
}

/// The waits and the heartbeat the worker is held to, from the flags.
fn timing(args: &Args) -> Timing {
    let heartbeat = Duration::from_millis(args.heartbeat_ms);
    let tolerance = args.tolerance_ms.map_or(
        heartbeat / 4 + Duration::from_millis(100),
        Duration::from_millis,
    );
    Timing {
        heartbeat,
        tolerance,
        wait: Duration::from_millis(args.wait_ms),
        reply: Duration::from_millis(args.reply_ms),
    }
}

/// READY first, then, if a worker said it, the later checks in order.
fn run_all(broker: &mut FakeBroker, endpoint: &str, args: &Args) -> Result<Report, CliError> {
    let mut report = Report {
        subject: "worker",
        endpoint: endpoint.to_owned(),
        checks: Vec::new(),
        observed: Vec::new(),
        notes: Vec::new(),
    };
    report.observe("heartbeat_declared_ms", ms(broker.heartbeat));
    report.observe("heartbeat_tolerance_ms", ms(broker.tolerance));
    let check = broker.ready_first(&mut report)?;
    report.checks.push(check);
    if broker.worker.is_none() {
        for name in LATER {
            report
                .checks
                .push(Check::skipped(name, "no worker said READY"));
        }
        return Ok(report);
    }
    let check = broker.heartbeat_cadence(&mut report)?;
    report.checks.push(check);
    let check = broker.envelope_kept(&mut report)?;
    report.checks.push(check);
    report
        .checks
        .push(broker.heartbeat_while_busy(args.slow_body.as_deref())?);
    report.checks.push(broker.malformed_survived()?);
    let check = broker.new_socket_after_disconnect(&mut report)?;
    report.checks.push(check);
    Ok(report)
}
