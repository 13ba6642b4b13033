use super::*;

const HB: Duration = Duration::from_millis(100);
const LIVENESS: u32 = 3;

pub(super) fn f(bytes: &[u8]) -> Frame {
    bytes.to_vec()
}

pub(super) fn frames(parts: &[&[u8]]) -> Vec<Frame> {
    parts.iter().map(|p| f(p)).collect()
}

/// A broker at time `t0` with a queue bound of 2, and helpers that speak for its peers.
pub(super) struct Scenario {
    pub(super) state: BrokerState,
    t0: Instant,
}

/// Settings of a [`Scenario`]: a queue bound of 2, generous other bounds, no age limit.
pub(super) fn settings() -> Settings {
    Settings {
        heartbeat: HB,
        expiry: HB * LIVENESS,
        max_queue: 2,
        max_queued_total: 1000,
        max_services: 1000,
        max_queue_age: None,
        requeue_on_worker_loss: 0,
    }
}

impl Scenario {
    pub(super) fn new() -> Scenario {
        Scenario::with(settings())
    }

    pub(super) fn with(settings: Settings) -> Scenario {
        let t0 = Instant::now();
        Scenario {
            state: BrokerState::new(settings, t0),
            t0,
        }
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    pub(super) fn worker(&mut self, ms: u64, id: &[u8], parts: &[&[u8]]) {
        let mut message = frames(&[id, b"", b"MDPW01"]);
        message.extend(frames(parts));
        self.state.handle_message(self.at(ms), message);
    }

    pub(super) fn ready(&mut self, ms: u64, id: &[u8], service: &[u8]) {
        self.worker(ms, id, &[&[0x01], service]);
    }

    pub(super) fn reply(&mut self, ms: u64, id: &[u8], client: &[u8], body: &[u8]) {
        self.worker(ms, id, &[&[0x03], client, b"", body]);
    }

    pub(super) fn request(&mut self, ms: u64, client: &[u8], service: &[u8], body: &[&[u8]]) {
        let mut message = frames(&[client, b"", b"MDPC01", service]);
        message.extend(frames(body));
        self.state.handle_message(self.at(ms), message);
    }

    pub(super) fn tick(&mut self, ms: u64) {
        self.state.handle_timeout(self.at(ms));
    }

    pub(super) fn sent(&mut self) -> Vec<Vec<Frame>> {
        std::iter::from_fn(|| self.state.poll_send()).collect()
    }
}

pub(super) fn request_to(worker: &[u8], client: &[u8], body: &[&[u8]]) -> Vec<Frame> {
    let mut message = frames(&[worker, b"", b"MDPW01", &[0x02], client, b""]);
    message.extend(frames(body));
    message
}

pub(super) fn to_worker(worker: &[u8], command: u8) -> Vec<Frame> {
    frames(&[worker, b"", b"MDPW01", &[command]])
}

pub(super) fn to_client(client: &[u8], service: &[u8], body: &[&[u8]]) -> Vec<Frame> {
    let mut message = frames(&[client, b"", b"MDPC01", service]);
    message.extend(frames(body));
    message
}

#[test]
fn a_request_reaches_a_ready_worker_with_the_client_address_and_body() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    s.request(1, b"C", b"echo", &[b"hello", &[0, 0xff]]);
    assert_eq!(
        s.sent(),
        vec![request_to(b"W", b"C", &[b"hello", &[0, 0xff]])]
    );
    let stats = s.state.stats();
    assert_eq!(stats.workers_registered, 1);
    assert_eq!(stats.requests_dispatched, 1);
    assert_eq!(stats.waiting_workers, 0);
}

#[test]
fn requests_without_a_worker_wait_for_the_first_worker_to_register() {
    let mut s = Scenario::new();
    s.request(0, b"C1", b"echo", &[b"1"]);
    s.request(0, b"C2", b"echo", &[b"2"]);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    assert_eq!(s.state.stats().queued_requests, 2);
    s.ready(5, b"W", b"echo");
    assert_eq!(s.sent(), vec![request_to(b"W", b"C1", &[b"1"])]);
    s.reply(6, b"W", b"C1", b"r1");
    assert_eq!(
        s.sent(),
        vec![
            to_client(b"C1", b"echo", &[b"r1"]),
            request_to(b"W", b"C2", &[b"2"])
        ]
    );
    assert_eq!(s.state.stats().queued_requests, 0);
}

#[test]
fn requests_go_to_the_least_recently_used_waiting_worker() {
    let mut s = Scenario::new();
    s.ready(0, b"A", b"echo");
    s.ready(1, b"B", b"echo");
    s.request(2, b"C", b"echo", &[b"1"]);
    assert_eq!(s.sent(), vec![request_to(b"A", b"C", &[b"1"])]);
    s.reply(3, b"A", b"C", b"r");
    s.request(4, b"C", b"echo", &[b"2"]);
    assert_eq!(
        s.sent(),
        vec![
            to_client(b"C", b"echo", &[b"r"]),
            request_to(b"B", b"C", &[b"2"])
        ]
    );
}

#[test]
fn heartbeats_go_to_idle_workers_only_once_per_interval() {
    let mut s = Scenario::new();
    s.ready(0, b"idle", b"echo");
    s.ready(0, b"busy", b"other");
    s.request(0, b"C", b"other", &[]);
    s.sent();
    s.tick(99);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    s.tick(100);
    assert_eq!(s.sent(), vec![to_worker(b"idle", 0x04)]);
    s.tick(150);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    assert_eq!(s.state.next_deadline(), s.at(200));
    s.worker(180, b"idle", &[&[0x04]]);
    s.tick(200);
    assert_eq!(s.sent(), vec![to_worker(b"idle", 0x04)]);
    assert_eq!(s.state.stats().heartbeats_sent, 2);
}

#[test]
fn idle_workers_silent_for_heartbeat_times_liveness_are_forgotten_without_a_word() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    s.tick(200);
    s.sent();
    s.tick(300);
    assert_eq!(
        s.sent(),
        Vec::<Vec<Frame>>::new(),
        "no DISCONNECT, no HEARTBEAT"
    );
    let stats = s.state.stats();
    assert_eq!((stats.workers, stats.workers_expired), (0, 1));
    s.request(301, b"C", b"echo", &[b"x"]);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    assert_eq!(s.state.stats().queued_requests, 1);
}

#[test]
fn any_message_from_a_worker_refreshes_its_liveness() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    s.worker(250, b"W", &[&[0x04]]);
    s.tick(300);
    s.tick(500);
    assert_eq!(s.state.stats().workers, 1);
    s.tick(550);
    s.tick(650);
    assert_eq!(s.state.stats().workers, 0);
}

#[test]
fn busy_workers_that_never_heartbeat_while_busy_are_never_expired() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    s.request(0, b"C", b"echo", &[]);
    s.tick(10_000);
    assert_eq!(s.state.stats().workers, 1);
    s.sent();
    s.reply(10_001, b"W", b"C", b"late");
    assert_eq!(s.sent(), vec![to_client(b"C", b"echo", &[b"late"])]);
}

#[test]
fn a_second_ready_gets_disconnect_and_the_worker_is_forgotten() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    s.ready(1, b"W", b"echo");
    assert_eq!(s.sent(), vec![to_worker(b"W", 0x05)]);
    assert_eq!(s.state.stats().workers, 0);
    s.request(2, b"C", b"echo", &[]);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
}

#[test]
fn heartbeat_or_reply_from_an_unknown_worker_gets_disconnect() {
    let mut s = Scenario::new();
    s.worker(0, b"X", &[&[0x04]]);
    s.reply(0, b"Y", b"C", b"r");
    assert_eq!(s.sent(), vec![to_worker(b"X", 0x05), to_worker(b"Y", 0x05)]);
    assert_eq!(s.state.stats().disconnects_sent, 2);
    assert_eq!(s.state.stats().replies_routed, 0);
}

#[test]
fn disconnect_from_a_worker_forgets_it_silently() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    s.worker(1, b"W", &[&[0x05]]);
    s.worker(2, b"unknown", &[&[0x05]]);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    assert_eq!(s.state.stats().workers, 0);
}

#[test]
fn ready_for_a_reserved_mmi_service_is_refused() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"mmi.service");
    assert_eq!(s.sent(), vec![to_worker(b"W", 0x05)]);
    assert_eq!(s.state.stats().workers, 0);
}

/// Service, body, expected code.
type MmiCase = (&'static [u8], &'static [&'static [u8]], &'static [u8]);

#[test]
fn mmi_service_answers_200_404_and_501() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    let cases: [MmiCase; 5] = [
        (b"mmi.service", &[b"echo"], b"200"),
        (b"mmi.service", &[b"nobody"], b"404"),
        (b"mmi.service", &[], b"404"),
        (b"mmi.workers", &[b"echo"], b"501"),
        (b"mmi.", &[], b"501"),
    ];
    for (service, body, code) in cases {
        s.request(1, b"C", service, body);
        assert_eq!(s.sent(), vec![to_client(b"C", service, &[code])]);
    }
    assert_eq!(s.state.stats().mmi_requests, 5);
    assert_eq!(
        s.state.stats().waiting_workers,
        1,
        "mmi never takes a worker"
    );
}

#[test]
fn a_full_queue_drops_the_new_request_and_counts_it() {
    let mut s = Scenario::new();
    for client in [b"1", b"2", b"3"] {
        s.request(0, client, b"echo", &[]);
    }
    let stats = s.state.stats();
    assert_eq!((stats.queued_requests, stats.requests_dropped), (2, 1));
    s.ready(1, b"W", b"echo");
    assert_eq!(s.sent(), vec![request_to(b"W", b"1", &[])]);
}

#[test]
fn a_second_reply_to_one_request_is_dropped() {
    let mut s = Scenario::new();
    s.ready(0, b"W", b"echo");
    s.request(0, b"C", b"echo", &[]);
    s.reply(1, b"W", b"C", b"first");
    s.reply(2, b"W", b"C", b"second");
    assert_eq!(
        s.sent(),
        vec![
            request_to(b"W", b"C", &[]),
            to_client(b"C", b"echo", &[b"first"])
        ]
    );
    assert_eq!(s.state.stats().unexpected_dropped, 1);
    assert_eq!(s.state.stats().waiting_workers, 1, "listed once");
}

#[test]
fn malformed_and_unexpected_messages_are_counted_and_dropped() {
    let cases: &[&[&[u8]]] = &[
        &[b"P"],
        &[b"P", b""],
        &[b"P", b"x", b"MDPW01", &[0x01], b"echo"],
        &[b"P", b"", b"MDPW02", &[0x01], b"echo"],
        &[b"P", b"", b"MDPW01", &[0x09]],
        &[b"P", b"", b"MDPW01", &[0x01, 0x01], b"echo"],
        &[b"P", b"", b"MDPW01", &[0x01]],
        &[b"P", b"", b"MDPW01", &[0x01], b""],
        &[b"P", b"", b"MDPW01", &[0x01], b"echo", b"extra"],
        &[b"P", b"", b"MDPW01", &[0x03], b"C"],
        &[b"P", b"", b"MDPW01", &[0x04], b"extra"],
        &[b"P", b"", b"garbage"],
        &[b"P", b"", b"MDPC02", b"echo", b"x"],
        &[b"P", b"", b"MDPC01"],
        &[b"P", b"", b"MDPC01", b""],
        &[b"P", b"x", b"MDPC01", b"echo"],
    ];
    for parts in cases {
        let mut s = Scenario::new();
        s.state.handle_message(s.t0, frames(parts));
        assert_eq!(s.state.stats().malformed_dropped, 1, "{parts:?}");
        assert_eq!(s.sent(), Vec::<Vec<Frame>>::new(), "{parts:?}");
    }
    let mut s = Scenario::new();
    s.worker(0, b"P", &[&[0x02], b"C", b"", b"body"]);
    assert_eq!(s.state.stats().unexpected_dropped, 1);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
}

#[test]
fn stop_disconnects_every_worker() {
    let mut s = Scenario::new();
    s.ready(0, b"A", b"echo");
    s.ready(0, b"B", b"other");
    s.state.handle_stop();
    let mut sent = s.sent();
    sent.sort();
    assert_eq!(sent, vec![to_worker(b"A", 0x05), to_worker(b"B", 0x05)]);
    assert_eq!(s.state.stats().workers, 0);
}

#[test]
fn a_service_left_with_no_workers_and_no_requests_is_forgotten() {
    let mut s = Scenario::new();
    s.request(0, b"C", b"echo", &[b"1"]);
    s.ready(1, b"W", b"echo");
    s.reply(2, b"W", b"C", b"r");
    assert_eq!(s.state.stats().services, 1, "a worker keeps it");
    s.worker(3, b"W", &[&[0x05]]);
    let stats = s.state.stats();
    assert_eq!((stats.services, stats.services_forgotten), (0, 1));
    assert!(!s.state.services.holds_an_idle_service());
    s.sent();
    s.request(4, b"C", b"mmi.service", &[b"echo"]);
    assert_eq!(s.sent(), vec![to_client(b"C", b"mmi.service", &[b"404"])]);
    assert_eq!(s.state.stats().services, 0, "a lookup creates nothing");
}

#[test]
fn requests_for_new_service_names_beyond_max_services_are_refused_and_counted() {
    let mut s = Scenario::with(Settings {
        max_services: 2,
        ..settings()
    });
    for service in [b"a", b"b", b"c", b"a"] {
        s.request(0, b"C", service, &[]);
    }
    let stats = s.state.stats();
    assert_eq!((stats.services, stats.services_refused), (2, 1));
    assert_eq!(stats.queued_requests, 3, "a known name is still queued");
    s.request(1, b"C", b"mmi.service", &[b"c"]);
    assert_eq!(s.sent(), vec![to_client(b"C", b"mmi.service", &[b"404"])]);
    s.ready(2, b"W", b"c");
    assert_eq!(s.state.stats().services, 3, "a worker is never refused");
    s.request(3, b"C", b"c", &[b"now served"]);
    assert_eq!(s.sent(), vec![request_to(b"W", b"C", &[b"now served"])]);
}

#[test]
fn queued_requests_beyond_max_queued_total_are_dropped_and_counted() {
    let mut s = Scenario::with(Settings {
        max_queued_total: 3,
        ..settings()
    });
    for service in [b"a", b"a", b"b", b"b", b"c"] {
        s.request(0, b"C", service, &[]);
    }
    let stats = s.state.stats();
    assert_eq!(stats.queued_requests, 3);
    assert_eq!(stats.requests_dropped_total_bound, 2);
    assert_eq!((stats.services, stats.requests_dropped), (2, 0));
    s.ready(1, b"W", b"a");
    s.sent();
    s.request(2, b"C", b"c", &[]);
    assert_eq!(
        s.state.stats().queued_requests,
        3,
        "room again after a dispatch"
    );
}

#[test]
fn a_request_an_idle_worker_can_take_is_never_dropped_by_the_bounds() {
    let mut s = Scenario::with(Settings {
        max_queued_total: 1,
        max_services: 1,
        ..settings()
    });
    s.ready(0, b"W", b"echo");
    s.request(1, b"C", b"echo", &[b"1"]);
    assert_eq!(s.sent(), vec![request_to(b"W", b"C", &[b"1"])]);
    s.request(2, b"C", b"echo", &[b"2"]);
    s.request(3, b"C", b"echo", &[b"3"]);
    let stats = s.state.stats();
    assert_eq!(
        (stats.queued_requests, stats.requests_dropped_total_bound),
        (1, 1)
    );
    s.reply(4, b"W", b"C", b"r1");
    s.request(5, b"C", b"echo", &[b"4"]);
    let stats = s.state.stats();
    assert_eq!(
        (stats.queued_requests, stats.requests_dropped_total_bound),
        (1, 1)
    );
}

#[test]
fn requests_queued_for_max_queue_age_are_dropped_and_their_service_forgotten() {
    let mut s = Scenario::with(Settings {
        max_queue_age: Some(Duration::from_millis(250)),
        ..settings()
    });
    s.request(0, b"C", b"a", &[]);
    s.request(100, b"C", b"b", &[]);
    assert_eq!(
        s.state.next_deadline(),
        s.at(100),
        "the heartbeat comes first"
    );
    s.tick(100);
    assert_eq!(s.state.next_deadline(), s.at(200));
    s.tick(200);
    assert_eq!(
        s.state.next_deadline(),
        s.at(250),
        "then the oldest request's age"
    );
    s.tick(249);
    assert_eq!(s.state.stats().queued_requests, 2);
    s.tick(250);
    let stats = s.state.stats();
    assert_eq!((stats.queued_requests, stats.requests_expired), (1, 1));
    assert_eq!((stats.services, stats.services_forgotten), (1, 1));
    s.tick(350);
    let stats = s.state.stats();
    assert_eq!((stats.queued_requests, stats.requests_expired), (0, 2));
    assert_eq!((stats.services, stats.services_forgotten), (0, 2));
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new(), "dropped without a word");
}

#[test]
fn an_expired_request_is_never_dispatched_even_without_a_timer_tick() {
    let mut s = Scenario::with(Settings {
        max_queue_age: Some(Duration::from_millis(250)),
        ..settings()
    });
    s.request(0, b"C", b"echo", &[b"old"]);
    s.request(10, b"C", b"echo", &[b"fresh"]);
    s.ready(255, b"W", b"echo");
    assert_eq!(s.sent(), vec![request_to(b"W", b"C", &[b"fresh"])]);
    assert_eq!(s.state.stats().requests_expired, 1);
}

#[test]
fn a_request_dispatched_in_time_is_not_expired_later() {
    let mut s = Scenario::with(Settings {
        max_queue_age: Some(Duration::from_millis(250)),
        ..settings()
    });
    s.request(0, b"C", b"echo", &[]);
    s.ready(100, b"W", b"echo");
    s.tick(1000);
    assert_eq!(s.state.stats().requests_expired, 0);
    s.reply(1001, b"W", b"C", b"late but fine");
    assert_eq!(s.state.stats().replies_routed, 1);
}

#[test]
fn age_entries_of_dispatched_requests_never_outgrow_the_queued_requests() {
    let mut s = Scenario::with(Settings {
        max_queue_age: Some(Duration::from_secs(3600)),
        ..settings()
    });
    s.ready(0, b"W", b"echo");
    s.request(0, b"C", b"echo", &[]);
    for ms in 1..5000 {
        s.request(ms, b"C", b"echo", &[]);
        s.reply(ms, b"W", b"C", b"r");
        // Never more than twice the largest queue, plus the slack.
        let limit = 2 * 2 + services::AGES_SLACK + 1;
        assert!(s.state.services.age_entries() <= limit, "at {ms} ms");
    }
    assert_eq!(s.state.stats().replies_routed, 4999);
}

#[test]
fn heartbeats_reach_every_idle_worker_however_many_services_wait_unserved() {
    let mut s = Scenario::new();
    s.ready(0, b"A", b"a");
    s.ready(0, b"B", b"b");
    for n in 0..500u32 {
        s.request(0, b"C", &n.to_be_bytes(), &[]);
    }
    s.tick(100);
    let mut sent = s.sent();
    sent.sort();
    assert_eq!(sent, vec![to_worker(b"A", 0x04), to_worker(b"B", 0x04)]);
    assert_eq!(s.state.stats().services, 502);
}

/// The body of the one reply the broker sent to `client` for `service`.
pub(super) fn mmi_reply(sent: &[Vec<Frame>], client: &[u8], service: &[u8]) -> Vec<Frame> {
    let reply = sent
        .iter()
        .find(|m| m[0] == client)
        .unwrap_or_else(|| panic!("no reply to {client:?} in {sent:?}"));
    assert_eq!(&reply[1..4], &frames(&[b"", b"MDPC01", service])[..]);
    reply[4..].to_vec()
}

#[test]
fn mmi_services_lists_every_known_service_sorted() {
    let mut s = Scenario::new();
    s.ready(0, b"W1", b"echo");
    s.ready(0, b"W2", b"alpha");
    s.request(1, b"C1", b"queued-only", &[b"x"]);
    s.sent();
    s.request(2, b"C2", b"mmi.services", &[]);
    let body = mmi_reply(&s.sent(), b"C2", b"mmi.services");
    assert_eq!(body, frames(&[b"200", b"alpha", b"echo", b"queued-only"]));
}

#[test]
fn mmi_stats_reports_workers_waiting_queued_served_and_the_oldest_age() {
    let mut s = Scenario::new();
    s.ready(0, b"W1", b"echo");
    s.ready(0, b"W2", b"echo");
    // Two served, one in the hands of W1 (busy), one queued for a service nobody serves.
    s.request(10, b"C1", b"echo", &[b"a"]);
    s.reply(11, b"W1", b"C1", b"a");
    s.request(12, b"C1", b"echo", &[b"b"]);
    s.reply(13, b"W2", b"C1", b"b");
    s.request(14, b"C1", b"echo", &[b"c"]);
    s.request(20, b"C3", b"lonely", &[b"d"]);
    s.sent();
    s.request(270, b"C2", b"mmi.stats", &[]);
    let body = mmi_reply(&s.sent(), b"C2", b"mmi.stats");
    let expected: &[&[u8]] = &[
        b"200", //
        b"echo", b"2", b"1", b"0", b"2", b"0", //
        b"lonely", b"0", b"0", b"1", b"0", b"250",
    ];
    assert_eq!(body, frames(expected));
    // Named services only, in the order asked; an unknown one with zeros.
    s.request(271, b"C2", b"mmi.stats", &[b"nobody", b"echo"]);
    let body = mmi_reply(&s.sent(), b"C2", b"mmi.stats");
    let expected: &[&[u8]] = &[
        b"200", //
        b"nobody", b"0", b"0", b"0", b"0", b"0", //
        b"echo", b"2", b"1", b"0", b"2", b"0",
    ];
    assert_eq!(body, frames(expected));
}
