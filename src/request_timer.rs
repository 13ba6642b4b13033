//! Times each request into the service's duration histogram when the worker has metrics
//! (feature `metrics`); without them it is empty and costs nothing.

use std::sync::Arc;

use crate::stats::StatsCell;

/// A worker's request timer.
#[derive(Debug, Default)]
pub(crate) struct RequestTimer {
    #[cfg(feature = "metrics")]
    histogram: Option<prometheus_client::metrics::histogram::Histogram>,
    #[cfg(feature = "metrics")]
    started: Option<std::time::Instant>,
}

impl RequestTimer {
    /// A timer reporting to `metrics` for a worker of `service` whose counters are `cell`.
    #[cfg(feature = "metrics")]
    pub(crate) fn new(
        metrics: Option<&crate::metrics::Metrics>,
        service: &str,
        cell: &Arc<StatsCell>,
    ) -> RequestTimer {
        RequestTimer {
            histogram: metrics.map(|m| m.register_worker(service, cell)),
            started: None,
        }
    }

    /// A timer that times nothing (no `metrics` feature).
    #[cfg(not(feature = "metrics"))]
    pub(crate) fn new(_: Option<&()>, _: &str, _: &Arc<StatsCell>) -> RequestTimer {
        RequestTimer::default()
    }

    /// A request was handed to the action.
    pub(crate) fn start(&mut self) {
        #[cfg(feature = "metrics")]
        if self.histogram.is_some() {
            self.started = Some(std::time::Instant::now());
        }
    }

    /// The action answered: its time goes to the histogram.
    pub(crate) fn finish(&mut self) {
        #[cfg(feature = "metrics")]
        if let (Some(histogram), Some(started)) = (&self.histogram, self.started.take()) {
            histogram.observe(started.elapsed().as_secs_f64());
        }
    }
}
