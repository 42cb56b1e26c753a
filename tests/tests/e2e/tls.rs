//! TLS to ZooKeeper end to end: Debian's ZooKeeper serving a secure client port with
//! certificates from `scripts/zk-certs.sh` (client certificates required), `zkwatchdog` and
//! `zkwatcher` given only that port and a `[zk-tls]` table. They register and alert as over
//! plain TCP; a missing `[zk-tls]`, a wrong CA or a missing client certificate is reported
//! clearly (naming the cause and the key to fix) while the child keeps running.

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::Session;
use zkwatchdog_tests::bin_path;
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::{process_alive, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk;
use zkwatchdog_tests::zk_tls::ZkTlsServer;
use zookeeper_client::Client;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// Fast restarts so the crash test does not wait for the default one-second backoff.
const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

/// A test-side client over TLS, through the same `Session::connect` the programs use.
async fn tls_client(zk: &ZkTlsServer) -> Client {
    let session = tokio::time::timeout(
        LONG,
        Session::connect(
            &zk.secure_connect_string(),
            Duration::from_secs(10),
            &zk.access(),
        ),
    )
    .await
    .expect("TLS connect within the deadline")
    .unwrap_or_else(|e| panic!("TLS connect to {}: {e}", zk.secure_connect_string()));
    session.client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_watchdog_registers_watcher_alerts_once_then_recovery_and_stop_is_silent() {
    let zk = ZkTlsServer::start();
    let secure = zk.secure_connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(
        &secure,
        "group-wait = \"0s\"",
        Some(&smtp),
        &zk.good_tls_toml(),
    );
    watcher.wait_leading(LONG);
    let id = "tls-crash@test";
    let mut wd = WatchdogProc::start(
        &secure,
        id,
        &format!("{FAST_RESTART}{}", zk.good_tls_toml()),
        &["--stderr", "tls agent fell over"],
    );

    // Read the registry over TLS, as the programs do, and cross-check over plain TCP.
    let c = tls_client(&zk).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    let marker = wd.marker(&c).await.expect("the marker");
    assert_eq!(marker.session_id, first.session_id, "one watchdog session");
    let plain = zk::client(&zk.plain_connect_string()).await;
    assert!(zk::exists(&plain, &wd.live_path()).await);
    assert!(
        !wd.log().contains("cannot connect"),
        "connected at once: {}",
        wd.log()
    );

    // A crash: exactly one CRASHED email (possibly grouped with the recovery), then RECOVERED.
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, 2, LONG).await;
    let mails = smtp.wait_for_messages(1, LONG).await;
    let crash = &mails[0];
    assert!(
        crash.subject.contains("CRASHED") && crash.subject.contains(id),
        "{:?}",
        subjects(&mails)
    );
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    assert!(crash.body.contains("tls agent fell over"), "{}", crash.body);
    let expected = if crash.subject.contains("RECOVERED") {
        1
    } else {
        let mails = smtp.wait_for_messages(2, LONG).await;
        assert!(
            mails[1].subject.contains("RECOVERED") && mails[1].subject.contains(id),
            "{:?}",
            subjects(&mails)
        );
        2
    };
    let incident = format!("/zkwatchdog/incidents/{id}");
    let closed = &incident;
    let c_ref = &c;
    wait_until("the incident to be closed", LONG, || async move {
        (!zk::exists(c_ref, closed).await).then_some(())
    })
    .await;

    // A planned stop: marker and liveness node gone, no email.
    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(LONG);
    let stopped = Instant::now();
    assert_eq!(status.code(), Some(0), "planned stop exits 0: {status:?}");
    assert!(wd.marker(&c).await.is_none(), "marker removed");
    assert!(wd.liveness(&c).await.is_none(), "liveness removed");
    while stopped.elapsed() < Duration::from_millis(3000) {
        assert_eq!(
            smtp.messages().len(),
            expected,
            "{:?}",
            subjects(&smtp.messages())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!zk::exists(&c, &incident).await, "incident closed");
    zk::close(plain).await;
    zk::close(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zkwatcher_status_over_tls_lists_the_agent() {
    let zk = ZkTlsServer::start();
    let secure = zk.secure_connect_string();
    let id = "tls-status@test";
    let wd = WatchdogProc::start(&secure, id, &zk.good_tls_toml(), &[]);
    let c = tls_client(&zk).await;
    wd.wait_live(&c, 1, LONG).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("status.toml");
    std::fs::write(
        &config,
        format!("zk-hosts = {secure:?}\n{}", zk.good_tls_toml()),
    )
    .expect("write the config");
    let out = Command::new(bin_path("zkwatcher"))
        .args(["status", "--json", "--config"])
        .arg(&config)
        .env_remove("ZK_HOSTS")
        .output()
        .expect("run zkwatcher status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("JSON status");
    let text = status.to_string();
    assert!(text.contains(id), "{text}");
    assert!(text.contains("running"), "{text}");
    assert!(process_alive(wd.pid()));
    zk::close(c).await;
}
