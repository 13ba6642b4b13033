//! Worker configuration: required values in [`WorkerConfig::new`], everything else with a
//! documented default, all of it validated when the [`Worker`](crate::Worker) is built.

pub(crate) mod settings;

use std::fmt;
use std::time::Duration;

pub use crate::checks::{parse_endpoints, validate_service_name, ConfigError, MAX_DURATION};
use crate::events::{EventSink, Events};
use crate::io::security::{CurveClient, CurveKeys, PlainCredentials};
use crate::shutdown::{DrainHandle, ShutdownHandle};

/// Heartbeat of the reference broker (zguide `mdbroker`): a slower worker heartbeat makes it flap.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(2500);
/// Liveness of the reference broker: 3 heartbeats, so 7.5 s of silence with the defaults.
pub const DEFAULT_LIVENESS: u32 = 3;
/// Reconnect delay of the reference worker (zguide `mdwrkapi`).
pub const DEFAULT_RECONNECT: Duration = Duration::from_millis(2500);
/// Upper bound of the exponential reconnect backoff: retries stay frequent enough that a
/// restarted broker sees its workers back within about half a minute.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(32);
/// Linger on close: long enough for the last REPLY and DISCONNECT to leave over loopback or a
/// LAN, short enough that a stop never hangs on a dead broker.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(1);
/// Longest a send may wait on a full pipe before the frames are dropped and logged.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest frame accepted from a peer (`ZMQ_MAXMSGSIZE`). Large bodies (tens of MiB) pass; a
/// runaway or hostile peer cannot make a socket allocate without bound.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 256 * 1024 * 1024;
/// Reply body sent when the action panics: one frame naming the failure.
pub const DEFAULT_PANIC_REPLY: &[u8] = b"error: worker action panicked";
/// How long an async worker's busy registrations may finish their requests after a shutdown
/// before the actions are cancelled and answered with the timeout reply: long enough for
/// ordinary requests, shorter than the 30 s orchestrators (Kubernetes, systemd) usually
/// wait before they kill the process.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Most registrations one async worker may hold: each costs three ZeroMQ sockets and a few
/// file descriptors, and the broker a worker entry.
pub const MAX_CONCURRENCY: usize = 100_000;
/// Reply body sent when a request's deadline passes: one frame naming the failure.
pub const DEFAULT_TIMEOUT_REPLY: &[u8] = b"error: worker request timed out";

/// Configuration of a [`Worker`](crate::Worker).
///
/// ```
/// use std::time::Duration;
/// use majordomo_worker::WorkerConfig;
///
/// let config = WorkerConfig::new("tcp://127.0.0.1:5555,tcp://127.0.0.1:5556", "echo")
///     .heartbeat(Duration::from_millis(1000))
///     .liveness(5);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct WorkerConfig {
    pub(crate) broker_address: String,
    pub(crate) service_name: String,
    pub(crate) heartbeat: Duration,
    pub(crate) liveness: u32,
    pub(crate) reconnect: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) linger: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) send_disconnect: bool,
    pub(crate) max_message_size: u64,
    pub(crate) plain: Option<PlainCredentials>,
    pub(crate) curve: Option<CurveClient>,
    pub(crate) context: Option<zmq::Context>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) timeout_reply: Vec<Vec<u8>>,
    pub(crate) panic_reply: Vec<Vec<u8>>,
    pub(crate) concurrency: usize,
    pub(crate) shutdown_grace: Option<Duration>,
    pub(crate) shutdown: Option<ShutdownHandle>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
    pub(crate) drain: Option<DrainHandle>,
    pub(crate) events: Option<EventSink>,
}

impl WorkerConfig {
    /// A configuration for `service_name` on the broker(s) at `broker_address`, a
    /// comma-separated list of ZeroMQ endpoints (`tcp://`, `ipc://`, `inproc://`) that the
    /// worker rotates through on each reconnect. Everything else has its default.
    pub fn new(broker_address: impl Into<String>, service_name: impl Into<String>) -> Self {
        WorkerConfig {
            broker_address: broker_address.into(),
            service_name: service_name.into(),
            heartbeat: DEFAULT_HEARTBEAT,
            liveness: DEFAULT_LIVENESS,
            reconnect: DEFAULT_RECONNECT,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            linger: DEFAULT_LINGER,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            send_disconnect: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            plain: None,
            curve: None,
            context: None,
            request_timeout: None,
            timeout_reply: vec![DEFAULT_TIMEOUT_REPLY.to_vec()],
            panic_reply: vec![DEFAULT_PANIC_REPLY.to_vec()],
            concurrency: 1,
            shutdown_grace: None,
            shutdown: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            drain: None,
            events: None,
        }
    }

    /// Interval between the worker's heartbeats, and the unit of broker liveness.
    /// Must not be zero. Defaults to 2500 ms (the reference broker's).
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// How many heartbeat intervals of silence from the broker, while the worker is idle, make
    /// the worker consider it dead and reconnect. Must not be zero. Defaults to 3.
    pub fn liveness(mut self, liveness: u32) -> Self {
        self.liveness = liveness;
        self
    }

    /// First delay before reconnecting; it doubles on each failed attempt (with jitter) up to
    /// [`reconnect_max`](Self::reconnect_max) and is reset once the broker is heard again.
    /// Must not be zero. Defaults to 2500 ms.
    pub fn reconnect(mut self, reconnect: Duration) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Upper bound of the reconnect backoff. Must be at least [`reconnect`](Self::reconnect).
    /// Defaults to 32 s.
    pub fn reconnect_max(mut self, reconnect_max: Duration) -> Self {
        self.reconnect_max = reconnect_max;
        self
    }

    /// How long a closing socket may keep trying to deliver its last messages (the final REPLY
    /// and DISCONNECT). Defaults to 1 s. Sockets closed for a reconnect linger 0: the broker
    /// they pointed at is presumed dead.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Longest a send waits on a full pipe before the message is dropped and logged, so a
    /// stuck broker never freezes heartbeating. Must not be zero. Defaults to 1 s.
    pub fn send_timeout(mut self, send_timeout: Duration) -> Self {
        self.send_timeout = send_timeout;
        self
    }

    /// Whether a graceful shutdown sends DISCONNECT to the broker after the last REPLY.
    /// Turn off for brokers that mishandle it (the zguide Python broker). Defaults to `true`.
    pub fn send_disconnect(mut self, send_disconnect: bool) -> Self {
        self.send_disconnect = send_disconnect;
        self
    }

    /// Largest frame, in bytes, the worker accepts from the broker (`ZMQ_MAXMSGSIZE`, which
    /// libzmq checks on each frame of a multipart message): a larger one makes ZeroMQ drop the
    /// connection, and the worker, told by its socket monitor, reconnects on a new socket
    /// after the reconnect delay (the request is lost; the client retries). Must not be zero.
    /// Defaults to 256 MiB.
    pub fn max_message_size(mut self, max_message_size: u64) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// Presents these ZMQ PLAIN credentials (RFC 24) to the broker, whose ZAP handler accepts
    /// or refuses them. A refused worker is never registered: it logs
    /// `authentication failed` at warn level, counts it in
    /// [`WorkerStats::auth_failures`](crate::WorkerStats::auth_failures), and retries with
    /// the reconnect backoff (the broker's list may be fixed meanwhile).
    ///
    /// PLAIN sends both **in clear text**: it is access control, not confidentiality.
    /// The username must not be empty; both must be at most 255 bytes. Defaults to none
    /// (the NULL mechanism: no authentication).
    pub fn plain_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.plain = Some(PlainCredentials::new(username, password));
        self
    }

    /// Connects with CURVE (RFC 26): the connection is encrypted and the broker, which must
    /// hold the secret key of `server_public_key`, is authenticated; the broker may in turn
    /// accept only known worker keys (a refusal is handled as for PLAIN).
    ///
    /// Needs a libzmq with CURVE support, which the `zmq` crate's bundled build lacks:
    /// [`validate`](Self::validate) refuses the setting when
    /// [`curve_available`](crate::curve_available) is false (see the README's security
    /// section). Cannot be combined with [`plain_credentials`](Self::plain_credentials).
    /// Defaults to none.
    pub fn curve_credentials(mut self, keys: CurveKeys, server_public_key: [u8; 32]) -> Self {
        self.curve = Some(CurveClient {
            keys,
            server_key: server_public_key,
        });
        self
    }

    /// A ZeroMQ context to create the socket in, shared with other workers or with an
    /// `inproc://` broker. Defaults to a context of the worker's own.
    pub fn context(mut self, context: zmq::Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Longest a request may run before the worker answers it with
    /// [`timeout_reply`](Self::timeout_reply); the action's late result is then dropped, so
    /// the request still gets exactly one REPLY. Needs the action on its own thread
    /// ([`Worker::threaded`](crate::Worker::threaded)): an inline action cannot be interrupted.
    /// Defaults to none.
    pub fn request_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = Some(request_timeout);
        self
    }

    /// The reply body frames sent for a request whose deadline passed.
    /// Defaults to one frame, `error: worker request timed out`.
    pub fn timeout_reply(mut self, frames: Vec<Vec<u8>>) -> Self {
        self.timeout_reply = frames;
        self
    }

    /// The reply body frames sent for a request whose action panicked (the panic is caught,
    /// logged and counted, and the worker goes on serving).
    /// Defaults to one frame, `error: worker action panicked`.
    pub fn panic_reply(mut self, frames: Vec<Vec<u8>>) -> Self {
        self.panic_reply = frames;
        self
    }

    /// How many requests an [`AsyncWorker`](crate::AsyncWorker) serves at once: it registers
    /// this many workers for the service (MDP/0.1 gives one request at a time to a worker),
    /// each on its own socket, all driven by the async driver. From 1 to
    /// [`MAX_CONCURRENCY`]; a sync [`Worker`](crate::Worker) refuses anything but 1 (use a
    /// [`WorkerPool`](crate::drivers::pool::WorkerPool) for N sync workers). Defaults to 1.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How long, after a shutdown, an [`AsyncWorker`](crate::AsyncWorker)'s busy
    /// registrations may go on with their requests; then the actions are cancelled and
    /// answered with [`timeout_reply`](Self::timeout_reply). A sync worker finishes the
    /// request in hand (bounded by `request_timeout` when threaded) and refuses this setting.
    /// Defaults to 10 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    /// Reports the worker's counters and request durations in `metrics` (feature `metrics`):
    /// Prometheus reads the counters when it scrapes; each request's duration is observed in
    /// its service's histogram. Defaults to none.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// A shutdown handle to obey, so one handle can stop many workers.
    /// Defaults to a handle of the worker's own.
    pub fn shutdown_handle(mut self, handle: ShutdownHandle) -> Self {
        self.shutdown = Some(handle);
        self
    }

    /// A drain handle to obey: while it is drained the worker finishes its request, sends
    /// DISCONNECT and waits; on resume it registers again. Defaults to a handle of its own.
    pub fn drain_handle(mut self, handle: DrainHandle) -> Self {
        self.drain = Some(handle);
        self
    }

    /// Sends [`Event`](crate::Event)s about the worker's life to `events`, without ever
    /// blocking. Defaults to no events.
    pub fn events(mut self, events: &Events) -> Self {
        self.events = Some(events.sink());
        self
    }

    /// The broker address list as given.
    pub fn broker_address(&self) -> &str {
        &self.broker_address
    }

    /// The service name.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
}

impl fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("broker_address", &self.broker_address)
            .field("service_name", &self.service_name)
            .field("heartbeat", &self.heartbeat)
            .field("liveness", &self.liveness)
            .field("reconnect", &self.reconnect)
            .field("reconnect_max", &self.reconnect_max)
            .field("linger", &self.linger)
            .field("send_timeout", &self.send_timeout)
            .field("send_disconnect", &self.send_disconnect)
            .field("max_message_size", &self.max_message_size)
            .field("plain", &self.plain)
            .field("curve", &self.curve)
            .field("shared_context", &self.context.is_some())
            .field("request_timeout", &self.request_timeout)
            .field("concurrency", &self.concurrency)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("events", &self.events.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WorkerConfig {
        WorkerConfig::new("tcp://127.0.0.1:5555", "echo")
    }

    #[test]
    fn defaults_match_the_reference_broker() {
        let c = config();
        assert_eq!(c.heartbeat, Duration::from_millis(2500));
        assert_eq!(c.liveness, 3);
        assert_eq!(c.reconnect, Duration::from_millis(2500));
        assert_eq!(c.reconnect_max, Duration::from_secs(32));
        assert!(c.send_disconnect);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn endpoint_lists_are_split_trimmed_and_kept_in_order() {
        assert_eq!(
            parse_endpoints(" tcp://a:1 , ipc:///tmp/x,inproc://b "),
            Ok(vec![
                "tcp://a:1".to_string(),
                "ipc:///tmp/x".to_string(),
                "inproc://b".to_string()
            ])
        );
        assert_eq!(
            parse_endpoints("tcp://[::1]:5555"),
            Ok(vec!["tcp://[::1]:5555".to_string()])
        );
    }

    #[test]
    fn bad_endpoint_lists_name_the_bad_item() {
        let cases = [
            ("", ConfigError::NoBrokerAddress),
            (
                "tcp://a:1,,tcp://b:2",
                ConfigError::EmptyBrokerAddress {
                    list: "tcp://a:1,,tcp://b:2".into(),
                    position: 1,
                },
            ),
            (
                "tcp://a:1,",
                ConfigError::EmptyBrokerAddress {
                    list: "tcp://a:1,".into(),
                    position: 1,
                },
            ),
        ];
        for (list, expected) in cases {
            assert_eq!(parse_endpoints(list), Err(expected), "list {list:?}");
        }
        for bad in [
            "localhost:5555",
            "udp://a:1",
            "tcp://a",
            "tcp://a:0",
            "tcp://a:99999",
            "tcp://:5555",
            "tcp://",
            "inproc://",
            "tcp://a b:1",
        ] {
            match parse_endpoints(&format!("tcp://ok:1,{bad}")) {
                Err(ConfigError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad}: expected InvalidEndpoint, got {other:?}"),
            }
        }
    }

    #[test]
    fn service_names_are_checked() {
        assert_eq!(
            validate_service_name(""),
            Err(ConfigError::EmptyServiceName)
        );
        assert_eq!(
            validate_service_name("mmi.service"),
            Err(ConfigError::ReservedServiceName {
                name: "mmi.service".into()
            })
        );
        assert_eq!(
            validate_service_name(&"s".repeat(256)),
            Err(ConfigError::ServiceNameTooLong { len: 256 })
        );
        assert_eq!(validate_service_name(&"s".repeat(255)), Ok(()));
        assert_eq!(validate_service_name("mmi"), Ok(()));
    }

    #[test]
    fn zero_and_inconsistent_values_are_refused_with_their_field() {
        let cases: Vec<(WorkerConfig, &str)> = vec![
            (config().heartbeat(Duration::ZERO), "heartbeat"),
            (config().liveness(0), "liveness"),
            (config().reconnect(Duration::ZERO), "reconnect"),
            (
                config()
                    .reconnect(Duration::from_secs(5))
                    .reconnect_max(Duration::from_secs(1)),
                "reconnect_max",
            ),
            (config().send_timeout(Duration::ZERO), "send_timeout"),
            (config().max_message_size(0), "max_message_size"),
            (config().plain_credentials("", "pw"), "plain_username"),
            (
                config().plain_credentials("u", "p".repeat(256)),
                "plain_password",
            ),
            (config().linger(Duration::from_secs(1 << 40)), "linger"),
        ];
        for (c, field) in cases {
            match c.validate() {
                Err(ConfigError::InvalidValue { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn config_errors_read_as_short_sentences() {
        let err = config().liveness(0).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "liveness = 0 is invalid: must be at least 1"
        );
        let err = parse_endpoints("foo").unwrap_err();
        assert_eq!(
            err.to_string(),
            "broker_address item \"foo\" is not a valid endpoint: expected transport://address"
        );
    }
}
