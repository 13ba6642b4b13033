//! A one-shot MDP/0.1 client: sends one request, prints the reply frames, one per line
//! (text as is, anything else as hex).
//!
//! ```text
//! cargo run --example broker &
//! cargo run --example client -- --broker tcp://127.0.0.1:5555 --service echo hello world
//! cargo run --example client -- --service mmi.service echo   # 200 if echo has workers
//! ```
//!
//! Exit code: 0 on a reply, 1 on timeout, 2 on bad arguments, 3 on any other error.

use std::process::ExitCode;
use std::time::Duration;

use majordomo_worker::client::{Client, ClientConfig, ClientError};
use tracing_subscriber::EnvFilter;

const USAGE: &str =
    "usage: client [--broker ENDPOINT] [--service NAME] [--timeout-ms MS] [--retries N] [FRAME...]
  --broker      broker endpoint (default tcp://127.0.0.1:5555)
  --service     service to call (default echo)
  --timeout-ms  reply timeout per attempt, in ms (default 2500)
  --retries     attempts after the first, each on a new socket (default 3)";

struct Args {
    config: ClientConfig,
    service: String,
    body: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match request(args) {
        Ok(reply) => {
            reply.iter().for_each(|frame| println!("{}", show(frame)));
            ExitCode::SUCCESS
        }
        Err(error @ ClientError::Timeout { .. }) => {
            eprintln!("client: {error}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("client: {error}");
            ExitCode::from(3)
        }
    }
}

fn request(args: Args) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut client = Client::connect(args.config)?;
    client.request(&args.service, &args.body)
}

fn show(frame: &[u8]) -> String {
    match std::str::from_utf8(frame) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_string(),
        _ => frame.iter().map(|b| format!("{b:02x}")).collect::<String>() + " (hex)",
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut broker, mut service) = ("tcp://127.0.0.1:5555".to_string(), "echo".to_string());
    let (mut timeout_ms, mut retries, mut body) = (2500, 3, Vec::new());
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            body.push(arg);
            continue;
        }
        let value = args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--broker" => broker = value?,
            "--service" => service = value?,
            "--timeout-ms" => timeout_ms = number(&arg, value?)?,
            "--retries" => retries = number(&arg, value?)?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let config = ClientConfig::new(broker)
        .timeout(Duration::from_millis(timeout_ms))
        .retries(retries);
    config.validate().map_err(|error| error.to_string())?;
    Ok(Args {
        config,
        service,
        body,
    })
}

fn number<T: std::str::FromStr>(flag: &str, value: String) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value} is not a valid number"))
}
