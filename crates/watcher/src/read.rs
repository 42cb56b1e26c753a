//! Reading the registry: one agent's marker and liveness node, whole directories, incidents and
//! silences. A node whose data does not decode is reported by path and skipped; it never stops
//! the watcher. For an agent's own nodes, garbage is told apart from absence: an unreadable
//! marker says nothing about whether the agent is supposed to run.

use serde::de::DeserializeOwned;
use tracing::warn;
use zkwatchdog::registry::{decode, AgentId, Layout, Liveness, Marker, Versioned};
use zookeeper_client::{Client, Error as ZkError};

use crate::incident::{Incident, Silence};
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
    match client.get_data(path).await {
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

/// Reads agent `id`'s marker and liveness node.
pub async fn observe(
    client: &Client,
    layout: &Layout,
    id: &AgentId,
) -> Result<Observation, ZkError> {
    // The live node first: the watchdog writes the marker before it deletes the live node, so a
    // live node read as gone is always paired with a marker at least as new as the deletion.
    // Both are bounded (stderr tail, health detail) as they come in: a record written by hand
    // may carry up to 1 MiB of text, which must not grow the incident written from it.
    let live = match read_node::<Liveness>(client, &layout.live(id)).await? {
        Node::Record(mut l) => {
            l.bound();
            Node::Record(l)
        }
        other => other,
    };
    let marker = match read_node::<Marker>(client, &layout.marker(id)).await? {
        Node::Record(m) if m.id != id.as_str() => {
            warn!(path = %layout.marker(id), record_id = %m.id, "skipping a marker whose id does not match its znode name");
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
    let mut out = Vec::new();
    for id in ids(client, &layout.incidents_dir()).await? {
        let path = layout.incident(&id);
        if let Some(i) = read::<Incident>(client, &path).await? {
            if own(&path, &id, &i.id) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Every silence record (garbage and misnamed records reported and skipped).
pub async fn silences(client: &Client, layout: &Layout) -> Result<Vec<Silence>, ZkError> {
    let mut out = Vec::new();
    for id in ids(client, &layout.silences_dir()).await? {
        let path = layout.silence(&id);
        if let Some(s) = read::<Silence>(client, &path).await? {
            if own(&path, &id, &s.id) {
                out.push(s);
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
