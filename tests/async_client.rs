#![cfg(feature = "tokio")]
//! The async client against our broker with real workers (each on a thread), and against a
//! raw ROUTER playing the broker where exact frames or identities matter.
//!
//! Slow workers take their delay from the request: body `["<ms>", "<tag>"]` sleeps `<ms>`
//! then echoes both frames, so each reply names its own request. Every test body runs under
//! a watchdog: none can hang.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::client::{ClientConfig, ClientError};
use majordomo_worker::testkit::{TestBroker, WorkerThread};
use majordomo_worker::{AsyncClient, ConfigError, Message, Worker, WorkerConfig};

const WATCHDOG: Duration = Duration::from_secs(10);

type Frames = Vec<Vec<u8>>;

/// Runs `test` with a deadline, so that a lost wake-up fails instead of hanging.
async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(WATCHDOG, test)
        .await
        .expect("test finished before the watchdog")
}

fn frames(parts: &[&str]) -> Frames {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

/// Sleeps the milliseconds of the first frame, then echoes the request.
fn delayed_echo(request: Vec<Message>) -> Vec<Message> {
    let ms = request
        .first()
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    thread::sleep(Duration::from_millis(ms));
    request
}

/// How many calls run at once, and the most seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    /// An echo that sleeps `delay` and counts itself in flight meanwhile.
    fn echo(
        self: &Arc<Self>,
        delay: Duration,
    ) -> impl FnMut(Vec<Message>) -> Vec<Message> + Clone + Send + 'static {
        let gauge = Arc::clone(self);
        move |request| {
            let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
            gauge.max.fetch_max(now, Ordering::SeqCst);
            thread::sleep(delay);
            gauge.now.fetch_sub(1, Ordering::SeqCst);
            request
        }
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

fn spawn_workers<A>(broker: &TestBroker, service: &str, n: usize, action: A) -> Vec<WorkerThread>
where
    A: FnMut(Vec<Message>) -> Vec<Message> + Clone + Send + 'static,
{
    (0..n)
        .map(|_| {
            broker
                .spawn_worker(service, action.clone())
                .expect("worker")
        })
        .collect()
}

/// `n` requests at once, each from a task of its own on a clone of `client`; the replies in
/// request order.
async fn concurrent(client: &AsyncClient, service: &str, delay_ms: u64, n: usize) -> Vec<Frames> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            let body = [delay_ms.to_string(), format!("request {i}")];
            let service = service.to_string();
            tokio::spawn(async move { client.request(&service, &body).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.expect("task").expect("reply"));
    }
    replies
}

fn check_own_replies(replies: &[Frames], delay_ms: u64) {
    for (i, reply) in replies.iter().enumerate() {
        let expected = vec![
            delay_ms.to_string().into_bytes(),
            format!("request {i}").into_bytes(),
        ];
        assert_eq!(reply, &expected, "reply {i} answers its own request");
    }
}

/// A ROUTER on a free port, standing in for a broker.
fn raw_broker() -> (zmq::Socket, String) {
    let router = zmq::Context::new().socket(zmq::ROUTER).expect("socket");
    router.set_linger(0).expect("linger");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = router
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8");
    (router, endpoint)
}

/// Receives `n` messages on the raw broker, off the runtime's threads.
async fn recv_raw(router: zmq::Socket, n: usize) -> (zmq::Socket, Vec<Frames>) {
    tokio::task::spawn_blocking(move || {
        let received = (0..n)
            .map(|_| {
                let ready = router.poll(zmq::POLLIN, 5000).expect("poll");
                assert!(ready > 0, "nothing received in time");
                router.recv_multipart(0).expect("recv")
            })
            .collect();
        (router, received)
    })
    .await
    .expect("join")
}

async fn echo_round_trip() {
    let broker = TestBroker::tcp().expect("broker");
    let _worker = broker
        .spawn_worker("echo", |r: Vec<Message>| r)
        .expect("worker");
    let client = AsyncClient::connect(broker.client_config()).expect("connect");
    let reply = client.request("echo", &["hello", "world"]).await;
    assert_eq!(reply.expect("reply"), frames(&["hello", "world"]));
    assert_eq!(client.idle_sockets(), 1, "the socket went back to the pool");
    let again = client.request("echo", &[b"\x00\xff".to_vec()]).await;
    assert_eq!(again.expect("reply"), vec![vec![0x00, 0xff]]);
    assert_eq!(client.idle_sockets(), 1, "and was reused");
}

#[tokio::test]
async fn a_request_gets_its_echo_on_a_current_thread_runtime() {
    within(echo_round_trip()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gets_its_echo_on_a_multi_thread_runtime() {
    within(echo_round_trip()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_from_many_tasks_each_get_their_own_reply() {
    let broker = TestBroker::tcp().expect("broker");
    let _workers = spawn_workers(&broker, "slow", 50, delayed_echo);
    let client = AsyncClient::connect(broker.client_config()).expect("connect");
    within(async {
        // Cold: 200 new connections at once; past the broker's listen backlog (100 by
        // default) some wait for TCP's SYN retry, about a second.
        let started = Instant::now();
        check_own_replies(&concurrent(&client, "slow", 20, 200).await, 20);
        let cold = started.elapsed();
        let started = Instant::now();
        check_own_replies(&concurrent(&client, "slow", 20, 200).await, 20);
        let warm = started.elapsed();
        eprintln!("200 requests, 50 workers of 20 ms: cold pool {cold:?}, warm pool {warm:?}");
        // One at a time would take 200 x 20 ms = 4 s; four rounds of 50 take 80 ms.
        assert!(warm < Duration::from_secs(1), "{warm:?}");
        assert!(
            client.idle_sockets() <= 200,
            "at most one socket per request"
        );
    })
    .await;
}

#[tokio::test]
async fn two_hundred_concurrent_requests_are_answered_on_a_current_thread_runtime() {
    let broker = TestBroker::tcp().expect("broker");
    let _workers = spawn_workers(&broker, "slow", 20, delayed_echo);
    let client = AsyncClient::connect(broker.client_config()).expect("connect");
    within(async {
        let replies = concurrent(&client, "slow", 5, 200).await;
        check_own_replies(&replies, 5);
    })
    .await;
}

#[tokio::test]
async fn no_reply_is_a_timeout_after_retries_plus_one_attempts_each_on_a_new_socket() {
    let (router, endpoint) = raw_broker();
    let timeout = Duration::from_millis(100);
    let config = ClientConfig::new(endpoint)
        .lookups(false)
        .timeout(timeout)
        .retries(2);
    let client = AsyncClient::connect(config).expect("connect");
    within(async {
        let started = Instant::now();
        let request = tokio::spawn(client.request("echo", &["hello"]));
        let (_router, requests) = recv_raw(router, 3).await;
        match request.await.expect("task") {
            Err(ClientError::Timeout { service, attempts }) => {
                assert_eq!((service.as_str(), attempts), ("echo", 3))
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(started.elapsed() >= timeout * 3, "{:?}", started.elapsed());
        let mut identities: Vec<&Vec<u8>> = requests.iter().map(|r| &r[0]).collect();
        identities.sort();
        identities.dedup();
        assert_eq!(identities.len(), 3, "each attempt on a new socket");
        for request in &requests {
            assert_eq!(request[1..], frames(&["", "MDPC01", "echo", "hello"])[..]);
        }
        assert_eq!(client.idle_sockets(), 0, "no timed-out socket is kept");
    })
    .await;
}

#[tokio::test]
async fn a_service_without_workers_fails_fast_with_no_worker_and_leaves_nothing_queued() {
    let broker = TestBroker::tcp().expect("broker");
    let timeout = Duration::from_millis(300);
    let config = broker.client_config().timeout(timeout).retries(3);
    let client = AsyncClient::connect(config).expect("connect");
    let started = Instant::now();
    match within(client.request("nobody", &["x"])).await {
        Err(ClientError::NoWorker { service }) => assert_eq!(service, "nobody"),
        other => panic!("expected NoWorker, got {other:?}"),
    }
    // One attempt's timeout of lookups (a worker may have been starting), not four attempts.
    let took = started.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(30) && took < timeout * 2,
        "{took:?}"
    );
    let stats = broker.stats();
    // Only lookups reached the broker, which it answered itself.
    assert_eq!(stats.queued_requests, 0);
    assert_eq!(stats.requests_received, stats.mmi_requests);
    let off = broker
        .client_config()
        .lookups(false)
        .timeout(Duration::from_millis(100));
    let off = AsyncClient::connect(off).expect("connect");
    match within(off.request("nobody", &["x"])).await {
        Err(ClientError::Timeout { attempts: 1, .. }) => {}
        other => panic!("without lookups: expected Timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_is_unreachable_after_one_attempt() {
    let (router, endpoint) = raw_broker();
    drop(router);
    let timeout = Duration::from_millis(200);
    let config = ClientConfig::new(endpoint.as_str())
        .timeout(timeout)
        .retries(3);
    let client = AsyncClient::connect(config).expect("connect");
    let started = Instant::now();
    match within(client.request("echo", &["x"])).await {
        Err(ClientError::Unreachable { endpoints }) => assert_eq!(endpoints, [endpoint]),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < timeout * 2, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_to_a_timed_out_request_never_reaches_a_later_request() {
    let broker = TestBroker::tcp().expect("broker");
    let _workers = spawn_workers(&broker, "slow", 2, delayed_echo);
    let config = broker
        .client_config()
        .timeout(Duration::from_millis(300))
        .max_in_flight(1);
    let client = AsyncClient::connect(config).expect("connect");
    within(async {
        // Answered at 400 ms, after its 300 ms timeout...
        let first = client.request("slow", &["400", "first"]).await;
        assert!(matches!(
            first,
            Err(ClientError::Timeout { attempts: 1, .. })
        ));
        // ...while this one, sent at 300 ms, waits for its own reply (at 500 ms).
        let second = client.request("slow", &["200", "second"]).await;
        assert_eq!(second.expect("reply"), frames(&["200", "second"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_dropped_before_its_reply_does_not_hand_that_reply_to_the_next_request() {
    let broker = TestBroker::tcp().expect("broker");
    let _workers = spawn_workers(&broker, "slow", 2, delayed_echo);
    let client = AsyncClient::connect(broker.client_config()).expect("connect");
    within(async {
        // Dropped at 50 ms; its reply comes back at 300 ms...
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            client.request("slow", &["300", "dropped"]),
        );
        assert!(dropped.await.is_err(), "dropped before its reply");
        // ...while this one waits for its own, until 450 ms.
        let next = client.request("slow", &["400", "next"]).await;
        assert_eq!(next.expect("reply"), frames(&["400", "next"]));
        let last = client.request("slow", &["0", "last"]).await;
        assert_eq!(last.expect("reply"), frames(&["0", "last"]));
        assert_eq!(client.idle_sockets(), 1);
    })
    .await;
}

/// The most requests seen at once by 8 workers of 60 ms, for 20 concurrent requests.
async fn most_at_once(max_in_flight: usize) -> usize {
    let broker = TestBroker::tcp().expect("broker");
    let gauge = Arc::new(Gauge::default());
    let _workers = spawn_workers(&broker, "gauge", 8, gauge.echo(Duration::from_millis(60)));
    let config = broker.client_config().max_in_flight(max_in_flight);
    let client = AsyncClient::connect(config).expect("connect");
    let replies = within(concurrent(&client, "gauge", 0, 20)).await;
    check_own_replies(&replies, 0);
    assert!(client.idle_sockets() <= max_in_flight);
    gauge.max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_bounds_the_requests_outstanding_at_the_workers() {
    let bounded = most_at_once(4).await;
    assert!(
        (1..=4).contains(&bounded),
        "at most 4 at once, saw {bounded}"
    );
    // The same load without the bound keeps more than 4 workers busy: the gauge can see it.
    let unbounded = most_at_once(20).await;
    assert!(unbounded > 4, "without the bound, saw only {unbounded}");
}

#[tokio::test]
async fn a_reply_naming_another_service_is_a_wrong_service_error_and_its_socket_is_closed() {
    let (router, endpoint) = raw_broker();
    let client = AsyncClient::connect(ClientConfig::new(endpoint).lookups(false).retries(0))
        .expect("connect");
    within(async {
        let request = tokio::spawn(client.request("echo", &["hello"]));
        let (router, received) = recv_raw(router, 1).await;
        let identity = received[0][0].clone();
        let reply = [&identity[..], b"", b"MDPC01", b"other", b"x"];
        router.send_multipart(reply.iter(), 0).expect("send");
        match request.await.expect("task") {
            Err(ClientError::WrongService { expected, found }) => {
                assert_eq!((expected.as_str(), found.as_str()), ("echo", "other"))
            }
            other => panic!("expected WrongService, got {other:?}"),
        }
        assert_eq!(
            client.idle_sockets(),
            0,
            "an invalid reply's socket is not reused"
        );
    })
    .await;
}

#[tokio::test]
async fn has_service_tells_a_served_name_from_an_unknown_one() {
    let broker = TestBroker::tcp().expect("broker");
    let _worker = broker
        .spawn_worker("echo", |r: Vec<Message>| r)
        .expect("worker");
    let client = AsyncClient::connect(broker.client_config()).expect("connect");
    let (echo, nobody) =
        within(async { tokio::join!(client.has_service("echo"), client.has_service("nobody")) })
            .await;
    assert_eq!(
        (echo.expect("lookup"), nobody.expect("lookup")),
        (true, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_before_the_broker_is_up_is_answered_once_it_comes_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let config = ClientConfig::new(endpoint.as_str())
        .timeout(Duration::from_secs(3))
        .retries(0);
    let client = AsyncClient::connect(config).expect("connect");
    let request = tokio::spawn(client.request("echo", &["early"]));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!request.is_finished(), "no broker yet, no reply");

    let heartbeat = Duration::from_millis(50);
    let broker_config = BrokerConfig::new(endpoint.as_str()).heartbeat(heartbeat);
    let _broker = Broker::bind(broker_config)
        .expect("bind")
        .spawn()
        .expect("spawn");
    let worker_config = WorkerConfig::new(endpoint.as_str(), "echo")
        .heartbeat(heartbeat)
        .liveness(10)
        .reconnect(Duration::from_millis(20));
    let worker = Worker::new(worker_config, |r: Vec<Message>| r).expect("worker");
    let _worker = WorkerThread::spawn(worker).expect("spawn");

    let reply = within(request).await.expect("task");
    assert_eq!(reply.expect("reply"), frames(&["early"]));
}

#[tokio::test]
async fn config_errors_name_the_field() {
    let cases = [
        (
            ClientConfig::new("tcp://a:1").max_in_flight(0),
            "max_in_flight",
        ),
        (
            ClientConfig::new("tcp://a:1").timeout(Duration::ZERO),
            "timeout",
        ),
        (
            ClientConfig::new("tcp://a:1").max_message_size(0),
            "max_message_size",
        ),
    ];
    for (config, field) in cases {
        match AsyncClient::connect(config) {
            Err(ClientError::Config(ConfigError::InvalidValue { field: f, .. })) => {
                assert_eq!(f, field)
            }
            other => panic!("{field}: expected InvalidValue, got {other:?}"),
        }
    }
}

#[test]
fn connecting_outside_a_tokio_runtime_is_an_error_not_a_panic() {
    match AsyncClient::connect(ClientConfig::new("tcp://127.0.0.1:5555")) {
        Err(ClientError::Io { operation, .. }) => assert_eq!(operation, "find the tokio runtime"),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_service_names_are_refused_before_anything_is_sent() {
    let (_router, endpoint) = raw_broker();
    let client = AsyncClient::connect(ClientConfig::new(endpoint).lookups(false)).expect("connect");
    let long = "s".repeat(256);
    for service in ["", long.as_str()] {
        assert!(matches!(
            client.request(service, &["x"]).await,
            Err(ClientError::InvalidService { .. })
        ));
    }
    assert_eq!(client.idle_sockets(), 1, "the first socket is still unused");
}

#[tokio::test]
async fn the_request_future_owns_its_frames_and_can_be_spawned_after_they_are_gone() {
    let broker = TestBroker::tcp().expect("broker");
    let _worker = broker
        .spawn_worker("echo", |r: Vec<Message>| r)
        .expect("worker");
    let client = AsyncClient::connect(broker.client_config()).expect("connect");
    let body = String::from("borrowed");
    let request = client.request("echo", &[body.as_str()]);
    drop(body);
    let reply = within(tokio::spawn(request)).await.expect("task");
    assert_eq!(reply.expect("reply"), frames(&["borrowed"]));
}
