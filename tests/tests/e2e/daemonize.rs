//! A launcher that daemonizes (`kafka-server-start.sh -daemon`, `nohup java … &`) end to end: a
//! real shell backgrounds a long-running process and exits 0 at once. `zkwatchdog` must not take
//! that for a planned stop: it says why and how to fix it, stops the leftover, keeps the marker
//! with state fatal and exits 3; `zkwatcher` sends exactly one email, FATAL, saying why.

use std::time::Duration;

use zkwatchdog::registry::AgentState;
use zkwatchdog_tests::bin_path;
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::watchdog::{client, process_alive, read_pids, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// The fix the error names.
const FIX: &str = "run it in the foreground: e.g. kafka-server-start.sh without -daemon, \
                   flume-ng agent without &, or `exec` in a wrapper script";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonizing_launcher_is_fatal_its_daemon_is_stopped_and_one_email_says_why() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);

    let scratch = tempfile::tempdir().expect("tempdir");
    let pid_file = scratch.path().join("daemon.pid");
    // The launcher: start the "agent" in the background, note its pid, exit 0 at once.
    let command = vec![
        "sh".to_string(),
        "-c".to_string(),
        "\"$0\" --sleep & echo $! > \"$1\"; exit 0".to_string(),
        bin_path("testchild").display().to_string(),
        pid_file.display().to_string(),
    ];
    let id = "daemon@test";
    let mut wd = WatchdogProc::start_command(
        &zk.connect_string(),
        id,
        "[restart]\nstop-timeout = \"10s\"\n",
        &command,
    );
    let status = wd.wait_exit(LONG);
    let daemon = read_pids(&pid_file);
    let [daemon] = daemon[..] else {
        panic!("the launcher wrote one pid: {daemon:?}\n{}", wd.log());
    };
    // A daemon left running would be ours to clean up, not the next test's.
    let _reap = KillOnDrop(daemon);

    assert_eq!(
        status.code(),
        Some(3),
        "exit 3, like a give-up:\n{}",
        wd.log()
    );
    let log = wd.log();
    assert!(
        log.contains("the command daemonized") && log.contains(FIX),
        "the error says what happened and the fix:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("daemonized") && l.contains(id) && l.contains("ERROR")),
        "logged as an error with the agent id:\n{log}"
    );
    assert!(
        !process_alive(daemon),
        "the daemon (pid {daemon}) was stopped before the watchdog exited"
    );

    let c = client(&zk.connect_string()).await;
    let marker = wd.marker(&c).await.expect("the marker stays");
    assert_eq!(marker.state, AgentState::Fatal);
    assert_eq!(marker.generation, 1, "no second copy was started");
    let exit = marker.last_exit.expect("the exit is recorded");
    assert_eq!(exit.code, Some(0));
    let why = exit.daemonized.expect("last_exit.daemonized says why");
    assert!(
        why.contains(&format!("pid {daemon}")) && why.contains(FIX),
        "{why}"
    );
    assert!(
        wd.liveness(&c).await.is_none(),
        "no liveness node after the give-up"
    );

    let mail = smtp
        .wait_for_mail("the FATAL email", LONG, |m| m.subject.contains(id))
        .await;
    assert!(
        mail.subject.contains("FATAL") && mail.subject.contains("daemonized"),
        "{}",
        mail.subject
    );
    assert!(
        mail.body.contains("kafka-server-start.sh without -daemon"),
        "{}",
        mail.body
    );
    // Exactly one: nothing else follows (no "recovered", no second notice).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subjects: Vec<String> = smtp.messages().into_iter().map(|m| m.subject).collect();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
}

/// SIGKILLs a pid the test started indirectly, if it still runs when the test ends.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if process_alive(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
