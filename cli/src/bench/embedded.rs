//! The embedded setup of `mdp bench`: our broker on a private TCP port, echo workers in this
//! process, and with `--kill-one` one more in a child process that can be killed for real.
//!
//! The in-process workers are a sync [`WorkerPool`]: an echo needs nothing to await, so a
//! thread per worker answering inline is the cheapest path, and it keeps the workers off the
//! tokio threads the clients run on. The killable one is a sync [`Worker`] too, so that all
//! of them are the same kind of worker.

use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use majordomo_worker::broker::{Broker, BrokerConfig, BrokerHandle, BrokerStats};
use majordomo_worker::pool::{PoolService, WorkerPool};
use majordomo_worker::{zmq, Message, Worker, WorkerConfig};

use super::args::Args;
use super::report::KillReport;
use crate::error::{CliError, CliResult};

/// Heartbeat of the broker and the workers: a dead idle worker is forgotten after three.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Longest wait for the workers to register, or for the child worker to stop.
const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Our broker and echo workers, running.
pub(super) struct Embedded {
    // Stopped in this order: workers first, then the broker.
    pool: Option<WorkerPool>,
    child: Option<ChildWorker>,
    broker: BrokerHandle,
    service: String,
}

impl Embedded {
    /// Starts the broker and `--workers` echo workers (one of them a child process with
    /// `--kill-one`), and waits until all are registered.
    pub(super) fn start(args: &Args) -> Result<Embedded, CliError> {
        let context = zmq::Context::new();
        let config = BrokerConfig::new("tcp://127.0.0.1:*")
            .heartbeat(HEARTBEAT)
            .context(context.clone());
        let broker = Broker::bind(config)
            .and_then(Broker::spawn)
            .map_err(|e| CliError::Failed(format!("embedded broker: {e}")))?;
        let endpoint = broker.endpoint().to_string();
        let workers = args.workers as usize;
        let in_process = workers - usize::from(args.kill_one);
        let mut embedded = Embedded {
            pool: start_pool(&endpoint, &args.service, in_process, &context)?,
            child: None,
            broker,
            service: args.service.clone(),
        };
        if args.kill_one {
            embedded.child = Some(ChildWorker::start(&endpoint, &args.service)?);
        }
        embedded.wait_for_workers(workers)?;
        Ok(embedded)
    }

    pub(super) fn endpoint(&self) -> &str {
        self.broker.endpoint()
    }

    /// SIGKILLs the child worker and starts another; `None` without a child worker.
    pub(super) fn kill_and_restart(&mut self, at: u64) -> Result<Option<KillReport>, CliError> {
        let Some(old) = self.child.take() else {
            return Ok(None);
        };
        let killed_pid = old.pid();
        let killed = Instant::now();
        old.kill()?;
        let new = ChildWorker::start(self.endpoint(), &self.service)?;
        let report = KillReport {
            at,
            killed_pid,
            restarted_pid: new.pid(),
            restart_took: killed.elapsed(),
        };
        self.child = Some(new);
        Ok(Some(report))
    }

    /// Stops the workers, then the broker; returns the broker's counters.
    pub(super) fn stop(mut self) -> Result<BrokerStats, CliError> {
        if let Some(pool) = self.pool.take() {
            pool.stop();
        }
        if let Some(child) = self.child.take() {
            child.stop(STARTUP_WAIT)?;
        }
        self.broker
            .stop()
            .map_err(|e| CliError::Failed(format!("embedded broker: {e}")))
    }

    fn wait_for_workers(&self, workers: usize) -> CliResult {
        let deadline = Instant::now() + STARTUP_WAIT;
        while self.broker.stats().workers < workers {
            if Instant::now() >= deadline {
                let known = self.broker.stats().workers;
                let message = format!("only {known} of {workers} embedded workers registered");
                return Err(CliError::Failed(message));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

fn worker_config(endpoint: &str, service: &str) -> WorkerConfig {
    WorkerConfig::new(endpoint, service)
        .heartbeat(HEARTBEAT)
        .reconnect(Duration::from_millis(100))
        .reconnect_max(Duration::from_secs(1))
        .linger(Duration::from_millis(500))
}

fn echo(request: Vec<Message>) -> Vec<Message> {
    request
}

fn start_pool(
    endpoint: &str,
    service: &str,
    count: usize,
    context: &zmq::Context,
) -> Result<Option<WorkerPool>, CliError> {
    if count == 0 {
        return Ok(None);
    }
    let service = PoolService::new(worker_config(endpoint, service), count, || echo);
    let pool = WorkerPool::builder()
        .context(context.clone())
        .service(service)
        .start()?;
    Ok(Some(pool))
}

/// The echo worker in a child process: `mdp bench --child-worker ENDPOINT --service NAME`.
struct ChildWorker {
    child: Option<Child>,
}

impl ChildWorker {
    /// Starts it with a pipe on stdin: when the pipe closes (we stop it, or we die), it stops.
    fn start(endpoint: &str, service: &str) -> Result<ChildWorker, CliError> {
        let child = Command::new(std::env::current_exe()?)
            .args(["bench", "--child-worker", endpoint, "--service", service])
            .env_remove("MDP_BROKER")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| CliError::Failed(format!("start the child worker: {e}")))?;
        Ok(ChildWorker { child: Some(child) })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: the worker gets no chance to reply or say DISCONNECT.
    fn kill(mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Closes its stdin, which it takes as a graceful shutdown; kills it if it is not gone
    /// within `patience`.
    fn stop(mut self, patience: Duration) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        drop(child.stdin.take());
        let deadline = Instant::now() + patience;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                child.kill()?;
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        child.wait().map(drop)
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The child worker's side (`--child-worker ENDPOINT`): an echo worker that stops gracefully
/// when its stdin closes.
pub(super) fn serve_child(endpoint: &str, service: &str) -> CliResult {
    let mut worker = Worker::new(worker_config(endpoint, service), echo)?;
    let shutdown = worker.shutdown_handle();
    thread::spawn(move || {
        let _ = io::stdin().read_to_end(&mut Vec::new());
        shutdown.shutdown();
    });
    worker.run()?;
    Ok(())
}
