//! The drivers: the code that does I/O for a worker session. Each keeps only its own way of
//! waiting (a `zmq::poll`, threads, tokio); see docs/ARCHITECTURE.md.

pub(crate) mod panics;
pub mod pool;
pub(crate) mod request_timer;
pub(crate) mod step;
pub(crate) mod sync;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;
