//! ZMQ PLAIN authentication through our broker's ZAP handler: right credentials register and
//! serve; wrong or missing ones are never registered, and the worker says why.

mod common;

use std::time::{Duration, Instant};

use common::{config, echo, frames, RunningWorker, WATCHDOG};
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerError, BrokerHandle, BrokerStats};
use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::session::DisconnectReason;
use majordomo_worker::{Event, Events};

fn plain_broker() -> BrokerHandle {
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(Duration::from_millis(50))
        .plain_user("worker", "w0rker-pass")
        .plain_user("client", "cl1ent-pass");
    Broker::bind(config).expect("bind").spawn().expect("spawn")
}

fn client(broker: &BrokerHandle, password: &str) -> Client {
    let config = ClientConfig::new(broker.endpoint())
        .timeout(Duration::from_millis(300))
        .retries(0)
        .plain_credentials("client", password);
    Client::connect(config).expect("client")
}

/// Waits until the broker's stats satisfy `done`, or fails the test after the watchdog.
fn wait_for_stats(broker: &BrokerHandle, what: &str, done: impl Fn(&BrokerStats) -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let stats = broker.stats();
        if done(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within the watchdog: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn right_plain_credentials_register_the_worker_and_a_plain_client_gets_its_reply() {
    let broker = plain_broker();
    let worker = RunningWorker::spawn(
        config(broker.endpoint(), "echo").plain_credentials("worker", "w0rker-pass"),
        echo,
    );
    wait_for_stats(&broker, "worker registered", |s| s.workers == 1);
    let mut c = client(&broker, "cl1ent-pass");
    assert_eq!(
        c.request("echo", &["hello"]).expect("reply"),
        frames(&[b"hello"])
    );
    assert!(c.has_service("echo").expect("mmi"));
    let (_, stats, _) = worker.stop();
    assert_eq!((stats.requests, stats.auth_failures), (1, 0));
    let stats = broker.stop().expect("stop");
    assert_eq!(stats.auth_accepted, 2, "{stats:?}");
    assert_eq!(stats.auth_denied, 0, "{stats:?}");
}

#[test]
fn a_worker_with_a_wrong_password_is_never_registered_and_says_so() {
    let broker = plain_broker();
    let events = Events::bounded(64);
    let worker = RunningWorker::spawn(
        config(broker.endpoint(), "echo")
            .plain_credentials("worker", "wrong")
            .events(&events),
        echo,
    );
    // The worker retries with backoff: the broker refuses it every time.
    wait_for_stats(&broker, "two refusals", |s| s.auth_denied >= 2);
    let mut c = client(&broker, "cl1ent-pass");
    assert!(
        !c.has_service("echo").expect("mmi"),
        "mmi.service must say 404"
    );

    let (_, stats, _) = worker.stop();
    assert!(stats.auth_failures >= 1, "{stats:?}");
    assert_eq!(stats.requests, 0);
    let refused = events.receiver().try_iter().any(|e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::AuthenticationFailed,
                ..
            }
        )
    });
    assert!(
        refused,
        "a Disconnected event must name the authentication failure"
    );
    let stats = broker.stop().expect("stop");
    assert_eq!(
        (stats.workers_registered, stats.workers),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn a_worker_without_credentials_is_refused_by_a_plain_broker() {
    let broker = plain_broker();
    let events = Events::bounded(64);
    let worker = RunningWorker::spawn(config(broker.endpoint(), "echo").events(&events), echo);
    let receiver = events.receiver();
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(Event::Disconnected {
                reason: DisconnectReason::ConnectionLost,
                ..
            }) => break,
            Ok(_) => continue,
            Err(_) => panic!("no ConnectionLost event within the watchdog"),
        }
    }
    let (_, stats, _) = worker.stop();
    // NULL against PLAIN: the mechanisms do not match, the handshake fails before ZAP.
    assert!(stats.connections_lost >= 1, "{stats:?}");
    assert_eq!(stats.requests, 0);
    assert_eq!(broker.stats().workers_registered, 0);
}

#[test]
fn a_client_with_a_wrong_password_gets_no_connection_and_sends_nothing() {
    let broker = plain_broker();
    let worker = RunningWorker::spawn(
        config(broker.endpoint(), "echo").plain_credentials("worker", "w0rker-pass"),
        echo,
    );
    wait_for_stats(&broker, "worker registered", |s| s.workers == 1);
    let mut c = client(&broker, "guess");
    assert!(matches!(
        c.request("echo", &["hello"]),
        Err(ClientError::Unreachable { .. })
    ));
    assert_eq!(broker.stats().requests_received, 0);
    assert!(broker.stats().auth_denied >= 1);
    worker.stop();
}

#[test]
fn two_plain_brokers_cannot_share_a_context() {
    let context = zmq::Context::new();
    let config = |bind: &str| {
        BrokerConfig::new(bind)
            .plain_user("u", "p")
            .context(context.clone())
    };
    let _first = Broker::bind(config("inproc://auth-first")).expect("first broker");
    match Broker::bind(config("inproc://auth-second")) {
        Err(BrokerError::Bind { endpoint, .. }) => assert_eq!(endpoint, "inproc://zeromq.zap.01"),
        other => panic!("expected a bind error on the ZAP endpoint, got {other:?}"),
    }
}
