//! The lab of `mdp check broker`: what every check works with. A context, the endpoint, the
//! waits, fresh service names and identities, workers that register and clients that ask, and
//! the small steps the checks share (an exchange, an echo, a probe). The checks
//! (`broker_checks.rs`, `broker_risky.rs`) use it; the runner (`broker.rs`) builds it and runs
//! them in order.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use majordomo_worker::protocol::WorkerMessage;

use super::peer::{client_frames, decode_client, decode_worker, worker_frames, Frame, Peer};
use super::report::{Check, Observed, Transcript};
use crate::error::CliError;

/// One check: it works in the lab, notes what it observes, and says how it ended.
pub(super) type CheckFn = fn(&Lab, &mut Observed) -> Result<Check, CliError>;

/// How long a service name's worker sockets wait after READY before a client uses the service:
/// the READY travels on another connection than the request, and a broker that does not queue
/// requests for unknown services (wdl83) would refuse a request that overtook it.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a busy worker stays silent with `--long`.
pub(super) const LONG_SILENCE: Duration = Duration::from_secs(15);

/// The run's shared state: the context, the endpoint, the waits, and name counters.
pub(super) struct Lab {
    context: zmq::Context,
    pub(super) endpoint: String,
    start: Instant,
    /// Wait for a message that must come.
    pub(super) wait: Duration,
    /// Window in which a message must not come (or may come at once).
    pub(super) quiet: Duration,
    /// The broker's heartbeat, as the user told us.
    pub(super) heartbeat: Duration,
    /// What the run's service names start with.
    pub(super) prefix: String,
    names: Cell<u32>,
    /// Every worker registered, to DISCONNECT at the end.
    workers: RefCell<Vec<Rc<Peer>>>,
}

impl Lab {
    /// A lab for the broker at `endpoint`, with a wait for messages that must come and the
    /// broker's heartbeat as the user told it.
    pub(super) fn new(endpoint: &str, wait: Duration, heartbeat: Duration) -> Lab {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() % 0x1_0000);
        Lab {
            context: zmq::Context::new(),
            endpoint: endpoint.to_owned(),
            start: Instant::now(),
            wait,
            quiet: (wait / 3).min(Duration::from_millis(500)),
            heartbeat,
            prefix: format!("mdp-check-{}-{nanos:x}", std::process::id()),
            names: Cell::new(0),
            workers: RefCell::new(Vec::new()),
        }
    }

    /// Every worker registered so far; the lab forgets them.
    pub(super) fn take_workers(&self) -> Vec<Rc<Peer>> {
        self.workers.take()
    }

    /// Whether the broker still serves: a fresh worker registers, a client's request reaches
    /// it and the worker's REPLY reaches the client.
    pub(super) fn probe(&self, t: &mut Transcript) -> Result<bool, CliError> {
        let service = self.service();
        let worker = self.worker(t, &service)?;
        let (client, _) = self.client()?;
        let exchange = self.exchange(t, &worker, &client, &service, &[b"mdp-check probe"])?;
        Ok(exchange.reply.is_some())
    }

    /// A new transcript for one check.
    pub(super) fn transcript(&self) -> Transcript {
        Transcript::new(self.start)
    }

    fn next_number(&self) -> u32 {
        let n = self.names.get() + 1;
        self.names.set(n);
        n
    }

    /// A service name no other traffic uses.
    pub(super) fn service(&self) -> Frame {
        format!("{}-{}", self.prefix, self.next_number()).into_bytes()
    }

    /// A DEALER with an identity the broker never saw.
    pub(super) fn dealer(&self, role: &str) -> Result<Peer, CliError> {
        let name = format!("{role}-{}", self.next_number());
        Peer::connect(&self.context, zmq::DEALER, &self.endpoint, name, None)
    }

    /// A DEALER worker that sent READY for `service` and waited [`SETTLE`]; kept until the
    /// end of the run, to DISCONNECT then.
    pub(super) fn worker(&self, t: &mut Transcript, service: &[u8]) -> Result<Rc<Peer>, CliError> {
        let worker = Rc::new(self.dealer("worker")?);
        let ready = WorkerMessage::Ready {
            service: service.to_vec(),
        };
        worker.send(t, &worker_frames(ready))?;
        self.workers.borrow_mut().push(Rc::clone(&worker));
        std::thread::sleep(SETTLE);
        Ok(worker)
    }

    /// A new worker for `service` answers the requests still queued for it (at most `count`,
    /// each within [`quiet`](Self::quiet)), so that the run leaves none behind.
    pub(super) fn serve_leftovers(
        &self,
        t: &mut Transcript,
        service: &[u8],
        count: usize,
    ) -> Result<usize, CliError> {
        let worker = self.worker(t, service)?;
        let mut served = 0;
        while served < count {
            let Some((envelope, body)) = self.take_request(t, &worker, self.quiet)? else {
                break;
            };
            worker.send(t, &worker_frames(WorkerMessage::Reply { envelope, body }))?;
            served += 1;
        }
        Ok(served)
    }

    /// A DEALER client with a known identity, which a REQUEST's envelope should carry.
    pub(super) fn client(&self) -> Result<(Peer, Frame), CliError> {
        let n = self.next_number();
        let identity = format!("{}-c{n}", self.prefix).into_bytes();
        let name = format!("client-{n}");
        let peer = Peer::connect(
            &self.context,
            zmq::DEALER,
            &self.endpoint,
            name,
            Some(&identity),
        )?;
        Ok((peer, identity))
    }

    /// A REQ client with a known identity.
    pub(super) fn req_client(&self) -> Result<(Peer, Frame), CliError> {
        let n = self.next_number();
        let identity = format!("{}-r{n}", self.prefix).into_bytes();
        let name = format!("req-{n}");
        let peer = Peer::connect(
            &self.context,
            zmq::REQ,
            &self.endpoint,
            name,
            Some(&identity),
        )?;
        Ok((peer, identity))
    }

    /// The client sends `body` to `service`; the worker takes the REQUEST and echoes it.
    pub(super) fn exchange(
        &self,
        t: &mut Transcript,
        worker: &Peer,
        client: &Peer,
        service: &[u8],
        body: &[&[u8]],
    ) -> Result<Exchange, CliError> {
        client.send(t, &client_frames(service, body))?;
        let Some((envelope, body)) = self.take_request(t, worker, self.wait)? else {
            return Ok(Exchange::default());
        };
        let reply = self.echo(t, worker, client, envelope.clone(), body.clone())?;
        Ok(Exchange {
            request: Some((envelope, body)),
            reply,
        })
    }

    /// The worker's next REQUEST within `wait` (HEARTBEATs are skipped): envelope and body.
    pub(super) fn take_request(
        &self,
        t: &mut Transcript,
        worker: &Peer,
        wait: Duration,
    ) -> Result<Option<Request>, CliError> {
        let is_request =
            |f: &[Frame]| matches!(decode_worker(f), Some(WorkerMessage::Request { .. }));
        Ok(
            match worker
                .recv_until(t, wait, is_request)?
                .and_then(|f| decode_worker(&f))
            {
                Some(WorkerMessage::Request { envelope, body }) => Some((envelope, body)),
                _ => None,
            },
        )
    }

    /// The worker sends `body` back to `envelope`; returns the reply's body at `client`.
    pub(super) fn echo(
        &self,
        t: &mut Transcript,
        worker: &Peer,
        client: &Peer,
        envelope: Vec<Frame>,
        body: Vec<Frame>,
    ) -> Result<Option<Vec<Frame>>, CliError> {
        worker.send(t, &worker_frames(WorkerMessage::Reply { envelope, body }))?;
        self.client_reply(t, client, self.wait)
    }

    /// The body of the next client reply within `wait`, if a well-formed one comes.
    pub(super) fn client_reply(
        &self,
        t: &mut Transcript,
        client: &Peer,
        wait: Duration,
    ) -> Result<Option<Vec<Frame>>, CliError> {
        Ok(client
            .recv(t, wait)?
            .and_then(|f| decode_client(&f))
            .map(|m| m.body))
    }
}

/// A REQUEST as a worker received it: envelope and body.
pub(super) type Request = (Vec<Frame>, Vec<Frame>);

/// One request through the broker and its echo.
#[derive(Debug, Default)]
pub(super) struct Exchange {
    /// The REQUEST the worker received: envelope and body.
    pub request: Option<Request>,
    /// The reply body the client received (status frames and all).
    pub reply: Option<Vec<Frame>>,
}

/// The body a client got, without the status frame some brokers put first (wdl83's
/// `success`): `None` if it is not `sent`, with or without one extra frame in front.
pub(super) fn strip_status<'a>(got: &'a [Frame], sent: &[Frame]) -> Option<&'a [Frame]> {
    if got == sent {
        Some(&[])
    } else if got.len() == sent.len() + 1 && got[1..] == *sent {
        Some(&got[..1])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&str]) -> Vec<Frame> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn strip_status_takes_a_body_as_sent_with_no_status() {
        let sent = frames(&["a", "b"]);
        assert_eq!(strip_status(&sent, &sent), Some(&[][..]));
    }

    #[test]
    fn strip_status_returns_the_one_extra_frame_in_front() {
        let sent = frames(&["a", "b"]);
        let got = frames(&["success", "a", "b"]);
        assert_eq!(strip_status(&got, &sent), Some(&got[..1]));
    }

    #[test]
    fn strip_status_refuses_a_body_that_differs_or_has_two_extra_frames() {
        let sent = frames(&["a", "b"]);
        assert_eq!(strip_status(&frames(&["a", "c"]), &sent), None);
        assert_eq!(strip_status(&frames(&["x", "y", "a", "b"]), &sent), None);
        assert_eq!(strip_status(&frames(&["a", "b", "x"]), &sent), None);
    }
}
