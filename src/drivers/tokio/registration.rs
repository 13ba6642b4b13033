//! One registration of an [`AsyncWorker`](super::AsyncWorker): a session, its DEALER and
//! monitor as [`AsyncSocket`]s, and the action's task, driven by one tokio task. Like the
//! sync worker it only moves frames, time and results into the session and carries the
//! session's actions out.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{Instrument, Span};
use zmq::Message;

use super::{AsyncAction, ReplyFuture};
use crate::drivers::panics::CatchUnwind;
use crate::drivers::request_timer::RequestTimer;
use crate::drivers::step::{self, Reports};
use crate::error::Error;
use crate::events::EventSink;
use crate::io::async_socket::AsyncSocket;
use crate::io::transport::{self, LinkEvent, SocketOptions, TransportError};
use crate::protocol::WorkerMessage;
use crate::session::{Action, Session, State};
use crate::shutdown::{DrainHandle, ShutdownHandle};
use crate::stats::{StatsCell, WorkerStats};

/// The DEALER and its monitor, registered with the runtime.
struct AsyncConnection {
    dealer: AsyncSocket,
    monitor: AsyncSocket,
    /// Whether the connection came up (handshake passed, or the broker spoke).
    up: bool,
}

impl AsyncConnection {
    /// Registers a monitored DEALER and its monitor with the runtime. On failure the monitor
    /// is stopped before its reader closes, as when a connection is dropped.
    fn register(socket: zmq::Socket, monitor: zmq::Socket) -> Result<AsyncConnection, Error> {
        let failed = Error::io("register with tokio");
        let mut dealer = match AsyncSocket::try_new(socket) {
            Ok(dealer) => dealer,
            Err((error, mut socket)) => {
                transport::stop_monitor(&mut socket, &monitor);
                return Err(failed(error));
            }
        };
        match AsyncSocket::try_new(monitor) {
            Ok(monitor) => Ok(AsyncConnection {
                dealer,
                monitor,
                up: false,
            }),
            Err((error, monitor)) => {
                transport::stop_monitor(dealer.socket_mut(), &monitor);
                Err(failed(error))
            }
        }
    }
}

impl Drop for AsyncConnection {
    /// Stops the monitor while its reader is open (see `transport::stop_monitor`).
    fn drop(&mut self) {
        transport::stop_monitor(self.dealer.socket_mut(), self.monitor.socket());
    }
}

/// What ended a wait.
enum Input {
    Frames(Result<Vec<Message>, TransportError>),
    Monitor(Result<Option<LinkEvent>, TransportError>),
    /// The action's reply, or its panic's message.
    Result(Result<Vec<Message>, String>),
    Timer,
    Control,
}

/// Everything a registration shares with the others of its worker.
pub(super) struct Shared<A> {
    pub(super) action: Arc<A>,
    pub(super) options: SocketOptions,
    pub(super) shutdown: ShutdownHandle,
    pub(super) drain: DrainHandle,
    pub(super) events: Option<EventSink>,
}

pub(super) struct Registration<A> {
    session: Session<Message>,
    context: zmq::Context,
    shared: Arc<Shared<A>>,
    reports: Reports,
    connection: Option<AsyncConnection>,
    /// The action's future for the request in hand, polled by this task itself: one request
    /// at a time per registration, so a task of its own would only add a spawn and a wake-up.
    task: Option<CatchUnwind<ReplyFuture>>,
}

impl<A: AsyncAction> Registration<A> {
    pub(super) fn new(
        session: Session<Message>,
        context: zmq::Context,
        shared: Arc<Shared<A>>,
        stats: Arc<StatsCell>,
        timer: RequestTimer,
    ) -> Registration<A> {
        let reports = Reports::new(stats, shared.events.clone(), timer);
        Registration {
            session,
            context,
            shared,
            reports,
            connection: None,
            task: None,
        }
    }

    /// Serves until the session stops; returns the final counters.
    pub(super) async fn run(self, control: watch::Receiver<()>) -> Result<WorkerStats, Error> {
        let id = self.session.id().clone();
        let span = tracing::info_span!(parent: Span::current(), "mdp_worker", service = %id.service, worker = id.number);
        self.serve(control).instrument(span).await
    }

    async fn serve(mut self, mut control: watch::Receiver<()>) -> Result<WorkerStats, Error> {
        loop {
            let now = Instant::now();
            self.check_controls(now);
            self.session.handle_timeout(now);
            self.cancel_if_answered(now);
            let carried = self.run_actions();
            self.publish();
            carried?;
            if self.session.state() == State::Stopped {
                return Ok(self.session.stats());
            }
            let input = self.wait(&mut control).await;
            self.handle_input(input)?;
        }
    }

    /// Feeds shutdown and drain requests to the session (which times a shutdown's grace).
    fn check_controls(&mut self, now: Instant) {
        let (shutdown, drain) = (&self.shared.shutdown, &self.shared.drain);
        step::check_controls(&mut self.session, now, shutdown, drain);
    }

    /// A request already answered (deadline, grace) needs its action no more: cancel it.
    fn cancel_if_answered(&mut self, now: Instant) {
        if self.session.poll_cancel(now) {
            self.task = None; // dropping the future cancels the action
        }
    }

    fn run_actions(&mut self) -> Result<(), Error> {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Connect { .. } => self.open()?,
                Action::Send(message) => {
                    if matches!(message, WorkerMessage::Reply { .. }) {
                        self.publish();
                    }
                    self.send(message)?;
                }
                Action::Deliver { body } => {
                    self.task = Some(CatchUnwind(self.shared.action.call(body)));
                }
                Action::Close { graceful, .. } => self.close(graceful),
                Action::Drained | Action::Stopped => {}
            }
        }
        Ok(())
    }

    fn open(&mut self) -> Result<(), Error> {
        self.close(false);
        let address = self.session.endpoint_address().to_string();
        let options = &self.shared.options;
        let (socket, monitor) =
            match transport::open_monitored_dealer(&self.context, &address, options) {
                Ok(sockets) => sockets,
                Err(error) => return step::handle_open_failed(&mut self.session, &address, error),
            };
        self.connection = Some(AsyncConnection::register(socket, monitor)?);
        Ok(())
    }

    fn send(&mut self, message: WorkerMessage<Message>) -> Result<(), Error> {
        let Some(connection) = &self.connection else {
            return Ok(());
        };
        let command = message.command();
        let sent = transport::try_send_frames(connection.dealer.socket(), message.encode());
        Ok(self.session.handle_sent(command, sent)?)
    }

    fn close(&mut self, graceful: bool) {
        if let Some(mut connection) = self.connection.take() {
            connection.up |= step::read_up_events(connection.monitor.socket());
            step::close(connection.dealer.socket(), graceful, connection.up);
        }
    }

    /// Waits for the broker, the monitor (until the connection is up), the action, the next
    /// deadline or a shutdown/drain/resume, whichever comes first.
    async fn wait(&mut self, control: &mut watch::Receiver<()>) -> Input {
        let deadline = self.session.next_deadline();
        let (dealer, monitor) = match self.connection.as_mut() {
            Some(c) if c.up => (Some(&mut c.dealer), None),
            Some(c) => (Some(&mut c.dealer), Some(&mut c.monitor)),
            None => (None, None),
        };
        let task = self.task.as_mut();
        tokio::select! {
            frames = recv(dealer) => Input::Frames(frames),
            event = recv_event(monitor) => Input::Monitor(event),
            result = async { match task { Some(task) => task.await, None => std::future::pending().await } } => Input::Result(result),
            () = sleep(deadline) => Input::Timer,
            _ = control.changed() => Input::Control,
        }
    }

    fn handle_input(&mut self, input: Input) -> Result<(), Error> {
        let now = Instant::now();
        match input {
            Input::Frames(frames) => {
                let frames = frames?;
                if let Some(connection) = &mut self.connection {
                    connection.up = true;
                }
                self.session.handle_frames(now, frames);
            }
            Input::Monitor(event) => {
                if let Some(event) = event? {
                    self.handle_link_event(now, event);
                }
            }
            Input::Result(result) => {
                self.task = None;
                self.handle_result(now, result);
            }
            // After an empty wait the monitor is read (a dropped connection is silence).
            Input::Timer => self.read_link_events(now),
            Input::Control => {}
        }
        Ok(())
    }

    fn handle_result(&mut self, now: Instant, result: Result<Vec<Message>, String>) {
        // A shutdown asked for during the action goes out right after this REPLY.
        self.check_controls(now);
        step::handle_result(&mut self.session, now, result.into());
    }

    fn read_link_events(&mut self, now: Instant) {
        while let Some(connection) = &self.connection {
            match transport::try_recv_event(connection.monitor.socket()) {
                Ok(Some(event)) => self.handle_link_event(now, event),
                _ => return,
            }
        }
    }

    fn handle_link_event(&mut self, now: Instant, event: LinkEvent) {
        let options = &self.shared.options;
        if step::handle_link_event(&mut self.session, now, event, options) {
            if let Some(connection) = &mut self.connection {
                connection.up = true;
            }
        }
    }

    fn publish(&mut self) {
        self.reports.publish(&mut self.session);
    }
}

impl<A> Drop for Registration<A> {
    fn drop(&mut self) {
        self.reports.retire(&self.session);
        // Dropped mid-way (the run future was dropped): the action's future goes with it, and
        // closing must not make the context wait for a linger.
        if let Some(connection) = self.connection.take() {
            transport::discard_on_close(connection.dealer.socket());
        }
    }
}

/// Receives from `socket`, or never if there is none.
async fn recv(socket: Option<&mut AsyncSocket>) -> Result<Vec<Message>, TransportError> {
    match socket {
        Some(socket) => socket.recv().await,
        None => std::future::pending().await,
    }
}

/// Receives the next event from `monitor`, or never if there is none.
async fn recv_event(
    monitor: Option<&mut AsyncSocket>,
) -> Result<Option<LinkEvent>, TransportError> {
    match monitor {
        Some(monitor) => monitor.recv_event().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or for ever if there is none.
async fn sleep(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
