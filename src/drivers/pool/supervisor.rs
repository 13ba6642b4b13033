//! The pool's decisions, as a pure state machine with time as an input.
//!
//! One [`Supervisor`] watches the slots of one pool service (a slot is one place in the pool,
//! held by a succession of workers). It decides when a dead worker is built again (backoff
//! with jitter), when a slot is given up (too many restarts within the window), and how a
//! worker is recycled without a gap (one recycle per service at a time; the old worker
//! leaves only once the broker has heard the new one, right after one of its REPLYs or after
//! a heartbeat without one; a replacement not heard within its patience is dropped and tried
//! again later). It never reads the clock and never touches a socket: the pool's slot threads
//! feed it inputs (`handle_*(now, slot, …)`) and carry out its [`SlotAction`]s, waking up at
//! [`next_deadline`](Supervisor::next_deadline).
//!
//! ```text
//!            Start                   died, restarts <= max          deadline
//!  (new) ─────────────▶ Running ───────────────────────▶ Waiting ─────────────▶ (Start)
//!                        │   ▲   died, restarts > max ──▶ GaveUp (Stop)
//!           recycle due  │   │ patience over, replacement failed: DropReplacement
//!                        ▼   │
//!                      HandingOver ─────────────────▶ Retiring ──▶ Running
//!                                  replacement heard       old replied, or retire
//!                                                          deadline: Retire
//!                                           shutdown from any phase ──▶ Stopped (Stop)
//! ```
//!
//! While a hand-over lasts, the slot looks whether the broker has heard the replacement at
//! every [`Timer::HeardCheck`] (once a heartbeat: a broker heartbeats a fresh worker within
//! one), since nothing wakes the slot when it happens.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::timer::{Timer, TimerTable};
use crate::events::{Event, WorkerId};
use crate::session::backoff::Backoff;

/// How dead workers are restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestartPolicy {
    /// Restarts allowed within `window`; one more death gives the slot up.
    pub(crate) max_restarts: u32,
    /// The window in which restarts count.
    pub(crate) window: Duration,
    /// First delay before a restart.
    pub(crate) initial: Duration,
    /// Largest delay before a restart.
    pub(crate) max: Duration,
}

/// When a worker is replaced by a fresh one, and how long a replacement may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecyclePolicy {
    /// After this many requests of one worker.
    pub(crate) after_requests: Option<u64>,
    /// After a worker has lived this long (checked after each request).
    pub(crate) after: Option<Duration>,
    /// How long the broker may take to acknowledge a replacement (`2 × heartbeat ×
    /// liveness`), and how long the slot waits before it tries again after giving up.
    pub(crate) patience: Duration,
    /// The workers' heartbeat: how often a hand-over looks whether the broker has heard the
    /// replacement, and how long the old worker then waits for a request to leave right after
    /// its REPLY (a heartbeat without one means traffic so thin that a crossing request is
    /// unlikely).
    pub(crate) heartbeat: Duration,
}

/// What a slot thread must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SlotAction {
    /// Build a worker for the slot: the first start, or a restart after the backoff.
    Start,
    /// Build a replacement for the slot's worker and connect it; both serve meanwhile.
    StartReplacement,
    /// The old worker has just replied (or waited its retire deadline): it answers what it
    /// holds, sends DISCONNECT and leaves now; the replacement holds the slot from now on.
    Retire,
    /// Drop the replacement and keep the old worker (not heard in time, failed, the old
    /// worker died, or the pool stops).
    DropReplacement,
    /// The slot is done: the pool stops, or its workers died too often.
    Stop,
}

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A worker is being built.
    Starting,
    /// A worker serves.
    Running,
    /// A worker serves while its replacement waits for the broker.
    HandingOver,
    /// The broker heard the replacement; the old worker serves until it replies once more,
    /// or until the retire deadline, then leaves.
    Retiring,
    /// Its worker died; the next one is built at the restart deadline.
    Waiting,
    /// Its workers died too often.
    GaveUp,
    /// The pool stopped it.
    Stopped,
}

/// One slot as the supervisor sees it.
#[derive(Debug)]
struct SlotState {
    phase: Phase,
    /// The worker holding the slot, or the last one that did: what events name.
    worker: WorkerId,
    /// The replacement the broker has heard, while the old worker retires.
    replacement: Option<WorkerId>,
    /// When the running worker started; `None` while no worker runs.
    born: Option<Instant>,
    /// Deaths within the restart window, oldest first.
    deaths: VecDeque<Instant>,
    backoff: Backoff,
    timers: TimerTable,
    actions: VecDeque<SlotAction>,
    restarts: u64,
    recycles: u64,
}

/// The supervisor of one pool service's slots. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Supervisor {
    restart: RestartPolicy,
    recycle: RecyclePolicy,
    slots: Vec<SlotState>,
    /// The slot whose worker is being recycled: one per service at a time.
    recycling: Option<usize>,
    events: VecDeque<Event>,
}

impl Supervisor {
    /// A supervisor of one slot per id in `ids` (each names its slot in events until a
    /// worker holds it), each queued to [`SlotAction::Start`]. `seed` draws the jitter.
    pub(crate) fn new(
        restart: RestartPolicy,
        recycle: RecyclePolicy,
        ids: Vec<WorkerId>,
        seed: u64,
    ) -> Supervisor {
        let slots = ids
            .into_iter()
            .enumerate()
            .map(|(i, worker)| SlotState {
                phase: Phase::Starting,
                worker,
                replacement: None,
                born: None,
                deaths: VecDeque::new(),
                backoff: Backoff::new(restart.initial, restart.max, seed ^ i as u64),
                timers: TimerTable::default(),
                actions: VecDeque::from([SlotAction::Start]),
                restarts: 0,
                recycles: 0,
            })
            .collect();
        Supervisor {
            restart,
            recycle,
            slots,
            recycling: None,
            events: VecDeque::new(),
        }
    }

    /// The slot's worker was built and serves from `now` on.
    pub(crate) fn handle_started(&mut self, now: Instant, slot: usize, worker: WorkerId) {
        let s = &mut self.slots[slot];
        if s.phase != Phase::Starting {
            return;
        }
        s.phase = Phase::Running;
        s.worker = worker;
        s.born = Some(now);
    }

    /// The slot's worker died (or could not be built): restart it after the backoff, or give
    /// the slot up if it died more than `max_restarts` times within the window.
    /// `error` is shown in the log and carried as text by [`Event::WorkerRestarted`].
    pub(crate) fn handle_died(&mut self, now: Instant, slot: usize, error: impl fmt::Display) {
        if self.recycling == Some(slot) {
            self.recycling = None;
        }
        let (restart, s) = (&self.restart, &mut self.slots[slot]);
        if matches!(s.phase, Phase::GaveUp | Phase::Stopped) {
            return;
        }
        // A worker that outlived the window proved the fault passed: back to short waits,
        // as its earlier deaths no longer count against the limit either.
        if s.born
            .is_some_and(|born| now.duration_since(born) >= restart.window)
        {
            s.backoff.reset();
        }
        s.born = None;
        s.replacement = None;
        s.timers.stop_all();
        s.deaths
            .retain(|at| now.duration_since(*at) < restart.window);
        s.deaths.push_back(now);
        let restarts = u32::try_from(s.deaths.len()).unwrap_or(u32::MAX);
        let worker = s.worker.clone();
        if restarts > restart.max_restarts {
            error!(%worker, restarts, %error, "worker died too often, giving up");
            s.phase = Phase::GaveUp;
            s.actions.push_back(SlotAction::Stop);
            self.events
                .push_back(Event::RestartLimitReached { worker, restarts });
            return;
        }
        let delay = s.backoff.next_delay();
        warn!(%worker, restarts, %error, ?delay, "worker died, restarting");
        s.restarts += 1;
        s.phase = Phase::Waiting;
        s.timers.set(Timer::Restart, now + delay);
        self.events.push_back(Event::WorkerRestarted {
            worker,
            restarts,
            error: error.to_string(),
        });
    }

    /// The slot's worker answered a request; it has answered `requests` in all. Starts a
    /// recycle if one is due and no other slot of the service is recycling.
    pub(crate) fn handle_served(&mut self, now: Instant, slot: usize, requests: u64) {
        let s = &self.slots[slot];
        if s.phase != Phase::Running
            || self.recycling.is_some()
            || s.timers.get(Timer::RecycleRetry).is_some_and(|at| now < at)
            || !self.recycle_due(now, s, requests)
        {
            return;
        }
        let s = &mut self.slots[slot];
        s.phase = Phase::HandingOver;
        s.timers.stop(Timer::RecycleRetry);
        s.timers.set(Timer::HandOver, now + self.recycle.patience);
        s.timers
            .set(Timer::HeardCheck, now + self.recycle.heartbeat);
        s.actions.push_back(SlotAction::StartReplacement);
        self.recycling = Some(slot);
    }

    fn recycle_due(&self, now: Instant, s: &SlotState, requests: u64) -> bool {
        let by_count = self.recycle.after_requests.is_some_and(|n| requests >= n);
        let by_age = match (self.recycle.after, s.born) {
            (Some(age), Some(born)) => now.duration_since(born) >= age,
            _ => false,
        };
        by_count || by_age
    }

    /// The broker has sent something to the replacement `new`, proof that its READY
    /// arrived: the old worker leaves right after its next REPLY, or at the retire deadline
    /// (a heartbeat from now) without one.
    pub(crate) fn handle_replacement_heard(&mut self, now: Instant, slot: usize, new: WorkerId) {
        let s = &mut self.slots[slot];
        if s.phase != Phase::HandingOver {
            return;
        }
        s.phase = Phase::Retiring;
        s.replacement = Some(new);
        s.timers.stop(Timer::HandOver);
        s.timers.stop(Timer::HeardCheck);
        s.timers.set(Timer::Retire, now + self.recycle.heartbeat);
    }

    /// The old worker has just sent a REPLY during the hand-over. Once the replacement is
    /// heard, this is the moment it leaves: the broker has just put it behind the replacement
    /// in its queue, so no request can cross its DISCONNECT.
    pub(crate) fn handle_old_replied(&mut self, now: Instant, slot: usize) {
        if self.slots[slot].phase == Phase::Retiring {
            self.retire(now, slot);
        }
    }

    /// The old worker died during the hand-over. Before the replacement was heard the slot
    /// drops it and restarts as for any death; once it was heard, the replacement holds the
    /// slot at once.
    pub(crate) fn handle_old_died(&mut self, now: Instant, slot: usize, error: impl fmt::Display) {
        match self.slots[slot].phase {
            Phase::HandingOver => {
                self.slots[slot]
                    .actions
                    .push_back(SlotAction::DropReplacement);
                self.handle_died(now, slot, error);
            }
            Phase::Retiring => {
                warn!(worker = %self.slots[slot].worker, %error, "the retiring worker failed");
                self.retire(now, slot);
            }
            _ => self.handle_died(now, slot, error),
        }
    }

    /// The old worker leaves now; the replacement holds the slot.
    fn retire(&mut self, now: Instant, slot: usize) {
        let s = &mut self.slots[slot];
        let Some(new) = s.replacement.take() else {
            return;
        };
        let old = std::mem::replace(&mut s.worker, new.clone());
        info!(%old, %new, "worker recycled");
        s.phase = Phase::Running;
        s.born = Some(now);
        s.recycles += 1;
        s.timers.stop(Timer::Retire);
        s.actions.push_back(SlotAction::Retire);
        self.recycling = None;
        self.events.push_back(Event::Recycled { old, new });
    }

    /// The replacement could not be built, connected or kept serving before the old worker
    /// left: the old worker stays (the slot drops the replacement), and the slot tries again
    /// after its patience.
    pub(crate) fn handle_replacement_failed(
        &mut self,
        now: Instant,
        slot: usize,
        error: impl fmt::Display,
    ) {
        if !matches!(self.slots[slot].phase, Phase::HandingOver | Phase::Retiring) {
            return;
        }
        warn!(worker = %self.slots[slot].worker, %error, "cannot start the replacement worker, keeping the old one");
        self.slots[slot]
            .actions
            .push_back(SlotAction::DropReplacement);
        self.postpone_recycle(now, slot);
    }

    /// Ends a hand-over that did not work out: the old worker stays, the slot waits its
    /// patience before it tries again, and another slot of the service may recycle.
    fn postpone_recycle(&mut self, now: Instant, slot: usize) {
        let s = &mut self.slots[slot];
        s.phase = Phase::Running;
        s.replacement = None;
        s.timers.stop(Timer::HandOver);
        s.timers.stop(Timer::HeardCheck);
        s.timers.stop(Timer::Retire);
        s.timers
            .set(Timer::RecycleRetry, now + self.recycle.patience);
        self.recycling = None;
    }

    /// The pool stops: the slot ends once its worker has finished (a replacement the broker
    /// has not heard is dropped first; one it has heard stays, and the old worker leaves).
    pub(crate) fn handle_shutdown(&mut self, now: Instant, slot: usize) {
        match self.slots[slot].phase {
            Phase::GaveUp | Phase::Stopped => return,
            Phase::HandingOver => {
                self.slots[slot]
                    .actions
                    .push_back(SlotAction::DropReplacement);
                self.recycling = None;
            }
            Phase::Retiring => self.retire(now, slot),
            Phase::Starting | Phase::Running | Phase::Waiting => {}
        }
        let s = &mut self.slots[slot];
        s.phase = Phase::Stopped;
        s.timers.stop_all();
        s.actions.push_back(SlotAction::Stop);
    }

    /// Runs the slot's deadlines that are due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, slot: usize) {
        let patience = self.recycle.patience;
        let s = &mut self.slots[slot];
        if s.timers.is_due(Timer::Restart, now) {
            s.timers.stop(Timer::Restart);
            s.phase = Phase::Starting;
            s.actions.push_back(SlotAction::Start);
        }
        if s.timers.is_due(Timer::RecycleRetry, now) {
            s.timers.stop(Timer::RecycleRetry);
        }
        if s.timers.is_due(Timer::HeardCheck, now) {
            s.timers
                .set(Timer::HeardCheck, now + self.recycle.heartbeat);
        }
        if s.timers.is_due(Timer::HandOver, now) {
            warn!(worker = %s.worker, ?patience, "replacement not acknowledged by the broker, recycle postponed");
            s.actions.push_back(SlotAction::DropReplacement);
            self.postpone_recycle(now, slot);
        }
        if self.slots[slot].timers.is_due(Timer::Retire, now) {
            self.retire(now, slot);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do for the slot next.
    pub(crate) fn next_deadline(&self, slot: usize) -> Option<Instant> {
        self.slots[slot].timers.next_deadline()
    }

    /// The slot's next action, if any.
    pub(crate) fn poll_action(&mut self, slot: usize) -> Option<SlotAction> {
        self.slots[slot].actions.pop_front()
    }

    /// The next event for the pool's event sink, if any.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Where the slot stands.
    #[cfg(test)]
    pub(crate) fn phase(&self, slot: usize) -> Phase {
        self.slots[slot].phase
    }

    /// Workers of the slot rebuilt after dying.
    pub(crate) fn restarts(&self, slot: usize) -> u64 {
        self.slots[slot].restarts
    }

    /// Workers of the slot replaced by recycling.
    pub(crate) fn recycles(&self, slot: usize) -> u64 {
        self.slots[slot].recycles
    }
}
