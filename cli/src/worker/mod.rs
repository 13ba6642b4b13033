//! `mdp worker SERVICE -- COMMAND [ARGS…]`: any program becomes an MDP worker, as inetd makes
//! it a network server. Each request runs COMMAND once: the body goes to its stdin (mapped
//! by `--frames`), its stdout comes back as the reply. The protocol (READY, heartbeats,
//! reconnects, deadlines, graceful shutdown) is the library's [`AsyncWorker`]; this module
//! only turns flags into a [`WorkerConfig`] and runs the command ([`process`]).

mod groups;
mod process;

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args as ClapArgs;
use majordomo_worker::config::{
    DEFAULT_HEARTBEAT, DEFAULT_LIVENESS, DEFAULT_RECONNECT, DEFAULT_RECONNECT_MAX,
};
use majordomo_worker::{AsyncWorker, Message, ShutdownHandle, WorkerConfig};

use crate::client::DEFAULT_BROKER;
use crate::error::{CliError, CliResult};
use crate::frames::Framing;
use groups::Groups;
pub use groups::{reap, REAPER_COMMAND};
use process::{ErrorReply, Runner};

/// The default of `--error-reply`.
pub const DEFAULT_ERROR_REPLY: &str = "error: {status}: {stderr}";

const AFTER_HELP: &str =
    "Each request runs COMMAND once, in a process group of its own, with MDP_SERVICE,
MDP_WORKER_ID (1..N: which of the N concurrent slots runs it) and MDP_FRAMES (the
request's frame count) in its environment. Exit status 0: stdout is the reply. Any other
status: the --error-reply text, one frame. When COMMAND exits, whatever it left in its
process group is killed; past --timeout (or --grace on shutdown) the whole group is
killed with SIGKILL and the request gets the --timeout-reply. A reply that is not valid
for --frames len is answered with 'error: malformed output: ...'.
SIGINT/SIGTERM: no new requests; running ones get --grace to finish, then DISCONNECT.
A second SIGINT/SIGTERM kills the running commands' process groups and exits 1. If mdp
worker itself is killed (even SIGKILL), its commands and their process groups die too.

Example:
  mdp worker echo -- cat
  mdp worker upper --concurrency 4 --timeout 5s -- tr a-z A-Z
  mdp worker lines --frames lines -- sh -c 'while read l; do echo \"$l\" | rev; done'
  mdp worker echo --metrics-addr 127.0.0.1:9101 -- cat   # GET /metrics, GET /healthz";

/// Serve SERVICE by running a command for each request.
#[derive(Debug, ClapArgs)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The service name to register.
    pub service: String,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,

    /// Broker endpoint, or a comma-separated list tried in turn on reconnects.
    #[arg(long, env = "MDP_BROKER", default_value = DEFAULT_BROKER)]
    pub broker: String,

    /// How many requests run at once (one registration, and one command, each).
    #[arg(short = 'n', long, default_value_t = 1)]
    pub concurrency: usize,

    /// How a multi-frame body maps to stdin, and stdout to reply frames: raw (concatenated;
    /// one frame back), lines ("\n" after each; split on "\n"), nul (same with "\0"), len
    /// (each frame after its length, 4 bytes big-endian).
    #[arg(long, value_enum, default_value_t = Framing::Raw)]
    pub frames: Framing,

    /// Longest a request may run (e.g. 5s, 300ms); then its process group is killed and the
    /// --timeout-reply sent. Defaults to no limit.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// The reply to a request past --timeout or --grace (one frame).
    #[arg(long, default_value = "error: worker request timed out")]
    pub timeout_reply: String,

    /// The reply to a non-zero exit status (one frame): {status} is the exit code (or
    /// "signal N"), {stderr} the tail of stderr (see --stderr-tail, trailing newlines
    /// removed), {service} the service name.
    #[arg(long, default_value = DEFAULT_ERROR_REPLY)]
    pub error_reply: String,

    /// How many bytes from the end of stderr {stderr} keeps.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub stderr_tail: usize,

    /// On SIGINT/SIGTERM, how long running commands may go on before they are killed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,

    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = millis(DEFAULT_HEARTBEAT), value_name = "MS")]
    pub heartbeat_ms: u64,

    /// Heartbeats of broker silence before reconnecting.
    #[arg(long, default_value_t = DEFAULT_LIVENESS)]
    pub liveness: u32,

    /// First reconnect delay in milliseconds (doubles up to --reconnect-max-ms).
    #[arg(long, default_value_t = millis(DEFAULT_RECONNECT), value_name = "MS")]
    pub reconnect_ms: u64,

    /// Longest reconnect delay in milliseconds.
    #[arg(long, default_value_t = millis(DEFAULT_RECONNECT_MAX), value_name = "MS")]
    pub reconnect_max_ms: u64,

    /// Do not send DISCONNECT when stopping (for brokers that mishandle it).
    #[arg(long)]
    pub no_disconnect: bool,

    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Serves until SIGINT/SIGTERM, then stops gracefully.
pub fn run(args: Args) -> CliResult {
    let program = &args.command[0];
    check_program(program)?;
    let serving = args.metrics.serve()?;
    let config = match &serving {
        Some(serving) => config(&args).metrics(&serving.metrics),
        None => config(&args),
    };
    let groups = Groups::with_reaper();
    let worker = AsyncWorker::new(config, action(&args, &groups))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(async {
        let signals = stop_on_signals(worker.shutdown_handle(), groups, args.grace)?;
        if std::io::stderr().is_terminal() {
            eprintln!(
                "mdp worker: serving {} on {} ({} at once) with {}; Ctrl-C stops",
                args.service,
                args.broker,
                args.concurrency,
                program.to_string_lossy()
            );
            if let Some(serving) = &serving {
                eprintln!(
                    "mdp worker: metrics on http://{}/metrics, health on /healthz",
                    serving.server.addr()
                );
            }
        }
        let summary = worker.run().await;
        signals.abort();
        summary.map_err(CliError::from)
    })?;
    if std::io::stderr().is_terminal() {
        let total = summary.total;
        eprintln!(
            "mdp worker: {} request(s), {} timed out",
            total.requests, total.timeouts
        );
    }
    Ok(())
}

/// SIGINT/SIGTERM: the first stops the worker gracefully and says how long it waits for how
/// many requests; the second kills the running commands' process groups and exits 1.
fn stop_on_signals(
    shutdown: ShutdownHandle,
    groups: Groups,
    grace: Duration,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if round == 0 {
                eprintln!("mdp worker: {}", first_signal_message(groups.len(), grace));
                shutdown.shutdown();
                continue;
            }
            let killed = groups.kill_all();
            eprintln!("mdp worker: second signal: killed {killed} running command(s), exiting");
            std::process::exit(1);
        }
    }))
}

/// What the first Ctrl-C says.
fn first_signal_message(running: usize, grace: Duration) -> String {
    if running == 0 {
        return "stopping (no request running); a second Ctrl-C exits at once".into();
    }
    format!(
        "stopping: waiting up to {} for {running} running request(s); a second Ctrl-C kills them",
        humantime::format_duration(grace)
    )
}

/// The library's configuration from the flags; the library validates it.
fn config(args: &Args) -> WorkerConfig {
    let config = WorkerConfig::new(&args.broker, &args.service)
        .concurrency(args.concurrency)
        .heartbeat(Duration::from_millis(args.heartbeat_ms))
        .liveness(args.liveness)
        .reconnect(Duration::from_millis(args.reconnect_ms))
        .reconnect_max(Duration::from_millis(args.reconnect_max_ms))
        .send_disconnect(!args.no_disconnect)
        .shutdown_grace(args.grace)
        .timeout_reply(vec![args.timeout_reply.clone().into_bytes()]);
    match args.timeout {
        Some(timeout) => config.request_timeout(timeout),
        None => config,
    }
}

/// The async action: each request runs the command once.
fn action(
    args: &Args,
    groups: &Groups,
) -> impl Fn(Vec<Message>) -> process::ServeFuture + Send + Sync + 'static {
    let runner = Arc::new(Runner {
        program: args.command[0].clone(),
        args: args.command[1..].to_vec(),
        service: args.service.clone(),
        framing: args.frames,
        error_reply: ErrorReply {
            template: args.error_reply.clone(),
            stderr_tail: args.stderr_tail,
        },
        slots: process::Slots::new(args.concurrency),
        groups: groups.clone(),
    });
    move |request| Box::pin(Arc::clone(&runner).serve(request))
}

/// Refuses, before connecting, a command that cannot be started: the first request would
/// only fail, and so would every other.
fn check_program(program: &OsStr) -> Result<PathBuf, CliError> {
    let name = Path::new(program);
    if program.is_empty() {
        return Err(CliError::Usage("the command is empty".into()));
    }
    if name.components().count() > 1 {
        return check_executable(name).map(|()| name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| check_executable(candidate).is_ok())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "command not found: {} (not in PATH)",
                name.display()
            ))
        })
}

fn check_executable(path: &Path) -> Result<(), CliError> {
    let refuse = |why: &str| CliError::Usage(format!("cannot run {}: {why}", path.display()));
    let metadata = std::fs::metadata(path).map_err(|e| refuse(&e.to_string()))?;
    if !metadata.is_file() {
        return Err(refuse("not a file"));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(refuse("not executable"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use majordomo_worker::config::{DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT_REPLY};

    #[test]
    fn flag_defaults_are_the_librarys() {
        let args =
            <crate::Cli as clap::Parser>::try_parse_from(["mdp", "worker", "s", "--", "cat"])
                .expect("parse");
        let crate::Command::Worker(args) = args.command else {
            panic!("not the worker subcommand");
        };
        assert_eq!(args.grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(args.timeout_reply.as_bytes(), DEFAULT_TIMEOUT_REPLY);
        assert_eq!(args.heartbeat_ms, 2500);
    }

    #[test]
    fn the_first_signal_says_how_long_it_waits_for_how_many_requests() {
        assert_eq!(
            first_signal_message(2, Duration::from_secs(10)),
            "stopping: waiting up to 10s for 2 running request(s); a second Ctrl-C kills them"
        );
        assert_eq!(
            first_signal_message(0, Duration::from_secs(10)),
            "stopping (no request running); a second Ctrl-C exits at once"
        );
    }

    #[test]
    fn a_missing_or_unexecutable_command_is_refused_by_name() {
        let error = check_program(OsStr::new("no-such-command-mdp")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "command not found: no-such-command-mdp (not in PATH)"
        );
        let error = check_program(OsStr::new("/etc/passwd")).unwrap_err();
        assert_eq!(error.to_string(), "cannot run /etc/passwd: not executable");
        assert!(check_program(OsStr::new("sh")).is_ok());
        assert!(check_program(OsStr::new("/bin/sh")).is_ok());
    }
}
