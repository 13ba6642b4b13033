//! `max_message_size` (ZMQ_MAXMSGSIZE) on every socket: an oversized message costs its
//! sender the connection, the worker notices through its socket monitor and reconnects on a
//! new socket, and the broker goes on serving everyone else.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, echo, frames, is_command, RunningWorker, TestBroker, READY, WATCHDOG};
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::Message;

const LIMIT: u64 = 1024;

fn big() -> Vec<u8> {
    vec![0x5a; 4 * LIMIT as usize]
}

/// The next READY, skipping what the worker's old socket may still have sent.
fn next_ready(broker: &TestBroker, service: &str) -> Vec<u8> {
    loop {
        let (identity, received) = broker.recv();
        if is_command(&received, READY) {
            assert_eq!(received[3], service.as_bytes());
            return identity;
        }
    }
}

fn broker(config: BrokerConfig) -> BrokerHandle {
    Broker::bind(config.heartbeat(Duration::from_millis(50)))
        .expect("bind")
        .spawn()
        .expect("spawn")
}

fn client(endpoint: &str, timeout_ms: u64, retries: u32) -> Client {
    let config = ClientConfig::new(endpoint)
        .timeout(Duration::from_millis(timeout_ms))
        .retries(retries);
    Client::connect(config).expect("client")
}

/// Waits until `done` holds, or fails the test after the watchdog.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within the watchdog");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_oversized_request_drops_the_worker_connection_and_it_reconnects_and_serves() {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn(
        config(&broker.endpoint, "echo").max_message_size(LIMIT),
        echo,
    );
    let first = broker.expect_ready("echo");
    broker.request(&first, &[b"client"], &[&big()]);

    // libzmq drops the connection; the monitor tells the worker, which opens a new socket.
    let second = next_ready(&broker, "echo");
    assert_ne!(second, first, "the worker must come back on a new socket");
    broker.request(&second, &[b"client"], &[b"small"]);
    let (envelope, body) = broker.expect_reply(&second);
    assert_eq!(
        (envelope, body),
        (frames(&[b"client"]), frames(&[b"small"]))
    );

    let (_, stats, _) = worker.stop();
    assert_eq!(
        stats.requests, 1,
        "the oversized request never reaches the action"
    );
    assert!(stats.connections_lost >= 1, "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
}

#[test]
fn a_message_at_the_limit_is_delivered() {
    let broker = TestBroker::tcp();
    let worker = RunningWorker::spawn(
        config(&broker.endpoint, "echo").max_message_size(LIMIT),
        echo,
    );
    let identity = broker.expect_ready("echo");
    let exactly = vec![1u8; LIMIT as usize];
    broker.request(&identity, &[b"client"], &[&exactly]);
    let (_, body) = broker.expect_reply(&identity);
    assert_eq!(body, vec![exactly]);
    let (_, stats, _) = worker.stop();
    assert_eq!((stats.connections_lost, stats.reconnects), (0, 0));
}

#[test]
fn an_oversized_client_request_costs_the_client_its_connection_and_others_are_served() {
    let broker = broker(BrokerConfig::new("tcp://127.0.0.1:*").max_message_size(LIMIT));
    let worker = RunningWorker::spawn(config(broker.endpoint(), "echo"), echo);

    let context = zmq::Context::new();
    let raw = context.socket(zmq::DEALER).expect("dealer");
    raw.set_linger(0).expect("linger");
    raw.monitor(
        "inproc://limits-raw-client",
        zmq::SocketEvent::DISCONNECTED as i32,
    )
    .expect("monitor");
    let monitor = context.socket(zmq::PAIR).expect("pair");
    monitor
        .connect("inproc://limits-raw-client")
        .expect("connect monitor");
    raw.connect(broker.endpoint()).expect("connect");
    let big = big();
    raw.send_multipart([&b""[..], b"MDPC01", b"echo", &big], 0)
        .expect("send");
    assert!(
        monitor
            .poll(zmq::POLLIN, WATCHDOG.as_millis() as i64)
            .expect("poll")
            > 0,
        "the broker must drop the oversized client's connection"
    );

    let mut good = client(broker.endpoint(), 2000, 0);
    assert_eq!(
        good.request("echo", &["hi"]).expect("reply"),
        frames(&[b"hi"])
    );
    let stats = broker.stats();
    assert_eq!(
        stats.requests_received - stats.mmi_requests,
        1,
        "only the small request arrived (besides the client's lookups): {stats:?}"
    );
    assert_eq!(stats.malformed_dropped, 0);
    worker.stop();
}

#[test]
fn a_worker_reply_over_the_broker_limit_costs_it_the_connection_and_it_comes_back() {
    let broker = broker(BrokerConfig::new("tcp://127.0.0.1:*").max_message_size(LIMIT));
    let first_call = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&first_call);
    let action = move |request: Vec<Message>| {
        if flag.swap(false, Ordering::SeqCst) {
            vec![Message::from(big())]
        } else {
            request
        }
    };
    let worker = RunningWorker::spawn(config(broker.endpoint(), "echo"), action);

    // Attempt one's reply is too big for the broker: it drops the worker, whose monitor
    // sees it; the worker registers again and answers the retry.
    let mut c = client(broker.endpoint(), 300, 3);
    assert_eq!(
        c.request("echo", &["again"]).expect("reply"),
        frames(&[b"again"])
    );
    assert!(!first_call.load(Ordering::SeqCst));
    let (_, stats, _) = worker.stop();
    assert!(stats.connections_lost >= 1, "{stats:?}");
    assert!(
        broker.stats().workers_registered >= 2,
        "{:?}",
        broker.stats()
    );
}

#[test]
fn an_oversized_request_through_our_broker_costs_the_worker_its_connection_not_its_service() {
    let broker = broker(BrokerConfig::new("tcp://127.0.0.1:*"));
    let worker = RunningWorker::spawn(
        config(broker.endpoint(), "echo").max_message_size(LIMIT),
        echo,
    );
    let mut c = client(broker.endpoint(), 300, 0);
    wait_until("worker registered", || {
        c.has_service("echo").unwrap_or(false)
    });
    let big = big();
    assert!(matches!(
        c.request("echo", &[&big[..]]),
        Err(ClientError::Timeout { .. })
    ));
    wait_until("worker registered again", || {
        broker.stats().workers_registered >= 2
    });
    let mut c = client(broker.endpoint(), 2000, 0);
    assert_eq!(
        c.request("echo", &["small"]).expect("reply"),
        frames(&[b"small"])
    );
    let (_, stats, _) = worker.stop();
    assert_eq!(stats.requests, 1);
    assert!(stats.connections_lost >= 1, "{stats:?}");
}
