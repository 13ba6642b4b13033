//! The crate's top-level error.

use crate::config::ConfigError;

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
        /// The ZeroMQ operation.
        operation: &'static str,
        /// ZeroMQ's error.
        #[source]
        source: zmq::Error,
    },
}

impl Error {
    pub(crate) fn zmq(operation: &'static str) -> impl FnOnce(zmq::Error) -> Error {
        move |source| Error::Zmq { operation, source }
    }
}
