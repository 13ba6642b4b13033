//! An embeddable MDP/0.1 broker, for trying and testing workers without anything else.
//!
//! One ROUTER socket serves clients (`MDPC01`) and workers (`MDPW01`) alike, with the
//! semantics of the zguide reference broker (`mdbroker.c`): per-service request queues
//! (bounded), least recently used idle workers, heartbeats to idle workers and expiry of
//! silent ones, DISCONNECT for a second READY and for a HEARTBEAT or REPLY from an unknown
//! worker, and the `mmi.service` lookup of 8/MMI. Malformed messages are logged and dropped.
//!
//! # Quick start
//!
//! ```
//! use majordomo_worker::broker::{Broker, BrokerConfig};
//!
//! let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))?;
//! let handle = broker.spawn()?; // runs on its own thread
//! println!("broker on {}", handle.endpoint()); // the port the OS picked
//! let stats = handle.stop()?; // DISCONNECT to workers, close, join
//! assert_eq!(stats.requests_received, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Or in the foreground of a program: `broker.stop_handle().stop_on_signals()?` then
//! `broker.run()?` (see `examples/broker.rs`).
//!
//! # Layers
//!
//! The decisions live in a pure state machine (messages and time in, frames out) tested with
//! simulated time; [`Broker`] only polls the socket, feeds it and sends what it returns.

mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
#[cfg(feature = "metrics")]
mod metrics;
mod state;
mod stats;
mod zap;

use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tracing::{debug, info, info_span, warn};

use crate::checks::ConfigError;
use crate::io::transport::{self, TransportError, ZmqOperation};
use crate::io::wake::Waker;
pub use config::{
    BrokerConfig, DEFAULT_LINGER, DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUED_TOTAL,
    DEFAULT_MAX_QUEUE_AGE, DEFAULT_MAX_SERVICES,
};
pub use handle::{BrokerHandle, StopHandle};
use state::BrokerState;
pub use stats::BrokerStats;
use stats::SharedStats;
use zap::{Verdict, ZapHandler, ZAP_ENDPOINT};

/// Longest single poll wait: bounds how long a stop by signal (which sets a flag and wakes
/// nothing) and a metrics snapshot query wait to be seen.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Messages read per loop turn before timers run again, so a flood cannot starve heartbeats.
const MAX_READS_PER_TURN: usize = 1000;
/// Shortest poll wait: ZeroMQ counts whole milliseconds, and a wait of none would spin.
const MIN_POLL: Duration = Duration::from_millis(1);

/// The listen queue of a `tcp://` bind (`ZMQ_BACKLOG`; the kernel caps it at
/// `net.core.somaxconn`). libzmq's default of 100 drops the SYNs of a pool of thousands
/// of workers that connect at once; the kernel retransmits them after 1 s, then 3 s, and a
/// worker with a shorter liveness window gives up on the connection and tries another: a
/// pool of 2 000 took tens of seconds to register instead of one or two.
const LISTEN_BACKLOG: i32 = 4096;

/// What can stop a broker from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A configuration value was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The ROUTER socket could not be bound (address in use, unknown interface, ...), or, with
    /// PLAIN users, the ZAP handler could not bind `inproc://zeromq.zap.01` (another ZAP
    /// handler runs in the same context).
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        /// The endpoint as configured.
        endpoint: String,
        /// ZeroMQ's error.
        #[source]
        source: zmq::Error,
    },
    /// A ZeroMQ call failed in a way the broker cannot recover from (context terminated, ...).
    #[error("zmq {operation} failed: {source}")]
    Zmq {
        /// The ZeroMQ call that failed.
        operation: ZmqOperation,
        /// ZeroMQ's error.
        #[source]
        source: zmq::Error,
    },
    /// The broker thread could not be started.
    #[error("cannot start the broker thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The broker thread panicked (a bug: please report it).
    #[error("the broker thread panicked")]
    Panicked,
}

impl From<TransportError> for BrokerError {
    fn from(error: TransportError) -> BrokerError {
        BrokerError::Zmq {
            operation: error.operation,
            source: error.source,
        }
    }
}

/// A bound MDP/0.1 broker, ready to [`run`](Broker::run) here or [`spawn`](Broker::spawn)
/// on a thread of its own.
pub struct Broker {
    // Declared before the context: the sockets must close before the context is dropped.
    socket: zmq::Socket,
    zap: Option<(zmq::Socket, ZapHandler)>,
    auth: AuthCounters,
    endpoint: String,
    config: BrokerConfig,
    state: BrokerState,
    stop: StopHandle,
    /// Woken by the stop handle, so that a stop is seen at once; none if no socket pair
    /// could be made (a stop then waits for the next poll interval).
    waker: Option<Arc<Waker>>,
    stats: SharedStats,
    /// Snapshot queries of the metrics (feature `metrics`), answered between loop turns.
    #[cfg(feature = "metrics")]
    snapshots: Option<metrics::SnapshotQueries>,
    _context: zmq::Context,
}

impl Broker {
    /// Validates `config`, creates the ROUTER socket and binds it; with PLAIN users, binds
    /// the ZAP handler first, so that no connection is ever let in unchecked.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Config`] for a refused value, [`BrokerError::Bind`] if the endpoint
    /// (or the ZAP endpoint) cannot be bound, [`BrokerError::Zmq`] if a socket cannot be
    /// created or configured.
    pub fn bind(config: BrokerConfig) -> Result<Broker, BrokerError> {
        config.validate()?;
        let context = config.context.clone().unwrap_or_default();
        let zap = bind_zap(&context, &config)?;
        // ROUTER_MANDATORY: a request sent to a worker that died since its last heartbeat
        // fails instead of vanishing, and goes to the next worker.
        let socket = transport::open_router(
            &context,
            config.linger,
            config.max_message_size,
            LISTEN_BACKLOG,
            !config.plain_users.is_empty(),
            config.curve_server.as_ref(),
        )?;
        transport::bind(&socket, &config.bind).map_err(|source| BrokerError::Bind {
            endpoint: config.bind.clone(),
            source,
        })?;
        let endpoint = transport::bound_endpoint(&socket).unwrap_or_else(|| config.bind.clone());
        let settings = config.settings();
        let stats = SharedStats::default();
        #[cfg(feature = "metrics")]
        let snapshots = (config.metrics.as_ref()).map(|m| metrics::register(m, stats.clone()));
        let stop = StopHandle::default();
        let waker = Waker::new().ok();
        if let Some(waker) = &waker {
            stop.register_waker(waker);
        }
        Ok(Broker {
            socket,
            zap,
            auth: AuthCounters::default(),
            endpoint,
            state: BrokerState::new(settings, Instant::now()),
            config,
            stop,
            waker,
            stats,
            #[cfg(feature = "metrics")]
            snapshots,
            _context: context,
        })
    }

    /// The endpoint the socket is bound to, with a wildcard port resolved.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A handle that stops [`run`](Self::run) from another thread or a signal.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The statistics so far.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            auth_accepted: self.auth.accepted,
            auth_denied: self.auth.denied,
            ..self.state.stats()
        }
    }

    /// Runs the broker on a new thread; the handle stops it (also when dropped).
    ///
    /// # Errors
    ///
    /// [`BrokerError::Spawn`] if the thread cannot be started.
    pub fn spawn(self) -> Result<BrokerHandle, BrokerError> {
        let endpoint = self.endpoint.clone();
        let stop = self.stop.clone();
        let stats = self.stats.clone();
        let thread = thread::Builder::new()
            .name("mdp-broker".into())
            .spawn(move || self.run())
            .map_err(BrokerError::Spawn)?;
        Ok(BrokerHandle {
            endpoint,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// Serves clients and workers until the [`StopHandle`] is used, then sends DISCONNECT
    /// to every known worker (unless configured otherwise) and closes the socket with the
    /// configured linger. Returns the final statistics.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Zmq`] if polling or receiving fails for good (the context was
    /// terminated under the broker).
    pub fn run(mut self) -> Result<BrokerStats, BrokerError> {
        let span = info_span!("broker", endpoint = %self.endpoint);
        let _entered = span.enter();
        info!("broker running");
        while !self.stop.is_stopped() {
            self.turn()?;
        }
        self.close();
        Ok(self.stats())
    }

    /// One loop turn: wait for input, read it, run the timers, send what is due.
    fn turn(&mut self) -> Result<(), BrokerError> {
        let (router_ready, zap_ready) = self.wait_readable()?;
        if zap_ready {
            self.answer_zap()?;
        }
        if router_ready {
            self.read_messages()?;
        }
        self.state.handle_timeout(Instant::now());
        self.flush();
        self.stats.publish(self.stats());
        #[cfg(feature = "metrics")]
        if let Some(queries) = &self.snapshots {
            queries.answer(|| self.state.snapshot());
        }
        Ok(())
    }

    /// Waits until the ROUTER or the ZAP handler has input, or the next deadline.
    fn wait_readable(&self) -> Result<(bool, bool), BrokerError> {
        let until_deadline = self
            .state
            .next_deadline()
            .saturating_duration_since(Instant::now());
        // At least a millisecond: a deadline due now is handled after one short look.
        let timeout = until_deadline.min(POLL_INTERVAL).max(MIN_POLL);
        let zap = self.zap.as_ref().map(|(zap, _)| zap);
        let waker = self.waker.as_deref();
        let ready = transport::poll_inputs(Some(&self.socket), zap, waker, Some(timeout))?;
        if let Some(waker) = waker {
            waker.clear();
        }
        Ok((ready.socket, ready.other))
    }

    /// Answers every waiting ZAP request (the REP socket takes them one at a time).
    fn answer_zap(&mut self) -> Result<(), BrokerError> {
        let Some((zap, handler)) = &self.zap else {
            return Ok(());
        };
        while let Some(request) = transport::try_recv_zap_request(zap)? {
            let (reply, verdict) = handler.handle_request(&request);
            let address = request
                .get(3)
                .map(|a| String::from_utf8_lossy(a).into_owned());
            match verdict {
                Verdict::Accepted { user } => {
                    self.auth.accepted += 1;
                    debug!(user, address, "authenticated");
                }
                Verdict::Denied { user, mechanism } => {
                    self.auth.denied += 1;
                    warn!(
                        user,
                        mechanism,
                        address,
                        "authentication refused: unknown user, wrong password or unlisted key"
                    );
                }
                Verdict::Malformed => warn!("malformed ZAP request, refused"),
            }
            transport::send_zap_reply(zap, reply)?;
        }
        Ok(())
    }

    fn read_messages(&mut self) -> Result<(), BrokerError> {
        for _ in 0..MAX_READS_PER_TURN {
            let Some(frames) = transport::try_recv_routed(&self.socket)? else {
                break;
            };
            self.state.handle_message(Instant::now(), frames);
            self.flush();
        }
        Ok(())
    }

    /// Sends everything the state machine queued. Sends never wait: a ROUTER drops messages
    /// to unknown peers, and a full pipe drops the message, which is counted and logged.
    ///
    /// The statistics are published first, so that a peer holding a reply finds it counted
    /// in [`BrokerHandle::stats`].
    fn flush(&mut self) {
        if !self.state.has_outgoing() {
            return;
        }
        self.stats.publish(self.stats());
        while let Some(frames) = self.state.poll_send() {
            match transport::send_routed(&self.socket, frames) {
                Ok(()) => {}
                Err(transport::RoutedSendError::Unroutable(frames)) => {
                    self.state.handle_unroutable(frames);
                }
                Err(transport::RoutedSendError::Failed(error)) => {
                    self.state.handle_send_failure();
                    warn!(%error, "send failed, message dropped");
                }
            }
        }
    }

    fn close(&mut self) {
        if self.config.disconnect_on_stop {
            self.state.handle_stop();
            self.flush();
        }
        self.stats.publish(self.stats());
        info!("broker stopped");
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .field("stats", &self.state.stats())
            .finish_non_exhaustive()
    }
}

/// Authentication outcomes, counted by the loop beside the state machine's counters.
#[derive(Debug, Clone, Copy, Default)]
struct AuthCounters {
    accepted: u64,
    denied: u64,
}

/// With PLAIN users or CURVE client keys, a REP socket bound on the ZAP endpoint and the
/// handler behind it.
fn bind_zap(
    context: &zmq::Context,
    config: &BrokerConfig,
) -> Result<Option<(zmq::Socket, ZapHandler)>, BrokerError> {
    if config.plain_users.is_empty() && config.curve_clients.is_empty() {
        return Ok(None);
    }
    let socket = transport::open_zap_handler(context)?;
    transport::bind(&socket, ZAP_ENDPOINT).map_err(|source| BrokerError::Bind {
        endpoint: ZAP_ENDPOINT.to_string(),
        source,
    })?;
    let handler = ZapHandler::new(&config.plain_users, &config.curve_clients);
    Ok(Some((socket, handler)))
}
