//! The async client: see [`AsyncClient`].

use std::fmt;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Semaphore;
use tracing::{debug, trace, warn};
use zmq::Message;

use crate::client::{
    ask_again, check_reply, check_service, lookup_answer, lookup_frames, mmi_answer, open_dealer,
    ClientConfig, ClientError, Exchange, Lookup, Miss, Routes, Step, LOOKUP_INTERVAL, LOOKUP_WAIT,
};
use crate::io::async_socket::AsyncSocket;
use crate::io::transport;
use crate::protocol::ClientMessage;

/// An MDP/0.1 client for tokio, with many requests in flight. Cheap to clone (the clones
/// share the sockets and the bound on requests in flight), `Send` and `Sync`: share it
/// between tasks.
///
/// ```no_run
/// # async fn example() -> Result<(), majordomo_worker::client::ClientError> {
/// use std::time::Duration;
/// use majordomo_worker::client::ClientConfig;
/// use majordomo_worker::AsyncClient;
///
/// let config = ClientConfig::new("tcp://127.0.0.1:5555").timeout(Duration::from_secs(1));
/// let client = AsyncClient::connect(config)?; // inside a tokio runtime
/// let tasks: Vec<_> = (0..10)
///     .map(|i| tokio::spawn(client.request("echo", &[format!("hello {i}")])))
///     .collect();
/// for (i, task) in tasks.into_iter().enumerate() {
///     let reply = task.await.expect("task")?;
///     assert_eq!(reply, vec![format!("hello {i}").into_bytes()]);
/// }
/// # Ok(())
/// # }
/// ```
///
/// MDP/0.1 has no request id: a reply is matched to its request only by the socket it comes
/// back on. So each request in flight has a DEALER socket of its own, taken from a pool of
/// idle ones or opened anew, and a socket returns to the pool only after a valid reply. An
/// attempt that times out closes its socket and the request is sent again on a new one, like
/// the sync [`Client`](crate::client::Client): a late reply can never reach another request.
/// A request future dropped before its reply closes its socket likewise.
///
/// It fails fast and fails over as the sync client does (see the [`client`](crate::client)
/// module): service lookups, [`ClientError::NoWorker`], [`ClientError::Unreachable`], and a
/// list of brokers, which all clones share: an attempt that gets no reply moves every later
/// request on to the next broker.
///
/// At most [`max_in_flight`](ClientConfig::max_in_flight) requests are in flight; more wait
/// for a turn. The pool keeps at most as many idle sockets, so the client never holds more
/// sockets than it once needed at the same time. A first burst opens one TCP connection
/// per request: a broker listening with libzmq's default backlog (`ZMQ_BACKLOG`, 100) lets
/// the connections beyond it wait for TCP's SYN retry, about a second; later bursts reuse
/// the pool.
///
/// **A retried request may run twice**, as with the sync client: make actions idempotent.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

struct Inner {
    // Before the context: the sockets close before the client's own context is dropped.
    /// Idle sockets, each with the number of the broker it is connected to.
    idle: Mutex<Vec<(usize, AsyncSocket)>>,
    routes: Mutex<Routes>,
    permits: Semaphore,
    config: ClientConfig,
    context: zmq::Context,
}

/// A request ready to send: the service it addresses, its encoded frames, and those of the
/// lookup of its service.
struct Request {
    service: String,
    frames: Vec<Vec<u8>>,
    lookup: Vec<Vec<u8>>,
}

impl AsyncClient {
    /// Validates `config` and connects a first socket, kept for the first request (ZeroMQ
    /// connects in the background: a broker that is not up yet is not an error). Must be
    /// called inside a tokio runtime; it does not block.
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] for a refused value, [`ClientError::Zmq`] if the socket cannot
    /// be created or connected, [`ClientError::Io`] outside a tokio runtime.
    pub fn connect(config: ClientConfig) -> Result<AsyncClient, ClientError> {
        config.validate()?;
        let permits = config.in_flight_limit().min(Semaphore::MAX_PERMITS);
        let inner = Inner {
            idle: Mutex::new(Vec::new()),
            routes: Mutex::new(config.routes()?),
            permits: Semaphore::new(permits),
            context: config.context_or_new(),
            config,
        };
        let first = inner.open_socket(0)?;
        inner.idle().push((0, first));
        Ok(AsyncClient {
            inner: Arc::new(inner),
        })
    }

    /// Sends `body` to `service` and resolves to the reply body frames. Each attempt waits up
    /// to the timeout for the reply; then the request is sent again on a new socket, `retries`
    /// times. The future owns what it needs (`Send + 'static`): hand it to `tokio::spawn`.
    ///
    /// Body frames are anything that dereferences to bytes or text: `&str`, `String`,
    /// `&[u8]`, `Vec<u8>`, [`zmq::Message`]; they are copied before this returns.
    ///
    /// A retried request may be carried out twice by workers: see the [type docs](AsyncClient).
    ///
    /// # Errors
    ///
    /// As [`Client::request`](crate::client::Client::request), and [`ClientError::Io`]
    /// if no tokio runtime drives the future.
    pub fn request<B>(
        &self,
        service: &str,
        body: &[B],
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, ClientError>> + Send + 'static
    where
        B: Deref,
        B::Target: AsRef<[u8]>,
    {
        let request = Request::new(service, body);
        let inner = Arc::clone(&self.inner);
        async move { inner.request(request?).await }
    }

    /// Asks the broker whether `service` has workers (the 8/MMI `mmi.service` lookup).
    /// A broker without MMI support never answers: the result is then a timeout.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request), and [`ClientError::UnexpectedMmiCode`] for a code other
    /// than `200` or `404`.
    pub fn has_service(
        &self,
        service: &str,
    ) -> impl Future<Output = Result<bool, ClientError>> + Send + 'static {
        let request = Request::new("mmi.service", &[service]);
        let inner = Arc::clone(&self.inner);
        async move { mmi_answer(inner.request(request?).await?) }
    }

    /// The services the broker knows (`mmi.services`, an extension of our broker).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`ClientError::Unsupported`] from a broker without it.
    pub fn services(
        &self,
    ) -> impl Future<Output = Result<Vec<String>, ClientError>> + Send + 'static {
        let request = Request::new::<&str>("mmi.services", &[]);
        let inner = Arc::clone(&self.inner);
        async move {
            Ok(crate::protocol::mmi::parse_services(
                inner.request(request?).await?,
            )?)
        }
    }

    /// The load of `names` (all services when empty), from `mmi.stats` (an extension of our
    /// broker).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request); [`ClientError::Unsupported`] from a broker without it.
    pub fn service_stats(
        &self,
        names: &[&str],
    ) -> impl Future<Output = Result<Vec<crate::protocol::mmi::ServiceStats>, ClientError>>
           + Send
           + 'static {
        let request = Request::new("mmi.stats", names);
        let inner = Arc::clone(&self.inner);
        async move {
            Ok(crate::protocol::mmi::parse_stats(
                inner.request(request?).await?,
            )?)
        }
    }

    /// How many idle sockets the client keeps for the next requests.
    pub fn idle_sockets(&self) -> usize {
        self.inner.idle().len()
    }
}

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncClient")
            .field("config", &self.inner.config)
            .field("idle_sockets", &self.idle_sockets())
            .field("free_permits", &self.inner.permits.available_permits())
            .finish()
    }
}

impl Request {
    /// Checks the service name and copies the frames out of the caller's body.
    fn new<B>(service: &str, body: &[B]) -> Result<Request, ClientError>
    where
        B: Deref,
        B::Target: AsRef<[u8]>,
    {
        check_service(service)?;
        let message = ClientMessage {
            service: service.as_bytes().to_vec(),
            body: body.iter().map(|f| f.deref().as_ref().to_vec()).collect(),
        };
        Ok(Request {
            service: service.to_string(),
            frames: message.encode(),
            lookup: lookup_frames(service),
        })
    }
}

impl Inner {
    /// Waits for a turn, then takes the steps the routes give (lookups, attempts, each
    /// attempt on a socket of its own) until a reply or a failure.
    async fn request(&self, request: Request) -> Result<Vec<Vec<u8>>, ClientError> {
        let _permit = self.permits.acquire().await.map_err(|e| ClientError::Io {
            operation: "wait for a request permit",
            source: io::Error::other(e),
        })?;
        let service = request.service.as_str();
        let (mut attempt, mut step) = self.routes().start(service, self.config.attempts());
        // Owned by this future: dropped (closed) on a timeout, an error or cancellation.
        let mut socket = None;
        loop {
            step = match step {
                Step::LookUp { broker } => {
                    let answer = self.look_up(&mut socket, broker, &request.lookup).await?;
                    debug!(service, broker, ?answer, "lookup");
                    self.routes().handle_lookup(&mut attempt, answer)
                }
                Step::Send { broker } => {
                    let timeout = self.config.reply_timeout();
                    let miss = match self
                        .exchange(&mut socket, broker, &request.frames, timeout)
                        .await?
                    {
                        Exchange::Reply((socket, frames)) => {
                            return self.accept(service, broker, socket, frames)
                        }
                        Exchange::NotConnected => Miss::NotConnected,
                        Exchange::NoReply => Miss::NoReply,
                    };
                    warn!(service, broker, ?miss, "no reply, closing the socket");
                    self.routes().handle_miss(&mut attempt, miss)
                }
                Step::Fail(error) => return Err(error),
            };
        }
    }

    /// Asks broker number `broker` whether the service has workers; while the answer is
    /// "none", asks again every [`LOOKUP_INTERVAL`] until the timeout has passed.
    async fn look_up(
        &self,
        socket: &mut Option<(usize, AsyncSocket)>,
        broker: usize,
        frames: &[Vec<u8>],
    ) -> Result<Lookup, ClientError> {
        let deadline = std::time::Instant::now() + self.config.reply_timeout();
        loop {
            let answer = match self.exchange(socket, broker, frames, LOOKUP_WAIT).await? {
                Exchange::Reply((kept, reply)) => {
                    *socket = Some((broker, kept));
                    lookup_answer(reply.iter().map(|frame| frame.to_vec()).collect())
                }
                Exchange::NotConnected => Lookup::NotConnected,
                Exchange::NoReply => Lookup::NoReply,
            };
            if !ask_again(answer, std::time::Instant::now(), deadline) {
                return Ok(answer);
            }
            tokio::time::sleep(LOOKUP_INTERVAL).await;
        }
    }

    /// Sends `frames` to broker number `broker` on the request's socket (taken from the pool
    /// or opened when it has none for that broker) and waits for one message: the send up to
    /// the timeout for a connection, the reply up to `reply_wait` within what is left of it.
    /// A reply hands the socket back with it; otherwise the socket is closed.
    async fn exchange(
        &self,
        socket: &mut Option<(usize, AsyncSocket)>,
        broker: usize,
        frames: &[Vec<u8>],
        reply_wait: std::time::Duration,
    ) -> Result<Exchange<(AsyncSocket, Vec<Message>)>, ClientError> {
        let mut current = match socket.take() {
            Some((b, current)) if b == broker => current,
            _ => self.take_socket(broker)?,
        };
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.reply_timeout();
        match tokio::time::timeout_at(deadline, current.send_mut(frames)).await {
            Err(_) => return Ok(Exchange::NotConnected),
            Ok(sent) => sent?,
        }
        debug!(broker, "sent");
        let reply_deadline = deadline.min(tokio::time::Instant::now() + reply_wait);
        match tokio::time::timeout_at(reply_deadline, current.recv()).await {
            Err(_) => Ok(Exchange::NoReply),
            Ok(reply) => Ok(Exchange::Reply((current, reply?))),
        }
    }

    /// Checks a reply; the socket goes back to the pool only if the reply is valid.
    fn accept(
        &self,
        service: &str,
        broker: usize,
        socket: AsyncSocket,
        frames: Vec<Message>,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let frames = frames.iter().map(|frame| frame.to_vec()).collect();
        trace!(?frames, "reply received");
        let body = check_reply(service, frames)?;
        self.put_back(broker, socket);
        Ok(body)
    }

    /// An idle socket to broker number `broker` with nothing waiting on it, or a new one.
    /// Idle sockets to other brokers met on the way are closed: the client moved on.
    fn take_socket(&self, broker: usize) -> Result<AsyncSocket, ClientError> {
        while let Some((b, socket)) = self.pop_idle() {
            if b != broker {
                continue;
            }
            if is_quiet(&socket) {
                return Ok(socket);
            }
            warn!("unexpected message on an idle socket, closing it");
        }
        self.open_socket(broker)
    }

    fn pop_idle(&self) -> Option<(usize, AsyncSocket)> {
        self.idle().pop()
    }

    /// Keeps `socket` for a later request, unless the pool is full.
    fn put_back(&self, broker: usize, socket: AsyncSocket) {
        let mut idle = self.idle();
        if idle.len() < self.config.in_flight_limit() {
            idle.push((broker, socket));
        }
    }

    /// A new DEALER to broker number `broker` with the sync client's options, registered
    /// with the current runtime.
    fn open_socket(&self, broker: usize) -> Result<AsyncSocket, ClientError> {
        tokio::runtime::Handle::try_current().map_err(|e| ClientError::Io {
            operation: "find the tokio runtime",
            source: io::Error::other(e),
        })?;
        let endpoint = self.routes().endpoint(broker).to_string();
        let socket = open_dealer(&self.context, &self.config, &endpoint)?;
        AsyncSocket::new(socket).map_err(|source| ClientError::Io {
            operation: "register the socket with tokio",
            source,
        })
    }

    /// The idle pool; a panic elsewhere while it was locked leaves it usable.
    fn idle(&self) -> MutexGuard<'_, Vec<(usize, AsyncSocket)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The routes, shared by every request of the client (held only to decide a step).
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether nothing is waiting on an idle socket: a message there (a broker that answered
/// twice) would be taken for the reply to the next request.
fn is_quiet(socket: &AsyncSocket) -> bool {
    matches!(transport::try_recv_frames(socket.socket()), Ok(None))
}
