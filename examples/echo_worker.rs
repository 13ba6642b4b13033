//! An echo worker: answers every request of a service with its own frames.
//!
//! Run it against any MDP/0.1 broker (the zguide's `mdbroker`, or `examples/broker.rs`):
//!
//! ```text
//! cargo run --release --example echo_worker -- --broker tcp://127.0.0.1:5555 --service echo
//! RUST_LOG=debug cargo run --example echo_worker -- --broker tcp://a:5555,tcp://b:5555 --work-ms 50
//! ```
//!
//! Flags: `--broker ADDRS` (comma-separated, default `tcp://127.0.0.1:5555`), `--service NAME`
//! (default `echo`), `--heartbeat-ms`, `--liveness`, `--reconnect-ms`, `--reconnect-max-ms`
//! (library defaults when absent), `--work-ms N` (sleep N ms per request to simulate work),
//! `--no-disconnect` (send no DISCONNECT when stopping: the zguide Python broker crashes on it),
//! `--metrics-addr ADDR` (Prometheus `/metrics` and `/healthz` on ADDR; needs
//! `--features metrics`).
//! SIGINT or SIGTERM stops it
//! gracefully (the request in hand is answered, then DISCONNECT) and it exits with code 0.

#[path = "support/metrics_flag.rs"]
mod metrics_flag;
#[path = "support/worker_args.rs"]
mod worker_args;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use majordomo_worker::{Message, Worker};
use metrics_flag::MetricsFlag;
use worker_args::config;

/// An echo worker: answers every request with its own frames.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    worker: worker_args::Args,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Cli::parse().worker;
    let work = Duration::from_millis(args.work_ms);
    let action = move |request: Vec<Message>| {
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        request
    };
    let metrics = match MetricsFlag::serve(args.metrics_addr.as_deref()) {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("echo_worker: {error}");
            return ExitCode::from(2);
        }
    };
    let mut worker = match Worker::new(metrics.worker(config(&args)), action) {
        Ok(worker) => worker,
        Err(error) => {
            eprintln!("echo_worker: {error}");
            return ExitCode::from(2);
        }
    };
    let _signals = match worker.shutdown_handle().shutdown_on_signals() {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("echo_worker: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    match worker.run() {
        Ok(()) => {
            let stats = worker.stats();
            tracing::info!(
                requests = stats.requests,
                reconnects = stats.reconnects,
                malformed_dropped = stats.malformed_dropped,
                unexpected_dropped = stats.unexpected_dropped,
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("echo_worker: {error}");
            ExitCode::FAILURE
        }
    }
}
