//! `zkwatcher run` end to end: real ZooKeeper, real `zkwatchdog` processes and children, a real
//! SMTP server with STARTTLS and AUTH. Each test asserts what people receive.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// Fast restarts so crash tests do not wait for the default one-second backoff.
const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_crash_sends_one_email_naming_agent_signal_and_stderr_then_recovery() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    // A short zk-loss-alert-after: a watcher that stays connected must never report a loss.
    let watcher = WatcherProc::start(
        &zk.connect_string(),
        "group-wait = \"0s\"\nzk-loss-alert-after = \"1s\"",
        Some(&smtp),
        "",
    );
    watcher.wait_leading(LONG);
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "crash@test",
        FAST_RESTART,
        &["--stderr", "disk full on /var/flume"],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, 2, LONG).await;

    // The crash is sent alone, then the recovery; or, when the restart came before the send
    // (group-wait 0 still has to see the crash first), both in one message. Either way the
    // agent, the signal and the stderr tail are in the first one.
    let mails = smtp.wait_for_messages(1, LONG).await;
    let crash = &mails[0];
    assert!(
        crash.subject.contains("CRASHED") && crash.subject.contains("crash@test"),
        "{:?}",
        subjects(&mails)
    );
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    assert!(
        crash.body.contains("disk full on /var/flume"),
        "{}",
        crash.body
    );
    assert!(crash.body.contains("zkCli.sh"), "{}", crash.body);
    assert!(crash.tls, "sent over STARTTLS");
    assert_eq!(crash.auth_user.as_deref(), Some("alerts"));
    assert_eq!(crash.rcpt_tos.len(), 2, "{:?}", crash.rcpt_tos);
    let expected = if crash.subject.contains("RECOVERED") {
        1
    } else {
        let mails = smtp.wait_for_messages(2, LONG).await;
        let recovered = &mails[1];
        assert!(
            recovered.subject.contains("RECOVERED") && recovered.subject.contains("crash@test"),
            "{:?}",
            subjects(&mails)
        );
        2
    };
    // Nothing else arrives later (the incident record is closed).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        smtp.messages().len(),
        expected,
        "{:?}",
        subjects(&smtp.messages())
    );
    let path = format!("/zkwatchdog/incidents/{}", wd.id);
    assert!(
        !zkwatchdog_tests::zk::exists(&c, &path).await,
        "incident closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reports_its_own_zookeeper_loss_and_return() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(
        &zk.connect_string(),
        "group-wait = \"0s\"\nzk-loss-alert-after = \"2s\"",
        Some(&smtp),
        "",
    );
    watcher.wait_leading(LONG);
    zk.stop();
    let mails = smtp.wait_for_messages(1, LONG).await;
    assert!(
        mails[0].subject.contains("WATCHER") && mails[0].subject.contains("lost ZooKeeper"),
        "{:?}",
        subjects(&mails)
    );
    assert!(
        mails[0].subject.contains(&zk.connect_string()),
        "{}",
        mails[0].subject
    );
    // An outage: the body sends the operator to the servers, with the client's last word.
    let body = &mails[0].body;
    assert!(
        mails[0].subject.ends_with(": unreachable")
            && body.contains("has been disconnected from ZooKeeper")
            && body.lines().any(|l| l.starts_with("Cause: "))
            && body.contains("Check the ZooKeeper ensemble and the network"),
        "{}\n{body}",
        mails[0].subject
    );
    zk.start_again();
    let mails = smtp.wait_for_messages(2, LONG).await;
    assert!(
        mails[1].subject.contains("WATCHER") && mails[1].subject.contains("reconnected"),
        "{:?}",
        subjects(&mails)
    );
    assert_eq!(smtp.messages().len(), 2, "one loss report, one return");
}
