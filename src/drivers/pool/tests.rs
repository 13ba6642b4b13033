//! The supervisor with simulated time.

use std::time::{Duration, Instant};

use super::supervisor::{Phase, RecyclePolicy, RestartPolicy, SlotAction, Supervisor};
use crate::events::{Event, WorkerId};

// Simulated time only: every test takes `t0` once and feeds `t0 + offset` to the supervisor.

const MS: Duration = Duration::from_millis(1);
const INITIAL: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_millis(1600);
const WINDOW: Duration = Duration::from_secs(10);
const PATIENCE: Duration = Duration::from_millis(600);
const HEARTBEAT: Duration = Duration::from_millis(100);

fn restart(max_restarts: u32) -> RestartPolicy {
    RestartPolicy {
        max_restarts,
        window: WINDOW,
        initial: INITIAL,
        max: MAX,
    }
}

fn recycle_after(requests: u64) -> RecyclePolicy {
    RecyclePolicy {
        after_requests: Some(requests),
        after: None,
        patience: PATIENCE,
        heartbeat: HEARTBEAT,
    }
}

fn no_recycle() -> RecyclePolicy {
    RecyclePolicy {
        after_requests: None,
        after: None,
        patience: PATIENCE,
        heartbeat: HEARTBEAT,
    }
}

fn supervisor(slots: usize, restart: RestartPolicy, recycle: RecyclePolicy) -> Supervisor {
    let ids = (0..slots).map(|_| WorkerId::next("echo")).collect();
    Supervisor::new(restart, recycle, ids, 0x5eed)
}

fn actions(s: &mut Supervisor, slot: usize) -> Vec<SlotAction> {
    std::iter::from_fn(|| s.poll_action(slot)).collect()
}

fn events(s: &mut Supervisor) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A supervisor whose slots all run a worker started at `t0`, with nothing queued.
fn running(
    slots: usize,
    restart: RestartPolicy,
    recycle: RecyclePolicy,
    t0: Instant,
) -> Supervisor {
    let mut s = supervisor(slots, restart, recycle);
    for slot in 0..slots {
        assert_eq!(actions(&mut s, slot), vec![SlotAction::Start]);
        s.handle_started(t0, slot, WorkerId::next("echo"));
        assert_eq!(s.phase(slot), Phase::Running);
    }
    s
}

/// The worker of `slot` dies at `now`; returns the restart delay chosen.
fn die(s: &mut Supervisor, slot: usize, now: Instant) -> Duration {
    s.handle_died(now, slot, "boom");
    assert_eq!(s.phase(slot), Phase::Waiting);
    let at = s.next_deadline(slot).expect("a restart deadline");
    at - now
}

/// Runs the restart deadline of `slot` and starts its worker there; returns that time.
fn restart_at_deadline(s: &mut Supervisor, slot: usize) -> Instant {
    let at = s.next_deadline(slot).expect("a restart deadline");
    s.handle_timeout(at - MS, slot);
    assert_eq!(actions(s, slot), vec![], "no restart before its deadline");
    s.handle_timeout(at, slot);
    assert_eq!(actions(s, slot), vec![SlotAction::Start]);
    s.handle_started(at, slot, WorkerId::next("echo"));
    at
}

fn assert_within_step(delay: Duration, step: Duration) {
    assert!(
        delay >= step / 2 && delay <= step,
        "delay {delay:?} outside [{:?}, {step:?}]",
        step / 2
    );
}

#[test]
fn restart_backoff_doubles_with_each_death_up_to_its_max() {
    let t0 = Instant::now();
    let mut s = running(1, restart(20), no_recycle(), t0);
    let mut now = t0;
    for step in [100, 200, 400, 800, 1600, 1600] {
        assert_within_step(die(&mut s, 0, now), step * MS);
        now = restart_at_deadline(&mut s, 0) + MS;
    }
    assert_eq!(s.restarts(0), 6);
}

#[test]
fn restart_backoff_resets_once_a_worker_outlives_the_restart_window() {
    let t0 = Instant::now();
    let mut s = running(1, restart(20), no_recycle(), t0);
    let mut now = t0;
    for _ in 0..4 {
        die(&mut s, 0, now);
        now = restart_at_deadline(&mut s, 0);
    }
    assert_within_step(die(&mut s, 0, now + WINDOW - MS), 1600 * MS);
    let started = restart_at_deadline(&mut s, 0);
    assert_within_step(die(&mut s, 0, started + WINDOW), INITIAL);
}

#[test]
fn a_failed_build_does_not_reset_the_backoff() {
    let t0 = Instant::now();
    let mut s = supervisor(1, restart(20), no_recycle());
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Start]);
    assert_within_step(die(&mut s, 0, t0), INITIAL);
    let at = s.next_deadline(0).expect("deadline");
    s.handle_timeout(at + WINDOW, 0);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Start]);
    // Built nothing (the factory failed again), long after: the step still grows.
    assert_within_step(die(&mut s, 0, at + WINDOW), 200 * MS);
}

#[test]
fn the_restart_limit_counts_only_deaths_inside_the_window() {
    let t0 = Instant::now();
    let mut s = running(1, restart(2), no_recycle(), t0);
    for offset in [0, 6_000, 11_000] {
        let now = t0 + offset * MS;
        die(&mut s, 0, now);
        restart_at_deadline(&mut s, 0);
    }
    // The death at 0 s fell out of the window: 6 s, 11 s and now 12 s are three.
    let restarted: Vec<u32> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            Event::WorkerRestarted { restarts, .. } => restarts,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(restarted, vec![1, 2, 2]);
    s.handle_died(t0 + 12_000 * MS, 0, "boom");
    assert_eq!(s.phase(0), Phase::GaveUp);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Stop]);
    assert_eq!(s.next_deadline(0), None);
    assert!(matches!(
        events(&mut s)[..],
        [Event::RestartLimitReached { restarts: 3, .. }]
    ));
    assert_eq!(s.restarts(0), 3);
}

#[test]
fn a_slot_whose_first_build_fails_names_a_worker_of_its_service() {
    let t0 = Instant::now();
    let mut s = supervisor(1, restart(0), no_recycle());
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Start]);
    s.handle_died(t0, 0, "factory panicked");
    let [Event::RestartLimitReached { worker, restarts }] = &events(&mut s)[..] else {
        panic!("expected the restart limit");
    };
    assert_eq!((&*worker.service, *restarts), ("echo", 1));
    assert!(worker.number > 0);
}

#[test]
fn events_name_the_worker_that_died() {
    let t0 = Instant::now();
    let mut s = supervisor(1, restart(5), no_recycle());
    actions(&mut s, 0);
    let id = WorkerId::next("echo");
    s.handle_started(t0, 0, id.clone());
    s.handle_died(t0 + MS, 0, "zmq failed");
    let [Event::WorkerRestarted {
        worker,
        restarts: 1,
        error,
    }] = &events(&mut s)[..]
    else {
        panic!("expected a restart");
    };
    assert_eq!((worker, error.as_str()), (&id, "zmq failed"));
}

#[test]
fn shutdown_during_a_restart_wait_stops_the_slot_without_a_restart() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), no_recycle(), t0);
    let delay = die(&mut s, 0, t0);
    s.handle_shutdown(t0 + delay / 2, 0);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Stop]);
    assert_eq!(s.next_deadline(0), None);
    s.handle_timeout(t0 + delay, 0);
    assert_eq!(actions(&mut s, 0), vec![], "no restart after the stop");
    s.handle_died(t0 + delay, 0, "late");
    assert_eq!(s.phase(0), Phase::Stopped);
    assert_eq!(s.restarts(0), 1);
}

#[test]
fn recycle_starts_a_replacement_after_the_request_count_and_retires_the_old_worker_only_once_heard()
{
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(3), t0);
    s.handle_served(t0 + MS, 0, 2);
    assert_eq!(actions(&mut s, 0), vec![]);
    s.handle_served(t0 + 2 * MS, 0, 3);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
    assert_eq!(s.phase(0), Phase::HandingOver);
    // The old worker serves on; time passes short of the patience: nothing leaves.
    s.handle_served(t0 + 3 * MS, 0, 4);
    s.handle_timeout(t0 + 2 * MS + PATIENCE - MS, 0);
    assert_eq!(actions(&mut s, 0), vec![]);
    let new = WorkerId::next("echo");
    s.handle_replacement_heard(t0 + 100 * MS, 0, new.clone());
    assert_eq!(
        actions(&mut s, 0),
        vec![],
        "the old worker waits for its next reply"
    );
    assert_eq!(s.phase(0), Phase::Retiring);
    assert_eq!(s.next_deadline(0), Some(t0 + 100 * MS + HEARTBEAT));
    s.handle_old_replied(t0 + 120 * MS, 0);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Retire]);
    assert_eq!(s.phase(0), Phase::Running);
    assert_eq!(s.next_deadline(0), None, "the hand-over timers are gone");
    assert!(matches!(&events(&mut s)[..], [Event::Recycled { new: n, .. }] if *n == new));
    assert_eq!(s.recycles(0), 1);
}

/// A slot of `s` whose replacement starts at `t0` (the slot's worker answered its
/// `requests`th request).
fn handing_over(s: &mut Supervisor, slot: usize, t0: Instant, requests: u64) {
    s.handle_served(t0, slot, requests);
    assert_eq!(actions(s, slot), vec![SlotAction::StartReplacement]);
}

#[test]
fn a_hand_over_looks_for_the_broker_once_a_heartbeat_until_its_patience_runs_out() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    let mut looks = vec![];
    while let Some(at) = s.next_deadline(0) {
        if at > t0 + PATIENCE {
            break;
        }
        looks.push(at - t0);
        s.handle_timeout(at, 0);
        if at < t0 + PATIENCE {
            assert_eq!(actions(&mut s, 0), vec![], "a look decides nothing");
        }
    }
    assert_eq!(
        looks,
        (1..=6).map(|n| HEARTBEAT * n).collect::<Vec<_>>(),
        "one look a heartbeat, the last at the patience"
    );
    assert_eq!(actions(&mut s, 0), vec![SlotAction::DropReplacement]);
    assert_eq!(
        s.next_deadline(0),
        Some(t0 + 2 * PATIENCE),
        "only the retry wait"
    );
}

#[test]
fn a_heard_replacement_retires_an_old_worker_without_replies_at_the_retire_deadline() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    let heard = t0 + 250 * MS;
    s.handle_replacement_heard(heard, 0, WorkerId::next("echo"));
    assert_eq!(s.next_deadline(0), Some(heard + HEARTBEAT), "no more looks");
    s.handle_timeout(heard + HEARTBEAT - MS, 0);
    assert_eq!(actions(&mut s, 0), vec![]);
    assert_eq!(s.recycles(0), 0, "not recycled while the old worker serves");
    s.handle_timeout(heard + HEARTBEAT, 0);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Retire]);
    assert_eq!((s.phase(0), s.recycles(0)), (Phase::Running, 1));
    assert_eq!(s.next_deadline(0), None);
}

#[test]
fn a_reply_of_the_old_worker_before_the_replacement_is_heard_retires_nothing() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    s.handle_old_replied(t0 + MS, 0);
    assert_eq!(actions(&mut s, 0), vec![]);
    assert_eq!(s.phase(0), Phase::HandingOver);
}

#[test]
fn a_replacement_failing_while_the_old_worker_retires_is_dropped_and_the_old_one_stays() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    s.handle_replacement_heard(t0 + MS, 0, WorkerId::next("echo"));
    s.handle_replacement_failed(t0 + 2 * MS, 0, "zmq failed");
    assert_eq!(actions(&mut s, 0), vec![SlotAction::DropReplacement]);
    assert_eq!((s.phase(0), s.recycles(0)), (Phase::Running, 0));
    assert_eq!(
        s.next_deadline(0),
        Some(t0 + 2 * MS + PATIENCE),
        "retry wait"
    );
    s.handle_old_replied(t0 + 3 * MS, 0);
    assert_eq!(actions(&mut s, 0), vec![], "the old worker holds the slot");
    assert_eq!(events(&mut s), vec![]);
}

#[test]
fn an_old_worker_dying_after_its_replacement_was_heard_hands_the_slot_over_at_once() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    let new = WorkerId::next("echo");
    s.handle_replacement_heard(t0 + MS, 0, new.clone());
    s.handle_old_died(t0 + 2 * MS, 0, "zmq failed");
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Retire]);
    assert_eq!(
        (s.phase(0), s.restarts(0), s.recycles(0)),
        (Phase::Running, 0, 1)
    );
    assert!(matches!(&events(&mut s)[..], [Event::Recycled { new: n, .. }] if *n == new));
}

#[test]
fn an_old_worker_dying_before_its_replacement_was_heard_drops_it_and_restarts() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    s.handle_old_died(t0 + MS, 0, "zmq failed");
    assert_eq!(actions(&mut s, 0), vec![SlotAction::DropReplacement]);
    assert_eq!((s.phase(0), s.restarts(0)), (Phase::Waiting, 1));
    // The late "heard" of the dropped replacement changes nothing.
    s.handle_replacement_heard(t0 + 2 * MS, 0, WorkerId::next("echo"));
    assert_eq!(s.phase(0), Phase::Waiting);
}

#[test]
fn shutdown_while_the_old_worker_retires_lets_it_leave_then_stops() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    handing_over(&mut s, 0, t0, 1);
    s.handle_replacement_heard(t0 + MS, 0, WorkerId::next("echo"));
    s.handle_shutdown(t0 + 2 * MS, 0);
    assert_eq!(
        actions(&mut s, 0),
        vec![SlotAction::Retire, SlotAction::Stop]
    );
    assert_eq!((s.phase(0), s.recycles(0)), (Phase::Stopped, 1));
    assert_eq!(s.next_deadline(0), None);
}

#[test]
fn a_replacement_not_heard_within_its_patience_is_dropped_and_the_old_worker_stays() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    s.handle_served(t0, 0, 1);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
    assert_eq!(s.next_deadline(0), Some(t0 + HEARTBEAT), "the first look");
    s.handle_timeout(t0 + PATIENCE - MS, 0);
    assert_eq!(actions(&mut s, 0), vec![]);
    s.handle_timeout(t0 + PATIENCE, 0);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::DropReplacement]);
    assert_eq!(s.phase(0), Phase::Running);
    // A late "heard" for the dropped replacement changes nothing.
    s.handle_replacement_heard(t0 + PATIENCE, 0, WorkerId::next("echo"));
    assert_eq!(actions(&mut s, 0), vec![]);
    // Tried again only after as long again.
    s.handle_served(t0 + 2 * PATIENCE - MS, 0, 2);
    assert_eq!(actions(&mut s, 0), vec![]);
    s.handle_served(t0 + 2 * PATIENCE, 0, 3);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
    assert_eq!(s.recycles(0), 0);
    assert_eq!(events(&mut s), vec![]);
}

#[test]
fn one_slot_of_a_service_recycles_at_a_time() {
    let t0 = Instant::now();
    let mut s = running(2, restart(5), recycle_after(2), t0);
    s.handle_served(t0, 0, 2);
    s.handle_served(t0, 1, 2);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
    assert_eq!(actions(&mut s, 1), vec![], "slot 0 is recycling");
    s.handle_replacement_heard(t0 + MS, 0, WorkerId::next("echo"));
    s.handle_served(t0 + MS, 1, 3);
    assert_eq!(actions(&mut s, 1), vec![], "slot 0 is still retiring");
    s.handle_old_replied(t0 + MS, 0);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::Retire]);
    s.handle_served(t0 + 2 * MS, 1, 3);
    assert_eq!(actions(&mut s, 1), vec![SlotAction::StartReplacement]);
}

#[test]
fn a_failed_replacement_frees_the_service_for_another_slot() {
    let t0 = Instant::now();
    let mut s = running(2, restart(5), recycle_after(1), t0);
    s.handle_served(t0, 0, 1);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
    s.handle_replacement_failed(t0 + MS, 0, "no fd");
    assert_eq!(s.phase(0), Phase::Running);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::DropReplacement]);
    s.handle_served(t0 + MS, 1, 1);
    assert_eq!(actions(&mut s, 1), vec![SlotAction::StartReplacement]);
}

#[test]
fn an_old_worker_dying_during_its_hand_over_is_restarted_and_frees_the_service() {
    let t0 = Instant::now();
    let mut s = running(2, restart(5), recycle_after(1), t0);
    s.handle_served(t0, 0, 1);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
    assert_within_step(die(&mut s, 0, t0 + MS), INITIAL);
    s.handle_served(t0 + MS, 1, 1);
    assert_eq!(actions(&mut s, 1), vec![SlotAction::StartReplacement]);
}

#[test]
fn recycle_by_age_is_due_after_the_first_request_past_it() {
    let t0 = Instant::now();
    let policy = RecyclePolicy {
        after: Some(Duration::from_secs(60)),
        ..no_recycle()
    };
    let mut s = running(1, restart(5), policy, t0);
    s.handle_served(t0 + Duration::from_secs(59), 0, 1);
    assert_eq!(actions(&mut s, 0), vec![]);
    s.handle_served(t0 + Duration::from_secs(60), 0, 2);
    assert_eq!(actions(&mut s, 0), vec![SlotAction::StartReplacement]);
}

#[test]
fn shutdown_during_a_hand_over_drops_the_replacement_then_stops() {
    let t0 = Instant::now();
    let mut s = running(1, restart(5), recycle_after(1), t0);
    s.handle_served(t0, 0, 1);
    actions(&mut s, 0);
    s.handle_shutdown(t0 + MS, 0);
    assert_eq!(
        actions(&mut s, 0),
        vec![SlotAction::DropReplacement, SlotAction::Stop]
    );
    assert_eq!(s.next_deadline(0), None);
}
