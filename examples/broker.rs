//! A standalone MDP/0.1 broker: one ROUTER for clients and workers.
//!
//! ```text
//! cargo run --example broker -- --bind tcp://*:5555 --heartbeat-ms 2500 --liveness 3
//! RUST_LOG=debug cargo run --example broker      # heartbeats too; trace shows frames
//! cargo run --features metrics --example broker -- --metrics-addr 127.0.0.1:9100
//! ```
//!
//! `--metrics-addr ADDR` (feature `metrics`) serves Prometheus `/metrics` and `/healthz` on ADDR.
//!
//! Ctrl-C (or SIGTERM) stops it: workers get DISCONNECT, the socket closes, exit code 0.

use std::process::ExitCode;
use std::time::Duration;

use majordomo_worker::broker::{Broker, BrokerConfig};
use metrics_flag::MetricsFlag;
use tracing_subscriber::EnvFilter;

#[path = "support/metrics_flag.rs"]
mod metrics_flag;

/// A standalone MDP/0.1 broker.
#[derive(Debug, clap::Parser)]
struct Cli {
    /// Endpoint to bind.
    #[arg(long, default_value = "tcp://*:5555")]
    bind: String,
    /// Heartbeat to idle workers, in ms.
    #[arg(long, default_value_t = 2500)]
    heartbeat_ms: u64,
    /// Heartbeats of silence before a worker is forgotten.
    #[arg(long, default_value_t = 3)]
    liveness: u32,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) on ADDR,
    /// e.g. 127.0.0.1:9100 (feature `metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = <Cli as clap::Parser>::parse();
    let metrics = match MetricsFlag::serve(cli.metrics_addr.as_deref()) {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("broker: {error}");
            return ExitCode::from(2);
        }
    };
    let config = BrokerConfig::new(cli.bind)
        .heartbeat(Duration::from_millis(cli.heartbeat_ms))
        .liveness(cli.liveness);
    let config = metrics.broker(config);
    if let Err(error) = config.validate() {
        eprintln!("broker: {error}");
        return ExitCode::from(2);
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("broker: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: BrokerConfig) -> Result<(), Box<dyn std::error::Error>> {
    let broker = Broker::bind(config)?;
    broker.stop_handle().stop_on_signals()?;
    println!("broker listening on {}", broker.endpoint());
    let stats = broker.run()?;
    println!("broker stopped: {stats:?}");
    Ok(())
}
