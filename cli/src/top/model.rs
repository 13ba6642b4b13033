//! What `mdp top` shows, computed from the broker's answers: rows with a rate, the sort
//! order and the totals. Pure: the time of each sample is an input, so tests need no broker
//! and no clock.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use majordomo_worker::mmi::ServiceStats;

use crate::table::oldest;

/// The column titles, in the order of [`Row::cells`].
pub const HEADER: [&str; 7] = [
    "SERVICE", "WORKERS", "WAITING", "QUEUED", "SERVED", "RATE/S", "OLDEST",
];

/// One answer of the broker (or its absence), and when it came.
#[derive(Debug)]
pub struct Sample {
    /// For the rate: monotonic.
    pub at: Instant,
    /// For the header: the wall clock.
    pub wall: SystemTime,
    pub reading: Reading,
}

/// What the broker said.
#[derive(Debug)]
pub enum Reading {
    Load(Vec<ServiceStats>),
    /// It answered 501: the message to show instead of the table.
    NotSupported(String),
    /// No usable answer (a timeout, a socket error): the message to show.
    NoAnswer(String),
}

/// One service, with its rate of replies since the previous sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub stats: ServiceStats,
    /// Replies per second since the previous sample; `None` on the first sample, for a
    /// service that was not there, or one whose count went down (the broker forgot and
    /// re-created it, or restarted).
    pub rate: Option<f64>,
}

/// The sums over every row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub services: usize,
    pub workers: u64,
    pub waiting: u64,
    pub queued: u64,
    pub served: u64,
    /// `None` until a second sample gives rates.
    pub rate: Option<f64>,
}

/// One screen's worth: rows sorted, totals, or the reason there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub wall: SystemTime,
    pub rows: Vec<Row>,
    pub totals: Totals,
    /// The message shown instead of the table, if any.
    pub problem: Option<String>,
}

/// The first header line: what is watched, and when.
pub fn title(endpoint: &str, frame: &Frame) -> String {
    let time = humantime::format_rfc3339_seconds(frame.wall);
    format!("mdp top  {endpoint}  {time}")
}

/// The served counts of the previous sample: turns each sample into a frame with rates.
#[derive(Debug, Default)]
pub struct Rates {
    previous: Option<(Instant, HashMap<String, u64>)>,
}

impl Rates {
    /// The frame for `sample`; remembers its counts for the next one. A sample without a
    /// load keeps the counts of the last one that had it.
    pub fn frame(&mut self, sample: Sample) -> Frame {
        let services = match sample.reading {
            Reading::Load(services) => services,
            Reading::NotSupported(problem) | Reading::NoAnswer(problem) => {
                return Frame {
                    wall: sample.wall,
                    rows: Vec::new(),
                    totals: Totals::default(),
                    problem: Some(problem),
                };
            }
        };
        let mut rows: Vec<Row> = services
            .into_iter()
            .map(|stats| Row {
                rate: self.rate(sample.at, &stats),
                stats,
            })
            .collect();
        sort(&mut rows);
        let totals = totals(&rows, self.previous.is_some());
        self.previous = Some((sample.at, served_counts(&rows)));
        Frame {
            wall: sample.wall,
            rows,
            totals,
            problem: None,
        }
    }

    fn rate(&self, at: Instant, stats: &ServiceStats) -> Option<f64> {
        let (then, counts) = self.previous.as_ref()?;
        let seconds = at.checked_duration_since(*then)?.as_secs_f64();
        let before = *counts.get(&stats.name)?;
        let more = stats.served.checked_sub(before)?;
        (seconds > 0.0).then(|| more as f64 / seconds)
    }
}

/// The services that need a look first: the longest queue, then the busiest, then by name.
pub fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        b.stats
            .queued
            .cmp(&a.stats.queued)
            .then(b.rate.unwrap_or(0.0).total_cmp(&a.rate.unwrap_or(0.0)))
            .then_with(|| a.stats.name.cmp(&b.stats.name))
    });
}

fn totals(rows: &[Row], has_rates: bool) -> Totals {
    Totals {
        services: rows.len(),
        workers: rows.iter().map(|r| r.stats.workers).sum(),
        waiting: rows.iter().map(|r| r.stats.waiting).sum(),
        queued: rows.iter().map(|r| r.stats.queued).sum(),
        served: rows.iter().map(|r| r.stats.served).sum(),
        rate: has_rates.then(|| rows.iter().filter_map(|r| r.rate).sum()),
    }
}

fn served_counts(rows: &[Row]) -> HashMap<String, u64> {
    rows.iter()
        .map(|r| (r.stats.name.clone(), r.stats.served))
        .collect()
}

impl Row {
    /// The row as text, in the order of [`HEADER`].
    pub fn cells(&self) -> Vec<String> {
        let s = &self.stats;
        vec![
            s.name.clone(),
            s.workers.to_string(),
            s.waiting.to_string(),
            s.queued.to_string(),
            s.served.to_string(),
            rate(self.rate),
            oldest(s),
        ]
    }
}

/// `-` when unknown; one decimal below 10 per second, whole numbers above.
pub fn rate(rate: Option<f64>) -> String {
    match rate {
        None => "-".to_string(),
        Some(r) if r < 10.0 => format!("{r:.1}"),
        Some(r) => format!("{r:.0}"),
    }
}

/// The second line of the header: the totals.
pub fn summary(totals: &Totals) -> String {
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}  {} ({} waiting)  {} queued  {} served  {}/s",
        plural(totals.services as u64, "service"),
        plural(totals.workers, "worker"),
        totals.waiting,
        totals.queued,
        totals.served,
        rate(totals.rate)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stats(name: &str, queued: u64, served: u64) -> ServiceStats {
        ServiceStats {
            name: name.into(),
            workers: 2,
            waiting: 1,
            queued,
            served,
            oldest_queued: Duration::ZERO,
        }
    }

    fn sample(at: Instant, services: Vec<ServiceStats>) -> Sample {
        Sample {
            at,
            wall: SystemTime::UNIX_EPOCH,
            reading: Reading::Load(services),
        }
    }

    #[test]
    fn the_title_names_the_broker_and_the_time_of_the_frame() {
        let frame = Rates::default().frame(sample(Instant::now(), vec![]));
        assert_eq!(
            title("tcp://b:1", &frame),
            "mdp top  tcp://b:1  1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn the_rate_is_replies_since_the_previous_sample_per_second() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        let first = rates.frame(sample(t0, vec![stats("a", 0, 100)]));
        assert_eq!(first.rows[0].rate, None);
        assert_eq!(first.totals.rate, None);
        let later = t0 + Duration::from_secs(2);
        let second = rates.frame(sample(later, vec![stats("a", 0, 300), stats("b", 0, 5)]));
        let rate_of = |name: &str| {
            second
                .rows
                .iter()
                .find(|r| r.stats.name == name)
                .unwrap()
                .rate
        };
        assert_eq!(rate_of("a"), Some(100.0));
        assert_eq!(rate_of("b"), None, "b was not there before");
        assert_eq!(second.totals.rate, Some(100.0));
        assert_eq!(second.totals.served, 305);
    }

    #[test]
    fn a_count_that_went_down_has_no_rate_instead_of_a_negative_one() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.frame(sample(t0, vec![stats("a", 0, 100)]));
        let frame = rates.frame(sample(t0 + Duration::from_secs(1), vec![stats("a", 0, 3)]));
        assert_eq!(frame.rows[0].rate, None);
    }

    #[test]
    fn rows_sort_by_queue_then_rate_then_name() {
        let row = |name: &str, queued, rate| Row {
            stats: stats(name, queued, 0),
            rate,
        };
        let mut rows = vec![
            row("c", 0, None),
            row("b", 0, Some(5.0)),
            row("a", 0, None),
            row("z", 3, None),
        ];
        sort(&mut rows);
        let names: Vec<&str> = rows.iter().map(|r| r.stats.name.as_str()).collect();
        assert_eq!(names, ["z", "b", "a", "c"]);
    }

    #[test]
    fn a_broker_without_stats_gives_a_frame_with_its_message_and_no_rows() {
        let mut rates = Rates::default();
        let frame = rates.frame(Sample {
            at: Instant::now(),
            wall: SystemTime::UNIX_EPOCH,
            reading: Reading::NotSupported("not supported by this broker".into()),
        });
        assert!(frame.rows.is_empty());
        assert_eq!(
            frame.problem.as_deref(),
            Some("not supported by this broker")
        );
    }

    #[test]
    fn rates_read_with_one_decimal_only_when_small() {
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(2.24)), "2.2");
        assert_eq!(rate(Some(8123.4)), "8123");
    }
}
