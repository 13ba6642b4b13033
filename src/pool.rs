//! Many workers in one process: several services, N workers each, supervised.
//!
//! Each worker runs on a thread of its own with its own DEALER socket; all share one zmq
//! context. A worker whose thread dies (a fatal error, a panic outside the action, a panicking
//! action factory) is rebuilt with backoff, at most `max_restarts` times within
//! `restart_window`. Panics inside the action never get that far: the worker answers the
//! request with the panic reply and goes on (see [`WorkerConfig::panic_reply`]).
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

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::action::WorkerAction;
use crate::config::WorkerConfig;
use crate::error::Error;
use crate::events::{Event, EventSink, Events, WorkerId};
use crate::session::backoff::Backoff;
use crate::settings::{worker_settings, Mode};
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::stats::StatsCell;
use crate::worker::{Received, Worker, WorkerStats};

type BoxedAction = Box<dyn WorkerAction + Send>;
type Factory = Arc<dyn Fn() -> BoxedAction + Send + Sync>;

/// One service of a pool: its config, how many workers, and how to make their actions.
#[derive(Clone)]
pub struct PoolService {
    config: WorkerConfig,
    count: usize,
    factory: Factory,
    threaded: bool,
    fan_out: bool,
    recycle_after_requests: Option<u64>,
    recycle_after: Option<Duration>,
}

impl PoolService {
    /// `count` workers for `config`, each with an action made by `factory`.
    pub fn new<A, F>(config: WorkerConfig, count: usize, factory: F) -> PoolService
    where
        A: WorkerAction + Send + 'static,
        F: Fn() -> A + Send + Sync + 'static,
    {
        PoolService {
            config,
            count,
            factory: Arc::new(move || Box::new(factory()) as BoxedAction),
            threaded: false,
            fan_out: false,
            recycle_after_requests: None,
            recycle_after: None,
        }
    }

    /// Runs each action on a thread of its own ([`Worker::threaded`]): for requests longer
    /// than `heartbeat × liveness`, and required for `request_timeout`. Defaults to `false`.
    pub fn threaded(mut self, threaded: bool) -> Self {
        self.threaded = threaded;
        self
    }

    /// Runs `count` workers on **each** address of the broker list, so one process serves
    /// several brokers at once (each worker still talks to one broker over one socket).
    /// Defaults to `false`: the workers rotate through the list on reconnect.
    pub fn fan_out(mut self, fan_out: bool) -> Self {
        self.fan_out = fan_out;
        self
    }

    /// Replaces a worker (new action, new socket) after it answered this many requests, for
    /// actions that leak. The replacement registers before the old one leaves, one worker
    /// of the service at a time. Defaults to never.
    pub fn recycle_after_requests(mut self, requests: u64) -> Self {
        self.recycle_after_requests = Some(requests);
        self
    }

    /// Replaces a worker after it has lived this long (checked after each request).
    /// Defaults to never.
    pub fn recycle_after(mut self, age: Duration) -> Self {
        self.recycle_after = Some(age);
        self
    }
}

impl fmt::Debug for PoolService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolService")
            .field("config", &self.config)
            .field("count", &self.count)
            .field("threaded", &self.threaded)
            .field("fan_out", &self.fan_out)
            .finish_non_exhaustive()
    }
}

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

    /// The zmq context every worker shares. Defaults to a new one.
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
    /// up (reported as [`Event::RestartLimitReached`]). Defaults to 5.
    pub fn max_restarts(mut self, max_restarts: u32) -> Self {
        self.max_restarts = Some(max_restarts);
        self
    }

    /// The window in which restarts are counted. Defaults to 60 s.
    pub fn restart_window(mut self, window: Duration) -> Self {
        self.restart_window = Some(window);
        self
    }

    /// First and largest delay before restarting a dead worker (doubling, with jitter).
    /// Defaults to 100 ms and 5 s.
    pub fn restart_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.restart_backoff = Some((initial, max));
        self
    }

    /// Validates every service and starts every worker.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for the first invalid service config, or a count of zero.
    pub fn start(self) -> Result<WorkerPool, Error> {
        let context = self.context.unwrap_or_default();
        let (initial, max) = self
            .restart_backoff
            .unwrap_or((Duration::from_millis(100), Duration::from_secs(5)));
        let policy = RestartPolicy {
            max_restarts: self.max_restarts.unwrap_or(5),
            window: self.restart_window.unwrap_or(Duration::from_secs(60)),
            initial,
            max,
        };
        let shutdown = ShutdownHandle::new();
        let drain = DrainHandle::new();
        let specs = self.services.into_iter().map(|service| {
            let mut config = service.config.clone().drain_handle(drain.clone());
            if config.context.is_none() {
                config = config.context(context.clone());
            }
            if self.events.is_some() {
                config.events = self.events.clone();
            }
            PoolService { config, ..service }
        });
        let mut slots = Vec::new();
        for service in specs {
            slots.extend(slots_for(service, &shutdown, &policy, &self.events)?);
        }
        let threads = slots
            .iter()
            .map(|slot| {
                let slot = Arc::clone(slot);
                thread::Builder::new()
                    .name(format!("mdp-{}", slot.service.config.service_name))
                    .spawn(move || run_slot(&slot))
                    .map_err(|_| Error::Zmq {
                        operation: "spawn worker thread",
                        source: zmq::Error::ENOMEM,
                    })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        info!(workers = slots.len(), "pool started");
        Ok(WorkerPool {
            slots,
            threads,
            shutdown,
            drain,
            _context: context,
        })
    }
}

fn slots_for(
    service: PoolService,
    shutdown: &ShutdownHandle,
    policy: &RestartPolicy,
    events: &Option<EventSink>,
) -> Result<Vec<Arc<Slot>>, Error> {
    let mode = if service.threaded {
        Mode::Threaded
    } else {
        Mode::Inline
    };
    worker_settings(&service.config, mode)?;
    if service.count == 0 {
        return Err(crate::ConfigError::InvalidValue {
            field: "count",
            value: "0".into(),
            reason: "a pool service needs at least one worker",
        }
        .into());
    }
    let configs = if service.fan_out {
        crate::checks::parse_endpoints(&service.config.broker_address)?
            .into_iter()
            .map(|endpoint| WorkerConfig {
                broker_address: endpoint,
                ..service.config.clone()
            })
            .collect()
    } else {
        vec![service.config.clone()]
    };
    let recycling = Arc::new(AtomicBool::new(false));
    let mut slots = Vec::new();
    for config in configs {
        for _ in 0..service.count {
            slots.push(Arc::new(Slot {
                service: PoolService {
                    config: config.clone(),
                    ..service.clone()
                },
                shutdown: shutdown.child(),
                policy: policy.clone(),
                events: events.clone(),
                recycling: Arc::clone(&recycling),
                state: Mutex::new(SlotState::default()),
                restarts: AtomicU64::new(0),
                recycles: AtomicU64::new(0),
            }));
        }
    }
    Ok(slots)
}

#[derive(Debug, Clone)]
struct RestartPolicy {
    max_restarts: u32,
    window: Duration,
    initial: Duration,
    max: Duration,
}

/// One place in the pool, held by a succession of workers (restarts, recycles).
struct Slot {
    service: PoolService,
    shutdown: ShutdownHandle,
    policy: RestartPolicy,
    events: Option<EventSink>,
    /// Shared by the slots of one service: one recycle at a time.
    recycling: Arc<AtomicBool>,
    state: Mutex<SlotState>,
    restarts: AtomicU64,
    recycles: AtomicU64,
}

#[derive(Default)]
struct SlotState {
    current: Option<(WorkerId, Arc<StatsCell>)>,
    /// Counters of the workers that held this slot before.
    retired: WorkerStats,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = &self.events {
            sink.emit(event);
        }
    }

    fn build(&self) -> Result<Worker<BoxedAction>, Error> {
        let config = self
            .service
            .config
            .clone()
            .shutdown_handle(self.shutdown.child());
        let action = (self.service.factory)();
        if self.service.threaded {
            Worker::threaded(config, action)
        } else {
            Worker::new(config, action)
        }
    }

    /// Makes `worker` the slot's current one; the previous one's final counters are kept.
    fn install(&self, worker: &Worker<BoxedAction>) {
        let mut state = self.state();
        if let Some((_, old)) = state.current.take() {
            state.retired.add(&old.snapshot());
        }
        state.current = Some((worker.id().clone(), worker.stats_cell()));
    }

    fn snapshot(&self) -> (Option<WorkerId>, WorkerStats) {
        let state = self.state();
        let mut stats = state.retired;
        if let Some((_, cell)) = &state.current {
            stats.add(&cell.snapshot());
        }
        (state.current.as_ref().map(|(id, _)| id.clone()), stats)
    }

    fn due_for_recycle(&self, worker: &Worker<BoxedAction>, born: Instant) -> bool {
        let by_count = self
            .service
            .recycle_after_requests
            .is_some_and(|n| worker.stats().requests >= n);
        let by_age = self
            .service
            .recycle_after
            .is_some_and(|age| born.elapsed() >= age);
        by_count || by_age
    }
}

/// How a worker's run ended.
enum Exit {
    Shutdown,
    Died(String),
}

/// The supervisor loop of one slot: build a worker, run it, rebuild it if it dies.
fn run_slot(slot: &Slot) {
    let mut backoff = Backoff::new(
        slot.policy.initial,
        slot.policy.max,
        crate::settings::seed(),
    );
    let mut recent: Vec<Instant> = Vec::new();
    while !slot.shutdown.is_shutdown() {
        let exit = catch_unwind(AssertUnwindSafe(|| drive(slot)))
            .unwrap_or_else(|panic| Exit::Died(panic_text(panic.as_ref())));
        let Exit::Died(error) = exit else { break };
        let now = Instant::now();
        recent.retain(|at| now.duration_since(*at) < slot.policy.window);
        recent.push(now);
        let restarts = recent.len() as u32;
        let worker = slot.snapshot().0.unwrap_or_else(|| WorkerId::next(""));
        if restarts > slot.policy.max_restarts {
            error!(%worker, restarts, %error, "worker died too often, giving up");
            slot.emit(Event::RestartLimitReached { worker, restarts });
            return;
        }
        slot.restarts.fetch_add(1, Ordering::Relaxed);
        let delay = backoff.next_delay();
        warn!(%worker, restarts, %error, ?delay, "worker died, restarting");
        slot.emit(Event::WorkerRestarted {
            worker,
            restarts,
            error,
        });
        slot.shutdown.wait_timeout(delay);
    }
}

/// Builds a worker and serves until shutdown, recycling it when due.
fn drive(slot: &Slot) -> Exit {
    let mut worker = match slot.build() {
        Ok(worker) => worker,
        Err(e) => return Exit::Died(e.to_string()),
    };
    slot.install(&worker);
    let mut born = Instant::now();
    loop {
        match worker.receive() {
            Ok(Received::ShutDown) => return Exit::Shutdown,
            Err(e) => return Exit::Died(e.to_string()),
            Ok(Received::Handled) => {}
        }
        if slot.due_for_recycle(&worker, born) {
            if let Some(next) = recycle(slot, &mut worker) {
                worker = next;
                born = Instant::now();
            }
        }
    }
}

/// Replaces `old` with a fresh worker without a gap: the fresh one connects and sends READY,
/// both serve until the broker has sent something to the fresh one (proof that its READY
/// arrived: a READY on a new TCP connection can be overtaken by the old socket's
/// DISCONNECT), then `old` answers what is already waiting for it, sends DISCONNECT and
/// closes. `None` if another recycle of the service is under way or the fresh worker is not
/// heard from within `2 × heartbeat × liveness` (tried again after the next request).
fn recycle(slot: &Slot, old: &mut Worker<BoxedAction>) -> Option<Worker<BoxedAction>> {
    if slot
        .recycling
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return None;
    }
    let result = slot.build().and_then(|next| hand_over(slot, old, next));
    slot.recycling.store(false, Ordering::Release);
    match result {
        Ok(Some(next)) => {
            slot.install(&next);
            slot.recycles.fetch_add(1, Ordering::Relaxed);
            info!(old = %old.id(), new = %next.id(), requests = old.stats().requests, "worker recycled");
            slot.emit(Event::Recycled {
                old: old.id().clone(),
                new: next.id().clone(),
            });
            Some(next)
        }
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "cannot start the replacement worker, keeping the old one");
            None
        }
    }
}

fn hand_over(
    slot: &Slot,
    old: &mut Worker<BoxedAction>,
    mut next: Worker<BoxedAction>,
) -> Result<Option<Worker<BoxedAction>>, Error> {
    let config = &slot.service.config;
    let patience = config.heartbeat * config.liveness * 2;
    let give_up = Instant::now() + patience;
    next.connect()?;
    while !next.broker_heard() {
        if Instant::now() >= give_up || slot.shutdown.is_shutdown() {
            warn!(new = %next.id(), ?patience, "replacement not acknowledged by the broker, recycle postponed");
            return Ok(None); // dropping `next` sends its DISCONNECT
        }
        next.receive_timeout(Duration::from_millis(5))?;
        old.receive_timeout(Duration::ZERO)?;
    }
    old.receive_timeout(Duration::ZERO)?;
    old.shutdown();
    let _ = old.receive();
    Ok(Some(next))
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Several services, N supervised workers each, one zmq context. Stop it with
/// [`stop`](Self::stop), or with its [`ShutdownHandle`] and then [`join`](Self::join).
pub struct WorkerPool {
    slots: Vec<Arc<Slot>>,
    threads: Vec<JoinHandle<()>>,
    shutdown: ShutdownHandle,
    drain: DrainHandle,
    _context: zmq::Context,
}

/// What a pool did, from [`WorkerPool::stop`], [`WorkerPool::join`] or
/// [`WorkerPool::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSummary {
    /// Per slot: the worker holding it (none before the first start) and the counters of
    /// every worker that held it.
    pub workers: Vec<(Option<WorkerId>, WorkerStats)>,
    /// All counters added up.
    pub total: WorkerStats,
    /// Workers rebuilt after dying.
    pub restarts: u64,
    /// Workers replaced by recycling.
    pub recycles: u64,
}

impl WorkerPool {
    /// A builder with no service yet.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
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
        let mut summary = PoolSummary::default();
        for slot in &self.slots {
            let (id, stats) = slot.snapshot();
            summary.total.add(&stats);
            summary.workers.push((id, stats));
            summary.restarts += slot.restarts.load(Ordering::Relaxed);
            summary.recycles += slot.recycles.load(Ordering::Relaxed);
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
