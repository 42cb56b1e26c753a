//! systemd's notify protocol end to end: a unix datagram socket of the test's own stands in for
//! systemd's (`NOTIFY_SOCKET`), with `WATCHDOG_USEC` set as a unit's `WatchdogSec=` sets it. Each
//! program says `READY=1` when it works, `WATCHDOG=1` from its main loop at least every half
//! period, nothing while it is frozen (SIGSTOP: systemd would restart it), and the watchdog says
//! `STOPPING=1` at a planned stop. The agent does not inherit the variables.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use zkwatchdog_tests::watchdog::WatchdogProc;
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// `WatchdogSec=4s`: a ping at least every 2 s.
const WATCHDOG_USEC: &str = "4000000";

/// The stand-in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }

    /// The next datagram, if one comes within `wait`.
    fn next(&self, wait: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("set the read timeout");
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits (at most `deadline`) for a datagram with the line `line`, returning it.
    fn wait_for(&self, line: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if let Some(msg) = self.next(left) {
                if msg.lines().any(|l| l == line) {
                    return msg;
                }
            }
        }
        panic!("no {line} within {deadline:?}");
    }

    /// Every datagram already waiting.
    fn drain(&self) -> Vec<String> {
        std::iter::from_fn(|| self.next(Duration::from_millis(1))).collect()
    }
}

/// Three pings, then none while the process is stopped, then pings again once it goes on.
fn pings_follow_the_main_loop(notify: &NotifySocket, pid: u32) {
    for _ in 0..3 {
        notify.wait_for("WATCHDOG=1", LONG);
    }
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    notify.drain();
    // Twice the ping period: a live loop would have pinged twice.
    let frozen = notify.next(Duration::from_secs(4));
    nix::sys::signal::kill(pid, Signal::SIGCONT).expect("SIGCONT");
    assert_eq!(
        frozen, None,
        "a frozen program must not tell systemd it is alive"
    );
    notify.wait_for("WATCHDOG=1", LONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_ready_once_its_child_runs_pings_from_its_loop_and_says_stopping() {
    let zk = ZkServer::start();
    let notify = NotifySocket::bind();
    let env_dump = tempfile::NamedTempFile::new().expect("a temp file");
    let dump = env_dump.path().display().to_string();
    let command = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("env > {dump}; exec sleep 600"),
    ];
    let mut wd = WatchdogProc::start_command_with_env(
        &zk.connect_string(),
        "sd-notify@test",
        "",
        &command,
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );
    let ready = tokio::task::block_in_place(|| notify.wait_for("READY=1", LONG));
    assert!(
        ready.contains("STATUS=supervising sd-notify@test"),
        "{ready:?}"
    );

    tokio::task::block_in_place(|| pings_follow_the_main_loop(&notify, wd.pid()));

    // The agent got none of systemd's variables.
    let env = std::fs::read_to_string(env_dump.path()).expect("the child's environment");
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert!(
            !env.lines().any(|l| l.starts_with(&format!("{name}="))),
            "{name} in {env}"
        );
    }

    wd.signal(Signal::SIGTERM);
    tokio::task::block_in_place(|| notify.wait_for("STOPPING=1", LONG));
    assert!(wd.wait_exit(LONG).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_is_ready_and_pings_from_its_loop_with_zookeeper_and_without() {
    let zk = ZkServer::start();
    let notify = NotifySocket::bind();
    let watcher = WatcherProc::start_with_env(
        &zk.connect_string(),
        "",
        None,
        "[[webhook]]\nname = \"ops\"\nkind = \"generic\"\nurl = \"http://127.0.0.1:9/\"\n",
        &[],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );
    tokio::task::block_in_place(|| notify.wait_for("READY=1", LONG));
    watcher.wait_leading(LONG);
    tokio::task::block_in_place(|| pings_follow_the_main_loop(&notify, watcher.pid()));

    // ZooKeeper gone: the watcher keeps trying to connect, and keeps pinging.
    drop(zk);
    tokio::task::block_in_place(|| {
        notify.drain();
        for _ in 0..3 {
            notify.wait_for("WATCHDOG=1", LONG);
        }
    });
}
