//! The clients of `mdp bench`: `clients × in_flight` lanes, each taking the next request id
//! until none is left, sending its body and checking the reply.
//!
//! Each client is an [`AsyncClient`] with `retries(0)`: the lane retries by itself after a
//! timeout, so it can count retries (the client then opens a new socket, as its own retries
//! would: a late reply to the first attempt goes to a closed socket and is dropped).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use majordomo_worker::client::{ClientConfig, ClientError};
use majordomo_worker::AsyncClient;
use tokio::task::JoinSet;

use super::args::{Args, ID_DIGITS};
use crate::error::CliError;

/// Highest latency the histogram tells apart, in microseconds (an hour); longer ones count
/// as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What to send, and where.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) endpoint: String,
    pub(super) service: String,
    pub(super) requests: u64,
    pub(super) size: usize,
    pub(super) clients: usize,
    pub(super) in_flight: usize,
    pub(super) timeout: Duration,
    pub(super) retries: u32,
}

impl Plan {
    pub(super) fn new(args: &Args, endpoint: &str) -> Plan {
        Plan {
            endpoint: endpoint.to_string(),
            service: args.service.clone(),
            requests: args.requests,
            size: args.size as usize,
            clients: args.clients as usize,
            in_flight: args.in_flight as usize,
            timeout: args.timeout,
            retries: args.retries,
        }
    }
}

/// Counters the lanes share. Every field only grows.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Attempts sent, retries included.
    pub(super) sent: AtomicU64,
    /// Replies received, correct or not.
    pub(super) replies: AtomicU64,
    /// Replies that were the exact echo of their request.
    pub(super) correct: AtomicU64,
    /// Attempts that timed out and were sent again.
    pub(super) retried: AtomicU64,
    /// Requests that timed out on every attempt.
    pub(super) timeouts: AtomicU64,
    /// Replies that were not the exact echo of their request.
    pub(super) wrong_replies: AtomicU64,
    /// Requests that failed otherwise (a socket error).
    pub(super) other_errors: AtomicU64,
}

/// The load: the plan, the next id, and what came back.
#[derive(Debug)]
pub(super) struct Load {
    pub(super) plan: Plan,
    next_id: AtomicU64,
    done: AtomicU64,
    pub(super) counters: Counters,
    /// Correct replies per id: 0 is lost, more than 1 duplicated.
    seen: Vec<AtomicU32>,
    /// Set when a request timed out on every attempt before any reply came: the broker is not
    /// there or the service has no worker, and the lanes stop instead of waiting out every id.
    given_up: AtomicBool,
    /// Why the lanes stopped, when the client could tell: no worker for the service, or no
    /// connection to the broker. Nothing more is sent then, so nothing is left queued.
    stopped: OnceLock<Stop>,
}

/// What made the load stop before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// The broker said that no worker serves the service.
    NoWorker(String),
    /// No connection to the broker came up.
    Unreachable(String),
}

impl Load {
    pub(super) fn new(plan: Plan) -> Load {
        Load {
            seen: (0..plan.requests).map(|_| AtomicU32::new(0)).collect(),
            plan,
            next_id: AtomicU64::new(0),
            done: AtomicU64::new(0),
            counters: Counters::default(),
            given_up: AtomicBool::new(false),
            stopped: OnceLock::new(),
        }
    }

    /// Whether the load stopped early because nothing ever answered.
    pub(super) fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Relaxed)
    }

    /// Why the load stopped early, when the client said why.
    pub(super) fn stopped(&self) -> Option<&Stop> {
        self.stopped.get()
    }

    /// Stops every lane: no more requests are sent.
    fn stop(&self, why: Stop) {
        let _ = self.stopped.set(why);
        self.given_up.store(true, Ordering::Relaxed);
    }

    pub(super) fn requests(&self) -> u64 {
        self.plan.requests
    }

    /// Requests finished: answered, or given up on.
    pub(super) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Runs every lane to the end; the latencies of all replies, in microseconds.
    pub(super) async fn run(self: Arc<Self>) -> Result<Histogram<u64>, CliError> {
        let config = ClientConfig::new(&self.plan.endpoint)
            .timeout(self.plan.timeout)
            .retries(0)
            .max_in_flight(self.plan.in_flight);
        let mut lanes = JoinSet::new();
        for _ in 0..self.plan.clients {
            let client = AsyncClient::connect(config.clone()).map_err(|e| match e {
                ClientError::Config(e) => CliError::Usage(e.to_string()),
                other => CliError::Failed(format!("client: {other}")),
            })?;
            for _ in 0..self.plan.in_flight {
                lanes.spawn(Arc::clone(&self).lane(client.clone()));
            }
        }
        let mut latencies = new_histogram();
        while let Some(lane) = lanes.join_next().await {
            let lane = lane.map_err(|e| CliError::Failed(format!("a client task: {e}")))?;
            latencies
                .add(lane)
                .map_err(|e| CliError::Failed(format!("latency histogram: {e}")))?;
        }
        Ok(latencies)
    }

    /// Lost ids (no correct reply) and extra correct replies, over every id.
    pub(super) fn tally(&self) -> (u64, u64) {
        let (mut lost, mut duplicated) = (0, 0);
        for seen in &self.seen {
            match seen.load(Ordering::Relaxed) {
                0 => lost += 1,
                n => duplicated += u64::from(n - 1),
            }
        }
        (lost, duplicated)
    }

    /// One request in flight at a time, until no id is left.
    async fn lane(self: Arc<Self>, client: AsyncClient) -> Histogram<u64> {
        let mut latencies = new_histogram();
        while let Some(id) = self.take_id() {
            let body = make_body(id, self.plan.size);
            let started = Instant::now();
            if let Some(reply) = self.request(&client, &body).await {
                let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(took.max(1));
                self.check(id, &body, &reply);
            }
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        latencies
    }

    fn take_id(&self) -> Option<u64> {
        if self.given_up() {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        (id < self.plan.requests).then_some(id)
    }

    /// Sends `body`, and again after each timeout, up to `retries` times; the reply, if any.
    async fn request(&self, client: &AsyncClient, body: &[u8]) -> Option<Vec<Vec<u8>>> {
        let c = &self.counters;
        for attempt in 0..=self.plan.retries {
            c.sent.fetch_add(1, Ordering::Relaxed);
            match client.request(&self.plan.service, &[body]).await {
                Ok(reply) => {
                    c.replies.fetch_add(1, Ordering::Relaxed);
                    return Some(reply);
                }
                Err(ClientError::Timeout { .. }) if attempt < self.plan.retries => {
                    c.retried.fetch_add(1, Ordering::Relaxed);
                }
                Err(ClientError::Timeout { .. }) => {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                    if c.replies.load(Ordering::Relaxed) == 0 {
                        self.given_up.store(true, Ordering::Relaxed);
                    }
                }
                // Before any reply: the broker (list) is down, or nobody serves the service,
                // and the load stops. After one, a broker of the list went away mid-load: the
                // request goes on to the next, as after a timeout.
                Err(error @ (ClientError::NoWorker { .. } | ClientError::Unreachable { .. }))
                    if c.replies.load(Ordering::Relaxed) == 0 =>
                {
                    c.other_errors.fetch_add(1, Ordering::Relaxed);
                    self.stop(match error {
                        ClientError::NoWorker { .. } => Stop::NoWorker(error.to_string()),
                        _ => Stop::Unreachable(error.to_string()),
                    });
                    return None;
                }
                Err(ClientError::NoWorker { .. } | ClientError::Unreachable { .. })
                    if attempt < self.plan.retries =>
                {
                    c.retried.fetch_add(1, Ordering::Relaxed);
                }
                Err(ClientError::NoWorker { .. } | ClientError::Unreachable { .. }) => {
                    c.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                Err(ClientError::Protocol(_) | ClientError::WrongService { .. }) => {
                    c.replies.fetch_add(1, Ordering::Relaxed);
                    c.wrong_replies.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, "request failed");
                    c.other_errors.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        None
    }

    /// Counts a reply: correct only if it is the exact echo of its request. A reply that is
    /// the exact echo of another request counts for that one too, so that a reply delivered
    /// twice shows as duplicated, not only as a wrong reply.
    fn check(&self, id: u64, body: &[u8], reply: &[Vec<u8>]) {
        if let [frame] = reply {
            if frame == body {
                self.counters.correct.fetch_add(1, Ordering::Relaxed);
                self.seen[id as usize].fetch_add(1, Ordering::Relaxed);
                return;
            }
            let other = parse_id(frame).filter(|other| *other < self.plan.requests);
            if let Some(other) = other.filter(|other| *frame == make_body(*other, frame.len())) {
                self.seen[other as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.wrong_replies.fetch_add(1, Ordering::Relaxed);
    }
}

fn new_histogram() -> Histogram<u64> {
    // Three significant digits from 1 µs to an hour: a few hundred KiB per lane at most.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The request body: the id in decimal, then filler that depends on the id.
pub(super) fn make_body(id: u64, len: usize) -> Vec<u8> {
    let mut body = format!("{id:0width$}", width = ID_DIGITS).into_bytes();
    let filler = len.saturating_sub(body.len()) as u64;
    body.extend((0..filler).map(|i| b'a' + ((id + i) % 26) as u8));
    body
}

fn parse_id(frame: &[u8]) -> Option<u64> {
    std::str::from_utf8(frame.get(..ID_DIGITS)?)
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_and_carry_their_id() {
        let a = make_body(7, 32);
        let b = make_body(8, 32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_eq!(&a[..ID_DIGITS], b"000000000007");
        assert_eq!(parse_id(&a), Some(7));
        assert_eq!(make_body(7, 4).len(), ID_DIGITS);
    }

    fn load(requests: u64) -> Load {
        Load::new(Plan {
            endpoint: "tcp://127.0.0.1:1".into(),
            service: "echo".into(),
            requests,
            size: 20,
            clients: 1,
            in_flight: 1,
            timeout: Duration::from_secs(1),
            retries: 0,
        })
    }

    #[test]
    fn an_echo_of_another_request_counts_as_a_wrong_reply_and_as_that_ones_duplicate() {
        let load = load(3);
        load.check(0, &make_body(0, 20), &[make_body(0, 20)]);
        load.check(1, &make_body(1, 20), &[make_body(0, 20)]);
        load.check(2, &make_body(2, 20), &[b"garbage".to_vec()]);
        assert_eq!(load.counters.correct.load(Ordering::Relaxed), 1);
        assert_eq!(load.counters.wrong_replies.load(Ordering::Relaxed), 2);
        // Ids 1 and 2 got no correct reply; id 0 got two.
        assert_eq!(load.tally(), (2, 1));
    }
}
