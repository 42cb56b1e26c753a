//! Reading the registry: one agent's marker and liveness node, whole directories, incidents and
//! silences. A node whose data does not decode is reported by path and skipped; it never stops
//! the watcher. For an agent's own nodes, garbage is told apart from absence: an unreadable
//! marker says nothing about whether the agent is supposed to run.

use serde::de::DeserializeOwned;
use tracing::warn;
use zkwatchdog::registry::{decode, AgentId, Layout, Liveness, Marker, Versioned};
use zookeeper_client::{Client, Error as ZkError, MultiReadResult, Stat};

use crate::incident::{Incident, Silence};

/// How many agents' nodes are asked for at once: enough to keep the connection busy, few
/// enough that the loop gets back to events, sends and timers between batches (a batch of 256
/// took 10 ms to read as one multi-read, 35 ms as 512 single reads, on loopback here).
pub const READ_BATCH: usize = 256;
use crate::tracker::Observation;

/// What one znode held.
#[derive(Debug)]
pub enum Node<T> {
    Absent,
    /// Present, but its data is not a valid record (already reported).
    Garbage,
    Record(T),
}

impl<T> Node<T> {
    fn record(self) -> Option<T> {
        match self {
            Node::Record(r) => Some(r),
            Node::Absent | Node::Garbage => None,
        }
    }
}

/// Reads the record at `path`, reporting garbage by path. A node this watcher may not read (an
/// ACL of another identity) is reported and counts as garbage: present, nothing to conclude from
/// it. It must not stop a reconcile half-way: the agents after it would go unread, and a
/// take-over needs every agent read.
pub async fn read_node<T: DeserializeOwned + Versioned>(
    client: &Client,
    path: &str,
) -> Result<Node<T>, ZkError> {
    node(path, client.get_data(path).await)
}

/// What ZooKeeper's answer to a read of `path` means (garbage and refusals reported).
fn node<T: DeserializeOwned + Versioned>(
    path: &str,
    answer: Result<(Vec<u8>, Stat), ZkError>,
) -> Result<Node<T>, ZkError> {
    match answer {
        Ok((data, _)) => match decode::<T>(path, &data) {
            Ok(record) => Ok(Node::Record(record)),
            Err(e) => {
                warn!(path, error = %e, "skipping a znode whose data is not a valid record");
                Ok(Node::Garbage)
            }
        },
        Err(ZkError::NoNode) => Ok(Node::Absent),
        Err(ZkError::NoAuth) => {
            warn!(
                path,
                "skipping a znode this watcher may not read (NoAuth: its ACL names another identity)"
            );
            Ok(Node::Garbage)
        }
        Err(e) => Err(e),
    }
}

/// Reads the record at `path`: `None` if the node is absent or its data is garbage (reported).
pub async fn read<T: DeserializeOwned + Versioned>(
    client: &Client,
    path: &str,
) -> Result<Option<T>, ZkError> {
    Ok(read_node(client, path).await?.record())
}

/// Agents per multi-read request: at most 8 × 64 KiB of stderr tails in one answer.
pub const MULTI_AGENTS: usize = 8;

/// How agents' nodes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// [`MULTI_AGENTS`] agents' nodes per multi-read request (ZooKeeper 3.6+), every request
    /// of a batch in flight at once: 32 requests for 256 agents instead of 512, and each
    /// agent's two nodes read at one instant.
    Multi,
    /// One request per node, all of a batch in flight at once (ZooKeeper 3.5, which answers a
    /// multi-read "unimplemented").
    Single,
}

/// Reads the marker and liveness node of every agent in `ids` and returns the observations in
/// the order of `ids`. The caller bounds how many agents go in one call. With
/// [`Reads::Single`] every request is sent at once (the client queues them on the session as
/// they are created, and ZooKeeper answers a session's requests in order).
pub async fn observe_all(
    client: &Client,
    layout: &Layout,
    ids: &[AgentId],
    reads: Reads,
) -> Result<Vec<Observation>, ZkError> {
    let paths: Vec<(String, String)> = ids
        .iter()
        .map(|id| (layout.live(id), layout.marker(id)))
        .collect();
    let mut answers = Vec::with_capacity(paths.len() * 2);
    match reads {
        Reads::Multi => {
            // Several requests, all in flight at once: a marker may carry a 64 KiB stderr tail
            // (1 MiB if written by hand), and one answer for 256 of them (16 MiB) outlasted
            // the session's read timeout in a test.
            let mut asked = Vec::new();
            for chunk in paths.chunks(MULTI_AGENTS) {
                let mut reader = client.new_multi_reader();
                for (live, marker) in chunk {
                    reader.add_get_data(live)?;
                    reader.add_get_data(marker)?;
                }
                asked.push(reader.commit());
            }
            for answer in asked {
                for answer in answer.await? {
                    answers.push(match answer {
                        MultiReadResult::Data { data, stat } => Ok((data, stat)),
                        MultiReadResult::Error { err } => Err(err),
                        _ => Err(ZkError::UnexpectedError(
                            "a multi-read answered a getData with something else".to_string(),
                        )),
                    });
                }
            }
        }
        Reads::Single => {
            let asked: Vec<_> = paths
                .iter()
                .flat_map(|(live, marker)| [client.get_data(live), client.get_data(marker)])
                .collect();
            for answer in asked {
                answers.push(answer.await);
            }
        }
    }
    if answers.len() != paths.len() * 2 {
        return Err(ZkError::UnexpectedError(format!(
            "{} answers to {} reads",
            answers.len(),
            paths.len() * 2
        )));
    }
    let mut answers = answers.into_iter();
    let mut out = Vec::with_capacity(ids.len());
    for (id, (live_path, marker_path)) in ids.iter().zip(&paths) {
        let (Some(live), Some(marker)) = (answers.next(), answers.next()) else {
            break;
        };
        out.push(conclude(id, live_path, marker_path, live, marker)?);
    }
    Ok(out)
}

/// An agent's observation from the answers to the reads of its live node and marker, asked in
/// that order: the watchdog writes the marker before it deletes the live node, so a live node
/// read as gone is always paired with a marker at least as new as the deletion. Both are
/// bounded (stderr tail, health detail) as they come in: a record written by hand may carry up
/// to 1 MiB of text, which must not grow the incident written from it.
fn conclude(
    id: &AgentId,
    live_path: &str,
    marker_path: &str,
    live: Result<(Vec<u8>, Stat), ZkError>,
    marker: Result<(Vec<u8>, Stat), ZkError>,
) -> Result<Observation, ZkError> {
    let live = match node::<Liveness>(live_path, live)? {
        Node::Record(mut l) => {
            l.bound();
            Node::Record(l)
        }
        other => other,
    };
    let marker = match node::<Marker>(marker_path, marker)? {
        Node::Record(m) if m.id != id.as_str() => {
            warn!(path = %marker_path, record_id = %m.id, "skipping a marker whose id does not match its znode name");
            Node::Garbage
        }
        Node::Record(mut m) => {
            m.bound();
            Node::Record(m)
        }
        other => other,
    };
    let unreadable = matches!(marker, Node::Garbage) || matches!(live, Node::Garbage);
    Ok(Observation {
        marker: marker.record(),
        live: live.record(),
        unreadable,
    })
}

/// Children of `dir` that are valid agent ids (others are reported and skipped); an absent
/// directory is empty.
pub async fn ids(client: &Client, dir: &str) -> Result<Vec<AgentId>, ZkError> {
    let names = match client.list_children(dir).await {
        Ok(names) => names,
        Err(ZkError::NoNode) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(names
        .into_iter()
        .filter_map(|name| match AgentId::new(name.clone()) {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(path = %format!("{dir}/{name}"), error = %e, "skipping a znode that is not an agent id");
                None
            }
        })
        .collect())
}

/// Every incident record (garbage, and records whose `id` is not their znode's name, reported
/// and skipped: a hand-written record must not be taken for another agent's).
pub async fn incidents(client: &Client, layout: &Layout) -> Result<Vec<Incident>, ZkError> {
    let ids = ids(client, &layout.incidents_dir()).await?;
    let records = records(client, &ids, |id| layout.incident(id)).await?;
    Ok(records
        .into_iter()
        .filter(|(path, id, i): &(String, &AgentId, Incident)| own(path, id, &i.id))
        .map(|(_, _, i)| i)
        .collect())
}

/// Every silence record (garbage and misnamed records reported and skipped).
pub async fn silences(client: &Client, layout: &Layout) -> Result<Vec<Silence>, ZkError> {
    let ids = ids(client, &layout.silences_dir()).await?;
    let records = records(client, &ids, |id| layout.silence(id)).await?;
    Ok(records
        .into_iter()
        .filter(|(path, id, s): &(String, &AgentId, Silence)| own(path, id, &s.id))
        .map(|(_, _, s)| s)
        .collect())
}

/// The records at `path_of(id)` for every id (absent and garbage skipped), read
/// [`READ_BATCH`] at a time with every read of a batch in flight at once.
async fn records<'a, T: DeserializeOwned + Versioned>(
    client: &Client,
    ids: &'a [AgentId],
    path_of: impl Fn(&AgentId) -> String,
) -> Result<Vec<(String, &'a AgentId, T)>, ZkError> {
    let mut out = Vec::new();
    for batch in ids.chunks(READ_BATCH) {
        let asked: Vec<_> = batch
            .iter()
            .map(|id| {
                let path = path_of(id);
                let answer = client.get_data(&path);
                (id, path, answer)
            })
            .collect();
        for (id, path, answer) in asked {
            if let Node::Record(r) = node::<T>(&path, answer.await)? {
                out.push((path, id, r));
            }
        }
    }
    Ok(out)
}

/// Whether a record's `id` is the name of the znode it was read from (reported when not).
fn own(path: &str, id: &AgentId, record_id: &str) -> bool {
    let ok = id.as_str() == record_id;
    if !ok {
        warn!(
            path,
            record_id, "skipping a record whose id does not match its znode name"
        );
    }
    ok
}
