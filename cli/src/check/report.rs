//! What both checks hand back: a list of pass/fail/skip results, each with the frames seen,
//! plus what was observed about the peer. Printed for people, or as one JSON object.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{CliError, CliResult};

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The peer did what MDP/0.1 asks.
    Pass,
    /// It did not.
    Fail,
    /// Not run, and the detail says why.
    Skip,
}

/// `Pass` if `ok`, else `Fail`.
pub fn pass_if(ok: bool) -> Outcome {
    if ok {
        Outcome::Pass
    } else {
        Outcome::Fail
    }
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// What the checks observe about the peer besides pass/fail, in order (a broker's dialect).
pub type Observed = Vec<(&'static str, Value)>;

/// One message sent or received during a check.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Time since the run started.
    pub at: Duration,
    /// Which of our sockets sent or received it.
    pub peer: String,
    /// Sent by us (`true`) or received (`false`).
    pub sent: bool,
    /// The frames, routing identity included where a ROUTER sees one.
    pub frames: Vec<Vec<u8>>,
}

/// The messages of one check, in order.
#[derive(Debug)]
pub struct Transcript {
    start: Instant,
    seen: Vec<Seen>,
    /// Whether HEARTBEATs are recorded (only the heartbeat checks want to see them).
    pub heartbeats: bool,
}

/// At most this many messages are kept per check: a flood must not make the report unreadable.
const MAX_SEEN: usize = 200;

impl Transcript {
    /// An empty transcript whose times count from `start`.
    pub fn new(start: Instant) -> Transcript {
        Transcript {
            start,
            seen: Vec::new(),
            heartbeats: false,
        }
    }

    /// Records a message.
    pub fn record(&mut self, peer: &str, sent: bool, frames: &[Vec<u8>]) {
        if self.seen.len() < MAX_SEEN {
            self.seen.push(Seen {
                at: self.start.elapsed(),
                peer: peer.to_owned(),
                sent,
                frames: frames.to_vec(),
            });
        }
    }

    /// Ends the check with an outcome and a one-line detail.
    pub fn finish(self, name: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome,
            detail: detail.into(),
            seen: self.seen,
        }
    }
}

/// The result of one check.
#[derive(Debug)]
pub struct Check {
    /// A short name, stable for scripts.
    pub name: &'static str,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What happened, in one line.
    pub detail: String,
    /// The messages sent and received.
    pub seen: Vec<Seen>,
}

impl Check {
    /// A check that was not run.
    pub fn skipped(name: &'static str, why: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Skip,
            detail: why.into(),
            seen: Vec::new(),
        }
    }
}

/// A whole run: the checks and what was observed about the peer.
#[derive(Debug)]
pub struct Report {
    /// `"broker"` or `"worker"`.
    pub subject: &'static str,
    /// The endpoint checked.
    pub endpoint: String,
    /// The checks, in the order run.
    pub checks: Vec<Check>,
    /// Observed behaviour that is not pass/fail (the broker's dialect), in order.
    pub observed: Observed,
    /// Remarks for the reader (what was skipped and why, when the peer stopped answering).
    pub notes: Vec<String>,
}

impl Report {
    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.count(Outcome::Fail)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }

    /// Records an observation.
    pub fn observe(&mut self, key: &'static str, value: impl Into<Value>) {
        self.observed.push((key, value.into()));
    }

    /// Prints the report, as JSON or text.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.to_json());
        } else {
            print!("{}", self.to_text());
        }
    }

    /// Prints the report; any failed check makes the exit code 1.
    ///
    /// # Errors
    ///
    /// [`CliError::NoAnswer`] when a check failed, saying how many of all.
    pub fn finish(&self, json: bool) -> CliResult {
        self.print(json);
        match self.failures() {
            0 => Ok(()),
            n => Err(CliError::NoAnswer(format!(
                "{n} of {} checks failed",
                self.checks.len()
            ))),
        }
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let observed: serde_json::Map<String, Value> = self
            .observed
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let key = if self.subject == "broker" {
            "dialect"
        } else {
            "observed"
        };
        json!({
            "subject": self.subject,
            "endpoint": self.endpoint,
            "passed": self.failures() == 0,
            "counts": {
                "pass": self.count(Outcome::Pass),
                "fail": self.count(Outcome::Fail),
                "skip": self.count(Outcome::Skip),
            },
            "checks": self.checks.iter().map(check_json).collect::<Vec<_>>(),
            key: observed,
            "notes": self.notes,
        })
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = format!("mdp check {} {}\n\n", self.subject, self.endpoint);
        for check in &self.checks {
            write_check(&mut out, check);
        }
        let title = if self.subject == "broker" {
            "Dialect"
        } else {
            "Observed"
        };
        let _ = writeln!(out, "\n{title}:");
        let width = self
            .observed
            .iter()
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (key, value) in &self.observed {
            let _ = writeln!(out, "  {key:width$}  {}", value_text(value));
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        let _ = writeln!(
            out,
            "\n{} passed, {} failed, {} skipped",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip)
        );
        out
    }
}

fn check_json(check: &Check) -> Value {
    json!({
        "name": check.name,
        "result": check.outcome.word(),
        "detail": check.detail,
        "frames_seen": check.seen.iter().map(seen_json).collect::<Vec<_>>(),
    })
}

fn seen_json(seen: &Seen) -> Value {
    json!({
        "at_ms": seen.at.as_millis() as u64,
        "peer": seen.peer,
        "direction": if seen.sent { "sent" } else { "received" },
        "frames": seen.frames.iter().map(|f| json!({
            "hex": hex(f),
            "ascii": ascii(f),
        })).collect::<Vec<_>>(),
    })
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Messages shown per check in the text report; the JSON report has them all.
const SHOWN: usize = 12;

fn write_check(out: &mut String, check: &Check) {
    let word = check.outcome.word().to_uppercase();
    let _ = writeln!(out, "{word} {}: {}", check.name, check.detail);
    let seen = &check.seen;
    if seen.len() <= SHOWN {
        seen.iter().for_each(|s| write_seen(out, s));
        return;
    }
    // The first and the last messages: how it started and where it stopped.
    seen[..SHOWN / 2].iter().for_each(|s| write_seen(out, s));
    let _ = writeln!(out, "     ... {} more (see --json)", seen.len() - SHOWN);
    seen[seen.len() - SHOWN / 2..]
        .iter()
        .for_each(|s| write_seen(out, s));
}

fn write_seen(out: &mut String, seen: &Seen) {
    let arrow = if seen.sent { "->" } else { "<-" };
    let frames: Vec<String> = seen.frames.iter().map(|f| show_frame(f)).collect();
    let _ = writeln!(
        out,
        "     {:>6} ms {arrow} {:<10} {}",
        seen.at.as_millis(),
        seen.peer,
        frames.join(" | ")
    );
}

/// Bytes shown per frame in the text report.
const FRAME_SHOWN: usize = 32;

/// A frame for people: quoted text when printable, else hex then ASCII with dots.
pub fn show_frame(frame: &[u8]) -> String {
    let cut = &frame[..frame.len().min(FRAME_SHOWN)];
    let more = if frame.len() > FRAME_SHOWN { "…" } else { "" };
    if cut.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}{more}\"", ascii(cut))
    } else {
        format!("{}{more} ({})", hex(cut), ascii(cut))
    }
}

/// A message's frames for people, each as [`show_frame`] shows it: `["a", 01 (.)]`.
pub fn frames_text(frames: &[Vec<u8>]) -> String {
    let shown: Vec<String> = frames.iter().map(|f| show_frame(f)).collect();
    format!("[{}]", shown.join(", "))
}

/// Lower-case hex, bytes separated by nothing.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Printable ASCII as is, any other byte as a dot.
pub fn ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// A duration in whole milliseconds, for reports.
pub fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_frames_are_quoted_and_binary_ones_shown_in_hex_and_ascii() {
        assert_eq!(show_frame(b"MDPW01"), "\"MDPW01\"");
        assert_eq!(show_frame(b""), "\"\"");
        assert_eq!(show_frame(&[0x01]), "01 (.)");
        assert_eq!(show_frame(&[0x00, b'a', 0xff]), "0061ff (.a.)");
    }

    #[test]
    fn frames_text_lists_every_frame_as_shown() {
        assert_eq!(frames_text(&[]), "[]");
        assert_eq!(
            frames_text(&[b"MDPW01".to_vec(), vec![0x01]]),
            "[\"MDPW01\", 01 (.)]"
        );
    }

    #[test]
    fn pass_if_maps_true_to_pass_and_false_to_fail() {
        assert_eq!(pass_if(true), Outcome::Pass);
        assert_eq!(pass_if(false), Outcome::Fail);
    }

    #[test]
    fn a_report_with_a_failure_is_not_passed_in_json() {
        let start = Instant::now();
        let mut t = Transcript::new(start);
        t.record("worker-1", true, &[b"".to_vec(), b"MDPW01".to_vec()]);
        let report = Report {
            subject: "broker",
            endpoint: "tcp://x:1".into(),
            checks: vec![
                t.finish("one", Outcome::Fail, "no answer"),
                Check::skipped("two", "not asked"),
            ],
            observed: vec![("heartbeat_idle_ms", Value::from(2500))],
            notes: vec![],
        };
        let json = report.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["counts"]["fail"], 1);
        assert_eq!(json["dialect"]["heartbeat_idle_ms"], 2500);
        assert_eq!(
            json["checks"][0]["frames_seen"][0]["frames"][1]["hex"],
            "4d4450573031"
        );
        assert!(report.to_text().contains("FAIL one: no answer"));
    }
}
