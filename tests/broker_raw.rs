//! The broker against peers made of plain zmq sockets that spell out the frames of MDP/0.1,
//! so that what is tested is the wire format, not agreement between our own client and worker.
//!
//! Every blocking wait has a timeout (`WAIT`), so no test can hang.

use std::time::{Duration, Instant};

use majordomo_worker::broker::{
    Broker, BrokerConfig, BrokerError, BrokerHandle, BrokerStats, DEFAULT_MAX_SERVICES,
};

/// Longest wait for something that must happen.
const WAIT: Duration = Duration::from_secs(2);
/// Window in which something must not happen.
const QUIET: Duration = Duration::from_millis(150);

const READY: &[u8] = &[0x01];
const REQUEST: &[u8] = &[0x02];
const REPLY: &[u8] = &[0x03];
const HEARTBEAT: &[u8] = &[0x04];
const DISCONNECT: &[u8] = &[0x05];

fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn send(socket: &zmq::Socket, parts: &[&[u8]]) {
    socket.send_multipart(parts.iter(), 0).expect("send");
}

fn recv(socket: &zmq::Socket) -> Vec<Vec<u8>> {
    recv_within(socket, WAIT).expect("nothing received within 2 s")
}

fn recv_within(socket: &zmq::Socket, window: Duration) -> Option<Vec<Vec<u8>>> {
    let ready = socket
        .poll(zmq::POLLIN, window.as_millis() as i64)
        .expect("poll");
    (ready > 0).then(|| socket.recv_multipart(0).expect("recv"))
}

/// Everything received until `window` passes with nothing new.
fn drain(socket: &zmq::Socket, window: Duration) -> Vec<Vec<Vec<u8>>> {
    std::iter::from_fn(|| recv_within(socket, window)).collect()
}

fn config() -> BrokerConfig {
    BrokerConfig::new("tcp://127.0.0.1:*")
}

/// A running broker and a context for raw peers. Heartbeats default to 2.5 s, so tests
/// that do not ask for them never see one.
struct Fixture {
    broker: BrokerHandle,
    context: zmq::Context,
}

impl Fixture {
    fn start(config: BrokerConfig) -> Fixture {
        let broker = Broker::bind(config).expect("bind").spawn().expect("spawn");
        Fixture {
            broker,
            context: zmq::Context::new(),
        }
    }

    fn socket(&self, kind: zmq::SocketType, identity: Option<&[u8]>) -> zmq::Socket {
        let socket = self.context.socket(kind).expect("socket");
        socket.set_linger(0).expect("linger");
        if let Some(identity) = identity {
            socket.set_identity(identity).expect("identity");
        }
        socket.connect(self.broker.endpoint()).expect("connect");
        socket
    }

    fn dealer(&self) -> zmq::Socket {
        self.socket(zmq::DEALER, None)
    }

    fn req(&self, identity: &[u8]) -> zmq::Socket {
        self.socket(zmq::REQ, Some(identity))
    }

    /// A raw DEALER worker that sent READY and that the broker has registered.
    fn worker(&self, service: &[u8]) -> zmq::Socket {
        let before = self.broker.stats().workers_registered;
        let worker = self.dealer();
        send(&worker, &[b"", b"MDPW01", READY, service]);
        self.wait_for("worker registered", |s| s.workers_registered == before + 1);
        worker
    }

    /// Waits until the broker's statistics satisfy `done`, and returns them.
    fn wait_for(&self, what: &str, done: impl Fn(&BrokerStats) -> bool) -> BrokerStats {
        self.wait_for_within(WAIT, what, done)
    }

    /// Waits up to `window` until the broker's statistics satisfy `done`, and returns them.
    fn wait_for_within(
        &self,
        window: Duration,
        what: &str,
        done: impl Fn(&BrokerStats) -> bool,
    ) -> BrokerStats {
        let deadline = Instant::now() + window;
        loop {
            let stats = self.broker.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {window:?}: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What a raw worker receives for a request from `client`.
fn request_frames(client: &[u8], body: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut expected = frames(&[b"", b"MDPW01", REQUEST, client, b""]);
    expected.extend(frames(body));
    expected
}

#[test]
fn a_raw_req_client_and_a_raw_dealer_worker_exchange_the_exact_frames_of_mdp() {
    let net = Fixture::start(config());
    let worker = net.worker(b"echo");
    let client = net.req(b"client-1");
    let binary: &[u8] = &[0x00, 0xff, 0x80, 0x01];
    send(&client, &[b"MDPC01", b"echo", b"hello", binary]);
    assert_eq!(
        recv(&worker),
        request_frames(b"client-1", &[b"hello", binary])
    );
    send(
        &worker,
        &[b"", b"MDPW01", REPLY, b"client-1", b"", b"world"],
    );
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"echo", b"world"]));
    // The broker publishes its stats after the send, at most one loop turn later.
    let stats = net.wait_for("reply counted", |s| s.replies_routed >= 1);
    assert_eq!((stats.requests_dispatched, stats.replies_routed), (1, 1));
}

#[test]
fn a_raw_dealer_client_sends_the_empty_frame_itself_and_gets_it_back() {
    let net = Fixture::start(config());
    let worker = net.worker(b"echo");
    let client = net.dealer();
    send(&client, &[b"", b"MDPC01", b"echo", b"ping"]);
    let request = recv(&worker);
    assert_eq!(request[..3], frames(&[b"", b"MDPW01", REQUEST])[..]);
    assert_eq!(request[4..], frames(&[b"", b"ping"])[..]);
    let address = request[3].clone();
    send(
        &worker,
        &[b"", b"MDPW01", REPLY, &address, b"", b"pong", b""],
    );
    assert_eq!(
        recv(&client),
        frames(&[b"", b"MDPC01", b"echo", b"pong", b""])
    );
}

#[test]
fn a_request_queued_before_any_worker_is_served_when_one_registers() {
    let net = Fixture::start(config());
    let client = net.req(b"early");
    send(&client, &[b"MDPC01", b"echo", b"first"]);
    net.wait_for("request queued", |s| s.queued_requests == 1);
    let worker = net.worker(b"echo");
    assert_eq!(recv(&worker), request_frames(b"early", &[b"first"]));
    send(&worker, &[b"", b"MDPW01", REPLY, b"early", b"", b"done"]);
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"echo", b"done"]));
}

#[test]
fn requests_go_to_the_least_recently_used_of_two_raw_workers() {
    let net = Fixture::start(config());
    let a = net.worker(b"echo");
    let b = net.worker(b"echo");
    let client = net.req(b"c");
    send(&client, &[b"MDPC01", b"echo", b"1"]);
    assert_eq!(recv(&a), request_frames(b"c", &[b"1"]));
    send(&a, &[b"", b"MDPW01", REPLY, b"c", b"", b"r1"]);
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"echo", b"r1"]));
    // A is free again, but B has waited longer.
    send(&client, &[b"MDPC01", b"echo", b"2"]);
    assert_eq!(recv(&b), request_frames(b"c", &[b"2"]));
    assert_eq!(recv_within(&a, QUIET), None);
}

#[test]
fn an_idle_raw_worker_receives_heartbeats_at_the_configured_cadence() {
    let net = Fixture::start(config().heartbeat(Duration::from_millis(50)).liveness(100));
    let worker = net.worker(b"echo");
    let window = Duration::from_millis(500);
    let start = Instant::now();
    let mut heartbeats = 0;
    while let Some(message) = recv_within(&worker, window.saturating_sub(start.elapsed())) {
        assert_eq!(message, frames(&[b"", b"MDPW01", HEARTBEAT]));
        heartbeats += 1;
    }
    assert!(
        (5..=11).contains(&heartbeats),
        "{heartbeats} heartbeats in 500 ms at 50 ms"
    );
}

#[test]
fn a_silent_raw_worker_is_purged_and_later_requests_are_queued_not_sent_to_it() {
    let net = Fixture::start(config().heartbeat(Duration::from_millis(20)).liveness(3));
    let worker = net.worker(b"echo");
    let stats = net.wait_for("worker expired", |s| s.workers_expired == 1);
    assert_eq!(stats.workers, 0);
    let client = net.req(b"c");
    send(&client, &[b"MDPC01", b"echo", b"lost?"]);
    net.wait_for("request queued", |s| s.queued_requests == 1);
    let received = drain(&worker, QUIET);
    assert!(!received.is_empty(), "heartbeats came before the purge");
    assert!(
        received
            .iter()
            .all(|m| m == &frames(&[b"", b"MDPW01", HEARTBEAT])),
        "only heartbeats, no DISCONNECT, no REQUEST: {received:?}"
    );
}

#[test]
fn a_raw_worker_that_answers_heartbeats_stays_registered() {
    let net = Fixture::start(config().heartbeat(Duration::from_millis(20)).liveness(3));
    let worker = net.worker(b"echo");
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        if recv_within(&worker, Duration::from_millis(20)).is_some() {
            send(&worker, &[b"", b"MDPW01", HEARTBEAT]);
        }
    }
    let stats = net.broker.stats();
    assert_eq!((stats.workers, stats.workers_expired), (1, 0));
}

#[test]
fn a_second_ready_gets_disconnect_and_unregisters_the_worker() {
    let net = Fixture::start(config());
    let worker = net.worker(b"echo");
    send(&worker, &[b"", b"MDPW01", READY, b"echo"]);
    assert_eq!(recv(&worker), frames(&[b"", b"MDPW01", DISCONNECT]));
    net.wait_for("worker forgotten", |s| s.workers == 0);
}

#[test]
fn heartbeat_or_reply_from_an_unknown_worker_gets_disconnect() {
    let net = Fixture::start(config());
    let stranger = net.dealer();
    send(&stranger, &[b"", b"MDPW01", HEARTBEAT]);
    assert_eq!(recv(&stranger), frames(&[b"", b"MDPW01", DISCONNECT]));
    send(&stranger, &[b"", b"MDPW01", REPLY, b"client", b"", b"late"]);
    assert_eq!(recv(&stranger), frames(&[b"", b"MDPW01", DISCONNECT]));
    assert_eq!(net.broker.stats().replies_routed, 0);
}

#[test]
fn mmi_service_answers_200_404_and_501() {
    let net = Fixture::start(config());
    let _worker = net.worker(b"echo");
    let client = net.req(b"c");
    for (service, name, code) in [
        (&b"mmi.service"[..], &b"echo"[..], &b"200"[..]),
        (b"mmi.service", b"nobody", b"404"),
        (b"mmi.workers", b"echo", b"501"),
    ] {
        send(&client, &[b"MDPC01", service, name]);
        assert_eq!(recv(&client), frames(&[b"MDPC01", service, code]));
    }
}

#[test]
fn mmi_services_and_mmi_stats_answer_in_their_documented_frames() {
    let net = Fixture::start(config());
    let worker = net.worker(b"echo");
    let _other = net.worker(b"alpha");
    let client = net.req(b"c");
    send(&client, &[b"MDPC01", b"mmi.services"]);
    assert_eq!(
        recv(&client),
        frames(&[b"MDPC01", b"mmi.services", b"200", b"alpha", b"echo"])
    );
    // One request served by the raw worker, then the stats of echo.
    send(&client, &[b"MDPC01", b"echo", b"hi"]);
    assert_eq!(recv(&worker), request_frames(b"c", &[b"hi"]));
    send(&worker, &[b"", b"MDPW01", REPLY, b"c", b"", b"hi"]);
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"echo", b"hi"]));
    send(&client, &[b"MDPC01", b"mmi.stats", b"echo"]);
    assert_eq!(
        recv(&client),
        frames(&[
            b"MDPC01",
            b"mmi.stats",
            b"200",
            b"echo",
            b"1",
            b"1",
            b"0",
            b"1",
            b"0"
        ])
    );
    // Other mmi. names are still unsupported.
    send(&client, &[b"MDPC01", b"mmi.workers"]);
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"mmi.workers", b"501"]));
}

#[test]
fn malformed_client_and_worker_messages_are_dropped_and_valid_requests_still_served() {
    let net = Fixture::start(config());
    let malformed: &[&[&[u8]]] = &[
        &[b""],
        &[b"", b"garbage"],
        &[b"hello"],
        &[b"x", b"MDPW01", READY, b"echo"],
        &[b"", b"MDPW02", READY, b"echo"],
        &[b"", b"MDPW01", &[0x09]],
        &[b"", b"MDPW01", &[0x01, 0x01], b"echo"],
        &[b"", b"MDPW01", READY],
        &[b"", b"MDPW01", READY, b""],
        &[b"", b"MDPW01", READY, b"echo", b"extra"],
        &[b"", b"MDPW01", REPLY, b"client-without-delimiter"],
        &[b"", b"MDPW01", HEARTBEAT, b"extra"],
        &[b"", b"MDPC02", b"echo", b"x"],
        &[b"", b"MDPC01"],
        &[b"", b"MDPC01", b""],
        &[b"x", b"MDPC01", b"echo"],
    ];
    let bad = net.dealer();
    for parts in malformed {
        send(&bad, parts);
    }
    send(
        &bad,
        &[b"", b"MDPW01", REQUEST, b"c", b"", b"from a worker?"],
    );
    let stats = net.wait_for("all dropped", |s| {
        s.malformed_dropped + s.unexpected_dropped == malformed.len() as u64 + 1
    });
    assert_eq!(stats.malformed_dropped, malformed.len() as u64);
    assert_eq!(stats.unexpected_dropped, 1);
    assert_eq!(recv_within(&bad, QUIET), None, "no answer to garbage");

    let worker = net.worker(b"echo");
    let client = net.req(b"c");
    send(&client, &[b"MDPC01", b"echo", b"still there?"]);
    assert_eq!(recv(&worker), request_frames(b"c", &[b"still there?"]));
}

#[test]
fn requests_beyond_the_queue_bound_are_dropped_and_counted() {
    let net = Fixture::start(config().max_queue(2));
    let client = net.dealer();
    for n in [b"1", b"2", b"3"] {
        send(&client, &[b"", b"MDPC01", b"echo", n]);
    }
    let stats = net.wait_for("3 requests", |s| s.requests_received == 3);
    assert_eq!((stats.queued_requests, stats.requests_dropped), (2, 1));
    let worker = net.worker(b"echo");
    let first = recv(&worker);
    assert_eq!(first.last(), Some(&b"1".to_vec()));
    send(&worker, &[b"", b"MDPW01", REPLY, &first[3], b"", b"r1"]);
    assert_eq!(recv(&worker).last(), Some(&b"2".to_vec()));
    assert_eq!(recv_within(&worker, QUIET), None, "request 3 was dropped");
}

#[test]
fn stop_with_peers_connected_is_prompt_and_disconnects_workers() {
    let net = Fixture::start(config());
    let worker = net.worker(b"echo");
    let client = net.req(b"waiting");
    send(&client, &[b"MDPC01", b"nobody", b"x"]);
    net.wait_for("request queued", |s| s.queued_requests == 1);
    let started = Instant::now();
    let stats = net.broker.stop().expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(recv(&worker), frames(&[b"", b"MDPW01", DISCONNECT]));
    assert_eq!((stats.workers, stats.requests_received), (0, 1));
}

#[test]
fn binding_a_taken_endpoint_is_a_bind_error_naming_it() {
    let net = Fixture::start(config());
    let taken = net.broker.endpoint().to_string();
    match Broker::bind(BrokerConfig::new(taken.clone())) {
        Err(BrokerError::Bind { endpoint, .. }) => assert_eq!(endpoint, taken),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

/// Sends one request for each of `count` made-up service names that no worker serves, and
/// waits until the broker has read them all.
fn flood_unserved_names(net: &Fixture, count: u64) -> BrokerStats {
    let client = net.dealer();
    for n in 0..count {
        send(
            &client,
            &[b"", b"MDPC01", format!("nobody-{n}").as_bytes(), b"x"],
        );
    }
    net.wait_for_within(Duration::from_secs(20), "flood read", |s| {
        s.requests_received == count
    })
}

/// A raw echo worker for `echo` answers `count` requests of a raw client, one at a time.
fn echo_round_trips(net: &Fixture, count: usize) {
    let worker = net.worker(b"echo");
    let client = net.req(b"c");
    for n in 0..count {
        let body = n.to_string();
        send(&client, &[b"MDPC01", b"echo", body.as_bytes()]);
        let request = recv(&worker);
        assert_eq!(request, request_frames(b"c", &[body.as_bytes()]));
        send(
            &worker,
            &[b"", b"MDPW01", REPLY, b"c", b"", body.as_bytes()],
        );
        assert_eq!(
            recv(&client),
            frames(&[b"MDPC01", b"echo", body.as_bytes()])
        );
    }
}

#[test]
fn a_flood_of_unserved_service_names_is_bounded_and_a_real_worker_is_still_served() {
    let net = Fixture::start(config());
    let stats = flood_unserved_names(&net, 20_000);
    assert!(
        stats.queued_requests <= DEFAULT_MAX_SERVICES,
        "one queue per made-up name: {stats:?}"
    );
    assert_eq!(stats.services, DEFAULT_MAX_SERVICES, "{stats:?}");
    assert_eq!(stats.services_refused, 10_000, "{stats:?}");
    let started = Instant::now();
    echo_round_trips(&net, 100);
    assert!(
        started.elapsed() < WAIT,
        "100 round trips: {:?}",
        started.elapsed()
    );
}

#[test]
fn requests_past_max_queue_age_expire_and_their_services_are_forgotten() {
    let net = Fixture::start(config().max_queue_age(Duration::from_millis(20)));
    flood_unserved_names(&net, 2_000);
    let stats = net.wait_for("all expired", |s| s.requests_expired == 2_000);
    assert_eq!((stats.services, stats.queued_requests), (0, 0));
    assert_eq!(stats.services_forgotten, 2_000);
    echo_round_trips(&net, 10);
}

/// Sends HEARTBEATs every `every` from `worker` until a message other than HEARTBEAT comes,
/// as a live worker does, and returns it.
fn heartbeat_until_a_message(worker: &zmq::Socket, every: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing but heartbeats within 2 s"
        );
        send(worker, &[b"", b"MDPW01", HEARTBEAT]);
        match recv_within(worker, every) {
            Some(message) if message != frames(&[b"", b"MDPW01", HEARTBEAT]) => return message,
            _ => {}
        }
    }
}

/// A raw worker takes a request, heartbeats twice while busy (as our workers do), then falls
/// silent as a killed process does: its socket closes without a word.
fn take_a_request_and_die(net: &Fixture, client: &zmq::Socket, hb: Duration) -> Instant {
    let worker = net.worker(b"ghost");
    send(client, &[b"MDPC01", b"ghost", b"job"]);
    // The broker may heartbeat the idle worker before the request reaches it.
    let mut first = recv(&worker);
    while first == frames(&[b"", b"MDPW01", HEARTBEAT]) {
        first = recv(&worker);
    }
    assert_eq!(first, request_frames(b"c", &[b"job"]));
    std::thread::sleep(hb);
    send(&worker, &[b"", b"MDPW01", HEARTBEAT]);
    std::thread::sleep(hb);
    let silent = Instant::now(); // the broker hears the last HEARTBEAT after this
    send(&worker, &[b"", b"MDPW01", HEARTBEAT]);
    drop(worker);
    silent
}

#[test]
fn a_busy_raw_worker_that_heartbeated_then_fell_silent_is_expired_and_mmi_service_says_404() {
    let hb = Duration::from_millis(20);
    let net = Fixture::start(config().heartbeat(hb).liveness(3));
    let client = net.req(b"c");
    let silent = take_a_request_and_die(&net, &client, hb);
    net.wait_for("the busy worker expired", |s| s.workers == 0);
    let took = silent.elapsed();
    assert!(
        took >= hb * 3 && took < Duration::from_secs(1),
        "expired {took:?} after falling silent, liveness {:?}",
        hb * 3
    );
    let lookup = net.req(b"m");
    send(&lookup, &[b"MDPC01", b"mmi.service", b"ghost"]);
    assert_eq!(recv(&lookup), frames(&[b"MDPC01", b"mmi.service", b"404"]));
    assert_eq!(
        recv_within(&client, QUIET),
        None,
        "nobody answers by default"
    );
    let stats = net.broker.stats();
    assert_eq!(
        (
            stats.busy_workers_expired,
            stats.requests_lost,
            stats.requests_requeued
        ),
        (1, 1, 0)
    );
}

#[test]
fn with_requeue_the_request_of_a_dead_busy_raw_worker_is_served_by_the_next_worker() {
    let hb = Duration::from_millis(20);
    let net = Fixture::start(config().heartbeat(hb).liveness(3).requeue_on_worker_loss(1));
    let client = net.req(b"c");
    take_a_request_and_die(&net, &client, hb);
    let next = net.worker(b"ghost");
    let request = heartbeat_until_a_message(&next, hb / 2);
    assert_eq!(request, request_frames(b"c", &[b"job"]));
    send(&next, &[b"", b"MDPW01", REPLY, b"c", b"", b"done"]);
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"ghost", b"done"]));
    let stats = net.broker.stats();
    assert_eq!((stats.requests_requeued, stats.requests_lost), (1, 0));
    assert_eq!(stats.requests_dispatched, 2);
}

#[test]
fn a_request_is_not_sent_into_the_connection_of_a_worker_that_died_idle() {
    // A worker process that crashed while idle stays listed until its expiry (seconds at
    // real heartbeats); a request dispatched to it meanwhile used to vanish into its dead
    // connection. The broker's socket now refuses it, and the next worker gets it.
    let net = Fixture::start(config());
    let dead = net.worker(b"echo");
    let live = net.worker(b"echo");
    drop(dead); // closed without DISCONNECT; its connection goes with it
    std::thread::sleep(QUIET); // the broker's socket has seen the connection close
    let client = net.req(b"c");
    send(&client, &[b"MDPC01", b"echo", b"1"]);
    let request = recv_within(&live, WAIT).expect("the live worker gets the request");
    assert_eq!(request, request_frames(b"c", &[b"1"]));
    send(&live, &[b"", b"MDPW01", REPLY, b"c", b"", b"r1"]);
    assert_eq!(recv(&client), frames(&[b"MDPC01", b"echo", b"r1"]));
    let stats = net.wait_for("the dead worker forgotten", |s| s.workers == 1);
    assert_eq!((stats.workers_gone, stats.requests_undelivered), (1, 1));
}
