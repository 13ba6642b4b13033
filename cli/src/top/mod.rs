//! `mdp top [ENDPOINT]`: the load of every service of a broker, refreshed in the terminal
//! like `top`. Without a terminal (or with `--once`), one plain-text frame of the same table.
//!
//! A sampler thread asks the broker (`mmi.services`, `mmi.stats`) every `--interval` and
//! sends each answer to the screen loop, which turns it into a frame ([`model`]) and draws it
//! ([`screen`]); so a slow broker never delays a key press.

mod model;
mod screen;

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use clap::Args as ClapArgs;
use majordomo_worker::client::{Client, ClientError};
use tracing::subscriber::NoSubscriber;

use crate::client::{self, DEFAULT_BROKER};
use crate::error::{broker_error, CliError, CliResult};
use crate::table::columns;
use model::{Frame, Rates, Reading, Sample, HEADER};

const AFTER_HELP: &str =
    "Columns: as `mdp services`, and RATE/S, replies served per second since the previous
refresh (\"-\" on the first). Rows: the longest queue first, then the highest rate, then by
name. Keys: q, Esc or Ctrl-C quit. A broker that cannot list its services (any broker but
ours) shows \"this broker does not list its services\"; one that does not answer shows why,
and top keeps asking.

Without a terminal on stdout, or with --once, prints one frame as plain text and exits:
0 it had the load, 1 no answer or not supported, 2 usage error, 3 any other failure,
4 nothing answers at the broker endpoint(s).

Example:
  mdp top                                 # the broker at $MDP_BROKER or tcp://127.0.0.1:5555
  mdp top tcp://10.0.0.5:5555 --interval 2s
  mdp top --once | grep echo              # one snapshot for a script";

/// Watch the load of every service, refreshed like `top`.
#[derive(Debug, ClapArgs)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Broker endpoint (or a comma-separated list to fail over between); wins over --broker
    /// and MDP_BROKER.
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: Option<String>,

    /// Broker endpoint or list, when ENDPOINT is not given.
    #[arg(long, env = "MDP_BROKER", default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// Time between refreshes (at least 100ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,

    /// How long to wait for each of the broker's answers.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Print one plain-text frame and exit, even on a terminal.
    #[arg(long)]
    pub once: bool,
}

/// Refreshing below this would mostly measure the tool itself.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// One frame when asked or without a terminal, else the live screen until a quit key.
pub fn run(args: Args) -> CliResult {
    if args.interval < MIN_INTERVAL {
        return Err(CliError::Usage("--interval must be at least 100ms".into()));
    }
    let endpoint = args.endpoint.unwrap_or(args.broker);
    let mut client = client::lookups(&endpoint, args.timeout)?;
    let broker = Broker {
        endpoint: endpoint.clone(),
        timeout: args.timeout,
    };
    if args.once || !std::io::stdout().is_terminal() {
        return once(&broker, &mut client);
    }
    screen::run(&endpoint, spawn_sampler(client, broker, args.interval))
}

/// The broker watched, for the words of a missing answer.
struct Broker {
    endpoint: String,
    timeout: Duration,
}

impl Broker {
    fn error(&self, error: ClientError) -> CliError {
        broker_error(error, &self.endpoint, self.timeout)
    }
}

/// One sample printed; the exit status says whether it had the load.
fn once(broker: &Broker, client: &mut Client) -> CliResult {
    let (sample, error) = match client::service_load(client) {
        Ok(load) => (sample(Reading::Load(load)), None),
        Err(error @ ClientError::Unsupported { .. }) => {
            let error = broker.error(error);
            (
                sample(Reading::NotSupported(error.to_string())),
                Some(error),
            )
        }
        Err(error) => return Err(broker.error(error)),
    };
    let frame = Rates::default().frame(sample);
    write!(
        std::io::stdout().lock(),
        "{}",
        plain(&broker.endpoint, &frame)
    )?;
    error.map_or(Ok(()), Err)
}

/// Asks the broker every `interval` on a thread of its own, until the screen loop is gone.
fn spawn_sampler(mut client: Client, broker: Broker, interval: Duration) -> Receiver<Sample> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        // The screen shows why an answer is missing; a log line on stderr would only
        // scribble over it.
        let _quiet = tracing::subscriber::set_default(NoSubscriber::default());
        loop {
            let next = Instant::now() + interval;
            if sender.send(sample(reading(&broker, &mut client))).is_err() {
                return;
            }
            thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    receiver
}

/// The broker's answer; a missing one is shown, not fatal: the next refresh asks again.
fn reading(broker: &Broker, client: &mut Client) -> Reading {
    match client::service_load(client) {
        Ok(load) => Reading::Load(load),
        Err(error @ ClientError::Unsupported { .. }) => {
            Reading::NotSupported(broker.error(error).to_string())
        }
        Err(error) => Reading::NoAnswer(broker.error(error).to_string()),
    }
}

fn sample(reading: Reading) -> Sample {
    Sample {
        at: Instant::now(),
        wall: SystemTime::now(),
        reading,
    }
}

/// A frame as plain text: the header, then the table or the problem.
fn plain(endpoint: &str, frame: &Frame) -> String {
    let mut text = format!("{}\n", model::title(endpoint, frame));
    match &frame.problem {
        Some(problem) => text.push_str(&format!("\n{problem}\n")),
        None => {
            text.push_str(&format!("{}\n\n", model::summary(&frame.totals)));
            let rows: Vec<Vec<String>> = frame.rows.iter().map(|r| r.cells()).collect();
            text.push_str(&columns(&HEADER, &rows));
        }
    }
    text
}
