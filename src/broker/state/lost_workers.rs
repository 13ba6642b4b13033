//! Workers lost while busy: a busy worker that heartbeats while busy and falls silent is
//! expired, one that never heartbeats while busy is kept, and the lost request is answered
//! by nobody or queued again, as `requeue_on_worker_loss` says. Simulated time: heartbeat
//! 100 ms, liveness 3, so a worker silent 300 ms is expired at the next heartbeat tick.

use super::tests::{f, mmi_reply, request_to, settings, to_client, to_worker, Scenario as Base};
use super::*;

/// A [`Base`] scenario with a few words for lost workers.
struct Scenario(Base);

impl std::ops::Deref for Scenario {
    type Target = Base;
    fn deref(&self) -> &Base {
        &self.0
    }
}

impl std::ops::DerefMut for Scenario {
    fn deref_mut(&mut self) -> &mut Base {
        &mut self.0
    }
}

impl Scenario {
    /// Heartbeat 100 ms, liveness 3, queues of 2, and `requeues` for a lost worker's request.
    fn new(requeues: u32) -> Scenario {
        Scenario(Base::with(Settings {
            requeue_on_worker_loss: requeues,
            ..settings()
        }))
    }

    fn heartbeat(&mut self, ms: u64, id: &[u8]) {
        self.worker(ms, id, &[&[0x04]]);
    }

    fn disconnect(&mut self, ms: u64, id: &[u8]) {
        self.worker(ms, id, &[&[0x05]]);
    }

    /// Heartbeat ticks every 100 ms from `from` to `to`, both included; what was sent.
    fn ticks(&mut self, from: u64, to: u64) -> Vec<Vec<Frame>> {
        (from..=to).step_by(100).for_each(|ms| self.tick(ms));
        self.sent()
    }

    /// `mmi.service` for `service`: its code.
    fn lookup(&mut self, ms: u64, service: &[u8]) -> Frame {
        self.request(ms, b"M", b"mmi.service", &[service]);
        let sent = self.sent();
        mmi_reply(&sent, b"M", b"mmi.service")[0].clone()
    }

    /// Worker `A` registers at 0 and gets `job` from client `C` at 1, then heartbeats twice
    /// while busy (50 and 150 ms) and falls silent: it is due to expire at 450 ms.
    fn busy_worker_that_heartbeats_then_dies(&mut self) {
        self.ready(0, b"A", b"echo");
        self.request(1, b"C", b"echo", &[b"job"]);
        assert_eq!(self.sent(), vec![request_to(b"A", b"C", &[b"job"])]);
        self.heartbeat(50, b"A");
        self.heartbeat(150, b"A");
    }
}

#[test]
fn a_busy_worker_that_heartbeated_while_busy_is_expired_after_heartbeat_times_liveness_of_silence()
{
    let mut s = Scenario::new(0);
    s.busy_worker_that_heartbeats_then_dies();
    assert_eq!(s.ticks(100, 400), Vec::<Vec<Frame>>::new());
    assert_eq!(s.state.stats().workers, 1, "silent 250 ms: not yet");
    assert_eq!(
        s.ticks(500, 500),
        Vec::<Vec<Frame>>::new(),
        "without a word"
    );
    let stats = s.state.stats();
    assert_eq!(
        (
            stats.workers,
            stats.workers_expired,
            stats.busy_workers_expired
        ),
        (0, 1, 1)
    );
    assert_eq!(stats.heartbeats_received, 2);
    assert_eq!(s.lookup(501, b"echo"), f(b"404"));
    s.reply(502, b"A", b"C", b"too late");
    assert_eq!(
        s.sent(),
        vec![to_worker(b"A", 0x05)],
        "a ghost's late REPLY"
    );
    assert_eq!(s.state.stats().replies_routed, 0);
    s.ready(503, b"B", b"echo");
    s.request(504, b"C", b"echo", &[b"next"]);
    assert_eq!(s.sent(), vec![request_to(b"B", b"C", &[b"next"])]);
}

#[test]
fn one_heartbeat_that_crossed_the_request_does_not_make_a_busy_worker_expire() {
    let mut s = Scenario::new(1);
    s.ready(0, b"Z", b"echo");
    s.request(1, b"C", b"echo", &[b"long job"]);
    s.heartbeat(2, b"Z"); // sent while idle, read after the dispatch
    s.sent();
    s.ticks(100, 10_000);
    let stats = s.state.stats();
    assert_eq!((stats.workers, stats.workers_expired), (1, 0));
    assert_eq!(s.lookup(10_001, b"echo"), f(b"200"));
    s.reply(10_002, b"Z", b"C", b"done");
    assert_eq!(s.sent(), vec![to_client(b"C", b"echo", &[b"done"])]);
}

#[test]
fn a_worker_that_heartbeated_while_busy_once_is_expired_in_a_later_request_before_any_heartbeat() {
    let mut s = Scenario::new(0);
    s.busy_worker_that_heartbeats_then_dies();
    s.reply(160, b"A", b"C", b"r1");
    s.request(170, b"C", b"echo", &[b"job 2"]);
    s.sent();
    s.ticks(100, 400);
    assert_eq!(s.state.stats().workers, 1, "silent 240 ms: not yet");
    s.ticks(500, 500);
    assert_eq!(s.state.stats().busy_workers_expired, 1);
}

#[test]
fn by_default_the_request_of_an_expired_busy_worker_is_answered_by_nobody() {
    let mut s = Scenario::new(0);
    s.busy_worker_that_heartbeats_then_dies();
    s.ready(400, b"B", b"echo");
    assert_eq!(s.ticks(500, 500), vec![to_worker(b"B", 0x04)], "no REQUEST");
    let stats = s.state.stats();
    assert_eq!((stats.requests_lost, stats.requests_requeued), (1, 0));
    assert_eq!((stats.requests_dispatched, stats.queued_requests), (1, 0));
}

#[test]
fn with_requeue_the_request_of_an_expired_busy_worker_goes_to_another_worker_and_is_counted() {
    let mut s = Scenario::new(1);
    s.busy_worker_that_heartbeats_then_dies();
    s.ready(400, b"B", b"echo");
    assert_eq!(s.ticks(500, 500), vec![request_to(b"B", b"C", &[b"job"])]);
    let stats = s.state.stats();
    assert_eq!((stats.requests_requeued, stats.requests_lost), (1, 0));
    assert_eq!(stats.requests_dispatched, 2);
    s.reply(501, b"B", b"C", b"done");
    assert_eq!(s.sent(), vec![to_client(b"C", b"echo", &[b"done"])]);
}

#[test]
fn requeues_stop_at_requeue_on_worker_loss_and_the_rest_is_counted_lost() {
    let mut s = Scenario::new(1);
    s.ready(0, b"A", b"echo");
    s.ready(0, b"B", b"echo");
    s.request(1, b"C", b"echo", &[b"poison"]);
    s.disconnect(2, b"A");
    assert_eq!(
        s.sent(),
        vec![
            request_to(b"A", b"C", &[b"poison"]),
            request_to(b"B", b"C", &[b"poison"])
        ]
    );
    s.ready(3, b"D", b"echo");
    s.ready(4, b"B", b"echo"); // a second READY while busy: DISCONNECT, forgotten
    assert_eq!(s.sent(), vec![to_worker(b"B", 0x05)], "no third run");
    let stats = s.state.stats();
    assert_eq!((stats.requests_requeued, stats.requests_lost), (1, 1));
    assert_eq!((stats.requests_dispatched, stats.queued_requests), (2, 0));
}

#[test]
fn a_requeued_request_waits_at_the_back_of_its_queue_like_a_new_one() {
    let mut s = Scenario::new(3);
    s.ready(0, b"A", b"echo");
    s.ready(0, b"B", b"echo");
    s.request(1, b"C1", b"echo", &[b"1"]);
    s.request(1, b"C2", b"echo", &[b"2"]);
    s.request(1, b"C3", b"echo", &[b"3"]);
    s.sent();
    s.disconnect(2, b"A");
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    assert_eq!(s.state.stats().queued_requests, 2);
    s.reply(3, b"B", b"C2", b"r2");
    s.reply(4, b"B", b"C3", b"r3");
    let sent = s.sent();
    assert_eq!(sent[1], request_to(b"B", b"C3", &[b"3"]));
    assert_eq!(sent[3], request_to(b"B", b"C1", &[b"1"]));
}

#[test]
fn a_requeue_refused_by_a_full_queue_counts_the_request_lost() {
    let mut s = Scenario::new(1);
    s.ready(0, b"A", b"echo");
    s.request(1, b"C1", b"echo", &[b"1"]);
    s.request(1, b"C2", b"echo", &[b"2"]);
    s.request(1, b"C3", b"echo", &[b"3"]);
    s.disconnect(2, b"A");
    let stats = s.state.stats();
    assert_eq!((stats.requests_dropped, stats.queued_requests), (0, 2));
    assert_eq!((stats.requests_requeued, stats.requests_lost), (0, 1));
}

#[test]
fn no_copy_of_a_request_in_hand_is_kept_without_requeue() {
    let mut s = Scenario::new(0);
    s.busy_worker_that_heartbeats_then_dies();
    assert!(s.state.workers.values().all(|w| w.in_flight.is_none()));
    let mut s = Scenario::new(1);
    s.busy_worker_that_heartbeats_then_dies();
    assert!(s.state.workers.values().all(|w| w.in_flight.is_some()));
    s.reply(160, b"A", b"C", b"r");
    assert!(s.state.workers.values().all(|w| w.in_flight.is_none()));
}

// --- Workers whose connection is gone --------------------------------------------------

#[test]
fn a_request_for_a_worker_whose_connection_is_gone_goes_to_the_next_worker_untouched() {
    // A crashed idle while its broker still lists it: the socket refuses the REQUEST
    // (`ZMQ_ROUTER_MANDATORY`) and hands it back. It never left, so it is no resend.
    let mut s = Scenario::new(0);
    s.ready(0, b"A", b"echo");
    s.ready(1, b"B", b"echo");
    s.request(2, b"C", b"echo", &[b"job"]);
    let refused = s.sent();
    assert_eq!(refused, vec![request_to(b"A", b"C", &[b"job"])]);
    s.state
        .handle_unroutable(refused.into_iter().next().expect("one"));
    assert_eq!(s.sent(), vec![request_to(b"B", b"C", &[b"job"])]);
    let stats = s.state.stats();
    assert_eq!(
        (
            stats.workers_gone,
            stats.requests_undelivered,
            stats.requests_requeued,
            stats.requests_lost,
            stats.workers,
        ),
        (1, 1, 0, 0, 1),
    );
    assert_eq!(s.lookup(3, b"echo"), f(b"200"), "B still serves");
}

#[test]
fn a_heartbeat_for_a_worker_whose_connection_is_gone_forgets_it_before_its_expiry() {
    let mut s = Scenario::new(0);
    s.ready(0, b"A", b"echo");
    let beats = s.ticks(100, 100);
    assert_eq!(beats.len(), 1, "one HEARTBEAT to A");
    s.state
        .handle_unroutable(beats.into_iter().next().expect("one"));
    assert_eq!(s.state.stats().workers, 0);
    assert_eq!(s.state.stats().workers_gone, 1);
    assert_eq!(
        s.lookup(101, b"echo"),
        f(b"404"),
        "gone at once, not at 300 ms"
    );
    // A request now waits for a live worker instead of going to a dead one.
    s.request(102, b"C", b"echo", &[b"job"]);
    assert_eq!(s.sent(), Vec::<Vec<Frame>>::new());
    s.ready(103, b"B", b"echo");
    assert_eq!(s.sent(), vec![request_to(b"B", b"C", &[b"job"])]);
}

#[test]
fn a_reply_for_a_client_that_is_gone_is_counted_and_dropped() {
    let mut s = Scenario::new(0);
    s.ready(0, b"A", b"echo");
    s.request(1, b"C", b"echo", &[b"job"]);
    s.sent();
    s.worker(2, b"A", &[&[0x03], b"C", b"", b"done"]);
    let reply = s.sent();
    assert_eq!(reply, vec![to_client(b"C", b"echo", &[b"done"])]);
    s.state
        .handle_unroutable(reply.into_iter().next().expect("one"));
    let stats = s.state.stats();
    assert_eq!((stats.replies_unroutable, stats.workers), (1, 1));
}
