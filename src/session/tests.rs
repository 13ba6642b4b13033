#[allow(unused_imports)]
use super::*;
use crate::events::{Event, RequestOutcome, WorkerId};
use crate::protocol::Command;

// Simulated time only: every test takes `t0` once and feeds `t0 + offset` to the session.

const MS: Duration = Duration::from_millis(1);
const NS: Duration = Duration::from_nanos(1);
const HEARTBEAT: Duration = Duration::from_millis(100);
const LIVENESS: u32 = 3;
/// `HEARTBEAT × LIVENESS`: how long an idle broker may stay silent.
const WINDOW: Duration = Duration::from_millis(300);
const RECONNECT: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_millis(400);

type Frames = Vec<Vec<u8>>;
type Act = Action<Vec<u8>>;

fn config(endpoints: usize) -> SessionConfig {
    SessionConfig {
        id: WorkerId::next("echo"),
        service: b"echo".to_vec(),
        endpoints: (0..endpoints)
            .map(|i| format!("tcp://broker-{i}:5555"))
            .collect(),
        events: true,
        panic_reply: vec![b"panicked".to_vec()],
        heartbeat: HEARTBEAT,
        liveness: LIVENESS,
        reconnect: RECONNECT,
        reconnect_max: RECONNECT_MAX,
        send_disconnect: true,
        seed: 0x5eed_1234_abcd_0001,
        request_timeout: None,
        timeout_reply: vec![b"timed out".to_vec()],
        shutdown_grace: None,
    }
}

fn session(endpoints: usize) -> Session<Vec<u8>> {
    Session::new(config(endpoints))
}

/// Everything the session has queued, in order. Every `Connect` must be followed at once by
/// exactly one READY for the service: that pair is returned as the `Connect` alone, so every
/// test checks that rule.
fn drain(s: &mut Session<Vec<u8>>) -> Vec<Act> {
    let actions: Vec<Act> = std::iter::from_fn(|| s.poll_action()).collect();
    let mut out = Vec::new();
    let mut iter = actions.into_iter().peekable();
    while let Some(action) = iter.next() {
        let connect = matches!(action, Action::Connect { .. });
        if matches!(action, Action::Send(WorkerMessage::Ready { .. })) {
            panic!("READY without a Connect just before it");
        }
        out.push(action);
        if connect {
            assert_eq!(
                iter.next(),
                Some(Action::Send(WorkerMessage::Ready {
                    service: b"echo".to_vec()
                })),
                "a Connect must be followed by READY"
            );
        }
    }
    out
}

/// Every event the session has queued, in order.
fn events(s: &mut Session<Vec<u8>>) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session that connected to endpoint 0 at `t0` and is idle, with nothing queued.
fn started(endpoints: usize, t0: Instant) -> Session<Vec<u8>> {
    let mut s = session(endpoints);
    s.handle_timeout(t0);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 0 }]);
    assert_eq!(s.state(), State::Idle);
    s
}

/// A session started at `t0` that received a REQUEST from `client-1` with body `work` at `at`
/// and delivered it to the action.
fn busy(endpoints: usize, t0: Instant, at: Instant) -> Session<Vec<u8>> {
    let mut s = started(endpoints, t0);
    s.handle_message(at, request(&[b"client-1"], &[b"work"]));
    assert_eq!(drain(&mut s), vec![deliver(&[b"work"])]);
    assert_eq!(s.state(), State::Busy);
    s
}

fn frames(parts: &[&[u8]]) -> Frames {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn request(envelope: &[&[u8]], body: &[&[u8]]) -> WorkerMessage<Vec<u8>> {
    WorkerMessage::Request {
        envelope: frames(envelope),
        body: frames(body),
    }
}

fn deliver(body: &[&[u8]]) -> Act {
    Action::Deliver { body: frames(body) }
}

fn reply(envelope: &[&[u8]], body: &[&[u8]]) -> Act {
    Action::Send(WorkerMessage::Reply {
        envelope: frames(envelope),
        body: frames(body),
    })
}

fn close(reason: DisconnectReason, graceful: bool) -> Act {
    Action::Close { reason, graceful }
}

const HEARTBEAT_OUT: Act = Action::Send(WorkerMessage::Heartbeat);

/// Drives the session like the I/O layer would with no input: wakes it at each deadline up
/// to and including `end`. Returns each action with the offset from `t0` it was queued at.
/// Fails if a deadline does not move forward once handled (the loop would spin).
fn run_until(s: &mut Session<Vec<u8>>, t0: Instant, end: Instant) -> Vec<(Duration, Act)> {
    let mut out = Vec::new();
    while let Some(at) = s.next_deadline().filter(|&at| at <= end) {
        s.handle_timeout(at);
        out.extend(drain(s).into_iter().map(|a| (at - t0, a)));
        if let Some(next) = s.next_deadline() {
            assert!(
                next > at,
                "deadline {:?} still due after handling it",
                next - t0
            );
        }
    }
    out
}

/// The reconnect delay chosen by the last disconnect at `at` (the only timer in Backoff).
fn backoff_delay(s: &Session<Vec<u8>>, at: Instant) -> Duration {
    assert_eq!(s.state(), State::Backoff);
    s.next_deadline().expect("a reconnect deadline in Backoff") - at
}

/// Lets the broker of a connection made at `connected` stay silent: the session must close
/// exactly at `connected + WINDOW`. Returns the close time and the reconnect delay chosen.
fn expire(s: &mut Session<Vec<u8>>, connected: Instant) -> (Instant, Duration) {
    let at = connected + WINDOW;
    s.handle_timeout(at);
    assert_eq!(drain(s), vec![close(DisconnectReason::BrokerSilent, false)]);
    (at, backoff_delay(s, at))
}

/// Wakes the session at the end of its backoff; returns the time and endpoint it connected to.
fn reconnect(s: &mut Session<Vec<u8>>) -> (Instant, usize) {
    let at = s.next_deadline().expect("a reconnect deadline");
    s.handle_timeout(at);
    match drain(s).as_slice() {
        [Action::Connect { endpoint }] => (at, *endpoint),
        other => panic!("expected one Connect, got {other:?}"),
    }
}

fn assert_within(delay: Duration, step: Duration) {
    assert!(
        delay >= step / 2 && delay <= step,
        "delay {delay:?} outside [{:?}, {step:?}]",
        step / 2
    );
}

// --- Start ---------------------------------------------------------------------------

#[test]
fn next_deadline_is_none_before_start() {
    let mut s = session(3);
    assert_eq!(s.state(), State::Start);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.poll_action(), None);
    assert!(!s.is_busy());
    assert!(!s.is_stopping());
    assert_eq!(s.stats(), WorkerStats::default());
}

#[test]
fn first_timeout_connects_to_endpoint_zero_and_nothing_else() {
    let t0 = Instant::now();
    let mut s = session(3);
    s.handle_timeout(t0);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 0 }]);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.endpoint(), 0);
    assert_eq!(
        s.stats().reconnects,
        0,
        "the first socket is not a reconnect"
    );
    assert_eq!(s.stats().heartbeats_sent, 0);
    // The first HEARTBEAT is due one interval after READY, never before it.
    assert_eq!(s.next_deadline(), Some(t0 + HEARTBEAT));
}

#[test]
fn messages_before_the_first_connect_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut s = session(1);
    s.handle_message(t0, WorkerMessage::Heartbeat);
    s.handle_message(t0, request(&[b"c"], &[b"x"]));
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.state(), State::Start);
    assert_eq!(s.stats().unexpected_dropped, 2);
    assert_eq!(s.stats().requests, 0);
}

// --- Heartbeats ------------------------------------------------------------------------

#[test]
fn heartbeats_go_out_every_interval_for_an_hour_while_the_broker_answers() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let beats = 36_000u32; // one hour at 100 ms
    for k in 1..=beats {
        let due = t0 + HEARTBEAT * k;
        assert_eq!(s.next_deadline(), Some(due), "heartbeat {k}");
        // One nanosecond early: nothing.
        s.handle_timeout(due - NS);
        assert_eq!(s.poll_action(), None, "heartbeat {k} sent early");
        s.handle_timeout(due);
        assert_eq!(drain(&mut s), vec![HEARTBEAT_OUT], "heartbeat {k}");
        // The broker answers a little later, as the reference broker does.
        s.handle_message(due + MS, WorkerMessage::Heartbeat);
        assert_eq!(s.poll_action(), None);
    }
    assert_eq!(s.state(), State::Idle);
    assert_eq!(
        s.stats(),
        WorkerStats {
            heartbeats_sent: u64::from(beats),
            ..WorkerStats::default()
        }
    );
}

#[test]
fn heartbeats_are_due_time_based_also_on_turns_that_received_data() {
    // The broker sends something every 30 ms (here a stray READY, dropped: anything but a
    // HEARTBEAT, which has a rule of its own); every turn that received data also runs the
    // timers. Our HEARTBEAT must still go out every 100 ms, not only when a poll times out.
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut sent_at = Vec::new();
    for k in 1..=40u32 {
        let now = t0 + 30 * MS * k;
        let stray = WorkerMessage::Ready {
            service: b"x".to_vec(),
        };
        s.handle_message(now, stray);
        s.handle_timeout(now);
        for a in drain(&mut s) {
            assert_eq!(a, HEARTBEAT_OUT);
            sent_at.push((now - t0).as_millis());
        }
    }
    // Due at 100, then 100 after each send: first turn at or after each due time.
    assert_eq!(
        sent_at,
        vec![120, 240, 360, 480, 600, 720, 840, 960, 1080, 1200]
    );
}

#[test]
fn a_late_wakeup_sends_one_heartbeat_not_a_burst() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_message(
        t0 + 240 * MS,
        WorkerMessage::Ready {
            service: b"x".to_vec(),
        },
    );
    // Woken 250 ms late: 3 intervals passed, still one HEARTBEAT, the next one an interval on.
    s.handle_timeout(t0 + 350 * MS);
    assert_eq!(drain(&mut s), vec![HEARTBEAT_OUT]);
    assert_eq!(s.stats().heartbeats_sent, 1);
    assert_eq!(s.next_deadline(), Some(t0 + 450 * MS));
}

#[test]
fn heartbeats_keep_their_schedule_while_a_request_is_in_flight() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 30 * MS);
    let actions = run_until(&mut s, t0, t0 + 1000 * MS);
    let expected: Vec<(Duration, Act)> = (1..=10u32)
        .map(|k| (HEARTBEAT * k, HEARTBEAT_OUT))
        .collect();
    assert_eq!(actions, expected);
    assert_eq!(s.state(), State::Busy);
    assert_eq!(s.stats().heartbeats_sent, 10);
}

// --- Broker liveness ---------------------------------------------------------------------

#[test]
fn silent_broker_triggers_reconnect_after_liveness_heartbeats() {
    let t0 = Instant::now();
    let mut s = started(3, t0);
    // Just before the deadline: heartbeats only.
    let before = run_until(&mut s, t0, t0 + WINDOW - NS);
    assert_eq!(
        before,
        vec![(100 * MS, HEARTBEAT_OUT), (200 * MS, HEARTBEAT_OUT)]
    );
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.next_deadline(), Some(t0 + WINDOW));

    s.handle_timeout(t0 + WINDOW);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerSilent, false)],
        "no HEARTBEAT on a socket being dropped"
    );
    assert_eq!(s.state(), State::Backoff);
    let delay = backoff_delay(&s, t0 + WINDOW);
    assert_within(delay, RECONNECT);

    // Nothing until the delay is over, then a new socket to the next endpoint.
    s.handle_timeout(t0 + WINDOW + delay - NS);
    assert_eq!(drain(&mut s), vec![]);
    s.handle_timeout(t0 + WINDOW + delay);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 1 }]);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.endpoint(), 1);
    assert_eq!(s.stats().reconnects, 1);
    // The new connection gets its own full window and heartbeat interval.
    let connected = t0 + WINDOW + delay;
    assert_eq!(s.next_deadline(), Some(connected + HEARTBEAT));
    let next = run_until(&mut s, t0, connected + WINDOW - NS);
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|(_, a)| *a == HEARTBEAT_OUT));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn reconnects_rotate_through_three_endpoints_in_order() {
    let t0 = Instant::now();
    let mut s = started(3, t0);
    let mut connected = t0;
    let mut endpoints = vec![0];
    for _ in 0..7 {
        expire(&mut s, connected);
        let (at, endpoint) = reconnect(&mut s);
        assert_eq!(s.endpoint(), endpoint);
        connected = at;
        endpoints.push(endpoint);
    }
    assert_eq!(endpoints, vec![0, 1, 2, 0, 1, 2, 0, 1]);
    assert_eq!(s.stats().reconnects, 7);
}

#[test]
fn a_single_endpoint_is_used_for_every_reconnect() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut connected = t0;
    for n in 1..=5u64 {
        expire(&mut s, connected);
        let (at, endpoint) = reconnect(&mut s);
        assert_eq!(endpoint, 0);
        assert_eq!(s.stats().reconnects, n);
        connected = at;
    }
}

#[test]
fn every_broker_heartbeat_pushes_the_expiry_back() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    // The broker is heard at 250 ms, then 500 ms, then never again.
    let mut actions = Vec::new();
    for heard in [250 * MS, 500 * MS] {
        actions.extend(run_until(&mut s, t0, t0 + heard));
        s.handle_message(t0 + heard, WorkerMessage::Heartbeat);
    }
    actions.extend(run_until(&mut s, t0, t0 + 500 * MS + WINDOW - NS));
    let expected: Vec<(Duration, Act)> =
        (1..=7u32).map(|k| (HEARTBEAT * k, HEARTBEAT_OUT)).collect();
    assert_eq!(actions, expected, "heartbeats only, at 100..=700 ms");
    assert_eq!(s.state(), State::Idle);
    // Exactly heartbeat × liveness after it was last heard.
    s.handle_timeout(t0 + 500 * MS + WINDOW);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerSilent, false)]
    );
}

#[test]
fn a_request_answered_just_before_the_deadline_keeps_the_broker_alive() {
    // Heard at 290 ms by way of a REQUEST answered at once: the old deadline (300 ms) is
    // gone, the new one counts from the reply.
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 290 * MS);
    assert_eq!(
        s.handle_reply(t0 + 291 * MS, frames(&[b"done"])),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"done"])]);
    s.handle_timeout(t0 + WINDOW);
    assert_eq!(drain(&mut s), vec![HEARTBEAT_OUT]);
    assert_eq!(s.state(), State::Idle);
    s.handle_timeout(t0 + 291 * MS + WINDOW);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerSilent, false)]
    );
}

#[test]
fn broker_disconnect_closes_at_once_and_reconnects_after_the_delay() {
    let t0 = Instant::now();
    let mut s = started(2, t0);
    let at = t0 + 150 * MS;
    assert_eq!(run_until(&mut s, t0, at), vec![(100 * MS, HEARTBEAT_OUT)]);
    s.handle_message(at, WorkerMessage::Disconnect);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerDisconnected, false)]
    );
    assert_eq!(s.state(), State::Backoff);
    let delay = backoff_delay(&s, at);
    assert_within(delay, RECONNECT);
    // No heartbeat and no expiry on the dropped socket; only the reconnect.
    assert_eq!(
        run_until(&mut s, t0, at + delay),
        vec![(at + delay - t0, Action::Connect { endpoint: 1 })]
    );
    assert_eq!(s.stats().reconnects, 1);
    assert_eq!(s.stats().unexpected_dropped, 0);
}

#[test]
fn broker_disconnect_does_not_count_as_hearing_from_it() {
    // DISCONNECT must not reset the backoff the way a live message does.
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let (_, first) = expire(&mut s, t0);
    assert_within(first, RECONNECT);
    let (connected, _) = reconnect(&mut s);
    let at = connected + 10 * MS;
    s.handle_message(at, WorkerMessage::Disconnect);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerDisconnected, false)]
    );
    assert_within(backoff_delay(&s, at), 2 * RECONNECT);
}

#[test]
fn a_lost_connection_closes_at_once_and_reconnects_after_the_delay() {
    for reason in [
        DisconnectReason::ConnectionLost,
        DisconnectReason::AuthenticationFailed,
    ] {
        let t0 = Instant::now();
        let mut s = started(2, t0);
        let at = t0 + 50 * MS;
        s.handle_connection_lost(at, reason);
        assert_eq!(drain(&mut s), vec![close(reason, false)]);
        assert_eq!(s.state(), State::Backoff);
        let delay = backoff_delay(&s, at);
        assert_within(delay, RECONNECT);
        assert_eq!(
            run_until(&mut s, t0, at + delay),
            vec![(at + delay - t0, Action::Connect { endpoint: 1 })]
        );
        // Reported again while backing off (a late monitor event): nothing more happens.
        let mut idle = started(1, t0);
        idle.handle_connection_lost(at, reason);
        drain(&mut idle);
        idle.handle_connection_lost(at + MS, reason);
        assert_eq!(drain(&mut idle), vec![]);
    }
}

// --- Backoff -----------------------------------------------------------------------------

#[test]
fn backoff_grows_across_failed_attempts_up_to_the_maximum() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut connected = t0;
    let mut delays = Vec::new();
    for step_ms in [50u64, 100, 200, 400, 400, 400] {
        let (_, delay) = expire(&mut s, connected);
        assert_within(delay, Duration::from_millis(step_ms));
        delays.push(delay);
        connected = reconnect(&mut s).0;
    }
    // Seeded: the same config gives the same delays.
    let mut again = started(1, t0);
    let mut connected = t0;
    for &delay in &delays {
        assert_eq!(expire(&mut again, connected).1, delay);
        connected = reconnect(&mut again).0;
    }
}

#[test]
fn backoff_starts_over_once_the_new_broker_is_heard() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut connected = t0;
    for step_ms in [50u64, 100, 200] {
        assert_within(expire(&mut s, connected).1, Duration::from_millis(step_ms));
        connected = reconnect(&mut s).0;
    }
    // The fourth connection works: the broker answers.
    let heard = connected + 20 * MS;
    s.handle_message(heard, WorkerMessage::Heartbeat);
    // It dies later: the delay is back to the first step, not 400 ms.
    let (_, delay) = expire(&mut s, heard);
    assert_within(delay, RECONNECT);
    connected = reconnect(&mut s).0;
    assert_within(expire(&mut s, connected).1, 2 * RECONNECT);
}

#[test]
fn connect_failure_backs_off_and_tries_the_next_endpoint() {
    let t0 = Instant::now();
    let mut s = started(3, t0);
    let mut now = t0;
    let mut endpoints = Vec::new();
    for step_ms in [50u64, 100, 200, 400] {
        s.handle_connect_failed(now);
        assert_eq!(
            drain(&mut s),
            vec![close(DisconnectReason::ConnectFailed, false)]
        );
        assert_within(backoff_delay(&s, now), Duration::from_millis(step_ms));
        let (at, endpoint) = reconnect(&mut s);
        endpoints.push(endpoint);
        now = at;
    }
    assert_eq!(endpoints, vec![1, 2, 0, 1]);
    assert_eq!(s.stats().reconnects, 4);
    // A failure report with no socket open changes nothing.
    s.handle_connect_failed(now);
    drain(&mut s);
    let backoff_until = s.next_deadline();
    s.handle_connect_failed(now + MS);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.next_deadline(), backoff_until);
}

// --- Unreachable ---------------------------------------------------------------------------

/// The `BrokerUnreachable` and `BrokerReachable` events queued, without the others.
fn reachability(s: &mut Session<Vec<u8>>) -> Vec<Event> {
    events(s)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::BrokerUnreachable { .. } | Event::BrokerReachable { .. }
            )
        })
        .collect()
}

#[test]
fn a_broker_silent_through_three_connections_is_reported_unreachable_once() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut connected = t0;
    for attempt in 1..=UNREACHABLE_AFTER + 3 {
        let (closed, _) = expire(&mut s, connected);
        let reported = reachability(&mut s);
        if attempt == UNREACHABLE_AFTER {
            assert_eq!(
                reported,
                vec![Event::BrokerUnreachable {
                    worker: s.id().clone(),
                    attempts: UNREACHABLE_AFTER,
                    silent_for: closed - t0,
                }]
            );
        } else {
            assert_eq!(reported, vec![], "attempt {attempt}");
        }
        assert_eq!(s.stats().broker_unreachable, attempt >= UNREACHABLE_AFTER);
        connected = reconnect(&mut s).0;
    }
    assert_eq!(s.stats().unreachable, 1, "one stretch, counted once");
    // A broker answers: said once, the flag clears, the next stretch counts anew.
    s.handle_message(connected + MS, WorkerMessage::Heartbeat);
    assert_eq!(
        reachability(&mut s),
        vec![Event::BrokerReachable {
            worker: s.id().clone(),
            broker: "tcp://broker-0:5555".to_string(),
        }]
    );
    assert!(!s.stats().broker_unreachable);
    // That connection was answered: its end does not count, the three after it do.
    expire(&mut s, connected + MS);
    let mut connected = reconnect(&mut s).0;
    for _ in 0..UNREACHABLE_AFTER - 1 {
        expire(&mut s, connected);
        connected = reconnect(&mut s).0;
    }
    assert_eq!(
        s.stats().unreachable,
        1,
        "two unanswered connections are not yet a fault"
    );
    expire(&mut s, connected);
    assert_eq!(s.stats().unreachable, 2);
    assert!(s.stats().broker_unreachable);
}

#[test]
fn connections_the_broker_answered_on_never_count_as_unreachable() {
    // A broker restarting again and again: DISCONNECT (or a dropped connection) after it was
    // heard on every connection. Each costs a reconnect, none is a fault to report.
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut connected = t0;
    for i in 0..10u32 {
        s.handle_message(connected + MS, WorkerMessage::Heartbeat);
        let at = connected + 2 * MS;
        match i % 2 {
            0 => s.handle_message(at, WorkerMessage::Disconnect),
            _ => s.handle_connection_lost(at, DisconnectReason::ConnectionLost),
        }
        drain(&mut s);
        connected = reconnect(&mut s).0;
    }
    assert_eq!(reachability(&mut s), vec![]);
    assert_eq!(s.stats().unreachable, 0);
    assert!(!s.stats().broker_unreachable);
}

#[test]
fn failed_connects_count_towards_unreachable_like_silent_brokers() {
    let t0 = Instant::now();
    let mut s = started(3, t0);
    let mut now = t0;
    for _ in 0..UNREACHABLE_AFTER {
        s.handle_connect_failed(now);
        drain(&mut s);
        now = reconnect(&mut s).0;
    }
    assert!(matches!(
        reachability(&mut s).as_slice(),
        [Event::BrokerUnreachable { attempts, .. }] if *attempts == UNREACHABLE_AFTER
    ));
    assert_eq!(s.stats().unreachable, 1);
}

// --- Requests and replies ----------------------------------------------------------------

#[test]
fn request_body_is_delivered_and_the_reply_keeps_the_envelope_unchanged() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    // Two binary routing frames (not UTF-8), a body with an empty frame in it.
    let envelope: &[&[u8]] = &[&[0x00, 0xff, 0x80, 0x7f], &[0xc3, 0x28]];
    let body: &[&[u8]] = &[b"first", b"", &[0xfe, 0x00]];
    s.handle_message(t0 + 10 * MS, request(envelope, body));
    assert_eq!(drain(&mut s), vec![deliver(body)]);
    assert!(s.is_busy());
    assert_eq!(s.state(), State::Busy);

    let answer: &[&[u8]] = &[b"", &[0x01, 0x02]];
    assert_eq!(
        s.handle_reply(t0 + 20 * MS, frames(answer)),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(envelope, answer)]);
    assert!(!s.is_busy());
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.stats().requests, 1);
    assert_eq!(s.stats().replies, 1);
}

#[test]
fn a_second_reply_to_one_request_is_refused_and_sends_nothing() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    assert_eq!(
        s.handle_reply(t0 + 20 * MS, frames(&[b"one"])),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"one"])]);
    assert_eq!(
        s.handle_reply(t0 + 30 * MS, frames(&[b"two"])),
        ReplyOutcome::NoRequest
    );
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().replies, 1);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn a_reply_with_no_request_at_all_is_refused() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    assert_eq!(s.handle_reply(t0, frames(&[b"x"])), ReplyOutcome::NoRequest);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().replies, 0);
}

#[test]
fn a_request_while_busy_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    s.handle_message(t0 + 20 * MS, request(&[b"client-2"], &[b"more"]));
    assert_eq!(drain(&mut s), vec![], "no second Deliver");
    assert_eq!(s.stats().unexpected_dropped, 1);
    assert_eq!(s.stats().requests, 1);
    // The reply goes to the first client, and only one REPLY leaves.
    assert_eq!(
        s.handle_reply(t0 + 30 * MS, frames(&[b"ok"])),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"ok"])]);
    assert_eq!(
        s.handle_reply(t0 + 40 * MS, frames(&[b"ok"])),
        ReplyOutcome::NoRequest
    );
    assert_eq!(drain(&mut s), vec![]);
}

#[test]
fn ready_and_reply_from_the_broker_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_message(
        t0 + 10 * MS,
        WorkerMessage::Ready {
            service: b"echo".to_vec(),
        },
    );
    s.handle_message(
        t0 + 20 * MS,
        WorkerMessage::Reply {
            envelope: frames(&[b"c"]),
            body: frames(&[b"b"]),
        },
    );
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().unexpected_dropped, 2);
    assert_eq!(s.stats().requests, 0);
    assert_eq!(s.state(), State::Idle);
    assert!(!s.is_busy());
}

#[test]
fn a_request_in_flight_for_ten_windows_never_counts_as_broker_silence() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    // A broker that heartbeats busy workers (the reference one does not) must not re-arm a
    // deadline that then runs out while the action is still working.
    s.handle_message(t0 + 20 * MS, WorkerMessage::Heartbeat);
    assert_eq!(drain(&mut s), vec![]);
    let end = t0 + 10 * WINDOW;
    let actions = run_until(&mut s, t0, end);
    let expected: Vec<(Duration, Act)> = (1..=30u32)
        .map(|k| (HEARTBEAT * k, HEARTBEAT_OUT))
        .collect();
    assert_eq!(actions, expected, "heartbeats only, no Close");
    assert_eq!(s.state(), State::Busy);
    assert!(s.is_busy());
    assert_eq!(s.stats().reconnects, 0);
    assert_eq!(s.stats().unexpected_dropped, 0);
}

#[test]
fn after_a_long_request_the_broker_gets_a_fresh_deadline_from_the_reply() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    let replied = t0 + 10 * WINDOW + 50 * MS;
    run_until(&mut s, t0, replied);
    assert_eq!(
        s.handle_reply(replied, frames(&[b"late"])),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"late"])]);
    // Silence just under heartbeat × liveness after the reply: heartbeats only.
    let actions = run_until(&mut s, t0, replied + WINDOW - NS);
    assert_eq!(
        actions,
        vec![
            (3100 * MS, HEARTBEAT_OUT),
            (3200 * MS, HEARTBEAT_OUT),
            (3300 * MS, HEARTBEAT_OUT),
        ]
    );
    assert_eq!(s.state(), State::Idle);
    // At the deadline: reconnect.
    assert_eq!(s.next_deadline(), Some(replied + WINDOW));
    s.handle_timeout(replied + WINDOW);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerSilent, false)]
    );
    assert_eq!(s.state(), State::Backoff);
}

// --- Broker lost while busy --------------------------------------------------------------

#[test]
fn reply_after_a_broker_disconnect_is_reported_lost_and_not_sent() {
    let t0 = Instant::now();
    let mut s = busy(2, t0, t0 + 10 * MS);
    let gone = t0 + 20 * MS;
    s.handle_message(gone, WorkerMessage::Disconnect);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerDisconnected, false)]
    );
    assert_eq!(s.state(), State::Backoff);
    assert!(s.is_busy());
    let reconnect_at = s.next_deadline().unwrap();
    assert_within(reconnect_at - gone, RECONNECT);

    // The reply comes back before the delay is over: nothing is sent, the timer connects.
    let replied = gone + MS;
    assert!(replied < reconnect_at);
    assert_eq!(
        s.handle_reply(replied, frames(&[b"r"])),
        ReplyOutcome::ConnectionLost
    );
    assert_eq!(drain(&mut s), vec![]);
    assert!(!s.is_busy());
    assert_eq!(s.state(), State::Backoff);
    assert_eq!(s.next_deadline(), Some(reconnect_at));
    assert_eq!(s.stats().replies, 0);
    s.handle_timeout(reconnect_at);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 1 }]);
}

#[test]
fn reconnect_waits_for_the_request_in_flight_then_connects_on_reply() {
    let t0 = Instant::now();
    let mut s = busy(2, t0, t0 + 10 * MS);
    let gone = t0 + 20 * MS;
    s.handle_message(gone, WorkerMessage::Disconnect);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::BrokerDisconnected, false)]
    );
    // The delay runs out while the action still works: no new socket yet.
    let reconnect_at = s.next_deadline().unwrap();
    s.handle_timeout(reconnect_at);
    assert_eq!(
        drain(&mut s),
        vec![],
        "no Connect while a request is in flight"
    );
    assert_eq!(s.state(), State::Backoff);
    assert_eq!(s.next_deadline(), None, "only the reply can move it on");
    // Ten seconds of waking brings nothing.
    for k in 1..=100u32 {
        s.handle_timeout(reconnect_at + HEARTBEAT * k);
    }
    assert_eq!(drain(&mut s), vec![]);

    let replied = t0 + Duration::from_secs(10);
    assert_eq!(
        s.handle_reply(replied, frames(&[b"r"])),
        ReplyOutcome::ConnectionLost
    );
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 1 }]);
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.stats().reconnects, 1);
    assert_eq!(s.stats().replies, 0);
    assert_eq!(s.next_deadline(), Some(replied + HEARTBEAT));
}

// --- Shutdown ----------------------------------------------------------------------------

#[test]
fn shutdown_while_idle_sends_disconnect_then_closes_then_stops() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_shutdown(t0 + 10 * MS);
    assert_eq!(
        drain(&mut s),
        vec![
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Shutdown, true),
            Action::Stopped,
        ]
    );
    assert_eq!(s.state(), State::Stopped);
    assert!(s.is_stopping());
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn shutdown_without_send_disconnect_only_closes_and_stops() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig {
        send_disconnect: false,
        ..config(1)
    });
    s.handle_timeout(t0);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 0 }]);
    s.handle_shutdown(t0 + 10 * MS);
    assert_eq!(
        drain(&mut s),
        vec![close(DisconnectReason::Shutdown, true), Action::Stopped]
    );
}

#[test]
fn shutdown_while_busy_waits_for_the_reply_then_replies_disconnects_and_closes() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    s.handle_shutdown(t0 + 20 * MS);
    assert_eq!(drain(&mut s), vec![], "nothing before the reply");
    assert_eq!(s.state(), State::Busy);
    assert!(s.is_stopping());
    // The connection stays alive meanwhile: heartbeats go on, no Close.
    assert_eq!(
        run_until(&mut s, t0, t0 + 250 * MS),
        vec![(100 * MS, HEARTBEAT_OUT), (200 * MS, HEARTBEAT_OUT)]
    );
    // A request sent before the broker knew is dropped, not delivered.
    s.handle_message(t0 + 260 * MS, request(&[b"client-2"], &[b"late"]));
    assert_eq!(drain(&mut s), vec![]);

    assert_eq!(
        s.handle_reply(t0 + 270 * MS, frames(&[b"last"])),
        ReplyOutcome::Sent
    );
    assert_eq!(
        drain(&mut s),
        vec![
            reply(&[b"client-1"], &[b"last"]),
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Shutdown, true),
            Action::Stopped,
        ]
    );
    assert_eq!(s.state(), State::Stopped);
    assert_eq!(s.next_deadline(), None);
}

#[test]
fn shutdown_before_start_just_stops() {
    let t0 = Instant::now();
    let mut s = session(1);
    s.handle_shutdown(t0);
    assert_eq!(drain(&mut s), vec![Action::Stopped]);
    assert_eq!(s.state(), State::Stopped);
    s.handle_timeout(t0 + MS);
    assert_eq!(drain(&mut s), vec![], "a stopped session never connects");
}

#[test]
fn shutdown_during_backoff_just_stops() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    expire(&mut s, t0);
    s.handle_shutdown(t0 + WINDOW + MS);
    assert_eq!(
        drain(&mut s),
        vec![Action::Stopped],
        "no socket to send on or close"
    );
    assert_eq!(s.state(), State::Stopped);
    assert_eq!(s.next_deadline(), None);
    s.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(drain(&mut s), vec![], "the pending reconnect is cancelled");
}

#[test]
fn shutdown_after_the_broker_left_mid_request_stops_after_the_reply_without_sending() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    s.handle_message(t0 + 20 * MS, WorkerMessage::Disconnect);
    drain(&mut s);
    s.handle_shutdown(t0 + 30 * MS);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(
        s.handle_reply(t0 + 40 * MS, frames(&[b"r"])),
        ReplyOutcome::ConnectionLost
    );
    assert_eq!(drain(&mut s), vec![Action::Stopped]);
    assert_eq!(s.state(), State::Stopped);
}

#[test]
fn a_second_shutdown_queues_nothing_more() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_shutdown(t0);
    assert_eq!(drain(&mut s).len(), 3);
    s.handle_shutdown(t0 + MS);
    assert_eq!(drain(&mut s), vec![]);

    let mut b = busy(1, t0, t0);
    b.handle_shutdown(t0 + MS);
    b.handle_shutdown(t0 + 2 * MS);
    assert_eq!(drain(&mut b), vec![]);
    assert_eq!(
        b.handle_reply(t0 + 3 * MS, frames(&[b"r"])),
        ReplyOutcome::Sent
    );
    assert_eq!(
        drain(&mut b).len(),
        4,
        "one REPLY, one DISCONNECT, one Close, one Stopped"
    );
}

#[test]
fn a_stopped_session_ignores_every_input_and_has_no_deadline() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_shutdown(t0 + MS);
    drain(&mut s);
    let later = t0 + Duration::from_secs(3600);
    s.handle_timeout(later);
    s.handle_message(later, WorkerMessage::Heartbeat);
    s.handle_message(later, request(&[b"c"], &[b"x"]));
    s.handle_message(later, WorkerMessage::Disconnect);
    s.handle_connect_failed(later);
    assert_eq!(
        s.handle_reply(later, frames(&[b"r"])),
        ReplyOutcome::NoRequest
    );
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.state(), State::Stopped);
    assert_eq!(s.stats().requests, 0);
    assert_eq!(s.stats().reconnects, 0);
}

// --- Request deadlines (action on its own thread) ----------------------------------------

const TIMEOUT: Duration = Duration::from_millis(1000);

fn with_deadline() -> SessionConfig {
    SessionConfig {
        request_timeout: Some(TIMEOUT),
        ..config(1)
    }
}

/// A session with a request deadline, started at `t0`, busy with `work` from `client-1` at t0.
fn busy_with_deadline(t0: Instant) -> Session<Vec<u8>> {
    let mut s = Session::new(with_deadline());
    s.handle_timeout(t0);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 0 }]);
    s.handle_message(t0, request(&[b"client-1"], &[b"work"]));
    assert_eq!(drain(&mut s), vec![deliver(&[b"work"])]);
    s
}

/// Whether `needle` stands in `actions` as one contiguous run (heartbeats may come around it).
fn contains_run(actions: &[Act], needle: &[Act]) -> bool {
    actions.windows(needle.len()).any(|w| w == needle)
}

fn timeout_reply(envelope: &[&[u8]]) -> Vec<Act> {
    vec![reply(envelope, &[b"timed out"])]
}

#[test]
fn a_passed_deadline_sends_the_timeout_reply_and_drops_the_late_result() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    s.handle_timeout(t0 + TIMEOUT - NS);
    assert!(!contains_run(
        &drain(&mut s),
        &timeout_reply(&[b"client-1"])
    ));
    s.handle_timeout(t0 + TIMEOUT);
    let actions = drain(&mut s);
    assert!(
        contains_run(&actions, &timeout_reply(&[b"client-1"])),
        "{actions:?}"
    );
    assert_eq!(s.state(), State::Idle);
    assert!(s.is_busy(), "the action still holds the request");
    assert_eq!(
        s.handle_reply(t0 + 2 * TIMEOUT, frames(&[b"late"])),
        ReplyOutcome::Late
    );
    assert_eq!(drain(&mut s), vec![]);
    assert!(!s.is_busy());
    let stats = s.stats();
    assert_eq!(
        (stats.timeouts, stats.late_replies, stats.replies),
        (1, 1, 1)
    );
}

#[test]
fn a_reply_before_the_deadline_disarms_it() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    assert_eq!(
        s.handle_reply(t0 + 10 * MS, frames(&[b"done"])),
        ReplyOutcome::Sent
    );
    s.handle_message(t0 + 10 * MS, WorkerMessage::Heartbeat);
    drain(&mut s);
    // Keep the broker alive past the old deadline: nothing but heartbeats may happen.
    for step in 1..=20u32 {
        let at = t0 + HEARTBEAT * step;
        s.handle_message(at, WorkerMessage::Heartbeat);
        s.handle_timeout(at);
        for action in drain(&mut s) {
            assert_eq!(action, HEARTBEAT_OUT, "at step {step}");
        }
    }
    assert_eq!(s.stats().timeouts, 0);
}

#[test]
fn a_request_arriving_while_the_action_finishes_a_timed_out_one_is_held_then_delivered() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    s.handle_timeout(t0 + TIMEOUT);
    drain(&mut s);
    let second = t0 + TIMEOUT + 10 * MS;
    s.handle_message(second, request(&[b"client-2"], &[b"next"]));
    assert_eq!(drain(&mut s), vec![], "the action is still busy");
    assert_eq!(s.state(), State::Busy);
    assert_eq!(
        s.handle_reply(second + 10 * MS, frames(&[b"late"])),
        ReplyOutcome::Late
    );
    assert_eq!(drain(&mut s), vec![deliver(&[b"next"])]);
    assert_eq!(
        s.handle_reply(second + 20 * MS, frames(&[b"answer"])),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(&[b"client-2"], &[b"answer"])]);
    assert_eq!(s.stats().requests, 2);
}

#[test]
fn a_held_request_whose_deadline_passes_gets_the_timeout_reply_and_never_runs() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    s.handle_timeout(t0 + TIMEOUT);
    drain(&mut s);
    let second = t0 + TIMEOUT + 10 * MS;
    s.handle_message(second, request(&[b"client-2"], &[b"next"]));
    s.handle_timeout(second + TIMEOUT);
    let actions = drain(&mut s);
    assert!(
        contains_run(&actions, &timeout_reply(&[b"client-2"])),
        "{actions:?}"
    );
    assert_eq!(
        s.handle_reply(second + TIMEOUT + MS, frames(&[b"late"])),
        ReplyOutcome::Late
    );
    assert_eq!(
        drain(&mut s),
        vec![],
        "the held request must not reach the action"
    );
    assert_eq!(s.stats().timeouts, 2);
    assert_eq!(s.stats().requests, 1);
}

#[test]
fn shutdown_does_not_wait_for_the_late_result_of_a_timed_out_request() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    s.handle_timeout(t0 + TIMEOUT);
    drain(&mut s);
    s.handle_shutdown(t0 + TIMEOUT + MS);
    assert_eq!(
        drain(&mut s),
        vec![
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Shutdown, true),
            Action::Stopped
        ]
    );
}

#[test]
fn shutdown_answers_a_held_request_with_the_timeout_reply_before_leaving() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    s.handle_timeout(t0 + TIMEOUT);
    drain(&mut s);
    s.handle_message(t0 + TIMEOUT, request(&[b"client-2"], &[b"next"]));
    s.handle_shutdown(t0 + TIMEOUT + MS);
    let mut expected = timeout_reply(&[b"client-2"]);
    expected.extend([
        Action::Send(WorkerMessage::Disconnect),
        close(DisconnectReason::Shutdown, true),
        Action::Stopped,
    ]);
    assert_eq!(drain(&mut s), expected);
}

#[test]
fn shutdown_while_busy_before_the_deadline_leaves_once_the_deadline_answers() {
    let t0 = Instant::now();
    let mut s = busy_with_deadline(t0);
    s.handle_shutdown(t0 + MS);
    assert_eq!(drain(&mut s), vec![]);
    s.handle_timeout(t0 + TIMEOUT);
    let actions = drain(&mut s);
    let mut expected = timeout_reply(&[b"client-1"]);
    expected.extend([
        Action::Send(WorkerMessage::Disconnect),
        close(DisconnectReason::Shutdown, true),
        Action::Stopped,
    ]);
    assert!(contains_run(&actions, &expected), "{actions:?}");
}

// --- Drain and resume --------------------------------------------------------------------

#[test]
fn drain_while_idle_disconnects_and_pauses_until_resume_reconnects_to_the_same_broker() {
    let t0 = Instant::now();
    let mut s = started(3, t0);
    s.handle_drain(t0 + MS);
    assert_eq!(
        drain(&mut s),
        vec![
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Drained, true),
            Action::Drained
        ]
    );
    assert_eq!(s.state(), State::Paused);
    assert_eq!(s.next_deadline(), None, "a paused session has no timer");
    s.handle_timeout(t0 + WINDOW * 10);
    assert_eq!(drain(&mut s), vec![]);
    s.handle_resume(t0 + WINDOW * 10);
    assert_eq!(drain(&mut s), vec![Action::Connect { endpoint: 0 }]);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn drain_while_busy_replies_first_then_disconnects() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + MS);
    s.handle_drain(t0 + 2 * MS);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(
        s.handle_reply(t0 + 3 * MS, frames(&[b"r"])),
        ReplyOutcome::Sent
    );
    assert_eq!(
        drain(&mut s),
        vec![
            reply(&[b"client-1"], &[b"r"]),
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Drained, true),
            Action::Drained
        ]
    );
}

#[test]
fn resume_before_the_drain_finished_cancels_it() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + MS);
    s.handle_drain(t0 + 2 * MS);
    s.handle_resume(t0 + 3 * MS);
    assert_eq!(
        s.handle_reply(t0 + 4 * MS, frames(&[b"r"])),
        ReplyOutcome::Sent
    );
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"r"])]);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn shutdown_while_drained_just_stops() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_drain(t0 + MS);
    drain(&mut s);
    s.handle_shutdown(t0 + 2 * MS);
    assert_eq!(drain(&mut s), vec![Action::Stopped]);
    assert_eq!(s.state(), State::Stopped);
}

// The session owns the protocol: decoding, READY, the panic reply, events and counters.

#[test]
fn malformed_frames_are_counted_and_dropped_and_the_connection_is_kept() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_frames(t0, frames(&[b"", b"MDPW02", &[2]]));
    s.handle_frames(t0, frames(&[b"", b"MDPW01", &[9]]));
    s.handle_frames(t0, frames(&[]));
    assert_eq!(s.stats().malformed_dropped, 3);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.state(), State::Idle);
    s.handle_frames(
        t0,
        frames(&[b"", b"MDPW01", &[2], b"client-1", b"", b"work"]),
    );
    assert_eq!(drain(&mut s), vec![deliver(&[b"work"])]);
}

#[test]
fn a_panic_is_answered_with_the_panic_reply_and_reported() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0);
    events(&mut s);
    assert_eq!(s.handle_panic(t0 + MS, "boom".into()), ReplyOutcome::Sent);
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"panicked"])]);
    assert_eq!((s.stats().panics, s.stats().replies), (1, 1));
    let id = s.id().clone();
    assert_eq!(
        events(&mut s),
        vec![
            Event::ActionPanicked {
                worker: id.clone(),
                message: "boom".into(),
                request_bytes: 4,
            },
            Event::RequestFinished {
                worker: id,
                duration: MS,
                outcome: RequestOutcome::Panicked,
            },
        ]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn events_tell_the_worker_life_in_order() {
    let t0 = Instant::now();
    let mut s = busy(2, t0, t0 + MS);
    s.handle_reply(t0 + 3 * MS, frames(&[b"done"]));
    s.handle_message(t0 + 4 * MS, WorkerMessage::Disconnect);
    let delay = backoff_delay(&s, t0 + 4 * MS);
    let id = s.id().clone();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Connected {
                worker: id.clone(),
                broker: "tcp://broker-0:5555".into()
            },
            Event::RequestStarted {
                worker: id.clone(),
                frames: 1,
                bytes: 4
            },
            Event::RequestFinished {
                worker: id.clone(),
                duration: 2 * MS,
                outcome: RequestOutcome::Replied
            },
            Event::Disconnected {
                worker: id.clone(),
                reason: DisconnectReason::BrokerDisconnected
            },
            Event::Reconnecting {
                worker: id.clone(),
                attempt: 1,
                delay
            },
        ]
    );
    s.handle_timeout(t0 + 4 * MS + delay);
    assert_eq!(
        events(&mut s),
        vec![Event::Connected {
            worker: id,
            broker: "tcp://broker-1:5555".into()
        }]
    );
}

#[test]
fn no_event_is_built_when_nobody_listens() {
    let t0 = Instant::now();
    let mut s = Session::<Vec<u8>>::new(SessionConfig {
        events: false,
        ..config(1)
    });
    s.handle_timeout(t0);
    s.handle_message(t0, request(&[b"c"], &[b"w"]));
    s.handle_reply(t0, frames(&[b"r"]));
    s.handle_shutdown(t0);
    assert_eq!(events(&mut s), vec![]);
}

#[test]
fn heartbeats_sent_during_an_inline_action_move_the_next_one_and_are_counted() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0);
    assert_eq!(s.heartbeat_due(), Some(t0 + HEARTBEAT));
    // The driver sent three while the action ran, the last at 3 heartbeats + 1 ms.
    let last = t0 + HEARTBEAT * 3 + MS;
    s.handle_heartbeats_sent(last, 3);
    assert_eq!(s.stats().heartbeats_sent, 3);
    assert_eq!(s.heartbeat_due(), Some(last + HEARTBEAT));
    s.handle_reply(last + MS, frames(&[b"done"]));
    assert_eq!(drain(&mut s), vec![reply(&[b"client-1"], &[b"done"])]);
    s.handle_timeout(last + HEARTBEAT - NS);
    assert_eq!(drain(&mut s), vec![]);
    s.handle_timeout(last + HEARTBEAT);
    assert_eq!(drain(&mut s), vec![HEARTBEAT_OUT]);
}

#[test]
fn a_busy_session_stays_due_for_heartbeats_for_as_long_as_the_action_runs() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0);
    // Ten heartbeats of work: a heartbeat at each, and no broker expiry.
    let actions = run_until(&mut s, t0, t0 + HEARTBEAT * 10);
    let beats: Vec<Duration> = actions
        .iter()
        .filter(|(_, a)| *a == HEARTBEAT_OUT)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(beats, (1..=10).map(|n| HEARTBEAT * n).collect::<Vec<_>>());
    assert_eq!(s.state(), State::Busy);
}

#[test]
fn dropping_a_connected_session_says_disconnect_and_a_stopped_one_says_nothing() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_drop();
    assert_eq!(drain(&mut s), vec![Action::Send(WorkerMessage::Disconnect)]);
    let mut s = started(1, t0);
    s.handle_shutdown(t0);
    drain(&mut s);
    s.handle_drop();
    assert_eq!(drain(&mut s), vec![]);
    let mut s = Session::<Vec<u8>>::new(SessionConfig {
        send_disconnect: false,
        ..config(1)
    });
    s.handle_timeout(t0);
    drain(&mut s);
    s.handle_drop();
    assert_eq!(drain(&mut s), vec![]);
}

#[test]
fn refused_credentials_and_lost_connections_are_counted_apart() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_connection_lost(t0, DisconnectReason::AuthenticationFailed);
    let delay = backoff_delay(&s, t0);
    s.handle_timeout(t0 + delay);
    drain(&mut s);
    s.handle_connection_lost(t0 + delay, DisconnectReason::ConnectionLost);
    assert_eq!(
        (s.stats().auth_failures, s.stats().connections_lost),
        (1, 1)
    );
}

#[test]
fn a_send_on_a_full_pipe_is_counted_and_dropped_and_any_other_failure_handed_back() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let sent: Result<(), &str> = s.handle_sent(Command::Heartbeat, SendOutcome::Sent);
    assert_eq!((sent, s.stats().send_failures), (Ok(()), 0));
    let full: Result<(), &str> = s.handle_sent(Command::Heartbeat, SendOutcome::WouldBlock);
    assert_eq!((full, s.stats().send_failures), (Ok(()), 1));
    // A full pipe changes nothing else: no action, and the session is still connected.
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.state(), State::Idle);
    let failed = s.handle_sent(Command::Reply, SendOutcome::Failed("context terminated"));
    assert_eq!(
        (failed, s.stats().send_failures),
        (Err("context terminated"), 1)
    );
    // Heartbeats go on as before the failures.
    s.handle_timeout(t0 + HEARTBEAT);
    assert_eq!(drain(&mut s), vec![HEARTBEAT_OUT]);
}

// An idle worker answers the broker's HEARTBEAT when its own is nearly due, so both directions
// cost one wake-up per interval.

#[test]
fn a_broker_heartbeat_is_answered_when_ours_is_three_quarters_due() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    // Ours is due at 100 ms: at 74 ms it is not yet three quarters due.
    s.handle_message(t0 + 74 * MS, WorkerMessage::Heartbeat);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.heartbeat_due(), Some(t0 + HEARTBEAT));
    // At 75 ms it is: answered at once, the next one an interval and an eighth later.
    s.handle_message(t0 + 75 * MS, WorkerMessage::Heartbeat);
    assert_eq!(drain(&mut s), vec![HEARTBEAT_OUT]);
    assert_eq!(s.stats().heartbeats_sent, 1);
    assert_eq!(
        s.heartbeat_due(),
        Some(t0 + 75 * MS + HEARTBEAT + HEARTBEAT / 8)
    );
}

#[test]
fn a_broker_heartbeating_at_our_interval_costs_one_send_per_interval_and_no_timer_wakeup() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    let mut sent = 0;
    let mut timer_sends = 0;
    // The broker heartbeats every 100 ms from 90 ms on; we run our timers at each deadline.
    for k in 0..50u32 {
        let heard = t0 + 90 * MS + HEARTBEAT * k;
        let timers = run_until(&mut s, t0, heard - NS);
        timer_sends += timers.len();
        s.handle_message(heard, WorkerMessage::Heartbeat);
        sent += drain(&mut s).len();
    }
    assert_eq!(sent, 50, "one answer per broker heartbeat");
    assert_eq!(timer_sends, 0, "never a wake-up of our own");
}

#[test]
fn without_broker_heartbeats_ours_keep_the_plain_interval() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_message(t0 + 80 * MS, WorkerMessage::Heartbeat);
    drain(&mut s);
    // Answered at 80 ms; then silence: the next at 80 + 112.5 ms, then every 100 ms.
    let first = t0 + 80 * MS + HEARTBEAT + HEARTBEAT / 8;
    let actions = run_until(&mut s, t0, first + HEARTBEAT);
    let at: Vec<Duration> = actions.iter().map(|(at, _)| *at).collect();
    assert_eq!(at, vec![first - t0, first + HEARTBEAT - t0]);
}

#[test]
fn a_busy_worker_does_not_answer_broker_heartbeats_early() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0);
    s.handle_message(t0 + 95 * MS, WorkerMessage::Heartbeat);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.heartbeat_due(), Some(t0 + HEARTBEAT));
}

#[test]
fn a_cancelled_request_gets_the_timeout_reply_and_completes_a_waiting_stop_once() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0);
    s.handle_shutdown(t0 + MS);
    assert_eq!(drain(&mut s), vec![], "the stop waits for the request");
    s.handle_cancel(t0 + 2 * MS);
    assert!(s.is_awaiting_late_result());
    assert_eq!(
        drain(&mut s),
        vec![
            reply(&[b"client-1"], &[b"timed out"]),
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Shutdown, true),
            Action::Stopped,
        ]
    );
    // The cancelled action's (empty) result frees it; the stop is not repeated.
    assert_eq!(s.handle_reply(t0 + 3 * MS, vec![]), ReplyOutcome::Late);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().timeouts, 1);
}

#[test]
fn cancelling_with_no_request_in_hand_does_nothing() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    s.handle_cancel(t0);
    assert_eq!(drain(&mut s), vec![]);
    assert_eq!(s.stats().timeouts, 0);
}

#[test]
fn a_cancelled_action_frees_the_worker_without_a_reply_and_counts_as_late() {
    let t0 = Instant::now();
    let mut s = Session::new(with_deadline());
    s.handle_timeout(t0);
    drain(&mut s);
    s.handle_message(t0, request(&[b"c1"], &[b"slow"]));
    drain(&mut s);
    assert!(!s.poll_cancel(t0 + MS), "unanswered: the action keeps it");
    assert!(s.is_busy());
    s.handle_timeout(t0 + TIMEOUT);
    assert!(contains_run(&drain(&mut s), &timeout_reply(&[b"c1"])));
    // The driver drops the action's future instead of waiting for it.
    assert!(s.poll_cancel(t0 + TIMEOUT + MS));
    assert!(!s.is_busy() && !s.is_awaiting_late_result());
    assert_eq!(drain(&mut s), vec![], "no second reply");
    assert_eq!((s.stats().timeouts, s.stats().late_replies), (1, 1));
    // Nothing in flight: a second call changes nothing.
    s.handle_action_cancelled(t0 + TIMEOUT + 2 * MS);
    assert_eq!(s.stats().late_replies, 1);
    // The next request is delivered as usual.
    s.handle_message(t0 + TIMEOUT + 3 * MS, request(&[b"c2"], &[b"next"]));
    assert_eq!(drain(&mut s), vec![deliver(&[b"next"])]);
}

#[test]
fn registered_means_heard_on_this_connection_and_neither_draining_nor_stopping() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    assert!(!s.registered(), "READY sent, nothing heard yet");
    s.handle_message(t0 + MS, WorkerMessage::Heartbeat);
    assert!(s.registered());
    s.handle_drain(t0 + 2 * MS);
    assert!(!s.registered(), "draining");
    s.handle_resume(t0 + 3 * MS);
    drain(&mut s);
    assert!(!s.registered(), "a new connection: not heard on it yet");
    s.handle_message(t0 + 4 * MS, WorkerMessage::Heartbeat);
    assert!(s.registered());
    s.handle_shutdown(t0 + 5 * MS);
    assert!(!s.registered(), "stopping");
}

#[test]
fn each_finished_request_gives_its_duration_from_arrival_to_answer_once() {
    let t0 = Instant::now();
    let mut s = busy(1, t0, t0 + 10 * MS);
    assert_eq!(s.poll_request_duration(), None, "still in the action");
    let _ = s.handle_reply(t0 + 35 * MS, frames(&[b"done"]));
    assert_eq!(s.poll_request_duration(), Some(25 * MS));
    assert_eq!(s.poll_request_duration(), None, "read once");
    s.handle_message(t0 + 40 * MS, request(&[b"client-2"], &[b"boom"]));
    drain(&mut s);
    let _ = s.handle_panic(t0 + 41 * MS, "boom".into());
    assert_eq!(s.poll_request_duration(), Some(MS));
}

#[test]
fn a_driver_that_never_reads_durations_keeps_only_the_last_few() {
    let t0 = Instant::now();
    let mut s = started(1, t0);
    for i in 0..(MAX_DURATIONS as u32 + 5) {
        let at = t0 + i * 2 * MS;
        s.handle_message(at, request(&[b"client"], &[b"work"]));
        drain(&mut s);
        let _ = s.handle_reply(at + MS, frames(&[b"done"]));
        drain(&mut s);
    }
    let kept: Vec<Duration> = std::iter::from_fn(|| s.poll_request_duration()).collect();
    assert_eq!(kept, vec![MS; MAX_DURATIONS]);
}

fn with_grace(grace: Duration) -> SessionConfig {
    SessionConfig {
        shutdown_grace: Some(grace),
        ..config(1)
    }
}

#[test]
fn a_shutdown_while_busy_answers_with_the_timeout_reply_once_its_grace_is_over() {
    let t0 = Instant::now();
    let grace = 50 * MS;
    let mut s = Session::new(with_grace(grace));
    s.handle_timeout(t0);
    drain(&mut s);
    s.handle_message(t0, request(&[b"client-1"], &[b"slow"]));
    drain(&mut s);
    assert!(s.handle_controls(t0 + MS, true, false));
    // The grace (51 ms) comes before the next heartbeat (100 ms).
    assert_eq!(s.next_deadline(), Some(t0 + MS + grace));
    // A moment before it ends, the request is still the action's.
    s.handle_timeout(t0 + grace);
    assert!(s.is_busy() && !s.is_awaiting_late_result());
    assert_eq!(drain(&mut s), vec![]);
    s.handle_timeout(t0 + MS + grace);
    assert_eq!(
        drain(&mut s),
        vec![
            reply(&[b"client-1"], &[b"timed out"]),
            Action::Send(WorkerMessage::Disconnect),
            close(DisconnectReason::Shutdown, true),
            Action::Stopped,
        ]
    );
    assert!(s.is_awaiting_late_result());
    assert_eq!(s.stats().timeouts, 1);
}

#[test]
fn a_shutdown_while_idle_or_without_grace_sets_no_grace_deadline() {
    let t0 = Instant::now();
    let mut idle = Session::<Vec<u8>>::new(with_grace(50 * MS));
    idle.handle_timeout(t0);
    drain(&mut idle);
    idle.handle_controls(t0 + MS, true, false);
    assert_eq!(idle.state(), State::Stopped);
    assert_eq!(idle.next_deadline(), None);
    // Without a grace the stop waits for the action, however long.
    let mut s = busy(1, t0, t0);
    s.handle_controls(t0 + MS, true, false);
    s.handle_timeout(t0 + 3_600_000 * MS);
    assert!(s.is_busy() && !s.is_awaiting_late_result());
}

#[test]
fn a_grace_outlives_a_connection_lost_while_the_action_runs() {
    let t0 = Instant::now();
    let grace = 50 * MS;
    let mut s = Session::new(with_grace(grace));
    s.handle_timeout(t0);
    drain(&mut s);
    s.handle_message(t0, request(&[b"client-1"], &[b"slow"]));
    drain(&mut s);
    s.handle_controls(t0 + MS, true, false);
    s.handle_connection_lost(t0 + 2 * MS, DisconnectReason::ConnectionLost);
    drain(&mut s);
    assert!(s.next_deadline() <= Some(t0 + MS + grace));
    s.handle_timeout(t0 + MS + grace);
    assert!(
        s.is_awaiting_late_result(),
        "answered, the stop no longer waits"
    );
    assert_eq!(s.stats().timeouts, 1);
}
