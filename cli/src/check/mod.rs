//! `mdp check broker ENDPOINT` and `mdp check worker --bind ENDPOINT`: conformance checks of
//! any MDP/0.1 broker or worker, with the frames seen and the peer's dialect.
//!
//! The files, each importing only those below it:
//!
//! ```text
//! broker.rs, worker.rs              a side's flags and runner: which checks run, in order
//! broker_checks.rs, broker_risky.rs,
//!   worker_checks.rs                the checks, one function or method each
//! lab.rs, fake_broker.rs            what the checks work with: clients and workers of a
//!                                   broker under test, or the broker a worker talks to
//! peer.rs                           a raw socket that records every message it sees
//! report.rs                         the results, and how they print
//! ```

mod broker;
mod broker_checks;
mod broker_risky;
mod fake_broker;
mod lab;
mod peer;
mod report;
mod worker;
mod worker_checks;

use clap::{Args as ClapArgs, Subcommand};

use crate::error::CliResult;

/// Check that a broker or a worker follows MDP/0.1, whoever wrote it.
///
/// Exit code 0 when every check passes, 1 when one fails.
#[derive(Debug, ClapArgs)]
#[command(after_help = "Examples:\n  \
    mdp check broker tcp://127.0.0.1:5555\n  \
    mdp check broker --json tcp://127.0.0.1:5555 | jq .dialect\n  \
    mdp check worker --bind tcp://127.0.0.1:5556   # then start your worker against it")]
pub struct Args {
    #[command(subcommand)]
    side: Side,
}

#[derive(Debug, Subcommand)]
enum Side {
    /// Check a running broker: registration, routing, heartbeats, mmi, queueing, robustness.
    Broker(broker::Args),
    /// Play a broker for your worker: READY, heartbeats, envelope, robustness, reconnect.
    Worker(worker::Args),
}

/// Runs the chosen side's checks.
pub fn run(args: Args) -> CliResult {
    match args.side {
        Side::Broker(args) => broker::run(args),
        Side::Worker(args) => worker::run(args),
    }
}
