//! Times each request into the service's duration histogram when the worker has metrics
//! (feature `metrics`); without them it is empty and costs nothing. The durations are the
//! session's (from a request's arrival to its answer): the one clock for a request.

use std::sync::Arc;
use std::time::Duration;

use crate::stats::StatsCell;

/// A worker's request timer.
#[derive(Debug, Default)]
pub(crate) struct RequestTimer {
    #[cfg(feature = "metrics")]
    histogram: Option<prometheus_client::metrics::histogram::Histogram>,
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
        }
    }

    /// A timer that times nothing (no `metrics` feature).
    #[cfg(not(feature = "metrics"))]
    pub(crate) fn new(_: Option<&()>, _: &str, _: &Arc<StatsCell>) -> RequestTimer {
        RequestTimer::default()
    }

    /// A request finished after `duration`: it goes to the histogram.
    pub(crate) fn observe(&self, duration: Duration) {
        #[cfg(feature = "metrics")]
        if let Some(histogram) = &self.histogram {
            histogram.observe(duration.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = duration;
    }
}
