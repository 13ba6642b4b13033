//! Test your own [`WorkerAction`] end to end, in a unit test: our broker on a unique endpoint,
//! your action in a real [`Worker`] on a thread, our [`Client`] to send requests.
//!
//! ```
//! use majordomo_worker::testkit::TestBroker;
//! use majordomo_worker::Message;
//!
//! let broker = TestBroker::inproc()?; // or TestBroker::tcp() for tcp://127.0.0.1:<free port>
//! let _worker = broker.spawn_worker("upper", |request: Vec<Message>| {
//!     request.iter().map(|f| Message::from(f.to_ascii_uppercase())).collect()
//! })?;
//! let mut client = broker.client()?;
//! assert_eq!(client.request("upper", &["abc"])?, vec![b"ABC".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Everything stops when dropped, worker before broker as locals drop in reverse order:
//! the worker finishes the request in hand, sends DISCONNECT, then the broker closes.
//!
//! What the kit takes care of, and a hand-written test must not forget:
//!
//! - **a unique endpoint**: an `inproc://` name no other test uses, or a free TCP port, so
//!   tests run in parallel;
//! - **one shared [`zmq::Context`]** for broker, workers and clients: `inproc://` only
//!   connects sockets of the same context;
//! - **fast timings**: 50 ms heartbeats (liveness 10, so a loaded CI machine does not make
//!   workers flap), 200 ms linger: a stop takes milliseconds;
//! - **bounded waits**: the client waits 2 s per request and does not retry, so a missing
//!   reply fails the test with [`ClientError::Timeout`] instead of hanging it, and a
//!   request is never run twice behind the test's back.
//!
//! Need another setting (a threaded worker, a `request_timeout`)? Start from
//! [`TestBroker::worker_config`] and pass your own [`Worker`] to [`WorkerThread::spawn`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::broker::{Broker, BrokerConfig, BrokerError, BrokerHandle, BrokerStats};
use crate::client::{Client, ClientConfig, ClientError};
use crate::{Error, ShutdownHandle, Worker, WorkerAction, WorkerConfig, WorkerStats};

/// Heartbeat of the kit's broker and workers: fast stops and reconnects in tests.
pub const HEARTBEAT: Duration = Duration::from_millis(50);
/// Liveness of the kit's broker and workers: half a second of silence, so that a test machine
/// busy with other tests does not make workers flap.
pub const LIVENESS: u32 = 10;
/// How long the kit's client waits for each reply (it does not retry).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest [`TestBroker::spawn_worker`] waits for the broker to register the worker.
pub const REGISTER_WAIT: Duration = Duration::from_secs(5);

/// Our broker on a thread, bound to a unique endpoint, with the context to share with the
/// workers and clients of a test. Stops when dropped.
#[must_use = "dropping the TestBroker stops its broker at once"]
pub struct TestBroker {
    // Declared before the context: the broker closes its socket before the context goes.
    handle: BrokerHandle,
    context: zmq::Context,
}

impl TestBroker {
    /// A broker on a unique `inproc://` endpoint (the process id and a counter): the fastest
    /// transport, reachable only through [`context`](Self::context).
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot bind or start its thread.
    pub fn inproc() -> Result<TestBroker, BrokerError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TestBroker::bind(&format!(
            "inproc://majordomo-testkit-{}-{n}",
            std::process::id()
        ))
    }

    /// A broker on `tcp://127.0.0.1:*`, a port the OS picks: real TCP, as in production.
    ///
    /// # Errors
    ///
    /// [`BrokerError`] if the broker cannot bind or start its thread.
    pub fn tcp() -> Result<TestBroker, BrokerError> {
        TestBroker::bind("tcp://127.0.0.1:*")
    }

    fn bind(endpoint: &str) -> Result<TestBroker, BrokerError> {
        let context = zmq::Context::new();
        let config = BrokerConfig::new(endpoint)
            .heartbeat(HEARTBEAT)
            .liveness(LIVENESS)
            .linger(Duration::from_millis(200))
            .context(context.clone());
        let handle = Broker::bind(config)?.spawn()?;
        Ok(TestBroker { handle, context })
    }

    /// The endpoint workers and clients connect to (a TCP port resolved).
    pub fn endpoint(&self) -> &str {
        self.handle.endpoint()
    }

    /// The context shared by the broker and everything the kit connects to it.
    pub fn context(&self) -> zmq::Context {
        self.context.clone()
    }

    /// A worker configuration for `service` on this broker: the shared context and the kit's
    /// fast timings. Change what you need before building the worker.
    pub fn worker_config(&self, service: &str) -> WorkerConfig {
        WorkerConfig::new(self.endpoint(), service)
            .context(self.context())
            .heartbeat(HEARTBEAT)
            .liveness(LIVENESS)
            .reconnect(Duration::from_millis(20))
            .reconnect_max(Duration::from_millis(200))
            .linger(Duration::from_millis(200))
    }

    /// A client configuration for this broker: the shared context, [`CLIENT_TIMEOUT`] per
    /// request, no retry.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.endpoint())
            .context(self.context())
            .timeout(CLIENT_TIMEOUT)
            .retries(0)
    }

    /// A client connected with [`client_config`](Self::client_config).
    ///
    /// # Errors
    ///
    /// [`ClientError::Zmq`] if the socket cannot be made.
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::connect(self.client_config())
    }

    /// Runs `action` for `service` in a worker on a thread of its own, configured with
    /// [`worker_config`](Self::worker_config), and waits (at most [`REGISTER_WAIT`]) until
    /// the broker has registered it, so that `has_service` sees it at once. Requests sent
    /// earlier would not be lost either: the broker queues them.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `service` is not a valid name, [`Error::Zmq`] if the worker's
    /// thread cannot be started.
    pub fn spawn_worker<A>(&self, service: &str, action: A) -> Result<WorkerThread, Error>
    where
        A: WorkerAction + Send + 'static,
    {
        let registered = self.handle.stats().workers_registered;
        let worker = WorkerThread::spawn(Worker::new(self.worker_config(service), action)?)?;
        let deadline = Instant::now() + REGISTER_WAIT;
        while self.handle.stats().workers_registered <= registered {
            if Instant::now() >= deadline {
                warn!(service, wait = ?REGISTER_WAIT, "worker not registered yet, going on");
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(worker)
    }

    /// An [`AsyncClient`](crate::AsyncClient) connected with
    /// [`client_config`](Self::client_config); call it inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] outside a tokio runtime, [`ClientError::Zmq`] if the socket cannot
    /// be made.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn async_client(&self) -> Result<crate::AsyncClient, ClientError> {
        crate::AsyncClient::connect(self.client_config())
    }

    /// Runs `action` for `service` in an [`AsyncWorker`](crate::AsyncWorker) with
    /// `concurrency` registrations, as a task of the current tokio runtime, configured with
    /// [`worker_config`](Self::worker_config); returns once the broker registered them all
    /// (or after [`REGISTER_WAIT`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use majordomo_worker::testkit::TestBroker;
    /// use majordomo_worker::Message;
    ///
    /// let broker = TestBroker::tcp()?;
    /// let worker = broker
    ///     .spawn_async_worker("echo", 4, |request: Vec<Message>| async move { request })
    ///     .await?;
    /// assert_eq!(broker.stats().workers, 4);
    /// let summary = worker.stop().await?;
    /// assert_eq!(summary.workers.len(), 4);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid service name or concurrency.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn spawn_async_worker<A: crate::AsyncAction>(
        &self,
        service: &str,
        concurrency: usize,
        action: A,
    ) -> Result<AsyncWorkerTask, Error> {
        let config = self.worker_config(service).concurrency(concurrency);
        let registered = self.handle.stats().workers_registered;
        let worker = crate::AsyncWorker::new(config, action)?;
        let shutdown = worker.shutdown_handle();
        let task = tokio::spawn(worker.run());
        let deadline = Instant::now() + REGISTER_WAIT;
        while self.handle.stats().workers_registered < registered + concurrency as u64 {
            if Instant::now() >= deadline {
                warn!(service, wait = ?REGISTER_WAIT, "async worker not registered yet, going on");
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(AsyncWorkerTask {
            shutdown,
            task: Some(task),
        })
    }

    /// The broker's statistics as of its last loop turn (at most ~50 ms old).
    pub fn stats(&self) -> BrokerStats {
        self.handle.stats()
    }

    /// Stops the broker (DISCONNECT to its workers) and returns its final statistics; the
    /// same happens, without the statistics, on drop.
    ///
    /// # Errors
    ///
    /// The [`BrokerError`] that ended the broker's loop early, if one did.
    pub fn stop(self) -> Result<BrokerStats, BrokerError> {
        self.handle.stop()
    }
}

impl fmt::Debug for TestBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestBroker")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

type Outcome = (Result<(), Error>, WorkerStats);

/// A [`Worker`] running [`run`](Worker::run) on a thread of its own. Stops gracefully when
/// dropped: the request in hand is answered, then DISCONNECT.
#[must_use = "dropping the WorkerThread stops its worker at once (and waits for it)"]
pub struct WorkerThread {
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<Outcome>>,
}

impl WorkerThread {
    /// Runs `worker` on a new thread until it is stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the thread cannot be started.
    pub fn spawn<A>(mut worker: Worker<A>) -> Result<WorkerThread, Error>
    where
        A: WorkerAction + Send + 'static,
    {
        let shutdown = worker.shutdown_handle();
        let thread = thread::Builder::new()
            .name(format!("mdp-test-{}", worker.id().service))
            .spawn(move || {
                let result = worker.run();
                (result, worker.stats())
            })
            .map_err(Error::io("spawn"))?;
        Ok(WorkerThread {
            shutdown,
            thread: Some(thread),
        })
    }

    /// A handle that stops the worker from anywhere, without waiting.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops the worker, waits for its thread (the request in hand is finished first, then
    /// REPLY and DISCONNECT leave within the linger) and returns its counters.
    ///
    /// # Errors
    ///
    /// The [`Error`] that ended the worker's loop early, if one did.
    ///
    /// # Panics
    ///
    /// If the worker's thread panicked (a bug outside the action: panics inside the action
    /// are answered with the panic reply), the panic is passed on to the test.
    pub fn stop(mut self) -> Result<WorkerStats, Error> {
        match self.stop_and_join() {
            Some(Ok((result, stats))) => result.map(|()| stats),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(WorkerStats::default()),
        }
    }

    fn stop_and_join(&mut self) -> Option<thread::Result<Outcome>> {
        self.shutdown.shutdown();
        self.thread.take().map(JoinHandle::join)
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        match self.stop_and_join() {
            Some(Ok((Err(error), _))) => warn!(%error, "test worker ended with an error"),
            Some(Err(_)) => error!("test worker thread panicked"),
            _ => {}
        }
    }
}

impl fmt::Debug for WorkerThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerThread")
            .field("stopped", &self.shutdown.is_shutdown())
            .finish_non_exhaustive()
    }
}

/// An [`AsyncWorker`](crate::AsyncWorker) running as a tokio task, from
/// [`TestBroker::spawn_async_worker`]. Dropping it asks the worker to stop.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[must_use = "dropping the AsyncWorkerTask asks its worker to stop at once"]
pub struct AsyncWorkerTask {
    shutdown: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<Result<crate::AsyncSummary, Error>>>,
}

#[cfg(feature = "tokio")]
impl AsyncWorkerTask {
    /// A handle that stops the worker from anywhere, without waiting.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops the worker (requests in hand are answered first) and returns its summary.
    ///
    /// # Errors
    ///
    /// The [`Error`] that ended the worker early, if one did.
    ///
    /// # Panics
    ///
    /// If the worker's task panicked, the panic is passed on to the test.
    pub async fn stop(mut self) -> Result<crate::AsyncSummary, Error> {
        self.shutdown.shutdown();
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            },
            None => Ok(crate::AsyncSummary::default()),
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for AsyncWorkerTask {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

#[cfg(feature = "tokio")]
impl fmt::Debug for AsyncWorkerTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncWorkerTask")
            .field("stopped", &self.shutdown.is_shutdown())
            .finish_non_exhaustive()
    }
}
