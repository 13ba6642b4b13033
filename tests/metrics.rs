//! `/metrics` and `/healthz` over real HTTP, while real traffic flows: the counters must match
//! the requests sent.
#![cfg(all(feature = "metrics", feature = "tokio"))]

#[path = "common/http.rs"]
mod http;

use std::thread;
use std::time::{Duration, Instant};

use http::get;
use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::metrics::Metrics;
use majordomo_worker::{Message, Worker, WorkerConfig};

const WAIT: Duration = Duration::from_secs(5);

/// The value of the sample `name{labels}` (the whole line before the value), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Our broker heartbeating as fast as the workers expect (no flapping).
fn broker_config() -> BrokerConfig {
    BrokerConfig::new("tcp://127.0.0.1:*").heartbeat(Duration::from_millis(50))
}

fn worker_config(endpoint: &str, metrics: &Metrics) -> WorkerConfig {
    WorkerConfig::new(endpoint, "echo")
        .heartbeat(Duration::from_millis(50))
        .liveness(10)
        .metrics(metrics)
}

#[test]
fn scraped_counters_match_the_requests_sent() {
    let metrics = Metrics::new();
    let http = metrics.serve("127.0.0.1:0").expect("serve");
    let broker = Broker::bind(broker_config().metrics(&metrics))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let mut worker = Worker::new(
        worker_config(broker.endpoint(), &metrics),
        |r: Vec<Message>| r,
    )
    .expect("worker");
    let stop = worker.shutdown_handle();
    let running = thread::spawn(move || worker.run());
    // No lookups: the broker's counters below are the 25 requests alone.
    let config = ClientConfig::new(broker.endpoint())
        .timeout(WAIT)
        .retries(0)
        .lookups(false);
    let mut client = Client::connect(config).expect("client");
    for i in 0..25 {
        let body = format!("r{i}");
        assert_eq!(
            client.request("echo", &[&body]).expect("reply"),
            vec![body.into_bytes()]
        );
    }
    let (status, text) = get(http.addr(), "/metrics");
    assert_eq!(status, 200);
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    };
    expect(r#"mdp_worker_requests_total{service="echo"}"#, 25.0);
    expect(r#"mdp_worker_replies_total{service="echo"}"#, 25.0);
    expect(r#"mdp_worker_panics_total{service="echo"}"#, 0.0);
    expect(r#"mdp_worker_workers{service="echo"}"#, 1.0);
    expect(
        r#"mdp_worker_request_duration_seconds_count{service="echo"}"#,
        25.0,
    );
    expect(r#"mdp_broker_service_requests_total{service="echo"}"#, 25.0);
    expect(r#"mdp_broker_service_replies_total{service="echo"}"#, 25.0);
    expect(r#"mdp_broker_service_workers{service="echo"}"#, 1.0);
    expect("mdp_broker_requests_received_total", 25.0);
    expect("mdp_broker_queue_time_seconds_count", 25.0);
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    stop.shutdown();
    running.join().expect("worker thread").expect("run");
    broker.stop().expect("broker");
}

#[test]
fn healthz_follows_registration_drain_and_resume() {
    let metrics = Metrics::new();
    let http = metrics.serve("127.0.0.1:0").expect("serve");
    assert_eq!(get(http.addr(), "/healthz").0, 503, "no worker yet");
    let broker = Broker::bind(broker_config())
        .expect("bind")
        .spawn()
        .expect("spawn");
    let mut worker = Worker::new(
        worker_config(broker.endpoint(), &metrics),
        |r: Vec<Message>| r,
    )
    .expect("worker");
    let (stop, drain) = (worker.shutdown_handle(), worker.drain_handle());
    assert_eq!(get(http.addr(), "/healthz").0, 503, "built, not registered");
    let running = thread::spawn(move || worker.run());
    wait_until("ready once registered", || {
        get(http.addr(), "/healthz") == (200, "ready\n".into())
    });
    drain.drain();
    wait_until("not ready while drained", || {
        get(http.addr(), "/healthz").0 == 503
    });
    drain.resume();
    wait_until("ready after resume", || {
        get(http.addr(), "/healthz").0 == 200
    });
    assert_eq!(get(http.addr(), "/nowhere").0, 404);
    stop.shutdown();
    running.join().expect("worker thread").expect("run");
    broker.stop().expect("broker");
}

#[test]
fn counters_never_go_down_when_a_worker_is_replaced() {
    let metrics = Metrics::new();
    let broker = Broker::bind(broker_config())
        .expect("bind")
        .spawn()
        .expect("spawn");
    let config = ClientConfig::new(broker.endpoint())
        .timeout(WAIT)
        .retries(0);
    let mut client = Client::connect(config).expect("client");
    let requests = |metrics: &Metrics| {
        sample(
            &metrics.encode(),
            r#"mdp_worker_requests_total{service="echo"}"#,
        )
    };
    let mut served = 0.0;
    for (round, count) in [(1, 3), (2, 2)] {
        let mut worker = Worker::new(
            worker_config(broker.endpoint(), &metrics),
            |r: Vec<Message>| r,
        )
        .expect("worker");
        let stop = worker.shutdown_handle();
        let running = thread::spawn(move || worker.run());
        for _ in 0..count {
            client.request("echo", &["x"]).expect("reply");
        }
        served += f64::from(count);
        assert_eq!(
            requests(&metrics),
            Some(served),
            "round {round}, worker running"
        );
        stop.shutdown();
        running.join().expect("worker thread").expect("run");
        // The worker is gone: its requests stay in the total.
        assert_eq!(
            requests(&metrics),
            Some(served),
            "round {round}, worker gone"
        );
        assert!(
            metrics
                .encode()
                .contains(r#"mdp_worker_workers{service="echo"} 0"#),
            "no live worker"
        );
    }
    broker.stop().expect("broker");
}

#[test]
fn a_process_with_a_broker_only_is_ready_while_the_broker_runs() {
    let metrics = Metrics::new();
    let http = metrics.serve("127.0.0.1:0").expect("serve");
    assert_eq!(get(http.addr(), "/healthz").0, 503, "nothing yet");
    let broker = Broker::bind(broker_config().metrics(&metrics))
        .expect("bind")
        .spawn()
        .expect("spawn");
    assert_eq!(get(http.addr(), "/healthz").0, 200);
    broker.stop().expect("broker");
    wait_until("not ready once stopped", || {
        get(http.addr(), "/healthz").0 == 503
    });
}

#[test]
fn a_process_without_a_broker_exports_no_broker_metrics() {
    let metrics = Metrics::new();
    let text = metrics.encode();
    assert!(!text.contains("mdp_broker_"), "{text}");
}

#[test]
fn a_pool_and_an_async_worker_report_their_services_too() {
    use majordomo_worker::pool::{PoolService, WorkerPool};
    let metrics = Metrics::new();
    let broker = Broker::bind(broker_config())
        .expect("bind")
        .spawn()
        .expect("spawn");
    let config = |service: &str| {
        WorkerConfig::new(broker.endpoint(), service)
            .heartbeat(Duration::from_millis(50))
            .metrics(&metrics)
    };
    let pool = WorkerPool::builder()
        .service(PoolService::new(config("pooled"), 3, || {
            |r: Vec<Message>| r
        }))
        .start()
        .expect("pool");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let worker = majordomo_worker::AsyncWorker::new(
        config("async").concurrency(2),
        |r: Vec<Message>| async move { r },
    )
    .expect("async worker");
    let stop = worker.shutdown_handle();
    let running = runtime.spawn(worker.run());
    wait_until("all five registered", || {
        sample(
            &metrics.encode(),
            r#"mdp_worker_registered{service="pooled"}"#,
        ) == Some(3.0)
            && sample(
                &metrics.encode(),
                r#"mdp_worker_registered{service="async"}"#,
            ) == Some(2.0)
    });
    let config = ClientConfig::new(broker.endpoint())
        .timeout(WAIT)
        .retries(0);
    let mut client = Client::connect(config).expect("client");
    for service in ["pooled", "pooled", "async", "async", "async"] {
        client.request(service, &["x"]).expect("reply");
    }
    let text = metrics.encode();
    for (series, value) in [
        (r#"mdp_worker_requests_total{service="pooled"}"#, 2.0),
        (r#"mdp_worker_requests_total{service="async"}"#, 3.0),
        (r#"mdp_worker_workers{service="pooled"}"#, 3.0),
        (r#"mdp_worker_workers{service="async"}"#, 2.0),
        (
            r#"mdp_worker_request_duration_seconds_count{service="async"}"#,
            3.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}");
    }
    stop.shutdown();
    runtime.block_on(running).expect("join").expect("run");
    pool.stop();
    broker.stop().expect("broker");
}

#[test]
fn a_worker_no_broker_answers_is_reported_unreachable_until_one_does() {
    // A port that was just ours: nothing listens there until the broker below binds it.
    let endpoint = {
        let broker = Broker::bind(broker_config()).expect("bind");
        broker.endpoint().to_string()
    };
    let metrics = Metrics::new();
    let http = metrics.serve("127.0.0.1:0").expect("serve");
    let events = majordomo_worker::Events::bounded(64);
    let config = WorkerConfig::new(&endpoint, "lonely")
        .heartbeat(Duration::from_millis(20))
        .liveness(3)
        .reconnect(Duration::from_millis(10))
        .reconnect_max(Duration::from_millis(40))
        .metrics(&metrics)
        .events(&events);
    let mut worker = Worker::new(config, |r: Vec<Message>| r).expect("worker");
    let stop = worker.shutdown_handle();
    let running = thread::spawn(move || worker.run());
    let next = |wanted: fn(&majordomo_worker::Event) -> bool| loop {
        let event = events.receiver().recv_timeout(WAIT).expect("event in time");
        if wanted(&event) {
            return event;
        }
    };
    let unreachable = next(|e| matches!(e, majordomo_worker::Event::BrokerUnreachable { .. }));
    let majordomo_worker::Event::BrokerUnreachable { attempts, .. } = unreachable else {
        unreachable!()
    };
    assert_eq!(attempts, majordomo_worker::UNREACHABLE_AFTER);
    let (status, body) = get(http.addr(), "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("1 worker(s) heard no broker"), "{body}");
    let text = get(http.addr(), "/metrics").1;
    let gauge = r#"mdp_worker_broker_unreachable{service="lonely"}"#;
    assert_eq!(sample(&text, gauge), Some(1.0), "{text}");
    let counter = r#"mdp_worker_unreachable_total{service="lonely"}"#;
    assert_eq!(sample(&text, counter), Some(1.0), "{text}");
    // A broker comes up there: the worker registers, and says so.
    let broker = Broker::bind(BrokerConfig::new(&endpoint).heartbeat(Duration::from_millis(20)))
        .expect("bind again")
        .spawn()
        .expect("spawn");
    next(|e| matches!(e, majordomo_worker::Event::BrokerReachable { .. }));
    wait_until("ready once a broker answers", || {
        get(http.addr(), "/healthz") == (200, "ready\n".into())
    });
    let text = get(http.addr(), "/metrics").1;
    assert_eq!(sample(&text, gauge), Some(0.0), "{text}");
    assert_eq!(sample(&text, counter), Some(1.0), "{text}");
    stop.shutdown();
    running.join().expect("worker thread").expect("run");
    broker.stop().expect("broker");
}

/// A raw DEALER worker of `service` that sent READY.
fn raw_worker(context: &zmq::Context, endpoint: &str, service: &[u8]) -> zmq::Socket {
    let worker = context.socket(zmq::DEALER).expect("dealer");
    worker.set_linger(0).expect("linger");
    worker.connect(endpoint).expect("connect");
    let ready: [&[u8]; 4] = [b"", b"MDPW01", &[0x01], service];
    worker.send_multipart(ready, 0).expect("READY");
    worker
}

/// Heartbeats every `every` from `worker` until a REQUEST arrives.
fn heartbeat_until_a_request(worker: &zmq::Socket, every: Duration) {
    let heartbeat: [&[u8]; 3] = [b"", b"MDPW01", &[0x04]];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no REQUEST within {WAIT:?}");
        worker.send_multipart(heartbeat, 0).expect("HEARTBEAT");
        if worker
            .poll(zmq::POLLIN, every.as_millis() as i64)
            .expect("poll")
            > 0
        {
            let message = worker.recv_multipart(0).expect("recv");
            if message.get(2).map(Vec::as_slice) == Some(&[0x02][..]) {
                return;
            }
        }
    }
}

#[test]
fn lost_requeued_and_expired_requests_are_counted_in_the_broker_metrics() {
    let metrics = Metrics::new();
    let hb = Duration::from_millis(20);
    let config = BrokerConfig::new("tcp://127.0.0.1:*")
        .heartbeat(hb)
        .max_queue_age(Duration::from_millis(30))
        .requeue_on_worker_loss(1)
        .metrics(&metrics);
    let broker = Broker::bind(config).expect("bind").spawn().expect("spawn");
    let context = zmq::Context::new();
    let client = |service: &[u8]| {
        let client = context.socket(zmq::REQ).expect("req");
        client.set_linger(0).expect("linger");
        client.connect(broker.endpoint()).expect("connect");
        let request: [&[u8]; 3] = [b"MDPC01", service, b"job"];
        client.send_multipart(request, 0).expect("request");
        client
    };
    let _waits = client(b"nobody"); // expires after 30 ms in its queue
    let ghost = raw_worker(&context, broker.endpoint(), b"job");
    let _client = client(b"job");
    heartbeat_until_a_request(&ghost, hb);
    for _ in 0..2 {
        thread::sleep(hb / 2);
        let heartbeat: [&[u8]; 3] = [b"", b"MDPW01", &[0x04]];
        ghost.send_multipart(heartbeat, 0).expect("HEARTBEAT");
    }
    drop(ghost); // heartbeated while busy, then silent: expired, its request queued again
    let next = raw_worker(&context, broker.endpoint(), b"job");
    heartbeat_until_a_request(&next, hb / 2);
    let disconnect: [&[u8]; 3] = [b"", b"MDPW01", &[0x05]];
    next.send_multipart(disconnect, 0).expect("DISCONNECT"); // its requeue is spent: lost
    let scraped = |series: &str| sample(&metrics.encode(), series);
    wait_until("the request is lost", || {
        scraped("mdp_broker_requests_lost_total") == Some(1.0)
    });
    for (series, value) in [
        ("mdp_broker_busy_workers_expired_total", 1.0),
        ("mdp_broker_workers_expired_total", 1.0),
        ("mdp_broker_requests_requeued_total", 1.0),
        ("mdp_broker_requests_expired_total", 1.0),
        ("mdp_broker_requests_dropped_total", 1.0),
    ] {
        assert_eq!(scraped(series), Some(value), "{series}");
    }
    broker.stop().expect("broker");
}
