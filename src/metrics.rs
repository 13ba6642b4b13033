//! Prometheus metrics and a health check (feature `metrics`).
//!
//! One [`Metrics`] per process: give it to every [`WorkerConfig`](crate::WorkerConfig)
//! ([`WorkerConfig::metrics`](crate::WorkerConfig::metrics): sync workers, pools and async
//! workers alike) and broker ([`BrokerConfig::metrics`](crate::broker::BrokerConfig::metrics)),
//! then serve it with [`Metrics::serve`] or read [`Metrics::encode`] yourself.
//!
//! ```no_run
//! use majordomo_worker::metrics::Metrics;
//! use majordomo_worker::{Message, Worker, WorkerConfig};
//!
//! let metrics = Metrics::new();
//! let _http = metrics.serve("127.0.0.1:9100")?; // GET /metrics, GET /healthz
//! let config = WorkerConfig::new("tcp://127.0.0.1:5555", "echo").metrics(&metrics);
//! Worker::new(config, |r: Vec<Message>| r)?.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Counters cost nothing per request: they are read from the workers' and the broker's own
//! statistics when Prometheus scrapes. Per request, a worker observes its request duration
//! in its service's histogram (a few atomic additions) and the broker the time each request
//! waited in its queue.
//!
//! Health (`/healthz`): in a process with workers, `200 ready` once every worker given the
//! `Metrics` is known by its broker (the broker has spoken on the current connection) and
//! none is draining, stopping or reconnecting; in a process with brokers only, while one
//! runs; `503 not ready` otherwise, with the reason when a worker heard no broker through
//! [`UNREACHABLE_AFTER`](crate::UNREACHABLE_AFTER) connection attempts in a row. Workers that are gone (a pool replaced them) leave their
//! final counters in the totals of their service, so counters never go down.

mod http;

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::stats::{StatsCell, WorkerStats};
pub use http::MetricsServer;

/// The label of every per-service metric.
type ServiceLabel = Vec<(&'static str, String)>;

/// Request duration buckets: 100 µs to about 105 s, doubling.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 21)
}

/// The metrics of a process: its workers and brokers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    workers: Arc<Workers>,
    durations: Family<ServiceLabel, Histogram>,
    parts: Mutex<Vec<PartEntry>>,
}

/// A part of the metrics that a layer above keeps (the broker's collector lives with the
/// broker, so `metrics` imports nothing of it): encoded at every scrape after the workers'
/// metrics, and asked for the health of a process without workers.
pub(crate) trait Part: Collector {
    /// Whether something this part reports on runs now.
    fn is_running(&self) -> bool;
}

/// A registered [`Part`], kept twice: as itself, to be found again by its type, and as a part.
#[derive(Debug)]
struct PartEntry {
    any: Arc<dyn Any + Send + Sync>,
    part: Arc<dyn Part>,
}

/// The stats cells of the registered workers, read at scrape time, and the final counters
/// of the workers gone, kept per service so that no counter ever goes down.
#[derive(Debug, Default)]
struct Workers {
    cells: Mutex<Vec<(Arc<str>, Arc<StatsCell>)>>,
    retired: Mutex<Vec<(Arc<str>, WorkerStats)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty set of metrics; workers and brokers given it register themselves.
    pub fn new() -> Metrics {
        let workers = Arc::new(Workers::default());
        let durations = Family::<ServiceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Arc::clone(&workers)));
        registry.register(
            "mdp_worker_request_duration_seconds",
            "Time from a request's delivery to the action until its reply",
            durations.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                workers,
                durations,
                parts: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Every metric in the OpenMetrics text format, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = lock(&self.inner.registry);
        // Writing into a String cannot fail; a collector error leaves what was written.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// What `/healthz` answers: with workers, whether every one is known by its broker
    /// (none draining, stopping or reconnecting); with brokers only, whether one runs.
    pub fn is_ready(&self) -> bool {
        match self.inner.workers.is_ready() {
            Some(ready) => ready,
            None => lock(&self.inner.parts)
                .iter()
                .any(|entry| entry.part.is_running()),
        }
    }

    /// Why `/healthz` is not ready, in one line; `None` when it is ready.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_ready() {
            return None;
        }
        Some(match self.inner.workers.unreachable() {
            0 => "not ready".to_string(),
            n => format!(
                "not ready: {n} worker(s) heard no broker through {} connection attempts in a row",
                crate::session::UNREACHABLE_AFTER
            ),
        })
    }

    /// Serves `GET /metrics` and `GET /healthz` on `addr` (e.g. `127.0.0.1:9100`) from a
    /// thread of its own, until the returned server is dropped.
    ///
    /// # Errors
    ///
    /// The I/O error from binding `addr`.
    pub fn serve(&self, addr: &str) -> std::io::Result<MetricsServer> {
        MetricsServer::start(self.clone(), addr)
    }

    /// Counts a worker of `service`; returns the histogram of its request durations.
    pub(crate) fn register_worker(&self, service: &str, cell: &Arc<StatsCell>) -> Histogram {
        self.inner.workers.fold_retired();
        let mut cells = lock(&self.inner.workers.cells);
        cells.push((Arc::from(service), Arc::clone(cell)));
        let label = vec![("service", service.to_string())];
        self.inner.durations.get_or_create(&label).clone()
    }

    /// The one `P` of these metrics, made and registered at its first use: how a layer
    /// above adds what it reports (every broker of the process shares one collector).
    pub(crate) fn part<P: Part + Default>(&self) -> Arc<P> {
        let mut parts = lock(&self.inner.parts);
        let found = parts
            .iter()
            .find_map(|entry| Arc::clone(&entry.any).downcast::<P>().ok());
        if let Some(part) = found {
            return part;
        }
        let part = Arc::new(P::default());
        let entry = PartEntry {
            any: Arc::clone(&part) as Arc<dyn Any + Send + Sync>,
            part: Arc::clone(&part) as Arc<dyn Part>,
        };
        parts.push(entry);
        lock(&self.inner.registry).register_collector(Box::new(Arc::clone(&part)));
        part
    }
}

impl Workers {
    /// Moves the final counters of the workers gone into the kept totals.
    fn fold_retired(&self) {
        let mut cells = lock(&self.cells);
        let mut retired = lock(&self.retired);
        cells.retain(|(service, cell)| {
            if !cell.is_retired() {
                return true;
            }
            let stats = cell.snapshot();
            match retired.iter_mut().find(|(s, _)| s == service) {
                Some((_, total)) => total.add(&stats),
                None => retired.push((Arc::clone(service), stats)),
            }
            false
        });
    }

    /// Every service's rows: the live workers (with whether each is registered) and the
    /// kept totals of the workers gone (`None`).
    fn snapshot(&self) -> Vec<(Arc<str>, WorkerStats, Option<bool>)> {
        self.fold_retired();
        let live = lock(&self.cells)
            .iter()
            .map(|(service, cell)| {
                (
                    Arc::clone(service),
                    cell.snapshot(),
                    Some(cell.is_registered()),
                )
            })
            .collect::<Vec<_>>();
        let gone = lock(&self.retired)
            .iter()
            .map(|(service, stats)| (Arc::clone(service), *stats, None))
            .collect::<Vec<_>>();
        live.into_iter().chain(gone).collect()
    }

    /// Live workers that no broker has answered through several attempts in a row.
    fn unreachable(&self) -> usize {
        lock(&self.cells)
            .iter()
            .filter(|(_, cell)| cell.snapshot().broker_unreachable)
            .count()
    }

    /// Whether there is a live worker and every live worker is registered.
    fn is_ready(&self) -> Option<bool> {
        self.fold_retired();
        let cells = lock(&self.cells);
        if cells.is_empty() {
            return None;
        }
        Some(cells.iter().all(|(_, cell)| cell.is_registered()))
    }
}

/// The counters of the workers' statistics, named and described once.
/// A metric: its name, its help, and how to read it from `T`.
type Reading<T, V> = (&'static str, &'static str, fn(&T) -> V);

const WORKER_COUNTERS: [Reading<WorkerStats, u64>; 12] = [
    (
        "mdp_worker_requests",
        "Requests handed to the action",
        |s| s.requests,
    ),
    (
        "mdp_worker_replies",
        "Replies sent (the action's, panic and timeout replies)",
        |s| s.replies,
    ),
    (
        "mdp_worker_timeouts",
        "Requests answered with the timeout reply",
        |s| s.timeouts,
    ),
    ("mdp_worker_panics", "Requests whose action panicked", |s| {
        s.panics
    }),
    (
        "mdp_worker_reconnects",
        "Sockets opened after the first one",
        |s| s.reconnects,
    ),
    (
        "mdp_worker_heartbeats_sent",
        "HEARTBEATs sent to the broker",
        |s| s.heartbeats_sent,
    ),
    (
        "mdp_worker_malformed_dropped",
        "Malformed messages from the broker, dropped",
        |s| s.malformed_dropped,
    ),
    (
        "mdp_worker_unexpected_dropped",
        "Valid messages out of place, dropped",
        |s| s.unexpected_dropped,
    ),
    (
        "mdp_worker_send_failures",
        "Messages not sent within the send timeout",
        |s| s.send_failures,
    ),
    (
        "mdp_worker_auth_failures",
        "Connections refused by the broker's authentication",
        |s| s.auth_failures,
    ),
    (
        "mdp_worker_connections_lost",
        "Connections dropped under the socket",
        |s| s.connections_lost,
    ),
    (
        "mdp_worker_unreachable",
        "Stretches of 3 connection attempts in a row on which no broker answered",
        |s| s.unreachable,
    ),
];

/// The workers of one service in this process, added up.
#[derive(Debug, Default)]
struct ServiceRow {
    stats: WorkerStats,
    workers: i64,
    registered: i64,
    busy: i64,
    unreachable: i64,
}

impl Collector for Workers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = per_service(self.snapshot());
        for (name, help, value) in WORKER_COUNTERS {
            let metric = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            for (service, row) in &rows {
                let label = vec![("service", service.to_string())];
                ConstCounter::new(value(&row.stats)).encode(family.encode_family(&label)?)?;
            }
        }
        let gauges: [Reading<ServiceRow, i64>; 4] = [
            ("mdp_worker_in_flight", "Requests in an action now", |r| {
                r.busy
            }),
            (
                "mdp_worker_workers",
                "Workers of the service in this process",
                |r| r.workers,
            ),
            (
                "mdp_worker_registered",
                "Workers the broker knows now",
                |r| r.registered,
            ),
            (
                "mdp_worker_broker_unreachable",
                "Workers no broker has answered through 3 connection attempts in a row, now",
                |r| r.unreachable,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            for (service, row) in &rows {
                let label = vec![("service", service.to_string())];
                ConstGauge::new(value(row)).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// Adds the workers' counters up per service, in the order services were first seen.
fn per_service(workers: Vec<(Arc<str>, WorkerStats, Option<bool>)>) -> Vec<(Arc<str>, ServiceRow)> {
    let mut rows: Vec<(Arc<str>, ServiceRow)> = Vec::new();
    for (service, stats, live) in workers {
        let index = match rows.iter().position(|(s, _)| *s == service) {
            Some(index) => index,
            None => {
                rows.push((service, ServiceRow::default()));
                rows.len() - 1
            }
        };
        let row = &mut rows[index].1;
        row.stats.add(&stats);
        if let Some(registered) = live {
            row.busy += i64::from(stats.in_flight);
            row.workers += 1;
            row.registered += i64::from(registered);
            row.unreachable += i64::from(stats.broker_unreachable);
        }
    }
    rows
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A part that reports one counter and runs while `running` is set.
    #[derive(Debug, Default)]
    struct Lamp {
        running: AtomicBool,
    }

    impl Collector for Lamp {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let metric = ConstCounter::new(7u64);
            let descriptor =
                encoder.encode_descriptor("lamp_lit", "Lit", None, metric.metric_type())?;
            metric.encode(descriptor)
        }
    }

    impl Part for Lamp {
        fn is_running(&self) -> bool {
            self.running.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn a_part_is_made_once_encoded_once_and_decides_health_without_workers() {
        let metrics = Metrics::new();
        assert!(!metrics.is_ready(), "nothing registered");
        assert!(!metrics.encode().contains("lamp_lit"));

        let lamp = metrics.part::<Lamp>();
        let again = metrics.clone().part::<Lamp>();
        assert!(Arc::ptr_eq(&lamp, &again), "one part per type");
        assert_eq!(metrics.encode().matches("lamp_lit_total 7").count(), 1);

        assert!(!metrics.is_ready(), "the part does not run yet");
        lamp.running.store(true, Ordering::Relaxed);
        assert!(metrics.is_ready());
        assert_eq!(metrics.not_ready_reason(), None);
    }
}
