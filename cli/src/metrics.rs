//! `--metrics-addr ADDR` of `mdp worker` and `mdp broker`: Prometheus metrics on
//! `GET /metrics` and a health check on `GET /healthz`, served by the library's
//! [`Metrics`] for the life of the process.

use std::net::SocketAddr;

use clap::Args as ClapArgs;
use majordomo_worker::metrics::{Metrics, MetricsServer};
use tracing::info;

use crate::error::CliError;

/// The flag, shared by the subcommands that run a worker or a broker.
#[derive(Debug, Clone, ClapArgs)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) on ADDR,
    /// an IP:PORT such as 127.0.0.1:9100. Defaults to none.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// The metrics and their endpoint; the endpoint stops when this is dropped.
#[derive(Debug)]
pub struct Serving {
    /// What the configs report into.
    pub metrics: Metrics,
    /// The HTTP endpoint.
    pub server: MetricsServer,
}

impl MetricsArgs {
    /// Starts serving when the flag is given, and logs where.
    ///
    /// # Errors
    ///
    /// [`CliError::Failed`] (exit 3) when ADDR cannot be bound: in use, or not this host's.
    pub fn serve(&self) -> Result<Option<Serving>, CliError> {
        let Some(addr) = self.metrics_addr else {
            return Ok(None);
        };
        let metrics = Metrics::new();
        let server = metrics.serve(&addr.to_string()).map_err(|error| {
            CliError::Failed(format!("cannot serve metrics on {addr}: {error}"))
        })?;
        info!(addr = server.addr(), "serving /metrics and /healthz");
        Ok(Some(Serving { metrics, server }))
    }
}
