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

/// A one-shot MDP/0.1 client.
#[derive(Debug, clap::Parser)]
struct Cli {
    /// Broker endpoint.
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    broker: String,
    /// Service to call.
    #[arg(long, default_value = "echo")]
    service: String,
    /// Reply timeout per attempt, in ms.
    #[arg(long, default_value_t = 2500)]
    timeout_ms: u64,
    /// Attempts after the first, each on a new socket.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// The request body, one frame per argument.
    body: Vec<String>,
}

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
    let cli = <Cli as clap::Parser>::parse();
    let config = ClientConfig::new(cli.broker)
        .timeout(Duration::from_millis(cli.timeout_ms))
        .retries(cli.retries);
    if let Err(error) = config.validate() {
        eprintln!("client: {error}");
        return ExitCode::from(2);
    }
    let args = Args {
        config,
        service: cli.service,
        body: cli.body,
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
