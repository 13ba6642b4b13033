//! The worker: one DEALER socket, a poll loop, and calls into the user's action. A thin driver:
//! every protocol decision is the [`Session`]'s; this module moves frames, time and the
//! action's results into it and carries its [`Action`]s out.

mod action_thread;
mod heartbeater;
mod link;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, info_span, trace, Span};
use zmq::Message;

use crate::action::WorkerAction;
use crate::config::settings::{worker_settings, Mode, WorkerSettings};
use crate::config::WorkerConfig;
use crate::drivers::request_timer::RequestTimer;
use crate::drivers::step::{self, ActionResult, Reports};
use crate::error::Error;
use crate::events::{Identity, WorkerId};
use crate::io::transport::{self, Connection, SocketOptions};
use crate::io::wake::Waker;
use crate::protocol::WorkerMessage;
use crate::session::{Action, Session, State};
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::stats::StatsCell;
pub use crate::stats::WorkerStats;
use action_thread::{call_guarded, ActionThread};
use heartbeater::Parking;

/// Most messages read in one poll pass before timers get their turn again.
const MAX_READS_PER_PASS: usize = 64;

/// How long, right after a reply, the worker waits for the next request with a plain
/// blocking receive before it polls its socket together with its wake-up line. While
/// requests keep coming they take the cheap path (a poll costs a few system calls more per
/// request: BENCHMARKS.md); a shutdown or drain asked for meanwhile waits at most this long.
const HOT_WAIT: Duration = Duration::from_millis(1);

/// What one call to [`Worker::receive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// One request was answered: its reply (the action's, the panic reply or the timeout
    /// reply) was sent.
    Handled,
    /// The worker has shut down; every further call returns this at once.
    ShutDown,
}

/// Where the action runs.
enum Runner<A> {
    /// In the worker's thread, inside `receive()`; the socket is parked with the process's
    /// heartbeater meanwhile, so HEARTBEATs go on.
    Inline(A, Option<Arc<Parking>>),
    /// On a thread of its own; the worker loop goes on meanwhile.
    Thread(ActionThread),
}

/// A Majordomo worker: registers `service` with a broker and answers its requests.
///
/// Build it with [`Worker::new`] (the action runs inside [`receive`](Self::receive)) or
/// [`Worker::threaded`] (the action runs on a thread of its own: for per-request deadlines).
/// Either way the worker keeps heartbeating while a request runs. Then call `receive` in a
/// loop, or [`run`](Self::run); stop it from anywhere with a [`ShutdownHandle`] from
/// [`shutdown_handle`](Self::shutdown_handle). The first `receive` connects.
///
/// ```no_run
/// use majordomo_worker::{Received, Worker, WorkerConfig};
///
/// let config = WorkerConfig::new("tcp://127.0.0.1:5555", "echo");
/// let mut worker = Worker::new(config, |request| request)?;
/// let _signals = worker.shutdown_handle().shutdown_on_signals()?;
/// while worker.receive()? == Received::Handled {}
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Worker<A> {
    runner: Runner<A>,
    session: Session<Message>,
    options: SocketOptions,
    connection: Option<Connection>,
    // After the sockets: the context must outlive them.
    context: zmq::Context,
    shutdown: ShutdownHandle,
    drain: DrainHandle,
    waker: Arc<Waker>,
    reports: Reports,
    span: Span,
    /// The span current when the worker was built: the parent of every connection's span.
    parent_span: Span,
    /// A reply just left: the next wait starts with a short blocking receive.
    hot: bool,
}

impl<A: WorkerAction> Worker<A> {
    /// A worker that runs `action` inline, inside [`receive`](Self::receive). While the action
    /// runs, the process's heartbeater thread sends the worker's HEARTBEATs.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value, including a
    /// `request_timeout` (which needs [`Worker::threaded`]); [`Error::Io`] if the worker's
    /// wake-up pipe cannot be made (no file descriptor left).
    pub fn new(config: WorkerConfig, action: A) -> Result<Worker<A>, Error> {
        let settings = worker_settings(&config, Mode::Inline)?;
        let waker = Waker::new().map_err(Error::io("socketpair"))?;
        Worker::build(settings, Runner::Inline(action, Parking::new()), waker)
    }
}

impl<A: WorkerAction + Send + 'static> Worker<A> {
    /// A worker that runs `action` on a thread of its own: while a request runs, the worker
    /// loop goes on reading the broker and enforces the `request_timeout`.
    ///
    /// Costs a hand-off between threads per request (see BENCHMARKS.md); use it for requests
    /// that need a deadline.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value, or [`Error::Io`] if the
    /// thread or the wake-up pipe cannot be made.
    pub fn threaded(config: WorkerConfig, action: A) -> Result<Worker<A>, Error> {
        let settings = worker_settings(&config, Mode::Threaded)?;
        let waker = Waker::new().map_err(Error::io("socketpair"))?;
        let thread = ActionThread::spawn(action, Arc::clone(&waker)).map_err(Error::io("spawn"))?;
        Worker::build(settings, Runner::Thread(thread), waker)
    }
}

impl<A: WorkerAction> Worker<A> {
    fn build(
        settings: WorkerSettings,
        runner: Runner<A>,
        waker: Arc<Waker>,
    ) -> Result<Worker<A>, Error> {
        settings.shutdown.register_waker(&waker);
        settings.drain.register_waker(&waker);
        let identity = Identity::new(&settings.session.service);
        let session = Session::new(settings.session.config(identity));
        let parent_span = Span::current();
        let span = worker_span(&parent_span, session.id(), None);
        let stats = Arc::new(StatsCell::default());
        #[cfg(feature = "metrics")]
        let metrics = settings.metrics.as_ref();
        #[cfg(not(feature = "metrics"))]
        let metrics = None;
        let timer = RequestTimer::new(metrics, &session.id().service, &stats);
        Ok(Worker {
            runner,
            session,
            options: settings.socket,
            connection: None,
            context: settings.context.unwrap_or_default(),
            shutdown: settings.shutdown,
            drain: settings.drain,
            waker,
            reports: Reports::new(stats, settings.events, timer),
            span,
            parent_span,
            hot: false,
        })
    }

    /// Waits for one request, answers it, and returns [`Received::Handled`]; or returns
    /// [`Received::ShutDown`] once the worker has stopped. Heartbeats, broker liveness,
    /// reconnects, drains and malformed input are handled inside, between requests.
    ///
    /// After a shutdown every call returns `ShutDown` at once, without touching a socket.
    ///
    /// # Errors
    ///
    /// [`Error::Zmq`] when ZeroMQ fails in a way the worker cannot recover from by itself.
    pub fn receive(&mut self) -> Result<Received, Error> {
        loop {
            if let Some(received) = self.receive_until(None)? {
                return Ok(received);
            }
        }
    }

    /// Like [`receive`](Self::receive), but gives up after `timeout`: `Ok(None)` when no
    /// request was answered (and the worker did not stop) meanwhile. Heartbeats and
    /// reconnects go on as in `receive`; `Duration::ZERO` only handles what is already due,
    /// and a timeout too long to be a point in time (`Duration::MAX`) never expires.
    ///
    /// # Errors
    ///
    /// [`Error::Zmq`] when ZeroMQ fails in a way the worker cannot recover from by itself.
    pub fn receive_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, Error> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.receive_until(Some(deadline)),
            None => self.receive().map(Some),
        }
    }

    fn receive_until(&mut self, deadline: Option<Instant>) -> Result<Option<Received>, Error> {
        let mut polled = false;
        loop {
            // Entered per turn: a reconnect replaces the span (see `worker_span`).
            let span = self.span.clone();
            let _entered = span.enter();
            let now = Instant::now();
            if self.session.state() != State::Stopped {
                self.check_controls(now);
                self.session.handle_timeout(now);
            }
            // Carries out everything queued, including what the last input queued: a stop
            // decided while a threaded action finished still sends its REPLY and DISCONNECT.
            let received = self.run_actions();
            self.publish();
            if let Some(received) = received? {
                return Ok(Some(received));
            }
            // Even a zero timeout reads what is already waiting, once.
            let remaining = deadline.map(|d| d.saturating_duration_since(now));
            if polled && remaining.is_some_and(|r| r.is_zero()) {
                return Ok(None);
            }
            self.wait_for_input(remaining)?;
            polled = true;
        }
    }

    /// Answers requests until shutdown.
    ///
    /// # Errors
    ///
    /// The first [`Error`] from [`receive`](Self::receive).
    pub fn run(&mut self) -> Result<(), Error> {
        while self.receive()? == Received::Handled {}
        Ok(())
    }

    /// Connects and sends READY now instead of in the first [`receive`](Self::receive), so the
    /// broker knows the worker before its loop starts. Does nothing once connected.
    ///
    /// # Errors
    ///
    /// [`Error::Zmq`] if the socket cannot be made.
    pub fn connect(&mut self) -> Result<(), Error> {
        let span = self.span.clone();
        let _entered = span.enter();
        if self.session.state() == State::Start {
            self.session.handle_timeout(Instant::now());
            let result = self.run_actions();
            self.publish();
            result?;
        }
        Ok(())
    }

    /// A handle that stops this worker from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// A handle that drains and resumes this worker from any thread.
    pub fn drain_handle(&self) -> DrainHandle {
        self.drain.clone()
    }

    /// Asks the worker to stop: same as `shutdown_handle().shutdown()`. Never blocks.
    pub fn shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// Whether the broker has sent anything on the current connection: proof that it knows
    /// this worker (a READY alone may still be in flight).
    pub fn broker_heard(&self) -> bool {
        self.session.broker_heard()
    }

    /// This worker's identity in events.
    pub fn id(&self) -> &WorkerId {
        self.session.id()
    }

    /// Where the worker's protocol session stands.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// The endpoint of the broker in use (or next to be tried).
    pub fn broker(&self) -> &str {
        self.session.endpoint_address()
    }

    /// The counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.reports.stats().snapshot()
    }

    pub(crate) fn stats_cell(&self) -> Arc<StatsCell> {
        Arc::clone(self.reports.stats())
    }

    /// Publishes the counters and hands the session's events to the sink.
    fn publish(&mut self) {
        self.reports.publish(&mut self.session);
    }

    /// Feeds shutdown and drain requests from the handles to the session.
    fn check_controls(&mut self, now: Instant) {
        step::check_controls(&mut self.session, now, &self.shutdown, &self.drain);
    }

    /// Carries out every queued action. `Some` when `receive` should return.
    fn run_actions(&mut self) -> Result<Option<Received>, Error> {
        let mut handled = false;
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Connect { endpoint } => self.open(endpoint)?,
                Action::Send(message) => {
                    if matches!(message, WorkerMessage::Reply { .. }) {
                        handled = true;
                        self.hot = true;
                        // Counted before it leaves: whoever holds the reply sees it in the stats.
                        self.publish();
                    }
                    self.send(message)?;
                }
                Action::Deliver { body } => self.deliver(body),
                Action::Close { graceful, .. } => self.close(graceful),
                Action::Drained | Action::Stopped => {}
            }
        }
        Ok(match (handled, self.session.state()) {
            (true, _) => Some(Received::Handled),
            (false, State::Stopped) => Some(Received::ShutDown),
            (false, _) => None,
        })
    }

    /// Opens a new socket to endpoint number `endpoint` (the session queues READY next).
    fn open(&mut self, endpoint: usize) -> Result<(), Error> {
        self.close(false);
        let address = self.session.endpoint_address().to_string();
        self.span = worker_span(&self.parent_span, self.session.id(), Some(&address));
        match transport::open_dealer(&self.context, &address, &self.options) {
            Ok(connection) => {
                debug!(endpoint, "socket open");
                self.connection = Some(connection);
                Ok(())
            }
            Err(error) => step::handle_open_failed(&mut self.session, &address, error),
        }
    }

    fn send(&mut self, message: WorkerMessage<Message>) -> Result<(), Error> {
        let Some(connection) = &self.connection else {
            debug!(command = %message.command(), "no socket, message not sent");
            return Ok(());
        };
        let command = message.command();
        trace!(%command, "sending");
        let sent = transport::send_frames(&connection.socket, message.encode());
        Ok(self.session.handle_sent(command, sent)?)
    }

    fn deliver(&mut self, body: Vec<Message>) {
        match &mut self.runner {
            Runner::Thread(thread) => thread.send_request(body),
            Runner::Inline(action, parking) => {
                let parked = park(&mut self.connection, parking.as_deref(), &self.session);
                let result = call_guarded(action, body);
                let sent = unpark(&mut self.connection, parked, parking.as_deref());
                if let Some((last, count)) = sent {
                    self.session.handle_heartbeats_sent(last, count);
                }
                self.handle_result(result);
            }
        }
    }

    /// Takes what the action produced and hands the reply to the session.
    fn handle_result(&mut self, result: ActionResult) {
        let now = Instant::now();
        // A shutdown asked for during the action goes out right after this REPLY.
        self.check_controls(now);
        step::handle_result(&mut self.session, now, result);
    }

    fn close(&mut self, graceful: bool) {
        if let Some(mut connection) = self.connection.take() {
            link::mark_up(&mut connection);
            step::close(&connection.socket, graceful, connection.up);
        }
    }

    /// Waits for broker input, an action result, a wake-up (shutdown, drain, resume) or the
    /// next deadline, whichever is first, and feeds what came in to the session.
    fn wait_for_input(&mut self, cap: Option<Duration>) -> Result<(), Error> {
        let now = Instant::now();
        let until_deadline = self
            .session
            .next_deadline()
            .map(|at| at.saturating_duration_since(now));
        let timeout = match (until_deadline, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.session.state() == State::Busy {
            if let Runner::Thread(thread) = &self.runner {
                // The broker sends nothing to a busy worker that needs an answer before the
                // reply (a DISCONNECT can wait for the next deadline, a stop for the reply):
                // wait on the result itself, then read what came meanwhile.
                thread.set_polling(false);
                return match thread.recv_result_timeout(timeout) {
                    Some(result) => {
                        self.handle_result(result);
                        Ok(())
                    }
                    None => self.read_messages(),
                };
            }
        }
        if let Runner::Thread(thread) = &self.runner {
            thread.set_polling(true);
            if let Some(result) = thread.try_recv_result() {
                self.handle_result(result);
                return Ok(());
            }
        }
        if std::mem::take(&mut self.hot) && self.try_hot_receive(timeout)? {
            return Ok(());
        }
        let ready = self.poll(timeout)?;
        if ready.woken {
            self.waker.clear();
        }
        if let Runner::Thread(thread) = &self.runner {
            if let Some(result) = thread.try_recv_result() {
                self.handle_result(result);
            }
        }
        if ready.socket {
            self.read_messages()?;
        }
        if ready.other || !(ready.socket || ready.woken) {
            // The monitor is polled until the connection is up; after that, a dropped
            // connection means silence, so it is read whenever a wait ends empty.
            self.read_link_events()?;
        }
        Ok(())
    }

    /// Waits up to [`HOT_WAIT`] (within `timeout`) for the next message with a blocking
    /// receive; true if one came and was handled.
    fn try_hot_receive(&mut self, timeout: Option<Duration>) -> Result<bool, Error> {
        let Some(connection) = self.connection.as_mut().filter(|c| c.up) else {
            return Ok(false);
        };
        let wait = timeout.map_or(HOT_WAIT, |t| t.min(HOT_WAIT));
        let Some(frames) = transport::recv_frames_timeout(&connection.socket, wait)? else {
            return Ok(false);
        };
        self.session.handle_frames(Instant::now(), frames);
        Ok(true)
    }

    /// Polls the broker socket (and its monitor until the connection is up) with the
    /// worker's wake-up line; `None` waits until something happens.
    fn poll(&self, timeout: Option<Duration>) -> Result<transport::Ready, Error> {
        let socket = self.connection.as_ref().map(|c| &c.socket);
        let monitor = self
            .connection
            .as_ref()
            .filter(|c| !c.up)
            .map(|c| &c.monitor);
        Ok(transport::poll_inputs(
            socket,
            monitor,
            Some(&self.waker),
            timeout,
        )?)
    }

    /// Reads what is waiting. An inline worker stops as soon as a request is in hand (the
    /// action runs before anything else is read: the rest waits in the socket).
    fn read_messages(&mut self) -> Result<(), Error> {
        let inline = matches!(self.runner, Runner::Inline(..));
        for _ in 0..MAX_READS_PER_PASS {
            let Some(connection) = &mut self.connection else {
                return Ok(());
            };
            let Some(frames) = transport::try_recv_frames(&connection.socket)? else {
                return Ok(());
            };
            connection.up = true;
            self.session.handle_frames(Instant::now(), frames);
            if self.session.has_actions() || (inline && self.session.is_busy()) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Parks the connection with the heartbeater while an inline action runs; true if it was.
fn park(
    connection: &mut Option<Connection>,
    parking: Option<&Parking>,
    session: &Session<Message>,
) -> bool {
    let (Some(parking), Some(due)) = (parking, session.heartbeat_due()) else {
        return false;
    };
    let Some(parked) = connection.take() else {
        return false;
    };
    parking.park(parked, due, session.heartbeat_interval());
    true
}

/// Takes the connection back after the action: the last heartbeat sent meanwhile and how
/// many.
fn unpark(
    connection: &mut Option<Connection>,
    parked: bool,
    parking: Option<&Parking>,
) -> Option<(Instant, u64)> {
    if !parked {
        return None;
    }
    let (taken, sent) = parking?.take();
    *connection = taken;
    Some((sent.last?, sent.sent))
}

/// The span of one connection. A new one per connection, because recording `broker` again
/// on the same span adds a value instead of replacing it (tracing-subscriber's fmt layer
/// appends): one more `broker=` on every line, and in memory, with each reconnect.
fn worker_span(parent: &Span, id: &WorkerId, broker: Option<&str>) -> Span {
    info_span!(
        parent: parent,
        "mdp_worker",
        service = %id.service,
        worker = id.number,
        broker
    )
}

impl<A> Drop for Worker<A> {
    fn drop(&mut self) {
        self.reports.retire(&self.session);
        // A worker dropped without a shutdown still leaves politely: DISCONNECT, then a
        // bounded linger, so the broker forgets it at once instead of after its expiry.
        self.session.handle_drop();
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        link::mark_up(&mut connection);
        let _entered = self.span.enter();
        while let Some(action) = self.session.poll_action() {
            if let Action::Send(message) = action {
                let _ = transport::send_frames(&connection.socket, message.encode());
            }
        }
        step::close(&connection.socket, true, connection.up);
        info!("worker dropped");
    }
}

impl<A> fmt::Debug for Worker<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", self.session.id())
            .field("broker", &self.session.endpoint_address())
            .field("state", &self.session.state())
            .field("connected", &self.connection.is_some())
            .field("threaded", &matches!(self.runner, Runner::Thread(_)))
            .finish_non_exhaustive()
    }
}
