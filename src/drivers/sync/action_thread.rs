//! Running the action: inline and panic-guarded, or on a thread of its own, so the worker
//! loop keeps heartbeating and enforces deadlines while a long request runs. Dropping the
//! [`ActionThread`] ends its thread after the request in hand; it is never joined, so a stuck
//! action can never hang the worker's shutdown.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use zmq::Message;

use crate::action::WorkerAction;
use crate::drivers::panics;
use crate::drivers::step::ActionResult;
use crate::io::wake::Waker;

/// Calls the action, turning a panic into [`ActionResult::Panicked`].
///
/// The action is used again after a panic: it is the action's own business to stay usable
/// (a pool can be configured to build a fresh one instead).
pub(crate) fn call_guarded<A: WorkerAction>(action: &mut A, body: Vec<Message>) -> ActionResult {
    panics::catch(|| action.call(body)).into()
}

/// The action on a thread of its own. Requests go to it through one [`Slot`]; its results
/// come back through another, and wake the worker's poll through its [`Waker`] when the worker
/// waits there. Frames move, nothing is copied, and no ZeroMQ socket is spent on the hand-off.
pub(crate) struct ActionThread {
    requests: Arc<Slot<Vec<Message>>>,
    results: Arc<Slot<ActionResult>>,
    /// Set while the worker waits in poll rather than on `results`: only then does a result
    /// need the wake-up line (a write and a read more per request).
    polling: Arc<AtomicBool>,
}

impl ActionThread {
    /// Starts the thread; `waker` is woken after a result while the worker polls.
    pub(crate) fn spawn<A>(mut action: A, waker: Arc<Waker>) -> io::Result<ActionThread>
    where
        A: WorkerAction + Send + 'static,
    {
        let requests = Arc::new(Slot::default());
        let results = Arc::new(Slot::default());
        let polling = Arc::new(AtomicBool::new(false));
        let (inbox, outbox, wake_if_polling) = (
            Arc::clone(&requests),
            Arc::clone(&results),
            Arc::clone(&polling),
        );
        thread::Builder::new()
            .name("mdp-action".into())
            .spawn(move || {
                while let Some(body) = inbox.recv(None) {
                    outbox.send(call_guarded(&mut action, body));
                    // Sent before the flag is read, and the worker sets the flag before it
                    // last looks at the slot: either it sees the result or it is woken.
                    if wake_if_polling.load(Ordering::SeqCst) {
                        waker.wake();
                    }
                }
            })?;
        Ok(ActionThread {
            requests,
            results,
            polling,
        })
    }

    /// Hands a request body to the action thread.
    pub(crate) fn send_request(&self, body: Vec<Message>) {
        self.requests.send(body);
    }

    /// A finished result, if one is waiting.
    pub(crate) fn try_recv_result(&self) -> Option<ActionResult> {
        self.results.try_recv()
    }

    /// Waits up to `timeout` (`None`: until it comes) for the result, on the slot itself: the
    /// cheapest hand-off, for while the broker needs no watching. (Spinning 20 µs for a quick
    /// result first made no measurable difference: BENCHMARKS.md.)
    pub(crate) fn recv_result_timeout(&self, timeout: Option<Duration>) -> Option<ActionResult> {
        self.results.recv(timeout)
    }

    /// Tells the thread whether the worker waits in poll (and so needs a wake-up per result).
    pub(crate) fn set_polling(&self, polling: bool) {
        self.polling.store(polling, Ordering::SeqCst);
    }
}

impl Drop for ActionThread {
    fn drop(&mut self) {
        // The thread ends after the request in hand; it is not joined.
        self.requests.close();
    }
}

/// A one-value hand-off between two threads: a mutex and a condition variable, so a waiter
/// sleeps at once (a spinning channel burns the CPU the other thread needs on a small
/// machine: measured at twice the CPU per request on 2 cores, see BENCHMARKS.md).
#[derive(Debug)]
struct Slot<T> {
    state: Mutex<(Option<T>, bool)>,
    ready: Condvar,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            state: Mutex::new((None, false)),
            ready: Condvar::new(),
        }
    }
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, (Option<T>, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `value` (one at a time: MDP gives a worker one request at a time).
    fn send(&self, value: T) {
        self.lock().0 = Some(value);
        self.ready.notify_one();
    }

    fn try_recv(&self) -> Option<T> {
        self.lock().0.take()
    }

    /// The value, waiting up to `timeout`; `None` on timeout or once closed and empty.
    fn recv(&self, timeout: Option<Duration>) -> Option<T> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut state = self.lock();
        loop {
            if let Some(value) = state.0.take() {
                return Some(value);
            }
            if state.1 {
                return None;
            }
            // No deadline: none asked for, or one too far to be a point in time.
            state = match deadline {
                None => self.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }
}

impl std::fmt::Debug for ActionThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionThread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_hands_values_over_and_times_out_and_closes() {
        let slot = Arc::new(Slot::default());
        assert_eq!(slot.recv(Some(Duration::from_millis(1))), None);
        let sender = Arc::clone(&slot);
        let t = thread::spawn(move || sender.send(7));
        assert_eq!(slot.recv(Some(Duration::from_secs(10))), Some(7));
        t.join().expect("sender");
        assert_eq!(slot.try_recv(), None);
        slot.send(8);
        slot.close();
        assert_eq!(
            slot.recv(None),
            Some(8),
            "a value left before closing is kept"
        );
        assert_eq!(slot.recv(None), None, "closed and empty: no wait");
        assert_eq!(slot.recv(Some(Duration::MAX)), None);
    }

    #[test]
    fn a_panicking_action_is_reported_with_its_message() {
        let mut action = |_: Vec<Message>| -> Vec<Message> { panic!("boom") };
        match call_guarded(&mut action, Vec::new()) {
            ActionResult::Panicked(message) => assert_eq!(message, "boom"),
            other => panic!("expected a panic, got {other:?}"),
        }
    }
}
