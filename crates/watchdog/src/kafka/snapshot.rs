//! One reading of a Kafka cluster: brokers, partitions with their leaders and in-sync replicas,
//! and consumer groups' committed offsets beside the partitions' log-end offsets. Produced by
//! the wire client, judged by the pure evaluators; nothing here does I/O.

/// The cluster as the Metadata answer of one broker describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The id of the broker that answered.
    pub answered_by: i32,
    /// The controller id the answer names (`None`: -1, unknown).
    pub controller: Option<i32>,
    /// The live brokers (those in the answer).
    pub brokers: Vec<Broker>,
    pub topics: Vec<Topic>,
}

/// A live broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// An internal topic (`__consumer_offsets`, `__transaction_state`).
    pub internal: bool,
    pub partitions: Vec<Partition>,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub id: i32,
    /// The leader's broker id (`None`: -1, no leader: the partition is offline).
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    /// The partition-level error code of the answer (0: none; 5 `LEADER_NOT_AVAILABLE`).
    pub error_code: i16,
}

/// A consumer group's committed offsets, each beside its partition's log-end offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group: String,
    /// The group's state as the coordinator reports it (`Stable`, `Empty`, `Dead`, ...), when
    /// known.
    pub state: Option<String>,
    /// `classic` or `consumer` (the KIP-848 protocol), when known.
    pub protocol: Option<String>,
    /// The broker coordinating the group, when known.
    pub coordinator: Option<i32>,
    pub partitions: Vec<PartitionOffsets>,
}

/// One partition of a group's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed for it).
    pub committed: Option<i64>,
    /// The partition's log-end offset (high watermark) read in the same probe.
    pub log_end: i64,
}

impl PartitionOffsets {
    /// Log-end offset minus committed offset (0 when nothing is committed and the log is empty;
    /// the whole log when nothing is committed at all).
    pub fn lag(&self) -> i64 {
        self.log_end
            .saturating_sub(self.committed.unwrap_or(0))
            .max(0)
    }
}

impl Cluster {
    /// Every partition with its topic, in the answer's order (internal topics included).
    pub fn partitions(&self) -> impl Iterator<Item = (&Topic, &Partition)> {
        self.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
    }

    /// The lowest id among the live brokers: the one that reports what belongs to no broker
    /// (an offline partition, a group without a known coordinator).
    pub fn lowest_live_broker(&self) -> Option<i32> {
        self.brokers.iter().map(|b| b.id).min()
    }
}

impl Partition {
    /// No leader: nobody can read or write it.
    pub fn is_offline(&self) -> bool {
        self.leader.is_none()
    }

    /// Led, but fewer replicas in sync than assigned.
    pub fn is_under_replicated(&self) -> bool {
        self.leader.is_some() && self.isr.len() < self.replicas.len()
    }
}
