//! Typed events about worker life, delivered on a bounded channel that never blocks a worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// Identifies a worker within a process: its service and a number unique in the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerId {
    /// The service the worker registers.
    pub service: Arc<str>,
    /// A number unique among the workers of this process.
    pub number: u64,
}

impl WorkerId {
    pub(crate) fn next(service: &str) -> WorkerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        #[cfg(test)]
        IDS_MADE_HERE.with(|made| made.set(made.get() + 1));
        WorkerId {
            service: Arc::from(service),
            number: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.service, self.number)
    }
}

/// Who a worker is: its id and the seed of its reconnect jitter. A driver makes one when it
/// starts a worker ([`Worker::new`](crate::Worker::new), a pool slot's worker, each
/// registration of an async worker), never the settings gate, so that checking a config
/// stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) id: WorkerId,
    pub(crate) seed: u64,
}

impl Identity {
    /// A new worker of `service`: the next number of the process and a seed of its own.
    pub(crate) fn new(service: &str) -> Identity {
        Identity {
            id: WorkerId::next(service),
            seed: seed(),
        }
    }
}

/// A seed for jitter that differs between workers and processes.
pub(crate) fn seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Why a worker left a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The broker sent DISCONNECT.
    BrokerDisconnected,
    /// Nothing was heard from the broker for `heartbeat × liveness`.
    BrokerSilent,
    /// The socket could not be opened or connected.
    ConnectFailed,
    /// The worker is shutting down.
    Shutdown,
    /// The worker was drained.
    Drained,
    /// The transport dropped the connection under the socket: the broker went away, a
    /// message broke `max_message_size`, or the security handshake failed on a protocol error.
    ConnectionLost,
    /// The broker's ZAP handler refused the worker's credentials.
    AuthenticationFailed,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The action's reply was sent.
    Replied,
    /// The action panicked; the panic reply was sent.
    Panicked,
    /// The deadline passed; the timeout reply was sent and the late result will be dropped.
    TimedOut,
    /// The broker connection was lost before the reply could be sent.
    ConnectionLost,
}

/// Something that happened to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new socket was opened to `broker` and READY sent.
    Connected {
        /// The worker.
        worker: WorkerId,
        /// The broker endpoint.
        broker: String,
    },
    /// The worker left its broker.
    Disconnected {
        /// The worker.
        worker: WorkerId,
        /// Why.
        reason: DisconnectReason,
    },
    /// The worker will reconnect after `delay`.
    Reconnecting {
        /// The worker.
        worker: WorkerId,
        /// Attempts since the broker was last heard.
        attempt: u32,
        /// The backoff delay.
        delay: Duration,
    },
    /// A request was handed to the action.
    RequestStarted {
        /// The worker.
        worker: WorkerId,
        /// Body frames.
        frames: usize,
        /// Body bytes.
        bytes: usize,
    },
    /// A request was answered (or its answer could not be sent).
    RequestFinished {
        /// The worker.
        worker: WorkerId,
        /// From hand-off to answer.
        duration: Duration,
        /// How it ended.
        outcome: RequestOutcome,
    },
    /// The action panicked; the request got the panic reply.
    ActionPanicked {
        /// The worker.
        worker: WorkerId,
        /// The panic message, when it was a string.
        message: String,
        /// Body bytes of the request.
        request_bytes: usize,
    },
    /// A late result of a request answered by timeout was dropped.
    LateReplyDropped {
        /// The worker.
        worker: WorkerId,
    },
    /// No broker answered through [`UNREACHABLE_AFTER`](crate::UNREACHABLE_AFTER) connection
    /// attempts in a row (nothing heard on any of them: no broker listens, the network drops
    /// the traffic, or the context cannot connect). The worker goes on trying; this says so
    /// once per such stretch, until [`BrokerReachable`](Event::BrokerReachable).
    BrokerUnreachable {
        /// The worker.
        worker: WorkerId,
        /// Connection attempts in a row that heard nothing.
        attempts: u32,
        /// Since the first of those attempts.
        silent_for: Duration,
    },
    /// A broker answered again after [`BrokerUnreachable`](Event::BrokerUnreachable).
    BrokerReachable {
        /// The worker.
        worker: WorkerId,
        /// The endpoint of the broker that answered.
        broker: String,
    },
    /// A pool worker died (fatal error or panic outside the action) and was restarted.
    WorkerRestarted {
        /// The worker.
        worker: WorkerId,
        /// Restarts within the current window.
        restarts: u32,
        /// What killed it.
        error: String,
    },
    /// A pool worker died too often within the restart window and was not restarted.
    RestartLimitReached {
        /// The worker.
        worker: WorkerId,
        /// Restarts within the window.
        restarts: u32,
    },
    /// The worker finished its request, sent DISCONNECT and is paused until resumed.
    Drained {
        /// The worker.
        worker: WorkerId,
    },
    /// A drained worker re-registered.
    Resumed {
        /// The worker.
        worker: WorkerId,
    },
    /// A pool worker was replaced by a fresh one after its age or request count.
    Recycled {
        /// The worker that left.
        old: WorkerId,
        /// The worker that took over.
        new: WorkerId,
    },
    /// The worker stopped for good.
    Stopped {
        /// The worker.
        worker: WorkerId,
    },
}

/// The sending side of the event channel: never blocks; counts what it had to drop.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    sender: Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    pub(crate) fn emit(&self, event: Event) {
        match self.sender.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A bounded event channel: workers send without blocking, dropping (and counting) events
/// when nobody reads.
#[derive(Debug)]
pub struct Events {
    receiver: Receiver<Event>,
    sink: EventSink,
}

impl Events {
    /// A channel holding at most `capacity` unread events (at least 1).
    pub fn bounded(capacity: usize) -> Events {
        let (sender, receiver) = crossbeam_channel::bounded(capacity.max(1));
        Events {
            receiver,
            sink: EventSink {
                sender,
                dropped: Arc::new(AtomicU64::new(0)),
            },
        }
    }

    /// The receiving side; clone it freely.
    pub fn receiver(&self) -> Receiver<Event> {
        self.receiver.clone()
    }

    /// Events dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.sink.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn sink(&self) -> EventSink {
        self.sink.clone()
    }
}

#[cfg(test)]
thread_local! {
    /// Worker ids made on this thread, so that a test can tell that a call made none (tests
    /// run on parallel threads: the process-wide counter cannot tell).
    static IDS_MADE_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Worker ids made on the calling thread so far.
#[cfg(test)]
pub(crate) fn ids_made_here() -> u64 {
    IDS_MADE_HERE.with(std::cell::Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_blocking() {
        let events = Events::bounded(2);
        let sink = events.sink();
        let worker = WorkerId::next("svc");
        for _ in 0..5 {
            sink.emit(Event::Stopped {
                worker: worker.clone(),
            });
        }
        assert_eq!(events.dropped(), 3);
        assert_eq!(events.receiver().try_iter().count(), 2);
    }

    #[test]
    fn worker_ids_are_unique_and_print_service_and_number() {
        let a = WorkerId::next("echo");
        let b = WorkerId::next("echo");
        assert_ne!(a, b);
        assert_eq!(a.to_string(), format!("echo#{}", a.number));
    }

    #[test]
    fn each_identity_has_a_number_of_its_own_for_its_service() {
        let before = ids_made_here();
        let a = Identity::new("echo");
        let b = Identity::new("echo");
        assert_eq!(ids_made_here() - before, 2);
        assert_eq!(&*a.id.service, "echo");
        assert!(b.id.number > a.id.number, "{} then {}", a.id, b.id);
    }
}
