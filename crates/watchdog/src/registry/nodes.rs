//! Node operations both programs share: directories, idempotent deletes, and removing an agent
//! (marker and liveness node) in one transaction.

use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, MultiWriteError};

use super::paths::{AgentId, Layout};
use super::publisher::RegistryError;

/// Creates `path` and its missing parents as PERSISTENT nodes (no error if they exist).
pub async fn ensure_dir(client: &Client, path: &str) -> Result<(), ZkError> {
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    client.mkdir(path, &options).await
}

/// Writes `data` to the PERSISTENT node `path`, creating it if it does not exist yet.
pub async fn put_persistent(client: &Client, path: &str, data: &[u8]) -> Result<(), ZkError> {
    match client.set_data(path, data, None).await {
        Err(ZkError::NoNode) => {
            let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
            match client.create(path, data, &options).await {
                // Created by someone else in between: overwrite it.
                Err(ZkError::NodeExists) => client.set_data(path, data, None).await.map(|_| ()),
                r => r.map(|_| ()),
            }
        }
        r => r.map(|_| ()),
    }
}

/// Deletes `path` at any version; a node that is already gone is not an error.
pub async fn delete_if_present(client: &Client, path: &str) -> Result<bool, ZkError> {
    match client.delete(path, None).await {
        Ok(()) => Ok(true),
        Err(ZkError::NoNode) => Ok(false),
        Err(e) => Err(e),
    }
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
        for (present, path) in [(has_marker, &marker), (has_live, &live)] {
            if present {
                multi.add_delete(path, None).map_err(zk(path))?;
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
                    // A grandchild makes this fail; the next round then reports NotEmpty again
                    // and the last one gives up with the error.
                    let _ = delete_if_present(client, &path).await;
                }
                last = ZkError::NotEmpty;
                continue;
            }
            Err(e) => return Err(zk(&marker)(e.into())),
        }
    }
    Err(RegistryError::Zk {
        path: marker,
        source: last,
    })
}
