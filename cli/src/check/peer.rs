//! Raw zmq sockets that record every message they send and receive in a check's transcript.
//! Frames are built and read with the library's codec; only malformed messages are made here,
//! by breaking a well-formed one.

use std::cell::Cell;
use std::time::{Duration, Instant};

use majordomo_worker::protocol::{ClientMessage, WorkerMessage};

use super::report::Transcript;
use crate::error::CliError;

/// A frame as the checks handle it.
pub type Frame = Vec<u8>;

/// A socket error: a bad endpoint is the user's (exit 2), anything else is a failure (exit 3).
pub fn socket_error(operation: &str, endpoint: &str, error: zmq::Error) -> CliError {
    let message = format!("{operation} {endpoint}: {error}");
    match error {
        zmq::Error::EINVAL | zmq::Error::EPROTONOSUPPORT | zmq::Error::ENODEV => {
            CliError::Usage(message)
        }
        _ => CliError::Failed(message),
    }
}

fn zmq_failed(operation: &'static str) -> impl FnOnce(zmq::Error) -> CliError {
    move |error| CliError::Failed(format!("{operation}: {error}"))
}

/// One raw socket with a name for the report.
pub struct Peer {
    /// Shown in the transcript: `worker-1`, `client-2`, `broker`.
    pub name: String,
    socket: zmq::Socket,
    /// Whether a worker DISCONNECT went either way on this socket.
    disconnected: Cell<bool>,
}

impl Peer {
    /// A socket of `kind` connected to `endpoint`, with `identity` if given.
    pub fn connect(
        context: &zmq::Context,
        kind: zmq::SocketType,
        endpoint: &str,
        name: String,
        identity: Option<&[u8]>,
    ) -> Result<Peer, CliError> {
        let peer = Peer::new(context, kind, name)?;
        if let Some(identity) = identity {
            peer.socket
                .set_identity(identity)
                .map_err(zmq_failed("identity"))?;
        }
        peer.socket
            .connect(endpoint)
            .map_err(|e| socket_error("cannot connect to", endpoint, e))?;
        Ok(peer)
    }

    /// A ROUTER bound at `endpoint`.
    pub fn bind(context: &zmq::Context, endpoint: &str, name: String) -> Result<Peer, CliError> {
        let peer = Peer::new(context, zmq::ROUTER, name)?;
        peer.socket
            .bind(endpoint)
            .map_err(|e| socket_error("cannot bind", endpoint, e))?;
        Ok(peer)
    }

    fn new(context: &zmq::Context, kind: zmq::SocketType, name: String) -> Result<Peer, CliError> {
        let socket = context.socket(kind).map_err(zmq_failed("socket"))?;
        socket.set_linger(0).map_err(zmq_failed("linger"))?;
        socket
            .set_sndtimeo(1000)
            .map_err(zmq_failed("send timeout"))?;
        Ok(Peer {
            name,
            socket,
            disconnected: Cell::new(false),
        })
    }

    /// The endpoint bound last, with the port a `*` or `0` resolved to.
    pub fn last_endpoint(&self) -> Option<String> {
        self.socket.get_last_endpoint().ok()?.ok()
    }

    /// The socket, to poll several at once.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Whether a worker DISCONNECT was sent or received on this socket.
    pub fn disconnected(&self) -> bool {
        self.disconnected.get()
    }

    fn note_disconnect(&self, frames: &[Frame]) {
        if matches!(decode_worker(frames), Some(WorkerMessage::Disconnect)) {
            self.disconnected.set(true);
        }
    }

    /// Sends `frames` as one message.
    pub fn send(&self, t: &mut Transcript, frames: &[Frame]) -> Result<(), CliError> {
        self.note_disconnect(frames);
        if t.heartbeats || !is_heartbeat(frames) {
            t.record(&self.name, true, frames);
        }
        self.socket
            .send_multipart(frames, 0)
            .map_err(zmq_failed("send"))
    }

    /// The next message, if one arrives within `wait`.
    pub fn recv(&self, t: &mut Transcript, wait: Duration) -> Result<Option<Vec<Frame>>, CliError> {
        let ready = self
            .socket
            .poll(zmq::POLLIN, wait.as_millis() as i64)
            .map_err(zmq_failed("poll"))?;
        if ready == 0 {
            return Ok(None);
        }
        self.recv_now(t).map(Some)
    }

    /// A message known to be waiting.
    pub fn recv_now(&self, t: &mut Transcript) -> Result<Vec<Frame>, CliError> {
        let frames = self.socket.recv_multipart(0).map_err(zmq_failed("recv"))?;
        self.note_disconnect(&frames);
        if t.heartbeats || !is_heartbeat(&frames) {
            t.record(&self.name, false, &frames);
        }
        Ok(frames)
    }

    /// The first message within `wait` that `wanted` accepts; the others are recorded and
    /// dropped.
    pub fn recv_until(
        &self,
        t: &mut Transcript,
        wait: Duration,
        mut wanted: impl FnMut(&[Frame]) -> bool,
    ) -> Result<Option<Vec<Frame>>, CliError> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(t, left)? {
                Some(frames) if wanted(&frames) => return Ok(Some(frames)),
                Some(_) if !left.is_zero() => continue,
                _ => return Ok(None),
            }
        }
    }
}

/// Whether `frames` (from a DEALER, or from a ROUTER after the identity) are a HEARTBEAT.
fn is_heartbeat(frames: &[Frame]) -> bool {
    let decoded = |f: &[Frame]| {
        matches!(
            WorkerMessage::decode(f.to_vec()),
            Ok(WorkerMessage::Heartbeat)
        )
    };
    decoded(frames) || (frames.len() == 4 && decoded(&frames[1..]))
}

/// A worker message as a DEALER sends it.
pub fn worker_frames(message: WorkerMessage<Frame>) -> Vec<Frame> {
    message.encode()
}

/// A client request as a DEALER sends it: `""`, `"MDPC01"`, service, body.
pub fn client_frames(service: &[u8], body: &[&[u8]]) -> Vec<Frame> {
    ClientMessage {
        service: service.to_vec(),
        body: body.iter().map(|f| f.to_vec()).collect(),
    }
    .encode()
}

/// Frames from borrowed slices.
pub fn owned(parts: &[&[u8]]) -> Vec<Frame> {
    parts.iter().map(|p| p.to_vec()).collect()
}

/// A worker message as a DEALER receives it, if it is one.
pub fn decode_worker(frames: &[Frame]) -> Option<WorkerMessage<Frame>> {
    WorkerMessage::decode(frames.to_vec()).ok()
}

/// A client reply as a DEALER receives it, if it is one.
pub fn decode_client(frames: &[Frame]) -> Option<ClientMessage<Frame>> {
    ClientMessage::decode(frames.to_vec()).ok()
}

/// A client reply as a REQ socket receives it (no leading empty frame), if it is one.
pub fn decode_req_reply(frames: &[Frame]) -> Option<ClientMessage<Frame>> {
    ClientMessage::decode_without_delimiter(frames.to_vec()).ok()
}
