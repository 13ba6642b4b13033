//! The process groups of the running commands: what a second Ctrl-C kills, and what dies
//! with `mdp worker` however it ends.
//!
//! Two ties hold a command's life to the worker's:
//! - its leader (the process COMMAND starts as) gets `PR_SET_PDEATHSIG` = SIGKILL, so the
//!   kernel kills it when the worker dies, even by SIGKILL;
//! - the rest of its group (what the command forked: `sh -c 'a & b'`) is killed by a reaper,
//!   a second `mdp` process (the hidden `mdp __reap`) that reads on a pipe which groups are
//!   alive, and kills those still listed when the pipe closes: the kernel closes it when the
//!   worker ends, however it ends. The reaper is in a process group of its own, so the
//!   terminal's Ctrl-C does not reach it.

use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tracing::warn;

/// The groups of the commands running now, shared by the requests and the signal task.
#[derive(Debug, Clone, Default)]
pub struct Groups(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    live: HashSet<i32>,
    /// The reaper's stdin; `None` without a reaper (it could not start, or it died).
    reaper: Option<ChildStdin>,
    /// Kept so the reaper is waited for, never a zombie for long.
    _reaper_process: Option<Child>,
}

impl Groups {
    /// A registry with a reaper; without one (it could not be started) the leaders still
    /// die with the worker (PDEATHSIG), and a warning says what else may outlive it.
    pub fn with_reaper() -> Groups {
        let inner = match start_reaper() {
            Ok(mut child) => Inner {
                live: HashSet::new(),
                reaper: child.stdin.take(),
                _reaper_process: Some(child),
            },
            Err(error) => {
                warn!(%error, "cannot start the reaper: processes forked by a command may \
                               outlive a killed mdp worker");
                Inner::default()
            }
        };
        Groups(Arc::new(Mutex::new(inner)))
    }

    /// Records the group of a command just started.
    pub fn add(&self, group: i32) {
        let mut inner = self.lock();
        inner.live.insert(group);
        inner.tell_reaper('+', group);
    }

    /// Kills the group with SIGKILL (every process of it) and forgets it.
    pub fn kill(&self, group: i32) {
        let mut inner = self.lock();
        // ESRCH: every process of the group already exited.
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        if inner.live.remove(&group) {
            inner.tell_reaper('-', group);
        }
    }

    /// Kills every group still running; returns how many there were.
    pub fn kill_all(&self) -> usize {
        let groups: Vec<i32> = self.lock().live.iter().copied().collect();
        for &group in &groups {
            self.kill(group);
        }
        groups.len()
    }

    /// How many commands run now.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn tell_reaper(&mut self, sign: char, group: i32) {
        let Some(pipe) = &mut self.reaper else {
            return;
        };
        // A line is far below PIPE_BUF: written whole, never blocks while the reaper reads.
        if let Err(error) = writeln!(pipe, "{sign}{group}") {
            warn!(%error, "the reaper is gone: processes forked by a command may outlive a \
                           killed mdp worker");
            self.reaper = None;
        }
    }
}

fn start_reaper() -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    Command::new(std::env::current_exe()?)
        .arg(REAPER_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
}

/// The hidden subcommand the reaper runs as.
pub const REAPER_COMMAND: &str = "__reap";

/// The reaper's loop (`mdp __reap`): reads `+GROUP` / `-GROUP` lines until end of input, then
/// kills every group still listed.
pub fn reap(input: impl BufRead) -> usize {
    let mut live = HashSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (sign, number) = line.split_at(line.len().min(1));
        match (sign, number.parse::<i32>()) {
            ("+", Ok(group)) if group > 1 => {
                live.insert(group);
            }
            ("-", Ok(group)) => {
                live.remove(&group);
            }
            _ => {}
        }
    }
    for &group in &live {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    live.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_kills_only_the_groups_still_listed_at_end_of_input() {
        // Group numbers that cannot exist (above pid_max), so nothing real is signalled.
        let input = "+4194400\n+4194401\n-4194400\ngarbage\n+1\n+0\n";
        assert_eq!(reap(input.as_bytes()), 1);
    }
}
