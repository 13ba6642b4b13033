//! The broker that `mdp check worker` plays: a ROUTER that heartbeats the worker socket it
//! talks to while it waits for messages, and reads what comes in a few words. The checks
//! (`worker_checks.rs`) drive it; the runner (`worker.rs`) binds it and runs them in order.

use std::time::{Duration, Instant};

use majordomo_worker::protocol::WorkerMessage;

use super::peer::{decode_worker, worker_frames, Frame, Peer};
use super::report::{frames_text, hex, Report, Transcript};
use crate::error::CliError;

/// What the worker is held to, as the user told it: its heartbeat, and how long to wait for it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// The heartbeat interval the worker was started with.
    pub(super) heartbeat: Duration,
    /// Lateness allowed on each heartbeat interval.
    pub(super) tolerance: Duration,
    /// How long to wait for the worker's READY.
    pub(super) wait: Duration,
    /// How long the worker may take to answer a request.
    pub(super) reply: Duration,
}

/// What the worker socket said while we listened.
#[derive(Debug, Default)]
pub(super) struct Heard {
    /// When each HEARTBEAT arrived.
    pub(super) beats: Vec<Instant>,
    /// The REPLY with the expected envelope (its body), or why it was malformed.
    pub(super) reply: Option<Result<Vec<Frame>, String>>,
    /// When listening ended.
    pub(super) ended: Option<Instant>,
    /// Anything else, in a few words each.
    pub(super) stray: Vec<String>,
}

/// A ROUTER that heartbeats the current worker socket while it waits for messages.
pub(super) struct FakeBroker {
    router: Peer,
    start: Instant,
    pub(super) heartbeat: Duration,
    pub(super) tolerance: Duration,
    pub(super) wait: Duration,
    pub(super) reply: Duration,
    /// The identity of the worker socket we talk to.
    pub(super) worker: Option<Frame>,
    /// When the current worker socket's READY arrived.
    pub(super) ready_at: Instant,
    next_beat: Instant,
}

impl FakeBroker {
    /// A broker on `router` that has heard from no worker yet.
    pub(super) fn new(router: Peer, timing: Timing) -> FakeBroker {
        FakeBroker {
            router,
            start: Instant::now(),
            heartbeat: timing.heartbeat,
            tolerance: timing.tolerance,
            wait: timing.wait,
            reply: timing.reply,
            worker: None,
            ready_at: Instant::now(),
            next_beat: Instant::now(),
        }
    }

    /// A new transcript for one check, its times counted from the run's start.
    pub(super) fn transcript(&self) -> Transcript {
        Transcript::new(self.start)
    }

    /// Sends `message` to the current worker socket.
    pub(super) fn send(&mut self, t: &mut Transcript, frames: Vec<Frame>) -> Result<(), CliError> {
        let Some(identity) = self.worker.clone() else {
            return Ok(());
        };
        let mut routed = vec![identity];
        routed.extend(frames);
        self.router.send(t, &routed)
    }

    /// The next message from any worker socket within `wait`, as (identity, frames after
    /// it); HEARTBEATs to the current worker go out on time meanwhile.
    pub(super) fn next(
        &mut self,
        t: &mut Transcript,
        wait: Duration,
    ) -> Result<Option<(Frame, Vec<Frame>)>, CliError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.worker.is_some() && Instant::now() >= self.next_beat {
                self.send(t, worker_frames(WorkerMessage::Heartbeat))?;
                self.next_beat = Instant::now() + self.heartbeat;
            }
            let until = if self.worker.is_some() {
                deadline.min(self.next_beat)
            } else {
                deadline
            };
            if let Some(mut frames) = self
                .router
                .recv(t, until.saturating_duration_since(Instant::now()))?
            {
                let identity = frames.remove(0);
                return Ok(Some((identity, frames)));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Listens to the current worker socket for up to `wait`: until `max_beats` HEARTBEATs,
    /// or a REPLY (well-formed or not) to `envelope`.
    pub(super) fn listen(
        &mut self,
        t: &mut Transcript,
        wait: Duration,
        max_beats: usize,
        envelope: &[Frame],
    ) -> Result<Heard, CliError> {
        let deadline = Instant::now() + wait;
        let mut heard = Heard::default();
        while heard.reply.is_none() && heard.beats.len() < max_beats {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((identity, frames)) = self.next(t, left)? else {
                break;
            };
            if Some(&identity) != self.worker.as_ref() {
                heard.stray.push(format!(
                    "{} from another socket {}",
                    describe(&frames),
                    hex(&identity)
                ));
                continue;
            }
            self.hear(&mut heard, frames, envelope);
        }
        heard.ended = Some(Instant::now());
        Ok(heard)
    }

    fn hear(&self, heard: &mut Heard, frames: Vec<Frame>, envelope: &[Frame]) {
        let looks_like_reply = frames.get(2).is_some_and(|c| c[..] == [0x03]);
        match WorkerMessage::decode(frames.clone()) {
            Ok(WorkerMessage::Heartbeat) => heard.beats.push(Instant::now()),
            Ok(WorkerMessage::Reply { envelope: e, body }) if e == envelope => {
                heard.reply = Some(Ok(body))
            }
            Ok(WorkerMessage::Reply { envelope: e, .. }) => heard
                .stray
                .push(format!("a REPLY to envelope {}", frames_text(&e))),
            Err(error) if looks_like_reply => heard.reply = Some(Err(error.to_string())),
            _ => heard.stray.push(describe(&frames)),
        }
    }

    /// Talks to `identity` from now on, the worker socket that said READY for `service`.
    pub(super) fn adopt(&mut self, report: &mut Report, identity: Frame, service: &[u8]) {
        report.observe("service", String::from_utf8_lossy(service).into_owned());
        report.observe("identity", hex(&identity));
        self.worker = Some(identity);
        self.ready_at = Instant::now();
        self.next_beat = Instant::now() + self.heartbeat;
    }
}

/// The service of a well-formed READY.
pub(super) fn ready_service(frames: &[Frame]) -> Option<Frame> {
    match decode_worker(frames) {
        Some(WorkerMessage::Ready { service }) => Some(service),
        _ => None,
    }
}

/// A message in a few words: its command, or what is wrong with it.
pub(super) fn describe(frames: &[Frame]) -> String {
    match WorkerMessage::decode(frames.to_vec()) {
        Ok(message) => message.command().name().to_owned(),
        Err(error) => format!("a malformed message ({error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_service_reads_the_service_of_a_well_formed_ready_only() {
        let ready = worker_frames(WorkerMessage::Ready {
            service: b"echo".to_vec(),
        });
        assert_eq!(ready_service(&ready), Some(b"echo".to_vec()));
        assert_eq!(
            ready_service(&worker_frames(WorkerMessage::Heartbeat)),
            None
        );
        assert_eq!(ready_service(&ready[..3]), None);
    }

    #[test]
    fn describe_names_the_command_or_what_is_wrong() {
        assert_eq!(
            describe(&worker_frames(WorkerMessage::Heartbeat)),
            "HEARTBEAT"
        );
        assert!(describe(&[b"x".to_vec()]).starts_with("a malformed message ("));
    }
}
