//! `mdp services`: the services the broker knows (`mmi.services`) and their load
//! (`mmi.stats`), as a table or one JSON object. Both are extensions of our broker; any
//! other broker answers 501, reported as "not supported by this broker".

use std::io::Write;
use std::time::Duration;

use clap::Args as ClapArgs;
use majordomo_worker::mmi::ServiceStats;

use crate::client::{self, DEFAULT_BROKER};
use crate::error::{broker_error, CliResult};
use crate::table::{columns, oldest};

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
    let mut client = client::lookups(&args.broker, args.timeout)?;
    let services = client::service_load(&mut client)
        .map_err(|error| broker_error(error, &args.broker, args.timeout))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", json(&args.broker, &services))?;
    } else {
        write!(out, "{}", table(&services))?;
    }
    Ok(())
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
