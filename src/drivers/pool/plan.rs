//! The pool's plan: each service checked through the settings gate in its mode, the pool's
//! own rules (counts, recycling, the restart policy), and the resources its workers will
//! hold: sockets per zmq context, the contexts to make, and file descriptors under the
//! process's open-file limit.

use std::fs;

use super::service::PoolService;
use super::supervisor::{RecyclePolicy, RestartPolicy};
use crate::checks::{invalid, parse_endpoints, positive, ConfigError};
use crate::config::settings::{worker_settings, Mode};

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
            heartbeat: config.heartbeat,
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

/// The process's open-file limit and the descriptors open now, from `/proc/self` (Linux);
/// `None` where that cannot be read or there is no limit.
pub(super) fn open_files() -> Option<OpenFiles> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let limit = parse_open_file_limit(&limits)?;
    let open = fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(OpenFiles { limit, open })
}

/// The soft "Max open files" limit of a `/proc/<pid>/limits` text.
fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.strip_prefix("Max open files")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Message, WorkerConfig};

    fn restart() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 5,
            window: Duration::from_secs(10),
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1600),
        }
    }

    fn echo() -> fn(Vec<Message>) -> Vec<Message> {
        |request| request
    }

    fn service(count: usize) -> PoolService {
        PoolService::new(
            WorkerConfig::new("tcp://127.0.0.1:5555", "echo"),
            count,
            echo,
        )
    }

    fn check(
        services: &[PoolService],
        shared: bool,
        files: Option<OpenFiles>,
    ) -> Result<usize, ConfigError> {
        pool_settings(services, restart(), shared, files).map(|s| s.own_contexts)
    }

    #[test]
    fn own_contexts_hold_at_most_three_hundred_workers_each() {
        assert_eq!(check(&[service(1)], false, None), Ok(1));
        assert_eq!(check(&[service(300)], false, None), Ok(1));
        assert_eq!(check(&[service(301)], false, None), Ok(2));
        assert_eq!(check(&[service(1500), service(500)], false, None), Ok(7));
        assert_eq!(check(&[service(341)], true, None), Ok(0), "none of its own");
    }

    #[test]
    fn a_given_context_takes_at_most_341_workers_one_fewer_per_recycling_service() {
        assert!(check(&[service(341)], true, None).is_ok());
        let err = check(&[service(300), service(42)], true, None).unwrap_err();
        let ConfigError::InvalidValue {
            field,
            value,
            reason,
        } = err
        else {
            panic!("expected InvalidValue");
        };
        assert_eq!(
            (field, value.as_str()),
            (
                "count",
                "342 workers on one given zmq context (1026 sockets)"
            )
        );
        assert!(reason.contains("ZMQ_MAX_SOCKETS"), "{reason}");
        assert!(check(&[service(341).recycle_after_requests(10)], true, None).is_err());
        let own = WorkerConfig::new("tcp://127.0.0.1:5555", "echo").context(zmq::Context::new());
        let err = check(&[PoolService::new(own, 400, echo)], false, None).unwrap_err();
        assert!(err.to_string().contains("400 workers"), "{err}");
    }

    #[test]
    fn workers_beyond_the_open_file_limit_are_refused() {
        let files = |limit, open| Some(OpenFiles { limit, open });
        // 100 workers x 9 + 1 context x 8 = 908 descriptors.
        assert!(check(&[service(100)], false, files(958, 50)).is_ok());
        let err = check(&[service(100)], false, files(957, 50)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "count = 100 workers (about 908 file descriptors, 50 open, limit 957) is invalid: \
             exceeds the process's open-file limit (RLIMIT_NOFILE, ulimit -n): raise it or run fewer workers"
        );
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63304                63304                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
    }
}
