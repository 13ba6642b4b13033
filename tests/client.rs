//! Our client against a raw ROUTER playing the broker (exact frames on the wire), and against
//! our broker with a raw DEALER worker.
//!
//! The client blocks, so it runs on a thread whose result is awaited with a timeout: no test
//! can hang.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::ProtocolError;

const WAIT: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_millis(100);

type Frames = Vec<Vec<u8>>;

fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn recv(socket: &zmq::Socket) -> Frames {
    let ready = socket
        .poll(zmq::POLLIN, WAIT.as_millis() as i64)
        .expect("poll");
    assert!(ready > 0, "nothing received within {WAIT:?}");
    socket.recv_multipart(0).expect("recv")
}

/// A ROUTER bound to a free port, standing in for a broker.
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

/// Runs `request` with a fresh client on a thread; the receiver yields its result.
fn request_in_thread(
    config: ClientConfig,
    service: &'static str,
    body: Frames,
) -> mpsc::Receiver<Result<Frames, ClientError>> {
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let outcome = Client::connect(config).and_then(|mut c| c.request(service, &body));
        let _ = done.send(outcome);
    });
    result
}

fn outcome(result: mpsc::Receiver<Result<Frames, ClientError>>) -> Result<Frames, ClientError> {
    result.recv_timeout(WAIT).expect("client returned in time")
}

/// Answers the one request the client sends with `reply` (after the client's identity).
fn answer(
    config: ClientConfig,
    router: &zmq::Socket,
    reply: &[&[u8]],
) -> Result<Frames, ClientError> {
    let result = request_in_thread(config, "echo", frames(&[b"hello"]));
    let request = recv(router);
    let mut message = vec![request[0].clone()];
    message.extend(frames(reply));
    router.send_multipart(message, 0).expect("send");
    outcome(result)
}

#[test]
fn the_client_puts_the_exact_mdp_frames_on_the_wire_and_returns_the_reply_body() {
    let (router, endpoint) = raw_broker();
    let binary: &[u8] = &[0x00, 0xff, 0x80];
    let result = request_in_thread(
        ClientConfig::new(endpoint).lookups(false),
        "echo",
        frames(&[b"hello", binary, b""]),
    );
    let request = recv(&router);
    assert_eq!(
        request[1..],
        frames(&[b"", b"MDPC01", b"echo", b"hello", binary, b""])[..]
    );
    let reply = [&request[0][..], b"", b"MDPC01", b"echo", b"world", b""];
    router.send_multipart(reply.iter(), 0).expect("send");
    assert_eq!(outcome(result).expect("reply"), frames(&[b"world", b""]));
}

#[test]
fn a_reply_naming_another_service_is_a_wrong_service_error() {
    let (router, endpoint) = raw_broker();
    let config = ClientConfig::new(endpoint).lookups(false).retries(0);
    match answer(config, &router, &[b"", b"MDPC01", b"other", b"x"]) {
        Err(ClientError::WrongService { expected, found }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("echo", "other"))
        }
        other => panic!("expected WrongService, got {other:?}"),
    }
}

/// A reply the client must refuse, and a check of the error it gives.
type BadReply = (&'static [&'static [u8]], fn(&ProtocolError) -> bool);

#[test]
fn a_reply_with_a_wrong_header_is_a_protocol_error() {
    let (router, endpoint) = raw_broker();
    let config = ClientConfig::new(endpoint).lookups(false).retries(0);
    let cases: [BadReply; 3] = [
        (&[b"", b"MDPC02", b"echo", b"x"], |e| {
            matches!(e, ProtocolError::UnsupportedVersion { .. })
        }),
        (&[b"", b"MDPW01", b"echo"], |e| {
            matches!(e, ProtocolError::BadHeader { .. })
        }),
        (&[b"MDPC01", b"echo", b"x"], |e| {
            matches!(e, ProtocolError::MissingEmptyFrame { .. })
        }),
    ];
    for (reply, expected) in cases {
        match answer(config.clone(), &router, reply) {
            Err(ClientError::Protocol(error)) => assert!(expected(&error), "{reply:?}: {error}"),
            other => panic!("{reply:?}: expected a protocol error, got {other:?}"),
        }
    }
}

#[test]
fn no_reply_is_a_timeout_after_retries_plus_one_attempts_each_on_a_new_socket() {
    let (router, endpoint) = raw_broker();
    let config = ClientConfig::new(endpoint)
        .lookups(false)
        .timeout(TIMEOUT)
        .retries(2);
    let started = Instant::now();
    let result = request_in_thread(config, "echo", frames(&[b"hello"]));
    let requests: Vec<Frames> = (0..3).map(|_| recv(&router)).collect();
    match outcome(result) {
        Err(ClientError::Timeout { service, attempts }) => {
            assert_eq!((service.as_str(), attempts), ("echo", 3))
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= TIMEOUT * 3, "{:?}", started.elapsed());
    let mut identities: Vec<&Vec<u8>> = requests.iter().map(|r| &r[0]).collect();
    identities.sort();
    identities.dedup();
    assert_eq!(identities.len(), 3, "each attempt on a new socket");
    for request in &requests {
        assert_eq!(
            request[1..],
            frames(&[b"", b"MDPC01", b"echo", b"hello"])[..]
        );
    }
}

#[test]
fn a_late_reply_to_an_abandoned_attempt_never_reaches_the_retry() {
    let (router, endpoint) = raw_broker();
    let config = ClientConfig::new(endpoint)
        .lookups(false)
        .timeout(TIMEOUT)
        .retries(1);
    let result = request_in_thread(config, "echo", frames(&[b"hello"]));
    let first = recv(&router);
    let second = recv(&router);
    for (request, body) in [(&first, &b"stale"[..]), (&second, b"fresh")] {
        let reply = [&request[0][..], b"", b"MDPC01", b"echo", body];
        router.send_multipart(reply.iter(), 0).expect("send");
    }
    assert_eq!(outcome(result).expect("reply"), frames(&[b"fresh"]));
}

#[test]
fn invalid_service_names_are_refused_before_anything_is_sent() {
    let (_router, endpoint) = raw_broker();
    let mut client = Client::connect(ClientConfig::new(endpoint).lookups(false)).expect("connect");
    let long = "s".repeat(256);
    for service in ["", long.as_str()] {
        assert!(matches!(
            client.request(service, &["x"]),
            Err(ClientError::InvalidService { .. })
        ));
        assert!(matches!(
            client.request(service, &[zmq::Message::from("x")]),
            Err(ClientError::InvalidService { .. })
        ));
    }
}

#[test]
fn our_client_and_our_broker_serve_a_raw_dealer_worker() {
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let worker = zmq::Context::new().socket(zmq::DEALER).expect("socket");
    worker.set_linger(0).expect("linger");
    worker.connect(broker.endpoint()).expect("connect");
    worker
        .send_multipart([&b""[..], b"MDPW01", &[0x01], b"echo"], 0)
        .expect("ready");
    let deadline = Instant::now() + WAIT;
    while broker.stats().workers == 0 {
        assert!(Instant::now() < deadline, "worker not registered in time");
        thread::sleep(Duration::from_millis(5));
    }
    let config = ClientConfig::new(broker.endpoint()).timeout(Duration::from_secs(1));

    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let mut client = Client::connect(config).expect("connect");
        let lookups = (client.has_service("echo"), client.has_service("nobody"));
        let _ = done.send((lookups, client.request("echo", &["hi"])));
    });
    let request = recv(&worker);
    assert_eq!(request[..3], frames(&[b"", b"MDPW01", &[0x02]])[..]);
    assert_eq!(request[4..], frames(&[b"", b"hi"])[..]);
    let reply = [&b""[..], b"MDPW01", &[0x03], &request[3], b"", b"hi back"];
    worker.send_multipart(reply.iter(), 0).expect("reply");

    let ((echo, nobody), reply) = result.recv_timeout(WAIT).expect("client returned in time");
    assert_eq!(
        (echo.expect("lookup"), nobody.expect("lookup")),
        (true, false)
    );
    assert_eq!(reply.expect("reply"), frames(&[b"hi back"]));
    assert_eq!(broker.stats().replies_routed, 1);
}

#[test]
fn services_and_service_stats_read_our_brokers_mmi_extensions() {
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let context = zmq::Context::new();
    let worker = context.socket(zmq::DEALER).expect("socket");
    worker.set_linger(0).expect("linger");
    worker.connect(broker.endpoint()).expect("connect");
    worker
        .send_multipart([&b""[..], b"MDPW01", &[1], b"echo"], 0)
        .expect("ready");
    let deadline = Instant::now() + WAIT;
    while broker.stats().workers == 0 {
        assert!(Instant::now() < deadline, "worker not registered");
        thread::sleep(Duration::from_millis(2));
    }
    let config = ClientConfig::new(broker.endpoint())
        .timeout(WAIT)
        .retries(0);
    let mut client = Client::connect(config).expect("client");
    assert_eq!(
        client.services().expect("services"),
        vec!["echo".to_string()]
    );
    let stats = client.service_stats(&["echo"]).expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].name.as_str(), stats[0].workers, stats[0].waiting),
        ("echo", 1, 1)
    );
    assert_eq!((stats[0].queued, stats[0].served), (0, 0));
}

#[test]
fn a_broker_answering_501_to_the_extensions_is_unsupported_not_a_failure() {
    let (router, endpoint) = raw_broker();
    let config = ClientConfig::new(endpoint)
        .lookups(false)
        .timeout(WAIT)
        .retries(0);
    let (done, result) = mpsc::channel();
    thread::spawn(move || {
        let mut client = Client::connect(config).expect("client");
        let _ = done.send((client.services(), client.service_stats(&[])));
    });
    for service in [&b"mmi.services"[..], b"mmi.stats"] {
        let request = recv(&router);
        assert_eq!(request[3], service);
        let reply = [&request[0][..], b"", b"MDPC01", service, b"501"];
        router.send_multipart(reply, 0).expect("send");
    }
    let (services, stats) = result.recv_timeout(WAIT).expect("answered");
    assert!(
        matches!(&services, Err(ClientError::Unsupported { service }) if service == "mmi.services"),
        "{services:?}"
    );
    assert!(
        matches!(&stats, Err(ClientError::Unsupported { service }) if service == "mmi.stats"),
        "{stats:?}"
    );
    assert_eq!(
        services.unwrap_err().to_string(),
        "mmi.services is not supported by this broker (501)"
    );
}

#[test]
fn a_service_without_workers_fails_fast_with_no_worker_and_is_never_sent() {
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let timeout = Duration::from_millis(300);
    let config = ClientConfig::new(broker.endpoint()).timeout(timeout);
    let started = Instant::now();
    let result = request_in_thread(config, "nosuch", frames(&[b"hello"]));
    match outcome(result) {
        Err(ClientError::NoWorker { service }) => assert_eq!(service, "nosuch"),
        other => panic!("expected NoWorker, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < timeout * 2, "{took:?}");
    let stats = broker.stats();
    assert_eq!(stats.queued_requests, 0);
    assert_eq!(stats.requests_received, stats.mmi_requests, "only lookups");
}

#[test]
fn a_worker_that_registers_within_the_timeout_gets_the_request() {
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let config = ClientConfig::new(broker.endpoint()).timeout(Duration::from_secs(2));
    let result = request_in_thread(config, "late", frames(&[b"hello"]));
    thread::sleep(Duration::from_millis(100));
    let worker = zmq::Context::new().socket(zmq::DEALER).expect("socket");
    worker.set_linger(0).expect("linger");
    worker.connect(broker.endpoint()).expect("connect");
    worker
        .send_multipart([&b""[..], b"MDPW01", &[0x01], b"late"], 0)
        .expect("ready");
    let request = recv(&worker);
    let reply = [&b""[..], b"MDPW01", &[0x03], &request[3], b"", b"hi"];
    worker.send_multipart(reply.iter(), 0).expect("reply");
    assert_eq!(outcome(result).expect("reply"), frames(&[b"hi"]));
}

#[test]
fn nothing_listening_is_unreachable_after_one_attempt_naming_the_endpoint() {
    let (router, endpoint) = raw_broker();
    drop(router);
    let config = ClientConfig::new(endpoint.as_str())
        .timeout(TIMEOUT)
        .retries(3);
    let started = Instant::now();
    match outcome(request_in_thread(config, "echo", frames(&[b"x"]))) {
        Err(error @ ClientError::Unreachable { .. }) => {
            assert_eq!(error.to_string(), format!("nothing answers at {endpoint}"))
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < TIMEOUT * 2, "{:?}", started.elapsed());
}

#[test]
fn a_service_that_loses_its_worker_after_a_timed_out_attempt_is_not_sent_again() {
    let (router, endpoint) = raw_broker();
    let config = ClientConfig::new(endpoint).timeout(TIMEOUT).retries(3);
    let result = request_in_thread(config, "echo", frames(&[b"hello"]));
    let answer_lookup = |code: &[u8]| {
        let lookup = recv(&router);
        assert_eq!(
            lookup[1..],
            frames(&[b"", b"MDPC01", b"mmi.service", b"echo"])[..]
        );
        let reply = [&lookup[0][..], b"", b"MDPC01", b"mmi.service", code];
        router.send_multipart(reply.iter(), 0).expect("send");
    };
    answer_lookup(b"200");
    let request = recv(&router);
    assert_eq!(request[3..], frames(&[b"echo", b"hello"])[..]);
    // From now on only lookups, each answered 404, until the client gives up.
    let mut lookups = 0;
    while router.poll(zmq::POLLIN, 200).expect("poll") > 0 {
        answer_lookup(b"404");
        lookups += 1;
    }
    match outcome(result) {
        Err(ClientError::NoWorker { .. }) => {}
        other => panic!("expected NoWorker, got {other:?}"),
    }
    assert!(lookups >= 2, "asked again while no worker: {lookups}");
}
