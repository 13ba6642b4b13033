//! The checks of `mdp check broker` that can bring a fragile broker down (MDP.md's table).
//! They run last, each followed by a liveness probe.

use std::time::{Duration, Instant};

use majordomo_worker::protocol::WorkerMessage;

use super::lab::{CheckFn, Lab, LONG_SILENCE};
use super::peer::{client_frames, decode_worker, owned, worker_frames, Frame, Peer};
use super::report::{frames_text, ms, pass_if, Check, Observed, Outcome, Transcript};
use crate::error::CliError;

/// The checks that can bring a fragile broker down: protocol behaviour first, then
/// robustness against malformed messages.
pub(super) fn risky(long: bool) -> Vec<(&'static str, CheckFn)> {
    let mut checks: Vec<(&'static str, CheckFn)> = Vec::new();
    if long {
        checks.push(("busy-worker-silence", busy_worker_silence));
    }
    checks.extend([
        ("second-ready", second_ready as CheckFn),
        ("worker-disconnect", worker_disconnect),
        ("unknown-worker-heartbeat", unknown_worker_heartbeat),
        ("malformed-worker", malformed_worker),
        ("malformed-client", malformed_client),
    ]);
    checks
}

/// With `--long`: a busy worker stays silent for up to 15 s. Does the broker expire it, and
/// if it does, does anybody hear of it? A late REPLY that goes nowhere without a word fails.
fn busy_worker_silence(lab: &Lab, observed: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, _) = lab.client()?;
    client.send(&mut t, &client_frames(&service, &[b"a long job"]))?;
    let Some((envelope, body)) = lab.take_request(&mut t, &worker, lab.wait)? else {
        return Ok(t.finish(
            "busy-worker-silence",
            Outcome::Fail,
            "no REQUEST reached the worker",
        ));
    };
    let started = Instant::now();
    let is_disconnect = |f: &[Frame]| matches!(decode_worker(f), Some(WorkerMessage::Disconnect));
    if worker
        .recv_until(&mut t, LONG_SILENCE, is_disconnect)?
        .is_some()
    {
        let text = format!(
            "expired after {} ms silent and busy, with a DISCONNECT",
            ms(started.elapsed())
        );
        let told = client.recv(&mut t, lab.quiet)?.is_some();
        observed.push(("busy_worker_expiry", text.clone().into()));
        let client_text = if told {
            "its client was answered"
        } else {
            "its client heard nothing"
        };
        return Ok(t.finish(
            "busy-worker-silence",
            Outcome::Pass,
            format!("{text}; {client_text}"),
        ));
    }
    if let Some(answer) = client.recv(&mut t, Duration::ZERO)? {
        let text = format!("expired silently; its client got {}", frames_text(&answer));
        observed.push(("busy_worker_expiry", text.clone().into()));
        return Ok(t.finish("busy-worker-silence", Outcome::Pass, text));
    }
    let late = lab.echo(&mut t, &worker, &client, envelope, body)?;
    let text = if late.is_some() {
        format!(
            "not expired in {} s busy and silent",
            LONG_SILENCE.as_secs()
        )
    } else {
        "expired without a word: the late REPLY went nowhere".to_owned()
    };
    observed.push(("busy_worker_expiry", text.clone().into()));
    Ok(t.finish("busy-worker-silence", pass_if(late.is_some()), text))
}

/// A second READY on the same socket: the reference broker answers DISCONNECT.
fn second_ready(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, _) = lab.client()?;
    lab.exchange(&mut t, &worker, &client, &service, &[b"registered?"])?;
    worker.send(&mut t, &worker_frames(WorkerMessage::Ready { service }))?;
    let got = expect_disconnect(lab, &mut t, &worker)?;
    let detail = if got {
        "a second READY got DISCONNECT"
    } else {
        "no DISCONNECT for a second READY"
    };
    Ok(t.finish("second-ready", pass_if(got), detail))
}

fn expect_disconnect(lab: &Lab, t: &mut Transcript, peer: &Peer) -> Result<bool, CliError> {
    let is_disconnect = |f: &[Frame]| matches!(decode_worker(f), Some(WorkerMessage::Disconnect));
    Ok(peer.recv_until(t, lab.wait, is_disconnect)?.is_some())
}

/// A worker's DISCONNECT unregisters it: a later request for its service does not reach it.
fn worker_disconnect(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, _) = lab.client()?;
    lab.exchange(&mut t, &worker, &client, &service, &[b"registered?"])?;
    worker.send(&mut t, &worker_frames(WorkerMessage::Disconnect))?;
    std::thread::sleep(Duration::from_millis(50));
    client.send(&mut t, &client_frames(&service, &[b"after DISCONNECT"]))?;
    let reached = match lab.take_request(&mut t, &worker, lab.quiet)? {
        Some((envelope, body)) => {
            worker.send(
                &mut t,
                &worker_frames(WorkerMessage::Reply { envelope, body }),
            )?;
            true
        }
        // Queued for a service without a worker now: served, so that none is left behind.
        None => {
            lab.serve_leftovers(&mut t, &service, 1)?;
            false
        }
    };
    let detail = if reached {
        "a request still reached the worker after its DISCONNECT"
    } else {
        "after its DISCONNECT the worker got no more requests"
    };
    Ok(t.finish("worker-disconnect", pass_if(!reached), detail))
}

/// A HEARTBEAT from a worker the broker never saw: the reference broker answers DISCONNECT.
fn unknown_worker_heartbeat(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    let stranger = lab.dealer("stranger")?;
    stranger.send(&mut t, &worker_frames(WorkerMessage::Heartbeat))?;
    let got = expect_disconnect(lab, &mut t, &stranger)?;
    let detail = if got {
        "a HEARTBEAT from an unknown worker got DISCONNECT"
    } else {
        "no DISCONNECT for a HEARTBEAT from an unknown worker"
    };
    Ok(t.finish("unknown-worker-heartbeat", pass_if(got), detail))
}

/// A malformed message: what is wrong with it, and its frames.
type Shape = (&'static str, Vec<Frame>);

/// Broken client messages, each from a fresh DEALER, each followed by a request that must
/// still be answered. Shapes that break the frame structure, which known brokers crash on,
/// come last: a crash hides what comes after it.
fn malformed_client(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let service = lab.service();
    let good = client_frames(&service, &[b"body"]);
    // One of ours, so that a broker that queues it has it served afterwards.
    let mut long = lab.service();
    long.resize(256, b'x');
    let shapes = vec![
        ("MDP/0.2 header", with(&good, 1, b"MDPC02")),
        ("unknown header", with(&good, 1, b"MDPC99")),
        ("empty service name", with(&good, 2, b"")),
        ("service name of 256 bytes", with(&good, 2, &long)),
        (
            "mmi.service without a name",
            owned(&[b"", b"MDPC01", b"mmi.service"]),
        ),
        ("frame 0 not empty", with(&good, 0, b"junk")),
        ("no service frame", good[..2].to_vec()),
        ("a single frame", owned(&[b"garbage"])),
    ];
    let check = send_shapes(lab, "client", shapes, "malformed-client")?;
    if check.outcome == Outcome::Pass {
        // The broker still answers: a request it queued for the long name is served.
        lab.serve_leftovers(&mut lab.transcript(), &long, 1)?;
    }
    Ok(check)
}

/// Broken worker messages, each from a fresh DEALER (a worker the broker does not know),
/// each followed by a request that must still be answered.
fn malformed_worker(lab: &Lab, _: &mut Observed) -> Result<Check, CliError> {
    let heartbeat = worker_frames(WorkerMessage::Heartbeat);
    let ready = worker_frames(WorkerMessage::Ready {
        service: lab.service(),
    });
    let shapes = vec![
        ("MDP/0.2 header", with(&ready, 1, b"MDPW02")),
        ("unknown command 0x09", with(&heartbeat, 2, &[0x09])),
        ("two-byte command", with(&ready, 2, &[0x01, 0x01])),
        ("READY with an empty service", with(&ready, 3, b"")),
        (
            "REPLY without delimiter",
            owned(&[b"", b"MDPW01", &[0x03], b"nobody"]),
        ),
        (
            "REQUEST sent by a worker",
            owned(&[b"", b"MDPW01", &[0x02], b"c", b"", b"x"]),
        ),
        ("frame 0 not empty", with(&ready, 0, b"junk")),
        ("no command frame", heartbeat[..2].to_vec()),
        ("a single empty frame", owned(&[b""])),
    ];
    send_shapes(lab, "worker", shapes, "malformed-worker")
}

/// `frames` with frame `i` replaced.
fn with(frames: &[Frame], i: usize, frame: &[u8]) -> Vec<Frame> {
    let mut frames = frames.to_vec();
    frames[i] = frame.to_vec();
    frames
}

/// Between a malformed message and the request after it: the two travel on different
/// connections, and the request must not overtake the message it is to test.
const PAUSE: Duration = Duration::from_millis(10);

/// Sends each shape from a new socket, then a request through a worker of ours: the first
/// shape after which the request goes unanswered is named.
fn send_shapes(
    lab: &Lab,
    role: &str,
    shapes: Vec<Shape>,
    name: &'static str,
) -> Result<Check, CliError> {
    let mut t = lab.transcript();
    // Connected while the worker settles, so that each shape arrives when sent.
    let peers = (0..shapes.len())
        .map(|_| lab.dealer(role))
        .collect::<Result<Vec<_>, _>>()?;
    let service = lab.service();
    let worker = lab.worker(&mut t, &service)?;
    let (client, _) = lab.client()?;
    let answered = |t: &mut Transcript, body: &[u8]| -> Result<bool, CliError> {
        let exchange = lab.exchange(t, &worker, &client, &service, &[body])?;
        Ok(exchange.reply.is_some())
    };
    if !answered(&mut t, b"before")? {
        let detail = "the broker did not answer a request even before the malformed messages";
        return Ok(t.finish(name, Outcome::Fail, detail));
    }
    for ((label, shape), peer) in shapes.iter().zip(&peers) {
        peer.send(&mut t, shape)?;
        std::thread::sleep(PAUSE);
        if !answered(&mut t, label.as_bytes())? {
            let detail = format!(
                "the broker stopped answering after the malformed {role} message \"{label}\" {}",
                frames_text(shape)
            );
            return Ok(t.finish(name, Outcome::Fail, detail));
        }
    }
    for peer in &peers {
        while peer.recv(&mut t, Duration::ZERO)?.is_some() {}
    }
    let detail = format!(
        "{} malformed {role} messages, each from a new socket; a request was answered after each",
        shapes.len()
    );
    Ok(t.finish(name, Outcome::Pass, detail))
}
