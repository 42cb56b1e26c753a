//! Removing a node the watcher owns (an incident) even when someone gave it children by hand:
//! ZooKeeper refuses to delete a node that has children, and retrying the plain delete would
//! fail forever.

use std::future::Future;
use std::pin::Pin;

use tracing::warn;
use zkwatchdog::registry::delete_if_present;
use zookeeper_client::{Client, Error as ZkError};

/// How deep a hand-made subtree is removed; deeper nodes make the delete fail (and be reported).
const MAX_DEPTH: u32 = 8;

/// Deletes `path` and, if it has children, them first (each one reported by path). A node that
/// is already gone is not an error; returns whether `path` existed.
pub async fn delete_tree(client: &Client, path: &str) -> Result<bool, ZkError> {
    delete_below(client, path.to_string(), MAX_DEPTH).await
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
            warn!(path = %child_path, "removing an unexpected child node");
            delete_below(client, child_path, depth - 1).await?;
        }
        delete_if_present(client, &path).await
    })
}
