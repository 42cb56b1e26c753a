//! Node operations both programs share: directories, idempotent deletes, and removing an agent
//! (marker and liveness node) in one transaction.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use thiserror::Error;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, MultiWriteError};

use super::acl::{NodeAcls, NodeKind};
use super::paths::{AgentId, Layout};

/// Failures of the final registry operations.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("zookeeper at {hosts} did not confirm within {waited:?}: the registry may still show the agent")]
    Timeout { hosts: String, waited: Duration },
    #[error("the registry task ended unexpectedly")]
    Gone,
    #[error("zookeeper operation on {path} failed")]
    Zk {
        path: String,
        #[source]
        source: ZkError,
    },
}

/// Makes sure the registry root of `layout` and the role directories `dirs` under it exist:
/// missing ancestors and the root get the root ACL, each missing directory the node ACL (see
/// [`NodeAcls`]). With credentials configured, a root or directory found writable by anyone is
/// reported (once per call) with the `setAcl` command that fixes it; that is a warning, not an
/// error. On failure, returns the znode that could not be created or read.
pub async fn ensure_dirs(
    client: &Client,
    layout: &Layout,
    dirs: &[String],
    acls: &NodeAcls,
) -> Result<(), (String, ZkError)> {
    let root = layout.root();
    if root != "/" {
        ensure_path(client, root, acls.acls(NodeKind::Root)).await?;
        check_acl(client, root, NodeKind::Root, acls).await;
    }
    for dir in dirs {
        ensure_path(client, dir, acls.node()).await?;
        check_acl(client, dir, NodeKind::Node, acls).await;
    }
    Ok(())
}

/// Creates `path` and its missing parents as PERSISTENT nodes with `acls` (no error if they
/// exist). Existence is checked before creating, because ZooKeeper checks CREATE on the parent
/// before it reports that a node exists.
async fn ensure_path(client: &Client, path: &str, acls: Acls<'_>) -> Result<(), (String, ZkError)> {
    let fail = |p: &str| {
        let p = p.to_string();
        move |e| (p, e)
    };
    if client.check_stat(path).await.map_err(fail(path))?.is_some() {
        return Ok(());
    }
    // Walk up to the deepest existing ancestor, then create downwards (bounded by the depth).
    let mut missing = vec![path];
    let mut at = path;
    while let Some(i) = at.rfind('/').filter(|i| *i > 0) {
        at = &at[..i];
        if client.check_stat(at).await.map_err(fail(at))?.is_some() {
            break;
        }
        missing.push(at);
    }
    let options = CreateMode::Persistent.with_acls(acls);
    for p in missing.into_iter().rev() {
        match client.create(p, &[], &options).await {
            Ok(_) | Err(ZkError::NodeExists) => {}
            Err(e) => return Err((p.to_string(), e)),
        }
    }
    Ok(())
}

/// Warns when `path` is writable by anyone although credentials are configured. Advice only:
/// a node whose ACL we may not read (getACL needs READ or ADMIN, and an operator may have
/// locked the root down further) is no reason not to register.
async fn check_acl(client: &Client, path: &str, kind: NodeKind, acls: &NodeAcls) {
    if !acls.secured() {
        return;
    }
    let found = match client.get_acl(path).await {
        Ok((found, _)) => found,
        Err(e) => {
            tracing::debug!(znode = %path, error = %e, "cannot read the ACL to check it");
            return;
        }
    };
    if let Some(extra) = acls.too_open(&found, kind) {
        tracing::warn!(
            znode = %path,
            world = %extra,
            "{path} lets anyone ({extra}) change or delete what is in it, probably because it was created without credentials; fix it in zkCli.sh, after `addauth digest USER:PASSWORD` with this program's or the admin's credentials, with: {}",
            acls.set_acl_command(path, kind)
        );
    }
}

/// Writes `data` to the PERSISTENT node `path`, creating it with the node ACL of `acls` if it
/// does not exist yet.
pub async fn put_persistent(
    client: &Client,
    path: &str,
    data: &[u8],
    acls: &NodeAcls,
) -> Result<(), ZkError> {
    match client.set_data(path, data, None).await {
        Err(ZkError::NoNode) => {
            let options = CreateMode::Persistent.with_acls(acls.node());
            match client.create(path, data, &options).await {
                // Created by someone else in between: overwrite it.
                Err(ZkError::NodeExists) => client.set_data(path, data, None).await.map(|_| ()),
                r => r.map(|_| ()),
            }
        }
        r => r.map(|_| ()),
    }
}

/// [`put_persistent`] for many nodes at once, every request of a round in flight together
/// (ZooKeeper answers a session's requests in order): one round of `setData`, one of `create`
/// for the nodes that did not exist, and `setData` again for any created meanwhile by someone
/// else; at most `PUT_BYTES` (512 KiB) of data at a time. The paths must differ. Results in
/// the order of `nodes`.
pub async fn put_persistent_all(
    client: &Client,
    nodes: &[(String, Vec<u8>)],
    acls: &NodeAcls,
) -> Vec<Result<(), ZkError>> {
    let mut results = Vec::with_capacity(nodes.len());
    let mut rest = nodes;
    while !rest.is_empty() {
        // At most PUT_BYTES of data in flight (at least one node): 300 incidents carrying 64 KiB
        // stderr tails each, sent at once, held the session's pings back past its timeout.
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|(_, data)| {
                bytes += data.len();
                bytes <= PUT_BYTES
            })
            .count()
            .max(1);
        let (round, later) = rest.split_at(n);
        results.extend(put_round(client, round, acls).await);
        rest = later;
    }
    results
}

/// Bytes of node data [`put_persistent_all`] has in flight at most.
const PUT_BYTES: usize = 512 * 1024;

async fn put_round(
    client: &Client,
    nodes: &[(String, Vec<u8>)],
    acls: &NodeAcls,
) -> Vec<Result<(), ZkError>> {
    let sets: Vec<_> = nodes
        .iter()
        .map(|(path, data)| client.set_data(path, data, None))
        .collect();
    let mut results = Vec::with_capacity(nodes.len());
    for set in sets {
        results.push(set.await.map(|_| ()));
    }
    let options = CreateMode::Persistent.with_acls(acls.node());
    let creates: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(ZkError::NoNode)))
        .map(|(i, _)| (i, client.create(&nodes[i].0, &nodes[i].1, &options)))
        .collect();
    for (i, create) in creates {
        results[i] = match create.await {
            // Created by someone else in between: overwrite it.
            Err(ZkError::NodeExists) => {
                let (path, data) = &nodes[i];
                client.set_data(path, data, None).await.map(|_| ())
            }
            r => r.map(|_| ()),
        };
    }
    results
}

/// [`delete_tree`] for many nodes at once: the plain deletes all in flight together, a node
/// with children (written by hand) then removed with its subtree. Results in the order of
/// `paths`.
pub async fn delete_trees(client: &Client, paths: &[String]) -> Vec<Result<bool, ZkError>> {
    let deletes: Vec<_> = paths.iter().map(|p| client.delete(p, None)).collect();
    let mut results = Vec::with_capacity(paths.len());
    for (delete, path) in deletes.into_iter().zip(paths) {
        results.push(match delete.await {
            Ok(()) => Ok(true),
            Err(ZkError::NoNode) => Ok(false),
            Err(ZkError::NotEmpty) => delete_tree(client, path).await,
            Err(e) => Err(e),
        });
    }
    results
}

/// Deletes `path` at any version; a node that is already gone is not an error.
pub async fn delete_if_present(client: &Client, path: &str) -> Result<bool, ZkError> {
    match client.delete(path, None).await {
        Ok(()) => Ok(true),
        Err(ZkError::NoNode) => Ok(false),
        Err(e) => Err(e),
    }
}

/// How deep a hand-made subtree is removed by [`delete_tree`]; deeper nodes make it fail.
const MAX_TREE_DEPTH: u32 = 8;

/// Deletes `path` and, if someone gave it children by hand (ZooKeeper refuses to delete a node
/// with children, so a plain delete would fail forever), them first, each one reported by path.
/// A node that is already gone is not an error; returns whether `path` existed.
pub async fn delete_tree(client: &Client, path: &str) -> Result<bool, ZkError> {
    delete_below(client, path.to_string(), MAX_TREE_DEPTH).await
}

type Deleting<'a> = Pin<Box<dyn Future<Output = Result<bool, ZkError>> + Send + 'a>>;

fn delete_below(client: &Client, path: String, depth: u32) -> Deleting<'_> {
    Box::pin(async move {
        match delete_if_present(client, &path).await {
            Err(ZkError::NotEmpty) if depth > 0 => {}
            other => return other,
        }
        let children = match client.list_children(&path).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(false),
            Err(e) => return Err(e),
        };
        for child in children {
            let child_path = format!("{path}/{child}");
            tracing::warn!(path = %child_path, "removing an unexpected child node");
            delete_below(client, child_path, depth - 1).await?;
        }
        delete_if_present(client, &path).await
    })
}

/// What [`remove_agent`] found and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub marker: bool,
    pub live: bool,
}

/// Deletes an agent's marker and liveness node in one multi transaction (whichever exist).
pub async fn remove_agent(
    client: &Client,
    layout: &Layout,
    id: &AgentId,
) -> Result<Removed, RegistryError> {
    let marker = layout.marker(id);
    let live = layout.live(id);
    let zk = |path: &str| {
        let path = path.to_string();
        move |source| RegistryError::Zk { path, source }
    };
    // A node can appear or vanish between the check and the transaction; retry a few times.
    let mut last = ZkError::NoNode;
    for _ in 0..5 {
        let has_marker = client
            .check_stat(&marker)
            .await
            .map_err(zk(&marker))?
            .is_some();
        let has_live = client.check_stat(&live).await.map_err(zk(&live))?.is_some();
        if !has_marker && !has_live {
            return Ok(Removed {
                marker: false,
                live: false,
            });
        }
        let mut multi = client.new_multi_writer();
        let mut deleted = Vec::new();
        for (present, path) in [(has_marker, &marker), (has_live, &live)] {
            if present {
                multi.add_delete(path, None).map_err(zk(path))?;
                deleted.push(path);
            }
        }
        match multi.commit().await {
            Ok(_) => {
                return Ok(Removed {
                    marker: has_marker,
                    live: has_live,
                })
            }
            Err(MultiWriteError::OperationFailed {
                source: ZkError::NoNode,
                ..
            }) => {
                last = ZkError::NoNode;
                continue;
            }
            // Someone gave the marker children by hand: they would keep it registered (and make
            // a planned stop look like a lost agent). Remove them, then try again.
            Err(MultiWriteError::OperationFailed {
                source: ZkError::NotEmpty,
                ..
            }) => {
                for child in client.list_children(&marker).await.map_err(zk(&marker))? {
                    let path = format!("{marker}/{child}");
                    tracing::warn!(path = %path, "removing an unexpected child of the marker");
                    // A subtree too deep makes this fail; the next round then reports NotEmpty
                    // again and the last one gives up with the error.
                    let _ = delete_tree(client, &path).await;
                }
                last = ZkError::NotEmpty;
                continue;
            }
            // Name the node whose deletion failed (e.g. refused by its parent's ACL).
            Err(MultiWriteError::OperationFailed { index, source }) => {
                return Err(zk(deleted.get(index).copied().unwrap_or(&marker))(source))
            }
            Err(e) => return Err(zk(&marker)(e.into())),
        }
    }
    Err(RegistryError::Zk {
        path: marker,
        source: last,
    })
}
