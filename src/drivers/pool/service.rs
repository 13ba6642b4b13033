//! One service of a pool, as the caller describes it: its config, its count, its action
//! factory and its recycling. What the pool checks and plans from it is `plan.rs`'s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::action::WorkerAction;
use crate::config::WorkerConfig;

/// An action of a pool worker, boxed so that one pool holds services of different actions.
pub(super) type BoxedAction = Box<dyn WorkerAction + Send>;
/// Makes the action of each new worker of a service.
pub(super) type Factory = Arc<dyn Fn() -> BoxedAction + Send + Sync>;

/// One service of a pool: its config, how many workers, and how to make their actions.
#[derive(Clone)]
pub struct PoolService {
    pub(crate) config: WorkerConfig,
    pub(crate) count: usize,
    pub(super) factory: Factory,
    pub(crate) threaded: bool,
    pub(crate) fan_out: bool,
    pub(crate) recycle_after_requests: Option<u64>,
    pub(crate) recycle_after: Option<Duration>,
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

    /// Runs each action on a thread of its own ([`Worker::threaded`](crate::Worker::threaded)): for requests longer
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
    /// actions that leak; at least 1. The replacement registers before the old one leaves,
    /// one worker of the service at a time; if the broker has not answered it within
    /// `2 × heartbeat × liveness`, the old one stays and the recycle is tried again after as
    /// long. Defaults to never.
    pub fn recycle_after_requests(mut self, requests: u64) -> Self {
        self.recycle_after_requests = Some(requests);
        self
    }

    /// Replaces a worker after it has lived this long (checked after each request), as
    /// [`recycle_after_requests`](Self::recycle_after_requests) does; positive and at most
    /// [`MAX_DURATION`](crate::config::MAX_DURATION). Defaults to never.
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
