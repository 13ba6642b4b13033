//! `mdp`: makes any program an MDP/0.1 worker, and runs, calls, loads and checks brokers.
//!
//! One module per subcommand, each a clap `Args` struct and one `run` function; errors map
//! to the exit codes documented in [`error`]. The tool holds no protocol logic: it is a user
//! of the `majordomo-worker` library like any other.
//!
//! The tool stands in three layers over the library; each imports only from those below it:
//!
//! ```text
//! main.rs      parses the command line, runs one subcommand, turns its error into the
//!              exit code
//! subcommands  bench/ broker call check/ completions ping services top/ worker/: one
//!              module each; none imports another. Inside a folder the files import
//!              downward as well: the runner over the parts it runs (check/mod.rs has
//!              the table of check/)
//! shared       client (the default broker, the lookup client), error (the one error
//!              type, its exit codes, the ClientError mapping), frames (--frames),
//!              metrics (--metrics-addr), table (terminal tables)
//! library      majordomo_worker: its clients, worker, pool, broker, config, protocol,
//!              mmi and metrics
//! ```
//!
//! What two subcommands both need goes down into a shared module, never sideways into the
//! other subcommand.

mod bench;
mod broker;
mod call;
mod check;
mod client;
mod completions;
mod error;
mod frames;
mod metrics;
mod ping;
mod services;
mod table;
mod top;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use error::CliResult;

/// Run, call, load and check ZeroMQ Majordomo (MDP/0.1) brokers and workers.
#[derive(Debug, Parser)]
#[command(name = "mdp", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a broker with echo requests; report throughput, latency and errors.
    Bench(bench::Args),
    /// Check that a broker or a worker follows MDP/0.1.
    Check(check::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
    /// Serve SERVICE by running a command for each request (inetd for MDP).
    Worker(worker::Args),
    /// Send one request to SERVICE and print the reply.
    Call(call::Args),
    /// Ask the broker whether SERVICE has workers.
    Ping(ping::Args),
    /// Run an MDP/0.1 broker in the foreground.
    Broker(broker::Args),
    /// List the services the broker knows, with their workers and load.
    Services(services::Args),
    /// Watch the load of every service, refreshed like `top`.
    Top(top::Args),
    /// `mdp worker`'s reaper (see `worker/groups.rs`): not for people.
    #[command(name = worker::REAPER_COMMAND, hide = true)]
    Reap,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MDP_LOG")
                // The client's per-attempt warnings name the broker's own services; the
                // tools say why a request failed in their own words instead.
                .unwrap_or_else(|_| "warn,majordomo_worker::client=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mdp: {error}");
            error.exit_code()
        }
    }
}

fn run(command: Command) -> CliResult {
    match command {
        Command::Bench(args) => bench::run(args),
        Command::Check(args) => check::run(args),
        Command::Completions(args) => completions::run(args, Cli::command()),
        Command::Worker(args) => worker::run(args),
        Command::Call(args) => call::run(args),
        Command::Ping(args) => ping::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Services(args) => services::run(args),
        Command::Top(args) => top::run(args),
        Command::Reap => {
            worker::reap(std::io::stdin().lock());
            Ok(())
        }
    }
}
