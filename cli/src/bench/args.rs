//! The flags of `mdp bench`, which every part of the bench reads.

use std::time::Duration;

use clap::Args as ClapArgs;

/// Digits of the request id at the start of every body: the smallest `--size`.
pub(super) const ID_DIGITS: usize = 12;

/// Load a broker with echo requests; report throughput, latency and errors.
#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Without --broker (or MDP_BROKER), it starts its own broker and echo workers: \
no setup needed. Every request body is unique (a sequence number, then filler) and every reply \
must be its exact echo. The progress bar shows on a terminal only; the report goes to stdout. \
Exit status: 0 if every request got exactly one correct reply, 1 if not, 2 for a bad flag, \
3 if the load could not run.

Examples:
  mdp bench                                  # embedded: broker + 4 echo workers, 100 000 requests
  mdp bench --kill-one                       # the same, one worker SIGKILLed half-way and restarted
  mdp bench --clients 16 --in-flight 8 --size 1024 --requests 1000000
  mdp bench --broker tcp://127.0.0.1:5555 --service echo --json | jq .latency_us"
)]
pub struct Args {
    /// Clients, each with its own connections to the broker.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,

    /// Requests in all, shared out between the clients.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub requests: u64,

    /// Bytes per request body (at least 12: the body starts with its 12-digit id).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(12..=256 * 1024 * 1024))]
    pub size: u32,

    /// The service to load; embedded workers register under this name.
    #[arg(long, default_value = "echo")]
    pub service: String,

    /// Requests each client keeps in flight at once (each on a socket of its own).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub in_flight: u32,

    /// How long a request waits for its reply before it is sent again: 500ms, 2s, 1.5s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How many times a request is sent again (on a new socket) after a timeout.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,

    /// Load this broker (or comma-separated list to fail over between) instead of an
    /// embedded one (its workers are someone else's).
    #[arg(long, env = "MDP_BROKER", value_name = "ENDPOINT")]
    pub broker: Option<String>,

    /// Embedded echo workers.
    #[arg(long, default_value_t = 4, conflicts_with = "broker",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub workers: u32,

    /// Kill one embedded worker with SIGKILL half-way and start another (a crash).
    #[arg(long, conflicts_with = "broker")]
    pub kill_one: bool,

    /// Print the report as one JSON object, and nothing else on stdout.
    #[arg(long)]
    pub json: bool,

    /// Runs the killable echo worker of `--kill-one` against ENDPOINT, until stdin closes.
    #[arg(long, hide = true, value_name = "ENDPOINT")]
    pub child_worker: Option<String>,
}

/// Parses `500ms`, `2s` or `1.5s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(number) => (number, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(""), 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration like 500ms or 2s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_must_be_positive() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "0s", "-1s", "fast", "1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
