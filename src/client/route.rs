//! Which broker a client asks next, and when a request gives up: a pure state machine, with
//! no socket and no clock. The drivers ([`Client`](super::Client) and `AsyncClient`) carry out
//! each [`Step`], wait, and report how it ended.
//!
//! ```text
//!   start --> LookUp(b) --no worker at b----------------------+
//!      |         |  workers / cannot tell / no answer          |
//!      |         v                                             v
//!      +-----> Send(b) --no reply, or no connection--> next broker (b+1, cyclic)
//!                |                                      |            |
//!              reply (the driver returns it)      LookUp or Send   none left, or
//!                                                                  attempts used: Fail
//! ```
//!
//! A lookup is the 8/MMI `mmi.service` question. It is asked before the first request for a
//! service on a broker (so a request for a service nobody serves is never sent, and never
//! left queued in the broker for a client long gone) and again after an attempt got no reply.
//! A broker that does not answer it (no 8/MMI) is not asked again by this client.

use std::collections::HashSet;

use super::ClientError;

/// Services remembered as served, per broker; the set is emptied when full (it only saves a
/// lookup).
const MAX_KNOWN: usize = 1024;

/// Whether a broker answers `mmi.service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mmi {
    Unknown,
    Answers,
    /// No answer in time, or an answer that is not 200/404: not asked again.
    Silent,
}

/// What a client has learnt about its brokers, across its requests.
#[derive(Debug)]
pub(crate) struct Routes {
    brokers: Vec<String>,
    /// Where the next request starts: the broker that last did not miss.
    current: usize,
    lookups: bool,
    mmi: Vec<Mmi>,
    known: Vec<HashSet<String>>,
}

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Ask broker number `broker` whether the service has workers.
    LookUp { broker: usize },
    /// Send the request to broker number `broker`.
    Send { broker: usize },
    /// Give up with this error.
    Fail(ClientError),
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No connection came up within the timeout: nothing was sent.
    NotConnected,
    /// Sent, but no answer in time.
    NoReply,
    /// `200`: the service has workers.
    Workers,
    /// `404` (or the JeroMQ broker's `400`): it has none.
    NoWorkers,
    /// Any other answer (`501`, a status word): this broker cannot tell.
    CannotTell,
}

/// How an attempt that sent the request ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// No connection came up within the timeout: nothing was sent.
    NotConnected,
    /// Sent, but no reply in time.
    NoReply,
}

/// What one request learnt about one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Open,
    NoConnection,
    NoWorker,
}

/// One request's way through the brokers.
#[derive(Debug)]
pub(crate) struct Attempt {
    service: String,
    broker: usize,
    /// Attempts made: requests sent, and waits for a connection that never came up.
    made: u32,
    max: u32,
    /// Whether a connection came up on any attempt or lookup.
    connected: bool,
    verdicts: Vec<Verdict>,
}

impl Routes {
    /// Routes over `brokers` (at least one), asking `mmi.service` when `lookups` is on.
    pub(crate) fn new(brokers: Vec<String>, lookups: bool) -> Routes {
        let n = brokers.len();
        Routes {
            brokers,
            current: 0,
            lookups,
            mmi: vec![Mmi::Unknown; n],
            known: vec![HashSet::new(); n],
        }
    }

    /// The endpoint of broker number `broker`.
    pub(crate) fn endpoint(&self, broker: usize) -> &str {
        self.brokers.get(broker).map_or("", String::as_str)
    }

    /// A new request for `service`, allowed `attempts` attempts, and its first step.
    pub(crate) fn start(&mut self, service: &str, attempts: u32) -> (Attempt, Step) {
        let attempt = Attempt {
            service: service.to_string(),
            broker: self.current,
            made: 0,
            max: attempts,
            connected: false,
            verdicts: vec![Verdict::Open; self.brokers.len()],
        };
        let step = self.first_step(&attempt);
        (attempt, step)
    }

    /// The step after a lookup ended as `lookup`.
    pub(crate) fn handle_lookup(&mut self, a: &mut Attempt, lookup: Lookup) -> Step {
        let b = a.broker;
        a.connected |= lookup != Lookup::NotConnected;
        match lookup {
            Lookup::NotConnected => {
                a.made += 1;
                a.verdicts[b] = Verdict::NoConnection;
                self.next(a)
            }
            Lookup::NoReply | Lookup::CannotTell => {
                self.mmi[b] = Mmi::Silent;
                Step::Send { broker: b }
            }
            Lookup::Workers => {
                self.mmi[b] = Mmi::Answers;
                self.remember(b, &a.service);
                Step::Send { broker: b }
            }
            Lookup::NoWorkers => {
                self.mmi[b] = Mmi::Answers;
                a.verdicts[b] = Verdict::NoWorker;
                self.next(a)
            }
        }
    }

    /// The step after a sent attempt ended without a reply.
    pub(crate) fn handle_miss(&mut self, a: &mut Attempt, miss: Miss) -> Step {
        let b = a.broker;
        a.made += 1;
        match miss {
            Miss::NotConnected => a.verdicts[b] = Verdict::NoConnection,
            Miss::NoReply => {
                a.connected = true;
                // Served once, maybe not now: ask again before sending there again.
                self.known[b].remove(&a.service);
            }
        }
        self.next(a)
    }

    /// Rotates the client away from the broker that missed, then picks the request's next
    /// broker: the first after it that this request has not ruled out.
    fn next(&mut self, a: &mut Attempt) -> Step {
        let n = self.brokers.len();
        let b = a.broker;
        if self.current == b {
            self.current = (b + 1) % n;
        }
        if a.made >= a.max {
            return Step::Fail(a.failure(&self.brokers));
        }
        let open = (1..=n)
            .map(|i| (b + i) % n)
            .find(|&j| a.verdicts[j] == Verdict::Open);
        match open {
            Some(j) => {
                a.broker = j;
                self.first_step(a)
            }
            None => Step::Fail(a.failure(&self.brokers)),
        }
    }

    fn first_step(&self, a: &Attempt) -> Step {
        let broker = a.broker;
        if self.should_look_up(broker, &a.service) {
            Step::LookUp { broker }
        } else {
            Step::Send { broker }
        }
    }

    /// `mmi.` services are the broker's own: never looked up.
    fn should_look_up(&self, broker: usize, service: &str) -> bool {
        self.lookups
            && !service.starts_with("mmi.")
            && self.mmi[broker] != Mmi::Silent
            && !self.known[broker].contains(service)
    }

    fn remember(&mut self, broker: usize, service: &str) {
        let known = &mut self.known[broker];
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert(service.to_string());
    }
}

impl Attempt {
    /// Why the request gives up: no connection ever came up, no broker has a worker for the
    /// service, or no reply came.
    fn failure(&self, brokers: &[String]) -> ClientError {
        if !self.connected {
            let endpoints = brokers
                .iter()
                .zip(&self.verdicts)
                .filter(|(_, v)| **v == Verdict::NoConnection)
                .map(|(endpoint, _)| endpoint.clone())
                .collect();
            return ClientError::Unreachable { endpoints };
        }
        let ruled_out = self.verdicts.iter().all(|v| *v != Verdict::Open);
        if ruled_out && self.verdicts.contains(&Verdict::NoWorker) {
            return ClientError::NoWorker {
                service: self.service.clone(),
            };
        }
        ClientError::Timeout {
            service: self.service.clone(),
            attempts: self.made,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(n: usize) -> Routes {
        let brokers = (1..=n).map(|i| format!("tcp://b{i}:1")).collect();
        Routes::new(brokers, true)
    }

    fn is_send(step: &Step, broker: usize) -> bool {
        matches!(step, Step::Send { broker: b } if *b == broker)
    }

    fn is_look_up(step: &Step, broker: usize) -> bool {
        matches!(step, Step::LookUp { broker: b } if *b == broker)
    }

    #[test]
    fn a_service_is_looked_up_once_then_sent_to_directly() {
        let mut r = routes(1);
        let (mut a, step) = r.start("echo", 4);
        assert!(is_look_up(&step, 0));
        assert!(is_send(&r.handle_lookup(&mut a, Lookup::Workers), 0));
        let (_, step) = r.start("echo", 4);
        assert!(is_send(&step, 0), "{step:?}");
        let (_, step) = r.start("other", 4);
        assert!(is_look_up(&step, 0), "{step:?}");
    }

    #[test]
    fn no_worker_on_the_only_broker_fails_before_anything_is_sent() {
        let mut r = routes(1);
        let (mut a, _) = r.start("nosuch", 4);
        match r.handle_lookup(&mut a, Lookup::NoWorkers) {
            Step::Fail(ClientError::NoWorker { service }) => assert_eq!(service, "nosuch"),
            other => panic!("expected NoWorker, got {other:?}"),
        }
    }

    #[test]
    fn a_timed_out_attempt_looks_up_again_and_stops_at_no_worker() {
        let mut r = routes(1);
        let (mut a, _) = r.start("echo", 4);
        r.handle_lookup(&mut a, Lookup::Workers);
        let step = r.handle_miss(&mut a, Miss::NoReply);
        assert!(is_look_up(&step, 0), "{step:?}");
        let step = r.handle_lookup(&mut a, Lookup::NoWorkers);
        assert!(
            matches!(step, Step::Fail(ClientError::NoWorker { .. })),
            "{step:?}"
        );
    }

    #[test]
    fn a_busy_service_is_retried_until_the_attempts_are_used() {
        let mut r = routes(1);
        let (mut a, _) = r.start("slow", 3);
        let mut sent = 0;
        let mut step = r.handle_lookup(&mut a, Lookup::Workers);
        loop {
            step = match step {
                Step::Send { .. } => {
                    sent += 1;
                    r.handle_miss(&mut a, Miss::NoReply)
                }
                Step::LookUp { .. } => r.handle_lookup(&mut a, Lookup::Workers),
                Step::Fail(error) => {
                    assert!(matches!(error, ClientError::Timeout { attempts: 3, .. }));
                    break;
                }
            }
        }
        assert_eq!(sent, 3);
    }

    #[test]
    fn nothing_connecting_anywhere_is_unreachable_naming_every_endpoint() {
        let mut r = routes(2);
        let (mut a, _) = r.start("echo", 4);
        let step = r.handle_lookup(&mut a, Lookup::NotConnected);
        assert!(is_look_up(&step, 1), "{step:?}");
        match r.handle_lookup(&mut a, Lookup::NotConnected) {
            Step::Fail(ClientError::Unreachable { endpoints }) => {
                assert_eq!(endpoints, ["tcp://b1:1", "tcp://b2:1"]);
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[test]
    fn one_attempt_without_connection_is_unreachable_when_it_was_the_last() {
        let mut r = Routes::new(vec!["tcp://a:1".into()], false);
        let (mut a, step) = r.start("echo", 1);
        assert!(is_send(&step, 0));
        let step = r.handle_miss(&mut a, Miss::NotConnected);
        assert!(matches!(step, Step::Fail(ClientError::Unreachable { .. })));
    }

    #[test]
    fn a_timeout_rotates_the_client_to_the_next_broker_for_later_requests() {
        let mut r = Routes::new(vec!["tcp://a:1".into(), "tcp://b:1".into()], false);
        let (mut a, step) = r.start("echo", 4);
        assert!(is_send(&step, 0));
        assert!(is_send(&r.handle_miss(&mut a, Miss::NoReply), 1));
        let (_, step) = r.start("echo", 4);
        assert!(is_send(&step, 1), "{step:?}");
        // A request still at the old broker that misses does not rotate the client back.
        let mut old = Attempt {
            broker: 0,
            ..r.start("echo", 4).0
        };
        r.handle_miss(&mut old, Miss::NoReply);
        assert_eq!(r.current, 1);
    }

    #[test]
    fn a_broker_without_a_worker_sends_the_request_to_the_next_one() {
        let mut r = routes(2);
        let (mut a, _) = r.start("echo", 4);
        let step = r.handle_lookup(&mut a, Lookup::NoWorkers);
        assert!(is_look_up(&step, 1), "{step:?}");
        assert!(is_send(&r.handle_lookup(&mut a, Lookup::Workers), 1));
    }

    #[test]
    fn a_broker_that_does_not_answer_lookups_is_not_asked_again() {
        for answer in [Lookup::NoReply, Lookup::CannotTell] {
            let mut r = routes(1);
            let (mut a, _) = r.start("echo", 4);
            assert!(is_send(&r.handle_lookup(&mut a, answer), 0));
            let step = r.handle_miss(&mut a, Miss::NoReply);
            assert!(is_send(&step, 0), "{answer:?}: {step:?}");
            let (_, step) = r.start("other", 4);
            assert!(is_send(&step, 0), "{answer:?}: {step:?}");
        }
    }

    #[test]
    fn the_brokers_own_services_are_never_looked_up() {
        let mut r = routes(1);
        assert!(is_send(&r.start("mmi.service", 1).1, 0));
    }

    #[test]
    fn no_worker_here_and_no_connection_there_is_no_worker() {
        let mut r = routes(2);
        let (mut a, _) = r.start("echo", 4);
        r.handle_lookup(&mut a, Lookup::NoWorkers);
        let step = r.handle_lookup(&mut a, Lookup::NotConnected);
        assert!(
            matches!(step, Step::Fail(ClientError::NoWorker { .. })),
            "{step:?}"
        );
    }

    #[test]
    fn the_known_set_is_bounded() {
        let mut r = routes(1);
        for i in 0..MAX_KNOWN * 2 {
            r.remember(0, &format!("s{i}"));
        }
        assert!(r.known[0].len() <= MAX_KNOWN);
    }
}
