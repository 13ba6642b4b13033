//! What the user supplies: a [`WorkerAction`] turns request frames into reply frames.

use zmq::Message;

/// Answers one request: request body frames in, reply body frames out.
///
/// Frames are [`zmq::Message`]s (re-exported as [`Message`](crate::Message)): they deref to
/// `[u8]`, and are built from `&[u8]`, `&str` or `Vec<u8>` with `Message::from`. They are the
/// very buffers ZeroMQ received, so an action can move request frames into its reply (an echo
/// is `|request| request`) and a 50 MiB body is never copied by the worker. Closures of the
/// right shape are actions; [`BytesAction`] adapts a closure over `Vec<Vec<u8>>`.
///
/// Every request gets exactly one reply: the frames returned here. A broker's client may retry
/// a request whose reply came late, so a request can run twice: make actions idempotent.
///
/// ```
/// use majordomo_worker::{Message, WorkerAction};
///
/// struct Upper;
/// impl WorkerAction for Upper {
///     fn call(&mut self, request: Vec<Message>) -> Vec<Message> {
///         request.iter().map(|f| Message::from(f.to_ascii_uppercase())).collect()
///     }
/// }
/// let reply = Upper.call(vec![Message::from("abc")]);
/// assert_eq!(&reply[0][..], b"ABC");
/// ```
pub trait WorkerAction {
    /// Computes the reply frames for the request frames.
    fn call(&mut self, request: Vec<Message>) -> Vec<Message>;
}

impl<F> WorkerAction for F
where
    F: FnMut(Vec<Message>) -> Vec<Message>,
{
    fn call(&mut self, request: Vec<Message>) -> Vec<Message> {
        self(request)
    }
}

impl WorkerAction for Box<dyn WorkerAction + Send> {
    fn call(&mut self, request: Vec<Message>) -> Vec<Message> {
        (**self).call(request)
    }
}

/// Adapts a closure over plain byte vectors into a [`WorkerAction`].
///
/// Convenient, at the cost of one copy of each request frame into a `Vec<u8>`; reply vectors
/// are handed to ZeroMQ without a copy.
///
/// ```
/// use majordomo_worker::{BytesAction, Message, WorkerAction};
///
/// let mut action = BytesAction(|request: Vec<Vec<u8>>| vec![request.concat()]);
/// let reply = action.call(vec![Message::from("a"), Message::from("b")]);
/// assert_eq!(&reply[0][..], b"ab");
/// ```
pub struct BytesAction<F>(pub F);

impl<F> WorkerAction for BytesAction<F>
where
    F: FnMut(Vec<Vec<u8>>) -> Vec<Vec<u8>>,
{
    fn call(&mut self, request: Vec<Message>) -> Vec<Message> {
        let request = request.iter().map(|frame| frame.to_vec()).collect();
        (self.0)(request).into_iter().map(Message::from).collect()
    }
}

impl<F> std::fmt::Debug for BytesAction<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BytesAction(..)")
    }
}
