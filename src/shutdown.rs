//! Stopping a worker from another thread, or on SIGINT/SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::io::wake::{Waker, Wakers};

/// Asks one or more workers to stop gracefully. `Clone + Send + Sync`; [`shutdown`]
/// never blocks, and is safe to call any number of times, from any thread.
///
/// A waiting worker (idle, or waiting out a reconnect delay) is woken at once; one inside the
/// action finishes the request, sends its REPLY, then DISCONNECT.
///
/// [`shutdown`]: ShutdownHandle::shutdown
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    inner: Arc<Inner>,
    /// Handles whose shutdown also stops this one (see [`ShutdownHandle::child`]).
    parents: Vec<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    flag: AtomicBool,
    // Dropping the sender wakes every receiver at once: that is the whole signal.
    wake: Mutex<Option<Sender<()>>>,
    woken: Receiver<()>,
    /// The workers waiting in poll on this handle (or on a child of it).
    wakers: Wakers,
}

impl ShutdownHandle {
    /// A handle in the running state.
    pub fn new() -> ShutdownHandle {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        ShutdownHandle {
            inner: Arc::new(Inner {
                flag: AtomicBool::new(false),
                wake: Mutex::new(Some(sender)),
                woken: receiver,
                wakers: Wakers::default(),
            }),
            parents: Vec::new(),
        }
    }

    /// A new handle that is shut down by its own [`shutdown`](Self::shutdown) or by this
    /// one's: a pool stops every worker, and can still stop one worker alone.
    pub fn child(&self) -> ShutdownHandle {
        let mut child = ShutdownHandle::new();
        child.parents.push(Arc::clone(&self.inner));
        child.parents.extend(self.parents.iter().cloned());
        child
    }

    /// Asks every worker holding this handle to stop. Returns at once.
    pub fn shutdown(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        let sender = match self.inner.wake.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(sender);
        self.inner.wakers.wake_all();
    }

    /// Has `waker` woken by a shutdown of this handle or of any of its parents.
    pub(crate) fn register_waker(&self, waker: &Arc<Waker>) {
        self.inner.wakers.register(waker);
        for parent in &self.parents {
            parent.wakers.register(waker);
        }
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
            || self.parents.iter().any(|p| p.flag.load(Ordering::SeqCst))
    }

    /// Waits up to `timeout` or until shutdown, whichever comes first; true on shutdown.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.is_shutdown() {
            return true;
        }
        if self.parents.is_empty() {
            let _: Result<(), RecvTimeoutError> = self.inner.woken.recv_timeout(timeout);
            return self.is_shutdown();
        }
        let mut select = crossbeam_channel::Select::new();
        select.recv(&self.inner.woken);
        for parent in &self.parents {
            select.recv(&parent.woken);
        }
        // Any ready receiver was disconnected by a shutdown; which one does not matter.
        let _ = select.ready_timeout(timeout);
        self.is_shutdown()
    }

    /// Wires SIGINT and SIGTERM to [`shutdown`](Self::shutdown), with signal-hook, until the
    /// returned guard is dropped. A second signal while stopping exits the process at once with
    /// status 1, so an impatient operator is never stuck.
    ///
    /// The library installs no signal handler unless this is called. Keep the guard: once it
    /// is dropped SIGINT and SIGTERM do nothing (see [`SignalGuard`]).
    ///
    /// # Errors
    ///
    /// The I/O error from registering the handlers.
    pub fn shutdown_on_signals(&self) -> std::io::Result<SignalGuard> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::iterator::Signals;

        let signalled = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            // Registered before the flag, so it sees the flag as the previous signal left it.
            ids.push(signal_hook::flag::register_conditional_shutdown(
                signal,
                1,
                Arc::clone(&signalled),
            )?);
            ids.push(signal_hook::flag::register(signal, Arc::clone(&signalled))?);
        }
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let close = signals.handle();
        let handle = self.clone();
        let thread = thread::Builder::new()
            .name("mdp-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    tracing::info!(signal, "signal received, shutting down");
                    handle.shutdown();
                }
            })?;
        Ok(SignalGuard {
            close,
            ids,
            thread: Some(thread),
        })
    }
}

#[cfg(feature = "tokio")]
impl ShutdownHandle {
    /// The tokio twin of [`shutdown_on_signals`](Self::shutdown_on_signals): a task of the
    /// current runtime waits for SIGINT or SIGTERM and calls [`shutdown`](Self::shutdown); a
    /// second signal while stopping exits the process at once with status 1. Abort the
    /// returned task to unwire it. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The I/O error from registering the signal streams.
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn shutdown_on_tokio_signals(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let handle = self.clone();
        Ok(tokio::spawn(async move {
            for round in 0.. {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if round > 0 {
                    tracing::warn!("second signal while stopping, exiting now");
                    std::process::exit(1);
                }
                tracing::info!("signal received, shutting down");
                handle.shutdown();
            }
        }))
    }
}

impl Default for ShutdownHandle {
    fn default() -> Self {
        ShutdownHandle::new()
    }
}

/// Drains and resumes one or more workers. `Clone + Send + Sync`; never blocks.
///
/// [`drain`](Self::drain): each worker finishes the request in hand, sends its REPLY and
/// DISCONNECT, closes its socket and waits. [`resume`](Self::resume): each registers again on a
/// new socket. A drained worker still obeys its [`ShutdownHandle`].
#[derive(Clone, Debug, Default)]
pub struct DrainHandle {
    drained: Arc<AtomicBool>,
    wakers: Arc<Wakers>,
}

impl DrainHandle {
    /// A handle in the serving state.
    pub fn new() -> DrainHandle {
        DrainHandle::default()
    }

    /// Asks every worker holding this handle to drain.
    pub fn drain(&self) {
        self.drained.store(true, Ordering::SeqCst);
        self.wakers.wake_all();
    }

    /// Asks every drained worker holding this handle to register again.
    pub fn resume(&self) {
        self.drained.store(false, Ordering::SeqCst);
        self.wakers.wake_all();
    }

    /// Whether workers are asked to be drained.
    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::SeqCst)
    }

    /// Has `waker` woken by every drain and resume.
    pub(crate) fn register_waker(&self, waker: &Arc<Waker>) {
        self.wakers.register(waker);
    }
}

/// Keeps SIGINT/SIGTERM wired to a [`ShutdownHandle`]; dropping it unregisters the handlers.
///
/// Keep it alive for as long as the signals should stop the worker, typically in a variable
/// of `main` (`let _signals = ...`, not `let _ = ...`, which drops it at once). Once it is
/// dropped, SIGINT and SIGTERM do **nothing**: signal-hook's handler stays installed with no
/// action left, the default action (ending the process) does not come back, and only SIGKILL
/// stops the process. Hence `#[must_use]`: a discarded guard is a warning.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let shutdown = majordomo_worker::ShutdownHandle::new();
/// let _signals = shutdown.shutdown_on_signals()?; // wired until the end of this scope
/// # Ok(())
/// # }
/// ```
///
/// Discarding it is a warning (here made an error):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> std::io::Result<()> {
/// let shutdown = majordomo_worker::ShutdownHandle::new();
/// shutdown.shutdown_on_signals()?; // warning: unused `SignalGuard` that must be used
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the SignalGuard un-wires SIGINT/SIGTERM, which then do nothing at all: \
              keep it in a variable (`let _signals = ...`) for as long as signals should stop"]
pub struct SignalGuard {
    close: signal_hook::iterator::Handle,
    ids: Vec<signal_hook::SigId>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.close.close();
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn shutdown_wakes_a_waiter_in_another_thread_at_once() {
        let handle = ShutdownHandle::new();
        let waiter = handle.clone();
        let t = thread::spawn(move || {
            let start = Instant::now();
            let stopped = waiter.wait_timeout(Duration::from_secs(30));
            (stopped, start.elapsed())
        });
        handle.shutdown();
        let (stopped, waited) = t.join().unwrap();
        assert!(stopped);
        assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    }

    #[test]
    fn a_parent_shutdown_stops_and_wakes_its_children_but_not_the_reverse() {
        let parent = ShutdownHandle::new();
        let child = parent.child();
        let grandchild = child.child();
        grandchild.shutdown();
        assert!(grandchild.is_shutdown());
        assert!(!child.is_shutdown() && !parent.is_shutdown());
        let waiter = child.clone();
        let t = thread::spawn(move || waiter.wait_timeout(Duration::from_secs(30)));
        parent.shutdown();
        assert!(t.join().unwrap());
        assert!(child.is_shutdown());
    }

    #[test]
    fn wait_times_out_while_running_and_shutdown_is_idempotent() {
        let handle = ShutdownHandle::new();
        assert!(!handle.wait_timeout(Duration::from_millis(1)));
        assert!(!handle.is_shutdown());
        handle.shutdown();
        handle.shutdown();
        assert!(handle.is_shutdown());
        assert!(handle.wait_timeout(Duration::from_secs(30)));
    }
}
