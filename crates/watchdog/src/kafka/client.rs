//! The Kafka admin reads the probe needs, over wire connections: the cluster's metadata,
//! log-end offsets from each partition's leader, the consumer groups, their coordinators,
//! committed offsets and states; and the two calls the probe makes, [`read_cluster`] and
//! [`read_groups`]. Everything a call does is bounded by one deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::answers::{self, ListedGroup, TopicPartition};
use super::error::KafkaError;
use super::snapshot::{Cluster, GroupOffsets};
use super::wire::Connection;

/// Kafka's ListOffsets timestamp for "the latest offset" (the log-end offset).
const LATEST: i64 = -1;

/// Which groups [`read_groups`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Groups<'a> {
    /// Every consumer group of the cluster (classic and `consumer` protocol).
    All,
    /// These groups.
    These(&'a [String]),
}

/// The cluster as the first reachable bootstrap broker describes it.
pub async fn read_cluster(bootstrap: &[String], timeout: Duration) -> Result<Cluster, KafkaError> {
    Ok(Client::connect(bootstrap, Instant::now() + timeout)
        .await?
        .cluster
        .clone())
}

/// The committed offsets of `groups`, each beside its partition's log-end offset, with each
/// group's state, protocol and coordinator; sorted by group id.
pub async fn read_groups(
    bootstrap: &[String],
    groups: Groups<'_>,
    timeout: Duration,
) -> Result<Vec<GroupOffsets>, KafkaError> {
    let mut client = Client::connect(bootstrap, Instant::now() + timeout).await?;
    client.read_groups(groups).await
}

/// Connections to the brokers of one cluster, opened as needed, all under one deadline.
#[derive(Debug)]
pub struct Client {
    deadline: Instant,
    cluster: Cluster,
    /// The bootstrap connection (under `cluster.answered_by` when that is known) and those
    /// opened since, by broker id.
    conns: HashMap<i32, Connection>,
}

impl Client {
    /// Connects to the first bootstrap address that answers and reads the cluster's metadata.
    pub async fn connect(bootstrap: &[String], deadline: Instant) -> Result<Self, KafkaError> {
        let mut last = KafkaError::NoBootstrap;
        for addr in bootstrap {
            match Connection::open(addr, deadline).await {
                Ok(mut conn) => {
                    let cluster = metadata(&mut conn).await?;
                    let mut conns = HashMap::new();
                    conns.insert(cluster.answered_by, conn);
                    return Ok(Client {
                        deadline,
                        cluster,
                        conns,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The cluster's metadata as read when connecting.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The connection to broker `id`, opened by its address in the metadata if need be.
    async fn conn(&mut self, id: i32) -> Result<&mut Connection, KafkaError> {
        if !self.conns.contains_key(&id) {
            let addr = answers::broker_addr(&self.cluster, id)?;
            let conn = Connection::open(&addr, self.deadline).await?;
            self.conns.insert(id, conn);
        }
        self.conns
            .get_mut(&id)
            .ok_or(KafkaError::UnknownBroker { id })
    }

    /// The log-end offsets of `wanted`, each asked of its partition's leader (partitions of
    /// topics the cluster no longer has are left out).
    pub async fn log_end_offsets(
        &mut self,
        wanted: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, KafkaError> {
        let mut out = HashMap::new();
        let remaining_ms = |deadline: Instant| {
            i32::try_from(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_millis(),
            )
            .unwrap_or(i32::MAX)
        };
        for (leader, parts) in answers::by_leader(&self.cluster, wanted) {
            let deadline = self.deadline;
            let conn = self.conn(leader).await?;
            let v = conn.version::<ListOffsetsRequest>()?;
            let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
            for (t, p) in &parts {
                let mut lp = ListOffsetsPartition::default();
                lp.partition_index = *p;
                lp.timestamp = LATEST;
                topics.entry(t).or_default().push(lp);
            }
            let mut req = ListOffsetsRequest::default();
            req.replica_id = BrokerId(-1);
            if v >= 10 {
                req.timeout_ms = remaining_ms(deadline);
            }
            req.topics = topics
                .into_iter()
                .map(|(t, ps)| {
                    let mut lt = ListOffsetsTopic::default();
                    lt.name = TopicName(StrBytes::from(t.to_string()));
                    lt.partitions = ps;
                    lt
                })
                .collect();
            let answer = conn.call(&req, v).await?;
            for t in answer.topics {
                for p in t.partitions {
                    let tp = (t.name.0.to_string(), p.partition_index);
                    if p.error_code != 0 {
                        let context = format!(": partition {}-{}", tp.0, tp.1);
                        return Err(conn.broker_error(ApiKey::ListOffsets, p.error_code, context));
                    }
                    out.insert(tp, p.offset);
                }
            }
        }
        Ok(out)
    }

    /// The groups broker `id` coordinates.
    pub async fn list_groups(&mut self, id: i32) -> Result<Vec<ListedGroup>, KafkaError> {
        let conn = self.conn(id).await?;
        let v = conn.version::<ListGroupsRequest>()?;
        let answer = conn.call(&ListGroupsRequest::default(), v).await?;
        if answer.error_code != 0 {
            return Err(conn.broker_error(ApiKey::ListGroups, answer.error_code, String::new()));
        }
        Ok(answer
            .groups
            .into_iter()
            .map(|g| ListedGroup {
                group: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                group_type: (v >= 5).then(|| g.group_type.to_string()),
                state: (v >= 4).then(|| g.group_state.to_string()),
            })
            .collect())
    }

    /// The coordinator of each of `groups` (FindCoordinator, key type group; one request for
    /// all from version 4 on).
    pub async fn coordinators(
        &mut self,
        groups: &[String],
    ) -> Result<BTreeMap<String, i32>, KafkaError> {
        let mut out = BTreeMap::new();
        let any = self.cluster.answered_by;
        let conn = self.conn(any).await?;
        let v = conn.version::<FindCoordinatorRequest>()?;
        let context = |g: &str| format!(": group {g}");
        if v >= 4 {
            let mut req = FindCoordinatorRequest::default();
            req.coordinator_keys = groups.iter().map(|g| StrBytes::from(g.clone())).collect();
            for c in conn.call(&req, v).await?.coordinators {
                if c.error_code != 0 {
                    return Err(conn.broker_error(
                        ApiKey::FindCoordinator,
                        c.error_code,
                        context(&c.key),
                    ));
                }
                out.insert(c.key.to_string(), c.node_id.0);
            }
        } else {
            for g in groups {
                let mut req = FindCoordinatorRequest::default();
                req.key = StrBytes::from(g.clone());
                let answer = conn.call(&req, v).await?;
                if answer.error_code != 0 {
                    return Err(conn.broker_error(
                        ApiKey::FindCoordinator,
                        answer.error_code,
                        context(g),
                    ));
                }
                out.insert(g.clone(), answer.node_id.0);
            }
        }
        if let Some(g) = groups.iter().find(|g| !out.contains_key(*g)) {
            return Err(conn.malformed(
                ApiKey::FindCoordinator,
                format!("no coordinator for group {g}"),
            ));
        }
        Ok(out)
    }

    /// The committed offsets of `groups`, all coordinated by broker `id` (one OffsetFetch for
    /// all from version 8 on); `None` where nothing is committed.
    pub async fn committed_offsets(
        &mut self,
        id: i32,
        groups: &[String],
    ) -> Result<BTreeMap<String, Vec<(TopicPartition, Option<i64>)>>, KafkaError> {
        let conn = self.conn(id).await?;
        let v = conn.version::<OffsetFetchRequest>()?;
        let mut out: BTreeMap<String, Vec<(TopicPartition, Option<i64>)>> = BTreeMap::new();
        let committed = |o: i64| (o >= 0).then_some(o);
        let check = |conn: &Connection, code: i16, what: String| {
            if code == 0 {
                Ok(())
            } else {
                Err(conn.broker_error(ApiKey::OffsetFetch, code, what))
            }
        };
        if v >= 8 {
            // The top-level topics stay as they are: at 8+ a set field is refused in encoding.
            let mut req = OffsetFetchRequest::default();
            req.groups = groups
                .iter()
                .map(|g| {
                    let mut rg = OffsetFetchRequestGroup::default();
                    rg.group_id = GroupId(StrBytes::from(g.clone()));
                    rg.topics = None;
                    rg
                })
                .collect();
            for g in conn.call(&req, v).await?.groups {
                let group = g.group_id.0.to_string();
                check(conn, g.error_code, format!(": group {group}"))?;
                let entry = out.entry(group.clone()).or_default();
                for t in g.topics {
                    for p in t.partitions {
                        let tp = (t.name.0.to_string(), p.partition_index);
                        check(
                            conn,
                            p.error_code,
                            format!(": group {group}, partition {}-{}", tp.0, tp.1),
                        )?;
                        entry.push((tp, committed(p.committed_offset)));
                    }
                }
            }
        } else {
            for group in groups {
                let mut req = OffsetFetchRequest::default();
                req.group_id = GroupId(StrBytes::from(group.clone()));
                req.topics = None;
                let answer = conn.call(&req, v).await?;
                check(conn, answer.error_code, format!(": group {group}"))?;
                let entry = out.entry(group.clone()).or_default();
                for t in answer.topics {
                    for p in t.partitions {
                        let tp = (t.name.0.to_string(), p.partition_index);
                        check(
                            conn,
                            p.error_code,
                            format!(": group {group}, partition {}-{}", tp.0, tp.1),
                        )?;
                        entry.push((tp, committed(p.committed_offset)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The states of `groups` coordinated by broker `id`, each asked with the API of its
    /// protocol (DescribeGroups for classic or unknown, ConsumerGroupDescribe for `consumer`).
    /// Best effort: a group whose state cannot be read is left out, and why is logged.
    pub async fn states(
        &mut self,
        id: i32,
        groups: &[(String, Option<String>)],
    ) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let (consumer, classic): (Vec<_>, Vec<_>) = groups
            .iter()
            .partition(|(_, p)| p.as_deref() == Some("consumer"));
        let classic: Vec<String> = classic.into_iter().map(|(g, _)| g.clone()).collect();
        let consumer: Vec<String> = consumer.into_iter().map(|(g, _)| g.clone()).collect();
        if !classic.is_empty() {
            match self.describe_classic(id, &classic).await {
                Ok(states) => out.extend(states),
                Err(e) => tracing::debug!(error = %e, "no state for classic groups {classic:?}"),
            }
        }
        if !consumer.is_empty() {
            match self.describe_consumer(id, &consumer).await {
                Ok(states) => out.extend(states),
                Err(e) => tracing::debug!(error = %e, "no state for consumer groups {consumer:?}"),
            }
        }
        out
    }

    async fn describe_classic(
        &mut self,
        id: i32,
        groups: &[String],
    ) -> Result<Vec<(String, String)>, KafkaError> {
        let conn = self.conn(id).await?;
        let v = conn.version::<DescribeGroupsRequest>()?;
        let mut req = DescribeGroupsRequest::default();
        req.groups = groups
            .iter()
            .map(|g| GroupId(StrBytes::from(g.clone())))
            .collect();
        let answer = conn.call(&req, v).await?;
        Ok(answer
            .groups
            .into_iter()
            .filter(|g| log_group_error("DescribeGroups", &g.group_id.0, g.error_code))
            .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
            .collect())
    }

    async fn describe_consumer(
        &mut self,
        id: i32,
        groups: &[String],
    ) -> Result<Vec<(String, String)>, KafkaError> {
        let conn = self.conn(id).await?;
        let v = conn.version::<ConsumerGroupDescribeRequest>()?;
        let mut req = ConsumerGroupDescribeRequest::default();
        req.group_ids = groups
            .iter()
            .map(|g| GroupId(StrBytes::from(g.clone())))
            .collect();
        let answer = conn.call(&req, v).await?;
        Ok(answer
            .groups
            .into_iter()
            .filter(|g| log_group_error("ConsumerGroupDescribe", &g.group_id.0, g.error_code))
            .map(|g| (g.group_id.0.to_string(), g.group_state.to_string()))
            .collect())
    }

    /// What [`read_groups`] returns, on this client's connections.
    pub async fn read_groups(
        &mut self,
        which: Groups<'_>,
    ) -> Result<Vec<GroupOffsets>, KafkaError> {
        // ListGroups answers only for the groups the asked broker coordinates: ask every broker
        // for all groups, and the coordinators (best effort: only the protocol is wanted) for
        // named ones.
        let mut listed: HashMap<String, ListedGroup> = HashMap::new();
        let names: Vec<String> = match which {
            Groups::All => {
                let ids: Vec<i32> = self.cluster.brokers.iter().map(|b| b.id).collect();
                for id in ids {
                    for g in self.list_groups(id).await? {
                        listed.insert(g.group.clone(), g);
                    }
                }
                let mut names: Vec<String> = listed
                    .values()
                    .filter(|g| g.is_consumer_group())
                    .map(|g| g.group.clone())
                    .collect();
                names.sort();
                names
            }
            Groups::These(groups) => groups
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let coordinators = self.coordinators(&names).await?;
        let mut by_coordinator: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (g, c) in &coordinators {
            by_coordinator.entry(*c).or_default().push(g.clone());
        }
        if let Groups::These(_) = which {
            for id in by_coordinator.keys().copied().collect::<Vec<_>>() {
                match self.list_groups(id).await {
                    Ok(gs) => listed.extend(gs.into_iter().map(|g| (g.group.clone(), g))),
                    Err(e) => tracing::debug!(error = %e, "no group types from broker {id}"),
                }
            }
        }
        let mut committed = BTreeMap::new();
        let mut states = HashMap::new();
        for (id, groups) in &by_coordinator {
            committed.extend(self.committed_offsets(*id, groups).await?);
            let with_protocol: Vec<(String, Option<String>)> = groups
                .iter()
                .map(|g| (g.clone(), listed.get(g).and_then(|l| l.group_type.clone())))
                .collect();
            states.extend(self.states(*id, &with_protocol).await);
        }
        let wanted: Vec<TopicPartition> = committed
            .values()
            .flatten()
            .map(|(tp, _)| tp.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let log_end = self.log_end_offsets(&wanted).await?;
        Ok(names
            .iter()
            .map(|g| {
                let l = listed.get(g);
                answers::group_offsets(
                    g,
                    states.remove(g).or_else(|| l.and_then(|l| l.state.clone())),
                    l.and_then(|l| l.group_type.clone()),
                    coordinators.get(g).copied(),
                    committed.get(g).map_or(&[][..], |c| c.as_slice()),
                    &log_end,
                )
            })
            .collect())
    }
}

/// Whether a group's describe answer carries no error (an error is logged).
fn log_group_error(api: &str, group: &str, code: i16) -> bool {
    if code != 0 {
        let name = super::error::error_name(code);
        tracing::debug!("{api} of group {group}: error {code} ({name})");
    }
    code == 0
}

/// A Metadata request for all topics, and the cluster it describes.
async fn metadata(conn: &mut Connection) -> Result<Cluster, KafkaError> {
    let v = conn.version::<MetadataRequest>()?;
    let mut req = MetadataRequest::default();
    // Version 0 has no "null: all topics"; an empty list means all there.
    req.topics = if v == 0 { Some(Vec::new()) } else { None };
    if v >= 4 {
        req.allow_auto_topic_creation = false;
    }
    let answer = conn.call(&req, v).await?;
    if answer.error_code != 0 {
        return Err(conn.broker_error(ApiKey::Metadata, answer.error_code, String::new()));
    }
    let mut cluster = answers::cluster(&answer, -1);
    cluster.answered_by = answers::answered_by(&cluster.brokers, conn.addr());
    Ok(cluster)
}
