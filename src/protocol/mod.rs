//! MDP/0.1 wire format: frames to typed messages and back.
//!
//! This layer is pure: no socket, no clock. It is generic over the frame type `F`
//! (anything that dereferences to `[u8]`), so the worker can decode `zmq::Message` frames and
//! hand the body frames to the action without copying them, while tests use `Vec<u8>`.
//!
//! Two families of messages travel through a broker:
//!
//! | family | header | frames after the empty frame 0 |
//! |---|---|---|
//! | worker ([`WorkerMessage`]) | `MDPW01` | header, command byte, command-specific frames |
//! | client ([`ClientMessage`]) | `MDPC01` | header, service name, body frames |
//!
//! Decoding is total: every sequence of frames yields a message or a [`ProtocolError`]
//! saying what was wrong, never a panic.

pub mod mmi;

use std::fmt;
use std::ops::Deref;

/// The header of every worker message (7/MDP).
pub const WORKER_HEADER: &[u8] = b"MDPW01";
/// The header of every client message (7/MDP).
pub const CLIENT_HEADER: &[u8] = b"MDPC01";
/// The header of the incompatible MDP/0.2 worker protocol (18/MDP), recognised only to refuse it.
pub const WORKER_HEADER_V2: &[u8] = b"MDPW02";
/// The header of the incompatible MDP/0.2 client protocol (18/MDP), recognised only to refuse it.
pub const CLIENT_HEADER_V2: &[u8] = b"MDPC02";

/// The longest service name the protocol carries, in bytes.
pub const MAX_SERVICE_NAME_LEN: usize = 255;

/// The one-byte command of a worker message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// Worker to broker: register a service.
    Ready = 0x01,
    /// Broker to worker: a client request.
    Request = 0x02,
    /// Worker to broker: the answer to a request.
    Reply = 0x03,
    /// Both ways: proof of life.
    Heartbeat = 0x04,
    /// Both ways: end of the session.
    Disconnect = 0x05,
}

impl Command {
    /// The command for a wire byte, if the byte names one.
    pub fn from_byte(byte: u8) -> Option<Command> {
        match byte {
            0x01 => Some(Command::Ready),
            0x02 => Some(Command::Request),
            0x03 => Some(Command::Reply),
            0x04 => Some(Command::Heartbeat),
            0x05 => Some(Command::Disconnect),
            _ => None,
        }
    }

    /// The wire byte of this command.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The command's name as the specification spells it.
    pub fn name(self) -> &'static str {
        match self {
            Command::Ready => "READY",
            Command::Request => "REQUEST",
            Command::Reply => "REPLY",
            Command::Heartbeat => "HEARTBEAT",
            Command::Disconnect => "DISCONNECT",
        }
    }

    fn frame(self) -> &'static [u8] {
        match self {
            Command::Ready => &[0x01],
            Command::Request => &[0x02],
            Command::Reply => &[0x03],
            Command::Heartbeat => &[0x04],
            Command::Disconnect => &[0x05],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bytes shown in an error message: printable ASCII as is, anything else as `\xNN`,
/// cut after 32 bytes so that a hostile frame cannot flood the log.
#[derive(Clone, PartialEq, Eq)]
pub struct ShownBytes(Vec<u8>);

impl ShownBytes {
    const LIMIT: usize = 32;

    fn new(bytes: &[u8]) -> ShownBytes {
        ShownBytes(bytes[..bytes.len().min(Self::LIMIT + 1)].to_vec())
    }

    /// The first bytes of the frame (at most 33: one more than shown, to tell a cut).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for ShownBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0.iter().take(Self::LIMIT) {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > Self::LIMIT {
            f.write_str("...")?;
        }
        f.write_str("\"")
    }
}

impl fmt::Debug for ShownBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What was wrong with a sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Fewer frames than the smallest valid message.
    #[error("too few frames: {count}, need at least {min}")]
    TooFewFrames {
        /// Frames received.
        count: usize,
        /// Frames needed.
        min: usize,
    },
    /// Frame 0 must be empty (the delimiter a REQ or DEALER peer expects).
    #[error("frame 0 is not empty: {found}")]
    MissingEmptyFrame {
        /// What frame 0 held.
        found: ShownBytes,
    },
    /// The protocol header is not the one expected.
    #[error("bad protocol header {found}")]
    BadHeader {
        /// The header received.
        found: ShownBytes,
    },
    /// An MDP/0.2 header: a different, incompatible wire format.
    #[error("unsupported protocol version {found} (only MDP/0.1 is spoken)")]
    UnsupportedVersion {
        /// The header received.
        found: ShownBytes,
    },
    /// The command frame is not exactly one byte.
    #[error("command frame has {len} bytes, expected 1")]
    BadCommandFrame {
        /// Its length.
        len: usize,
    },
    /// The command byte names no MDP/0.1 command.
    #[error("unknown command byte 0x{0:02x}")]
    UnknownCommand(u8),
    /// A REQUEST or REPLY with no frame before the empty delimiter.
    #[error("{command} has no client address")]
    MissingAddress {
        /// The command that lacked it.
        command: Command,
    },
    /// A REQUEST or REPLY without the empty frame that ends the envelope.
    #[error("{command} has no empty delimiter after the client address")]
    MissingDelimiter {
        /// The command that lacked it.
        command: Command,
    },
    /// A command that takes a fixed number of frames came with more.
    #[error("{command} has {extra} unexpected trailing frame(s)")]
    TrailingFrames {
        /// The command.
        command: Command,
        /// How many frames too many.
        extra: usize,
    },
    /// A READY or client message whose service name is empty.
    #[error("empty service name")]
    EmptyServiceName,
    /// A service name longer than [`MAX_SERVICE_NAME_LEN`] bytes.
    #[error("service name of {len} bytes exceeds {MAX_SERVICE_NAME_LEN}")]
    ServiceNameTooLong {
        /// Its length.
        len: usize,
    },
}

/// A message of the worker protocol (`MDPW01`), either direction.
///
/// `F` is the frame type. The envelope (one or more routing frames, normally the client
/// address) is opaque binary and is carried back unchanged; the empty delimiter that ends
/// it is not stored, [`WorkerMessage::encode`] puts it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerMessage<F> {
    /// Worker to broker: register for `service`.
    Ready {
        /// The service name.
        service: F,
    },
    /// Broker to worker: a request to answer.
    Request {
        /// The frames between the command and the empty delimiter.
        envelope: Vec<F>,
        /// The request body, possibly no frames, possibly empty frames.
        body: Vec<F>,
    },
    /// Worker to broker: the answer to a request.
    Reply {
        /// The envelope of the request, unchanged.
        envelope: Vec<F>,
        /// The reply body.
        body: Vec<F>,
    },
    /// Both ways: proof of life.
    Heartbeat,
    /// Both ways: end of the session.
    Disconnect,
}

impl<F> WorkerMessage<F> {
    /// The message's command.
    pub fn command(&self) -> Command {
        match self {
            WorkerMessage::Ready { .. } => Command::Ready,
            WorkerMessage::Request { .. } => Command::Request,
            WorkerMessage::Reply { .. } => Command::Reply,
            WorkerMessage::Heartbeat => Command::Heartbeat,
            WorkerMessage::Disconnect => Command::Disconnect,
        }
    }
}

impl<F: Deref<Target = [u8]>> WorkerMessage<F> {
    /// Decodes the frames of a worker message as a DEALER socket receives them:
    /// `""`, `"MDPW01"`, command, then the command's frames.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] naming the first thing that is wrong.
    pub fn decode(frames: Vec<F>) -> Result<WorkerMessage<F>, ProtocolError> {
        let command = decode_worker_head(&frames)?;
        // The rest keeps the buffer the frames came in: no allocation for the envelope.
        let mut rest = frames;
        rest.drain(..3);
        match command {
            Command::Heartbeat | Command::Disconnect if !rest.is_empty() => {
                Err(ProtocolError::TrailingFrames {
                    command,
                    extra: rest.len(),
                })
            }
            Command::Heartbeat => Ok(WorkerMessage::Heartbeat),
            Command::Disconnect => Ok(WorkerMessage::Disconnect),
            Command::Ready => decode_ready(rest),
            Command::Request | Command::Reply => {
                let (envelope, body) = split_envelope(command, rest)?;
                Ok(match command {
                    Command::Request => WorkerMessage::Request { envelope, body },
                    _ => WorkerMessage::Reply { envelope, body },
                })
            }
        }
    }
}

impl<F: for<'a> From<&'a [u8]>> WorkerMessage<F> {
    /// Encodes the message as the frames a DEALER socket sends:
    /// `""`, `"MDPW01"`, command, then the command's frames.
    pub fn encode(self) -> Vec<F> {
        let command = self.command();
        let head = [
            F::from(&b""[..]),
            F::from(WORKER_HEADER),
            F::from(command.frame()),
        ];
        match self {
            WorkerMessage::Ready { service } => {
                let mut frames = Vec::with_capacity(4);
                frames.extend(head);
                frames.push(service);
                frames
            }
            WorkerMessage::Request { envelope, body } | WorkerMessage::Reply { envelope, body } => {
                // Built in the envelope's buffer (a decoded request's, with room to spare), so
                // that a reply usually needs no allocation at all.
                let mut frames = envelope;
                let addresses = frames.len();
                frames.reserve(head.len() + 1 + body.len());
                frames.extend(head);
                let head_len = frames.len() - addresses;
                frames.rotate_right(head_len);
                frames.push(F::from(&b""[..]));
                frames.extend(body);
                frames
            }
            WorkerMessage::Heartbeat | WorkerMessage::Disconnect => Vec::from(head),
        }
    }
}

/// A message of the client protocol (`MDPC01`), as the broker's ROUTER sees it after the
/// client's routing identity (and the empty frame a REQ socket adds) is taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage<F> {
    /// The service addressed.
    pub service: F,
    /// The body frames.
    pub body: Vec<F>,
}

impl<F: Deref<Target = [u8]>> ClientMessage<F> {
    /// Decodes `""`, `"MDPC01"`, service, body frames: a request at the broker, or a reply
    /// at a DEALER client (a REQ client's socket strips the leading empty frame: put an
    /// empty frame first or use [`ClientMessage::decode_without_delimiter`]).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] naming the first thing that is wrong.
    pub fn decode(frames: Vec<F>) -> Result<ClientMessage<F>, ProtocolError> {
        if frames.len() < 3 {
            return Err(ProtocolError::TooFewFrames {
                count: frames.len(),
                min: 3,
            });
        }
        let mut frames = frames.into_iter();
        expect_empty(frames.next())?;
        Self::decode_after_delimiter(frames)
    }

    /// Decodes `"MDPC01"`, service, body frames (no leading empty frame), as a REQ socket
    /// delivers a reply.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] naming the first thing that is wrong.
    pub fn decode_without_delimiter(frames: Vec<F>) -> Result<ClientMessage<F>, ProtocolError> {
        if frames.len() < 2 {
            return Err(ProtocolError::TooFewFrames {
                count: frames.len(),
                min: 2,
            });
        }
        Self::decode_after_delimiter(frames.into_iter())
    }

    fn decode_after_delimiter(
        mut frames: impl Iterator<Item = F>,
    ) -> Result<ClientMessage<F>, ProtocolError> {
        let header = frames
            .next()
            .ok_or(ProtocolError::TooFewFrames { count: 0, min: 2 })?;
        check_header(header.deref(), CLIENT_HEADER, CLIENT_HEADER_V2)?;
        let service = frames
            .next()
            .ok_or(ProtocolError::TooFewFrames { count: 1, min: 2 })?;
        check_service_name(service.deref())?;
        Ok(ClientMessage {
            service,
            body: frames.collect(),
        })
    }
}

impl<F: for<'a> From<&'a [u8]>> ClientMessage<F> {
    /// Encodes `""`, `"MDPC01"`, service, body frames.
    pub fn encode(self) -> Vec<F> {
        let mut frames = Vec::with_capacity(3 + self.body.len());
        frames.push(F::from(&b""[..]));
        frames.push(F::from(CLIENT_HEADER));
        frames.push(self.service);
        frames.extend(self.body);
        frames
    }
}

/// Checks a service name as the protocol carries it: non-empty, at most 255 bytes.
///
/// # Errors
///
/// [`ProtocolError::EmptyServiceName`] or [`ProtocolError::ServiceNameTooLong`].
pub fn check_service_name(name: &[u8]) -> Result<(), ProtocolError> {
    if name.is_empty() {
        Err(ProtocolError::EmptyServiceName)
    } else if name.len() > MAX_SERVICE_NAME_LEN {
        Err(ProtocolError::ServiceNameTooLong { len: name.len() })
    } else {
        Ok(())
    }
}

fn decode_worker_head<F: Deref<Target = [u8]>>(frames: &[F]) -> Result<Command, ProtocolError> {
    let [empty, header, command, ..] = frames else {
        return Err(ProtocolError::TooFewFrames {
            count: frames.len(),
            min: 3,
        });
    };
    if !empty.is_empty() {
        return Err(ProtocolError::MissingEmptyFrame {
            found: ShownBytes::new(empty),
        });
    }
    check_header(header, WORKER_HEADER, WORKER_HEADER_V2)?;
    match command.deref() {
        [byte] => Command::from_byte(*byte).ok_or(ProtocolError::UnknownCommand(*byte)),
        other => Err(ProtocolError::BadCommandFrame { len: other.len() }),
    }
}

fn expect_empty<F: Deref<Target = [u8]>>(frame: Option<F>) -> Result<(), ProtocolError> {
    match frame {
        Some(frame) if frame.deref().is_empty() => Ok(()),
        Some(frame) => Err(ProtocolError::MissingEmptyFrame {
            found: ShownBytes::new(frame.deref()),
        }),
        None => Err(ProtocolError::TooFewFrames { count: 0, min: 1 }),
    }
}

fn check_header(found: &[u8], expected: &[u8], v2: &[u8]) -> Result<(), ProtocolError> {
    if found == expected {
        Ok(())
    } else if found == v2 {
        Err(ProtocolError::UnsupportedVersion {
            found: ShownBytes::new(found),
        })
    } else {
        Err(ProtocolError::BadHeader {
            found: ShownBytes::new(found),
        })
    }
}

fn decode_ready<F: Deref<Target = [u8]>>(rest: Vec<F>) -> Result<WorkerMessage<F>, ProtocolError> {
    let mut rest = rest.into_iter();
    let service = rest
        .next()
        .ok_or(ProtocolError::TooFewFrames { count: 3, min: 4 })?;
    check_service_name(service.deref())?;
    let extra = rest.len();
    if extra > 0 {
        return Err(ProtocolError::TrailingFrames {
            command: Command::Ready,
            extra,
        });
    }
    Ok(WorkerMessage::Ready { service })
}

/// Splits `address…, "", body…` at the first empty frame.
fn split_envelope<F: Deref<Target = [u8]>>(
    command: Command,
    mut rest: Vec<F>,
) -> Result<(Vec<F>, Vec<F>), ProtocolError> {
    let delimiter = rest
        .iter()
        .position(|frame| frame.deref().is_empty())
        .ok_or(ProtocolError::MissingDelimiter { command })?;
    if delimiter == 0 {
        return Err(ProtocolError::MissingAddress { command });
    }
    let body = rest.split_off(delimiter + 1);
    rest.truncate(delimiter);
    Ok((rest, body))
}

#[cfg(test)]
mod tests;
