//! Running the action: inline and panic-guarded, or on a thread of its own behind an inproc
//! PAIR socket, so the worker loop keeps heartbeating while a long request runs.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use zmq::Message;

use super::wire;
use crate::action::WorkerAction;
use crate::error::Error;

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

const KIND_REQUEST: u8 = 1;
const KIND_STOP: u8 = 2;
const KIND_REPLY: u8 = 3;
const KIND_PANIC: u8 = 4;

/// The action on a thread of its own. Requests and results travel as whole multipart
/// messages over an inproc PAIR socket: frames move, nothing is copied, and the worker polls
/// the PAIR together with its broker socket.
pub(crate) struct ActionThread {
    socket: zmq::Socket,
}

impl ActionThread {
    pub(crate) fn spawn<A>(context: &zmq::Context, mut action: A) -> Result<ActionThread, Error>
    where
        A: WorkerAction + Send + 'static,
    {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!(
            "inproc://majordomo-worker-action-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let socket = context.socket(zmq::PAIR).map_err(Error::zmq("socket"))?;
        socket.set_linger(0).map_err(Error::zmq("setsockopt"))?;
        socket.bind(&endpoint).map_err(Error::zmq("bind"))?;
        let peer = context.socket(zmq::PAIR).map_err(Error::zmq("socket"))?;
        peer.set_linger(0).map_err(Error::zmq("setsockopt"))?;
        peer.connect(&endpoint).map_err(Error::zmq("connect"))?;
        thread::Builder::new()
            .name("mdp-action".into())
            .spawn(move || serve(&peer, &mut action))
            .map_err(|_| Error::Zmq {
                operation: "spawn action thread",
                source: zmq::Error::ENOMEM,
            })?;
        Ok(ActionThread { socket })
    }

    /// The socket to poll for results.
    pub(crate) fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Hands a request body to the action thread.
    pub(crate) fn send_request(&self, body: Vec<Message>) -> Result<(), zmq::Error> {
        let mut frames = Vec::with_capacity(body.len() + 1);
        frames.push(Message::from(&[KIND_REQUEST][..]));
        frames.extend(body);
        wire::send_frames(&self.socket, frames)
    }

    /// A finished result, if one is waiting.
    pub(crate) fn try_recv_result(&self) -> Result<Option<ActionResult>, zmq::Error> {
        let Some(mut frames) = wire::try_recv_frames(&self.socket)? else {
            return Ok(None);
        };
        let kind = frames.first().and_then(|f| f.first().copied());
        let body = frames.split_off(1.min(frames.len()));
        Ok(Some(match kind {
            Some(KIND_PANIC) => ActionResult::Panicked(
                body.first()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .unwrap_or_default(),
            ),
            _ => ActionResult::Reply(body),
        }))
    }
}

impl Drop for ActionThread {
    fn drop(&mut self) {
        // The thread ends after the request in hand, if any; it is not joined, so a stuck
        // action can never hang the worker's shutdown.
        let _ = self
            .socket
            .send(Message::from(&[KIND_STOP][..]), zmq::DONTWAIT);
    }
}

impl std::fmt::Debug for ActionThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionThread")
    }
}

fn serve<A: WorkerAction>(socket: &zmq::Socket, action: &mut A) {
    loop {
        // A blocking receive: polling first would cost three more system calls per request.
        let Ok(mut frames) = wire::recv_frames_blocking(socket) else {
            return;
        };
        if frames.first().and_then(|f| f.first().copied()) != Some(KIND_REQUEST) {
            return;
        }
        let body = frames.split_off(1);
        let reply = match call_guarded(action, body) {
            ActionResult::Reply(reply) => {
                let mut out = Vec::with_capacity(reply.len() + 1);
                out.push(Message::from(&[KIND_REPLY][..]));
                out.extend(reply);
                out
            }
            ActionResult::Panicked(message) => vec![
                Message::from(&[KIND_PANIC][..]),
                Message::from(message.as_bytes()),
            ],
        };
        if wire::send_frames(socket, reply).is_err() {
            return;
        }
    }
}
