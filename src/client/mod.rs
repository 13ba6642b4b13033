//! An MDP/0.1 client: one request, one reply, with a timeout and retries.
//!
//! ```no_run
//! use std::time::Duration;
//! use majordomo_worker::client::{Client, ClientConfig};
//!
//! let config = ClientConfig::new("tcp://127.0.0.1:5555")
//!     .timeout(Duration::from_secs(1))
//!     .retries(2);
//! let mut client = Client::connect(config)?;
//! let reply = client.request("echo", &["hello"])?; // Vec<Vec<u8>>, the reply body frames
//! assert_eq!(reply, vec![b"hello".to_vec()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The client speaks on a DEALER socket and, like the zguide reference client, closes it and
//! opens a new one (a new routing identity) before each retry: a reply that arrives late can
//! never be taken for the answer to a later request.
//!
//! **Failing fast.** Before its first request for a service on a broker, and again after an
//! attempt that got no reply, the client asks the broker whether the service has workers
//! (8/MMI `mmi.service`; see [`ClientConfig::lookups`]). With none, it asks again every
//! [`LOOKUP_INTERVAL`] (a worker may be starting with the client) and sends the request once
//! one is there; if none came within the attempt's timeout, the request fails with
//! [`ClientError::NoWorker`] without being sent (again): nothing is left queued in the broker
//! for a client that stopped waiting. A broker that does not answer such lookups (not
//! every broker supports 8/MMI) is not asked again, and its requests are simply sent. The
//! socket sends only over a connection that is up (`ZMQ_IMMEDIATE`): when no connection came
//! up within the timeout, nothing was sent, and the request fails with
//! [`ClientError::Unreachable`] once every broker was tried that way.
//!
//! **Failover.** The broker address may be a comma-separated list, as for workers. Each
//! attempt that gets no reply (or no connection) moves the client on to the next broker in the
//! list, for this request and the ones after it.
//!
//! **A retried request may run twice**: the first worker may have done the work and only its
//! reply been lost or late. Make the actions behind a service idempotent, or use no retries.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use tracing::{debug, trace, warn};

use crate::checks::{check_max_message_size, invalid, parse_endpoints, positive, ConfigError};
use crate::config::DEFAULT_MAX_MESSAGE_SIZE;
use crate::io::security::{check_curve, CurveClient, CurveKeys, PlainCredentials};
use crate::io::transport::{self, SocketOptions, TransportError, ZmqOperation};
use crate::protocol::mmi::MmiError;
use crate::protocol::{check_service_name, ClientMessage, ProtocolError};
use crate::session::SendOutcome;

#[cfg(feature = "tokio")]
pub(crate) mod async_client;
mod route;

pub(crate) use route::{Lookup, Miss, Routes, Step};

/// Reply timeout of the reference client (zguide `mdcliapi`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);
/// Retries of the reference client: up to four attempts in all.
pub const DEFAULT_RETRIES: u32 = 3;
/// Requests an async client keeps in flight at once, each on a socket of its own (MDP has no
/// request id). A ZeroMQ context holds at most 1023 sockets by default (`ZMQ_MAX_SOCKETS`):
/// half of them leaves room for the rest of the process (a broker or workers sharing the
/// context) and keeps the client from ever failing on the context's limit.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Longest wait for the answer to a service lookup (`mmi.service`), within the attempt's
/// timeout. Brokers with 8/MMI answer at once, from their own tables; brokers without it
/// never do, and cost a first request at most this much once per client.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(1);
/// How often a lookup that found no worker asks again, within the attempt's timeout: a worker
/// that registers meanwhile (one starting with the client) is found this fast.
pub const LOOKUP_INTERVAL: Duration = Duration::from_millis(25);

/// How a [`Client`] reaches its broker.
#[derive(Clone)]
pub struct ClientConfig {
    broker: String,
    timeout: Duration,
    retries: u32,
    max_message_size: u64,
    max_in_flight: usize,
    lookups: bool,
    plain: Option<PlainCredentials>,
    curve: Option<CurveClient>,
    context: Option<zmq::Context>,
}

impl ClientConfig {
    /// A configuration for the broker at `broker` (`tcp://host:port`, `ipc://…`,
    /// `inproc://…`), or a comma-separated list of brokers, checked as a worker's
    /// `broker_address` is: the client starts with the first and moves on to the next after
    /// each attempt that gets no reply. Everything else has its default.
    pub fn new(broker: impl Into<String>) -> Self {
        ClientConfig {
            broker: broker.into(),
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            lookups: true,
            plain: None,
            curve: None,
            context: None,
        }
    }

    /// How long each attempt waits, for a connection to the broker and then for the reply.
    /// Must not be zero. Defaults to 2500 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many times a request is sent again, on a new socket, after a timeout. Defaults to 3.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Largest reply frame, in bytes, the client accepts (`ZMQ_MAXMSGSIZE`, checked on each
    /// frame): a larger one makes ZeroMQ drop the connection, and the attempt ends in a
    /// timeout. Must not be zero. Defaults to 256 MiB.
    pub fn max_message_size(mut self, max_message_size: u64) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// How many requests an async client (`AsyncClient`, feature `tokio`) keeps in flight at
    /// once, each on a socket of its own; more wait for one to finish. It also bounds the
    /// idle sockets kept for reuse. The sync [`Client`] has one request in flight and ignores
    /// it. Must not be zero. Defaults to 512 ([`DEFAULT_MAX_IN_FLIGHT`]: half the sockets a
    /// ZeroMQ context holds by default).
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Whether the client asks the broker (8/MMI `mmi.service`) whether a service has
    /// workers before its first request for it on that broker, and again after an attempt
    /// that got no reply; with none, it asks again every [`LOOKUP_INTERVAL`] and sends the
    /// request once one is there, or fails with [`ClientError::NoWorker`] after the attempt's
    /// timeout, the request unsent. A broker that gives no answer within [`LOOKUP_WAIT`], or one other than
    /// `200`/`404` (`400` for the JeroMQ broker), is not asked again. Turn it off to put
    /// nothing but the requests themselves on the wire. Defaults to `true`.
    pub fn lookups(mut self, lookups: bool) -> Self {
        self.lookups = lookups;
        self
    }

    /// Presents these ZMQ PLAIN credentials to the broker, whose ZAP handler accepts or
    /// refuses them; a refused client never gets a connection up (its requests end in
    /// [`ClientError::Unreachable`]). PLAIN sends both **in clear text**. The username must not be
    /// empty; both must be at most 255 bytes. Defaults to none (no authentication).
    pub fn plain_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.plain = Some(PlainCredentials::new(username, password));
        self
    }

    /// Connects with CURVE: encrypted, and the broker holding the secret key of
    /// `server_public_key` is authenticated. Needs a libzmq with CURVE support
    /// ([`curve_available`](crate::curve_available)); cannot be combined with PLAIN.
    /// Defaults to none.
    pub fn curve_credentials(mut self, keys: CurveKeys, server_public_key: [u8; 32]) -> Self {
        self.curve = Some(CurveClient {
            keys,
            server_key: server_public_key,
        });
        self
    }

    /// A ZeroMQ context to create sockets in, shared with an `inproc://` broker.
    /// Defaults to a context of the client's own.
    pub fn context(mut self, context: zmq::Context) -> Self {
        self.context = Some(context);
        self
    }

    /// The broker endpoint, or comma-separated list, as given.
    pub fn broker_endpoint(&self) -> &str {
        &self.broker
    }

    /// The routes over the broker list.
    pub(crate) fn routes(&self) -> Result<Routes, ConfigError> {
        Ok(Routes::new(parse_endpoints(&self.broker)?, self.lookups))
    }

    /// Attempts per request: the first and `retries` more.
    pub(crate) fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// How long each attempt waits.
    pub(crate) fn reply_timeout(&self) -> Duration {
        self.timeout
    }

    /// The bound on requests in flight (async client).
    #[cfg(feature = "tokio")]
    pub(crate) fn in_flight_limit(&self) -> usize {
        self.max_in_flight
    }

    /// The context given, or a new one of the client's own.
    pub(crate) fn context_or_new(&self) -> zmq::Context {
        self.context.clone().unwrap_or_default()
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, naming the field and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_endpoints(&self.broker)?;
        positive("timeout", self.timeout)?;
        check_max_message_size(self.max_message_size)?;
        if self.max_in_flight == 0 {
            return Err(invalid("max_in_flight", 0, "must be at least 1"));
        }
        if let Some(plain) = &self.plain {
            plain.validate()?;
        }
        match &self.curve {
            Some(_) => check_curve("curve_credentials", self.plain.is_some()),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("broker", &self.broker)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("max_message_size", &self.max_message_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("lookups", &self.lookups)
            .field("plain", &self.plain)
            .field("curve", &self.curve)
            .field("shared_context", &self.context.is_some())
            .finish()
    }
}

/// Why a request got no usable reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A configuration value was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service name cannot be sent (empty, or longer than 255 bytes).
    #[error("invalid service name: {source}")]
    InvalidService {
        /// The name given.
        service: String,
        /// What is wrong with it.
        #[source]
        source: ProtocolError,
    },
    /// No reply came within the timeout, on any attempt.
    #[error("no reply from service {service} after {attempts} attempt(s)")]
    Timeout {
        /// The service addressed.
        service: String,
        /// Attempts made, each on a new socket: at most `retries + 1`.
        attempts: u32,
    },
    /// The broker said that no worker serves the service (`mmi.service` 404), or every broker
    /// of the list said so or could not be reached. The request was not sent again after
    /// that answer; if the answer came before the first attempt, it was not sent at all.
    #[error("no worker for `{service}`")]
    NoWorker {
        /// The service addressed.
        service: String,
    },
    /// No connection to any broker came up within the timeout of any attempt: nothing
    /// listens there, or it refused the security handshake. Nothing was sent.
    #[error("nothing answers at {}", endpoints.join(", "))]
    Unreachable {
        /// The broker endpoints tried.
        endpoints: Vec<String>,
    },
    /// The reply was not a valid MDP/0.1 client message.
    #[error("malformed reply: {0}")]
    Protocol(#[from] ProtocolError),
    /// The reply names another service than the one addressed.
    #[error("reply from service {found}, expected {expected}")]
    WrongService {
        /// The service addressed.
        expected: String,
        /// The service the reply named (lossy UTF-8).
        found: String,
    },
    /// The broker answered `501` to an `mmi.` extension it does not support (only ours
    /// answers `mmi.services` and `mmi.stats`).
    #[error("{service} is not supported by this broker (501)")]
    Unsupported {
        /// The `mmi.` service asked.
        service: String,
    },
    /// An `mmi.service` reply that is neither `200` nor `404`.
    #[error("unexpected mmi reply code {code}")]
    UnexpectedMmiCode {
        /// The code received (lossy UTF-8, empty if none).
        code: String,
    },
    /// A ZeroMQ call failed.
    #[error("zmq {operation} failed: {source}")]
    Zmq {
        /// The ZeroMQ call that failed.
        operation: ZmqOperation,
        /// ZeroMQ's error.
        #[source]
        source: zmq::Error,
    },
    /// The async runtime refused what the async client needs: no tokio runtime is running,
    /// or a socket's descriptor could not be registered with it.
    #[error("{operation} failed: {source}")]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The error it gave.
        #[source]
        source: std::io::Error,
    },
}

/// The clients report an MMI reply they cannot read as before `MmiError` existed: a `501` as
/// [`ClientError::Unsupported`], anything else as [`ClientError::UnexpectedMmiCode`].
impl From<MmiError> for ClientError {
    fn from(error: MmiError) -> ClientError {
        match error {
            MmiError::Unsupported { service } => ClientError::Unsupported { service },
            MmiError::UnexpectedCode { code } => ClientError::UnexpectedMmiCode { code },
            MmiError::Malformed { what } => ClientError::UnexpectedMmiCode { code: what },
        }
    }
}

impl From<TransportError> for ClientError {
    fn from(error: TransportError) -> ClientError {
        ClientError::Zmq {
            operation: error.operation,
            source: error.source,
        }
    }
}

/// An MDP/0.1 client of one broker, or of a list of brokers it fails over between.
pub struct Client {
    // Declared before the context: the socket must close before the context is dropped.
    /// The open socket, and the number of the broker it is connected to.
    socket: Option<(usize, zmq::Socket)>,
    routes: Routes,
    config: ClientConfig,
    context: zmq::Context,
}

/// How one exchange (a request or a lookup) on a socket ended.
#[derive(Debug)]
pub(crate) enum Exchange<F> {
    /// A message came back.
    Reply(F),
    /// No connection came up within the timeout: nothing was sent.
    NotConnected,
    /// Sent, and nothing came back in time.
    NoReply,
}

impl Client {
    /// Validates `config` and connects a socket to the first broker (ZeroMQ connects in the
    /// background: a broker that is not up yet is not an error).
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] for a refused value, [`ClientError::Zmq`] if the socket cannot
    /// be created or connected.
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let context = config.context_or_new();
        let routes = config.routes()?;
        let socket = open_dealer(&context, &config, routes.endpoint(0))?;
        Ok(Client {
            socket: Some((0, socket)),
            routes,
            config,
            context,
        })
    }

    /// Sends `body` to `service` and returns the reply body frames. Waits up to the timeout
    /// for the reply, then retries on a new socket, at the next broker of the list, up to
    /// `retries` times. Looks the service up first (see [`ClientConfig::lookups`]).
    ///
    /// Body frames are anything that dereferences to bytes or text: `&str`, `String`,
    /// `&[u8]`, `Vec<u8>`, [`zmq::Message`].
    ///
    /// A retried request may be carried out twice by workers: see the [module docs](self).
    ///
    /// # Errors
    ///
    /// [`ClientError::NoWorker`] when the broker says nobody serves `service`;
    /// [`ClientError::Unreachable`] when no connection came up; [`ClientError::Timeout`] when
    /// no attempt got a reply; [`ClientError::Protocol`] or [`ClientError::WrongService`] for
    /// a reply that does not answer this request; [`ClientError::InvalidService`] for a name
    /// that cannot be sent; [`ClientError::Zmq`].
    pub fn request<B>(&mut self, service: &str, body: &[B]) -> Result<Vec<Vec<u8>>, ClientError>
    where
        B: Deref,
        B::Target: AsRef<[u8]>,
    {
        check_service(service)?;
        let frames = ClientMessage {
            service: service.as_bytes().to_vec(),
            body: body
                .iter()
                .map(|frame| frame.deref().as_ref().to_vec())
                .collect(),
        }
        .encode();
        let lookup = lookup_frames(service);
        let (mut attempt, mut step) = self.routes.start(service, self.config.attempts());
        loop {
            step = match step {
                Step::LookUp { broker } => {
                    let answer = self.look_up(broker, &lookup)?;
                    debug!(
                        service,
                        broker = self.routes.endpoint(broker),
                        ?answer,
                        "lookup"
                    );
                    self.routes.handle_lookup(&mut attempt, answer)
                }
                Step::Send { broker } => {
                    let miss = match self.exchange(broker, &frames, self.config.timeout)? {
                        Exchange::Reply(reply) => return check_reply(service, reply),
                        Exchange::NotConnected => Miss::NotConnected,
                        Exchange::NoReply => Miss::NoReply,
                    };
                    let endpoint = self.routes.endpoint(broker);
                    warn!(
                        service,
                        broker = endpoint,
                        ?miss,
                        "no reply, closing the socket"
                    );
                    self.routes.handle_miss(&mut attempt, miss)
                }
                Step::Fail(error) => return Err(error),
            };
        }
    }

    /// Asks the broker whether `service` has workers (the 8/MMI `mmi.service` lookup).
    /// A broker without MMI support never answers: the result is then a timeout.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request), and [`ClientError::UnexpectedMmiCode`] for a code other
    /// than `200` or `404`.
    pub fn has_service(&mut self, service: &str) -> Result<bool, ClientError> {
        mmi_answer(self.request("mmi.service", &[service])?)
    }

    /// The services the broker knows (`mmi.services`, an extension of our broker).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`ClientError::Unsupported`] from a broker without it.
    pub fn services(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(crate::protocol::mmi::parse_services(
            self.request::<&str>("mmi.services", &[])?,
        )?)
    }

    /// The load of `names` (all services when empty), from `mmi.stats` (an extension of our
    /// broker).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`ClientError::Unsupported`] from a broker without it.
    pub fn service_stats(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<crate::protocol::mmi::ServiceStats>, ClientError> {
        Ok(crate::protocol::mmi::parse_stats(
            self.request("mmi.stats", names)?,
        )?)
    }

    /// Asks broker number `broker` whether the service has workers, waiting at most
    /// [`LOOKUP_WAIT`] for each answer; while the answer is "none", asks again every
    /// [`LOOKUP_INTERVAL`] until the timeout has passed.
    fn look_up(&mut self, broker: usize, frames: &[Vec<u8>]) -> Result<Lookup, ClientError> {
        let deadline = Instant::now() + self.config.timeout;
        loop {
            let answer = match self.exchange(broker, frames, LOOKUP_WAIT)? {
                Exchange::Reply(reply) => lookup_answer(reply),
                Exchange::NotConnected => Lookup::NotConnected,
                Exchange::NoReply => Lookup::NoReply,
            };
            if !ask_again(answer, Instant::now(), deadline) {
                return Ok(answer);
            }
            std::thread::sleep(LOOKUP_INTERVAL);
        }
    }

    /// Sends `frames` to broker number `broker` and waits for one message: the send waits up
    /// to the timeout for a connection, the reply up to `reply_wait` within what is left of
    /// it. The socket is closed unless a message came back.
    fn exchange(
        &mut self,
        broker: usize,
        frames: &[Vec<u8>],
        reply_wait: Duration,
    ) -> Result<Exchange<Vec<Vec<u8>>>, ClientError> {
        let timeout = self.config.reply_timeout();
        let started = Instant::now();
        let socket = self.socket(broker)?;
        let messages = frames.iter().map(|f| zmq::Message::from(&f[..])).collect();
        match transport::send_frames(socket, messages) {
            SendOutcome::Sent => {}
            SendOutcome::WouldBlock => {
                self.socket = None;
                return Ok(Exchange::NotConnected);
            }
            SendOutcome::Failed(error) => return Err(error.into()),
        }
        debug!(frames = frames.len(), "sent");
        let wait = reply_wait.min(timeout.saturating_sub(started.elapsed()));
        let Some(reply) = transport::recv_bytes_timeout(socket, wait)? else {
            self.socket = None;
            return Ok(Exchange::NoReply);
        };
        trace!(?reply, "reply received");
        Ok(Exchange::Reply(reply))
    }

    /// The socket connected to broker number `broker`: the current one, or a new one.
    fn socket(&mut self, broker: usize) -> Result<&zmq::Socket, ClientError> {
        let socket = match self.socket.take() {
            Some((b, socket)) if b == broker => socket,
            _ => open_dealer(&self.context, &self.config, self.routes.endpoint(broker))?,
        };
        Ok(&self.socket.insert((broker, socket)).1)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("routes", &self.routes)
            .field("connected", &self.socket.is_some())
            .finish()
    }
}

/// A DEALER to `endpoint` with linger 0 (a client only cares about replies), that sends only
/// over a connection that is up, and waits at most one attempt's timeout for one.
pub(crate) fn open_dealer(
    context: &zmq::Context,
    config: &ClientConfig,
    endpoint: &str,
) -> Result<zmq::Socket, ClientError> {
    let options = SocketOptions {
        linger: Duration::ZERO,
        send_timeout: config.timeout,
        max_message_size: config.max_message_size,
        plain: config.plain.clone(),
        curve: config.curve.clone(),
        retry: None,
    };
    Ok(transport::connect_dealer(context, endpoint, &options)?)
}

/// Whether a lookup that answered `answer` at `now` is asked again: only "no worker", and only
/// if another answer can come before `deadline`.
pub(crate) fn ask_again(answer: Lookup, now: Instant, deadline: Instant) -> bool {
    answer == Lookup::NoWorkers && now + LOOKUP_INTERVAL < deadline
}

/// The frames of an `mmi.service` lookup for `service`.
pub(crate) fn lookup_frames(service: &str) -> Vec<Vec<u8>> {
    ClientMessage {
        service: b"mmi.service".to_vec(),
        body: vec![service.as_bytes().to_vec()],
    }
    .encode()
}

/// What an answer to a lookup says; anything but a clear yes or no is "cannot tell".
pub(crate) fn lookup_answer(frames: Vec<Vec<u8>>) -> Lookup {
    let Ok(body) = check_reply("mmi.service", frames) else {
        return Lookup::CannotTell;
    };
    match body.first().map(Vec::as_slice) {
        Some(b"200") => Lookup::Workers,
        Some(b"404" | b"400") => Lookup::NoWorkers,
        _ => Lookup::CannotTell,
    }
}

/// Checks that `service` was a valid name to send.
pub(crate) fn check_service(service: &str) -> Result<(), ClientError> {
    check_service_name(service.as_bytes()).map_err(|source| ClientError::InvalidService {
        service: service.to_string(),
        source,
    })
}

/// The answer of an `mmi.service` reply: `200` is true, `404` false.
pub(crate) fn mmi_answer(reply: Vec<Vec<u8>>) -> Result<bool, ClientError> {
    match reply.first().map(Vec::as_slice) {
        Some(b"200") => Ok(true),
        Some(b"404") => Ok(false),
        code => Err(ClientError::UnexpectedMmiCode {
            code: text(code.unwrap_or_default()).into_owned(),
        }),
    }
}

/// Decodes a reply as a DEALER receives it and checks it answers `service`.
pub(crate) fn check_reply(
    service: &str,
    frames: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let reply = ClientMessage::decode(frames)?;
    if reply.service != service.as_bytes() {
        return Err(ClientError::WrongService {
            expected: service.to_string(),
            found: text(&reply.service).into_owned(),
        });
    }
    Ok(reply.body)
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_client() {
        let c = ClientConfig::new("tcp://127.0.0.1:5555");
        assert_eq!((c.timeout, c.retries), (Duration::from_millis(2500), 3));
        assert_eq!(c.max_in_flight, 512);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let zero = ClientConfig::new("tcp://a:1").timeout(Duration::ZERO);
        let two = ClientConfig::new("tcp://a:1,");
        let size = ClientConfig::new("tcp://a:1").max_message_size(0);
        let user = ClientConfig::new("tcp://a:1").plain_credentials("", "pw");
        let in_flight = ClientConfig::new("tcp://a:1").max_in_flight(0);
        for (c, field) in [
            (in_flight, "max_in_flight"),
            (zero, "timeout"),
            (size, "max_message_size"),
            (user, "plain_username"),
        ] {
            match c.validate() {
                Err(ConfigError::InvalidValue { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidValue, got {other:?}"),
            }
        }
        assert!(matches!(
            ClientConfig::new("nope").validate(),
            Err(ConfigError::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            two.validate(),
            Err(ConfigError::EmptyBrokerAddress { position: 1, .. })
        ));
        assert_eq!(ClientConfig::new("tcp://a:1, tcp://b:2").validate(), Ok(()));
    }

    #[test]
    fn replies_are_checked_against_the_service_asked() {
        let frames = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            check_reply("echo", frames(&[b"", b"MDPC01", b"echo", b"a", b""])).unwrap(),
            frames(&[b"a", b""])
        );
        assert!(matches!(
            check_reply("echo", frames(&[b"", b"MDPC01", b"other", b"a"])),
            Err(ClientError::WrongService { expected, found }) if expected == "echo" && found == "other"
        ));
        assert!(matches!(
            check_reply("echo", frames(&[b"", b"MDPW01", b"echo"])),
            Err(ClientError::Protocol(ProtocolError::BadHeader { .. }))
        ));
        assert!(matches!(
            check_reply("echo", frames(&[b"MDPC01", b"echo"])),
            Err(ClientError::Protocol(ProtocolError::TooFewFrames { .. }))
        ));
    }
}
