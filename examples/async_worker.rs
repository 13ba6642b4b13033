//! An async echo worker on tokio: `--concurrency N` registrations serve N requests at once,
//! and `--work-ms` awaits a timer per request (it does not block a thread).
//!
//! ```text
//! cargo run --release --features tokio --example async_worker -- --concurrency 100 --work-ms 100
//! ```
//!
//! Flags: those of `echo_worker` (`--broker ADDRS`, `--service NAME`, `--heartbeat-ms`,
//! `--liveness`, `--reconnect-ms`, `--reconnect-max-ms`, `--work-ms N`, `--no-disconnect`,
//! `--metrics-addr ADDR` with `--features tokio,metrics`) plus `--concurrency N` (default 1). SIGINT or SIGTERM stops it gracefully (requests in
//! hand are answered within the shutdown grace, then DISCONNECT); it exits with code 0.

#[path = "support/metrics_flag.rs"]
mod metrics_flag;
#[path = "support/worker_args.rs"]
mod worker_args;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use majordomo_worker::{AsyncWorker, Message};
use metrics_flag::MetricsFlag;
use worker_args::config;

/// An async echo worker: `--concurrency` requests at once, `--work-ms` awaited.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    worker: worker_args::Args,
    /// Registrations, so requests served at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let Cli {
        worker: args,
        concurrency,
    } = Cli::parse();
    let work = Duration::from_millis(args.work_ms);
    let action = move |request: Vec<Message>| async move {
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        request
    };
    let metrics = match MetricsFlag::serve(args.metrics_addr.as_deref()) {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("async_worker: {error}");
            return ExitCode::from(2);
        }
    };
    let worker_config = metrics.worker(config(&args).concurrency(concurrency));
    let worker = match AsyncWorker::new(worker_config, action) {
        Ok(worker) => worker,
        Err(error) => {
            eprintln!("async_worker: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = worker.shutdown_handle().shutdown_on_tokio_signals() {
        eprintln!("async_worker: cannot install signal handlers: {error}");
        return ExitCode::FAILURE;
    }
    match worker.run().await {
        Ok(summary) => {
            let total = summary.total;
            tracing::info!(
                registrations = summary.workers.len(),
                requests = total.requests,
                reconnects = total.reconnects,
                malformed_dropped = total.malformed_dropped,
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("async_worker: {error}");
            ExitCode::FAILURE
        }
    }
}
