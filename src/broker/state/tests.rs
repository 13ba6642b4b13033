use super::*;

const HB: Duration = Duration::from_millis(100);
const LIVENESS: u32 = 3;

fn f(bytes: &[u8]) -> Frame {
    bytes.to_vec()
}

fn frames(parts: &[&[u8]]) -> Vec<Frame> {
    parts.iter().map(|p| f(p)).collect()
}

/// A broker at time `t0` with a queue bound of 2, and helpers that speak for its peers.
struct Scenario {
    state: BrokerState,
    t0: Instant,
}

impl Scenario {
    fn new() -> Scenario {
        let t0 = Instant::now();
        let settings = Settings {
            heartbeat: HB,
            expiry: HB * LIVENESS,
            max_queue: 2,
        };
        Scenario {
            state: BrokerState::new(settings, t0),
            t0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn worker(&mut self, ms: u64, id: &[u8], parts: &[&[u8]]) {
        let mut message = frames(&[id, b"", b"MDPW01"]);
        message.extend(frames(parts));
        self.state.handle_message(self.at(ms), message);
    }

    fn ready(&mut self, ms: u64, id: &[u8], service: &[u8]) {
        self.worker(ms, id, &[&[0x01], service]);
    }

    fn reply(&mut self, ms: u64, id: &[u8], client: &[u8], body: &[u8]) {
        self.worker(ms, id, &[&[0x03], client, b"", body]);
    }

    fn request(&mut self, ms: u64, client: &[u8], service: &[u8], body: &[&[u8]]) {
        let mut message = frames(&[client, b"", b"MDPC01", service]);
        message.extend(frames(body));
        self.state.handle_message(self.at(ms), message);
    }

    fn tick(&mut self, ms: u64) {
        self.state.handle_timeout(self.at(ms));
    }

    fn sent(&mut self) -> Vec<Vec<Frame>> {
        std::iter::from_fn(|| self.state.poll_send()).collect()
    }
}

fn request_to(worker: &[u8], client: &[u8], body: &[&[u8]]) -> Vec<Frame> {
    let mut message = frames(&[worker, b"", b"MDPW01", &[0x02], client, b""]);
    message.extend(frames(body));
    message
}

fn to_worker(worker: &[u8], command: u8) -> Vec<Frame> {
    frames(&[worker, b"", b"MDPW01", &[command]])
}

fn to_client(client: &[u8], service: &[u8], body: &[&[u8]]) -> Vec<Frame> {
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
fn busy_workers_are_never_expired() {
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
