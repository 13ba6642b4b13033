//! One request, one run of the command: the body to its stdin, its stdout to the reply, in a
//! process group of its own that dies with the request.

use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use majordomo_worker::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tracing::{debug, warn};

use super::groups::Groups;
use crate::frames::Framing;

/// The future of one request's reply.
pub type ServeFuture = Pin<Box<dyn Future<Output = Vec<Message>> + Send + 'static>>;

/// Runs the command for each request.
#[derive(Debug)]
pub struct Runner {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub service: String,
    pub framing: Framing,
    pub error_reply: ErrorReply,
    pub slots: Slots,
    pub groups: Groups,
}

/// The `--error-reply` template and how much stderr it may quote.
#[derive(Debug)]
pub struct ErrorReply {
    pub template: String,
    pub stderr_tail: usize,
}

/// What a finished command left.
struct Outcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Runner {
    /// Runs the command for `request` and makes its reply. Dropping the future (deadline,
    /// end of the shutdown grace) kills the command's process group.
    pub async fn serve(self: Arc<Self>, request: Vec<Message>) -> Vec<Message> {
        let slot = self.slots.take();
        let input = match self.framing.encode(&request) {
            Ok(input) => input,
            Err(error) => {
                return self
                    .error_reply
                    .render("not started", &error.to_string(), &self.service)
            }
        };
        match self.run(slot.number(), request.len(), input).await {
            Ok(outcome) => self.reply(outcome),
            Err(error) => {
                warn!(%error, program = %self.program.to_string_lossy(), "cannot run the command");
                let why = format!("cannot run {}: {error}", self.program.to_string_lossy());
                self.error_reply.render("not started", &why, &self.service)
            }
        }
    }

    fn reply(&self, outcome: Outcome) -> Vec<Message> {
        if !outcome.status.success() {
            let stderr = String::from_utf8_lossy(&outcome.stderr);
            debug!(status = %outcome.status, "command failed");
            return self
                .error_reply
                .render(&status_text(outcome.status), &stderr, &self.service);
        }
        match self.framing.decode(&outcome.stdout) {
            Ok(frames) => frames.into_iter().map(Message::from).collect(),
            Err(error) => vec![Message::from(
                format!("error: malformed output: {error}").as_str(),
            )],
        }
    }

    async fn run(&self, slot: usize, frames: usize, input: Vec<u8>) -> io::Result<Outcome> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env("MDP_SERVICE", &self.service)
            .env("MDP_WORKER_ID", slot.to_string())
            .env("MDP_FRAMES", frames.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_this_thread(&mut command);
        let mut child = command.spawn()?;
        // Declared after the child, so dropped (the group killed) before it.
        let mut group = ProcessGroup::new(
            child.id().and_then(|id| i32::try_from(id).ok()),
            &self.groups,
        );
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let tail = self.error_reply.stderr_tail;
        let wait = async {
            let status = child.wait().await;
            // The leader is gone: what it left behind must not hold the pipes open.
            group.kill();
            status
        };
        let (fed, stdout, stderr, status) = tokio::join!(
            feed(stdin, input),
            read_all(stdout),
            read_tail(stderr, tail),
            wait
        );
        fed?;
        Ok(Outcome {
            status: status?,
            stdout: stdout?,
            stderr: stderr?,
        })
    }
}

impl ErrorReply {
    /// One frame: the template with `{status}`, `{stderr}` and `{service}` filled in.
    fn render(&self, status: &str, stderr: &str, service: &str) -> Vec<Message> {
        let stderr = stderr.trim_end_matches(['\n', '\r']);
        let text = self
            .template
            .replace("{status}", status)
            .replace("{stderr}", stderr)
            .replace("{service}", service);
        vec![Message::from(text.as_str())]
    }
}

/// `3` for an exit code, `signal 9` for a kill.
fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Writes the body and closes stdin; a command that does not read it all is not an error.
async fn feed(stdin: Option<ChildStdin>, input: Vec<u8>) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    match stdin.write_all(&input).await {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

/// Reads to the end, keeping only the last `keep` bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(bytes);
    };
    let mut chunk = [0u8; 8192];
    loop {
        let n = pipe.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() > keep.saturating_mul(2).max(chunk.len()) {
            bytes.drain(..bytes.len() - keep);
        }
    }
    let start = bytes.len().saturating_sub(keep);
    Ok(bytes.split_off(start))
}

/// Has the kernel SIGKILL the command when the thread that forks it ends
/// (`PR_SET_PDEATHSIG`): `mdp worker` killed with SIGKILL takes its commands with it.
///
/// The kernel sends the signal when the *thread* that forked the child ends, not the
/// process. That thread is one of tokio's runtime threads (the action's future is polled
/// there; `tokio::process` forks in `spawn`, on the polling thread): they live as long as the
/// runtime, which lives as long as `mdp worker`, and nothing here calls `block_in_place`,
/// which could retire one. A runtime thread ending early would kill a command early, never
/// leave one running.
fn die_with_this_thread(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (prctl, getppid), allocating nothing.
    let parent = std::process::id();
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The worker died between fork and prctl: the signal will never come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other(
                    "mdp worker ended while starting the command",
                ));
            }
            Ok(())
        });
    }
}

/// The command's process group (its pid: it was spawned with `process_group(0)`), killed
/// with SIGKILL when the request ends, however it ends. Listed in [`Groups`] while it runs.
struct ProcessGroup {
    group: Option<i32>,
    groups: Groups,
}

impl ProcessGroup {
    fn new(group: Option<i32>, groups: &Groups) -> ProcessGroup {
        if let Some(group) = group {
            groups.add(group);
        }
        ProcessGroup {
            group,
            groups: groups.clone(),
        }
    }

    fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            self.groups.kill(group);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.group.is_some() {
            debug!("request cancelled, killing its process group");
        }
        self.kill();
    }
}

/// Which of the `concurrency` slots runs a command (`MDP_WORKER_ID`, from 1): the library
/// does not tell an action which registration called it, and at most one command runs per
/// registration, so the lowest free slot number is as stable.
#[derive(Debug)]
pub struct Slots(Arc<Mutex<Vec<bool>>>);

impl Slots {
    pub fn new(concurrency: usize) -> Slots {
        Slots(Arc::new(Mutex::new(vec![false; concurrency])))
    }

    fn take(&self) -> Slot {
        let mut busy = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match busy.iter().position(|b| !b) {
            Some(index) => index,
            None => {
                busy.push(false);
                busy.len() - 1
            }
        };
        busy[index] = true;
        Slot {
            slots: Arc::clone(&self.0),
            index,
        }
    }
}

struct Slot {
    slots: Arc<Mutex<Vec<bool>>>,
    index: usize,
}

impl Slot {
    fn number(&self) -> usize {
        self.index + 1
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut busy = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        busy[self.index] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_reply_fills_in_status_stderr_and_service() {
        let reply = ErrorReply {
            template: "error: {status}: {stderr} ({service})".into(),
            stderr_tail: 4096,
        };
        let frames = reply.render("3", "oops\n", "echo");
        assert_eq!(&frames[0][..], b"error: 3: oops (echo)");
    }

    #[test]
    fn exit_codes_and_signals_read_as_status() {
        assert_eq!(status_text(ExitStatus::from_raw(3 << 8)), "3");
        assert_eq!(status_text(ExitStatus::from_raw(9)), "signal 9");
    }

    #[test]
    fn slots_are_numbered_from_one_and_reused() {
        let slots = Slots::new(2);
        let (a, b) = (slots.take(), slots.take());
        assert_eq!((a.number(), b.number()), (1, 2));
        drop(a);
        assert_eq!(slots.take().number(), 1);
    }

    #[tokio::test]
    async fn only_the_tail_of_stderr_is_kept() {
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let tail = read_tail(Some(&bytes[..]), 4096).await.unwrap();
        assert_eq!(tail, bytes[bytes.len() - 4096..]);
    }
}
