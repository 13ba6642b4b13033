//! The settings gate: the one function that turns a [`WorkerConfig`] into settings a worker
//! can run on, used by [`WorkerConfig::validate`], [`Worker::new`](crate::Worker::new),
//! [`Worker::threaded`](crate::Worker::threaded), the async worker and the pool's plan alike.
//! Every rule of a worker's config lives here or in [`checks`](crate::checks), so no entry
//! point can accept what another refuses. The gate imports nothing above it: the pool checks
//! its own rules and plans its resources in `drivers/pool/plan.rs`, through this gate.

use std::time::Duration;

use crate::checks::{
    check_heartbeat, check_max_message_size, fits_millis, invalid, parse_endpoints, positive,
    validate_service_name, ConfigError,
};
use crate::config::{WorkerConfig, DEFAULT_SHUTDOWN_GRACE, MAX_CONCURRENCY};
use crate::events::{EventSink, Identity};
use crate::io::security::check_curve;
use crate::io::transport::{self, SocketOptions};
use crate::session::SessionConfig;
use crate::shutdown::{DrainHandle, ShutdownHandle};

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

/// A [`WorkerConfig`] that passed every rule, in the shapes the worker uses. It holds no
/// identity: the driver makes one ([`Identity::new`]) when it starts and adds it with
/// [`SessionSettings::config`], so that checking a config makes no id and reads no clock.
pub(crate) struct WorkerSettings {
    pub(crate) session: SessionSettings,
    pub(crate) socket: SocketOptions,
    pub(crate) context: Option<zmq::Context>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) drain: DrainHandle,
    pub(crate) events: Option<EventSink>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

/// The session's settings, all but the worker's identity: a [`SessionConfig`] waiting for
/// its id and its jitter seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionSettings {
    /// The service name, checked.
    pub(crate) service: String,
    pub(crate) endpoints: Vec<String>,
    pub(crate) events: bool,
    pub(crate) panic_reply: Vec<Vec<u8>>,
    pub(crate) heartbeat: Duration,
    pub(crate) liveness: u32,
    pub(crate) reconnect: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) send_disconnect: bool,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) timeout_reply: Vec<Vec<u8>>,
    pub(crate) shutdown_grace: Option<Duration>,
}

impl SessionSettings {
    /// The session's config for the worker `identity`, made by its driver.
    pub(crate) fn config(&self, identity: Identity) -> SessionConfig {
        SessionConfig {
            id: identity.id,
            service: self.service.as_bytes().to_vec(),
            endpoints: self.endpoints.clone(),
            events: self.events,
            panic_reply: self.panic_reply.clone(),
            heartbeat: self.heartbeat,
            liveness: self.liveness,
            reconnect: self.reconnect,
            reconnect_max: self.reconnect_max,
            send_disconnect: self.send_disconnect,
            seed: identity.seed,
            request_timeout: self.request_timeout,
            timeout_reply: self.timeout_reply.clone(),
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// Checks every value of `config` for a worker running its action in `mode`. Pure: the same
/// config gives equal settings every time.
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
        session: session_settings(config, endpoints, mode),
        socket: socket_options(config),
        context: config.context.clone(),
        shutdown: config.shutdown.clone().unwrap_or_default(),
        drain: config.drain.clone().unwrap_or_default(),
        events: config.events.clone(),
        #[cfg(feature = "metrics")]
        metrics: config.metrics.clone(),
    })
}

fn session_settings(config: &WorkerConfig, endpoints: Vec<String>, mode: Mode) -> SessionSettings {
    SessionSettings {
        service: config.service_name.clone(),
        endpoints,
        events: config.events.is_some(),
        panic_reply: config.panic_reply.clone(),
        heartbeat: config.heartbeat,
        liveness: config.liveness,
        reconnect: config.reconnect,
        reconnect_max: config.reconnect_max,
        send_disconnect: config.send_disconnect,
        request_timeout: config.request_timeout,
        timeout_reply: config.timeout_reply.clone(),
        shutdown_grace: match mode {
            Mode::Async => Some(config.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE)),
            Mode::Inline | Mode::Threaded => None,
        },
    }
}

fn socket_options(config: &WorkerConfig) -> SocketOptions {
    SocketOptions {
        linger: config.linger,
        send_timeout: config.send_timeout,
        max_message_size: config.max_message_size,
        plain: config.plain.clone(),
        curve: config.curve.clone(),
        // A broker back after a crash is found within the worker's own reconnect
        // delay: libzmq retries a refused connect every 100 ms, which would be the
        // floor of every failover otherwise.
        retry: Some(config.reconnect.min(transport::MAX_RETRY)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ids_made_here;

    fn config() -> WorkerConfig {
        WorkerConfig::new("tcp://127.0.0.1:5555, tcp://127.0.0.1:5556", "echo")
    }

    #[test]
    fn checking_a_config_twice_gives_equal_settings_and_makes_no_worker_id() {
        let config = config().request_timeout(Duration::from_secs(1));
        let before = ids_made_here();
        let first = worker_settings(&config, Mode::Threaded).map(|s| s.session);
        let second = worker_settings(&config, Mode::Threaded).map(|s| s.session);
        assert_eq!(ids_made_here(), before);
        assert_eq!(first, second);
        let endpoints = first.map(|s| s.endpoints);
        assert_eq!(
            endpoints,
            Ok(vec![
                "tcp://127.0.0.1:5555".to_string(),
                "tcp://127.0.0.1:5556".to_string()
            ])
        );
    }

    #[test]
    fn validate_gives_the_same_answer_twice_and_makes_no_worker_id() {
        let before = ids_made_here();
        let good = config();
        let bad = config().liveness(0);
        assert_eq!((good.validate(), good.validate()), (Ok(()), Ok(())));
        let (first, second) = (bad.validate(), bad.validate());
        assert_eq!(first, second);
        assert!(
            matches!(&first, Err(ConfigError::InvalidValue { field, .. }) if *field == "liveness"),
            "{first:?}"
        );
        assert_eq!(ids_made_here(), before);
    }

    #[test]
    fn the_session_config_takes_the_identity_its_driver_made() {
        let settings = worker_settings(&config(), Mode::Inline).map(|s| s.session);
        let identity = Identity::new("echo");
        let session = settings.map(|s| s.config(identity.clone()));
        let session = session.map(|c| (c.id, c.seed, c.service, c.heartbeat));
        assert_eq!(
            session,
            Ok((
                identity.id,
                identity.seed,
                b"echo".to_vec(),
                crate::config::DEFAULT_HEARTBEAT
            ))
        );
    }
}
