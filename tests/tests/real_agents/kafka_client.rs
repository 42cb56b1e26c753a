//! zkwatchdog's Kafka admin client (`zkwatchdog::kafka`) against a real Kafka 4.4 broker, with
//! records produced and consumed by Kafka's own console tools: the cluster it reads and the
//! lag it computes are those the tools made.

use std::time::Duration;

use zkwatchdog::kafka::snapshot::{Cluster, GroupOffsets};
use zkwatchdog::kafka::{read_cluster, read_groups, Groups, KafkaError};
use zkwatchdog_tests::agents::{jvm_slot, Kafka};
use zkwatchdog_tests::kafka_tools::{consume, create_topic, produce, GroupProtocol};

/// One whole read (every connection and request) against the local broker.
const READ: Duration = Duration::from_secs(20);

fn group<'a>(groups: &'a [GroupOffsets], name: &str) -> &'a GroupOffsets {
    groups
        .iter()
        .find(|g| g.group == name)
        .unwrap_or_else(|| panic!("no group {name} in {groups:?}"))
}

/// Sums over a group's partitions of `topic`: (log-end, committed, lag).
fn sums(g: &GroupOffsets, topic: &str) -> (i64, i64, i64) {
    let parts = g.partitions.iter().filter(|p| p.topic == topic);
    parts.fold((0, 0, 0), |(e, c, l), p| {
        (e + p.log_end, c + p.committed.unwrap_or(0), l + p.lag())
    })
}

fn assert_single_broker_topic(cluster: &Cluster, kafka: &Kafka, topic: &str) {
    let port = kafka
        .bootstrap()
        .rsplit_once(':')
        .map(|(_, p)| p.to_string());
    assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
    let broker = &cluster.brokers[0];
    assert_eq!(
        (broker.host.as_str(), Some(broker.port.to_string())),
        ("127.0.0.1", port)
    );
    assert_eq!(cluster.answered_by, broker.id);
    assert_eq!(cluster.controller, Some(broker.id));
    let t = cluster
        .topics
        .iter()
        .find(|t| t.name == topic)
        .unwrap_or_else(|| panic!("no topic {topic} in {cluster:?}"));
    assert!(!t.internal);
    let ids: Vec<i32> = t.partitions.iter().map(|p| p.id).collect();
    assert_eq!(ids, [0, 1, 2]);
    for p in &t.partitions {
        assert_eq!(p.leader, Some(broker.id), "{p:?}");
        assert_eq!(p.replicas, [broker.id], "{p:?}");
        assert_eq!(p.isr, p.replicas, "{p:?}");
        assert!(p.offline_replicas.is_empty(), "{p:?}");
        assert_eq!(p.error_code, 0, "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_and_a_classic_groups_lag_are_what_the_console_tools_made() {
    let _slot = jvm_slot();
    let kafka = Kafka::start();
    let b = kafka.bootstrap();
    create_topic(&b, "orders", 3);
    produce(&b, "orders", 30);
    consume(&b, "orders", "billing", 7, GroupProtocol::Classic);
    let boot = vec![b.clone()];

    let cluster = read_cluster(&boot, READ).await.expect("read the cluster");
    assert_single_broker_topic(&cluster, &kafka, "orders");
    assert!(
        cluster
            .topics
            .iter()
            .any(|t| t.name == "__consumer_offsets" && t.internal),
        "the consumer's commits created the internal offsets topic: {cluster:?}"
    );

    let names = ["billing".to_string(), "nobody".to_string()];
    let groups = read_groups(&boot, Groups::These(&names), READ)
        .await
        .expect("read the groups");
    let g = group(&groups, "billing");
    assert_eq!(g.coordinator, Some(cluster.answered_by));
    assert_eq!(g.protocol.as_deref(), Some("classic"));
    assert_eq!(g.state.as_deref(), Some("Empty"), "the consumer has left");
    assert_eq!(g.partitions.len(), 3, "{g:?}");
    assert_eq!(sums(g, "orders"), (30, 7, 23), "{g:?}");
    let nobody = group(&groups, "nobody");
    assert!(nobody.partitions.is_empty(), "{nobody:?}");
    // Kafka 4.4 answers DescribeGroups about an unknown group with GROUP_ID_NOT_FOUND (older
    // brokers said `Dead`), and ListGroups does not name it: its state is unknown.
    assert_eq!(nobody.state, None, "{nobody:?}");

    let all = read_groups(&boot, Groups::All, READ)
        .await
        .expect("read all groups");
    let names: Vec<&str> = all.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["billing"], "{all:?}");
    assert_eq!(&all[0], g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_the_consumer_protocol_are_read_beside_classic_ones() {
    let _slot = jvm_slot();
    let kafka = Kafka::start();
    let b = kafka.bootstrap();
    create_topic(&b, "events", 3);
    produce(&b, "events", 40);
    consume(&b, "events", "new-style", 11, GroupProtocol::Consumer);
    consume(&b, "events", "old-style", 5, GroupProtocol::Classic);
    let boot = vec![b.clone()];

    let all = read_groups(&boot, Groups::All, READ)
        .await
        .expect("read all groups");
    let names: Vec<&str> = all.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(names, ["new-style", "old-style"], "{all:?}");
    let new = group(&all, "new-style");
    assert_eq!(new.protocol.as_deref(), Some("consumer"));
    assert_eq!(new.state.as_deref(), Some("Empty"), "{new:?}");
    assert_eq!(sums(new, "events"), (40, 11, 29), "{new:?}");
    let old = group(&all, "old-style");
    assert_eq!(old.protocol.as_deref(), Some("classic"));
    assert_eq!(sums(old, "events"), (40, 5, 35), "{old:?}");

    let named = read_groups(&boot, Groups::These(&["new-style".to_string()]), READ)
        .await
        .expect("read one group");
    assert_eq!(named.as_slice(), std::slice::from_ref(new));
}

#[tokio::test]
async fn a_port_where_nothing_listens_is_a_connect_error_naming_it() {
    let port = zkwatchdog_tests::agents::free_ports().0;
    let addr = format!("127.0.0.1:{port}");
    match read_cluster(std::slice::from_ref(&addr), READ).await {
        Err(KafkaError::Connect { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("expected a connect error, got {other:?}"),
    }
}
