//! `mdp services`: the services the broker knows (`mmi.services`) and their load
//! (`mmi.stats`), as a table or one JSON object. Both are extensions of our broker; any
//! other broker answers 501, reported as "not supported by this broker".

use std::io::Write;
use std::time::Duration;

use clap::Args as ClapArgs;
use majordomo_worker::client::{Client, ClientConfig, ClientError};
use majordomo_worker::mmi::ServiceStats;

use crate::call::{broker_error, client_error};
use crate::error::CliResult;
use crate::worker::DEFAULT_BROKER;

const AFTER_HELP: &str =
    "Columns: WORKERS registered (busy or idle), WAITING idle, QUEUED requests waiting for a
worker, SERVED replies routed since the broker (last) created the service, OLDEST age of
the oldest queued request (- when none is queued). Only our broker (`mdp broker`, the
library's Broker) lists its services and their load; others cannot.

Exit status: 0 the list was printed (possibly empty); 1 no answer within --timeout, or the
broker does not list its services (\"this broker does not list its services\" on stderr);
2 usage error; 3 any other failure; 4 nothing answers at the broker endpoint(s).

Example:
  mdp services                  # SERVICE  WORKERS  WAITING  QUEUED  SERVED  OLDEST
                                # echo           4        4       0    1200       -
  mdp services --json | jq '.services[] | select(.queued > 0) | .name'
  MDP_BROKER=tcp://10.0.0.5:5555 mdp services";

/// List the services the broker knows, with their workers and load.
#[derive(Debug, ClapArgs)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Broker endpoint, or a comma-separated list to fail over between.
    #[arg(long, env = "MDP_BROKER", default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// How long to wait for each of the broker's answers (e.g. 1s, 300ms).
    #[arg(long, default_value = "2500ms", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Asks the broker once and prints what it said.
pub fn run(args: Args) -> CliResult {
    let mut client = connect(&args.broker, args.timeout)?;
    let services =
        load(&mut client).map_err(|error| broker_error(error, &args.broker, args.timeout))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json(&args.broker, &services))?;
    } else {
        write!(out, "{}", table(&services))?;
    }
    Ok(())
}

/// A client that waits `timeout` for each answer and does not retry (a lookup is cheap to
/// ask again, and a refresh loop asks again anyway).
pub fn connect(broker: &str, timeout: Duration) -> Result<Client, crate::error::CliError> {
    let config = ClientConfig::new(broker).timeout(timeout).retries(0);
    Client::connect(config).map_err(client_error)
}

/// Every service the broker knows, with its load, in the broker's (bytewise) name order.
///
/// `mmi.services` first: it is the listing, and a 501 to it is the clear "not supported"
/// answer. Then `mmi.stats` with no name, which reports every known service in one
/// snapshot, with the raw names (asking by the listed names would send their lossy text).
///
/// # Errors
///
/// [`ClientError::Unsupported`] from a broker without these extensions, and whatever
/// [`Client::request`] returns.
pub fn load(client: &mut Client) -> Result<Vec<ServiceStats>, ClientError> {
    client.services()?;
    client.service_stats(&[])
}

/// The OLDEST column: `-` when nothing is queued, else the age of the oldest request.
pub fn oldest(service: &ServiceStats) -> String {
    if service.queued == 0 {
        return "-".to_string();
    }
    age(service.oldest_queued)
}

/// Milliseconds, seconds, or minutes and seconds (`<1ms` below a millisecond).
fn age(age: Duration) -> String {
    let ms = age.as_millis();
    match ms {
        0 => "<1ms".to_string(),
        1..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", age.as_secs_f64()),
        _ => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

/// Columns laid out for a terminal: the first left-aligned, the others right-aligned,
/// two spaces between.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| match i {
                0 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn table(services: &[ServiceStats]) -> String {
    let header = [
        "SERVICE", "WORKERS", "WAITING", "QUEUED", "SERVED", "OLDEST",
    ];
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.workers.to_string(),
                s.waiting.to_string(),
                s.queued.to_string(),
                s.served.to_string(),
                oldest(s),
            ]
        })
        .collect();
    columns(&header, &rows)
}

fn json(broker: &str, services: &[ServiceStats]) -> serde_json::Value {
    let services: Vec<serde_json::Value> = services
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "workers": s.workers,
                "waiting": s.waiting,
                "queued": s.queued,
                "served": s.served,
                "oldest_queued_ms": s.oldest_queued.as_millis() as u64,
            })
        })
        .collect();
    serde_json::json!({ "broker": broker, "services": services })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> ServiceStats {
        ServiceStats {
            name: "echo".into(),
            workers: 4,
            waiting: 3,
            queued: 12,
            served: 1200,
            oldest_queued: Duration::from_millis(1500),
        }
    }

    #[test]
    fn the_oldest_age_is_a_dash_only_when_nothing_is_queued() {
        let ms = Duration::from_millis;
        let idle = ServiceStats {
            queued: 0,
            ..echo()
        };
        assert_eq!(oldest(&idle), "-");
        let just_queued = ServiceStats {
            oldest_queued: ms(0),
            ..echo()
        };
        assert_eq!(oldest(&just_queued), "<1ms");
        assert_eq!(age(ms(0)), "<1ms");
        assert_eq!(age(ms(350)), "350ms");
        assert_eq!(age(ms(1500)), "1.5s");
        assert_eq!(age(ms(185_000)), "3m05s");
    }

    #[test]
    fn the_table_aligns_names_left_and_numbers_right() {
        let text = table(&[echo()]);
        assert_eq!(
            text,
            "SERVICE  WORKERS  WAITING  QUEUED  SERVED  OLDEST\n\
             echo           4        3      12    1200    1.5s\n"
        );
        assert_eq!(table(&[]).lines().count(), 1);
    }

    #[test]
    fn the_json_names_every_column() {
        let value = json("tcp://b:1", &[echo()]);
        assert_eq!(value["broker"], "tcp://b:1");
        assert_eq!(value["services"][0]["name"], "echo");
        assert_eq!(value["services"][0]["queued"], 12);
        assert_eq!(value["services"][0]["oldest_queued_ms"], 1500);
    }
}
