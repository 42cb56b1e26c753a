//! The guardian: a tiny process forked from the watchdog at start-up that kills the child's whole
//! process group if the watchdog dies, however it dies (SIGKILL included).
//!
//! `PR_SET_PDEATHSIG` (see [`crate::child`]) kills only the direct child; an agent started through
//! a wrapper script that does not `exec` would leave its real process running. The guardian holds
//! the read end of a pipe whose write end only the watchdog has: the watchdog writes the current
//! process-group id into it, and when the pipe reports end-of-file the watchdog is gone and the
//! guardian sends SIGKILL to the last group it was told about.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// The watchdog's end of the guardian's pipe.
#[derive(Debug)]
pub struct Guardian {
    pipe: std::fs::File,
}

impl Guardian {
    /// Forks the guardian. Call it before any other thread exists (before the runtime starts).
    pub fn spawn() -> io::Result<Self> {
        let (read, write) = pipe().map_err(io::Error::from)?;
        set_cloexec(&write)?;
        // SAFETY: called while the process is single-threaded (documented precondition); the
        // child only reads a pipe, signals a process group and exits.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                drop(write);
                guard(read)
            }
            ForkResult::Parent { .. } => {
                drop(read);
                Ok(Guardian {
                    pipe: std::fs::File::from(write),
                })
            }
        }
    }

    /// From now on, the guardian kills process group `pgid` if the watchdog dies.
    pub fn watch(&mut self, pgid: u32) {
        self.send(pgid as i32);
    }

    /// The group is gone; nothing to kill.
    pub fn clear(&mut self) {
        self.send(0);
    }

    fn send(&mut self, pgid: i32) {
        // Four bytes are written atomically to a pipe. If the guardian is gone, the child still
        // has PR_SET_PDEATHSIG; nothing more to do here.
        if let Err(e) = self.pipe.write_all(&pgid.to_le_bytes()) {
            tracing::warn!(error = %e, "the guardian process is gone");
        }
    }
}

fn set_cloexec(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: plain fcntl on a descriptor we own.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The guardian's whole life: remember the latest group, kill it at end-of-file, exit.
fn guard(read: OwnedFd) -> ! {
    // Terminal signals go to the whole foreground group, guardian included; it must outlive the
    // watchdog's own stop sequence, so it ignores them. Its end is the pipe's end-of-file.
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: setting a signal to SIG_IGN installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    // Name it in `ps -o comm`, so operators see what the second process is.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"zkwd-guardian".as_ptr(), 0, 0, 0) };
    let mut pipe = std::fs::File::from(read);
    let mut last = 0i32;
    let mut buf = [0u8; 4];
    loop {
        match pipe.read_exact(&mut buf) {
            Ok(()) => last = i32::from_le_bytes(buf),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if last > 0 {
        let _ = killpg(Pid::from_raw(last), Signal::SIGKILL);
    }
    // SAFETY: _exit ends the process without running the parent's atexit handlers or
    // destructors, which belong to the watchdog.
    unsafe { libc::_exit(0) }
}
