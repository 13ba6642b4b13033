//! Shutdown under load: SIGTERM to a real `echo_worker` process while requests stream in.
//! The request in hand is answered, nothing is accepted after, the broker hears DISCONNECT,
//! and the process exits with code 0 within a bounded time.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::process::ChildWorker;
use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle};
use majordomo_worker::client::{Client, ClientConfig, ClientError};

const WORK: Duration = Duration::from_millis(200);
/// Two clients keep one request in the worker and one queued at the broker.
const CLIENTS: usize = 2;
/// Long enough for a queued request (one ahead of it) on a loaded machine.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Broker expiry is 10 × 500 ms: a worker gone by expiry would take 5 s, by DISCONNECT ~0.
const BROKER_HEARTBEAT: Duration = Duration::from_millis(500);
const BROKER_LIVENESS: u32 = 10;

/// One request as a client saw it.
#[derive(Debug)]
struct Outcome {
    body: Vec<Vec<u8>>,
    sent: Instant,
    answered: Option<(Instant, Vec<Vec<u8>>)>,
}

#[test]
fn sigterm_under_load_answers_the_request_in_hand_accepts_nothing_after_and_exits_0() {
    common::init_logging();
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(BROKER_HEARTBEAT)
        .liveness(BROKER_LIVENESS);
    let broker = Broker::bind(config).unwrap().spawn().unwrap();
    let mut worker = ChildWorker::spawn(&worker_args(broker.endpoint()));
    wait_until(common::WATCHDOG, "the worker registered", || {
        broker.stats().workers == 1
    });
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let (endpoint, stop) = (broker.endpoint().to_string(), Arc::clone(&stop));
            let outcomes = Arc::clone(&outcomes);
            thread::spawn(move || stream_requests(index, &endpoint, &stop, &outcomes))
        })
        .collect();

    let before = signal_mid_request(&broker, &worker);
    let signalled = Instant::now();
    worker.signal("TERM");
    let status = worker.wait_timeout(WORK + Duration::from_secs(2));
    let exited = Instant::now();
    let log = worker.log_tail().join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} within {:?} of SIGTERM\n{log}",
        WORK + Duration::from_secs(2)
    );
    // The broker forgets the worker on its DISCONNECT, not after its 5 s expiry.
    let forgotten = wait_until(
        Duration::from_secs(2),
        "the broker dropped the worker",
        || broker.stats().workers == 0,
    );
    // Requests keep coming after the exit (each client's pending one times out, then it
    // sends the next): nobody may answer them.
    thread::sleep(CLIENT_TIMEOUT + Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }
    let after = broker.stop().unwrap();
    let outcomes = outcomes.lock().unwrap();

    let answered_after_signal: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.answered.as_ref().is_some_and(|(at, _)| *at > signalled))
        .collect();
    let sent_after_exit = outcomes.iter().filter(|o| o.sent > exited).count();
    let handled = worker.logged_number("stopped", "requests");
    println!(
        "SIGTERM {:?} into a {WORK:?} request: exit after {:?}, broker dropped the worker \
         {:?} after the exit; {} requests in all, {} answered after the signal, {} sent after \
         the exit; worker handled {handled:?}, broker routed {} replies and dispatched {}",
        before.1,
        exited - signalled,
        forgotten.saturating_duration_since(exited),
        outcomes.len(),
        answered_after_signal.len(),
        sent_after_exit,
        after.replies_routed,
        after.requests_dispatched
    );
    for o in outcomes.iter() {
        if let Some((_, reply)) = &o.answered {
            assert_eq!(reply, &o.body, "every reply is its request's own");
        }
    }
    assert_eq!(
        answered_after_signal.len(),
        1,
        "exactly the request in hand is answered after the signal"
    );
    assert_eq!(
        after.replies_routed,
        before.0 + 1,
        "one reply after the signal"
    );
    assert_eq!(after.workers_expired, 0, "the worker left by DISCONNECT");
    assert!(sent_after_exit > 0, "the load went on after the exit");
    assert!(
        outcomes
            .iter()
            .filter(|o| o.sent > signalled)
            .all(|o| o.answered.is_none()),
        "no request sent after the signal was answered"
    );
    assert_eq!(
        handled,
        Some(after.replies_routed),
        "the worker took no request it did not answer\n{log}"
    );
}

/// An idle worker waits in `zmq_poll`, which a signal interrupts with EINTR whatever the
/// handler's flags: that must be a wake-up, not a fatal error (exit code 1 before the fix).
#[test]
fn sigterm_to_an_idle_worker_waiting_in_poll_exits_0_after_its_disconnect() {
    common::init_logging();
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*"))
        .unwrap()
        .spawn()
        .unwrap();
    let mut worker = ChildWorker::spawn(&worker_args(broker.endpoint()));
    wait_until(common::WATCHDOG, "the worker registered", || {
        broker.stats().workers == 1
    });
    for _ in 0..5 {
        // Signals go to the main thread in practice; make sure it is in poll, not starting up.
        thread::sleep(Duration::from_millis(50));
        if worker.in_work_sleep() != Some(true) {
            break;
        }
    }
    worker.signal("TERM");
    let status = worker.wait_timeout(Duration::from_secs(2));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}\n{}",
        worker.log_tail().join("\n")
    );
    wait_until(
        Duration::from_secs(1),
        "the broker dropped the worker",
        || broker.stats().workers == 0,
    );
    assert_eq!(broker.stop().unwrap().workers_expired, 0);
}

fn worker_args(broker: &str) -> Vec<String> {
    let work = WORK.as_millis().to_string();
    [
        "--broker",
        broker,
        "--service",
        "slow",
        "--heartbeat-ms",
        "100",
        "--work-ms",
        &work,
    ]
    .map(String::from)
    .to_vec()
}

/// Waits until a reply has just gone out (the next queued request goes to the worker at
/// once), then a quarter of the work time, so the worker is inside its sleep. Returns the
/// replies routed so far and how far into the request the signal comes.
fn signal_mid_request(broker: &BrokerHandle, worker: &ChildWorker) -> (u64, Duration) {
    wait_until(common::WATCHDOG, "two replies", || {
        broker.stats().replies_routed >= 2
    });
    let routed = broker.stats().replies_routed;
    let replied = wait_until(common::WATCHDOG, "the next reply", || {
        broker.stats().replies_routed > routed
    });
    thread::sleep(WORK / 4);
    let stats = broker.stats();
    assert_eq!(
        stats.requests_dispatched,
        stats.replies_routed + 1,
        "one request in the worker's hands: {stats:?}"
    );
    assert_ne!(
        worker.in_work_sleep(),
        Some(false),
        "the worker is in its action"
    );
    (stats.replies_routed, replied.elapsed())
}

/// Sends requests one after another until `stop`, each with a unique body.
fn stream_requests(index: usize, endpoint: &str, stop: &AtomicBool, out: &Mutex<Vec<Outcome>>) {
    let config = ClientConfig::new(endpoint)
        .timeout(CLIENT_TIMEOUT)
        .retries(0);
    let mut client = Client::connect(config).unwrap();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let body = vec![
            format!("{index}:{seq}").into_bytes(),
            vec![index as u8; seq % 50],
        ];
        let sent = Instant::now();
        let answered = match client.request("slow", &body) {
            Ok(reply) => Some((Instant::now(), reply)),
            // After the worker left, the client's lookup finds none and sends nothing.
            Err(ClientError::Timeout { .. } | ClientError::NoWorker { .. }) => None,
            Err(error) => panic!("client {index}: {error}"),
        };
        out.lock().unwrap().push(Outcome {
            body,
            sent,
            answered,
        });
    }
}

fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
    Instant::now()
}
