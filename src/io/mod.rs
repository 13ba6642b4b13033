//! The I/O layer: ZeroMQ sockets and what is set on them. `transport` opens, sends, receives
//! and monitors (its errors name the failed call as a `ZmqOperation`); `security` sets PLAIN
//! and CURVE options; `wake` is the eventfd line that wakes a poll; `async_socket` lets tokio
//! wait on a socket.

#[cfg(feature = "tokio")]
pub(crate) mod async_socket;
pub(crate) mod security;
pub(crate) mod transport;
pub(crate) mod wake;
