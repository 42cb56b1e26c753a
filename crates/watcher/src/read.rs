//! Reading the registry: one agent's marker and liveness node, whole directories, incidents and
//! silences. A node whose data does not decode is reported by path and skipped; it never stops
//! the watcher. For an agent's own nodes, garbage is told apart from absence: an unreadable
//! marker says nothing about whether the agent is supposed to run.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use tracing::warn;
use zkwatchdog::registry::{decode, AgentId, Layout, Liveness, Marker, Versioned};
use zookeeper_client::{Client, Error as ZkError, MultiReadResult, Stat};

use crate::incident::{Incident, Silence};
use crate::notify::render::shown_tail;
use crate::receipt::Receipt;
use crate::tracker::Observation;

/// How many agents' nodes one step of a reconcile reads (pipelined, answers in flight
/// bounded): enough to keep the connection busy, few enough that the loop gets back to events,
/// sends and timers between steps (a step of 256 took 10 ms to read as one multi-read, 35 ms
/// as 512 single reads, on loopback here).
pub const READ_BATCH: usize = 256;

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

/// Agents per multi-read request (ZooKeeper 3.6+): their live nodes and markers, 16 nodes.
pub const MULTI_AGENTS: usize = 8;

/// Nodes per request unit: one multi-read, or as many single reads.
const UNIT_NODES: usize = 2 * MULTI_AGENTS;

/// Answer bytes a read keeps in flight at most, as far as the answers so far tell: a marker may
/// carry a 64 KiB stderr tail (1 MiB if written by hand), and 256 such markers asked at once
/// (16 MiB of answers) held the session's pings back past its timeout on a loaded machine.
const IN_FLIGHT_BYTES: usize = 1 << 20;

/// What a node is taken to weigh until answers say otherwise: a marker with a whole stderr
/// tail.
const FIRST_GUESS_NODE_BYTES: usize = 64 * 1024;

/// How many nodes' reads may be in flight, learnt from the sizes of the answers so far (pure:
/// fed what each answer weighed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Window {
    nodes: usize,
    bytes: usize,
}

impl Window {
    fn answered(&mut self, nodes: usize, bytes: usize) {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Nodes in flight at most (one request unit is always allowed).
    fn nodes(&self) -> usize {
        let per_node = match self.nodes {
            0 => FIRST_GUESS_NODE_BYTES,
            n => (self.bytes / n).max(1),
        };
        (IN_FLIGHT_BYTES / per_node).max(UNIT_NODES)
    }
}

/// How nodes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// [`MULTI_AGENTS`] agents' nodes per multi-read request (ZooKeeper 3.6+): 32 requests
    /// for 256 agents instead of 512, and each agent's two nodes read at one instant.
    Multi,
    /// One request per node (ZooKeeper 3.5, which answers a multi-read "unimplemented").
    Single,
}

type Answer = Result<(Vec<u8>, Stat), ZkError>;
type Asked<'c> = Pin<Box<dyn Future<Output = Result<Vec<Answer>, ZkError>> + Send + 'c>>;

/// Asks for every node of `unit`; the answers come in the same order.
fn ask<'c>(client: &'c Client, reads: Reads, unit: &[String]) -> Result<Asked<'c>, ZkError> {
    match reads {
        Reads::Multi => {
            let mut reader = client.new_multi_reader();
            for path in unit {
                reader.add_get_data(path)?;
            }
            let answer = reader.commit();
            Ok(Box::pin(async move {
                Ok(answer
                    .await?
                    .into_iter()
                    .map(|answer| match answer {
                        MultiReadResult::Data { data, stat } => Ok((data, stat)),
                        MultiReadResult::Error { err } => Err(err),
                        _ => Err(ZkError::UnexpectedError(
                            "a multi-read answered a getData with something else".to_string(),
                        )),
                    })
                    .collect())
            }))
        }
        Reads::Single => {
            // The client queues each request on the session as it is created, and ZooKeeper
            // answers a session's requests in order.
            let asked: Vec<_> = unit.iter().map(|path| client.get_data(path)).collect();
            Ok(Box::pin(async move {
                let mut answers = Vec::with_capacity(asked.len());
                for answer in asked {
                    answers.push(answer.await);
                }
                Ok(answers)
            }))
        }
    }
}

/// ZooKeeper's answers to reads of every node of `paths`, in that order. The reads are
/// pipelined: as many are in flight as keep the answers expected within [`IN_FLIGHT_BYTES`]
/// (learnt from the answers so far), at least one request unit.
async fn get_all(client: &Client, paths: &[String], reads: Reads) -> Result<Vec<Answer>, ZkError> {
    let mut answers: Vec<Answer> = Vec::with_capacity(paths.len());
    let mut window = Window::default();
    let mut in_flight: VecDeque<(usize, Asked<'_>)> = VecDeque::new();
    let mut nodes_in_flight = 0;
    let mut units = paths.chunks(UNIT_NODES).peekable();
    loop {
        match units.peek() {
            Some(unit)
                if in_flight.is_empty() || nodes_in_flight + unit.len() <= window.nodes() =>
            {
                in_flight.push_back((unit.len(), ask(client, reads, unit)?));
                nodes_in_flight += unit.len();
                units.next();
            }
            _ => {
                let Some((nodes, asked)) = in_flight.pop_front() else {
                    break;
                };
                let got = asked.await?;
                let bytes = got
                    .iter()
                    .map(|a| a.as_ref().map_or(0, |(data, _)| data.len()))
                    .sum();
                window.answered(nodes, bytes);
                nodes_in_flight -= nodes;
                answers.extend(got);
            }
        }
    }
    if answers.len() != paths.len() {
        return Err(ZkError::UnexpectedError(format!(
            "{} answers to {} reads",
            answers.len(),
            paths.len()
        )));
    }
    Ok(answers)
}

/// Reads the marker and liveness node of every agent in `ids` and returns the observations in
/// the order of `ids` (pipelined, at most about 1 MiB of answers in flight). The caller bounds how many agents go in
/// one call.
pub async fn observe_all(
    client: &Client,
    layout: &Layout,
    ids: &[AgentId],
    reads: Reads,
) -> Result<Vec<Observation>, ZkError> {
    let paths: Vec<String> = ids
        .iter()
        .flat_map(|id| [layout.live(id), layout.marker(id)])
        .collect();
    let mut answers = get_all(client, &paths, reads).await?.into_iter();
    let mut out = Vec::with_capacity(ids.len());
    for (id, pair) in ids.iter().zip(paths.chunks(2)) {
        let ([live_path, marker_path], Some(live), Some(marker)) =
            (pair, answers.next(), answers.next())
        else {
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
/// to 1 MiB of text, which must not grow the incident written from it. Of a stderr tail only
/// what a notice shows is kept (its last 40 lines): the tracker holds it for every agent, and
/// an incident copies it.
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
            if let Some(exit) = m.last_exit.as_mut() {
                exit.stderr_tail = shown_tail(&exit.stderr_tail);
            }
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

/// Every receipt under `dir` (`<root>/watchers/receipts`), in order, with its path; `None` for
/// one that is garbage (reported by path) or gone meanwhile.
pub async fn receipts(
    client: &Client,
    dir: &str,
) -> Result<Vec<(String, Option<Receipt>)>, ZkError> {
    let mut names = match client.list_children(dir).await {
        Ok(names) => names,
        Err(ZkError::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.retain(|n| n.starts_with("r-"));
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = format!("{dir}/{name}");
        let receipt = read::<Receipt>(client, &path).await?;
        out.push((path, receipt));
    }
    Ok(out)
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
/// [`READ_BATCH`] at a time, each batch pipelined as [`get_all`] says.
async fn records<'a, T: DeserializeOwned + Versioned>(
    client: &Client,
    ids: &'a [AgentId],
    path_of: impl Fn(&AgentId) -> String,
) -> Result<Vec<(String, &'a AgentId, T)>, ZkError> {
    let mut out = Vec::new();
    for batch in ids.chunks(READ_BATCH) {
        let paths: Vec<String> = batch.iter().map(&path_of).collect();
        let answers = get_all(client, &paths, Reads::Single).await?;
        for ((id, path), answer) in batch.iter().zip(paths).zip(answers) {
            if let Node::Record(r) = node::<T>(&path, answer)? {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The window after answers of these (nodes, bytes), and the nodes it lets be in flight.
    #[test]
    fn the_window_keeps_the_answers_expected_in_flight_within_the_byte_bound() {
        let cases: &[(&[(usize, usize)], usize)] = &[
            // Nothing known: every node taken for a marker with a whole stderr tail.
            (&[], 16),
            // Small records (a 300-byte live node and a 2 KiB marker): 900 nodes.
            (&[(16, 8 * (300 + 2048))], (1 << 20) / 1174),
            // Markers with 64 KiB tails: one unit at a time.
            (&[(16, 8 * (300 + 65536))], 31),
            // Hand-written 1 MiB markers: never less than one unit.
            (&[(16, 8 << 20)], 16),
            // Empty answers (absent nodes) do not divide by zero.
            (&[(16, 0)], 1 << 20),
            // The mean of everything seen.
            (&[(16, 16 * 65536), (16, 16 * 1024)], (1 << 20) / 33280),
        ];
        for (answers, nodes) in cases {
            let mut window = Window::default();
            for (n, bytes) in *answers {
                window.answered(*n, *bytes);
            }
            assert_eq!(window.nodes(), *nodes, "{answers:?}");
        }
    }
}
