//! A ZeroMQ Majordomo (MDP/0.1) worker that every real broker can rely on.
//!
//! # Quick start
//!
//! ```no_run
//! use majordomo_worker::{Message, Worker, WorkerConfig};
//!
//! // Answer every request of the "echo" service with its own frames.
//! let config = WorkerConfig::new("tcp://127.0.0.1:5555", "echo");
//! let mut worker = Worker::new(config, |request: Vec<Message>| request)?;
//! let _signals = worker.shutdown_handle().shutdown_on_signals()?; // SIGINT/SIGTERM stop it
//! worker.run()?; // until shutdown: finishes the request in hand, REPLY, DISCONNECT
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Map of the crate
//!
//! | you want | start at |
//! |---|---|
//! | one worker, blocking | [`Worker`] (inline, or [`Worker::threaded`] for `request_timeout`) |
//! | many workers and services in one process, supervised | [`pool::WorkerPool`] |
//! | a worker on tokio, `concurrency` registrations | `AsyncWorker` (feature `tokio`) |
//! | to send requests | [`client::Client`], `AsyncClient` (feature `tokio`) |
//! | a broker to run or embed | [`broker::Broker`] |
//! | Prometheus metrics and `/healthz` | `metrics` (feature `metrics`) |
//! | to test your action end to end | [`testkit`] |
//! | your own event loop | [`session::Session`]: messages and time in, actions out |
//! | the `mdp` command-line tool | the `majordomo-cli` crate in this repository |
//!
//! # Layers
//!
//! ```text
//! drivers    Worker, WorkerPool, AsyncWorker     sockets, threads, tokio: carry decisions out
//! services   Broker, Client, AsyncClient         the other two MDP roles, same layering
//! config     WorkerConfig -> settings gate       checks and derives; pure
//! io         transport, security, wake           the only layer that opens ZeroMQ sockets
//! session    messages + time -> actions          pure state machine, time is an input
//! protocol   frames <-> messages                 pure: no socket, no clock
//! ```
//!
//! [`protocol`] decodes and encodes MDP/0.1 frames, generic over the frame type so that
//! `zmq::Message` buffers reach the action without a copy. [`session`] decides when to
//! heartbeat, when the broker is dead, when to reconnect and to which address, and keeps
//! exactly one REPLY per REQUEST; it is tested with simulated time. The drivers ([`Worker`],
//! the pool's slots, `AsyncWorker`) carry the session's decisions out on a DEALER socket and
//! share every step except their way of waiting. The pool's supervisor and the broker's state
//! are pure in the same way. `docs/ARCHITECTURE.md` in the repository draws the layers, the
//! import rules, one turn of a driver loop and the timer tables.
//!
//! # Behaviour on broker failure
//!
//! A broker that sends DISCONNECT, or stays silent for `heartbeat × liveness` while the worker
//! is idle, is left: the socket is closed, the worker waits the reconnect delay (doubling with
//! jitter up to `reconnect_max`, reset once a broker answers), then opens a new socket to the
//! next address of the list and sends READY. Time spent inside the action never counts as
//! broker silence. Malformed frames are logged and dropped; the connection is kept.
//!
//! # Testing your own action
//!
//! The crate ships a [`broker`] and a [`client`]; [`testkit`] wires them to your action in a
//! few lines (a unique endpoint, a shared context, fast timings, everything stopped on drop)
//! so that a unit test can check it end to end.
// `deny`, not `forbid`: two calls need `unsafe`, each with its reason where it is made. The
// async socket registers a descriptor with tokio, whose API for it is `unsafe`
// (`io/async_socket.rs`); stopping a socket monitor goes through libzmq's raw binding
// (`transport::stop_monitor`). Nothing else may use `unsafe`.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod action;
pub mod broker;
mod checks;
pub mod client;
pub mod config;
mod drivers;
mod error;
pub mod events;
mod io;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod millis;
pub mod protocol;
pub mod session;
mod shutdown;
mod stats;
pub mod testkit;
mod timers;

pub use action::{BytesAction, WorkerAction};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use client::async_client::AsyncClient;
pub use config::{ConfigError, WorkerConfig};
#[doc(inline)]
pub use drivers::pool;
pub use drivers::sync::{Received, Worker, WorkerStats};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use drivers::tokio::{AsyncAction, AsyncStats, AsyncSummary, AsyncWorker, ReplyFuture};
pub use error::Error;
pub use events::{Event, Events, RequestOutcome, WorkerId};
pub use io::security::{curve_available, CurveKeys};
pub use io::transport::ZmqOperation;
#[doc(inline)]
pub use protocol::mmi;
pub use protocol::ProtocolError;
pub use session::UNREACHABLE_AFTER;
pub use shutdown::{DrainHandle, ShutdownHandle, SignalGuard};
pub use stats::Summary;
/// The `zmq` crate this library is built on, for sharing a [`zmq::Context`].
pub use zmq;
/// A frame: the buffer ZeroMQ received or will send, dereferencing to `[u8]`.
pub use zmq::Message;

/// The README's code blocks, compiled (and the runnable ones run) by `cargo test --doc`, so the
/// front page cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
