//! The server-version check (`zkwatchdog::registry::server_version`) against the real servers
//! the fixtures run (Debian's 3.8, or the release `ZKWATCHDOG_TEST_ZK_VERSION` names): `srvr`
//! names the release over plain TCP and over TLS, and the verdict agrees with what the server
//! answers to `addWatch`.

use zkwatchdog::registry::server_version::{
    ask_servers, decide, watch_mode_from_add_watch, Answer, ServerVersion, Verdict, WatchMode,
    MIN_SERVER_VERSION,
};
use zkwatchdog_tests::zk::{self, fixture_release, ZkServer};
use zkwatchdog_tests::zk_tls::ZkTlsServer;
use zookeeper_client::AddWatchMode;

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
