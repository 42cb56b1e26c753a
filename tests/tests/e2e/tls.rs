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
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{process_alive, WatchdogProc};
use zkwatchdog_tests::watcher::{zkwatcher_cli, WatcherProc};
use zkwatchdog_tests::zk;
use zkwatchdog_tests::zk_tls::{ClientAuth, ZkTlsEnsemble, ZkTlsServer};
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
    // As both programs do first thing in `main`.
    zkwatchdog::install_crypto_provider();
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
    let config = config.display().to_string();
    let out = zkwatcher_cli(&["status", "--json", "--config", &config]).await;
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

/// Starts a watchdog and a watcher with `tls_toml` (possibly empty) against the secure port and
/// checks that both report `expected` (which names the config key to fix) while the child keeps
/// running and nothing is registered; then that both stop promptly.
async fn assert_reported_clearly(zk: &ZkTlsServer, id: &str, tls_toml: &str, expected: &str) {
    assert_reported_clearly_at(zk, &zk.secure_connect_string(), id, tls_toml, expected).await;
}

/// [`assert_reported_clearly`] with the programs given `hosts`.
async fn assert_reported_clearly_at(
    zk: &ZkTlsServer,
    hosts: &str,
    id: &str,
    tls_toml: &str,
    expected: &str,
) {
    let mut wd = WatchdogProc::start(hosts, id, tls_toml, &[]);
    let smtp = SmtpServer::start(SmtpOptions::default());
    let mut watcher = WatcherProc::start(hosts, "", Some(&smtp), tls_toml);
    let child = wd.wait_for_children(1, LONG);
    wait_until_sync("the watchdog to report the TLS problem", LONG, || {
        wd.log()
            .lines()
            .find(|l| l.contains("cannot connect to zookeeper") && l.contains(expected))
            .map(str::to_owned)
    });
    wait_until_sync("the watcher to report the TLS problem", LONG, || {
        watcher
            .log()
            .lines()
            .find(|l| l.contains("cannot connect to zookeeper") && l.contains(expected))
            .map(str::to_owned)
    });
    assert!(wd.is_running(), "the watchdog keeps running");
    assert!(process_alive(child), "the child keeps running");
    assert_eq!(wd.child_pids().len(), 1, "the child was not restarted");
    assert!(!watcher.is_leading(), "the watcher did not connect");
    let plain = zk::client(&zk.plain_connect_string()).await;
    assert!(wd.marker(&plain).await.is_none(), "nothing registered");
    zk::close(plain).await;

    assert!(smtp.messages().is_empty(), "nothing to tell anyone yet");
    watcher.signal(Signal::SIGTERM);
    let status = watcher.wait_exit(LONG);
    assert!(status.success(), "watcher stops on SIGTERM: {status:?}");
    wd.signal(Signal::SIGTERM);
    wd.wait_exit(LONG);
    assert!(
        !process_alive(child),
        "the child is stopped with the watchdog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_zk_tls_the_secure_port_is_reported_as_speaking_tls() {
    let zk = ZkTlsServer::start();
    assert_reported_clearly(
        &zk,
        "tls-none@test",
        "",
        "the server speaks TLS on this port (a secureClientPort): configure [zk-tls]",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_reported_naming_ca_file_and_status_fails_with_it() {
    let zk = ZkTlsServer::start();
    let tls = zk.tls_toml("other-ca.pem", Some(("client.pem", "client.key")));
    let expected = "the server's certificate is not trusted (invalid peer certificate: \
                    UnknownIssuer); zk-tls.ca-file must hold the CA that signed it";
    assert_reported_clearly(&zk, "tls-wrong-ca@test", &tls, expected).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("status.toml");
    let secure = zk.secure_connect_string();
    std::fs::write(&config, format!("zk-hosts = {secure:?}\n{tls}")).expect("write config");
    // zkwatcher_cli bounds the run (30 s): a status that hangs fails the test.
    let config = config.display().to_string();
    let out = zkwatcher_cli(&["status", "--config", &config]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&secure) && stderr.contains(expected),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_client_certificate_is_reported_naming_cert_file() {
    let zk = ZkTlsServer::start();
    assert_reported_clearly(
        &zk,
        "tls-no-cert@test",
        &zk.tls_toml("ca.pem", None),
        "the server requires a client certificate (received fatal alert: BadCertificate); \
         set zk-tls.cert-file and zk-tls.key-file",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_of_another_ca_is_reported_as_rejected() {
    let zk = ZkTlsServer::start();
    assert_reported_clearly(
        &zk,
        "tls-other-cert@test",
        &zk.tls_toml("ca.pem", Some(("other-client.pem", "other-client.key"))),
        "the server rejected our client certificate",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_tls_against_the_plaintext_port_is_reported_as_not_tls() {
    let zk = ZkTlsServer::start();
    assert_reported_clearly_at(
        &zk,
        &zk.plain_connect_string(),
        "tls-plain-port@test",
        &zk.good_tls_toml(),
        "the server does not speak TLS on this port (it closed the connection during the \
         handshake: tls handshake eof); is it the plaintext clientPort? Use its \
         secureClientPort, or write tcp://HOST:PORT for plain TCP",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_alone_suffices_when_the_server_asks_no_client_certificate() {
    let zk = ZkTlsServer::start_with(ClientAuth::None);
    let wd = WatchdogProc::start(
        &zk.secure_connect_string(),
        "tls-ca-only@test",
        &zk.tls_toml("ca.pem", None),
        &[],
    );
    let plain = zk::client(&zk.plain_connect_string()).await;
    let live = wd.wait_live(&plain, 1, LONG).await;
    assert!(process_alive(live.child_pid));
    zk::close(plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_prefix_keeps_one_server_on_plain_tcp_with_zk_tls_configured() {
    let zk = ZkTlsServer::start();
    // The plaintext port written tcp://, the secure port (TLS by default) next to it: whichever
    // the client picks, it must connect.
    let hosts = format!(
        "tcp://{},{}",
        zk.plain_connect_string(),
        zk.secure_connect_string()
    );
    let wd = WatchdogProc::start(&hosts, "tls-mixed@test", &zk.good_tls_toml(), &[]);
    let plain = zk::client(&zk.plain_connect_string()).await;
    wd.wait_live(&plain, 1, LONG).await;
    assert!(!wd.log().contains("cannot connect"), "{}", wd.log());
    zk::close(plain).await;
    // And the plaintext port alone, written tcp://, works with [zk-tls] present.
    let wd = WatchdogProc::start(
        &format!("tcp://{}", zk.plain_connect_string()),
        "tls-tcp-only@test",
        &zk.good_tls_toml(),
        &[],
    );
    let plain = zk::client(&zk.plain_connect_string()).await;
    wd.wait_live(&plain, 1, LONG).await;
    zk::close(plain).await;
}

/// The commented `[zk-tls]` block of an example config, uncommented, with its paths pointed at
/// `certs` (the example's own paths are under /etc/zkwatchdog/tls/).
fn uncommented_zk_tls_block(example: &str, certs: &std::path::Path) -> String {
    let text = std::fs::read_to_string(zkwatchdog_tests::repo_root().join(example))
        .expect("read the example");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "# [zk-tls]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| &l[2..])
        .collect();
    assert!(block.len() > 3, "no commented [zk-tls] block in {example}");
    let prefix = format!("{}/", certs.display());
    block.join("\n").replace("/etc/zkwatchdog/tls/", &prefix) + "\n"
}

#[test]
fn the_commented_zk_tls_examples_validate_when_uncommented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let made = Command::new(zkwatchdog_tests::repo_root().join("scripts/zk-certs.sh"))
        .arg(&certs)
        .output()
        .expect("run zk-certs.sh");
    assert!(made.status.success(), "{made:?}");

    let block = uncommented_zk_tls_block("config/watchdog.example.toml", &certs);
    let text = format!("command = [\"sleep\", \"1\"]\n{block}");
    let c = zkwatchdog::config::parse_raw(&text, "watchdog example [zk-tls]")
        .and_then(|raw| raw.validate("watchdog example [zk-tls]", true))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let tls = c.zk_access.tls.expect("[zk-tls] read");
    assert!(tls.ca_pem.contains("BEGIN CERTIFICATE"));
    assert!(tls.identity.is_some(), "cert-file and key-file read");

    let block = uncommented_zk_tls_block("config/watcher.example.toml", &certs);
    let path = dir.path().join("watcher.toml");
    std::fs::write(&path, format!("zk-hosts = \"127.0.0.1:2281\"\n{block}")).expect("write");
    let c = zkwatcher::config::load(
        Some(&path),
        zkwatcher::config::Overrides::default(),
        zkwatcher::config::Needs::Registry,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.zk_access.tls.is_some_and(|t| t.identity.is_some()));
}

/// The secure ports the watchdog's log says it established sessions to, in order.
fn tls_session_ports(log: &str) -> Vec<u16> {
    log.lines()
        .filter_map(|l| {
            l.split("succeeds to establish session to tcp+tls://127.0.0.1:")
                .nth(1)
        })
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_tls_ensemble_the_watchdog_moves_to_another_node_when_its_node_stops() {
    let zk = ZkTlsEnsemble::start();
    let certs = zk.certs();
    let wd = WatchdogProc::start(
        &zk.secure_connect_string(),
        "tls-ensemble@test",
        &certs.good_tls_toml(),
        &[],
    );
    let plain = zk::client(&zk.plain_connect_string()).await;
    let first = wd.wait_live(&plain, 1, LONG).await;
    let port = wait_until_sync("the watchdog's first TLS session", LONG, || {
        tls_session_ports(&wd.log()).first().copied()
    });
    let node = zk
        .node_of_secure_port(port)
        .unwrap_or_else(|| panic!("{port} is no node's secure port"));

    zk.stop_node(node);
    let other = wait_until_sync("a TLS session to another node", LONG, || {
        tls_session_ports(&wd.log())
            .into_iter()
            .find(|p| *p != port)
    });
    assert!(zk.node_of_secure_port(other).is_some(), "{other}");
    // The agent stays registered, with the same child (a reconnect does not restart it).
    let plain = zk::client(&zk.plain_connect_string()).await;
    let live = wd.wait_live(&plain, 1, LONG).await;
    assert_eq!(
        live.child_pid, first.child_pid,
        "the child was not restarted"
    );
    assert!(wd.marker(&plain).await.is_some());
    zk::close(plain).await;
}
