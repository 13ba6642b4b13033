//! A pool of 4 workers on two services, with stats every second; SIGTERM or SIGINT drains
//! the pool (every request in hand is answered, every worker sends DISCONNECT) and exits 0.
//!
//! ```text
//! cargo run --example broker -- --bind tcp://127.0.0.1:5555          # terminal 1
//! cargo run --example pool -- --broker tcp://127.0.0.1:5555          # terminal 2
//! cargo run --example client -- --service upper hello                  # terminal 3
//! ```
//!
//! Flags: `--broker ADDRS` (default `tcp://127.0.0.1:5555`), `--work-ms N` (sleep N ms per
//! `upper` request, to watch in-flight work drain), `--metrics-addr ADDR` (Prometheus
//! `/metrics` and `/healthz` on ADDR; needs `--features metrics`). Services: `echo` (3 workers, inline) and
//! `upper` (1 worker, action on its own thread, 30 s request deadline).

use std::process::ExitCode;
use std::time::Duration;

use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{Event, Events, Message, ShutdownHandle, Summary, WorkerConfig};
use metrics_flag::MetricsFlag;

#[path = "support/metrics_flag.rs"]
mod metrics_flag;

/// The flags.
#[derive(Debug)]
struct Flags {
    broker: String,
    work_ms: u64,
    metrics_addr: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let flags = match parse_args() {
        Ok(flags) => flags,
        Err(message) => {
            eprintln!(
                "{message}\nusage: pool [--broker ADDRS] [--work-ms N] [--metrics-addr ADDR]"
            );
            return ExitCode::from(2);
        }
    };
    let metrics = match MetricsFlag::serve(flags.metrics_addr.as_deref()) {
        Ok(metrics) => metrics,
        Err(error) => {
            eprintln!("pool: {error}");
            return ExitCode::from(2);
        }
    };
    match run(
        &flags.broker,
        Duration::from_millis(flags.work_ms),
        &metrics,
    ) {
        Ok(summary) => {
            println!(
                "stopped: {} requests, {} replies, {} failures, {} reconnects, {} restarts",
                summary.total.requests,
                summary.total.replies,
                summary.total.failures(),
                summary.total.reconnects,
                summary.restarts
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pool: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    broker: &str,
    work: Duration,
    metrics: &MetricsFlag,
) -> Result<Summary, Box<dyn std::error::Error>> {
    let events = Events::bounded(1024);
    let echo = metrics.worker(WorkerConfig::new(broker, "echo"));
    let upper = WorkerConfig::new(broker, "upper").request_timeout(Duration::from_secs(30));
    let upper = metrics.worker(upper);
    let pool = WorkerPool::builder()
        .events(&events)
        .service(PoolService::new(echo, 3, || {
            |request: Vec<Message>| request
        }))
        .service(
            PoolService::new(upper, 1, move || {
                move |request: Vec<Message>| {
                    std::thread::sleep(work);
                    request
                        .iter()
                        .map(|frame| Message::from(frame.to_ascii_uppercase()))
                        .collect()
                }
            })
            .threaded(true),
        )
        .start()?;
    // The signal only flags the stop; the loop below drains, then stops the pool.
    let stop = ShutdownHandle::new();
    let _signals = stop.shutdown_on_signals()?;
    while !stop.wait_timeout(Duration::from_secs(1)) {
        print_stats(&pool, &events);
    }
    println!("signal received: draining");
    // Each worker answers its request in hand, sends DISCONNECT and pauses; stop then joins.
    pool.drain();
    Ok(pool.stop())
}

fn print_stats(pool: &WorkerPool, events: &Events) {
    let stats = pool.stats();
    let connected = events
        .receiver()
        .try_iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    let per_worker: Vec<String> = stats
        .workers
        .iter()
        .map(|(id, s)| {
            let name = id.as_ref().map_or("-".to_string(), ToString::to_string);
            format!(
                "{name}:{}{}",
                s.requests,
                if s.in_flight { "*" } else { "" }
            )
        })
        .collect();
    println!(
        "requests {} failures {} reconnects {} new connections {} | {}",
        stats.total.requests,
        stats.total.failures(),
        stats.total.reconnects,
        connected,
        per_worker.join(" ")
    );
}

fn parse_args() -> Result<Flags, String> {
    let mut flags = Flags {
        broker: "tcp://127.0.0.1:5555".to_string(),
        work_ms: 0,
        metrics_addr: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--broker" => flags.broker = value,
            "--metrics-addr" => flags.metrics_addr = Some(value),
            "--work-ms" => {
                flags.work_ms = value
                    .parse()
                    .map_err(|_| format!("bad --work-ms {value}"))?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(flags)
}
