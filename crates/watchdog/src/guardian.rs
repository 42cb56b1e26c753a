//! The guardian: a tiny process forked from the watchdog at start-up that kills the child's whole
//! process group if the watchdog dies, however it dies (SIGKILL included).
//!
//! `PR_SET_PDEATHSIG` (see [`crate::child`]) kills only the direct child; an agent started through
//! a wrapper script that does not `exec` would leave its real process running. The guardian holds
//! the read end of a pipe whose write end only the watchdog has: the watchdog writes the current
//! process-group id into it, and when the pipe reports end-of-file the watchdog is gone and the
//! guardian sends SIGKILL to the last group it was told about.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, signal, SigHandler, Signal};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// The watchdog's end of the guardian's pipe.
#[derive(Debug)]
pub struct Guardian {
    pipe: std::fs::File,
}

impl Guardian {
    /// Forks the guardian.
    ///
    /// # Safety
    ///
    /// The process must be single-threaded when this is called (before the async runtime or any
    /// other thread starts): after `fork` only the calling thread exists in the child, and a
    /// lock another thread held (the allocator's, stdio's) would stay locked there forever.
    /// The forked guardian only reads its pipe, signals a process group and exits.
    pub unsafe fn spawn() -> io::Result<Self> {
        // Close-on-exec from the start: no child of the watchdog inherits the write end.
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: the caller guarantees a single-threaded process (see above).
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
    let _ = nix::sys::prctl::set_name(c"zkwd-guardian");
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
