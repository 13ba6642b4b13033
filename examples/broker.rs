//! A standalone MDP/0.1 broker: one ROUTER for clients and workers.
//!
//! ```text
//! cargo run --example broker -- --bind tcp://*:5555 --heartbeat-ms 2500 --liveness 3
//! RUST_LOG=debug cargo run --example broker      # heartbeats too; trace shows frames
//! ```
//!
//! Ctrl-C (or SIGTERM) stops it: workers get DISCONNECT, the socket closes, exit code 0.

use std::process::ExitCode;
use std::time::Duration;

use majordomo_worker::broker::{Broker, BrokerConfig};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: broker [--bind ENDPOINT] [--heartbeat-ms MS] [--liveness N]
  --bind          endpoint to bind (default tcp://*:5555)
  --heartbeat-ms  heartbeat to idle workers, in ms (default 2500)
  --liveness      heartbeats of silence before a worker is forgotten (default 3)";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<BrokerConfig, String> {
    let (mut bind, mut heartbeat_ms, mut liveness) = ("tcp://*:5555".to_string(), 2500, 3);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bind" => bind = value?,
            "--heartbeat-ms" => heartbeat_ms = number(&flag, value?)?,
            "--liveness" => liveness = number(&flag, value?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let config = BrokerConfig::new(bind)
        .heartbeat(Duration::from_millis(heartbeat_ms))
        .liveness(liveness);
    config.validate().map_err(|error| error.to_string())?;
    Ok(config)
}

fn number<T: std::str::FromStr>(flag: &str, value: String) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value} is not a valid number"))
}
