//! Leader election among watcher replicas: each creates an EPHEMERAL_SEQUENTIAL node
//! `<root>/watchers/n-`; the lowest sequence leads; every other replica watches only the node
//! just below its own (no herd when the leader goes).
//!
//! A node's data names its replica: host, pid and a random token drawn once per process. Two
//! replicas in two containers on one host can have the same host name and pid; only the token
//! tells a node this process left in an expired session (deleted on joining) from the other
//! replica's (never touched).

use zkwatchdog::registry::NodeAcls;
use zookeeper_client::{Client, CreateMode, Error as ZkError, OneshotWatcher};

/// This replica's place in the election.
#[derive(Debug, Clone)]
pub struct Candidate {
    dir: String,
    /// Our node's name (`n-0000000007`).
    name: String,
}

/// The outcome of a check.
#[derive(Debug)]
pub enum Standing {
    Leader,
    /// Not leading; the watcher fires when the predecessor's node changes.
    Follower {
        predecessor: String,
        watch: OneshotWatcher,
    },
}

impl Candidate {
    /// Joins the election under `dir` (which must exist), with `data` describing this replica
    /// ([`node_data`]: host, pid and this process's `token`); the node gets the node ACL of
    /// `acls`.
    ///
    /// A node this process left behind in an earlier, expired session (same token) is deleted
    /// first: it lingers until ZooKeeper notices the expiry, and standing behind our own ghost
    /// would leave nobody leading for up to a session timeout.
    pub async fn join(
        client: &Client,
        dir: &str,
        data: &[u8],
        token: &str,
        acls: &NodeAcls,
    ) -> Result<Self, ZkError> {
        remove_own_stale_nodes(client, dir, token).await?;
        let options = CreateMode::EphemeralSequential.with_acls(acls.node());
        let (_, seq) = client.create(&format!("{dir}/n-"), data, &options).await?;
        Ok(Candidate {
            dir: dir.to_string(),
            name: format!("n-{seq}"),
        })
    }

    /// Full path of our node.
    pub fn path(&self) -> String {
        format!("{}/{}", self.dir, self.name)
    }

    /// Whether ZooKeeper confirms, in one round trip, that our node exists and belongs to this
    /// session. A request on an expired session fails: a replica frozen past its session timeout
    /// cannot confirm with what it remembers.
    pub async fn confirm(&self, client: &Client) -> Result<bool, ZkError> {
        let ours = client.session_id().0;
        Ok(client
            .check_stat(&self.path())
            .await?
            .is_some_and(|stat| stat.ephemeral_owner == ours))
    }

    /// Watches our own node: the watcher fires when it is deleted or changed. `None` if it is
    /// already gone or not ours.
    pub async fn watch_own(&self, client: &Client) -> Result<Option<OneshotWatcher>, ZkError> {
        let ours = client.session_id().0;
        match client.check_and_watch_stat(&self.path()).await? {
            (Some(stat), watch) if stat.ephemeral_owner == ours => Ok(Some(watch)),
            _ => Ok(None),
        }
    }

    /// Where we stand now. Errors with `NoNode` if our own node is gone (session lost).
    pub async fn check(&self, client: &Client) -> Result<Standing, ZkError> {
        // Bounded: each round either decides or finds a predecessor that vanished meanwhile.
        for _ in 0..16 {
            let mut names: Vec<String> = client
                .list_children(&self.dir)
                .await?
                .into_iter()
                .filter(|n| n.starts_with("n-"))
                .collect();
            names.sort_by_key(|n| sequence(n));
            let Some(pos) = names.iter().position(|n| *n == self.name) else {
                return Err(ZkError::NoNode);
            };
            // Walk down from the node just below ours. A node no session owns (persistent,
            // written by hand) is no candidate: standing behind it would leave nobody leading.
            let mut vanished = false;
            for name in names[..pos].iter().rev() {
                let predecessor = format!("{}/{}", self.dir, name);
                match client.check_and_watch_stat(&predecessor).await? {
                    (Some(stat), watch) if stat.ephemeral_owner != 0 => {
                        return Ok(Standing::Follower { predecessor, watch })
                    }
                    (Some(_), _) => tracing::warn!(
                        path = %predecessor,
                        "ignoring an election node that is not ephemeral (written by hand?)"
                    ),
                    (None, _) => {
                        vanished = true;
                        break;
                    }
                }
            }
            if !vanished {
                return Ok(Standing::Leader);
            }
        }
        Err(ZkError::ConnectionLoss)
    }
}

/// The data of this replica's election node.
pub fn node_data(host: &str, pid: u32, token: &str) -> Vec<u8> {
    serde_json::json!({"v": 1, "host": host, "pid": pid, "token": token})
        .to_string()
        .into_bytes()
}

/// A fresh random token for this process.
pub fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Whether election node data names the process holding `token`.
fn holds_token(data: &[u8], token: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(|t| t == token))
        .unwrap_or(false)
}

/// Deletes election nodes of this process (its `token`) that belong to another session.
async fn remove_own_stale_nodes(client: &Client, dir: &str, token: &str) -> Result<(), ZkError> {
    let ours = client.session_id().0;
    for name in client.list_children(dir).await? {
        if !name.starts_with("n-") {
            continue;
        }
        let path = format!("{dir}/{name}");
        let (stored, stat) = match client.get_data(&path).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => continue,
            Err(e) => return Err(e),
        };
        if holds_token(&stored, token) && stat.ephemeral_owner != ours {
            tracing::info!(node = %path, "removing this watcher's node from an expired session");
            match client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(ZkError::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn sequence(name: &str) -> i64 {
    name.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_is_the_same_process() {
        let ours = node_data("host-a", 7, "aaaa");
        assert!(holds_token(&ours, "aaaa"));
        // Another container on the same host, with the same pid.
        let twin = node_data("host-a", 7, "bbbb");
        assert!(!holds_token(&twin, "aaaa"));
        // Nodes of older versions (host and pid only) and garbage are never ours.
        assert!(!holds_token(br#"{"v":1,"host":"host-a","pid":7}"#, "aaaa"));
        assert!(!holds_token(b"garbage", "aaaa"));
    }

    #[test]
    fn tokens_differ_between_draws() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 16);
    }

    #[test]
    fn sequences_order_numerically() {
        assert!(sequence("n-0000000009") < sequence("n-0000000010"));
        assert_eq!(sequence("n-x"), i64::MAX);
    }
}
