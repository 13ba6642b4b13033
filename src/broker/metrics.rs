//! The brokers' metrics (feature `metrics`): global counters from the statistics each broker
//! publishes every loop turn, and per-service figures from a snapshot the broker thread takes
//! when asked (a scrape pays for the walk over the services, never a loop turn). One
//! [`Brokers`] collector per [`Metrics`], a [`Part`] of it, adds up every broker given them.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::state::{QueueTimes, ServiceReport, Snapshot, QUEUE_TIME_BUCKETS};
use super::stats::{BrokerStats, SharedStats};
use crate::metrics::{Metrics, Part};

/// How long a scrape waits for a broker's snapshot (its loop turns at least every 50 ms).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(1);

/// Registers a broker whose statistics are `stats` with `metrics`; returns the queries for
/// snapshots it answers between loop turns.
pub(crate) fn register(metrics: &Metrics, stats: SharedStats) -> SnapshotQueries {
    let (source, queries) = BrokerSource::new(stats);
    metrics.part::<Brokers>().register(source);
    queries
}

/// A broker as the metrics see it.
#[derive(Debug)]
struct BrokerSource {
    stats: SharedStats,
    queries: Sender<Sender<Snapshot>>,
    /// Alive while the broker (its [`SnapshotQueries`]) is.
    running: std::sync::Weak<()>,
}

/// The broker's end: snapshot queries to answer between loop turns.
#[derive(Debug)]
pub(crate) struct SnapshotQueries(
    Receiver<Sender<Snapshot>>,
    /// Held only for its [`Weak`](std::sync::Weak) in the source: "the broker runs".
    #[allow(dead_code)]
    std::sync::Arc<()>,
);

impl BrokerSource {
    fn new(stats: SharedStats) -> (BrokerSource, SnapshotQueries) {
        // A few scrapes at once at most; a full channel makes a scrape skip the snapshot.
        let (queries, receiver) = crossbeam_channel::bounded(8);
        let running = std::sync::Arc::new(());
        let source = BrokerSource {
            stats,
            queries,
            running: std::sync::Arc::downgrade(&running),
        };
        (source, SnapshotQueries(receiver, running))
    }

    /// The broker's snapshot; `Ok(None)` if it did not answer in time, `Err(())` once the
    /// broker is gone.
    fn snapshot(&self) -> Result<Option<Snapshot>, ()> {
        use crossbeam_channel::{RecvTimeoutError, TrySendError};
        let (answer, answered) = crossbeam_channel::bounded(1);
        match self.queries.try_send(answer) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Ok(None),
            Err(TrySendError::Disconnected(_)) => return Err(()),
        }
        match answered.recv_timeout(SNAPSHOT_WAIT) {
            Ok(snapshot) => Ok(Some(snapshot)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(()),
        }
    }
}

impl SnapshotQueries {
    /// Answers every waiting query with `take()`'s snapshot (taken once).
    pub(crate) fn answer(&self, take: impl FnOnce() -> Snapshot) {
        let waiting: Vec<Sender<Snapshot>> = self.0.try_iter().collect();
        if waiting.is_empty() {
            return;
        }
        let snapshot = take();
        for answer in waiting {
            let _ = answer.try_send(snapshot.clone());
        }
    }
}

/// Every broker registered with the metrics.
#[derive(Debug, Default)]
pub(crate) struct Brokers {
    list: Mutex<Vec<BrokerSource>>,
}

impl Part for Brokers {
    /// Whether a registered broker still runs.
    fn is_running(&self) -> bool {
        lock(&self.list)
            .iter()
            .any(|s| s.running.strong_count() > 0)
    }
}

impl Brokers {
    fn register(&self, source: BrokerSource) {
        lock(&self.list).push(source);
    }

    /// Each live broker's statistics and snapshot; brokers that stopped are forgotten.
    fn read(&self) -> Vec<(BrokerStats, Snapshot)> {
        let mut list = lock(&self.list);
        let mut out = Vec::new();
        list.retain(|source| match source.snapshot() {
            Ok(Some(snapshot)) => {
                out.push((source.stats.get(), snapshot));
                true
            }
            Ok(None) => true,
            Err(()) => false,
        });
        out
    }
}

/// Broker-wide counters, named once.
/// A metric: its name, its help, and how to read it from `T`.
type Reading<T> = (&'static str, &'static str, fn(&T) -> u64);

const BROKER_COUNTERS: [Reading<BrokerStats>; 17] = [
    (
        "mdp_broker_requests_received",
        "Client requests received",
        |s| s.requests_received,
    ),
    (
        "mdp_broker_replies_routed",
        "Worker replies routed to clients",
        |s| s.replies_routed,
    ),
    (
        "mdp_broker_requests_dropped",
        "Requests dropped at a queue bound, by age or for a refused service",
        |s| {
            s.requests_dropped
                + s.requests_dropped_total_bound
                + s.requests_expired
                + s.services_refused
        },
    ),
    (
        "mdp_broker_requests_expired",
        "Requests dropped after max_queue_age in a queue (also in requests_dropped)",
        |s| s.requests_expired,
    ),
    (
        "mdp_broker_requests_requeued",
        "Requests of workers lost while busy queued again for another worker",
        |s| s.requests_requeued,
    ),
    (
        "mdp_broker_requests_lost",
        "Requests of workers lost while busy that nobody answers",
        |s| s.requests_lost,
    ),
    (
        "mdp_broker_malformed_dropped",
        "Malformed messages dropped",
        |s| s.malformed_dropped,
    ),
    (
        "mdp_broker_unexpected_dropped",
        "Valid messages out of place, dropped",
        |s| s.unexpected_dropped,
    ),
    (
        "mdp_broker_workers_expired",
        "Workers forgotten after their liveness: idle, or busy that heartbeat while busy",
        |s| s.workers_expired,
    ),
    (
        "mdp_broker_busy_workers_expired",
        "Busy workers forgotten after their liveness, having heartbeated while busy",
        |s| s.busy_workers_expired,
    ),
    (
        "mdp_broker_heartbeats_sent",
        "HEARTBEATs sent to idle workers",
        |s| s.heartbeats_sent,
    ),
    (
        "mdp_broker_send_failures",
        "Messages the broker could not send",
        |s| s.send_failures,
    ),
    (
        "mdp_broker_workers_gone",
        "Workers forgotten because their connection was gone when the broker sent to them",
        |s| s.workers_gone,
    ),
    (
        "mdp_broker_requests_undelivered",
        "Requests queued again because the worker they were sent to was gone",
        |s| s.requests_undelivered,
    ),
    (
        "mdp_broker_replies_unroutable",
        "Replies whose client was gone, dropped",
        |s| s.replies_unroutable,
    ),
    (
        "mdp_broker_auth_accepted",
        "Connections the ZAP handler accepted",
        |s| s.auth_accepted,
    ),
    (
        "mdp_broker_auth_denied",
        "Connections the ZAP handler refused",
        |s| s.auth_denied,
    ),
];

/// Per-service gauges and counters.
const SERVICE_GAUGES: [Reading<ServiceReport>; 3] = [
    (
        "mdp_broker_service_workers",
        "Workers registered for the service",
        |r| r.workers as u64,
    ),
    (
        "mdp_broker_service_waiting_workers",
        "Idle workers of the service",
        |r| r.waiting as u64,
    ),
    (
        "mdp_broker_service_queue_length",
        "Requests queued for the service",
        |r| r.queued as u64,
    ),
];

const SERVICE_COUNTERS: [Reading<ServiceReport>; 3] = [
    (
        "mdp_broker_service_requests",
        "Requests received for the service since the broker last created it",
        |r| r.received,
    ),
    (
        "mdp_broker_service_replies",
        "Replies routed for the service since the broker last created it",
        |r| r.served,
    ),
    (
        "mdp_broker_service_dropped",
        "Requests of the service dropped since the broker last created it",
        |r| r.dropped,
    ),
];

impl Collector for Brokers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if lock(&self.list).is_empty() {
            return Ok(()); // a process without a broker exports no broker metrics
        }
        let brokers = self.read();
        let mut total = BrokerStats::default();
        let mut services: Vec<(String, ServiceReport)> = Vec::new();
        let mut queue_times = QueueTimes::default();
        for (stats, snapshot) in brokers {
            add_stats(&mut total, &stats);
            for (name, report) in snapshot.services {
                match services.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, sum)) => add_report(sum, &report),
                    None => services.push((name, report)),
                }
            }
            add_times(&mut queue_times, &snapshot.queue_times);
        }
        for (name, help, value) in BROKER_COUNTERS {
            let metric = ConstCounter::new(value(&total));
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        for (name, help, value) in SERVICE_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (service, report) in &services {
                let label = vec![("service", service.clone())];
                ConstGauge::new(value(report) as i64).encode(family.encode_family(&label)?)?;
            }
        }
        for (name, help, value) in SERVICE_COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (service, report) in &services {
                let label = vec![("service", service.clone())];
                ConstCounter::new(value(report)).encode(family.encode_family(&label)?)?;
            }
        }
        encode_queue_times(&mut encoder, &queue_times)
    }
}

fn encode_queue_times(
    encoder: &mut DescriptorEncoder,
    times: &QueueTimes,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        "mdp_broker_queue_time_seconds",
        "Time a request waited in its service's queue before a worker took it",
        None,
        MetricType::Histogram,
    )?;
    let buckets: Vec<(f64, u64)> = (0..=QUEUE_TIME_BUCKETS)
        .map(|i| {
            let bound = if i == QUEUE_TIME_BUCKETS {
                f64::INFINITY
            } else {
                QueueTimes::bound(i)
            };
            (bound, times.counts[i])
        })
        .collect();
    metric.encode_histogram::<NoLabelSet>(times.sum_seconds, times.count, &buckets, None)
}

fn add_stats(sum: &mut BrokerStats, s: &BrokerStats) {
    sum.requests_received += s.requests_received;
    sum.replies_routed += s.replies_routed;
    sum.requests_dropped += s.requests_dropped;
    sum.requests_dropped_total_bound += s.requests_dropped_total_bound;
    sum.requests_expired += s.requests_expired;
    sum.services_refused += s.services_refused;
    sum.malformed_dropped += s.malformed_dropped;
    sum.unexpected_dropped += s.unexpected_dropped;
    sum.workers_expired += s.workers_expired;
    sum.busy_workers_expired += s.busy_workers_expired;
    sum.requests_requeued += s.requests_requeued;
    sum.requests_lost += s.requests_lost;
    sum.heartbeats_sent += s.heartbeats_sent;
    sum.send_failures += s.send_failures;
    sum.workers_gone += s.workers_gone;
    sum.requests_undelivered += s.requests_undelivered;
    sum.replies_unroutable += s.replies_unroutable;
    sum.auth_accepted += s.auth_accepted;
    sum.auth_denied += s.auth_denied;
}

fn add_report(sum: &mut ServiceReport, r: &ServiceReport) {
    sum.workers += r.workers;
    sum.waiting += r.waiting;
    sum.queued += r.queued;
    sum.served += r.served;
    sum.received += r.received;
    sum.dropped += r.dropped;
}

fn add_times(sum: &mut QueueTimes, t: &QueueTimes) {
    for (s, c) in sum.counts.iter_mut().zip(t.counts) {
        *s += c;
    }
    sum.sum_seconds += t.sum_seconds;
    sum.count += t.count;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
