//! Pure translations between the brokers' answers and the snapshot types: Metadata into a
//! [`Cluster`], which broker answered, which leader to ask for which partition, which listed
//! groups are consumer groups, and a group's offsets assembled beside the log-end offsets.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::MetadataResponse;

use super::error::KafkaError;
use super::snapshot::{Broker, Cluster, GroupOffsets, Partition, PartitionOffsets, Topic};

/// A `(topic, partition)` pair.
pub type TopicPartition = (String, i32);

/// A group as ListGroups names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// The group id.
    pub group: String,
    /// The embedded protocol of a classic group (`consumer`, `connect`, empty for a group only
    /// used to commit offsets); `consumer` for a group of the new protocol.
    pub protocol_type: String,
    /// The group type (ListGroups v5+): `classic`, `consumer`, `share`, `streams`.
    pub group_type: Option<String>,
    /// The state (ListGroups v4+).
    pub state: Option<String>,
}

impl ListedGroup {
    /// A consumer group, as Kafka's own admin client counts them: of the `consumer` type, or
    /// classic with the `consumer` embedded protocol or none (offsets committed without
    /// joining); not Connect's worker groups, share or streams groups.
    pub fn is_consumer_group(&self) -> bool {
        match self.group_type.as_deref() {
            Some("consumer") => true,
            Some("classic") | None => {
                self.protocol_type == "consumer" || self.protocol_type.is_empty()
            }
            Some(_) => false,
        }
    }
}

/// Kafka's -1 for "none" as an `Option`.
fn id(n: i32) -> Option<i32> {
    (n >= 0).then_some(n)
}

/// The cluster a Metadata answer describes, topics sorted by name and partitions by id;
/// topics without a name (an answer by topic id only) are left out.
pub fn cluster(answer: &MetadataResponse, answered_by: i32) -> Cluster {
    let mut brokers: Vec<Broker> = answer
        .brokers
        .iter()
        .map(|b| Broker {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let mut topics: Vec<Topic> = answer
        .topics
        .iter()
        .filter_map(|t| {
            let name = t.name.as_ref()?.0.to_string();
            let mut partitions: Vec<Partition> = t
                .partitions
                .iter()
                .map(|p| Partition {
                    id: p.partition_index,
                    leader: id(p.leader_id.0),
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                    isr: p.isr_nodes.iter().map(|r| r.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|r| r.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.id);
            Some(Topic {
                name,
                internal: t.is_internal,
                partitions,
            })
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Cluster {
        answered_by,
        controller: id(answer.controller_id.0),
        brokers,
        topics,
    }
}

/// Which broker of `brokers` is at `addr` (`host:port`, as dialled): the one with that host and
/// port, else the only one with that port, else -1 (the address was an alias the brokers do not
/// advertise).
pub fn answered_by(brokers: &[Broker], addr: &str) -> i32 {
    let (host, port) = match addr.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']), p.parse::<i32>().ok()),
        None => (addr, None),
    };
    if let Some(b) = brokers
        .iter()
        .find(|b| b.host == host && Some(b.port) == port)
    {
        return b.id;
    }
    let same_port: Vec<&Broker> = brokers.iter().filter(|b| Some(b.port) == port).collect();
    match same_port.as_slice() {
        [only] => only.id,
        _ => -1,
    }
}

/// The address to dial for broker `id`.
pub fn broker_addr(cluster: &Cluster, id: i32) -> Result<String, KafkaError> {
    cluster
        .brokers
        .iter()
        .find(|b| b.id == id)
        .map(|b| format!("{}:{}", b.host, b.port))
        .ok_or(KafkaError::UnknownBroker { id })
}

/// The partitions to ask each leader about. Partitions of topics the cluster no longer has (a
/// group keeps offsets of deleted topics until they expire) are left out, and so are offline
/// partitions (no leader: their log-end offset cannot be read; the cluster checks report
/// them), so that one offline partition does not hide the lag of every other.
pub fn by_leader(
    cluster: &Cluster,
    wanted: &[TopicPartition],
) -> BTreeMap<i32, Vec<TopicPartition>> {
    let mut out: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for (topic, partition) in wanted {
        let Some(p) = cluster
            .topics
            .iter()
            .find(|t| &t.name == topic)
            .and_then(|t| t.partitions.iter().find(|p| p.id == *partition))
        else {
            continue;
        };
        let Some(leader) = p.leader else {
            continue;
        };
        out.entry(leader)
            .or_default()
            .push((topic.clone(), *partition));
    }
    out
}

/// A group's committed offsets beside the log-end offsets, sorted by topic and partition;
/// partitions without a log-end offset (their topic is gone) are left out.
pub fn group_offsets(
    group: &str,
    state: Option<String>,
    protocol: Option<String>,
    coordinator: Option<i32>,
    committed: &[(TopicPartition, Option<i64>)],
    log_end: &HashMap<TopicPartition, i64>,
) -> GroupOffsets {
    let mut partitions: Vec<PartitionOffsets> = committed
        .iter()
        .filter_map(|(tp, c)| {
            log_end.get(tp).map(|&end| PartitionOffsets {
                topic: tp.0.clone(),
                partition: tp.1,
                committed: *c,
                log_end: end,
            })
        })
        .collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    GroupOffsets {
        group: group.to_string(),
        state,
        protocol,
        coordinator,
        partitions,
    }
}

#[cfg(test)]
mod tests;
