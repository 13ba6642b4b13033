//! The async worker: `concurrency` registrations of one service, each a session with its own
//! DEALER, all driven by tokio tasks on the caller's runtime: no thread per registration or
//! per request, and no blocking call on a runtime thread.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use majordomo_worker::{AsyncWorker, Message, WorkerConfig};
//!
//! let config = WorkerConfig::new("tcp://127.0.0.1:5555", "echo").concurrency(100);
//! let worker = AsyncWorker::new(config, |request: Vec<Message>| async move { request })?;
//! let summary = worker.run_until(tokio::signal::ctrl_c()).await?;
//! println!("{} requests", summary.total.requests);
//! # Ok(())
//! # }
//! ```

mod registration;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};
use zmq::Message;

use crate::config::settings::{worker_settings, Mode, WorkerSettings};
use crate::config::WorkerConfig;
use crate::drivers::pool::plan::contexts_for;
use crate::drivers::request_timer::RequestTimer;
use crate::error::Error;
use crate::events::{Identity, WorkerId};
use crate::io::wake::Waker;
use crate::session::Session;
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::stats::{StatsCell, Summary, WorkerStats};
use registration::{Registration, Shared};

/// A boxed future of reply frames, as [`AsyncAction::call`] returns it.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Vec<Message>> + Send + 'static>>;

/// What an [`AsyncWorker`] does with each request: request frames in, a future of reply
/// frames out. Closures `Fn(Vec<Message>) -> impl Future<Output = Vec<Message>>` implement it;
/// a stateful service implements it on a struct and keeps its state behind `&self` (an
/// `Arc`, a pool, a lock). The future runs in its registration's task, so it may await
/// freely while the registration keeps heartbeating (registrations run in parallel on a
/// multi-thread runtime; a CPU-heavy action belongs in `spawn_blocking`); a panic is caught
/// and answered with the panic reply, and a request past its deadline (or past the shutdown
/// grace) has its future dropped and gets the timeout reply.
pub trait AsyncAction: Send + Sync + 'static {
    /// Starts serving one request.
    fn call(&self, request: Vec<Message>) -> ReplyFuture;
}

impl<F, Fut> AsyncAction for F
where
    F: Fn(Vec<Message>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<Message>> + Send + 'static,
{
    fn call(&self, request: Vec<Message>) -> ReplyFuture {
        Box::pin(self(request))
    }
}

/// A Majordomo worker on tokio serving up to
/// [`concurrency`](WorkerConfig::concurrency) requests at once.
///
/// Same protocol behaviour as the sync [`Worker`](crate::Worker) (it runs the same session):
/// READY once per socket, heartbeats that never stop (also while actions run), liveness,
/// reconnect to the next address on a new socket, malformed input dropped. On shutdown, idle
/// registrations leave at once; busy ones finish, reply and leave, within the
/// [`shutdown_grace`](WorkerConfig::shutdown_grace), after which their actions are cancelled
/// and answered with the timeout reply. Dropping the [`run`](Self::run) future closes every
/// socket at once.
pub struct AsyncWorker<A> {
    shared: Arc<Shared<A>>,
    sessions: Vec<(Session<Message>, zmq::Context, Arc<StatsCell>, RequestTimer)>,
    waker: Arc<Waker>,
    /// Closed by `run` once every registration stopped (in `spawn_blocking`: closing a
    /// context waits for its sockets' linger, which must never block a runtime thread), or
    /// on a thread of their own if the worker is dropped without running to the end.
    contexts: Vec<zmq::Context>,
}

/// What an [`AsyncWorker`] did: each registration's identity (always `Some`) and counters,
/// and their total, in the pool's [`Summary`] (`restarts` and `recycles` are 0).
pub type AsyncSummary = Summary;

impl<A: AsyncAction> AsyncWorker<A> {
    /// An async worker for `config` (with its `concurrency`); nothing connects before
    /// [`run`](Self::run). Needs no runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value (the same rules as
    /// every other entry point, `concurrency` and `shutdown_grace` included; a given context
    /// must hold three sockets per registration within its 1023), or [`Error::Io`] if the
    /// wake-up line cannot be made.
    pub fn new(config: WorkerConfig, action: A) -> Result<AsyncWorker<A>, Error> {
        let settings = worker_settings(&config, Mode::Async)?;
        #[cfg(feature = "metrics")]
        let metrics = settings.metrics.clone();
        let WorkerSettings {
            session,
            socket,
            context,
            shutdown,
            drain,
            events,
            ..
        } = settings;
        let contexts = contexts_for(config.concurrency, context)?;
        let waker = Waker::new().map_err(Error::io("socketpair"))?;
        shutdown.register_waker(&waker);
        drain.register_waker(&waker);
        let sessions = (0..config.concurrency)
            .map(|i| {
                let session_config = session.config(Identity::new(&config.service_name));
                let context = contexts[i % contexts.len()].clone();
                let cell = Arc::new(StatsCell::default());
                #[cfg(feature = "metrics")]
                let timer = RequestTimer::new(metrics.as_ref(), &config.service_name, &cell);
                #[cfg(not(feature = "metrics"))]
                let timer = RequestTimer::new(None, &config.service_name, &cell);
                (Session::new(session_config), context, cell, timer)
            })
            .collect();
        let shared = Arc::new(Shared {
            action: Arc::new(action),
            options: socket,
            shutdown,
            drain,
            events,
        });
        Ok(AsyncWorker {
            shared,
            sessions,
            waker,
            contexts,
        })
    }

    /// A handle that stops this worker from anywhere (sync code included).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shared.shutdown.clone()
    }

    /// A handle that drains and resumes every registration.
    pub fn drain_handle(&self) -> DrainHandle {
        self.shared.drain.clone()
    }

    /// A reader of the live counters, usable while [`run`](Self::run) goes on.
    pub fn stats(&self) -> AsyncStats {
        AsyncStats {
            cells: self
                .sessions
                .iter()
                .map(|(session, _, cell, _)| (session.id().clone(), Arc::clone(cell)))
                .collect(),
        }
    }

    /// Serves until shutdown (through the [`ShutdownHandle`]); every request in hand is
    /// answered first. Works on the current-thread and the multi-thread runtime.
    ///
    /// # Errors
    ///
    /// The first [`Error`] a registration could not recover from (after every other
    /// registration stopped), or [`Error::Io`] if the wake-up line cannot be registered.
    pub async fn run(self) -> Result<AsyncSummary, Error> {
        let stats = self.stats();
        let (notify, control) = watch::channel(());
        let mut tasks = JoinSet::new();
        let reader = self.waker.reader().map_err(Error::io("dup"))?;
        let reader =
            tokio::net::UnixStream::from_std(reader).map_err(Error::io("register with tokio"))?;
        tasks.spawn(async move {
            forward_wakeups(reader, notify).await;
            Ok(WorkerStats::default())
        });
        let mut this = self;
        for (session, context, cell, timer) in std::mem::take(&mut this.sessions) {
            let shared = Arc::clone(&this.shared);
            let registration = Registration::new(session, context, shared, cell, timer);
            tasks.spawn(registration.run(control.clone()));
        }
        info!(registrations = stats.cells.len(), "async worker running");
        let first_error = join_registrations(&mut tasks, stats.cells.len()).await;
        tasks.abort_all();
        // The last REPLYs and DISCONNECTs are still in the contexts' hands: closing them
        // waits (at most the linger) until they left. Returning earlier let a process that
        // exits right after run() lose them (seen against the zguide C broker).
        let contexts = std::mem::take(&mut this.contexts);
        if tokio::task::spawn_blocking(move || drop(contexts))
            .await
            .is_err()
        {
            error!("closing the worker's contexts failed");
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(stats.summary()),
        }
    }

    /// [`run`](Self::run) until `signal` completes (e.g. `tokio::signal::ctrl_c()`), then a
    /// graceful shutdown.
    ///
    /// # Errors
    ///
    /// As for [`run`](Self::run).
    pub async fn run_until<S: Future>(self, signal: S) -> Result<AsyncSummary, Error> {
        let shutdown = self.shutdown_handle();
        let run = self.run();
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => return result,
            _ = signal => shutdown.shutdown(),
        }
        run.await
    }
}

/// Waits for every registration; the wake-up forwarder is the one task that never ends.
async fn join_registrations(
    tasks: &mut JoinSet<Result<WorkerStats, Error>>,
    registrations: usize,
) -> Option<Error> {
    let mut first_error = None;
    for _ in 0..registrations {
        match tasks.join_next().await {
            Some(Ok(Ok(_))) | None => {}
            Some(Ok(Err(error))) => {
                error!(%error, "a registration failed");
                first_error.get_or_insert(error);
            }
            Some(Err(join)) => {
                error!(error = %join, "a registration task failed");
            }
        }
    }
    first_error
}

/// Turns each wake-up of the worker's line (shutdown, drain, resume) into a change every
/// registration task sees. The line is drained through tokio's handle: a `WouldBlock` is
/// what clears tokio's readiness (draining it any other way leaves it set, and this loop
/// would spin without yielding).
async fn forward_wakeups(reader: tokio::net::UnixStream, notify: watch::Sender<()>) {
    let mut buffer = [0u8; 64];
    loop {
        if reader.readable().await.is_err() {
            return;
        }
        loop {
            match reader.try_read(&mut buffer) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        notify.send_replace(());
    }
}

impl<A> Drop for AsyncWorker<A> {
    fn drop(&mut self) {
        let contexts = std::mem::take(&mut self.contexts);
        self.sessions.clear();
        if contexts.is_empty() {
            return;
        }
        // Closing a context waits for lingering sockets: never on a runtime thread.
        if std::thread::Builder::new()
            .name("mdp-close".into())
            .spawn(move || drop(contexts))
            .is_err()
        {
            error!("cannot start a thread to close the worker's contexts");
        }
    }
}

impl<A> fmt::Debug for AsyncWorker<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncWorker")
            .field("registrations", &self.sessions.len())
            .field("contexts", &self.contexts.len())
            .finish_non_exhaustive()
    }
}

/// Live counters of an [`AsyncWorker`]'s registrations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AsyncStats {
    cells: Vec<(WorkerId, Arc<StatsCell>)>,
}

impl AsyncStats {
    /// Each registration's counters, and their total.
    pub fn summary(&self) -> AsyncSummary {
        let mut summary = Summary::default();
        for (id, cell) in &self.cells {
            summary.push(Some(id.clone()), cell.snapshot());
        }
        summary
    }
}
