//! Stopping a broker from another thread, and a broker running on a thread of its own.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::stats::{BrokerStats, SharedStats};
use super::BrokerError;
use crate::io::wake::{Waker, Wakers};

/// Stops a running [`Broker`](super::Broker): `Clone + Send + Sync`, cheap to hand around.
///
/// [`stop`](Self::stop) wakes the broker's loop at once (a signal is seen within 50 ms); it
/// then sends DISCONNECT to its workers (unless
/// [`disconnect_on_stop`](super::BrokerConfig::disconnect_on_stop) is off) and closes.
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    stopped: Arc<AtomicBool>,
    wakers: Arc<Wakers>,
}

impl StopHandle {
    /// Asks the broker to stop; returns at once.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wakers.wake_all();
    }

    /// Makes [`stop`](Self::stop) wake `waker` (the broker's loop waits on it).
    pub(crate) fn register_waker(&self, waker: &Arc<Waker>) {
        self.wakers.register(waker);
    }

    /// Whether [`stop`](Self::stop) was called (or a registered signal arrived).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Opt-in: makes SIGINT and SIGTERM stop the broker, for a broker run as a program.
    /// The library never installs signal handlers on its own.
    ///
    /// # Errors
    ///
    /// The error of registering a handler with the operating system.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&self.stopped))?;
        }
        Ok(())
    }
}

/// A [`Broker`](super::Broker) running on a thread of its own, from
/// [`Broker::spawn`](super::Broker::spawn). Dropping the handle stops the broker and waits
/// for its thread.
#[derive(Debug)]
#[must_use = "dropping the BrokerHandle stops the broker at once (and waits for its thread)"]
pub struct BrokerHandle {
    pub(crate) endpoint: String,
    pub(crate) stop: StopHandle,
    pub(crate) stats: SharedStats,
    pub(crate) thread: Option<JoinHandle<Result<BrokerStats, BrokerError>>>,
}

impl BrokerHandle {
    /// The endpoint the broker is bound to, with a wildcard port resolved
    /// (`tcp://127.0.0.1:41877` for `tcp://127.0.0.1:*`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The broker's statistics as of its last loop turn (at most ~50 ms old).
    pub fn stats(&self) -> BrokerStats {
        self.stats.get()
    }

    /// A handle that stops the broker from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Stops the broker and waits for its thread: the socket's linger at most. Returns the final statistics.
    ///
    /// # Errors
    ///
    /// The error that ended the broker's loop early, if one did.
    pub fn stop(mut self) -> Result<BrokerStats, BrokerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<BrokerStats, BrokerError> {
        self.stop.stop();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(BrokerError::Panicked),
            None => Ok(self.stats.get()),
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if let Err(error) = self.stop_and_join() {
            tracing::error!(%error, "broker ended with an error");
        }
    }
}
