//! Broker configuration: the bind endpoint in [`BrokerConfig::new`], everything else with a
//! documented default, all of it validated when the [`Broker`](super::Broker) is bound.

use std::fmt;
use std::time::Duration;

use crate::checks::{
    check_heartbeat, check_max_message_size, fits_millis, invalid, positive, ConfigError,
};
use crate::config::{DEFAULT_HEARTBEAT, DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE};
use crate::io::security::{check_curve, CurveKeys, Hex, PlainCredentials};

use super::state::Settings;

/// Requests queued per service while no worker is free: enough to ride out a worker restart
/// under load, small enough that a service nobody serves cannot eat the broker's memory.
pub const DEFAULT_MAX_QUEUE: usize = 10_000;
/// Services the broker keeps track of at once: far more than any deployment names by hand,
/// few enough that a client inventing names costs the broker a few MB at most, not memory
/// without bound (a flood of 200 000 names once cost 107 MiB and stalled the broker).
pub const DEFAULT_MAX_SERVICES: usize = 10_000;
/// Requests queued at once, all services together: ten services' full queues, enough to ride
/// out a restart of the busiest workers, while a flood spread over many names holds the
/// broker to about 20 MB plus the bodies, not ten thousand full queues.
pub const DEFAULT_MAX_QUEUED_TOTAL: usize = 100_000;
/// How long a request may wait in a queue for a worker before it is dropped. Our client and
/// `mdp call` give up after 10 s at their defaults (4 attempts of 2.5 s, each attempt a new
/// request) and the reference client after 7.5 s, so a request queued three times that long
/// has nobody waiting for it, and running it later (a worker started minutes after) would do
/// work for a client long gone. Yet it is long enough to ride out a worker restart: a worker
/// is back within its reconnect delay (2.5 s), a broker notices a dead one within its
/// liveness (7.5 s).
pub const DEFAULT_MAX_QUEUE_AGE: Duration = Duration::from_secs(30);
/// Linger of the broker's socket on close: long enough for the last replies and DISCONNECTs
/// to leave over loopback or a LAN, short enough that a stop never hangs on a dead peer.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(500);

/// How to run a [`Broker`](super::Broker).
#[derive(Clone)]
pub struct BrokerConfig {
    pub(crate) bind: String,
    pub(crate) heartbeat: Duration,
    pub(crate) liveness: u32,
    pub(crate) max_queue: usize,
    pub(crate) max_queued_total: usize,
    pub(crate) max_services: usize,
    pub(crate) max_queue_age: Option<Duration>,
    pub(crate) requeue_on_worker_loss: u32,
    pub(crate) linger: Duration,
    pub(crate) disconnect_on_stop: bool,
    pub(crate) max_message_size: u64,
    pub(crate) plain_users: Vec<PlainCredentials>,
    pub(crate) curve_server: Option<CurveKeys>,
    pub(crate) curve_clients: Vec<[u8; 32]>,
    pub(crate) context: Option<zmq::Context>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Metrics>,
}

impl BrokerConfig {
    /// A configuration binding one ROUTER socket, for clients and workers alike, to `bind`
    /// (`tcp://*:5555`, `tcp://127.0.0.1:*` for a free port, `ipc://…`, `inproc://…`).
    /// Everything else has its default.
    pub fn new(bind: impl Into<String>) -> Self {
        BrokerConfig {
            bind: bind.into(),
            heartbeat: DEFAULT_HEARTBEAT,
            liveness: DEFAULT_LIVENESS,
            max_queue: DEFAULT_MAX_QUEUE,
            max_queued_total: DEFAULT_MAX_QUEUED_TOTAL,
            max_services: DEFAULT_MAX_SERVICES,
            max_queue_age: Some(DEFAULT_MAX_QUEUE_AGE),
            // None, as in the reference broker: a request can have side effects, and running it
            // a second time is for its owner to allow.
            requeue_on_worker_loss: 0,
            linger: DEFAULT_LINGER,
            disconnect_on_stop: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            plain_users: Vec::new(),
            curve_server: None,
            curve_clients: Vec::new(),
            context: None,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    /// Interval between the HEARTBEATs sent to idle workers, and the unit of worker liveness.
    /// Must not be zero. Defaults to 2500 ms (the reference broker's).
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// How many heartbeat intervals an idle worker may stay silent before it is forgotten;
    /// the same for a busy worker that has shown it heartbeats while busy (see
    /// [`requeue_on_worker_loss`](Self::requeue_on_worker_loss)). Must not be zero, and
    /// heartbeat × liveness must be below 100 years. Defaults to 3.
    pub fn liveness(mut self, liveness: u32) -> Self {
        self.liveness = liveness;
        self
    }

    /// Largest number of requests queued for one service; a request beyond it is dropped and
    /// logged (the client times out and may retry). Must not be zero. Defaults to 10 000.
    pub fn max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// Largest number of requests queued at once, all services together, on top of
    /// [`max_queue`](Self::max_queue) per service; a request beyond it is dropped, counted
    /// (`requests_dropped_total_bound`) and logged. A request an idle worker takes at once is
    /// never dropped. Must not be zero. Defaults to 100 000.
    pub fn max_queued_total(mut self, max_queued_total: usize) -> Self {
        self.max_queued_total = max_queued_total;
        self
    }

    /// Largest number of services the broker keeps track of. A service is known while it has
    /// a worker or a queued request, and forgotten as soon as it has neither. A request for a
    /// new service name beyond the bound is dropped, counted (`services_refused`) and logged;
    /// a worker's READY is never refused for it, so services that workers register can take
    /// the count above it. Must not be zero. Defaults to 10 000.
    pub fn max_services(mut self, max_services: usize) -> Self {
        self.max_services = max_services;
        self
    }

    /// Drops a request that waited this long in a queue for a worker, counted
    /// (`requests_expired`) and logged: its client has most likely given up or retried
    /// (the reference client waits 2.5 s per attempt). `None` keeps requests until served, as
    /// the reference broker does. Must be greater than zero and below 2^31 ms. Defaults to
    /// 30 s ([`DEFAULT_MAX_QUEUE_AGE`], the reason is written next to it).
    pub fn max_queue_age(mut self, max_queue_age: impl Into<Option<Duration>>) -> Self {
        self.max_queue_age = max_queue_age.into();
        self
    }

    /// How many times the request of a worker lost while busy is queued again for another
    /// worker. A worker is lost when it sends DISCONNECT or a second READY while busy, or
    /// falls silent for `heartbeat × liveness` after it has heartbeated while busy (ours do;
    /// a worker that never heartbeats while busy is never expired while busy). Each resend is
    /// counted (`requests_requeued`); a request out of requeues, or with none allowed, is
    /// answered by nobody (`requests_lost`), and its client times out.
    ///
    /// With a count of `n`, a request runs on up to `n + 1` workers: only for idempotent
    /// work, and a request that kills every worker it reaches takes `n + 1` of them down.
    /// The broker keeps a copy of each request in hand (one per busy worker). Defaults to 0:
    /// a lost worker's request is answered by nobody, as in the reference broker.
    pub fn requeue_on_worker_loss(mut self, requeue_on_worker_loss: u32) -> Self {
        self.requeue_on_worker_loss = requeue_on_worker_loss;
        self
    }

    /// How long the closing socket may keep delivering its last messages. Defaults to 500 ms.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Whether stopping the broker sends DISCONNECT to every known worker, so that they
    /// reconnect at once instead of waiting out their liveness. Defaults to `true`.
    pub fn disconnect_on_stop(mut self, disconnect_on_stop: bool) -> Self {
        self.disconnect_on_stop = disconnect_on_stop;
        self
    }

    /// Largest frame, in bytes, the broker accepts from a client or worker
    /// (`ZMQ_MAXMSGSIZE` on its ROUTER, which libzmq checks on each frame of a multipart
    /// message): a larger one makes ZeroMQ drop that peer's connection, and the broker goes on
    /// serving the others. The limit is generous so that
    /// large bodies pass, but finite so that one peer cannot make the broker allocate without
    /// bound. Must not be zero. Defaults to 256 MiB (as the worker's).
    pub fn max_message_size(mut self, max_message_size: u64) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// Accepts clients and workers that present these ZMQ PLAIN credentials; call once per
    /// user. The first call makes the ROUTER a PLAIN server (`ZMQ_PLAIN_SERVER`) and the
    /// broker runs a ZAP handler on `inproc://zeromq.zap.01` in its context, which refuses
    /// anyone else: a peer with wrong credentials, or none, never gets a message through.
    ///
    /// PLAIN sends passwords **in clear text**: it is access control, not confidentiality
    /// (see the README's security section). Only one ZAP handler can run per context: do not
    /// share the broker's [`context`](Self::context) with another one. Usernames must be
    /// non-empty, unique and at most 255 bytes, passwords at most 255 bytes.
    /// Defaults to no users: no authentication (the NULL mechanism).
    pub fn plain_user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.plain_users
            .push(PlainCredentials::new(username, password));
        self
    }

    /// Makes the ROUTER a CURVE server (RFC 26) with these keys: every connection is
    /// encrypted, and clients and workers must know `keys`' public key. Alone it admits any
    /// peer that knows that key; with [`curve_client`](Self::curve_client) only the listed
    /// keys, checked by the broker's ZAP handler (same context rule as for PLAIN).
    ///
    /// Needs a libzmq with CURVE support, which the `zmq` crate's bundled build lacks:
    /// [`validate`](Self::validate) refuses the setting when
    /// [`curve_available`](crate::curve_available) is false (see the README's security
    /// section). Cannot be combined with [`plain_user`](Self::plain_user). Defaults to none.
    pub fn curve_server(mut self, keys: CurveKeys) -> Self {
        self.curve_server = Some(keys);
        self
    }

    /// Admits the worker or client whose CURVE public key this is; call once per key. Needs
    /// [`curve_server`](Self::curve_server). Defaults to none (any key is admitted).
    pub fn curve_client(mut self, public_key: [u8; 32]) -> Self {
        self.curve_clients.push(public_key);
        self
    }

    /// A ZeroMQ context to create the socket in, shared with `inproc://` clients and workers.
    /// Defaults to a context of the broker's own.
    pub fn context(mut self, context: zmq::Context) -> Self {
        self.context = Some(context);
        self
    }

    /// The bind endpoint as given.
    pub fn bind_endpoint(&self) -> &str {
        &self.bind
    }

    /// Reports the broker's figures (per service, and the time requests wait in queue) in
    /// `metrics` (feature `metrics`), read when Prometheus scrapes. Defaults to none.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError::InvalidValue`] found, naming the field and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bind(&self.bind).map_err(|reason| invalid("bind", &self.bind, reason))?;
        check_heartbeat(self.heartbeat, self.liveness)?;
        fits_millis("linger", self.linger)?;
        self.validate_bounds()?;
        check_max_message_size(self.max_message_size)?;
        self.validate_plain_users()?;
        if self.curve_server.is_some() {
            check_curve("curve_server", !self.plain_users.is_empty())?;
        } else if let Some(key) = self.curve_clients.first() {
            return Err(invalid(
                "curve_client",
                Hex(key),
                "needs curve_server: the broker must be a CURVE server",
            ));
        }
        Ok(())
    }

    /// The bounds on what clients can make the broker hold.
    fn validate_bounds(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_queue", self.max_queue),
            ("max_queued_total", self.max_queued_total),
            ("max_services", self.max_services),
        ] {
            if value == 0 {
                return Err(invalid(field, 0, "must be at least 1"));
            }
        }
        if let Some(age) = self.max_queue_age {
            positive("max_queue_age", age)?;
        }
        Ok(())
    }

    fn validate_plain_users(&self) -> Result<(), ConfigError> {
        for (i, user) in self.plain_users.iter().enumerate() {
            user.validate()?;
            if self.plain_users[..i]
                .iter()
                .any(|u| u.username == user.username)
            {
                return Err(invalid("plain_username", &user.username, "listed twice"));
            }
        }
        Ok(())
    }

    /// How long an idle worker may stay silent.
    pub(crate) fn expiry(&self) -> Duration {
        self.heartbeat.saturating_mul(self.liveness)
    }

    /// What the broker's state machine needs to know.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            heartbeat: self.heartbeat,
            expiry: self.expiry(),
            max_queue: self.max_queue,
            max_queued_total: self.max_queued_total,
            max_services: self.max_services,
            max_queue_age: self.max_queue_age,
            requeue_on_worker_loss: self.requeue_on_worker_loss,
        }
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("bind", &self.bind)
            .field("heartbeat", &self.heartbeat)
            .field("liveness", &self.liveness)
            .field("max_queue", &self.max_queue)
            .field("max_queued_total", &self.max_queued_total)
            .field("max_services", &self.max_services)
            .field("max_queue_age", &self.max_queue_age)
            .field("requeue_on_worker_loss", &self.requeue_on_worker_loss)
            .field("linger", &self.linger)
            .field("disconnect_on_stop", &self.disconnect_on_stop)
            .field("max_message_size", &self.max_message_size)
            .field("plain_users", &self.plain_users)
            .field("curve_server", &self.curve_server)
            .field("curve_clients", &self.curve_clients.len())
            .field("shared_context", &self.context.is_some())
            .finish()
    }
}

/// The shape every bind endpoint has; the rest (interface names, `*` ports) is left to
/// ZeroMQ, whose refusal becomes [`BrokerError::Bind`](super::BrokerError::Bind).
fn check_bind(endpoint: &str) -> Result<(), &'static str> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or("expected transport://address")?;
    if rest.is_empty() || rest.chars().any(char::is_whitespace) {
        return Err("address after :// is empty or contains white space");
    }
    match scheme {
        "tcp" | "ipc" | "inproc" => Ok(()),
        _ => Err("transport must be tcp, ipc or inproc"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BrokerConfig {
        BrokerConfig::new("tcp://127.0.0.1:*")
    }

    #[test]
    fn defaults_match_the_reference_broker_but_for_the_queue_age() {
        let c = config();
        assert_eq!(c.heartbeat, Duration::from_millis(2500));
        assert_eq!(c.liveness, 3);
        assert_eq!(c.expiry(), Duration::from_millis(7500));
        assert_eq!(c.max_queue, 10_000);
        assert_eq!(c.max_queued_total, 100_000);
        assert_eq!(c.max_services, 10_000);
        assert_eq!(c.max_queue_age, Some(Duration::from_secs(30)));
        assert_eq!(config().max_queue_age(None).max_queue_age, None);
        assert_eq!(c.requeue_on_worker_loss, 0);
        assert!(c.disconnect_on_stop);
        assert_eq!(c.max_message_size, 256 * 1024 * 1024);
        assert!(c.plain_users.is_empty());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused_with_their_field() {
        let cases: Vec<(BrokerConfig, &str)> = vec![
            (BrokerConfig::new(""), "bind"),
            (BrokerConfig::new("127.0.0.1:5555"), "bind"),
            (BrokerConfig::new("udp://*:5555"), "bind"),
            (BrokerConfig::new("tcp://"), "bind"),
            (config().heartbeat(Duration::ZERO), "heartbeat"),
            (config().liveness(0), "liveness"),
            (
                config().heartbeat(Duration::MAX / 2).liveness(3),
                "heartbeat",
            ),
            (config().max_queue(0), "max_queue"),
            (config().max_queued_total(0), "max_queued_total"),
            (config().max_services(0), "max_services"),
            (config().max_queue_age(Duration::ZERO), "max_queue_age"),
            (config().max_queue_age(Duration::MAX), "max_queue_age"),
            (
                config().max_queue_age(Duration::from_millis(1 << 31)),
                "max_queue_age",
            ),
            (config().liveness(u32::MAX), "liveness"),
            (config().linger(Duration::from_secs(1 << 40)), "linger"),
            (config().max_message_size(0), "max_message_size"),
            (config().plain_user("", "pw"), "plain_username"),
            (config().plain_user("u", "p".repeat(256)), "plain_password"),
            (
                config().plain_user("u", "a").plain_user("u", "b"),
                "plain_username",
            ),
            (config().curve_client([7; 32]), "curve_client"),
            (
                config()
                    .plain_user("u", "p")
                    .curve_server(CurveKeys::new([1; 32], [2; 32])),
                "curve_server",
            ),
        ];
        for (c, field) in cases {
            match c.validate() {
                Err(ConfigError::InvalidValue { field: f, .. }) => assert_eq!(f, field, "{c:?}"),
                other => panic!("{field}: expected InvalidValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn bind_endpoints_with_wildcards_are_accepted() {
        for bind in [
            "tcp://*:5555",
            "tcp://127.0.0.1:*",
            "ipc:///tmp/b",
            "inproc://b",
        ] {
            assert_eq!(BrokerConfig::new(bind).validate(), Ok(()), "{bind}");
        }
    }
}
