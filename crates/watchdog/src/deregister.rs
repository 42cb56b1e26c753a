//! `zkwatchdog deregister`: remove an agent from the registry for good.

use std::time::Duration;

use thiserror::Error;

use crate::config::Config;
use crate::registry::{decode, remove_agent, Liveness, NodeAcls, RegistryError, Removed, Session};

/// Why deregistration failed.
#[derive(Debug, Error)]
pub enum DeregisterError {
    #[error("cannot connect to zookeeper at {hosts}")]
    Connect {
        hosts: String,
        #[source]
        source: crate::registry::ConnectError,
    },
    #[error("no agent {id} is registered (no {path})")]
    NotRegistered { id: String, path: String },
    /// ZooKeeper refused this program's credentials (the message names the znode).
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Deletes the agent's marker and liveness node in one transaction. Returns a warning to print
/// when the agent's watchdog still seemed to be running.
pub async fn deregister(config: &Config) -> Result<Option<String>, DeregisterError> {
    let session = Session::connect(&config.zk_hosts, config.session_timeout, &config.zk_access)
        .await
        .map_err(|source| DeregisterError::Connect {
            hosts: config.zk_hosts.clone(),
            source,
        })?;
    let live_path = config.layout.live(&config.id);
    let running = match session.client.get_data(&live_path).await {
        Ok((data, _)) => Some(match decode::<Liveness>(&live_path, &data) {
            Ok(l) => format!(
                "{live_path} existed (watchdog pid {}, child pid {}): if that watchdog is still running it registers again on its next change; stop it first",
                l.pid, l.child_pid
            ),
            Err(e) => format!("{e}; removed it anyway"),
        }),
        Err(_) => None,
    };
    let removed = remove_agent(&session.client, &config.layout, &config.id).await;
    session.close(Duration::from_secs(5)).await;
    let removed = removed.map_err(|e| match &e {
        RegistryError::Zk { path, source } => {
            match NodeAcls::new(&config.zk_access).denied(path, source) {
                Some(why) => DeregisterError::Denied(why),
                None => DeregisterError::Registry(e),
            }
        }
        _ => DeregisterError::Registry(e),
    })?;
    match removed {
        Removed {
            marker: false,
            live: false,
        } => Err(DeregisterError::NotRegistered {
            id: config.id.to_string(),
            path: config.layout.marker(&config.id),
        }),
        _ => Ok(running),
    }
}
