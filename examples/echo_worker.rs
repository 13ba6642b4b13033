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
//! `--no-disconnect` (send no DISCONNECT when stopping: the zguide Python broker crashes on it).
//! SIGINT or SIGTERM stops it
//! gracefully (the request in hand is answered, then DISCONNECT) and it exits with code 0.

use std::process::ExitCode;
use std::time::Duration;

use majordomo_worker::{Message, Worker, WorkerConfig};

struct Args {
    broker: String,
    service: String,
    heartbeat_ms: Option<u64>,
    liveness: Option<u32>,
    reconnect_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    work_ms: u64,
    send_disconnect: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        broker: "tcp://127.0.0.1:5555".into(),
        service: "echo".into(),
        heartbeat_ms: None,
        liveness: None,
        reconnect_ms: None,
        reconnect_max_ms: None,
        work_ms: 0,
        send_disconnect: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if flag == "--no-disconnect" {
            args.send_disconnect = false;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--broker" => args.broker = value,
            "--service" => args.service = value,
            "--heartbeat-ms" => args.heartbeat_ms = Some(number(&value)?),
            "--liveness" => args.liveness = Some(number(&value)? as u32),
            "--reconnect-ms" => args.reconnect_ms = Some(number(&value)?),
            "--reconnect-max-ms" => args.reconnect_max_ms = Some(number(&value)?),
            "--work-ms" => args.work_ms = number(&value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn config(args: &Args) -> WorkerConfig {
    let mut config = WorkerConfig::new(args.broker.as_str(), args.service.as_str())
        .send_disconnect(args.send_disconnect);
    if let Some(ms) = args.heartbeat_ms {
        config = config.heartbeat(Duration::from_millis(ms));
    }
    if let Some(liveness) = args.liveness {
        config = config.liveness(liveness);
    }
    if let Some(ms) = args.reconnect_ms {
        config = config.reconnect(Duration::from_millis(ms));
        config = config.reconnect_max(Duration::from_millis(ms).max(Duration::from_secs(32)));
    }
    if let Some(ms) = args.reconnect_max_ms {
        config = config.reconnect_max(Duration::from_millis(ms));
    }
    config
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            eprintln!(
                "usage: echo_worker [--broker ADDRS] [--service NAME] [--heartbeat-ms N] \
                 [--liveness N] [--reconnect-ms N] [--reconnect-max-ms N] [--work-ms N] \
                 [--no-disconnect]"
            );
            return ExitCode::from(2);
        }
    };
    let work = Duration::from_millis(args.work_ms);
    let action = move |request: Vec<Message>| {
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        request
    };
    let mut worker = match Worker::new(config(&args), action) {
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
