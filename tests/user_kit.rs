//! Testing your own action end to end, written the way a user of the crate writes it: only the
//! public API, a real broker, a real worker on a thread, a real client.
//!
//! The first tests use `majordomo_worker::testkit`; the last one does the same by hand, to
//! show what the kit saves.

use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::testkit::TestBroker;
use majordomo_worker::{zmq, Message, Worker, WorkerAction, WorkerConfig};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A stateful service: `add N` adds to a running total and answers it, `get` answers it.
#[derive(Default)]
struct Counter {
    total: i64,
}

impl WorkerAction for Counter {
    fn call(&mut self, request: Vec<Message>) -> Vec<Message> {
        let text = request
            .first()
            .and_then(|frame| frame.as_str())
            .unwrap_or("");
        let reply = match text.split_once(' ') {
            Some(("add", n)) => match n.parse::<i64>() {
                Ok(n) => {
                    self.total += n;
                    self.total.to_string()
                }
                Err(_) => format!("error: not a number: {n}"),
            },
            None if text == "get" => self.total.to_string(),
            _ => format!("error: unknown command: {text}"),
        };
        vec![Message::from(reply.as_str())]
    }
}

/// A stateless service: the request frames in reverse order.
fn reverse(mut request: Vec<Message>) -> Vec<Message> {
    request.reverse();
    request
}

fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

#[test]
fn a_stateful_counter_keeps_its_total_across_requests_over_inproc() -> TestResult {
    let broker = TestBroker::inproc()?;
    let worker = broker.spawn_worker("counter", Counter::default())?;
    let mut client = broker.client()?;

    assert_eq!(client.request("counter", &["add 2"])?, frames(&[b"2"]));
    assert_eq!(client.request("counter", &["add 40"])?, frames(&[b"42"]));
    assert_eq!(
        client.request("counter", &["add x"])?,
        frames(&[b"error: not a number: x"])
    );
    assert_eq!(client.request("counter", &["get"])?, frames(&[b"42"]));

    let stats = worker.stop()?;
    assert_eq!((stats.requests, stats.replies), (4, 4));
    let broker_stats = broker.stop()?;
    assert_eq!(broker_stats.replies_routed, 4);
    Ok(())
}

#[test]
fn reverse_returns_binary_and_empty_frames_in_reverse_order_over_tcp() -> TestResult {
    let broker = TestBroker::tcp()?;
    assert!(broker.endpoint().starts_with("tcp://127.0.0.1:"));
    let _worker = broker.spawn_worker("reverse", reverse)?;
    let mut client = broker.client()?;

    assert!(client.has_service("reverse")?);
    assert!(!client.has_service("nobody")?);
    let binary: &[u8] = &[0x00, 0xff, 0x80];
    assert_eq!(
        client.request("reverse", &[&b"a"[..], b"", binary])?,
        frames(&[binary, b"", b"a"])
    );
    Ok(())
}

#[test]
fn two_workers_of_one_service_share_the_requests_and_each_reply_matches_its_request() -> TestResult
{
    let broker = TestBroker::tcp()?;
    let first = broker.spawn_worker("reverse", reverse)?;
    let second = broker.spawn_worker("reverse", reverse)?;
    let mut client = broker.client()?;

    for i in 0..20 {
        let id = i.to_string();
        assert_eq!(
            client.request("reverse", &[id.as_str(), "x"])?,
            frames(&[b"x", id.as_bytes()])
        );
    }
    let (first, second) = (first.stop()?, second.stop()?);
    assert_eq!(first.requests + second.requests, 20);
    assert!(
        first.requests > 0 && second.requests > 0,
        "{first:?} {second:?}"
    );
    Ok(())
}

#[test]
fn a_service_without_workers_is_no_worker_within_the_clients_bound() -> TestResult {
    let broker = TestBroker::inproc()?;
    let timeout = Duration::from_millis(100);
    let mut client = Client::connect(broker.client_config().timeout(timeout))?;

    let started = Instant::now();
    match client.request("nobody", &["hello"]) {
        Err(ClientError::NoWorker { service }) => assert_eq!(service, "nobody"),
        other => panic!("expected NoWorker, got {other:?}"),
    }
    assert!(started.elapsed() < timeout * 20, "{:?}", started.elapsed());
    Ok(())
}

#[test]
fn without_the_kit_broker_worker_and_client_share_one_inproc_context() -> TestResult {
    // inproc:// only connects sockets of one context; the name must be unique per test.
    let context = zmq::Context::new();
    let endpoint = format!("inproc://counter-{}", std::process::id());
    let heartbeat = Duration::from_millis(50);
    let broker = Broker::bind(
        BrokerConfig::new(endpoint.as_str())
            .heartbeat(heartbeat)
            .context(context.clone()),
    )?
    .spawn()?;

    let config = WorkerConfig::new(endpoint.as_str(), "counter")
        .heartbeat(heartbeat)
        .context(context.clone());
    let mut worker = Worker::new(config, Counter::default())?;
    let stop = worker.shutdown_handle();
    let running = thread::spawn(move || worker.run().map(|()| worker.stats()));

    let mut client = Client::connect(
        ClientConfig::new(endpoint.as_str())
            .timeout(Duration::from_secs(2))
            .retries(0)
            .context(context.clone()),
    )?;
    assert_eq!(client.request("counter", &["add 5"])?, frames(&[b"5"]));
    assert_eq!(client.request("counter", &["get"])?, frames(&[b"5"]));

    stop.shutdown(); // wakes the worker at once
    let stats = running.join().expect("worker thread")?;
    assert_eq!(stats.requests, 2);
    broker.stop()?;
    Ok(())
}

/// An async service, tested the way its author would: a `#[tokio::test]`, the kit's broker,
/// the async worker and the async client, all on the test's runtime.
#[cfg(feature = "tokio")]
mod async_service {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use majordomo_worker::testkit::TestBroker;
    use majordomo_worker::{AsyncAction, Message, ReplyFuture};

    /// A counter shared by every registration, awaiting a (simulated) store on each call.
    #[derive(Default)]
    struct Counter {
        total: Arc<AtomicI64>,
    }

    impl AsyncAction for Counter {
        fn call(&self, request: Vec<Message>) -> ReplyFuture {
            let total = Arc::clone(&self.total);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await; // the store's round trip
                let n: i64 = request
                    .first()
                    .and_then(|f| f.as_str())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let now = total.fetch_add(n, Ordering::SeqCst) + n;
                vec![Message::from(now.to_string().as_str())]
            })
        }
    }

    #[tokio::test]
    async fn concurrent_adds_all_land_in_the_total() -> Result<(), Box<dyn std::error::Error>> {
        let broker = TestBroker::tcp()?;
        let worker = broker
            .spawn_async_worker("counter", 8, Counter::default())
            .await?;
        let client = broker.async_client()?;
        let adds = (1..=20).map(|n| client.request("counter", &[n.to_string()]));
        let replies = futures_join_all(adds).await;
        let totals: Vec<i64> = replies
            .into_iter()
            .map(|r| {
                String::from_utf8_lossy(&r.expect("reply")[0])
                    .parse()
                    .expect("a number")
            })
            .collect();
        assert_eq!(totals.iter().max(), Some(&210), "1 + 2 + ... + 20");
        assert!(client.has_service("counter").await?);
        let summary = worker.stop().await?;
        assert_eq!(summary.total.replies, 20);
        Ok(())
    }

    /// The README's example, word for word.
    #[tokio::test]
    async fn upper_answers_in_capitals() -> Result<(), Box<dyn std::error::Error>> {
        let broker = TestBroker::tcp()?;
        let worker = broker
            .spawn_async_worker("upper", 4, |request: Vec<Message>| async move {
                request
                    .iter()
                    .map(|f| Message::from(f.to_ascii_uppercase()))
                    .collect()
            })
            .await?; // returns once the broker registered all 4
        let client = broker.async_client()?;
        assert_eq!(
            client.request("upper", &["abc"]).await?,
            vec![b"ABC".to_vec()]
        );
        assert_eq!(worker.stop().await?.total.replies, 1);
        Ok(())
    }

    /// Awaits every future, each on a task of its own (no extra crate needed).
    async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let tasks: Vec<_> = futures.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("task"));
        }
        out
    }
}
