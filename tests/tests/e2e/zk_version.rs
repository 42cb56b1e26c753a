//! The server-version check (`zkwatchdog::registry::server_version`) against the real servers
//! the fixtures run (Debian's 3.8, or the release `ZKWATCHDOG_TEST_ZK_VERSION` names): `srvr`
//! names the release over plain TCP and over TLS, and the verdict agrees with what the server
//! answers to `addWatch`. And the refusals, against real old releases whatever the fixtures
//! run: ZooKeeper 3.4.14 (fetched from Maven Central once) is refused by both programs at start,
//! naming the version and the minimum; the watcher runs on 3.5.10 with one-shot watches (what
//! they report: `registry_watch.rs`; the core scenarios against 3.5: `scripts/test.sh`).

use std::time::Duration;
use zkwatchdog::registry::server_version::{
    ask_servers, decide, watch_mode_from_add_watch, Answer, ServerVersion, Verdict, WatchMode,
    MIN_SERVER_VERSION,
};

use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::{process_alive, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, fixture_release, ZkServer};
use zkwatchdog_tests::zk_tls::ZkTlsServer;
use zookeeper_client::AddWatchMode;

const LONG: Duration = Duration::from_secs(30);
/// A webhook nobody listens to: the watcher needs a channel to start, and never sends here.
const HOOK: &str = "[[webhook]]\nkind = \"generic\"\nurl = \"http://127.0.0.1:1/hook\"\n";

fn release() -> ServerVersion {
    let text = fixture_release();
    let numbers: Vec<u32> = text
        .split('.')
        .map(|n| n.parse().expect("a numeric release"))
        .collect();
    match numbers.as_slice() {
        [a, b, c] => ServerVersion::new(*a, *b, *c),
        _ => panic!("not a release X.Y.Z: {text}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srvr_names_the_release_and_agrees_with_the_answer_to_add_watch() {
    let server = tokio::task::spawn_blocking(ZkServer::start)
        .await
        .expect("start ZooKeeper");
    let expected = release();
    let answers = ask_servers(&server.connect_string(), None).await;
    assert_eq!(
        answers,
        vec![(
            format!("tcp://127.0.0.1:{}", server.port()),
            Answer::Version(expected)
        )]
    );
    let verdict = decide(&answers);

    let client = zk::client(&server.connect_string()).await;
    let added = client.watch("/", AddWatchMode::PersistentRecursive).await;
    let probed = watch_mode_from_add_watch(added.as_ref().map(drop));
    zk::close(client).await;

    if expected < MIN_SERVER_VERSION {
        let e = verdict.expect_err("a release below the minimum is refused");
        assert_eq!(e.found, expected);
        assert!(
            e.to_string()
                .contains(&format!("is version {expected}, too old")),
            "{e}"
        );
        // 3.4 answers addWatch as 3.5 does: the probe alone could not refuse it.
        assert_eq!(probed, Some(WatchMode::OneShot));
    } else {
        let Ok(Verdict::Known { version, mode, .. }) = verdict else {
            panic!("expected a known version, got {verdict:?}");
        };
        assert_eq!(version, expected);
        assert_eq!(Some(mode), probed, "srvr and addWatch disagree");
    }
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("stop ZooKeeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_srvr_is_asked_on_the_secure_port_with_the_configured_certificates() {
    let expected = release();
    if expected < ServerVersion::new(3, 5, 0) {
        // No TLS for clients before 3.5 (zk.sh refuses to start one): nothing to ask.
        return;
    }
    let server = tokio::task::spawn_blocking(ZkTlsServer::start)
        .await
        .expect("start ZooKeeper with TLS");
    let access = server.access();
    let tls = access.tls.as_ref().expect("TLS settings");
    let answers = ask_servers(&server.secure_connect_string(), Some(tls)).await;
    assert_eq!(
        answers,
        vec![(
            format!("tcp+tls://127.0.0.1:{}", server.secure_port()),
            Answer::Version(expected)
        )]
    );
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("stop ZooKeeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_refuses_zookeeper_3_4_naming_the_version_and_stops_its_child() {
    let zk = tokio::task::spawn_blocking(|| ZkServer::start_release("3.4.14"))
        .await
        .expect("start ZooKeeper 3.4.14");
    let mut watchdog = WatchdogProc::start(&zk.connect_string(), "old@test", "", &[]);
    let status = watchdog.wait_exit(LONG);
    let log = watchdog.log();
    assert_eq!(status.code(), Some(2), "{log}");
    let why = format!(
        "zookeeper at tcp://127.0.0.1:{} is version 3.4.14, too old: zkwatchdog needs \
         zookeeper 3.5.0 or later",
        zk.port()
    );
    assert!(log.contains(&why), "the refusal says: {why}\n{log}");
    for child in watchdog.child_pids() {
        wait_until("the refused watchdog's child to be gone", LONG, || async {
            (!process_alive(child)).then_some(())
        })
        .await;
    }
    tokio::task::spawn_blocking(move || drop(zk))
        .await
        .expect("stop ZooKeeper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_refuses_zookeeper_3_4_naming_the_version_and_follows_3_5_with_one_shot_watches(
) {
    let zk = tokio::task::spawn_blocking(|| ZkServer::start_release("3.4.14"))
        .await
        .expect("start ZooKeeper 3.4.14");
    let mut watcher = WatcherProc::start(&zk.connect_string(), "", None, HOOK);
    let status = tokio::task::block_in_place(|| watcher.wait_exit(LONG));
    let log = watcher.log();
    assert_eq!(status.code(), Some(2), "{log}");
    let why = format!(
        "zookeeper at tcp://127.0.0.1:{} is version 3.4.14, too old: zkwatchdog needs \
         zookeeper 3.5.0 or later",
        zk.port()
    );
    assert!(log.contains(&why), "the refusal says: {why}\n{log}");
    tokio::task::spawn_blocking(move || drop(zk))
        .await
        .expect("stop ZooKeeper");

    let zk = tokio::task::spawn_blocking(|| ZkServer::start_release("3.5.10"))
        .await
        .expect("start ZooKeeper 3.5.10");
    let mut watcher = WatcherProc::start(&zk.connect_string(), "", None, HOOK);
    tokio::task::block_in_place(|| watcher.wait_leading(LONG));
    let log = watcher.log();
    assert!(
        log.contains("following the registry with one-shot watches"),
        "the watcher says how it follows the registry on 3.5:\n{log}"
    );
    watcher.signal(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| watcher.wait_exit(LONG));
    assert_eq!(status.code(), Some(0), "{}", watcher.log());
    tokio::task::spawn_blocking(move || drop(zk))
        .await
        .expect("stop ZooKeeper");
}
