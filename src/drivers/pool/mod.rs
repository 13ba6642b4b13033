//! Many workers in one process: several services, N workers each, supervised.
//!
//! Each worker runs on a thread of its own with its own DEALER socket. A worker whose thread
//! dies (a fatal error, a panic outside the action, a panicking action factory) is rebuilt
//! with backoff, at most `max_restarts` times within `restart_window`. Panics inside the
//! action never get that far: the worker answers the request with the panic reply and goes
//! on (see [`WorkerConfig::panic_reply`]). These decisions, and recycling, are taken by a
//! pure supervisor with time as an input (`supervisor.rs`); the slot threads only drive it.
//!
//! **Scale.** Each worker holds 3 zmq sockets (its DEALER and the two of its socket
//! monitor) and 9 file descriptors. A zmq context allows 1023 sockets
//! (`ZMQ_MAX_SOCKETS`), so a pool that makes its own contexts puts at most 300 workers on
//! each; a context given by the caller cannot grow, and [`PoolBuilder::start`] refuses more
//! workers than fit on it. `start` also refuses a pool whose file descriptors would not fit
//! under the process's open-file limit, when it can read it (`/proc/self/limits`).
//!
//! ```no_run
//! use majordomo_worker::pool::{PoolService, WorkerPool};
//! use majordomo_worker::{Message, WorkerConfig};
//!
//! let echo = WorkerConfig::new("tcp://127.0.0.1:5555", "echo");
//! let pool = WorkerPool::builder()
//!     .service(PoolService::new(echo, 4, || |request: Vec<Message>| request))
//!     .start()?;
//! let _signals = pool.shutdown_handle().shutdown_on_signals()?;
//! let summary = pool.join(); // until SIGINT/SIGTERM: every request in hand is answered
//! println!("{} requests", summary.total.requests);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod hand_over;
pub(crate) mod plan;
mod service;
mod slot;
mod slot_thread;
pub(crate) mod supervisor;
#[cfg(test)]
mod tests;
mod timer;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{error, info};

use crate::config::settings::Mode;
use crate::config::WorkerConfig;
use crate::error::Error;
use crate::events::{seed, EventSink, Events, WorkerId};
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::stats::Summary;
use plan::{open_files, pool_settings, ServiceSettings};
pub use service::PoolService;
use slot::{Held, Slot};
use slot_thread::run_slot;
use supervisor::{RestartPolicy, Supervisor};

/// Builds a [`WorkerPool`].
#[derive(Default)]
pub struct PoolBuilder {
    services: Vec<PoolService>,
    context: Option<zmq::Context>,
    events: Option<EventSink>,
    max_restarts: Option<u32>,
    restart_window: Option<Duration>,
    restart_backoff: Option<(Duration, Duration)>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("services", &self.services)
            .field("shared_context", &self.context.is_some())
            .field("events", &self.events.is_some())
            .field("max_restarts", &self.max_restarts)
            .field("restart_window", &self.restart_window)
            .field("restart_backoff", &self.restart_backoff)
            .finish()
    }
}

impl PoolBuilder {
    /// Adds a service.
    pub fn service(mut self, service: PoolService) -> Self {
        self.services.push(service);
        self
    }

    /// The zmq context every worker without one of its own shares: needed for `inproc://`
    /// brokers. A context holds at most 1023 sockets (`ZMQ_MAX_SOCKETS`) and each worker
    /// takes 3, so at most 341 workers fit on it (one fewer per service that recycles).
    /// Defaults to contexts the pool makes itself, 300 workers on each.
    pub fn context(mut self, context: zmq::Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Sends every worker's events, and the pool's own, to `events`. Defaults to none.
    pub fn events(mut self, events: &Events) -> Self {
        self.events = Some(events.sink());
        self
    }

    /// How many times a worker may be restarted within the restart window before it is given
    /// up (reported as [`Event::RestartLimitReached`](crate::Event::RestartLimitReached));
    /// 0 never restarts. Defaults to 5.
    pub fn max_restarts(mut self, max_restarts: u32) -> Self {
        self.max_restarts = Some(max_restarts);
        self
    }

    /// The window in which restarts are counted; a worker that lives this long also resets
    /// the restart backoff. At most [`MAX_DURATION`](crate::config::MAX_DURATION).
    /// Defaults to 60 s.
    pub fn restart_window(mut self, window: Duration) -> Self {
        self.restart_window = Some(window);
        self
    }

    /// First and largest delay before restarting a dead worker (doubling, with jitter);
    /// both positive, `max` at least `initial`. Defaults to 100 ms and 5 s.
    pub fn restart_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.restart_backoff = Some((initial, max));
        self
    }

    /// Validates every service and starts every worker.
    ///
    /// Workers that bring no context (neither [`context`](Self::context) nor
    /// [`WorkerConfig::context`]) are spread over contexts the pool makes, at most 300 per
    /// context, so a pool of thousands stays under each context's 1023 sockets.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for the first invalid value: a service config (checked for its mode:
    /// a `request_timeout` needs [`PoolService::threaded`]), a count of zero, a restart or
    /// recycle value out of range, more workers on a given context than its 1023 sockets
    /// hold (3 per worker), or more file descriptors than the open-file limit allows.
    /// [`Error::Io`] if a thread cannot be started.
    pub fn start(self) -> Result<WorkerPool, Error> {
        let (initial, max) = self
            .restart_backoff
            .unwrap_or((Duration::from_millis(100), Duration::from_secs(5)));
        let restart = RestartPolicy {
            max_restarts: self.max_restarts.unwrap_or(5),
            window: self.restart_window.unwrap_or(Duration::from_secs(60)),
            initial,
            max,
        };
        let settings = pool_settings(
            &self.services,
            restart,
            self.context.is_some(),
            open_files(),
        )?;
        let mut contexts = Contexts::new(self.context, settings.own_contexts);
        let shutdown = ShutdownHandle::new();
        let drain = DrainHandle::new();
        let mut slots = Vec::new();
        for (service, checked) in self.services.into_iter().zip(settings.services) {
            let plan = SlotPlan {
                shutdown: &shutdown,
                drain: &drain,
                events: &self.events,
                restart: &settings.restart,
            };
            slots.extend(plan.slots(service, checked, &mut contexts));
        }
        let mut pool = WorkerPool {
            slots,
            threads: Vec::new(),
            shutdown,
            drain,
        };
        pool.spawn_threads()?;
        info!(
            workers = pool.slots.len(),
            contexts = settings.own_contexts,
            "pool started"
        );
        Ok(pool)
    }
}

/// The contexts the pool's workers use: the caller's, or its own (round robin).
struct Contexts {
    shared: Option<zmq::Context>,
    own: Vec<zmq::Context>,
    next: usize,
}

impl Contexts {
    fn new(shared: Option<zmq::Context>, own: usize) -> Contexts {
        Contexts {
            shared,
            own: (0..own).map(|_| zmq::Context::new()).collect(),
            next: 0,
        }
    }

    /// The context for the next worker that brings none.
    fn next(&mut self) -> zmq::Context {
        if let Some(shared) = &self.shared {
            return shared.clone();
        }
        // `own` holds enough contexts for every worker that brings none (`pool_settings`);
        // round robin keeps them equally full, under `WORKERS_PER_OWN_CONTEXT` each.
        let index = self.next % self.own.len().max(1);
        self.next += 1;
        match self.own.get(index) {
            Some(context) => context.clone(),
            None => {
                self.own.push(zmq::Context::new());
                self.own[self.own.len() - 1].clone()
            }
        }
    }
}

/// What every slot of a pool shares.
struct SlotPlan<'a> {
    shutdown: &'a ShutdownHandle,
    drain: &'a DrainHandle,
    events: &'a Option<EventSink>,
    restart: &'a RestartPolicy,
}

impl SlotPlan<'_> {
    /// The slots of one service, `count` per endpoint, under one supervisor.
    fn slots(
        &self,
        service: PoolService,
        checked: ServiceSettings,
        contexts: &mut Contexts,
    ) -> Vec<Arc<Slot>> {
        let mut base = service.config.clone().drain_handle(self.drain.clone());
        if self.events.is_some() {
            base.events = self.events.clone();
        }
        let configs: Vec<WorkerConfig> = checked
            .endpoints
            .iter()
            .flat_map(|endpoint| (0..service.count).map(move |_| endpoint))
            .map(|endpoint| {
                let mut config = WorkerConfig {
                    broker_address: endpoint.clone(),
                    ..base.clone()
                };
                if config.context.is_none() {
                    config = config.context(contexts.next());
                }
                config
            })
            .collect();
        let ids = configs
            .iter()
            .map(|c| WorkerId::next(&c.service_name))
            .collect();
        let supervisor = Supervisor::new(self.restart.clone(), checked.recycle, ids, seed());
        let supervisor = Arc::new(Mutex::new(supervisor));
        let factory = service.factory;
        configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| {
                Arc::new(Slot {
                    index,
                    config,
                    threaded: checked.mode == Mode::Threaded,
                    factory: Arc::clone(&factory),
                    supervisor: Arc::clone(&supervisor),
                    shutdown: self.shutdown.child(),
                    events: self.events.clone(),
                    held: Mutex::new(Held::default()),
                })
            })
            .collect()
    }
}

/// Several services, N supervised workers each. Stop it with
/// [`stop`](Self::stop), or with its [`ShutdownHandle`] and then [`join`](Self::join).
/// Dropping it stops every worker and waits for them.
#[must_use = "dropping the WorkerPool stops all its workers at once (and waits for them)"]
pub struct WorkerPool {
    slots: Vec<Arc<Slot>>,
    threads: Vec<JoinHandle<()>>,
    shutdown: ShutdownHandle,
    drain: DrainHandle,
}

/// What a pool did, from [`WorkerPool::stop`], [`WorkerPool::join`] or
/// [`WorkerPool::stats`]: one entry per slot, the totals, restarts and recycles.
pub type PoolSummary = Summary;

impl WorkerPool {
    /// A builder with no service yet.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// One thread per slot. If one cannot be started, the pool is dropped: the threads
    /// already running stop and are joined.
    fn spawn_threads(&mut self) -> Result<(), Error> {
        for slot in &self.slots {
            let slot = Arc::clone(slot);
            let thread = thread::Builder::new()
                .name(format!("mdp-{}", slot.config.service_name))
                .spawn(move || run_slot(&slot))
                .map_err(Error::io("spawn pool thread"))?;
            self.threads.push(thread);
        }
        Ok(())
    }

    /// The handle that stops every worker gracefully (wire it to signals with
    /// [`ShutdownHandle::shutdown_on_signals`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Every worker finishes its request, sends DISCONNECT and waits.
    pub fn drain(&self) {
        self.drain.drain();
    }

    /// Every drained worker registers again.
    pub fn resume(&self) {
        self.drain.resume();
    }

    /// How many workers the pool runs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool runs no worker at all (never true for a started pool).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A cheap snapshot of every worker's counters.
    pub fn stats(&self) -> PoolSummary {
        let mut summary = Summary::default();
        for slot in &self.slots {
            let (id, stats) = slot.snapshot();
            summary.push(id, stats);
            let (restarts, recycles) = slot.counts();
            summary.restarts += restarts;
            summary.recycles += recycles;
        }
        summary
    }

    /// Stops every worker gracefully (each answers its request in hand and sends
    /// DISCONNECT), waits for their threads, and returns the summary.
    pub fn stop(self) -> PoolSummary {
        self.shutdown.shutdown();
        self.join()
    }

    /// Waits until the pool is shut down through its handle, then returns the summary.
    pub fn join(mut self) -> PoolSummary {
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                error!("a pool thread panicked outside its supervisor");
            }
        }
        self.stats()
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown.shutdown();
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.slots.len())
            .field("stopped", &self.shutdown.is_shutdown())
            .finish_non_exhaustive()
    }
}
