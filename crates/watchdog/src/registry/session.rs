//! Opening and closing ZooKeeper sessions, and the small node operations both programs share.

use std::time::Duration;

use zookeeper_client::{Client, Error as ZkError, SessionState, StateWatcher};

/// A connected client with its session-state watcher.
#[derive(Debug)]
pub struct Session {
    pub client: Client,
    pub states: StateWatcher,
}

impl Session {
    /// Connects to `hosts` (a connect string, optionally with a chroot). Fails fast when no
    /// server answers, so that the caller's own retry loop stays in control.
    pub async fn connect(hosts: &str, session_timeout: Duration) -> Result<Self, ZkError> {
        let client = Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(session_timeout.min(Duration::from_secs(5)))
            .with_fail_eagerly()
            .connect(hosts)
            .await?;
        let states = client.state_watcher();
        Ok(Session { client, states })
    }

    /// The session id in the records' format (`0x…`).
    pub fn id_hex(&self) -> String {
        super::records::session_hex(self.client.session_id().0)
    }

    /// Closes the session and waits (at most `deadline`) until the client reports `Closed`, so
    /// that our ephemeral nodes are gone when this returns.
    pub async fn close(self, deadline: Duration) -> bool {
        let Session { client, mut states } = self;
        drop(client);
        let closed = async {
            loop {
                match states.changed().await {
                    SessionState::Closed | SessionState::Expired | SessionState::AuthFailed => {
                        return
                    }
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(deadline, closed).await.is_ok()
    }
}

/// True for errors after which the session is unusable and a new one is needed.
pub fn session_is_gone(e: &ZkError) -> bool {
    matches!(
        e,
        ZkError::SessionExpired | ZkError::ClientClosed | ZkError::AuthFailed
    )
}
