//! The worker: one DEALER socket, a poll loop, and calls into the user's action.

mod wire;

use std::fmt;
use std::time::{Duration, Instant};

use tracing::{debug, info, info_span, trace, warn, Span};
use zmq::Message;

use crate::action::WorkerAction;
use crate::config::WorkerConfig;
use crate::error::Error;
use crate::protocol::WorkerMessage;
use crate::session::{Action, DisconnectReason, Session, SessionConfig, State};
use crate::shutdown::ShutdownHandle;
use wire::SocketOptions;

/// Most messages read in one poll pass before timers get their turn again.
const MAX_READS_PER_PASS: usize = 64;

/// What one call to [`Worker::receive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// One request was handled and its reply sent.
    Handled,
    /// The worker has shut down; every further call returns this at once.
    ShutDown,
}

/// Counters of a worker's life, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Requests handed to the action.
    pub requests: u64,
    /// Replies sent.
    pub replies: u64,
    /// Sockets opened after the first one.
    pub reconnects: u64,
    /// HEARTBEATs sent.
    pub heartbeats_sent: u64,
    /// Messages from the broker dropped because their frames were malformed.
    pub malformed_dropped: u64,
    /// Valid messages dropped because they made no sense in the worker's state.
    pub unexpected_dropped: u64,
    /// Messages that could not be sent within the send timeout.
    pub send_failures: u64,
}

/// A Majordomo worker: registers `service` with a broker and answers its requests.
///
/// Build it with [`Worker::new`], then call [`receive`](Self::receive) in a loop (or
/// [`run`](Self::run)); stop it from anywhere with a [`ShutdownHandle`] from
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
    action: A,
    session: Session<Message>,
    endpoints: Vec<String>,
    service: String,
    options: SocketOptions,
    polling_interval: Duration,
    context: zmq::Context,
    socket: Option<zmq::Socket>,
    shutdown: ShutdownHandle,
    send_disconnect: bool,
    span: Span,
    malformed_dropped: u64,
    send_failures: u64,
}

impl<A: WorkerAction> Worker<A> {
    /// A worker with a shutdown handle of its own.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value.
    pub fn new(config: WorkerConfig, action: A) -> Result<Worker<A>, Error> {
        Worker::with_shutdown(config, action, ShutdownHandle::new())
    }

    /// A worker that stops when `shutdown` is triggered, so one handle can stop many.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field and its value.
    pub fn with_shutdown(
        config: WorkerConfig,
        action: A,
        shutdown: ShutdownHandle,
    ) -> Result<Worker<A>, Error> {
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
        });
        let span = info_span!(
            "mdp_worker",
            service = %config.service_name,
            broker = tracing::field::Empty
        );
        Ok(Worker {
            action,
            session,
            options: SocketOptions::from_config(&config),
            polling_interval: config.polling_interval,
            context: config.context.clone().unwrap_or_default(),
            service: config.service_name,
            endpoints,
            socket: None,
            shutdown,
            send_disconnect: config.send_disconnect,
            span,
            malformed_dropped: 0,
            send_failures: 0,
        })
    }

    /// Waits for one request, answers it, and returns [`Received::Handled`]; or returns
    /// [`Received::ShutDown`] once the worker has stopped. Heartbeats, broker liveness,
    /// reconnects and malformed input are handled inside, between requests.
    ///
    /// After a shutdown every call returns `ShutDown` at once, without touching a socket.
    ///
    /// # Errors
    ///
    /// [`Error::Zmq`] when ZeroMQ fails in a way the worker cannot recover from by itself.
    pub fn receive(&mut self) -> Result<Received, Error> {
        let span = self.span.clone();
        let _entered = span.enter();
        loop {
            if self.session.state() == State::Stopped {
                return Ok(Received::ShutDown);
            }
            let now = Instant::now();
            self.check_shutdown(now);
            self.session.handle_timeout(now);
            if let Some(received) = self.run_actions()? {
                return Ok(received);
            }
            self.wait_for_input()?;
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

    /// A handle that stops this worker from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Asks the worker to stop: same as `shutdown_handle().shutdown()`. Never blocks.
    pub fn shutdown(&self) {
        self.shutdown.shutdown();
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
        let s = self.session.stats();
        WorkerStats {
            requests: s.requests,
            replies: s.replies,
            reconnects: s.reconnects,
            heartbeats_sent: s.heartbeats_sent,
            malformed_dropped: self.malformed_dropped,
            unexpected_dropped: s.unexpected_messages,
            send_failures: self.send_failures,
        }
    }

    fn check_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_shutdown() && !self.session.is_stopping() {
            self.session.handle_shutdown(now);
        }
    }

    /// Carries out every queued action. `Some` when `receive` should return.
    fn run_actions(&mut self) -> Result<Option<Received>, Error> {
        let mut handled = false;
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Connect { endpoint } => self.connect(endpoint)?,
                Action::Send(message) => self.send(message)?,
                Action::Deliver { body } => {
                    self.deliver(body);
                    handled = true;
                }
                Action::Close { reason, graceful } => self.close(reason, graceful),
                Action::Stopped => info!("worker stopped"),
            }
        }
        Ok(match (handled, self.session.state()) {
            (true, _) => Some(Received::Handled),
            (false, State::Stopped) => Some(Received::ShutDown),
            (false, _) => None,
        })
    }

    fn connect(&mut self, endpoint: usize) -> Result<(), Error> {
        self.socket = None;
        let address = &self.endpoints[endpoint];
        self.span.record("broker", address.as_str());
        match wire::open_dealer(&self.context, address, self.options) {
            Ok(socket) => {
                info!(broker = %address, "connected, sending READY");
                self.socket = Some(socket);
                let ready = WorkerMessage::Ready {
                    service: Message::from(self.service.as_str()),
                };
                self.send(ready)
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
        let Some(socket) = &self.socket else {
            debug!(command = %message.command(), "no socket, message not sent");
            return Ok(());
        };
        let command = message.command();
        trace!(%command, "sending");
        match wire::send_frames(socket, message.encode()) {
            Ok(()) => Ok(()),
            Err(zmq::Error::EAGAIN) => {
                self.send_failures += 1;
                warn!(%command, "send timed out on a full pipe, message dropped");
                Ok(())
            }
            Err(source) => Err(Error::Zmq {
                operation: "send",
                source,
            }),
        }
    }

    fn deliver(&mut self, body: Vec<Message>) {
        let size: usize = body.iter().map(|f| f.len()).sum();
        debug!(frames = body.len(), size, "request");
        let started = Instant::now();
        let reply = self.action.call(body);
        debug!(frames = reply.len(), elapsed = ?started.elapsed(), "reply");
        let now = Instant::now();
        // A shutdown asked for during the action goes out right after this REPLY.
        self.check_shutdown(now);
        self.session.handle_reply(now, reply);
    }

    fn close(&mut self, reason: DisconnectReason, graceful: bool) {
        if let Some(socket) = self.socket.take() {
            if !graceful {
                // The broker is gone or threw us out: nothing queued is worth waiting for.
                let _ = socket.set_linger(0);
            }
            info!(?reason, "disconnected");
        }
    }

    /// Waits for broker input or the next deadline, whichever is first, and feeds what came in
    /// to the session.
    fn wait_for_input(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let until_deadline = self
            .session
            .next_deadline()
            .map_or(self.polling_interval, |at| {
                at.saturating_duration_since(now)
            });
        let Some(socket) = &self.socket else {
            // Backing off with no socket: the shutdown handle wakes this wait at once.
            self.shutdown.wait_timeout(until_deadline);
            return Ok(());
        };
        let timeout = until_deadline.min(self.polling_interval);
        let ready = socket
            .poll(zmq::POLLIN, wire::millis_i64(timeout))
            .map_err(Error::zmq("poll"))?;
        if ready > 0 {
            self.read_messages()?;
        }
        Ok(())
    }

    /// Reads what is waiting, stopping as soon as a request is in hand (the action runs before
    /// anything else is read: the rest waits in the socket).
    fn read_messages(&mut self) -> Result<(), Error> {
        for _ in 0..MAX_READS_PER_PASS {
            let Some(socket) = &self.socket else {
                return Ok(());
            };
            let Some(frames) = wire::try_recv_frames(socket).map_err(Error::zmq("recv"))? else {
                return Ok(());
            };
            trace!(frames = frames.len(), "received");
            match WorkerMessage::decode(frames) {
                Ok(message) => self.session.handle_message(Instant::now(), message),
                Err(error) => {
                    self.malformed_dropped += 1;
                    warn!(%error, "malformed message from broker, dropped");
                }
            }
            if self.session.is_busy() || self.session.has_actions() {
                return Ok(());
            }
        }
        Ok(())
    }
}

impl<A> Drop for Worker<A> {
    fn drop(&mut self) {
        // A worker dropped without a shutdown still leaves politely: DISCONNECT, then a
        // bounded linger, so the broker forgets it at once instead of after its expiry.
        if let Some(socket) = self.socket.take() {
            if self.send_disconnect && self.session.state() != State::Stopped {
                let _ = self.span.in_scope(|| {
                    let frames = WorkerMessage::<Message>::Disconnect.encode();
                    debug!("dropped while connected, sending DISCONNECT");
                    wire::send_frames(&socket, frames)
                });
            }
        }
    }
}

impl<A> fmt::Debug for Worker<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("service", &self.service)
            .field("endpoints", &self.endpoints)
            .field("state", &self.session.state())
            .field("connected", &self.socket.is_some())
            .finish_non_exhaustive()
    }
}

/// A seed for reconnect jitter that differs between workers and processes.
fn seed() -> u64 {
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
