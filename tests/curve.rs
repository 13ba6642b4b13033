//! CURVE through our broker: encrypted connections, and only listed worker keys registered.
//!
//! Needs a libzmq with CURVE support, which the `zmq` crate's bundled build lacks: with it,
//! every test here prints why it is skipped and passes. `make test-curve` runs them against
//! the system's libzmq (Debian: `libzmq3-dev`, built with libsodium); see the README's
//! security section.

mod common;

use std::time::{Duration, Instant};

use common::{config, echo, frames, RunningWorker, WATCHDOG};
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle, BrokerStats};
use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::{curve_available, ConfigError, CurveKeys, Error, Worker, WorkerConfig};

/// Whether to run: prints the reason when not.
fn curve_here() -> bool {
    if !curve_available() {
        println!(
            "skipped: this libzmq has no CURVE (zmq::has(\"curve\") is false); run make test-curve"
        );
    }
    curve_available()
}

fn keys() -> CurveKeys {
    CurveKeys::generate().expect("keys")
}

fn broker(config: BrokerConfig) -> BrokerHandle {
    let config = config.heartbeat(Duration::from_millis(50));
    Broker::bind(config).expect("bind").spawn().expect("spawn")
}

fn wait_for_stats(broker: &BrokerHandle, what: &str, done: impl Fn(&BrokerStats) -> bool) {
    let deadline = Instant::now() + WATCHDOG;
    while !done(&broker.stats()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", broker.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn curve_without_libzmq_support_is_a_config_error_naming_the_field() {
    let config = WorkerConfig::new("tcp://127.0.0.1:5555", "echo")
        .curve_credentials(CurveKeys::new([1; 32], [2; 32]), [3; 32]);
    match Worker::new(config, echo) {
        Ok(_) => assert!(curve_available()),
        Err(Error::Config(ConfigError::InvalidValue { field, .. })) => {
            assert!(!curve_available());
            assert_eq!(field, "curve_credentials");
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn a_listed_worker_key_registers_and_serves_an_encrypted_request() {
    if !curve_here() {
        return;
    }
    let (server, worker_keys, client_keys) = (keys(), keys(), keys());
    let broker = broker(
        BrokerConfig::new("tcp://127.0.0.1:*")
            .curve_server(server.clone())
            .curve_client(worker_keys.public_key())
            .curve_client(client_keys.public_key()),
    );
    let worker = RunningWorker::spawn(
        config(broker.endpoint(), "echo").curve_credentials(worker_keys, server.public_key()),
        echo,
    );
    wait_for_stats(&broker, "worker registered", |s| s.workers == 1);
    let client_config = ClientConfig::new(broker.endpoint())
        .timeout(Duration::from_secs(2))
        .curve_credentials(client_keys, server.public_key());
    let mut client = Client::connect(client_config).expect("client");
    assert_eq!(
        client.request("echo", &["secret"]).expect("reply"),
        frames(&[b"secret"])
    );
    let (_, stats, _) = worker.stop();
    assert_eq!((stats.requests, stats.auth_failures), (1, 0));
    assert_eq!(broker.stats().auth_accepted, 2);
}

#[test]
fn an_unlisted_worker_key_is_never_registered_and_says_so() {
    if !curve_here() {
        return;
    }
    let (server, listed) = (keys(), keys());
    let broker = broker(
        BrokerConfig::new("tcp://127.0.0.1:*")
            .curve_server(server.clone())
            .curve_client(listed.public_key()),
    );
    let worker = RunningWorker::spawn(
        config(broker.endpoint(), "echo").curve_credentials(keys(), server.public_key()),
        echo,
    );
    wait_for_stats(&broker, "two refusals", |s| s.auth_denied >= 2);
    let (_, stats, _) = worker.stop();
    assert!(stats.auth_failures >= 1, "{stats:?}");
    assert_eq!(broker.stats().workers_registered, 0);
}

#[test]
fn a_client_with_the_wrong_server_key_gets_no_reply() {
    if !curve_here() {
        return;
    }
    let server = keys();
    let broker = broker(BrokerConfig::new("tcp://127.0.0.1:*").curve_server(server));
    let wrong_server_key = keys().public_key();
    let client_config = ClientConfig::new(broker.endpoint())
        .timeout(Duration::from_millis(300))
        .retries(0)
        .curve_credentials(keys(), wrong_server_key);
    let mut client = Client::connect(client_config).expect("client");
    assert!(matches!(
        client.request("echo", &["x"]),
        Err(ClientError::Timeout { .. })
    ));
    assert_eq!(broker.stats().requests_received, 0);
}
