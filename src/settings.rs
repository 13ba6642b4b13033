//! The settings gate: the one function that turns a [`WorkerConfig`] into settings a worker
//! can run on, used by [`Worker::new`](crate::Worker::new),
//! [`Worker::threaded`](crate::Worker::threaded) and the pool alike. Every rule lives here or
//! in [`checks`](crate::checks), so no entry point can accept what another refuses.

use std::time::Duration;

use crate::checks::{
    check_heartbeat, check_max_message_size, fits_millis, invalid, parse_endpoints, positive,
    validate_service_name, ConfigError,
};
use crate::config::{WorkerConfig, MAX_CONCURRENCY};
use crate::events::{EventSink, WorkerId};
use crate::pool::supervisor::{RecyclePolicy, RestartPolicy};
use crate::pool::PoolService;
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

/// Sockets one pool worker holds: its DEALER, and the two of its socket monitor (libzmq's
/// internal PAIR and ours). Its wake-up line is a Unix socketpair, not a zmq socket, and a
/// threaded worker talks to its action over channels.
pub(crate) const SOCKETS_PER_WORKER: usize = 3;

/// Sockets a zmq context allows unless told otherwise (`ZMQ_MAX_SOCKETS`, 1023 by default);
/// the safe API of the `zmq` crate cannot raise it.
pub(crate) const MAX_SOCKETS_PER_CONTEXT: usize = 1023;

/// Workers the pool puts on each context it makes itself. 300 × 3 = 900 sockets, which
/// leaves 123 of the 1023 for what comes and goes: a hand-over holds two workers (3 more
/// sockets) for one slot per recycling service, and a socket closed on reconnect keeps its
/// place until libzmq's reaper has flushed it (up to `linger`).
pub(crate) const WORKERS_PER_OWN_CONTEXT: usize = 300;

/// File descriptors one worker holds, measured on Linux (benches/pool_registration.rs with
/// `--fds`): the libzmq that `zmq-sys` builds signals each socket's mailbox over a
/// socketpair, 2 per zmq socket (6), then its TCP connection (1) and its wake-up
/// socketpair (2). A broker in the same process holds one more per worker.
pub(crate) const FDS_PER_WORKER: u64 = 9;

/// File descriptors one zmq context holds: the mailboxes (2 each) of the context, its
/// reaper and its I/O thread, and the reaper's and the I/O thread's pollers.
pub(crate) const FDS_PER_CONTEXT: u64 = 8;

/// The process's open-file limit (`RLIMIT_NOFILE`) and the descriptors open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    /// The soft limit.
    pub(crate) limit: u64,
    /// Descriptors open now.
    pub(crate) open: u64,
}

/// A pool that passed every rule: its restart policy, what each service runs, and how many
/// contexts the pool makes for the workers that bring none.
#[derive(Debug)]
pub(crate) struct PoolSettings {
    pub(crate) restart: RestartPolicy,
    pub(crate) services: Vec<ServiceSettings>,
    pub(crate) own_contexts: usize,
}

/// One pool service that passed every rule.
#[derive(Debug)]
pub(crate) struct ServiceSettings {
    pub(crate) mode: Mode,
    /// One broker endpoint per group of `count` workers (several with `fan_out`).
    pub(crate) endpoints: Vec<String>,
    pub(crate) recycle: RecyclePolicy,
}

/// Checks a whole pool: each service through [`worker_settings`] in its mode, its count and
/// recycle values, the restart policy, the sockets of the contexts the caller supplied
/// (`shared_context`: one given to the pool builder, shared by every service without its
/// own) and the process's open files (`None`: unknown, not checked).
///
/// # Errors
///
/// The first [`ConfigError`] found, naming the field and the value.
pub(crate) fn pool_settings(
    services: &[PoolService],
    restart: RestartPolicy,
    shared_context: bool,
    open_files: Option<OpenFiles>,
) -> Result<PoolSettings, ConfigError> {
    check_restart(&restart)?;
    let checked = services
        .iter()
        .map(service_settings)
        .collect::<Result<Vec<_>, _>>()?;
    let own_workers = check_context_sockets(services, &checked, shared_context)?;
    let own_contexts = own_workers.div_ceil(WORKERS_PER_OWN_CONTEXT);
    let workers = services
        .iter()
        .zip(&checked)
        .fold(0, |sum: usize, (service, s)| {
            sum.saturating_add(workers_of(service, s))
        });
    if let Some(open_files) = open_files {
        check_open_files(workers, own_contexts, open_files)?;
    }
    Ok(PoolSettings {
        restart,
        services: checked,
        own_contexts,
    })
}

/// The restart policy: positive durations within [`MAX_DURATION`](crate::checks::MAX_DURATION),
/// a largest backoff at least the first. Any `max_restarts` goes: 0 means never restart.
fn check_restart(policy: &RestartPolicy) -> Result<(), ConfigError> {
    positive("restart_window", policy.window)?;
    positive("restart_backoff.initial", policy.initial)?;
    positive("restart_backoff.max", policy.max)?;
    if policy.max < policy.initial {
        return Err(invalid(
            "restart_backoff.max",
            format!("{} ms", policy.max.as_millis()),
            "must be at least restart_backoff.initial",
        ));
    }
    Ok(())
}

/// One service: its worker config in its mode, at least one worker, sane recycle values.
fn service_settings(service: &PoolService) -> Result<ServiceSettings, ConfigError> {
    let mode = if service.threaded {
        Mode::Threaded
    } else {
        Mode::Inline
    };
    let config = &service.config;
    worker_settings(config, mode)?;
    if service.count == 0 {
        return Err(invalid(
            "count",
            0,
            "a pool service needs at least one worker",
        ));
    }
    if service.recycle_after_requests == Some(0) {
        return Err(invalid("recycle_after_requests", 0, "must be at least 1"));
    }
    if let Some(age) = service.recycle_after {
        positive("recycle_after", age)?;
    }
    let endpoints = if service.fan_out {
        parse_endpoints(&config.broker_address)?
    } else {
        vec![config.broker_address.clone()]
    };
    // Two liveness windows: the broker answers a READY at its next heartbeat at the latest,
    // so a replacement not heard by then is not coming through.
    let patience = (config.heartbeat * config.liveness).saturating_mul(2);
    Ok(ServiceSettings {
        mode,
        endpoints,
        recycle: RecyclePolicy {
            after_requests: service.recycle_after_requests,
            after: service.recycle_after,
            patience,
        },
    })
}

/// Workers of one service: `count` per endpoint.
fn workers_of(service: &PoolService, settings: &ServiceSettings) -> usize {
    service.count.saturating_mul(settings.endpoints.len())
}

/// Checks that no context the caller supplied needs more sockets than it has, and returns
/// how many workers run on contexts the pool makes itself. A context given in a service's
/// `WorkerConfig` is counted for that service alone: two context handles cannot be compared,
/// so the pool cannot tell whether services share one.
fn check_context_sockets(
    services: &[PoolService],
    checked: &[ServiceSettings],
    shared_context: bool,
) -> Result<usize, ConfigError> {
    let (mut shared, mut own) = ((0usize, 0usize), 0usize);
    for (service, settings) in services.iter().zip(checked) {
        let workers = workers_of(service, settings);
        // A hand-over briefly holds two workers for one slot of the service.
        let recycling = service.recycle_after_requests.is_some() || service.recycle_after.is_some();
        let peak = (workers, usize::from(recycling));
        if service.config.context.is_some() {
            check_sockets(peak)?;
        } else if shared_context {
            shared = (shared.0.saturating_add(peak.0), shared.1 + peak.1);
        } else {
            own = own.saturating_add(workers);
        }
    }
    check_sockets(shared)?;
    Ok(own)
}

/// `workers` on one context the pool cannot grow, and the `hand_overs` that may each hold
/// one more worker at a time (one per recycling service).
fn check_sockets((workers, hand_overs): (usize, usize)) -> Result<(), ConfigError> {
    let sockets = workers
        .saturating_add(hand_overs)
        .saturating_mul(SOCKETS_PER_WORKER);
    if sockets <= MAX_SOCKETS_PER_CONTEXT {
        return Ok(());
    }
    Err(invalid(
        "count",
        format!("{workers} workers on one given zmq context ({sockets} sockets)"),
        "a zmq context allows 1023 sockets (ZMQ_MAX_SOCKETS) and each worker takes 3, \
         one more worker per recycling service: leave the context to the pool, which makes as many as it needs, or run fewer workers",
    ))
}

/// The contexts for `registrations` of an async worker: the `given` one if it has room for
/// them all, else as many of its own as [`WORKERS_PER_OWN_CONTEXT`] asks for.
///
/// # Errors
///
/// A `concurrency` error naming the limit when a given context cannot hold them.
#[cfg(feature = "tokio")]
pub(crate) fn contexts_for(
    registrations: usize,
    given: Option<zmq::Context>,
) -> Result<Vec<zmq::Context>, ConfigError> {
    if let Some(context) = given {
        check_sockets((registrations, 0)).map_err(|_| {
            invalid(
                "concurrency",
                format!("{registrations} on one given zmq context"),
                "a zmq context allows 1023 sockets (ZMQ_MAX_SOCKETS) and each registration takes 3: \
                 leave the context to the worker, which makes as many as it needs",
            )
        })?;
        return Ok(vec![context]);
    }
    let count = registrations.div_ceil(WORKERS_PER_OWN_CONTEXT).max(1);
    Ok((0..count).map(|_| zmq::Context::new()).collect())
}

/// The descriptors the workers and the pool's contexts will hold must fit under the limit.
fn check_open_files(
    workers: usize,
    contexts: usize,
    open_files: OpenFiles,
) -> Result<(), ConfigError> {
    let need = (workers as u64)
        .saturating_mul(FDS_PER_WORKER)
        .saturating_add((contexts as u64).saturating_mul(FDS_PER_CONTEXT));
    let OpenFiles { limit, open } = open_files;
    if open.saturating_add(need) <= limit {
        return Ok(());
    }
    Err(invalid(
        "count",
        format!("{workers} workers (about {need} file descriptors, {open} open, limit {limit})"),
        "exceeds the process's open-file limit (RLIMIT_NOFILE, ulimit -n): raise it or run fewer workers",
    ))
}
