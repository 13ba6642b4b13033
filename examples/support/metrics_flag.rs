//! `--metrics-addr ADDR` of the examples that run workers or a broker: with the `metrics`
//! feature, Prometheus metrics on `GET /metrics` and a health check on `GET /healthz`;
//! without it, the flag is refused with a hint, so the examples still build either way.

use majordomo_worker::broker::BrokerConfig;
use majordomo_worker::WorkerConfig;

/// The metrics of the process, served until this is dropped (nothing without the flag).
#[derive(Debug, Default)]
pub struct MetricsFlag {
    #[cfg(feature = "metrics")]
    serving: Option<(
        majordomo_worker::metrics::Metrics,
        majordomo_worker::metrics::MetricsServer,
    )>,
}

impl MetricsFlag {
    /// Serves the metrics on `addr` when given, and logs where.
    #[cfg(feature = "metrics")]
    pub fn serve(addr: Option<&str>) -> Result<MetricsFlag, String> {
        let Some(addr) = addr else {
            return Ok(MetricsFlag::default());
        };
        let metrics = majordomo_worker::metrics::Metrics::new();
        let server = metrics
            .serve(addr)
            .map_err(|error| format!("cannot serve metrics on {addr}: {error}"))?;
        tracing::info!(addr = server.addr(), "serving /metrics and /healthz");
        Ok(MetricsFlag {
            serving: Some((metrics, server)),
        })
    }

    /// Refuses the flag: this build has no metrics.
    #[cfg(not(feature = "metrics"))]
    pub fn serve(addr: Option<&str>) -> Result<MetricsFlag, String> {
        match addr {
            None => Ok(MetricsFlag::default()),
            Some(_) => {
                Err("--metrics-addr needs the `metrics` feature (--features metrics)".into())
            }
        }
    }

    /// `config`, reporting into the metrics when they are served.
    #[allow(dead_code)] // the worker examples use this one, the broker the other
    pub fn worker(&self, config: WorkerConfig) -> WorkerConfig {
        #[cfg(feature = "metrics")]
        if let Some((metrics, _)) = &self.serving {
            return config.metrics(metrics);
        }
        config
    }

    /// `config`, reporting into the metrics when they are served.
    #[allow(dead_code)] // the broker example uses this one, the workers the other
    pub fn broker(&self, config: BrokerConfig) -> BrokerConfig {
        #[cfg(feature = "metrics")]
        if let Some((metrics, _)) = &self.serving {
            return config.metrics(metrics);
        }
        config
    }
}
