//! The worker: one DEALER socket, a poll loop, and calls into the user's action.

mod action_thread;
mod link;
mod stats;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, info_span, trace, warn, Span};
use zmq::Message;

use crate::action::WorkerAction;
use crate::config::WorkerConfig;
use crate::error::Error;
use crate::events::{Event, EventSink, RequestOutcome, WorkerId};
use crate::protocol::WorkerMessage;
use crate::session::{
    Action, DisconnectReason, ReplyOutcome, Session, SessionConfig, SessionStats, State,
};
use crate::shutdown::{DrainHandle, ShutdownHandle};
use action_thread::{call_guarded, ActionResult, ActionThread};
use stats::IoCounters;
pub(crate) use stats::StatsCell;
pub use stats::WorkerStats;
use wire::{Connection, SocketOptions};

/// Most messages read in one poll pass before timers get their turn again.
const MAX_READS_PER_PASS: usize = 64;

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
    /// In the worker's thread, inside `receive()`.
    Inline(A),
    /// On a thread of its own; the worker keeps heartbeating meanwhile.
    Thread(ActionThread),
}

/// A Majordomo worker: registers `service` with a broker and answers its requests.
///
/// Build it with [`Worker::new`] (the action runs inside [`receive`](Self::receive)) or
/// [`Worker::threaded`] (the action runs on a thread of its own while the worker keeps
/// heartbeating: for long requests and per-request deadlines). Then call `receive` in a loop,
/// or [`run`](Self::run); stop it from anywhere with a [`ShutdownHandle`] from
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
    id: WorkerId,
    endpoints: Vec<String>,
    options: SocketOptions,
    polling_interval: Duration,
    send_disconnect: bool,
    panic_reply: Vec<Vec<u8>>,
    context: zmq::Context,
    connection: Option<Connection>,
    shutdown: ShutdownHandle,
    drain: DrainHandle,
    events: Option<EventSink>,
    stats: Arc<StatsCell>,
    io: IoCounters,
    request_started: Option<(Instant, usize)>,
    span: Span,
    /// The span current when the worker was built: the parent of every connection's span.
    parent_span: Span,
}

impl<A: WorkerAction> Worker<A> {
    /// A worker that runs `action` inline, inside [`receive`](Self::receive).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value, including a
    /// `request_timeout` (which needs [`Worker::threaded`]).
    pub fn new(config: WorkerConfig, action: A) -> Result<Worker<A>, Error> {
        if let Some(timeout) = config.request_timeout {
            return Err(crate::ConfigError::InvalidValue {
                field: "request_timeout",
                value: format!("{} ms", timeout.as_millis()),
                reason: "needs the action on its own thread: use Worker::threaded",
            }
            .into());
        }
        Worker::build(config, Runner::Inline(action))
    }
}

impl<A: WorkerAction + Send + 'static> Worker<A> {
    /// A worker that runs `action` on a thread of its own: while a request runs, the worker
    /// keeps heartbeating, watches its broker and enforces the `request_timeout`.
    ///
    /// Costs one hand-off over an inproc socket per request (see BENCHMARKS.md); use it for
    /// requests that can outlast `heartbeat × liveness` or that need a deadline.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value, or [`Error::Zmq`] if
    /// the thread's socket cannot be made.
    pub fn threaded(config: WorkerConfig, action: A) -> Result<Worker<A>, Error> {
        config.validate()?;
        let context = config.context.clone().unwrap_or_default();
        let thread = ActionThread::spawn(&context, action)?;
        Worker::build(config.context(context), Runner::Thread(thread))
    }
}

impl<A: WorkerAction> Worker<A> {
    fn build(config: WorkerConfig, runner: Runner<A>) -> Result<Worker<A>, Error> {
        config.validate()?;
        let endpoints = config.endpoints()?;
        let session = Session::new(SessionConfig {
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            reconnect: config.reconnect,
            reconnect_max: config.reconnect_max,
            endpoints: endpoints.len(),
            send_disconnect: config.send_disconnect,
            seed: seed(),
            request_timeout: config.request_timeout,
            timeout_reply: config.timeout_reply.clone(),
        });
        let id = WorkerId::next(&config.service_name);
        let parent_span = Span::current();
        let span = worker_span(&parent_span, &id, None);
        Ok(Worker {
            runner,
            session,
            id,
            endpoints,
            options: SocketOptions::from_config(&config),
            polling_interval: config.polling_interval,
            send_disconnect: config.send_disconnect,
            panic_reply: config.panic_reply.clone(),
            context: config.context.clone().unwrap_or_default(),
            connection: None,
            shutdown: config.shutdown.clone().unwrap_or_default(),
            drain: config.drain.clone().unwrap_or_default(),
            events: config.events.clone(),
            stats: Arc::new(StatsCell::default()),
            io: IoCounters::default(),
            request_started: None,
            span,
            parent_span,
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
    /// reconnects go on as in `receive`; `Duration::ZERO` only handles what is already due.
    ///
    /// # Errors
    ///
    /// [`Error::Zmq`] when ZeroMQ fails in a way the worker cannot recover from by itself.
    pub fn receive_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, Error> {
        self.receive_until(Some(Instant::now() + timeout))
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
            self.publish_stats();
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
            self.run_actions()?;
            self.publish_stats();
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
        &self.id
    }

    /// Where the worker's protocol session stands.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// The endpoint of the broker in use (or next to be tried).
    pub fn broker(&self) -> &str {
        &self.endpoints[self.session.endpoint()]
    }

    /// The counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.stats.snapshot()
    }

    pub(crate) fn stats_cell(&self) -> Arc<StatsCell> {
        Arc::clone(&self.stats)
    }

    fn publish_stats(&self) {
        let session: SessionStats = self.session.stats();
        self.stats
            .publish(&session, &self.io, self.session.is_busy());
    }

    fn emit(&self, event: impl FnOnce(WorkerId) -> Event) {
        if let Some(sink) = &self.events {
            sink.emit(event(self.id.clone()));
        }
    }

    /// Feeds shutdown and drain requests from the handles to the session.
    fn check_controls(&mut self, now: Instant) {
        if self.shutdown.is_shutdown() {
            if !self.session.is_stopping() {
                self.session.handle_shutdown(now);
            }
            return;
        }
        let drained = self.drain.is_drained();
        if drained && !self.session.is_draining() {
            self.session.handle_drain(now);
        } else if !drained && self.session.is_draining() {
            self.session.handle_resume(now);
            if self.session.state() != State::Paused {
                self.emit(|worker| Event::Resumed { worker });
            }
        }
    }

    /// Carries out every queued action. `Some` when `receive` should return.
    fn run_actions(&mut self) -> Result<Option<Received>, Error> {
        let mut handled = false;
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Connect { endpoint } => self.connect_to(endpoint)?,
                Action::Send(message) => {
                    if matches!(message, WorkerMessage::Reply { .. }) {
                        handled = true;
                        // Counted before it leaves: whoever holds the reply sees it in the stats.
                        self.publish_stats();
                    }
                    self.send(message)?;
                }
                Action::Deliver { body } => self.deliver(body)?,
                Action::RequestTimedOut => self.finish_request(RequestOutcome::TimedOut),
                Action::Close { reason, graceful } => self.close(reason, graceful),
                Action::Drained => {
                    info!("drained");
                    self.emit(|worker| Event::Drained { worker });
                }
                Action::Stopped => {
                    info!("worker stopped");
                    self.emit(|worker| Event::Stopped { worker });
                }
            }
        }
        Ok(match (handled, self.session.state()) {
            (true, _) => Some(Received::Handled),
            (false, State::Stopped) => Some(Received::ShutDown),
            (false, _) => None,
        })
    }

    fn connect_to(&mut self, endpoint: usize) -> Result<(), Error> {
        self.connection = None;
        let address = &self.endpoints[endpoint];
        self.span = worker_span(&self.parent_span, &self.id, Some(address));
        match wire::open_dealer(&self.context, address, &self.options) {
            Ok(connection) => {
                info!(broker = %address, "connected, sending READY");
                self.connection = Some(connection);
                let broker = address.clone();
                self.emit(|worker| Event::Connected { worker, broker });
                let service = Message::from(&*self.id.service);
                self.send(WorkerMessage::Ready { service })
            }
            Err((operation, source)) => {
                warn!(broker = %address, operation, error = %source, "cannot connect");
                self.session.handle_connect_failed(Instant::now());
                match operation {
                    // A broker address that does not resolve or bind is the broker's problem:
                    // back off and try the next one. Failing to make a socket is ours.
                    "connect" => Ok(()),
                    _ => Err(Error::Zmq { operation, source }),
                }
            }
        }
    }

    fn send(&mut self, message: WorkerMessage<Message>) -> Result<(), Error> {
        let Some(connection) = &self.connection else {
            debug!(command = %message.command(), "no socket, message not sent");
            return Ok(());
        };
        let command = message.command();
        trace!(%command, "sending");
        match wire::send_frames(&connection.socket, message.encode()) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => {
                self.io.send_failures += 1;
                warn!(%command, "send timed out on a full pipe, message dropped");
                Ok(())
            }
            Err(source) => Err(Error::Zmq {
                operation: "send",
                source,
            }),
        }
    }

    fn deliver(&mut self, body: Vec<Message>) -> Result<(), Error> {
        let bytes: usize = body.iter().map(|f| f.len()).sum();
        let frames = body.len();
        debug!(frames, bytes, "request");
        self.emit(|worker| Event::RequestStarted {
            worker,
            frames,
            bytes,
        });
        self.request_started = Some((Instant::now(), bytes));
        match &mut self.runner {
            Runner::Thread(thread) => thread
                .send_request(body)
                .map_err(Error::zmq("send to action thread")),
            Runner::Inline(action) => {
                let result = call_guarded(action, body);
                self.handle_result(result);
                Ok(())
            }
        }
    }

    /// Takes what the action produced and hands the reply to the session.
    fn handle_result(&mut self, result: ActionResult) {
        let (reply, panicked) = match result {
            ActionResult::Reply(reply) => (reply, false),
            ActionResult::Panicked(message) => (self.panicked(message), true),
        };
        let now = Instant::now();
        // A shutdown asked for during the action goes out right after this REPLY.
        self.check_controls(now);
        match self.session.handle_reply(now, reply) {
            ReplyOutcome::Sent if panicked => self.finish_request(RequestOutcome::Panicked),
            ReplyOutcome::Sent => self.finish_request(RequestOutcome::Replied),
            ReplyOutcome::ConnectionLost => self.finish_request(RequestOutcome::ConnectionLost),
            ReplyOutcome::Late => self.emit(|worker| Event::LateReplyDropped { worker }),
            ReplyOutcome::NoRequest => {}
        }
    }

    fn panicked(&mut self, message: String) -> Vec<Message> {
        self.io.panics += 1;
        let request_bytes = self.request_started.map_or(0, |(_, bytes)| bytes);
        error!(panic = %message, request_bytes, "action panicked, sending the panic reply");
        self.emit(|worker| Event::ActionPanicked {
            worker,
            message,
            request_bytes,
        });
        self.panic_reply
            .iter()
            .map(|frame| Message::from(frame.as_slice()))
            .collect()
    }

    fn finish_request(&mut self, outcome: RequestOutcome) {
        if let Some((started, _)) = self.request_started.take() {
            let duration = started.elapsed();
            debug!(?outcome, ?duration, "request finished");
            self.emit(|worker| Event::RequestFinished {
                worker,
                duration,
                outcome,
            });
        }
    }

    fn close(&mut self, reason: DisconnectReason, graceful: bool) {
        if let Some(connection) = self.connection.take() {
            if !graceful {
                // The broker is gone or threw us out: nothing queued is worth waiting for.
                let _ = connection.socket.set_linger(0);
            }
            info!(?reason, "disconnected");
            self.emit(|worker| Event::Disconnected { worker, reason });
        }
        if let Some((attempt, at)) = self.session.backoff() {
            let delay = at.saturating_duration_since(Instant::now());
            self.emit(|worker| Event::Reconnecting {
                worker,
                attempt,
                delay,
            });
        }
    }

    /// Waits for broker input, an action result or the next deadline, whichever is first,
    /// and feeds what came in to the session.
    fn wait_for_input(&mut self, cap: Option<Duration>) -> Result<(), Error> {
        let now = Instant::now();
        let until_deadline = self
            .session
            .next_deadline()
            .map_or(self.polling_interval, |at| {
                at.saturating_duration_since(now)
            });
        let timeout = until_deadline
            .min(self.polling_interval)
            .min(cap.unwrap_or(Duration::MAX));
        let action = match &self.runner {
            Runner::Thread(thread) if self.session.is_busy() => Some(thread.socket()),
            _ => None,
        };
        match (&self.connection, action) {
            (None, None) => {
                // No socket (backing off, drained): the shutdown handle wakes this at once.
                self.shutdown.wait_timeout(timeout);
                Ok(())
            }
            (Some(connection), None) => {
                // Only the broker to watch: a blocking receive, the cheapest wait there is. The
                // monitor matters only when the connection is gone, and then nothing arrives:
                // it is read when a wait ends empty, at least every polling interval, and costs
                // nothing per request.
                let frames = wire::recv_frames_timeout(&connection.socket, timeout)
                    .map_err(Error::zmq("recv"))?;
                match frames {
                    Some(frames) => {
                        if self.handle_frames(frames) {
                            self.read_messages()?;
                        }
                        Ok(())
                    }
                    None => self.read_link_events(),
                }
            }
            (connection, Some(action)) => {
                let ready = poll(connection.as_ref(), action, timeout)?;
                if ready.action {
                    self.read_action_result()?;
                }
                if ready.broker {
                    self.read_messages()?;
                }
                if ready.monitor {
                    self.read_link_events()?;
                }
                Ok(())
            }
        }
    }

    fn read_action_result(&mut self) -> Result<(), Error> {
        let Runner::Thread(thread) = &self.runner else {
            return Ok(());
        };
        if let Some(result) = thread
            .try_recv_result()
            .map_err(Error::zmq("recv from action thread"))?
        {
            self.handle_result(result);
        }
        Ok(())
    }

    /// Reads what is waiting. An inline worker stops as soon as a request is in hand (the
    /// action runs before anything else is read: the rest waits in the socket).
    fn read_messages(&mut self) -> Result<(), Error> {
        for _ in 0..MAX_READS_PER_PASS {
            let Some(connection) = &self.connection else {
                return Ok(());
            };
            let Some(frames) =
                wire::try_recv_frames(&connection.socket).map_err(Error::zmq("recv"))?
            else {
                return Ok(());
            };
            if !self.handle_frames(frames) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Decodes one message from the broker and feeds it to the session. Whether to read on:
    /// false once there are actions to carry out, or an inline action to run.
    fn handle_frames(&mut self, frames: Vec<Message>) -> bool {
        trace!(frames = frames.len(), "received");
        match WorkerMessage::decode(frames) {
            Ok(message) => self.session.handle_message(Instant::now(), message),
            Err(error) => {
                self.io.malformed_dropped += 1;
                warn!(%error, "malformed message from broker, dropped");
            }
        }
        let inline = matches!(self.runner, Runner::Inline(_));
        !(self.session.has_actions() || (inline && self.session.is_busy()))
    }
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

/// Which of the polled sockets have something to read.
#[derive(Debug, Clone, Copy, Default)]
struct Ready {
    broker: bool,
    monitor: bool,
    action: bool,
}

/// Polls the action thread's socket, and the broker socket with its monitor if there is a
/// connection; the poll set lives on the stack.
fn poll(
    connection: Option<&Connection>,
    action: &zmq::Socket,
    timeout: Duration,
) -> Result<Ready, Error> {
    match connection {
        Some(connection) => {
            let mut items = [
                connection.socket.as_poll_item(zmq::POLLIN),
                connection.monitor.as_poll_item(zmq::POLLIN),
                action.as_poll_item(zmq::POLLIN),
            ];
            wire::poll(&mut items, timeout).map_err(Error::zmq("poll"))?;
            Ok(Ready {
                broker: items[0].is_readable(),
                monitor: items[1].is_readable(),
                action: items[2].is_readable(),
            })
        }
        None => {
            let mut items = [action.as_poll_item(zmq::POLLIN)];
            wire::poll(&mut items, timeout).map_err(Error::zmq("poll"))?;
            Ok(Ready {
                action: items[0].is_readable(),
                ..Ready::default()
            })
        }
    }
}

impl<A> Drop for Worker<A> {
    fn drop(&mut self) {
        // A worker dropped without a shutdown still leaves politely: DISCONNECT, then a
        // bounded linger, so the broker forgets it at once instead of after its expiry.
        if let Some(connection) = self.connection.take() {
            if self.send_disconnect && self.session.state() != State::Stopped {
                let _ = self.span.in_scope(|| {
                    let frames = WorkerMessage::<Message>::Disconnect.encode();
                    debug!("dropped while connected, sending DISCONNECT");
                    wire::send_frames(&connection.socket, frames)
                });
            }
        }
    }
}

impl<A> fmt::Debug for Worker<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("endpoints", &self.endpoints)
            .field("state", &self.session.state())
            .field("connected", &self.connection.is_some())
            .field("threaded", &matches!(self.runner, Runner::Thread(_)))
            .finish_non_exhaustive()
    }
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
