//! The watcher's report of its own ZooKeeper loss names the cause, end to end: a real ZooKeeper
//! (plain with digest ACLs, or TLS), real `zkwatcher` processes, a real SMTP capture. A watcher
//! whose credentials ZooKeeper refuses, or whose TLS handshake fails, is as blind as one that
//! cannot reach the servers; its email must send the operator to the credentials or the
//! certificates, not to the ZooKeeper servers.

use std::time::Duration;

use zkwatchdog::registry::{Layout, DEFAULT_ROOT};
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;
use zkwatchdog_tests::zk_tls::ZkTlsServer;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(45);

/// Report the loss quickly, so that the tests do not wait for the 60 s default.
const QUICK_LOSS: &str = "group-wait = \"0s\"\nzk-loss-alert-after = \"2s\"";

/// The `[zk-auth]` table of a watcher with `password`, kept in a file in `dir`.
fn watcher_auth(dir: &std::path::Path, password: &str) -> String {
    let file = dir.join("zk-password");
    std::fs::write(&file, format!("{password}\n")).expect("write the zk password file");
    format!(
        "[zk-auth]\nuser = \"watcher\"\npassword-file = {:?}\n",
        file.display().to_string()
    )
}

fn describe(mails: &[CapturedMail]) -> String {
    mails
        .iter()
        .map(|m| format!("Subject: {}\n{}", m.subject, m.body))
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_whose_credentials_are_refused_reports_the_noauth_cause_once() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    // The real identity makes the watcher directories (and keeps leading: a healthy replica).
    let good_dir = tempfile::tempdir().expect("scratch dir");
    let good_smtp = SmtpServer::start(SmtpOptions::default());
    let good = WatcherProc::start(
        &hosts,
        "",
        Some(&good_smtp),
        &watcher_auth(good_dir.path(), "wt-secret"),
    );
    good.wait_leading(LONG);

    // Same user, wrong password: just another digest identity, refused on the election node.
    let smtp = SmtpServer::start(SmtpOptions::default());
    let wrong_dir = tempfile::tempdir().expect("scratch dir");
    let wrong = WatcherProc::start(
        &hosts,
        QUICK_LOSS,
        Some(&smtp),
        &watcher_auth(wrong_dir.path(), "not-the-password"),
    );
    let mails = smtp.wait_for_messages(1, LONG).await;
    let mail = &mails[0];
    assert!(
        mail.subject.contains("WATCHER")
            && mail.subject.contains(&format!("lost ZooKeeper {hosts}"))
            && mail.subject.ends_with("credentials refused"),
        "{}",
        describe(&mails)
    );
    let election = format!(
        "{}/n-",
        Layout::new(DEFAULT_ROOT)
            .expect("the default root")
            .watchers_dir()
    );
    let cause = mail
        .body
        .lines()
        .find(|l| l.starts_with("Cause: "))
        .unwrap_or_else(|| panic!("no cause line:\n{}", describe(&mails)));
    assert!(
        cause.contains(&format!("zookeeper refused access to {election} (NoAuth)"))
            && cause.contains("zk-auth.user \"watcher\"")
            && cause.contains("check zk-auth's user and password"),
        "{cause}"
    );
    assert!(
        mail.body
            .contains("the servers answer, but refuse this watcher's credentials"),
        "{}",
        mail.body
    );
    assert!(
        !mail.body.contains("disconnected from ZooKeeper")
            && !mail.body.contains("Check the ZooKeeper ensemble"),
        "must not send the operator to the servers:\n{}",
        mail.body
    );
    assert!(!wrong.is_leading(), "{}", wrong.log());

    // It keeps being refused (and retrying), but reports the loss once; the healthy replica
    // has nothing to say. A sleep only to prove that nothing more arrives.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(smtp.messages().len(), 1, "{}", describe(&smtp.messages()));
    assert!(
        good_smtp.messages().is_empty(),
        "{}",
        describe(&good_smtp.messages())
    );
    assert!(good.is_leading());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_with_the_wrong_ca_reports_the_tls_cause_naming_ca_file() {
    let zk = ZkTlsServer::start();
    let hosts = zk.secure_connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let tls = zk.tls_toml("other-ca.pem", Some(("client.pem", "client.key")));
    let watcher = WatcherProc::start(&hosts, QUICK_LOSS, Some(&smtp), &tls);
    let mails = smtp.wait_for_messages(1, LONG).await;
    let mail = &mails[0];
    assert!(
        mail.subject.contains(&format!("lost ZooKeeper {hosts}"))
            && mail.subject.ends_with("TLS handshake fails"),
        "{}",
        describe(&mails)
    );
    let cause = mail
        .body
        .lines()
        .find(|l| l.starts_with("Cause: "))
        .unwrap_or_else(|| panic!("no cause line:\n{}", describe(&mails)));
    assert!(
        cause.contains(&hosts)
            && cause.contains("the server's certificate is not trusted")
            && cause.contains("zk-tls.ca-file must hold the CA that signed it"),
        "{cause}"
    );
    assert!(mail.body.contains("[zk-tls] settings"), "{}", mail.body);
    assert!(!watcher.is_leading(), "{}", watcher.log());
}
