//! `mdp`: makes any program an MDP/0.1 worker, and runs, calls, loads and checks brokers.
//!
//! One module per subcommand, each a clap `Args` struct and one `run` function; errors map
//! to the exit codes documented in [`error`]. The tool holds no protocol logic: it is a user
//! of the `majordomo-worker` library like any other.

mod check;
mod completions;
mod error;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Check that a broker or a worker follows MDP/0.1.
    Check(check::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MDP_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
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
        Command::Check(args) => check::run(args),
        Command::Completions(args) => completions::run(args),
    }
}
