//! The checks of `mdp check worker`, one method each, in the order they run: READY first, then
//! the ones that need a worker that said READY.

use std::time::{Duration, Instant};

use majordomo_worker::protocol::{ClientMessage, WorkerMessage};

use super::fake_broker::{describe, ready_service, FakeBroker};
use super::peer::{owned, worker_frames, Frame};
use super::report::{frames_text, hex, ms, pass_if, Check, Outcome, Report, Transcript};
use crate::error::CliError;

/// The checks that need a worker that said READY, in order.
pub(super) const LATER: [&str; 5] = [
    "heartbeat-cadence",
    "envelope-kept",
    "heartbeat-while-busy",
    "malformed-survived",
    "new-socket-after-disconnect",
];

/// The envelope of the envelope check: two binary frames, not UTF-8.
const ENVELOPE: [&[u8]; 2] = [&[0x00, 0xff, b'c', b'1'], &[0x80, 0x00, 0x01]];
/// How soon after our DISCONNECT a HEARTBEAT on the old socket is still taken as sent before
/// the worker saw the DISCONNECT.
const IN_FLIGHT: Duration = Duration::from_millis(100);

/// The gaps between `from` and each instant, and between consecutive instants.
fn gaps(from: Instant, at: &[Instant]) -> Vec<Duration> {
    std::iter::once(from)
        .chain(at.iter().copied())
        .zip(at.iter().copied())
        .map(|(a, b)| b - a)
        .collect()
}

fn stray_text(stray: &[String]) -> String {
    if stray.is_empty() {
        String::new()
    } else {
        format!("; also got: {}", stray.join(", "))
    }
}

impl FakeBroker {
    /// The first message must be READY, exactly `""`, `MDPW01`, `0x01`, service.
    pub(super) fn ready_first(&mut self, report: &mut Report) -> Result<Check, CliError> {
        let mut t = self.transcript();
        t.heartbeats = true;
        let deadline = Instant::now() + self.wait;
        let Some((identity, frames)) = self.next(&mut t, self.wait)? else {
            let detail = format!("no message from a worker in {} ms", self.wait.as_millis());
            return Ok(t.finish("ready-first", Outcome::Fail, detail));
        };
        if let Some(service) = ready_service(&frames) {
            self.adopt(report, identity, &service);
            return Ok(t.finish(
                "ready-first",
                Outcome::Pass,
                "READY first, exactly \"\", MDPW01, 0x01, service",
            ));
        }
        let detail = format!(
            "the first message was {}, not a well-formed READY",
            describe(&frames)
        );
        // Go on with the checks if a READY comes after all.
        let left = deadline.saturating_duration_since(Instant::now());
        while let Some((identity, frames)) = self.next(&mut t, left)? {
            if let Some(service) = ready_service(&frames) {
                self.adopt(report, identity, &service);
                break;
            }
        }
        Ok(t.finish("ready-first", Outcome::Fail, detail))
    }

    /// HEARTBEATs come at least every `heartbeat + tolerance`, counted from the READY.
    pub(super) fn heartbeat_cadence(&mut self, report: &mut Report) -> Result<Check, CliError> {
        let mut t = self.transcript();
        t.heartbeats = true;
        let limit = self.heartbeat + self.tolerance;
        let window = limit * 3;
        let heard = self.listen(&mut t, window, 3, &[])?;
        let intervals: Vec<u64> = gaps(self.ready_at, &heard.beats)
            .into_iter()
            .map(ms)
            .collect();
        let worst = intervals.iter().copied().max();
        report.observe("heartbeat_intervals_ms", intervals);
        report.observe("heartbeat_max_interval_ms", worst);
        let ok = heard.beats.len() >= 2 && worst.is_some_and(|w| w <= ms(limit));
        let detail = match worst {
            None => format!("no HEARTBEAT in {} ms", ms(window)),
            Some(w) => format!(
                "{} HEARTBEATs, longest gap {w} ms since READY (declared {} ms + {} ms tolerance)",
                heard.beats.len(),
                ms(self.heartbeat),
                ms(self.tolerance)
            ),
        };
        Ok(t.finish(
            "heartbeat-cadence",
            pass_if(ok),
            detail + &stray_text(&heard.stray),
        ))
    }

    /// A REQUEST with a two-frame binary envelope comes back with it unchanged, then the
    /// empty delimiter.
    pub(super) fn envelope_kept(&mut self, report: &mut Report) -> Result<Check, CliError> {
        let mut t = self.transcript();
        let envelope = owned(&ENVELOPE);
        let body = owned(&[b"mdp check", b"", &[0x00, 0x01, 0xfe]]);
        let request = WorkerMessage::Request {
            envelope: envelope.clone(),
            body: body.clone(),
        };
        self.send(&mut t, worker_frames(request))?;
        let heard = self.listen(&mut t, self.reply, usize::MAX, &envelope)?;
        let (outcome, detail) = match heard.reply {
            Some(Ok(reply)) => {
                let echo = if reply == body {
                    "the request's body (an echo)".to_owned()
                } else {
                    frames_text(&reply)
                };
                report.observe("reply_body", echo);
                (
                    Outcome::Pass,
                    "the REPLY kept the two-frame binary envelope and the empty delimiter"
                        .to_owned(),
                )
            }
            Some(Err(error)) => (Outcome::Fail, format!("the REPLY is malformed: {error}")),
            None => (
                Outcome::Fail,
                format!("no REPLY to this envelope in {} ms", ms(self.reply)),
            ),
        };
        Ok(t.finish("envelope-kept", outcome, detail + &stray_text(&heard.stray)))
    }

    /// With `--slow-body`: HEARTBEATs keep coming while the worker is busy on a request.
    pub(super) fn heartbeat_while_busy(&mut self, slow: Option<&str>) -> Result<Check, CliError> {
        let name = "heartbeat-while-busy";
        let Some(slow) = slow else {
            return Ok(Check::skipped(
                name,
                "give --slow-body with a request your worker takes longer than the heartbeat on",
            ));
        };
        let mut t = self.transcript();
        t.heartbeats = true;
        let envelope = owned(&[b"busy-client"]);
        let request = WorkerMessage::Request {
            envelope: envelope.clone(),
            body: owned(&[slow.as_bytes()]),
        };
        self.send(&mut t, worker_frames(request))?;
        let sent = Instant::now();
        let heard = self.listen(&mut t, self.reply, usize::MAX, &envelope)?;
        let ended = heard.ended.unwrap_or(sent);
        let mut at = heard.beats.clone();
        at.push(ended);
        let worst = gaps(sent, &at).into_iter().max().unwrap_or_default();
        let limit = self.heartbeat + self.tolerance;
        let took = ended - sent;
        let (outcome, detail) = match heard.reply {
            None | Some(Err(_)) => (
                Outcome::Fail,
                format!("no well-formed REPLY in {} ms", ms(self.reply)),
            ),
            Some(Ok(_)) if took < self.heartbeat => (
                Outcome::Skip,
                format!(
                    "the request took {} ms, less than the heartbeat: nothing to judge",
                    ms(took)
                ),
            ),
            Some(Ok(_)) => (
                pass_if(worst <= limit),
                format!(
                    "busy {} ms, {} HEARTBEATs, longest silence {} ms",
                    ms(took),
                    heard.beats.len(),
                    ms(worst)
                ),
            ),
        };
        Ok(t.finish(name, outcome, detail + &stray_text(&heard.stray)))
    }

    /// Garbage of every shape, then a valid REQUEST: it is still answered.
    pub(super) fn malformed_survived(&mut self) -> Result<Check, CliError> {
        let mut t = self.transcript();
        let shapes = malformed_shapes();
        let count = shapes.len();
        for shape in shapes {
            self.send(&mut t, shape)?;
        }
        let envelope = owned(&[b"after-garbage"]);
        let request = WorkerMessage::Request {
            envelope: envelope.clone(),
            body: owned(&[b"still there?"]),
        };
        self.send(&mut t, worker_frames(request))?;
        let heard = self.listen(&mut t, self.reply, usize::MAX, &envelope)?;
        let ok = matches!(heard.reply, Some(Ok(_)));
        let detail = if ok {
            format!("{count} malformed messages, then a valid request was still answered")
        } else {
            format!("{count} malformed messages, then no answer to a valid request")
        };
        Ok(t.finish(
            "malformed-survived",
            pass_if(ok),
            detail + &stray_text(&heard.stray),
        ))
    }

    /// DISCONNECT: the worker comes back on a NEW socket (identity) with READY, and never
    /// talks on the old one again.
    pub(super) fn new_socket_after_disconnect(
        &mut self,
        report: &mut Report,
    ) -> Result<Check, CliError> {
        let mut t = self.transcript();
        t.heartbeats = true;
        let old = self.worker.clone().unwrap_or_default();
        self.send(&mut t, worker_frames(WorkerMessage::Disconnect))?;
        let sent = Instant::now();
        self.worker = None;
        let mut old_talk = Vec::new();
        let deadline = sent + self.wait;
        let mut fresh = None;
        while fresh.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((identity, frames)) = self.next(&mut t, left)? else {
                break;
            };
            match ready_service(&frames) {
                _ if identity == old => self.old_socket(&mut old_talk, sent, &frames),
                Some(service) => fresh = Some((identity, service)),
                None => old_talk.push(format!(
                    "{} from a socket that sent no READY",
                    describe(&frames)
                )),
            }
        }
        let Some((identity, service)) = fresh else {
            let detail = format!(
                "no READY from a new socket in {} ms{}",
                ms(self.wait),
                stray_text(&old_talk)
            );
            return Ok(t.finish("new-socket-after-disconnect", Outcome::Fail, detail));
        };
        report.observe("reconnect_after_disconnect_ms", ms(sent.elapsed()));
        report.observe("identity_after_disconnect", hex(&identity));
        let _ = service;
        self.worker = Some(identity);
        self.ready_at = Instant::now();
        self.watch_old(&mut t, &old, &mut old_talk)?;
        let detail = if old_talk.is_empty() {
            format!(
                "READY from a new socket {} ms after DISCONNECT; nothing on the old one",
                ms(self.ready_at - sent)
            )
        } else {
            format!(
                "talked on the old socket after DISCONNECT: {}",
                old_talk.join(", ")
            )
        };
        Ok(t.finish(
            "new-socket-after-disconnect",
            pass_if(old_talk.is_empty()),
            detail,
        ))
    }

    /// A message on the old socket after DISCONNECT: only a HEARTBEAT already in flight is
    /// forgiven.
    fn old_socket(&self, old_talk: &mut Vec<String>, sent: Instant, frames: &[Frame]) {
        let in_flight = sent.elapsed() < IN_FLIGHT;
        let heartbeat = matches!(
            WorkerMessage::decode(frames.to_vec()),
            Ok(WorkerMessage::Heartbeat)
        );
        if !(in_flight && heartbeat) {
            old_talk.push(format!(
                "{} {} ms after it",
                describe(frames),
                ms(sent.elapsed())
            ));
        }
    }

    /// Listens for a heartbeat interval more: the old socket must stay silent.
    fn watch_old(
        &mut self,
        t: &mut Transcript,
        old: &[u8],
        old_talk: &mut Vec<String>,
    ) -> Result<(), CliError> {
        let deadline = Instant::now() + self.heartbeat + self.tolerance;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(t, left)? {
                Some((identity, frames)) if identity == old => old_talk.push(format!(
                    "{} on the old socket after the new READY",
                    describe(&frames)
                )),
                Some(_) => {}
                None => return Ok(()),
            }
        }
    }
}

/// Broken worker messages of every shape, made by breaking well-formed ones.
fn malformed_shapes() -> Vec<Vec<Frame>> {
    let heartbeat = worker_frames(WorkerMessage::Heartbeat);
    let with = |i: usize, frame: &[u8]| {
        let mut frames = heartbeat.clone();
        frames[i] = frame.to_vec();
        frames
    };
    let mut trailing = heartbeat.clone();
    trailing.push(b"extra".to_vec());
    let no_address = WorkerMessage::Request {
        envelope: vec![],
        body: owned(&[b"x"]),
    };
    let wrong_way_reply = WorkerMessage::Reply {
        envelope: owned(&[b"c"]),
        body: owned(&[b"x"]),
    };
    let wrong_way_ready = WorkerMessage::Ready {
        service: b"echo".to_vec(),
    };
    let client = ClientMessage {
        service: b"echo".to_vec(),
        body: owned(&[b"x"]),
    };
    vec![
        with(2, &[0x09]),                                 // unknown command
        with(2, &[0x04, 0x04]),                           // two-byte command
        with(1, b"MDPW02"),                               // MDP/0.2 header
        with(0, b"junk"),                                 // frame 0 not empty
        heartbeat[..2].to_vec(),                          // no command frame
        trailing,                                         // HEARTBEAT with a trailing frame
        worker_frames(no_address),                        // REQUEST without an address
        owned(&[b"", b"MDPW01", &[0x02], b"addr", b"x"]), // REQUEST without delimiter
        worker_frames(wrong_way_reply),                   // REPLY, broker to worker
        worker_frames(wrong_way_ready),                   // READY, broker to worker
        client.encode(),                                  // a client message
        owned(&[b""]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_the_first_from_the_start_and_each_next_from_the_one_before() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let at = [t0 + ms(100), t0 + ms(250), t0 + ms(600)];
        assert_eq!(gaps(t0, &at), vec![ms(100), ms(150), ms(350)]);
        assert!(gaps(t0, &[]).is_empty());
    }

    #[test]
    fn stray_text_is_empty_without_strays_and_lists_them_otherwise() {
        assert_eq!(stray_text(&[]), "");
        let stray = ["READY".to_owned(), "a REPLY to envelope []".to_owned()];
        assert_eq!(
            stray_text(&stray),
            "; also got: READY, a REPLY to envelope []"
        );
    }
}
