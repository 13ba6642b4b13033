//! `mdp ping SERVICE`: asks the broker (8/MMI `mmi.service`) whether SERVICE has workers,
//! and how long the round trip took.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use majordomo_worker::client::{Client, ClientConfig, ClientError};

use crate::client::DEFAULT_BROKER;
use crate::error::{broker_error, client_error, CliError, CliResult};

const AFTER_HELP: &str = "Exit status: 0 the service has workers; 1 it has none (\"no worker for `SERVICE`\"), the
broker did not answer, or it cannot tell (a broker without 8/MMI service lookups: \"this
broker does not answer service lookups\", since it cannot say yes); 2 usage error; 3 any
other failure; 4 nothing answers at the broker endpoint(s).

Example:
  mdp ping echo                 # stdout: echo: has workers (round trip 0.31 ms)
  mdp ping echo --json          # {\"rtt_ms\":0.31,\"service\":\"echo\",\"supported\":true,\"workers\":true}
  until mdp ping echo; do sleep 1; done";

/// Ask the broker whether SERVICE has workers.
#[derive(Debug, ClapArgs)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The service to look up.
    pub service: String,

    /// Broker endpoint, or a comma-separated list to fail over between.
    #[arg(long, env = "MDP_BROKER", default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// How long each attempt waits for the broker's answer (e.g. 1s, 300ms).
    #[arg(long, default_value = "2500ms", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Attempts after the first.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,

    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// What the broker said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Workers,
    NoWorkers,
    NotSupported,
}

/// Looks the service up once and reports it.
pub fn run(args: Args) -> CliResult {
    let config = ClientConfig::new(&args.broker)
        .timeout(args.timeout)
        .retries(args.retries);
    let mut client = Client::connect(config).map_err(client_error)?;
    let started = Instant::now();
    let answer = answer(client.has_service(&args.service))
        .map_err(|error| broker_error(error, &args.broker, args.timeout))?;
    let rtt = started.elapsed();
    let sentence = sentence(&args.service, answer, rtt);
    if args.json {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            json(&args.service, answer, rtt)
        )?;
    }
    match answer {
        Answer::Workers if !args.json => {
            writeln!(std::io::stdout().lock(), "{sentence}")?;
            Ok(())
        }
        Answer::Workers => Ok(()),
        // On stderr, as every other reason for exit status 1.
        _ => Err(CliError::NoAnswer(sentence)),
    }
}

/// The lookup's result: 501 (no MMI) and the JeroMQ broker's 400 (its "not found") are
/// answers, not failures.
fn answer(result: Result<bool, ClientError>) -> Result<Answer, ClientError> {
    match result {
        Ok(true) => Ok(Answer::Workers),
        Ok(false) => Ok(Answer::NoWorkers),
        Err(ClientError::UnexpectedMmiCode { code }) if code == "400" => Ok(Answer::NoWorkers),
        Err(ClientError::UnexpectedMmiCode { code }) if code == "501" => Ok(Answer::NotSupported),
        Err(error) => Err(error),
    }
}

fn json(service: &str, answer: Answer, rtt: Duration) -> serde_json::Value {
    let rtt_ms = rtt.as_secs_f64() * 1000.0;
    serde_json::json!({
        "service": service,
        "workers": answer == Answer::Workers,
        "supported": answer != Answer::NotSupported,
        "rtt_ms": (rtt_ms * 1000.0).round() / 1000.0,
    })
}

fn sentence(service: &str, answer: Answer, rtt: Duration) -> String {
    let rtt_ms = rtt.as_secs_f64() * 1000.0;
    match answer {
        Answer::Workers => format!("{service}: has workers (round trip {rtt_ms:.2} ms)"),
        Answer::NoWorkers => format!("no worker for `{service}` (round trip {rtt_ms:.2} ms)"),
        Answer::NotSupported => format!(
            "{service}: cannot tell: this broker does not answer service lookups \
             (round trip {rtt_ms:.2} ms)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmi_codes_become_answers() {
        let code = |code: &str| {
            Err(ClientError::UnexpectedMmiCode {
                code: code.to_string(),
            })
        };
        assert_eq!(answer(Ok(true)).unwrap(), Answer::Workers);
        assert_eq!(answer(Ok(false)).unwrap(), Answer::NoWorkers);
        assert_eq!(answer(code("400")).unwrap(), Answer::NoWorkers);
        assert_eq!(answer(code("501")).unwrap(), Answer::NotSupported);
        assert!(matches!(
            answer(code("500")),
            Err(ClientError::UnexpectedMmiCode { .. })
        ));
    }

    #[test]
    fn no_sentence_names_the_brokers_own_services() {
        let rtt = Duration::from_micros(310);
        for answer in [Answer::Workers, Answer::NoWorkers, Answer::NotSupported] {
            assert!(!sentence("echo", answer, rtt).contains("mmi"), "{answer:?}");
        }
        assert_eq!(
            sentence("nosuch", Answer::NoWorkers, rtt),
            "no worker for `nosuch` (round trip 0.31 ms)"
        );
    }
}
