//! Properties of the broker's state machine on generated traffic: whatever arrives, from
//! whichever peer, in whatever order, it never panics, every message it sends decodes, and
//! its counters stay consistent.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{BrokerState, Frame, Settings};
use crate::protocol::{ClientMessage, WorkerMessage};

#[derive(Debug, Clone)]
enum Step {
    /// A message from peer number `sender` (a few peers, so that they meet again).
    Message { sender: u8, frames: Vec<Frame> },
    /// Time passes.
    Tick(u64),
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..6),
        1 => Just(Vec::new()),
        1 => prop::sample::select(vec![
            b"MDPW01".to_vec(),
            b"MDPC01".to_vec(),
            b"echo".to_vec(),
            b"mmi.service".to_vec(),
            b"C1".to_vec(),
        ]),
        1 => (1u8..=5).prop_map(|byte| vec![byte]),
    ]
}

/// Messages that make sense to a broker, so that workers register, requests are dispatched
/// and replies routed; the random ones exercise the refusals.
fn frames() -> impl Strategy<Value = Vec<Frame>> {
    let f = |parts: &[&[u8]]| parts.iter().map(|p| p.to_vec()).collect::<Vec<Frame>>();
    prop_oneof![
        2 => prop::collection::vec(frame(), 0..8),
        1 => Just(f(&[b"", b"MDPW01", &[1], b"echo"])),
        1 => Just(f(&[b"", b"MDPW01", &[4]])),
        1 => Just(f(&[b"", b"MDPW01", &[5]])),
        1 => (frame(), prop::collection::vec(frame(), 0..3)).prop_map(move |(client, body)| {
            let mut m = f(&[b"", b"MDPW01", &[3]]);
            m.push(client);
            m.push(Vec::new());
            m.extend(body);
            m
        }),
        3 => (prop::sample::select(vec![
                &b"echo"[..], b"mmi.service", b"mmi.x", b"other", b"a", b"b", b"c", b"d",
              ]),
              prop::collection::vec(frame(), 0..3)).prop_map(move |(service, body)| {
            let mut m = f(&[b"", b"MDPC01", service]);
            m.extend(body);
            m
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, frames()).prop_map(|(sender, frames)| Step::Message { sender, frames }),
        1 => (0u64..400).prop_map(Step::Tick),
    ]
}

/// Every message the broker sends is an identity followed by a valid MDP/0.1 message.
fn check_sent(state: &mut BrokerState) -> Result<(), TestCaseError> {
    while let Some(mut message) = state.poll_send() {
        prop_assert!(!message.is_empty(), "a message without an identity");
        let frames = message.split_off(1);
        if frames.get(1).is_some_and(|h| h.as_slice() == b"MDPW01") {
            prop_assert!(WorkerMessage::decode(frames.clone()).is_ok(), "{frames:?}");
        } else {
            prop_assert!(ClientMessage::decode(frames.clone()).is_ok(), "{frames:?}");
        }
    }
    Ok(())
}

/// The bounds hold, the kept totals match a recount, and every request is accounted for,
/// requeued ones included.
fn check_bounds(state: &BrokerState) -> Result<(), TestCaseError> {
    let stats = state.stats();
    prop_assert!(stats.queued_requests <= 8, "{stats:?}");
    // Every service holds a worker or a queued request. (Not `4 + workers`: a service a
    // worker registered keeps its queued requests after the worker leaves.)
    prop_assert!(
        stats.services <= stats.workers + stats.queued_requests,
        "{stats:?}"
    );
    prop_assert!(!state.services.holds_an_idle_service(), "{stats:?}");
    let recount = state.services.recount();
    prop_assert_eq!(recount, (stats.queued_requests, stats.waiting_workers));
    let accounted = stats.mmi_requests
        + stats.requests_dispatched
        + stats.requests_dropped
        + stats.requests_dropped_total_bound
        + stats.services_refused
        + stats.requests_expired
        + stats.queued_requests as u64;
    let entered = stats.requests_received + stats.requests_requeued;
    prop_assert_eq!(accounted, entered, "{:?}", stats);
    prop_assert!(
        stats.requests_requeued <= stats.requests_dispatched,
        "{stats:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_traffic_from_any_peer_never_panics_and_only_valid_messages_go_out(
        steps in prop::collection::vec(step(), 0..40)
    ) {
        let t0 = Instant::now();
        let hb = Duration::from_millis(100);
        let settings = Settings {
            heartbeat: hb,
            expiry: hb * 3,
            max_queue: 2,
            max_queued_total: 8,
            max_services: 4,
            max_queue_age: Some(Duration::from_millis(250)),
            requeue_on_worker_loss: 1,
        };
        let mut state = BrokerState::new(settings, t0);
        let mut now = t0;
        for step in steps {
            match step {
                Step::Message { sender, mut frames } => {
                    frames.insert(0, vec![b'P', sender]);
                    state.handle_message(now, frames);
                }
                Step::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    state.handle_timeout(now);
                }
            }
            check_sent(&mut state)?;
            let stats = state.stats();
            prop_assert!(stats.waiting_workers <= stats.workers, "{stats:?}");
            prop_assert!(stats.workers <= 4, "{stats:?}");
            let entered = stats.requests_received + stats.requests_requeued;
            prop_assert!(stats.requests_dispatched <= entered, "{stats:?}");
            prop_assert!(stats.replies_routed <= stats.requests_dispatched, "{stats:?}");
            check_bounds(&state)?;
        }
        // An empty message (no identity frame) is ignored, too.
        state.handle_message(now, Vec::new());
        check_sent(&mut state)?;
    }
}
