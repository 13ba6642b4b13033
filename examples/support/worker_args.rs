//! The flags the example workers share (`echo_worker`, `async_worker`). Their names are the
//! ones scripts already use (tests/partition.rs, INTEROP.md).

use std::time::Duration;

use majordomo_worker::WorkerConfig;

/// An MDP worker of the examples.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Comma-separated broker endpoints, tried in turn on each reconnect.
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    pub broker: String,
    /// The service to register.
    #[arg(long, default_value = "echo")]
    pub service: String,
    /// Heartbeat interval in ms (library default when absent).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Heartbeats of broker silence before reconnecting (library default when absent).
    #[arg(long)]
    pub liveness: Option<u32>,
    /// First reconnect delay in ms (library default when absent).
    #[arg(long)]
    pub reconnect_ms: Option<u64>,
    /// Largest reconnect delay in ms (library default when absent).
    #[arg(long)]
    pub reconnect_max_ms: Option<u64>,
    /// Time each request takes, in ms, to simulate work.
    #[arg(long, default_value_t = 0)]
    pub work_ms: u64,
    /// Send no DISCONNECT when stopping (the zguide Python broker crashes on it).
    #[arg(long)]
    pub no_disconnect: bool,
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) on ADDR,
    /// e.g. 127.0.0.1:9100 (feature `metrics`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

/// The worker config the flags describe (checked when the worker is built).
pub fn config(args: &Args) -> WorkerConfig {
    let mut config = WorkerConfig::new(args.broker.as_str(), args.service.as_str())
        .send_disconnect(!args.no_disconnect);
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
