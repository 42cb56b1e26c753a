//! Leader election among watcher replicas: each creates an EPHEMERAL_SEQUENTIAL node
//! `<root>/watchers/n-`; the lowest sequence leads; every other replica watches only the node
//! just below its own (no herd when the leader goes).

use zkwatchdog::registry::NodeAcls;
use zookeeper_client::{Client, CreateMode, Error as ZkError, OneshotWatcher};

/// This replica's place in the election.
#[derive(Debug)]
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
    /// (host and pid, so the same bytes mean the same process); the node gets the node ACL of
    /// `acls`.
    ///
    /// A node this process left behind in an earlier, expired session is deleted first: it
    /// lingers until ZooKeeper notices the expiry, and standing behind our own ghost would leave
    /// nobody leading for up to a session timeout.
    pub async fn join(
        client: &Client,
        dir: &str,
        data: &[u8],
        acls: &NodeAcls,
    ) -> Result<Self, ZkError> {
        remove_own_stale_nodes(client, dir, data).await?;
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

/// Deletes election nodes holding exactly `data` (this process) that belong to another session.
async fn remove_own_stale_nodes(client: &Client, dir: &str, data: &[u8]) -> Result<(), ZkError> {
    let ours = client.session_id().0;
    for name in client.list_children(dir).await? {
        let path = format!("{dir}/{name}");
        let (stored, stat) = match client.get_data(&path).await {
            Ok(x) => x,
            Err(ZkError::NoNode) => continue,
            Err(e) => return Err(e),
        };
        if stored == data && stat.ephemeral_owner != ours {
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
