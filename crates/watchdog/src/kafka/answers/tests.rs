//! Metadata into a cluster, who answered, leaders per partition, consumer groups, and a group's
//! offsets: table tests on hand-made answers.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::*;

fn broker(id: i32, host: &str, port: i32) -> Broker {
    Broker {
        id,
        host: host.to_string(),
        port,
        rack: None,
    }
}

fn metadata() -> MetadataResponse {
    let mut a = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(2);
    b.host = StrBytes::from("k2".to_string());
    b.port = 9092;
    a.brokers = vec![b];
    a.controller_id = BrokerId(-1);
    let part = |id: i32, leader: i32, error_code: i16| {
        let mut p = MetadataResponsePartition::default();
        p.partition_index = id;
        p.leader_id = BrokerId(leader);
        p.replica_nodes = vec![BrokerId(2), BrokerId(3)];
        p.isr_nodes = vec![BrokerId(2)];
        p.offline_replicas = vec![BrokerId(3)];
        p.error_code = error_code;
        p
    };
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from("orders".to_string())));
    t.partitions = vec![part(1, -1, 5), part(0, 2, 0)];
    let mut unnamed = MetadataResponseTopic::default();
    unnamed.name = None;
    a.topics = vec![t, unnamed];
    a
}

#[test]
fn metadata_becomes_a_cluster_with_no_leader_and_no_controller_as_none() {
    let c = cluster(&metadata(), 2);
    assert_eq!(c.answered_by, 2);
    assert_eq!(c.controller, None);
    assert_eq!(c.brokers, [broker(2, "k2", 9092)]);
    assert_eq!(c.topics.len(), 1, "the topic without a name is left out");
    let t = &c.topics[0];
    assert_eq!(t.name, "orders");
    let p: Vec<(i32, Option<i32>, i16)> = t
        .partitions
        .iter()
        .map(|p| (p.id, p.leader, p.error_code))
        .collect();
    assert_eq!(p, [(0, Some(2), 0), (1, None, 5)]);
    assert_eq!(t.partitions[0].offline_replicas, [3]);
    assert_eq!(t.partitions[0].isr, [2]);
}

#[test]
fn who_answered_is_found_by_address_then_by_a_unique_port() {
    let brokers = [broker(1, "10.0.0.1", 9092), broker(2, "10.0.0.2", 9093)];
    let cases = [
        ("10.0.0.2:9093", 2),
        ("localhost:9092", 1),
        ("localhost:9999", -1),
        ("no-port", -1),
    ];
    for (addr, want) in cases {
        assert_eq!(answered_by(&brokers, addr), want, "{addr}");
    }
    let same_port = [broker(1, "a", 9092), broker(2, "b", 9092)];
    assert_eq!(answered_by(&same_port, "localhost:9092"), -1);
}

#[test]
fn partitions_go_to_their_leaders_gone_topics_and_offline_partitions_are_skipped() {
    let c = cluster(&metadata(), 2);
    let tp = |t: &str, p: i32| (t.to_string(), p);
    let got = by_leader(&c, &[tp("orders", 0), tp("deleted", 0)]);
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [(2, vec![tp("orders", 0)])]
    );
    let got = by_leader(&c, &[tp("orders", 1), tp("orders", 0)]);
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [(2, vec![tp("orders", 0)])],
        "orders-1 has no leader"
    );
    assert!(matches!(broker_addr(&c, 2).as_deref(), Ok("k2:9092")));
    assert!(matches!(
        broker_addr(&c, 7),
        Err(KafkaError::UnknownBroker { id: 7 })
    ));
}

#[test]
fn consumer_groups_are_those_kafkas_admin_client_counts() {
    let g = |protocol_type: &str, group_type: Option<&str>| ListedGroup {
        group: "g".into(),
        protocol_type: protocol_type.into(),
        group_type: group_type.map(String::from),
        state: None,
    };
    let cases = [
        (g("consumer", Some("classic")), true),
        (g("", Some("classic")), true),
        (g("connect", Some("classic")), false),
        (g("consumer", Some("consumer")), true),
        (g("share", Some("share")), false),
        (g("streams", Some("streams")), false),
        (g("consumer", None), true),
        (g("connect", None), false),
    ];
    for (listed, want) in cases {
        assert_eq!(listed.is_consumer_group(), want, "{listed:?}");
    }
}

#[test]
fn group_offsets_are_sorted_beside_log_ends_and_lag_is_their_difference() {
    let tp = |t: &str, p: i32| (t.to_string(), p);
    let committed = [
        (tp("b", 0), Some(5)),
        (tp("a", 1), None),
        (tp("a", 0), Some(10)),
        (tp("gone", 0), Some(1)),
    ];
    let log_end = HashMap::from([(tp("a", 0), 12), (tp("a", 1), 4), (tp("b", 0), 5)]);
    let g = group_offsets(
        "g",
        Some("Stable".into()),
        None,
        Some(1),
        &committed,
        &log_end,
    );
    let got: Vec<(&str, i32, Option<i64>, i64, i64)> = g
        .partitions
        .iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.partition,
                p.committed,
                p.log_end,
                p.lag(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", 0, Some(10), 12, 2),
            ("a", 1, None, 4, 4),
            ("b", 0, Some(5), 5, 0)
        ]
    );
}
