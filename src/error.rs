//! The crate's top-level error.

use crate::checks::ConfigError;
use crate::io::transport::{TransportError, ZmqOperation};

/// What can go wrong that a worker cannot handle by itself.
///
/// Expected conditions (malformed frames, a broker DISCONNECT, a silent broker) never show up
/// here: the worker logs them and recovers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A ZeroMQ call failed in a way the worker cannot recover from by itself (the context was
    /// terminated, no file descriptor was left for a socket, ...). The worker stays usable:
    /// calling [`receive`](crate::Worker::receive) again retries after the reconnect delay.
    #[error("zmq {operation} failed: {source}")]
    Zmq {
        /// The ZeroMQ call that failed.
        operation: ZmqOperation,
        /// ZeroMQ's error.
        #[source]
        source: zmq::Error,
    },
    /// The operating system refused a thread or a file descriptor the worker needs.
    #[error("{operation} failed: {source}")]
    Io {
        /// What was attempted: `spawn` (a thread), `socketpair` (a wake-up line). Words
        /// for a log, not a case to match: what can be done about it is the same for all
        /// (the `std::io::Error` tells the cause).
        operation: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(operation: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { operation, source }
    }
}

impl From<TransportError> for Error {
    fn from(error: TransportError) -> Error {
        Error::Zmq {
            operation: error.operation,
            source: error.source,
        }
    }
}
