//! The one error type of the tool, and the exit codes it maps to.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (a reply, a service that exists, every check passed) |
//! | 1 | no reply in time, the service has no worker, or a check failed |
//! | 2 | usage error: a bad flag or value (clap's own code too) |
//! | 3 | anything else: a socket, process or I/O failure |
//! | 4 | nothing answers at the broker endpoint(s): no connection ever came up |
//!
//! Per subcommand:
//! - `mdp call`: 0 a reply came (an error reply from a worker is a reply); 1 no worker for
//!   the service ("no worker for `SERVICE`" after one `--timeout`, nothing sent), no reply
//!   within `--timeout` after `--retries`, or a reply that is not valid MDP; 2 a bad flag,
//!   service name or stdin (a malformed `--frames len` stream); 3 a socket or I/O failure;
//!   4 "nothing answers at ENDPOINT" after one `--timeout` per broker.
//! - `mdp ping`: 0 the service has workers; 1 it has none, no answer came, or the broker
//!   cannot tell (no 8/MMI: "this broker does not answer service lookups"); 2 usage; 3 other
//!   failures; 4 nothing answers.
//! - `mdp services`: 0 the list was printed (possibly empty); 1 no answer within
//!   `--timeout`, or the broker does not list its services ("this broker does not list its
//!   services" on stderr: only ours does); 2 usage; 3 other failures; 4 nothing answers.
//! - `mdp top`: on a terminal, 0 when quit with q, Esc or Ctrl-C, or stopped by SIGINT,
//!   SIGTERM or SIGHUP (the terminal restored first) (a broker that does not
//!   answer, or answers 501, is shown on the screen, not an exit); with `--once` or without
//!   a terminal, as `mdp services`, the frame printed on stdout in every case but a failure.
//! - `mdp bench`: 0 every request got exactly one correct reply; 1 otherwise (no worker for
//!   the service is said after one `--timeout`); 2 usage; 3 the load could not run; 4 nothing
//!   answers.
//! - `mdp check broker`: 0 every check passed; 1 a check failed; 2 a bad endpoint or flag;
//!   4 nothing answered at the endpoint (the first check got no answer: the rest is skipped).
//! - `mdp worker` and `mdp broker`: 0 after a graceful stop (SIGINT/SIGTERM; `mdp worker`
//!   exits 1 on a second signal, after killing the running commands); 2 a refused
//!   setting (the library's `ConfigError` message), a command that cannot be run or a
//!   `--metrics-addr` that is not an IP:PORT; 3 a bind (the endpoint's or `--metrics-addr`'s),
//!   socket or runtime failure.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use majordomo_worker::client::ClientError;

/// What ends an `mdp` command early.
#[derive(Debug)]
pub enum CliError {
    /// A flag or value was refused (exit 2).
    Usage(String),
    /// The broker or worker did not answer, or a check failed (exit 1).
    NoAnswer(String),
    /// Anything else (exit 3).
    Failed(String),
    /// No connection to the broker (or any broker of the list) ever came up (exit 4).
    Unreachable(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::NoAnswer(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 3,
            CliError::Unreachable(_) => 4,
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m)
            | CliError::NoAnswer(m)
            | CliError::Failed(m)
            | CliError::Unreachable(m) => f.write_str(m),
        }
    }
}

impl From<majordomo_worker::Error> for CliError {
    fn from(error: majordomo_worker::Error) -> CliError {
        match error {
            majordomo_worker::Error::Config(e) => CliError::Usage(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<majordomo_worker::ConfigError> for CliError {
    fn from(error: majordomo_worker::ConfigError) -> CliError {
        CliError::Usage(error.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> CliError {
        CliError::Failed(error.to_string())
    }
}

/// The result of a subcommand.
pub type CliResult = Result<(), CliError>;

/// Exit 1 for no (valid) reply or no worker, 2 for what the user gave, 4 for no connection,
/// 3 for the rest.
pub fn client_error(error: ClientError) -> CliError {
    match error {
        ClientError::Config(_) | ClientError::InvalidService { .. } => {
            CliError::Usage(error.to_string())
        }
        ClientError::Unreachable { .. } => CliError::Unreachable(error.to_string()),
        ClientError::Timeout { .. }
        | ClientError::NoWorker { .. }
        | ClientError::Protocol(_)
        | ClientError::WrongService { .. }
        | ClientError::UnexpectedMmiCode { .. }
        | ClientError::Unsupported { .. } => CliError::NoAnswer(error.to_string()),
        _ => CliError::Failed(error.to_string()),
    }
}

/// An error from asking the broker itself (a lookup, the service list, the load), in the
/// user's words: no internal service name, and the broker that did not answer.
pub fn broker_error(error: ClientError, broker: &str, timeout: Duration) -> CliError {
    match error {
        ClientError::Timeout { .. } => CliError::NoAnswer(format!(
            "no answer from the broker at {broker} within {}",
            humantime::format_duration(timeout)
        )),
        ClientError::Unsupported { .. } => CliError::NoAnswer(format!(
            "this broker does not list its services (only `mdp broker` does): {broker}"
        )),
        other => client_error(other),
    }
}

#[cfg(test)]
mod tests {
    use majordomo_worker::client::{Client, ClientConfig};

    use super::*;

    #[test]
    fn no_reply_is_exit_1_and_a_bad_service_exit_2() {
        let timeout = ClientError::Timeout {
            service: "s".into(),
            attempts: 1,
        };
        assert!(matches!(client_error(timeout), CliError::NoAnswer(_)));
        let none = ClientError::NoWorker {
            service: "s".into(),
        };
        assert!(matches!(client_error(none), CliError::NoAnswer(m) if m == "no worker for `s`"));
        let nothing = ClientError::Unreachable {
            endpoints: vec!["tcp://a:1".into(), "tcp://b:2".into()],
        };
        assert!(matches!(
            client_error(nothing),
            CliError::Unreachable(m) if m == "nothing answers at tcp://a:1, tcp://b:2"
        ));
        let mmi = ClientError::Timeout {
            service: "mmi.services".into(),
            attempts: 1,
        };
        let said = broker_error(mmi, "tcp://a:1", Duration::from_millis(2500)).to_string();
        assert_eq!(
            said,
            "no answer from the broker at tcp://a:1 within 2s 500ms"
        );
        let mut client = Client::connect(ClientConfig::new("tcp://127.0.0.1:1")).unwrap();
        let error = client.request("", &["x"]).unwrap_err();
        assert!(matches!(client_error(error), CliError::Usage(_)));
    }
}
