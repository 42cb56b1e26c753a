//! Spawning the supervised child: its own process group, stdout passed through, stderr passed
//! through while its last lines are kept for the exit record, and death with the watchdog.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;

use crate::exit::ExitKind;
use crate::lines::LineSplitter;
use crate::logging::{self, LogFormat};

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
    /// Keeps `line` (cut to [`MAX_TAIL_LINE`] bytes), dropping the oldest lines beyond `keep`
    /// lines or [`MAX_TAIL_BYTES`] bytes in total.
    fn push(&self, mut line: String, keep: usize) {
        if keep == 0 {
            return;
        }
        crate::registry::truncate_text(&mut line, MAX_TAIL_LINE);
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.push_back(line);
        let mut total: usize = lines.iter().map(String::len).sum();
        while lines.len() > keep || (total > MAX_TAIL_BYTES && lines.len() > 1) {
            if let Some(old) = lines.pop_front() {
                total -= old.len();
            }
        }
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
pub const MAX_TAIL_LINE: usize = crate::registry::MAX_STDERR_LINE;

/// Most bytes of stderr kept in the tail in all: even JSON-escaped six times over, the marker
/// stays far below ZooKeeper's 1 MiB `jute.maxbuffer`.
pub const MAX_TAIL_BYTES: usize = crate::registry::MAX_STDERR_TAIL_BYTES;

/// Longest piece of stderr passed through (or logged as one JSON event) at once; a longer line
/// goes out in pieces, so a child writing without newlines never makes the watchdog buffer it.
pub const MAX_PASS_LINE: usize = 64 * 1024;

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
    // systemd talks to the watchdog, not to the agent.
    for name in crate::systemd::ENVIRONMENT {
        cmd.env_remove(name);
    }
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

/// Copies the child's stderr to ours, keeping the last `keep` lines. In human log format the
/// bytes pass through unchanged (whole lines at a time, long ones in pieces); in JSON log format
/// each line becomes a JSON event with `stream: "stderr"` and `line`.
async fn copy_stderr(stderr: ChildStderr, tail: StderrTail, keep: usize) {
    copy_lines(stderr, tokio::io::stderr(), tail, keep).await
}

async fn copy_lines<R, W>(mut stderr: R, mut out: W, tail: StderrTail, keep: usize)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut splitter = LineSplitter::new(MAX_PASS_LINE);
    // The start of the current line, for the tail (the rest of a long line is not kept).
    let mut current = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (pieces, eof): (Vec<_>, bool) = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => (splitter.finish().into_iter().collect(), true),
            Ok(n) => (splitter.push(&buf[..n]), false),
        };
        for piece in pieces {
            // Through the async writer in both formats: a stderr pipe that stops draining (a
            // stalled log shipper) must only hold up this task, never the runtime's one thread
            // that also keeps the ZooKeeper session and reaps the child. Our own stderr being
            // closed must not stop the tail from being kept.
            let json = match logging::format() {
                LogFormat::Json => logging::child_line("stderr", &piece.text(), !piece.complete),
                LogFormat::Human => None,
            };
            let _ = out
                .write_all(json.as_ref().map_or(&piece.bytes[..], |j| j.as_bytes()))
                .await;
            if current.len() < MAX_TAIL_LINE {
                current.push_str(&String::from_utf8_lossy(&piece.bytes));
            }
            if piece.complete {
                let line = std::mem::take(&mut current);
                tail.push(line.trim_end_matches(['\n', '\r']).to_string(), keep);
            }
        }
        if eof {
            break;
        }
    }
    let _ = out.flush().await;
}

/// How a child ended, with what it left on stderr and of its process group.
#[derive(Debug, Clone)]
pub struct Ended {
    pub kind: ExitKind,
    pub stderr_tail: Vec<String>,
    /// Pids of processes of the child's group still alive right after it was reaped. Nothing
    /// has signalled them: the supervisor decides (SIGKILL at once, or, for a child that
    /// daemonized, the stop sequence).
    pub leftovers: Vec<u32>,
}

impl RunningChild {
    /// Waits for the child to exit, notes what is left of its process group, then collects the
    /// stderr tail.
    pub async fn wait(mut self) -> Ended {
        let kind = match self.child.wait().await {
            Ok(status) => ExitKind::from(status),
            Err(_) => ExitKind::Code(-1),
        };
        let leftovers = crate::group::live_members(self.pid);
        // The pipe closes when the last holder exits; bounded, as leftovers (or a process that
        // escaped the group) may hold it.
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut self.copier).await;
        Ended {
            kind,
            stderr_tail: self.tail.snapshot(),
            leftovers,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_bounded_in_lines_and_bytes() {
        let tail = StderrTail::default();
        for i in 0..5 {
            tail.push(format!("line {i}"), 3);
        }
        assert_eq!(tail.snapshot(), vec!["line 2", "line 3", "line 4"]);

        let tail = StderrTail::default();
        for _ in 0..1000 {
            tail.push("é".repeat(5000), 1000);
        }
        let kept = tail.snapshot();
        let bytes: usize = kept.iter().map(String::len).sum();
        assert!(kept.iter().all(|l| l.len() <= MAX_TAIL_LINE), "lines cut");
        assert!(bytes <= MAX_TAIL_BYTES, "{bytes} bytes kept");
        assert_eq!(kept.len(), MAX_TAIL_BYTES / MAX_TAIL_LINE);
    }

    #[tokio::test]
    async fn a_huge_line_without_newline_leaves_a_bounded_tail() {
        // 10 MB in one line, then a short line.
        let script = "head -c 10000000 /dev/zero | tr '\\0' x; echo; echo last";
        let mut producer = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdout = producer.stdout.take().expect("piped");
        let tail = StderrTail::default();
        let mut out = CountingSink::default();
        copy_lines(stdout, &mut out, tail.clone(), 20).await;
        let _ = producer.wait().await;
        assert_eq!(out.bytes, 10_000_000 + 1 + 5, "every byte passed through");
        assert!(out.largest_write <= MAX_PASS_LINE, "{}", out.largest_write);
        let kept = tail.snapshot();
        assert_eq!(kept.len(), 2, "{:?}", kept.len());
        assert_eq!(kept[0].len(), MAX_TAIL_LINE);
        assert_eq!(kept[1], "last");
    }

    #[derive(Default)]
    struct CountingSink {
        bytes: usize,
        largest_write: usize,
    }

    impl AsyncWrite for CountingSink {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.bytes += buf.len();
            self.largest_write = self.largest_write.max(buf.len());
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
}
