//! Not an API: the broker's state machine as the fuzz targets in `fuzz/` drive it.
//! Compiled only with the `fuzzing` feature, and free to change without notice.

use std::time::{Duration, Instant};

use super::state::{BrokerState, Settings};
use super::stats::BrokerStats;

/// The broker's pure state machine with a simulated clock: 100 ms heartbeats, liveness 3,
/// queues of 2 requests, 8 requests queued and 4 services at most, requests dropped after
/// 250 ms in a queue, the request of a worker lost while busy queued again once.
#[derive(Debug)]
pub struct BrokerMachine {
    state: BrokerState,
    now: Instant,
}

impl Default for BrokerMachine {
    fn default() -> Self {
        BrokerMachine::new()
    }
}

impl BrokerMachine {
    /// A broker with no workers, at time zero.
    pub fn new() -> BrokerMachine {
        let now = Instant::now();
        let heartbeat = Duration::from_millis(100);
        let settings = Settings {
            heartbeat,
            expiry: heartbeat * 3,
            max_queue: 2,
            max_queued_total: 8,
            max_services: 4,
            max_queue_age: Some(Duration::from_millis(250)),
            requeue_on_worker_loss: 1,
        };
        BrokerMachine {
            state: BrokerState::new(settings, now),
            now,
        }
    }

    /// Handles one message as a ROUTER delivers it: sender identity, then the frames.
    pub fn handle_message(&mut self, frames: Vec<Vec<u8>>) {
        self.state.handle_message(self.now, frames);
    }

    /// Lets `ms` milliseconds pass and runs the timers.
    pub fn advance_ms(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.state.handle_timeout(self.now);
    }

    /// The next message the broker sends, identity first.
    pub fn poll_send(&mut self) -> Option<Vec<Vec<u8>>> {
        self.state.poll_send()
    }

    /// The counters so far.
    pub fn stats(&self) -> BrokerStats {
        self.state.stats()
    }
}
