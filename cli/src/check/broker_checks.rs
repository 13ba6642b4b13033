//! The checks of `mdp check broker`, one function each, in the order they run.

use std::time::{Duration, Instant};

use majordomo_worker::protocol::WorkerMessage;
use serde_json::Value;

use super::lab::{strip_status, CheckFn, Lab};
use super::peer::{client_frames, decode_client, decode_worker, owned, worker_frames, Frame, Peer};
use super::report::{frames_text, ms, pass_if, Check, Observed, Outcome, Transcript};
use crate::error::CliError;

/// The checks no known broker dies of, in order.
pub(super) const SAFE: &[(&str, CheckFn)] = &[
    ("registration", registration),
    ("routing", routing),
    ("multi-frame-body", multi_frame_body),
    ("heartbeat-idle", heartbeats),
    ("mmi-service", mmi_service),
    ("queued-request", queued_request),
];

/// READY, then a client's request reaches the worker with the client's identity as envelope.
fn registration(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, identity) = lab.client()?;
    let exchange = lab.exchange(&mut t, &worker, &client, &service, &[b"hello"])?;
    let (outcome, detail) = match exchange.request {
        None => (
            Outcome::Fail,
            "no REQUEST reached the registered worker".to_owned(),
        ),
        Some((envelope, body)) if body == owned(&[b"hello"]) => {
            let how = if envelope == [identity] {
                "with the client's identity as envelope"
            } else {
                "with an envelope other than the client's identity"
            };
            (
                Outcome::Pass,
                format!("READY, then the request reached the worker {how}"),
            )
        }
        Some((_, body)) => (
            Outcome::Fail,
            format!("the request's body arrived as {}", frames_text(&body)),
        ),
    };
    Ok(t.finish("registration", outcome, detail))
}

/// Two clients (a DEALER and a REQ) of one worker: each REPLY reaches its own client.
fn routing(lab: &Lab, observed: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (dealer, _) = lab.client()?;
    let (req, _) = lab.req_client()?;
    let bodies = [
        owned(&[b"for the dealer client"]),
        owned(&[b"for the req client"]),
    ];
    dealer.send(&mut t, &client_frames(&service, &[&bodies[0][0]]))?;
    req.send(&mut t, &client_frames(&service, &[&bodies[1][0]])[1..])?;
    for _ in 0..2 {
        if let Some((envelope, body)) = lab.take_request(&mut t, &worker, lab.wait)? {
            worker.send(
                &mut t,
                &worker_frames(WorkerMessage::Reply { envelope, body }),
            )?;
        }
    }
    let got_dealer = lab.client_reply(&mut t, &dealer, lab.wait)?;
    let got_req = req
        .recv(&mut t, lab.wait)?
        .and_then(|f| super::peer::decode_req_reply(&f))
        .map(|m| m.body);
    let status = got_dealer
        .as_deref()
        .and_then(|g| strip_status(g, &bodies[0]));
    let right_req = got_req
        .as_deref()
        .and_then(|g| strip_status(g, &bodies[1]))
        .is_some();
    observed.push(("client_reply", Value::from(reply_dialect(status))));
    let detail = match (status.is_some(), right_req) {
        (true, true) => "each REPLY reached its own client (a DEALER and a REQ)".to_owned(),
        (dealer_ok, req_ok) => format!(
            "wrong or missing reply: DEALER client {}, REQ client {}",
            if dealer_ok { "ok" } else { "not" },
            if req_ok { "ok" } else { "not" }
        ),
    };
    Ok(t.finish("routing", pass_if(status.is_some() && right_req), detail))
}

fn reply_dialect(status: Option<&[Frame]>) -> String {
    match status {
        None => "unknown (no reply)".to_owned(),
        Some([]) => "standard: \"\", MDPC01, service, body…".to_owned(),
        Some(extra) => format!(
            "an extra frame before the body: \"\", MDPC01, service, {}, body…",
            frames_text(extra)
        ),
    }
}

/// A body of text, an empty frame, binary bytes and a trailing empty frame, both ways.
fn multi_frame_body(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, _) = lab.client()?;
    let body: [&[u8]; 4] = [b"first", b"", &[0x00, 0xff, 0x80, 0x01, 0x7f], b""];
    let exchange = lab.exchange(&mut t, &worker, &client, &service, &body)?;
    let sent = owned(&body);
    let request_ok = exchange.request.as_ref().is_some_and(|(_, b)| *b == sent);
    let reply_ok = exchange
        .reply
        .as_deref()
        .and_then(|g| strip_status(g, &sent))
        .is_some();
    let detail = match (request_ok, reply_ok) {
        (true, true) => "4 frames (text, empty, binary, empty) unchanged both ways".to_owned(),
        (false, _) => "the worker did not get the 4 frames unchanged".to_owned(),
        (true, false) => "the client did not get the 4 frames back unchanged".to_owned(),
    };
    Ok(t.finish("multi-frame-body", pass_if(request_ok && reply_ok), detail))
}

/// HEARTBEATs arriving at a worker, by time.
#[derive(Default)]
struct Beats {
    at: Vec<Instant>,
    disconnected: Option<Instant>,
}

impl Beats {
    fn interval(&self) -> Option<Duration> {
        match self.at[..] {
            [.., a, b] => Some(b - a),
            _ => None,
        }
    }

    fn take(&mut self, frames: &[Frame]) {
        match decode_worker(frames) {
            Some(WorkerMessage::Heartbeat) => self.at.push(Instant::now()),
            Some(WorkerMessage::Disconnect) => self.disconnected = Some(Instant::now()),
            _ => {}
        }
    }
}

/// An idle worker gets HEARTBEATs (and heartbeats itself); a busy worker, watched over the
/// same window, shows whether the broker heartbeats busy workers too.
fn heartbeats(lab: &Lab, observed: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let idle_service = lab.service();
    let idle = lab.worker(&mut t, &idle_service)?;
    let busy_service = lab.service();
    let busy = lab.worker(&mut t, &busy_service)?;
    let (client, _) = lab.client()?;
    client.send(&mut t, &client_frames(&busy_service, &[b"hold on"]))?;
    let held = lab.take_request(&mut t, &busy, lab.wait)?;
    t.heartbeats = true;
    // HEARTBEATs that came while we were busy elsewhere would be timed by when they are read.
    while idle.recv(&mut t, Duration::ZERO)?.is_some() {}
    // Brokers that check their heartbeat only when a poll wakes (the zguide ones) can send it
    // up to a poll timeout late: room for that; a regular broker ends the wait at its second.
    let window = lab.heartbeat * 3 + Duration::from_millis(500);
    let started = Instant::now();
    let (idle_beats, busy_beats) = watch(&mut t, &idle, &busy, window, lab.heartbeat)?;
    let watched = started.elapsed();
    if let Some((envelope, body)) = held {
        lab.echo(&mut t, &busy, &client, envelope, body)?;
    }
    observed.push(("heartbeat_idle_ms", idle_beats.interval().map(ms).into()));
    observed.push((
        "heartbeat_busy",
        busy_text(&busy_beats, watched, started).into(),
    ));
    let detail = match (idle_beats.at.len(), idle_beats.interval()) {
        (0, _) => format!("no HEARTBEAT to an idle worker in {} ms", ms(watched)),
        (_, Some(every)) => format!("HEARTBEATs to an idle worker every {} ms", ms(every)),
        (_, None) => format!("one HEARTBEAT to an idle worker in {} ms", ms(watched)),
    };
    Ok(t.finish("heartbeat-idle", pass_if(!idle_beats.at.is_empty()), detail))
}

fn busy_text(beats: &Beats, watched: Duration, started: Instant) -> String {
    if let Some(at) = beats.disconnected {
        return format!("DISCONNECT to a busy worker after {} ms", ms(at - started));
    }
    match (beats.at.len(), beats.interval()) {
        (0, _) => format!(
            "none: no HEARTBEAT to a busy worker in {} ms (idle workers got theirs)",
            ms(watched)
        ),
        (_, Some(every)) => format!("yes: to busy workers too, every {} ms", ms(every)),
        (n, None) => format!("yes: {n} HEARTBEAT to a busy worker in {} ms", ms(watched)),
    }
}

/// How long the heartbeat check goes on watching the busy worker after the idle one's
/// second HEARTBEAT.
const GRACE: Duration = Duration::from_millis(100);

/// Watches two workers until the idle one had two HEARTBEATs or `window` ran out; the idle
/// one heartbeats every `heartbeat`, the busy one stays silent.
fn watch(
    t: &mut Transcript,
    idle: &Peer,
    busy: &Peer,
    window: Duration,
    heartbeat: Duration,
) -> Result<(Beats, Beats), CliError> {
    let (mut idle_beats, mut busy_beats) = (Beats::default(), Beats::default());
    let mut deadline = Instant::now() + window;
    let mut next_beat = Instant::now() + heartbeat;
    while Instant::now() < deadline {
        if idle_beats.at.len() == 2 {
            // A HEARTBEAT to the busy worker at the same tick may be a moment behind.
            deadline = deadline.min(idle_beats.at[1] + GRACE);
        }
        if Instant::now() >= next_beat {
            idle.send(t, &worker_frames(WorkerMessage::Heartbeat))?;
            next_beat += heartbeat;
        }
        let until = deadline.min(next_beat);
        let wait = until.saturating_duration_since(Instant::now());
        let mut items = [
            idle.socket().as_poll_item(zmq::POLLIN),
            busy.socket().as_poll_item(zmq::POLLIN),
        ];
        zmq::poll(&mut items, wait.as_millis() as i64)
            .map_err(|e| CliError::Failed(format!("poll: {e}")))?;
        if items[0].is_readable() {
            idle_beats.take(&idle.recv_now(t)?);
        }
        if items[1].is_readable() {
            busy_beats.take(&busy.recv_now(t)?);
        }
    }
    Ok((idle_beats, busy_beats))
}

/// `mmi.service`: 200 for a served name, 404 for an unknown one; and what `mmi.foo` gets.
fn mmi_service(lab: &Lab, observed: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, _) = lab.client()?;
    // A request through the worker first: then the broker surely has it registered.
    lab.exchange(&mut t, &worker, &client, &service, &[b"registered?"])?;
    let served = mmi(lab, &mut t, &client, b"mmi.service", &service)?;
    let unknown = mmi(lab, &mut t, &client, b"mmi.service", &lab.service())?;
    let other = mmi(lab, &mut t, &client, b"mmi.foo", &service)?;
    observed.push((
        "mmi_service",
        format!("served {served}, unknown {unknown}").into(),
    ));
    observed.push(("mmi_other", format!("mmi.foo: {other}").into()));
    let ok = served == "200" && unknown == "404";
    let detail =
        format!("mmi.service answered {served} for a served name, {unknown} for an unknown one");
    Ok(t.finish("mmi-service", pass_if(ok), detail))
}

/// The code an `mmi.` request gets, or `no answer`.
fn mmi(
    lab: &Lab,
    t: &mut Transcript,
    client: &Peer,
    name: &[u8],
    arg: &[u8],
) -> Result<String, CliError> {
    client.send(t, &client_frames(name, &[arg]))?;
    let reply = client.recv(t, lab.wait)?;
    Ok(match reply.as_deref().and_then(decode_client) {
        Some(m) if m.body.len() == 1 => String::from_utf8_lossy(&m.body[0]).into_owned(),
        Some(m) => frames_text(&m.body),
        None if reply.is_some() => "a malformed reply".to_owned(),
        None => format!("no answer in {} ms", lab.wait.as_millis()),
    })
}

/// A request for a service nobody serves yet waits, and is served once a worker registers.
fn queued_request(lab: &Lab, observed: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let (client, _) = lab.client()?;
    client.send(&mut t, &client_frames(&service, &[b"queued"]))?;
    if let Some(answer) = client.recv(&mut t, lab.quiet)? {
        let text = format!("answered at once: {}", frames_text(&answer));
        observed.push(("unknown_service", text.clone().into()));
        return Ok(t.finish(
            "queued-request",
            Outcome::Fail,
            format!("not queued, {text}"),
        ));
    }
    let worker = lab.worker(&mut t, &service)?;
    let request = lab.take_request(&mut t, &worker, lab.wait)?;
    let reply = match request {
        Some((envelope, body)) => lab.echo(&mut t, &worker, &client, envelope, body)?,
        None => None,
    };
    let served = reply
        .as_deref()
        .and_then(|g| strip_status(g, &owned(&[b"queued"])))
        .is_some();
    let how = if served {
        "queued"
    } else {
        "neither answered nor served"
    };
    observed.push(("unknown_service", how.into()));
    let detail = if served {
        "a request sent before any worker was served once one registered"
    } else {
        "a request sent before any worker never reached the worker that registered later"
    };
    Ok(t.finish("queued-request", pass_if(served), detail))
}
