//! Spawning the supervised child: its own process group, stdout passed through, stderr passed
//! through while its last lines are kept for the exit record, and death with the watchdog.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

use crate::exit::ExitKind;

/// How to start the child.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub command: Vec<String>,
    /// Lines of stderr to keep.
    pub stderr_tail_lines: usize,
    /// When false, the kernel kills the child (SIGKILL) as soon as the watchdog dies.
    pub outlives_watchdog: bool,
}

/// The last lines a child wrote to stderr, shared with the task that copies them through.
#[derive(Debug, Clone, Default)]
pub struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    fn push(&self, line: String, keep: usize) {
        if keep == 0 {
            return;
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        while lines.len() >= keep {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The lines kept so far, oldest first.
    pub fn snapshot(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

/// A running child.
#[derive(Debug)]
pub struct RunningChild {
    pub pid: u32,
    child: Child,
    tail: StderrTail,
    copier: JoinHandle<()>,
}

/// Longest stderr line kept in the tail, in bytes; longer lines are cut.
const MAX_TAIL_LINE: usize = 2000;

/// Spawns the child in a new process group.
///
/// Must be called from a thread that lives as long as the watchdog (the runtime's main thread):
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the process.
pub fn spawn(spec: &SpawnSpec) -> io::Result<RunningChild> {
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if !spec.outlives_watchdog {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (prctl, getppid, _exit); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The watchdog may have died between fork and prctl.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
    let tail = StderrTail::default();
    let copier = match child.stderr.take() {
        Some(stderr) => tokio::spawn(copy_stderr(stderr, tail.clone(), spec.stderr_tail_lines)),
        None => tokio::spawn(async {}),
    };
    Ok(RunningChild {
        pid,
        child,
        tail,
        copier,
    })
}

/// Copies the child's stderr to ours, line by line, keeping the last `keep` lines.
async fn copy_stderr(stderr: ChildStderr, tail: StderrTail, keep: usize) {
    let mut reader = BufReader::new(stderr);
    let mut out = tokio::io::stderr();
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                // Our own stderr being closed must not stop the tail from being kept.
                let _ = out.write_all(&buf).await;
                let text = String::from_utf8_lossy(&buf);
                let mut line = text.trim_end_matches(['\n', '\r']).to_string();
                if line.len() > MAX_TAIL_LINE {
                    let mut cut = MAX_TAIL_LINE;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                }
                tail.push(line, keep);
            }
        }
    }
    let _ = out.flush().await;
}

/// How a child ended, with what it left on stderr.
#[derive(Debug, Clone)]
pub struct Ended {
    pub kind: ExitKind,
    pub stderr_tail: Vec<String>,
}

impl RunningChild {
    /// Waits for the child to exit, then kills what is left of its process group (so that a
    /// restarted agent never meets its predecessor's leftovers), then collects the stderr tail.
    pub async fn wait(mut self) -> Ended {
        let kind = match self.child.wait().await {
            Ok(status) => ExitKind::from(status),
            Err(_) => ExitKind::Code(-1),
        };
        signal_group(self.pid, Signal::SIGKILL);
        // The pipe closes when the last holder exits; bounded in case a process escaped the
        // group while holding it.
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.copier).await;
        Ended {
            kind,
            stderr_tail: self.tail.snapshot(),
        }
    }
}

/// Sends `signal` to the process group led by `pid`. A group that is already gone is not an
/// error.
pub fn signal_group(pid: u32, signal: Signal) -> bool {
    match killpg(Pid::from_raw(pid as i32), signal) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pid, %signal, error = %e, "cannot signal the child's process group");
            false
        }
    }
}
