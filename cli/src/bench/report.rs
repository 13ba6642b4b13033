//! The report of `mdp bench`: for people by default, one JSON object with `--json`.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use majordomo_worker::broker::BrokerStats;
use serde_json::{json, Value};

use super::args::Args;
use super::load::{Load, Stop};
use crate::error::{CliError, CliResult};

/// The kill and restart of the child worker (`--kill-one`).
#[derive(Debug, Clone)]
pub(super) struct KillReport {
    /// Requests done when the kill happened.
    pub(super) at: u64,
    pub(super) killed_pid: u32,
    pub(super) restarted_pid: u32,
    /// From the kill to the replacement's start.
    pub(super) restart_took: Duration,
}

impl fmt::Display for KillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker pid {} killed with SIGKILL after {} requests; restarted as pid {} ({:.1} ms later)",
            self.killed_pid,
            grouped(self.at),
            self.restarted_pid,
            millis(self.restart_took)
        )
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    min: u64,
    mean: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p99_9: u64,
    max: u64,
}

impl Latency {
    fn new(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                min: 0,
                mean: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p99_9: 0,
                max: 0,
            };
        }
        Latency {
            min: histogram.min(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p99_9: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// Everything `mdp bench` found out.
#[derive(Debug)]
pub(super) struct Report {
    endpoint: String,
    service: String,
    /// Embedded workers; `None` for an external broker.
    workers: Option<u32>,
    kill_one: bool,
    clients: u32,
    in_flight: u32,
    size: u32,
    timeout: Duration,
    retries: u32,
    requests: u64,
    sent: u64,
    replies: u64,
    correct: u64,
    retried: u64,
    timeouts: u64,
    wrong_replies: u64,
    other_errors: u64,
    lost: u64,
    duplicated: u64,
    elapsed: Duration,
    latency: Latency,
    kill: Option<KillReport>,
    broker: Option<BrokerStats>,
    /// Stopped early: the first request timed out on every attempt and nothing ever answered.
    given_up: bool,
    /// Why it stopped early, when the client said why.
    stopped: Option<Stop>,
}

impl Report {
    pub(super) fn new(
        args: &Args,
        load: &Load,
        latencies: Histogram<u64>,
        elapsed: Duration,
        kill: Option<KillReport>,
        broker: Option<BrokerStats>,
    ) -> Report {
        let c = &load.counters;
        let (lost, duplicated) = load.tally();
        Report {
            endpoint: load.plan.endpoint.clone(),
            service: load.plan.service.clone(),
            workers: args.broker.is_none().then_some(args.workers),
            kill_one: args.kill_one,
            clients: args.clients,
            in_flight: args.in_flight,
            size: args.size,
            timeout: args.timeout,
            retries: args.retries,
            requests: load.requests(),
            sent: c.sent.load(Ordering::Relaxed),
            replies: c.replies.load(Ordering::Relaxed),
            correct: c.correct.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            wrong_replies: c.wrong_replies.load(Ordering::Relaxed),
            other_errors: c.other_errors.load(Ordering::Relaxed),
            lost,
            duplicated,
            elapsed,
            latency: Latency::new(&latencies),
            kill,
            broker,
            given_up: load.given_up(),
            stopped: load.stopped().cloned(),
        }
    }

    fn errors(&self) -> u64 {
        self.timeouts + self.wrong_replies + self.other_errors
    }

    /// Whether every request got exactly one correct reply.
    fn is_ok(&self) -> bool {
        self.errors() == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.correct == self.requests
    }

    /// Correct replies per second.
    fn throughput(&self) -> f64 {
        self.correct as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Writes the report to stdout, as text or as one JSON object.
    pub(super) fn print(&self, json: bool) -> CliResult {
        let mut stdout = io::stdout().lock();
        if json {
            writeln!(stdout, "{}", self.to_json())?;
        } else {
            writeln!(stdout, "{self}")?;
        }
        Ok(())
    }

    /// Ok, or the check failed (exit code 1).
    pub(super) fn verdict(&self) -> CliResult {
        if self.is_ok() {
            return Ok(());
        }
        match &self.stopped {
            Some(Stop::NoWorker(why)) => return Err(CliError::NoAnswer(format!("bench: {why}"))),
            Some(Stop::Unreachable(why)) => {
                return Err(CliError::Unreachable(format!("bench: {why}")))
            }
            None => {}
        }
        if self.given_up {
            return Err(CliError::NoAnswer(format!(
                "bench: no reply at all from service {:?} on {}: is the broker up, with workers for it?",
                self.service, self.endpoint
            )));
        }
        Err(CliError::NoAnswer(format!(
            "bench: {} of {} requests without exactly one correct reply ({} errors, {} lost, {} duplicated)",
            self.requests - self.correct.min(self.requests),
            self.requests,
            self.errors(),
            self.lost,
            self.duplicated
        )))
    }

    pub(super) fn to_json(&self) -> Value {
        let l = &self.latency;
        json!({
            "mode": if self.workers.is_some() { "embedded" } else { "external" },
            "broker": self.endpoint,
            "service": self.service,
            "workers": self.workers,
            "clients": self.clients,
            "in_flight": self.in_flight,
            "size": self.size,
            "timeout_ms": self.timeout.as_millis() as u64,
            "retries": self.retries,
            "requests": self.requests,
            "sent": self.sent,
            "replies": self.replies,
            "correct": self.correct,
            "retried": self.retried,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "errors": {
                "total": self.errors(),
                "timeouts": self.timeouts,
                "wrong_replies": self.wrong_replies,
                "other": self.other_errors,
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_rps": self.throughput(),
            "latency_us": {
                "min": l.min, "mean": l.mean, "p50": l.p50, "p90": l.p90,
                "p99": l.p99, "p99_9": l.p99_9, "max": l.max,
            },
            "kill": self.kill.as_ref().map(|k| json!({
                "at": k.at,
                "killed_pid": k.killed_pid,
                "restarted_pid": k.restarted_pid,
                "restart_ms": millis(k.restart_took),
            })),
            "broker_stats": self.broker.as_ref().map(|b| json!({
                "requests_received": b.requests_received,
                "requests_dispatched": b.requests_dispatched,
                "replies_routed": b.replies_routed,
                "requests_undelivered": b.requests_undelivered,
                "workers_registered": b.workers_registered,
            })),
            "given_up": self.given_up,
            "ok": self.is_ok(),
        })
    }

    fn describe_setup(&self) -> String {
        let clients = format!("{} clients × {} in flight", self.clients, self.in_flight);
        match self.workers {
            Some(workers) if self.kill_one => {
                format!("embedded broker, {workers} echo workers (1 in a child process), {clients}")
            }
            Some(workers) => format!("embedded broker, {workers} echo workers, {clients}"),
            None => format!("external broker, {clients}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency;
        let us = |v: u64| format!("{:.2} ms", v as f64 / 1e3);
        writeln!(
            f,
            "mdp bench: {} requests of {} bytes to {:?} on {}",
            grouped(self.requests),
            self.size,
            self.service,
            self.endpoint
        )?;
        writeln!(f, "  setup        {}", self.describe_setup())?;
        writeln!(f, "  elapsed      {:.2} s", self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  throughput   {} req/s",
            grouped(self.throughput() as u64)
        )?;
        writeln!(
            f,
            "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.p99_9),
            us(l.max)
        )?;
        writeln!(
            f,
            "  replies      {} correct of {} received (each checked: the exact echo of its request)",
            grouped(self.correct),
            grouped(self.replies)
        )?;
        writeln!(
            f,
            "  errors       {} (timeouts {}, wrong replies {}, other {})",
            grouped(self.errors()),
            self.timeouts,
            self.wrong_replies,
            self.other_errors
        )?;
        writeln!(
            f,
            "  retried      {} (sent again on a new socket after a {} ms timeout)",
            grouped(self.retried),
            self.timeout.as_millis()
        )?;
        writeln!(f, "  lost         {}", grouped(self.lost))?;
        writeln!(f, "  duplicated   {}", grouped(self.duplicated))?;
        match (&self.kill, self.kill_one) {
            (Some(kill), _) => writeln!(f, "  kill         {kill}")?,
            (None, true) => writeln!(f, "  kill         did not happen")?,
            (None, false) => {}
        }
        if let Some(b) = &self.broker {
            writeln!(
                f,
                "  broker       {} received, {} dispatched, {} replies routed",
                grouped(b.requests_received),
                grouped(b.requests_dispatched),
                grouped(b.replies_routed)
            )?;
        }
        let verdict = if self.is_ok() {
            "OK: every request got exactly one correct reply"
        } else {
            "FAILED: some requests got no reply, a wrong one, or more than one"
        };
        write!(f, "  result       {verdict}")
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `1234567` as `1 234 567`.
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1 000");
        assert_eq!(grouped(1_234_567), "1 234 567");
    }
}
