//! Running the action: inline and panic-guarded, or on a thread of its own, so the worker
//! loop keeps heartbeating and enforces deadlines while a long request runs. Dropping the
//! [`ActionThread`] ends its thread after the request in hand; it is never joined, so a stuck
//! action can never hang the worker's shutdown.

use std::any::Any;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use zmq::Message;

use crate::action::WorkerAction;
use crate::wake::Waker;

/// What the action produced for one request.
#[derive(Debug)]
pub(crate) enum ActionResult {
    /// The reply frames.
    Reply(Vec<Message>),
    /// The action panicked, with this message.
    Panicked(String),
}

/// Calls the action, turning a panic into [`ActionResult::Panicked`].
///
/// The action is used again after a panic: it is the action's own business to stay usable
/// (a pool can be configured to build a fresh one instead).
pub(crate) fn call_guarded<A: WorkerAction>(action: &mut A, body: Vec<Message>) -> ActionResult {
    match catch_unwind(AssertUnwindSafe(|| action.call(body))) {
        Ok(reply) => ActionResult::Reply(reply),
        Err(payload) => ActionResult::Panicked(panic_message(payload.as_ref())),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The action on a thread of its own. Requests go to it over a channel; its results come
/// back over another, and it wakes the worker's poll through the worker's [`Waker`]. Frames
/// move, nothing is copied, and no ZeroMQ socket is spent on the hand-off.
pub(crate) struct ActionThread {
    requests: Sender<Vec<Message>>,
    results: Receiver<ActionResult>,
    /// Set while the worker waits in poll rather than on `results`: only then does a result
    /// need the wake-up line (a write and a read more per request).
    polling: Arc<AtomicBool>,
}

impl ActionThread {
    /// Starts the thread; `waker` is woken after each result.
    pub(crate) fn spawn<A>(mut action: A, waker: Arc<Waker>) -> io::Result<ActionThread>
    where
        A: WorkerAction + Send + 'static,
    {
        // One request at a time is in the action: MDP gives a worker one request at a time.
        let (requests, inbox) = crossbeam_channel::bounded::<Vec<Message>>(1);
        let (outbox, results) = crossbeam_channel::bounded(1);
        let polling = Arc::new(AtomicBool::new(false));
        let wake_if_polling = Arc::clone(&polling);
        thread::Builder::new()
            .name("mdp-action".into())
            .spawn(move || {
                for body in inbox {
                    if outbox.send(call_guarded(&mut action, body)).is_err() {
                        return;
                    }
                    // Sent before the flag is read, and the worker sets the flag before it
                    // last looks at the channel: either it sees the result or it is woken.
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

    /// Hands a request body to the action thread; false if the thread is gone.
    pub(crate) fn send_request(&self, body: Vec<Message>) -> bool {
        self.requests.send(body).is_ok()
    }

    /// A finished result, if one is waiting.
    pub(crate) fn try_recv_result(&self) -> Option<ActionResult> {
        self.results.try_recv().ok()
    }

    /// Waits up to `timeout` (`None`: until it comes) for the result, blocked on the channel
    /// itself: the cheapest hand-off, for while the broker needs no watching.
    pub(crate) fn recv_result_timeout(&self, timeout: Option<Duration>) -> Option<ActionResult> {
        match timeout {
            Some(timeout) => self.results.recv_timeout(timeout).ok(),
            None => self.results.recv().ok(),
        }
    }

    /// Tells the thread whether the worker waits in poll (and so needs a wake-up per result).
    pub(crate) fn set_polling(&self, polling: bool) {
        self.polling.store(polling, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for ActionThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionThread")
    }
}
