//! Clients that send without a pause and check every reply against its request.
//!
//! Each request carries its client number and sequence number in its first frame, then a body
//! derived from them (varying length, sometimes an empty frame). The echo service must send
//! the very same frames back. A `Client` keeps its socket until a timeout, so a duplicated or
//! late reply would be read as the answer to the client's *next* request: it is caught there
//! (an earlier sequence number of the same client = duplicated; anything else = wrong).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use majordomo_worker::client::{Client, ClientConfig, ClientError};

/// Each attempt waits this long; a request lost with a restarted broker or a killed worker
/// is sent again on a new socket.
const TIMEOUT: Duration = Duration::from_millis(1000);
const RETRIES: u32 = 2;

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub ok: u64,
    pub timeouts: u64,
    pub wrong: u64,
    pub duplicated: u64,
    pub errors: u64,
    pub latency_median: Duration,
    pub latency_max: Duration,
    /// The first few problems, for the failure message.
    pub problems: Vec<String>,
}

/// Running clients.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(Tally, Vec<Duration>)>>,
}

impl Load {
    pub fn start(endpoint: &str, service: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|index| {
                let (endpoint, service) = (endpoint.to_string(), service.to_string());
                let stop = Arc::clone(&stop);
                thread::spawn(move || run_client(index as u64, &endpoint, &service, &stop))
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops sending, waits for the requests in flight, and adds up.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        let mut latencies = Vec::new();
        for thread in self.threads {
            let (tally, mut lat) = thread.join().expect("client thread");
            total.sent += tally.sent;
            total.ok += tally.ok;
            total.timeouts += tally.timeouts;
            total.wrong += tally.wrong;
            total.duplicated += tally.duplicated;
            total.errors += tally.errors;
            total.problems.extend(tally.problems);
            latencies.append(&mut lat);
        }
        latencies.sort();
        total.latency_median = latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default();
        total.latency_max = latencies.last().copied().unwrap_or_default();
        total.problems.truncate(10);
        total
    }
}

fn run_client(
    index: u64,
    endpoint: &str,
    service: &str,
    stop: &AtomicBool,
) -> (Tally, Vec<Duration>) {
    let config = ClientConfig::new(endpoint)
        .timeout(TIMEOUT)
        .retries(RETRIES);
    let mut client = Client::connect(config).expect("client");
    let mut tally = Tally::default();
    // A sample of every 16th latency: enough for a median, small even in a long soak.
    let mut latencies = Vec::new();
    let mut timed_out = HashSet::new();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let request = body(index, seq);
        let sent = Instant::now();
        tally.sent += 1;
        match client.request(service, &request) {
            Ok(reply) if reply == request => tally.ok += 1,
            Ok(reply) => judge(index, seq, &reply, &timed_out, &mut tally),
            Err(ClientError::Timeout { .. }) => {
                tally.timeouts += 1;
                timed_out.insert(seq);
            }
            Err(error) => {
                tally.errors += 1;
                tally
                    .problems
                    .push(format!("client {index} request {seq}: {error}"));
            }
        }
        if seq % 16 == 0 {
            latencies.push(sent.elapsed());
        }
    }
    (tally, latencies)
}

/// A reply that is not the request's own: a duplicate of an earlier answered request of this
/// client, or wrong (another client's, a timed-out one's, or damaged frames).
fn judge(index: u64, seq: u64, reply: &[Vec<u8>], timed_out: &HashSet<u64>, tally: &mut Tally) {
    let earlier = parse_id(reply).filter(|&(c, s)| {
        c == index && s < seq && !timed_out.contains(&s) && reply == body(c, s).as_slice()
    });
    if earlier.is_some() {
        tally.duplicated += 1;
    } else {
        tally.wrong += 1;
    }
    tally.problems.push(format!(
        "client {index} request {seq}: got {:?}",
        reply
            .iter()
            .map(|f| String::from_utf8_lossy(f))
            .collect::<Vec<_>>()
    ));
}

/// The frames of request `seq` of client `index`.
pub fn body(index: u64, seq: u64) -> Vec<Vec<u8>> {
    let id = format!("{index}:{seq}").into_bytes();
    let len = ((seq * 7 + index * 13) % 97) as usize;
    let payload = (0..len)
        .map(|i| (seq as usize + i * 31) as u8 ^ index as u8)
        .collect();
    if seq % 5 == 0 {
        vec![id, Vec::new(), payload]
    } else {
        vec![id, payload]
    }
}

fn parse_id(reply: &[Vec<u8>]) -> Option<(u64, u64)> {
    let id = std::str::from_utf8(reply.first()?).ok()?;
    let (client, seq) = id.split_once(':')?;
    Some((client.parse().ok()?, seq.parse().ok()?))
}
