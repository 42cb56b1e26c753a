//! Smoke tests of the ZooKeeper fixtures themselves: a standalone server keeps its data across a
//! stop/start, a reserved server can be started late, and a 3-node ensemble elects a new leader,
//! data intact, when its leader is killed.

use std::time::Duration;

use serde_json::json;
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::zk::{self, ZkEnsemble, ZkServer};
use zookeeper_client::{Acls, CreateMode, CreateOptions};

fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_keeps_data_across_restart() {
    let server = ZkServer::start();
    assert!(server.is_serving());
    assert_eq!(
        server.connect_string(),
        format!("127.0.0.1:{}", server.port())
    );

    let client = zk::client(&server.connect_string()).await;
    let value = json!({"agent": "flume-1", "pid": 42});
    client
        .create("/fixture", value.to_string().as_bytes(), &persistent())
        .await
        .expect("create /fixture");
    assert!(zk::exists(&client, "/fixture").await);
    assert!(!zk::exists(&client, "/missing").await);
    assert_eq!(zk::get_json(&client, "/fixture").await, Some(value.clone()));
    assert_eq!(zk::get_json(&client, "/missing").await, None);
    zk::close(client).await;

    server.stop();
    assert!(!server.is_serving(), "server still answers after stop");
    server.stop(); // stopping twice is fine

    server.start_again();
    let client = zk::client(&server.connect_string()).await;
    assert_eq!(zk::get_json(&client, "/fixture").await, Some(value.clone()));
    zk::close(client).await;

    server.restart();
    let client = zk::client(&server.connect_string()).await;
    assert_eq!(zk::get_json(&client, "/fixture").await, Some(value));
    zk::close(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_server_starts_later() {
    let server = ZkServer::reserve();
    assert!(!server.is_serving());
    // A client that starts while ZooKeeper is down gets its session once the server is up.
    let connect = server.connect_string();
    let pending = tokio::spawn(async move { zk::client(&connect).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.start_again();
    let client = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("client connected within 30 s")
        .expect("client task");
    assert!(zk::exists(&client, "/zookeeper").await);
    zk::close(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_elects_new_leader_with_data_intact() {
    let ensemble = ZkEnsemble::start();
    let connect = ensemble.connect_string();
    assert_eq!(connect.split(',').count(), 3);

    let client = zk::client(&connect).await;
    let value = json!({"state": "running"});
    client
        .create(
            "/ensemble-fixture",
            value.to_string().as_bytes(),
            &persistent(),
        )
        .await
        .expect("create /ensemble-fixture");
    zk::close(client).await;

    let old = ensemble.leader();
    let followers: Vec<usize> = (1..=3).filter(|n| *n != old).collect();
    for n in &followers {
        assert_eq!(ensemble.mode(*n).as_deref(), Some("follower"));
    }

    ensemble.kill_node(old);
    assert_eq!(ensemble.mode(old), None);
    let new = wait_until("a new leader", Duration::from_secs(30), || async {
        ensemble.try_leader().filter(|n| *n != old)
    })
    .await;
    assert!(followers.contains(&new));

    // Read from the survivors only.
    let client = zk::client(&ensemble.connect_string_of(&followers)).await;
    client.sync("/ensemble-fixture").await.expect("sync");
    assert_eq!(
        zk::get_json(&client, "/ensemble-fixture").await,
        Some(value.clone())
    );
    zk::close(client).await;

    // The old leader rejoins as a follower and has the data.
    ensemble.start_node(old);
    assert_eq!(ensemble.mode(old).as_deref(), Some("follower"));
    let client = zk::client(&ensemble.connect_string_of(&[old])).await;
    client.sync("/ensemble-fixture").await.expect("sync");
    assert_eq!(
        zk::get_json(&client, "/ensemble-fixture").await,
        Some(value)
    );
    zk::close(client).await;
}
