//! A fake agent run standalone by a test ([`FakeProcess`], killed by its pid on drop), and the
//! loopback ports fakes listen on ([`free_port`]).

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::wait::wait_until_sync;
use crate::zk::random_u64;

/// Fakes take their ports from here: below the SMTP fixture's (10000..15000) and ZooKeeper's
/// (15000 and up), so fixtures of one test process never pick the same port.
const PORT_LOW: u16 = 5_000;
const PORT_HIGH: u16 = 10_000;

/// A free loopback port in 5000..10000, never handed out before in this process.
///
/// Free means bindable now; the fake binds it a moment later (a race with other processes on the
/// machine that the random choice makes unlikely).
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut used = USED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = PORT_LOW + (random_u64() % u64::from(PORT_HIGH - PORT_LOW)) as u16;
        if !used.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("could not find a free loopback port in {PORT_LOW}..{PORT_HIGH}");
}

/// A fake agent process started by the test itself (not by a watchdog). SIGKILLed and reaped on
/// drop, by its pid.
#[derive(Debug)]
pub struct FakeProcess {
    child: Child,
    exited: Option<ExitStatus>,
}

impl FakeProcess {
    /// Starts `command` (program and arguments); stdout is discarded, stderr goes to the test's.
    pub fn spawn(command: &[String]) -> FakeProcess {
        let (program, args) = command
            .split_first()
            .expect("a fake's command has a program");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        FakeProcess {
            child,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (reaping it), without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `deadline` for the process to end; panics if it does not.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let pid = self.pid();
        wait_until_sync(&format!("fake agent {pid} to exit"), deadline, || {
            self.try_exit_status()
        })
    }

    /// SIGKILLs the process (if still running) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        if let Ok(pid) = i32::try_from(self.pid()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap fake agent {}: {e}", self.pid()));
        self.exited = Some(status);
        status
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        // Never panics: drop may run while a test is already panicking.
        if self.try_exit_status().is_none() {
            if let Ok(pid) = i32::try_from(self.pid()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}
