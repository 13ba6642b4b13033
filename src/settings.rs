//! The settings gate: the one function that turns a [`WorkerConfig`] into settings a worker
//! can run on, used by [`WorkerConfig::validate`], [`Worker::new`](crate::Worker::new),
//! [`Worker::threaded`](crate::Worker::threaded), the async worker and the pool's plan alike.
//! Every rule of a worker's config lives here or in [`checks`](crate::checks), so no entry
//! point can accept what another refuses. The gate imports nothing above it: the pool checks
//! its own rules and plans its resources in `pool/plan.rs`, through this gate.

use std::time::Duration;

use crate::checks::{
    check_heartbeat, check_max_message_size, fits_millis, invalid, parse_endpoints, positive,
    validate_service_name, ConfigError,
};
use crate::config::{WorkerConfig, MAX_CONCURRENCY};
use crate::events::{EventSink, WorkerId};
use crate::security::check_curve;
use crate::session::SessionConfig;
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::transport::{self, SocketOptions};

/// Where a worker's action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In the worker's thread, inside `receive()`.
    Inline,
    /// On a thread of its own.
    Threaded,
    /// As a task of the async driver, `concurrency` registrations at once.
    Async,
}

/// A [`WorkerConfig`] that passed every rule, in the shapes the worker uses.
pub(crate) struct WorkerSettings {
    pub(crate) session: SessionConfig,
    pub(crate) socket: SocketOptions,
    pub(crate) context: Option<zmq::Context>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) drain: DrainHandle,
    pub(crate) events: Option<EventSink>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

/// Checks every value of `config` for a worker running its action in `mode`.
///
/// # Errors
///
/// The first [`ConfigError`] found, naming the field and the value.
pub(crate) fn worker_settings(
    config: &WorkerConfig,
    mode: Mode,
) -> Result<WorkerSettings, ConfigError> {
    let endpoints = parse_endpoints(&config.broker_address)?;
    validate_service_name(&config.service_name)?;
    check_durations(config)?;
    check_request_timeout(config.request_timeout, mode)?;
    check_async_only(config, mode)?;
    check_max_message_size(config.max_message_size)?;
    if let Some(plain) = &config.plain {
        plain.validate()?;
    }
    if config.curve.is_some() {
        check_curve("curve_credentials", config.plain.is_some())?;
    }
    Ok(WorkerSettings {
        session: SessionConfig {
            id: WorkerId::next(&config.service_name),
            service: config.service_name.as_bytes().to_vec(),
            endpoints,
            events: config.events.is_some(),
            panic_reply: config.panic_reply.clone(),
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            reconnect: config.reconnect,
            reconnect_max: config.reconnect_max,
            send_disconnect: config.send_disconnect,
            seed: seed(),
            request_timeout: config.request_timeout,
            timeout_reply: config.timeout_reply.clone(),
        },
        socket: SocketOptions {
            linger: config.linger,
            send_timeout: config.send_timeout,
            max_message_size: config.max_message_size,
            plain: config.plain.clone(),
            curve: config.curve.clone(),
            // A broker back after a crash is found within the worker's own reconnect
            // delay: libzmq retries a refused connect every 100 ms, which would be the
            // floor of every failover otherwise.
            retry: Some(config.reconnect.min(transport::MAX_RETRY)),
        },
        context: config.context.clone(),
        shutdown: config.shutdown.clone().unwrap_or_default(),
        drain: config.drain.clone().unwrap_or_default(),
        events: config.events.clone(),
        #[cfg(feature = "metrics")]
        metrics: config.metrics.clone(),
    })
}

impl WorkerConfig {
    /// Checks every value that some entry point accepts: the rules of every mode.
    /// [`Worker::new`](crate::Worker::new) (inline) also refuses a `request_timeout`, and
    /// both sync workers refuse `concurrency` above 1 and a `shutdown_grace` (the
    /// [`AsyncWorker`](crate::AsyncWorker)'s). Every duration must be at most
    /// [`MAX_DURATION`](crate::config::MAX_DURATION).
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, naming the field and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        worker_settings(self, Mode::Async).map(drop)
    }
}

/// Every duration is bounded, so that no sum with an `Instant` can overflow.
fn check_durations(config: &WorkerConfig) -> Result<(), ConfigError> {
    check_heartbeat(config.heartbeat, config.liveness)?;
    positive("reconnect", config.reconnect)?;
    positive("reconnect_max", config.reconnect_max)?;
    if config.reconnect_max < config.reconnect {
        return Err(invalid(
            "reconnect_max",
            format!("{} ms", config.reconnect_max.as_millis()),
            "must be at least reconnect",
        ));
    }
    positive("send_timeout", config.send_timeout)?;
    fits_millis("linger", config.linger)
}

fn check_request_timeout(timeout: Option<Duration>, mode: Mode) -> Result<(), ConfigError> {
    let Some(timeout) = timeout else {
        return Ok(());
    };
    positive("request_timeout", timeout)?;
    if mode == Mode::Inline {
        return Err(invalid(
            "request_timeout",
            format!("{} ms", timeout.as_millis()),
            "needs the action on its own thread: use Worker::threaded (or PoolService::threaded)",
        ));
    }
    Ok(())
}

/// `concurrency` and `shutdown_grace` belong to the async worker.
fn check_async_only(config: &WorkerConfig, mode: Mode) -> Result<(), ConfigError> {
    if let Some(grace) = config.shutdown_grace {
        fits_millis("shutdown_grace", grace)?;
        if mode != Mode::Async {
            return Err(invalid(
                "shutdown_grace",
                format!("{} ms", grace.as_millis()),
                "is the async worker's: a sync worker finishes the request in hand",
            ));
        }
    }
    let concurrency = config.concurrency;
    if concurrency == 0 || concurrency > MAX_CONCURRENCY {
        return Err(invalid(
            "concurrency",
            concurrency,
            "must be between 1 and 100000",
        ));
    }
    if concurrency > 1 && mode != Mode::Async {
        return Err(invalid(
            "concurrency",
            concurrency,
            "a sync worker serves one request at a time: use AsyncWorker or a WorkerPool",
        ));
    }
    Ok(())
}

/// A seed for jitter that differs between workers and processes.
pub(crate) fn seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
