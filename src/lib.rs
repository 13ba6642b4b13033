//! A ZeroMQ Majordomo (MDP/0.1) worker.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod config;
pub mod protocol;
pub mod session;

pub use config::{ConfigError, WorkerConfig};
pub use protocol::ProtocolError;
