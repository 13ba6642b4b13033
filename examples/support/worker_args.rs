//! The flags the example workers share, parsed by hand to keep the examples free of
//! dependencies.

use std::time::Duration;

use majordomo_worker::WorkerConfig;

/// The usage line of the shared flags.
pub const USAGE: &str = "[--broker ADDRS] [--service NAME] [--heartbeat-ms N] [--liveness N] \
[--reconnect-ms N] [--reconnect-max-ms N] [--work-ms N] [--no-disconnect]";

pub struct Args {
    pub broker: String,
    pub service: String,
    pub heartbeat_ms: Option<u64>,
    pub liveness: Option<u32>,
    pub reconnect_ms: Option<u64>,
    pub reconnect_max_ms: Option<u64>,
    pub work_ms: u64,
    pub send_disconnect: bool,
    /// `--concurrency N`, when the example takes it.
    pub concurrency: usize,
}

/// Parses the flags; `extra` names a flag taking a number that only some examples accept.
pub fn parse_args(extra: &[&str]) -> Result<Args, String> {
    let mut args = Args {
        broker: "tcp://127.0.0.1:5555".into(),
        service: "echo".into(),
        heartbeat_ms: None,
        liveness: None,
        reconnect_ms: None,
        reconnect_max_ms: None,
        work_ms: 0,
        send_disconnect: true,
        concurrency: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if flag == "--no-disconnect" {
            args.send_disconnect = false;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--broker" => args.broker = value,
            "--service" => args.service = value,
            "--heartbeat-ms" => args.heartbeat_ms = Some(number(&value)?),
            "--liveness" => args.liveness = Some(number(&value)? as u32),
            "--reconnect-ms" => args.reconnect_ms = Some(number(&value)?),
            "--reconnect-max-ms" => args.reconnect_max_ms = Some(number(&value)?),
            "--work-ms" => args.work_ms = number(&value)?,
            "--concurrency" if extra.contains(&"--concurrency") => {
                args.concurrency = number(&value)? as usize
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

/// The worker config the flags describe.
pub fn config(args: &Args) -> WorkerConfig {
    let mut config = WorkerConfig::new(args.broker.as_str(), args.service.as_str())
        .send_disconnect(args.send_disconnect);
    if let Some(ms) = args.heartbeat_ms {
        config = config.heartbeat(Duration::from_millis(ms));
    }
    if let Some(liveness) = args.liveness {
        config = config.liveness(liveness);
    }
    if let Some(ms) = args.reconnect_ms {
        config = config.reconnect(Duration::from_millis(ms));
        config = config.reconnect_max(Duration::from_millis(ms).max(Duration::from_secs(32)));
    }
    if let Some(ms) = args.reconnect_max_ms {
        config = config.reconnect_max(Duration::from_millis(ms));
    }
    config
}
