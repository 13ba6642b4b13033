//! One pool slot: a place in the pool held by a succession of workers, the counters they
//! leave, and its way to the service's [`Supervisor`]. Its thread is `slot_thread.rs`; a
//! recycle's hand-over is `hand_over.rs`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::config::WorkerConfig;
use crate::drivers::panics;
use crate::drivers::sync::{Worker, WorkerStats};
use crate::error::Error;
use crate::events::{Event, EventSink, WorkerId};
use crate::shutdown::ShutdownHandle;
use crate::stats::StatsCell;

use super::service::{BoxedAction, Factory};
use super::supervisor::{SlotAction, Supervisor};

/// A worker of a pool slot.
pub(super) type PoolWorker = Worker<BoxedAction>;

/// One place in the pool, held by a succession of workers (restarts, recycles).
pub(super) struct Slot {
    /// Its number in its service's supervisor.
    pub(super) index: usize,
    /// The config of its workers: broker endpoint, context, drain handle and events set.
    pub(super) config: WorkerConfig,
    pub(super) threaded: bool,
    pub(super) factory: Factory,
    pub(super) supervisor: Arc<Mutex<Supervisor>>,
    pub(super) shutdown: ShutdownHandle,
    pub(super) events: Option<EventSink>,
    pub(super) held: Mutex<Held>,
}

/// The counters of the workers that held a slot.
#[derive(Default)]
pub(super) struct Held {
    current: Option<(WorkerId, Arc<StatsCell>)>,
    /// Counters of the workers that held the slot before.
    retired: WorkerStats,
}

/// What ended a slot's worker, or kept one from starting.
#[derive(Debug, thiserror::Error)]
pub(super) enum SlotError {
    /// The worker (or building it) failed.
    #[error(transparent)]
    Worker(#[from] Error),
    /// The factory, the worker's loop or the hand-over panicked, with this message.
    #[error("{0}")]
    Panicked(String),
}

impl SlotError {
    /// A result of [`panics::catch`] around a call that returns a worker's `Result`.
    pub(super) fn flatten<T>(caught: Result<Result<T, Error>, String>) -> Result<T, SlotError> {
        match caught {
            Ok(result) => Ok(result?),
            Err(message) => Err(SlotError::Panicked(message)),
        }
    }
}

impl Slot {
    /// Runs `input` on the service's supervisor with the time now, then sends the events it
    /// queued.
    pub(super) fn supervise<R>(
        &self,
        input: impl FnOnce(&mut Supervisor, Instant, usize) -> R,
    ) -> R {
        let mut supervisor = lock(&self.supervisor);
        let result = input(&mut supervisor, Instant::now(), self.index);
        while let Some(event) = supervisor.poll_event() {
            self.emit(event);
        }
        result
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = &self.events {
            sink.emit(event);
        }
    }

    /// The slot's next action once its due deadlines have run.
    pub(super) fn next_action(&self) -> Option<SlotAction> {
        self.supervise(|s, now, i| {
            s.handle_timeout(now, i);
            s.poll_action(i)
        })
    }

    /// A worker with a fresh action; a panicking factory is an error like any other.
    pub(super) fn build(&self) -> Result<PoolWorker, SlotError> {
        let config = self.config.clone().shutdown_handle(self.shutdown.child());
        let build = || {
            let action = (self.factory)();
            if self.threaded {
                Worker::threaded(config, action)
            } else {
                Worker::new(config, action)
            }
        };
        SlotError::flatten(panics::catch(build))
    }

    /// Makes `worker` the slot's current one; the previous one's final counters are kept.
    pub(super) fn install(&self, worker: &PoolWorker) {
        let mut held = lock(&self.held);
        if let Some((_, old)) = held.current.take() {
            held.retired.add(&old.snapshot());
        }
        held.current = Some((worker.id().clone(), worker.stats_cell()));
    }

    /// Tells the supervisor that the slot's `worker` has just answered a request.
    pub(super) fn report_served(&self, worker: &PoolWorker) {
        let requests = worker.stats().requests;
        self.supervise(|s, now, i| s.handle_served(now, i, requests));
    }

    /// Keeps the final counters of a worker that served without holding the slot (a
    /// replacement the supervisor dropped).
    pub(super) fn keep_counters(&self, stats: &WorkerStats) {
        lock(&self.held).retired.add(stats);
    }

    /// The worker holding the slot (none before the first start) and the counters of every
    /// worker that held it.
    pub(super) fn snapshot(&self) -> (Option<WorkerId>, WorkerStats) {
        let held = lock(&self.held);
        let mut stats = held.retired;
        if let Some((_, cell)) = &held.current {
            stats.add(&cell.snapshot());
        }
        (held.current.as_ref().map(|(id, _)| id.clone()), stats)
    }

    /// Restarts and recycles of the slot so far.
    pub(super) fn counts(&self) -> (u64, u64) {
        let supervisor = lock(&self.supervisor);
        (
            supervisor.restarts(self.index),
            supervisor.recycles(self.index),
        )
    }
}

/// The mutex's value, also after a thread panicked holding it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_error_keeps_the_worker_error_and_shows_a_panic_as_its_message() {
        assert_eq!(SlotError::flatten(Ok(Ok::<u8, Error>(3))).ok(), Some(3));
        let failed = SlotError::flatten::<u8>(Ok(Err(Error::Io {
            operation: "spawn",
            source: std::io::Error::other("no threads"),
        })));
        match failed {
            Err(error @ SlotError::Worker(Error::Io { operation, .. })) => {
                assert_eq!(operation, "spawn");
                assert_eq!(error.to_string(), "spawn failed: no threads");
            }
            other => panic!("expected a worker error, got {other:?}"),
        }
        let panicked = SlotError::flatten::<u8>(Err("factory broke".to_string()));
        match panicked {
            Err(error @ SlotError::Panicked(_)) => assert_eq!(error.to_string(), "factory broke"),
            other => panic!("expected a panic, got {other:?}"),
        }
    }
}
