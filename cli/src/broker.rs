//! `mdp broker`: the library's [`Broker`] as a production process: every [`BrokerConfig`]
//! option a flag, structured logs, a graceful stop on SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as ClapArgs, ValueEnum};
use majordomo_worker::broker::{
    Broker, BrokerConfig, BrokerError, BrokerStats, DEFAULT_LINGER, DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUED_TOTAL, DEFAULT_MAX_QUEUE_AGE, DEFAULT_MAX_SERVICES,
};
use majordomo_worker::config::{DEFAULT_HEARTBEAT, DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE};
use majordomo_worker::CurveKeys;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::error::{CliError, CliResult};

const AFTER_HELP: &str =
    "Logs go to stderr, at info level unless MDP_LOG says otherwise (MDP_LOG=debug, ...).
SIGINT/SIGTERM: DISCONNECT to every worker (unless --no-disconnect-on-stop), close, exit 0.
--curve-key-file takes a ZeroMQ certificate (zcert) secret file: the lines
'public-key = \"Z85\"' and 'secret-key = \"Z85\"'; --curve-clients one Z85 public key a
line. CURVE needs a libzmq built with it: the zmq crate's bundled one is not.

Example:
  mdp broker                                   # tcp://127.0.0.1:5555
  mdp broker --bind 'tcp://*:5555' --log-format json
  mdp broker --bind 'tcp://*:5555' --plain-users /etc/mdp/users   # lines of user:password
  mdp broker --metrics-addr 127.0.0.1:9100     # Prometheus: GET /metrics, GET /healthz";

/// Run an MDP/0.1 broker in the foreground.
#[derive(Debug, ClapArgs)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Endpoint to bind for clients and workers alike (tcp://*:5555 for every interface).
    #[arg(long, env = "MDP_BIND", default_value = "tcp://127.0.0.1:5555")]
    pub bind: String,

    /// Interval of the heartbeats to idle workers, in milliseconds.
    #[arg(long, default_value_t = millis(DEFAULT_HEARTBEAT), value_name = "MS")]
    pub heartbeat_ms: u64,

    /// Heartbeats of silence after which an idle worker is forgotten (a busy one too, once it
    /// has heartbeated while busy).
    #[arg(long, default_value_t = DEFAULT_LIVENESS)]
    pub liveness: u32,

    /// Requests queued per service while no worker is free.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUE)]
    pub max_queue: usize,

    /// Requests queued at once, all services together.
    #[arg(long, default_value_t = DEFAULT_MAX_QUEUED_TOTAL)]
    pub max_queued_total: usize,

    /// Services known at once.
    #[arg(long, default_value_t = DEFAULT_MAX_SERVICES)]
    pub max_services: usize,

    /// Drop a request that waited this long in a queue for a worker (e.g. 30s, 2m), or
    /// `off` to keep it until served.
    #[arg(long, value_parser = parse_queue_age, default_value_t = QueueAge(Some(DEFAULT_MAX_QUEUE_AGE)), value_name = "DURATION|off")]
    pub max_queue_age: QueueAge,

    /// Times the request of a worker lost while busy (expired, disconnected) is queued again
    /// for another worker. 0: answered by nobody. Only for idempotent work: it may run twice.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub requeue_on_worker_loss: u32,

    /// How long the closing socket may deliver its last messages, in milliseconds.
    #[arg(long, default_value_t = millis(DEFAULT_LINGER), value_name = "MS")]
    pub linger_ms: u64,

    /// Largest frame accepted from a peer, in bytes (a larger one drops its connection).
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_SIZE, value_name = "BYTES")]
    pub max_message_size: u64,

    /// Do not send DISCONNECT to the workers when stopping.
    #[arg(long)]
    pub no_disconnect_on_stop: bool,

    /// Accept only the ZMQ PLAIN users of FILE, one `user:password` a line (# comments).
    /// PLAIN sends passwords in clear text: access control, not confidentiality.
    #[arg(long, value_name = "FILE")]
    pub plain_users: Option<PathBuf>,

    /// Be a CURVE server with the key pair of FILE (a zcert secret file).
    #[arg(long, value_name = "FILE")]
    pub curve_key_file: Option<PathBuf>,

    /// With --curve-key-file, admit only the public keys of FILE (Z85, one a line).
    #[arg(long, value_name = "FILE")]
    pub curve_clients: Option<PathBuf>,

    /// Log lines as text or as one JSON object each.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// The `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// The `--max-queue-age`: a duration, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueAge(pub Option<Duration>);

impl std::fmt::Display for QueueAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(age) => write!(f, "{}", humantime::format_duration(age)),
            None => f.write_str("off"),
        }
    }
}

/// `off` or a duration; zero and out-of-range ones are left to the library to refuse, so
/// that the message names the field as everywhere else.
fn parse_queue_age(text: &str) -> Result<QueueAge, humantime::DurationError> {
    match text {
        "off" => Ok(QueueAge(None)),
        _ => humantime::parse_duration(text).map(|age| QueueAge(Some(age))),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Binds, serves until SIGINT/SIGTERM, stops gracefully.
pub fn run(args: Args) -> CliResult {
    let mut config = config(&args)?;
    let subscriber = subscriber(args.log_format);
    tracing::subscriber::with_default(subscriber, || {
        let serving = args.metrics.serve()?;
        if let Some(serving) = &serving {
            config = config.metrics(&serving.metrics);
        }
        let broker = Broker::bind(config).map_err(broker_error)?;
        broker.stop_handle().stop_on_signals()?;
        info!(endpoint = broker.endpoint(), "listening");
        let stats = broker.run().map_err(broker_error)?;
        log_stats(&stats);
        Ok(())
    })
}

/// The broker's own logs: info level by default, text or JSON, on stderr.
fn subscriber(format: LogFormat) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let filter = EnvFilter::try_from_env("MDP_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().finish()),
    }
}

fn log_stats(stats: &BrokerStats) {
    info!(
        requests_received = stats.requests_received,
        replies_routed = stats.replies_routed,
        requests_dropped = stats.requests_dropped + stats.requests_dropped_total_bound,
        requests_expired = stats.requests_expired,
        requests_requeued = stats.requests_requeued,
        requests_lost = stats.requests_lost,
        workers_registered = stats.workers_registered,
        workers_expired = stats.workers_expired,
        busy_workers_expired = stats.busy_workers_expired,
        malformed_dropped = stats.malformed_dropped,
        auth_denied = stats.auth_denied,
        "stopped"
    );
}

/// The library's configuration from the flags and files; the library validates it.
fn config(args: &Args) -> Result<BrokerConfig, CliError> {
    let mut config = BrokerConfig::new(&args.bind)
        .heartbeat(Duration::from_millis(args.heartbeat_ms))
        .liveness(args.liveness)
        .max_queue(args.max_queue)
        .max_queued_total(args.max_queued_total)
        .max_services(args.max_services)
        .max_queue_age(args.max_queue_age.0)
        .requeue_on_worker_loss(args.requeue_on_worker_loss)
        .linger(Duration::from_millis(args.linger_ms))
        .max_message_size(args.max_message_size)
        .disconnect_on_stop(!args.no_disconnect_on_stop);
    if let Some(file) = &args.plain_users {
        for (user, password) in plain_users(&read(file)?, file)? {
            config = config.plain_user(user, password);
        }
    }
    if let Some(file) = &args.curve_key_file {
        config = config.curve_server(curve_keys(&read(file)?, file)?);
    }
    if let Some(file) = &args.curve_clients {
        for key in curve_clients(&read(file)?, file)? {
            config = config.curve_client(key);
        }
    }
    config.validate()?;
    Ok(config)
}

fn read(file: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(file)
        .map_err(|error| CliError::Usage(format!("cannot read {}: {error}", file.display())))
}

/// Lines without comments and blanks, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// `user:password` lines; the password may hold ':' too. Never quotes a password back.
fn plain_users(text: &str, file: &Path) -> Result<Vec<(String, String)>, CliError> {
    lines(text)
        .map(|(number, line)| match line.split_once(':') {
            Some((user, password)) => Ok((user.to_string(), password.to_string())),
            None => Err(CliError::Usage(format!(
                "{}:{number}: expected user:password",
                file.display()
            ))),
        })
        .collect()
}

/// The key pair of a zcert secret file.
fn curve_keys(text: &str, file: &Path) -> Result<CurveKeys, CliError> {
    let mut public = None;
    let mut secret = None;
    for (number, line) in lines(text) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let slot = match name.trim() {
            "public-key" => &mut public,
            "secret-key" => &mut secret,
            _ => continue,
        };
        *slot = Some(z85_key(value.trim().trim_matches('"'), file, number)?);
    }
    match (public, secret) {
        (Some(public), Some(secret)) => Ok(CurveKeys::new(public, secret)),
        _ => Err(CliError::Usage(format!(
            "{}: needs both public-key and secret-key lines",
            file.display()
        ))),
    }
}

fn curve_clients(text: &str, file: &Path) -> Result<Vec<[u8; 32]>, CliError> {
    lines(text)
        .map(|(number, line)| z85_key(line, file, number))
        .collect()
}

fn z85_key(text: &str, file: &Path, line: usize) -> Result<[u8; 32], CliError> {
    zmq::z85_decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{}:{line}: not a CURVE key (40 Z85 characters)",
                file.display()
            ))
        })
}

fn broker_error(error: BrokerError) -> CliError {
    match error {
        BrokerError::Config(error) => CliError::Usage(error.to_string()),
        other => CliError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_user_files_skip_comments_and_keep_colons_in_passwords() {
        let file = Path::new("users");
        let users = plain_users("# ops\nalice:s3:cret\n\n  bob:pw  \n", file).unwrap();
        assert_eq!(
            users,
            vec![
                ("alice".into(), "s3:cret".into()),
                ("bob".into(), "pw".into())
            ]
        );
        let error = plain_users("alice\n", file).unwrap_err();
        assert_eq!(error.to_string(), "users:1: expected user:password");
    }

    #[test]
    fn zcert_secret_files_give_the_key_pair() {
        let public = zmq::z85_encode(&[1u8; 32]).unwrap();
        let secret = zmq::z85_encode(&[2u8; 32]).unwrap();
        let text = format!(
            "#   ZeroMQ CURVE **Secret** Certificate\nmetadata\ncurve\n    public-key = \"{public}\"\n    secret-key = \"{secret}\"\n"
        );
        let keys = curve_keys(&text, Path::new("broker.key_secret")).unwrap();
        assert_eq!(keys, CurveKeys::new([1; 32], [2; 32]));
        assert!(curve_keys("public-key = \"x\"", Path::new("k")).is_err());
    }

    #[test]
    fn flag_values_reach_the_config_and_bad_ones_get_the_librarys_message() {
        let parse = |extra: &[&str]| {
            let argv = ["mdp", "broker"].iter().chain(extra).copied();
            let crate::Command::Broker(args) = <crate::Cli as clap::Parser>::try_parse_from(argv)
                .expect("parse")
                .command
            else {
                panic!("not the broker subcommand");
            };
            config(&args)
        };
        let defaults = format!("{:?}", parse(&[]).expect("defaults"));
        assert!(defaults.contains("max_queue_age: Some(30s)"), "{defaults}");
        assert!(defaults.contains("requeue_on_worker_loss: 0"), "{defaults}");
        let set = parse(&["--max-queue-age", "2m", "--requeue-on-worker-loss", "2"]);
        let set = format!("{:?}", set.expect("valid flags"));
        assert!(set.contains("max_queue_age: Some(120s)"), "{set}");
        assert!(set.contains("requeue_on_worker_loss: 2"), "{set}");
        let off = format!("{:?}", parse(&["--max-queue-age", "off"]).expect("off"));
        assert!(off.contains("max_queue_age: None"), "{off}");
        let error = parse(&["--max-queue-age", "0s"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "max_queue_age = 0 ms is invalid: must be greater than zero"
        );
        for bad in ["-1", "x", "4294967296"] {
            let argv = ["mdp", "broker", "--requeue-on-worker-loss", bad];
            assert!(
                <crate::Cli as clap::Parser>::try_parse_from(argv).is_err(),
                "{bad}"
            );
        }
        let argv = ["mdp", "broker", "--max-queue-age", "soon"];
        assert!(<crate::Cli as clap::Parser>::try_parse_from(argv).is_err());
        let error = parse(&["--liveness", "0"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "liveness = 0 is invalid: must be at least 1"
        );
        assert!(matches!(error, CliError::Usage(_)));
    }
}
