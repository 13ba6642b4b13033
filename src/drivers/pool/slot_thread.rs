//! The thread of one pool slot: a driver over its service's supervisor. It builds workers,
//! serves with them, feeds what happened (and the time) to the supervisor, and carries out the
//! [`SlotAction`]s it gets back. No restart or recycle decision is made here.

use std::time::{Duration, Instant};

use crate::drivers::panics;
use crate::drivers::sync::Received;

use super::hand_over::recycle;
use super::slot::{lock, PoolWorker, Slot, SlotError};
use super::supervisor::SlotAction;

/// Longest wait of a slot with no worker and no deadline (it should not happen: such a
/// slot has a `Stop` queued); bounded all the same, so the thread sees a shutdown.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The slot's thread: carries out the supervisor's actions until it says stop.
pub(super) fn run_slot(slot: &Slot) {
    let mut current: Option<PoolWorker> = None;
    loop {
        match slot.next_action() {
            Some(SlotAction::Start) => current = start(slot),
            Some(SlotAction::StartReplacement) => recycle(slot, &mut current),
            Some(SlotAction::Stop) => return finish(current),
            // Only meaningful inside a hand-over, where they are read.
            Some(SlotAction::Retire | SlotAction::DropReplacement) => {}
            None => match current.as_mut() {
                Some(worker) => {
                    if !serve(slot, worker) {
                        current = None;
                    }
                }
                None => wait(slot),
            },
        }
    }
}

/// Builds the slot's worker and tells the supervisor how that went.
fn start(slot: &Slot) -> Option<PoolWorker> {
    if slot.shutdown.is_shutdown() {
        slot.supervise(|s, now, i| s.handle_shutdown(now, i));
        return None;
    }
    match slot.build() {
        Ok(worker) => {
            slot.install(&worker);
            let id = worker.id().clone();
            slot.supervise(|s, now, i| s.handle_started(now, i, id));
            Some(worker)
        }
        Err(error) => {
            slot.supervise(|s, now, i| s.handle_died(now, i, error));
            None
        }
    }
}

/// Answers one request (or sees the shutdown); false if the worker died.
fn serve(slot: &Slot, worker: &mut PoolWorker) -> bool {
    match SlotError::flatten(panics::catch(|| worker.receive())) {
        Ok(Received::Handled) => {
            slot.report_served(worker);
            true
        }
        Ok(Received::ShutDown) => {
            slot.supervise(|s, now, i| s.handle_shutdown(now, i));
            true
        }
        Err(error) => {
            slot.supervise(|s, now, i| s.handle_died(now, i, error));
            false
        }
    }
}

/// With no worker: waits for the next deadline (a restart) or the pool's shutdown.
fn wait(slot: &Slot) {
    let deadline = lock(&slot.supervisor).next_deadline(slot.index);
    let timeout = deadline.map_or(IDLE_WAIT, |at| at.saturating_duration_since(Instant::now()));
    if slot.shutdown.wait_timeout(timeout) {
        slot.supervise(|s, now, i| s.handle_shutdown(now, i));
    }
}

/// The slot is done: a worker still held answers what it holds and sends DISCONNECT (its
/// shutdown handle is the slot's child, already set).
fn finish(current: Option<PoolWorker>) {
    if let Some(mut worker) = current {
        let _ = panics::catch(|| worker.receive());
    }
}
