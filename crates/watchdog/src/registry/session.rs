//! Opening and closing ZooKeeper sessions, and the small node operations both programs share.

use std::fmt;
use std::time::{Duration, Instant};

use zookeeper_client::{
    Client, Error as ZkError, SessionInfo, SessionState, StateWatcher, TlsOptions,
};

use super::access::{ZkAccess, ZkTls};

/// A connected client with its session-state watcher.
#[derive(Debug)]
pub struct Session {
    pub client: Client,
    pub states: StateWatcher,
}

impl Session {
    /// Connects to `hosts` (a connect string, optionally with a chroot), with the credentials and
    /// TLS settings in `access`. Fails fast when no server answers, so that the caller's own
    /// retry loop stays in control.
    ///
    /// With TLS configured every server in `hosts` is spoken to over TLS, unless it is written
    /// `tcp://host:port`. When no session could be opened, the servers are probed for a TLS
    /// problem (see [`tls_diagnosis`](super::tls_diagnosis)), whose description the error carries.
    pub async fn connect(
        hosts: &str,
        session_timeout: Duration,
        access: &ZkAccess,
    ) -> Result<Self, ConnectError> {
        Self::connect_resuming(
            hosts,
            session_timeout,
            access,
            None,
            &mut PlainProbes::default(),
        )
        .await
    }

    /// Like [`connect`](Self::connect), but first asks for the session `resume` again: a
    /// session the client gave up while no server answered (the client expires a session on its
    /// own after 1.4 session timeouts without a server) may still be alive on the servers, with
    /// its ephemeral nodes. After an outage of the whole ensemble it always is: the servers
    /// restore every session from disk and restart their clocks. Fails with
    /// [`ZkError::SessionExpired`] when a server answers that the session is gone. `probes`:
    /// the caller's record of its plain-TCP probes (see [`PlainProbes`]).
    pub async fn connect_resuming(
        hosts: &str,
        session_timeout: Duration,
        access: &ZkAccess,
        resume: Option<&SessionInfo>,
        probes: &mut PlainProbes,
    ) -> Result<Self, ConnectError> {
        match Self::try_connect(hosts, session_timeout, access, resume).await {
            Ok(session) => Ok(session),
            Err(error @ (ZkError::NoHosts | ZkError::ConnectionLoss | ZkError::Timeout)) => {
                let diagnosis = match access.tls {
                    Some(ref tls) => super::tls_diagnosis::diagnose(hosts, Some(tls)).await,
                    None => match probes.recent(Instant::now()) {
                        Some(recent) => recent,
                        None => {
                            let found = super::tls_diagnosis::diagnose(hosts, None).await;
                            probes.remember(Instant::now(), found.clone());
                            found
                        }
                    },
                };
                Err(ConnectError { error, diagnosis })
            }
            Err(error) => Err(ConnectError {
                error,
                diagnosis: None,
            }),
        }
    }

    async fn try_connect(
        hosts: &str,
        session_timeout: Duration,
        access: &ZkAccess,
        resume: Option<&SessionInfo>,
    ) -> Result<Self, ZkError> {
        let mut connector = Client::connector()
            .with_session_timeout(session_timeout)
            .with_connection_timeout(session_timeout.min(Duration::from_secs(5)))
            .with_fail_eagerly();
        if let Some(info) = resume {
            connector = connector.with_session(info.clone());
        }
        if let Some(auth) = &access.auth {
            connector = connector.with_auth(super::access::ZkAuth::SCHEME, &auth.credentials());
        }
        let client = match &access.tls {
            Some(tls) => {
                connector
                    .with_tls(tls_options(tls)?)
                    .secure_connect(hosts)
                    .await?
            }
            None => connector.connect(hosts).await?,
        };
        let states = client.state_watcher();
        Ok(Session { client, states })
    }

    /// What it takes to ask the servers for this session again (see
    /// [`connect_resuming`](Self::connect_resuming)).
    pub fn info(&self) -> SessionInfo {
        self.client.session().clone()
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

/// Without `[zk-tls]`, a failed connect probes the servers for a TLS port (the mistake of
/// pointing a plain client at `secureClientPort`) at most this often per owner, and failures in
/// between carry what that probe found: the probe is one more connection to every server, and
/// an ensemble that is failing or electing a leader gets retries from every host of the fleet
/// already. With `[zk-tls]` every failure is probed: that handshake is what tells a wrong CA
/// from an outage.
const PLAIN_PROBE_EVERY: Duration = Duration::from_secs(60);

/// What the last plain-TCP probe of a connection loop found, and when: kept by the loop that
/// connects again and again (the publisher, the watcher), so that it probes at most once
/// a minute. Pure.
#[derive(Debug, Default, Clone)]
pub struct PlainProbes {
    last: Option<(Instant, Option<String>)>,
}

impl PlainProbes {
    /// What the last probe found, if it ran within [`PLAIN_PROBE_EVERY`] of `now`.
    fn recent(&self, now: Instant) -> Option<Option<String>> {
        self.last
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < PLAIN_PROBE_EVERY)
            .map(|(_, found)| found.clone())
    }

    fn remember(&mut self, now: Instant, found: Option<String>) {
        self.last = Some((now, found));
    }
}

/// A session could not be opened: the client's error, and what probing the servers found when
/// that error does not say (the client reports a failed TLS handshake as "no available hosts").
#[derive(Debug, Clone)]
pub struct ConnectError {
    /// The client's error.
    pub error: ZkError,
    /// The cause found by probing the servers, e.g. an untrusted server certificate.
    pub diagnosis: Option<String>,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.diagnosis {
            Some(d) => write!(f, "{}: {d}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The client's TLS options from validated PEM text.
fn tls_options(tls: &ZkTls) -> Result<TlsOptions, ZkError> {
    let options = TlsOptions::new().with_pem_ca(&tls.ca_pem)?;
    match &tls.identity {
        Some(id) => options.with_pem_identity(&id.cert_pem, id.key_pem.expose()),
        None => Ok(options),
    }
}

/// True for the errors of a connect that leave a session worth asking for again: no server
/// answered (down, unreachable, not serving yet). Any answer from a server (expired, refused
/// credentials) ends the attempt to resume.
pub fn no_server_answered(e: &ZkError) -> bool {
    matches!(
        e,
        ZkError::NoHosts | ZkError::ConnectionLoss | ZkError::Timeout
    )
}

/// True for errors after which the session is unusable and a new one is needed.
pub fn session_is_gone(e: &ZkError) -> bool {
    matches!(
        e,
        ZkError::SessionExpired | ZkError::ClientClosed | ZkError::AuthFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_probe_is_reused_for_a_minute_then_made_again() {
        let t0 = Instant::now();
        let mut probes = PlainProbes::default();
        assert_eq!(probes.recent(t0), None, "never probed: probe");
        probes.remember(t0, Some("speaks TLS".into()));
        let found = Some(Some("speaks TLS".to_string()));
        assert_eq!(probes.recent(t0 + Duration::from_secs(59)), found);
        assert_eq!(
            probes.recent(t0 + PLAIN_PROBE_EVERY),
            None,
            "a minute on: probe again"
        );
        // Nothing found is remembered too: no probe for a minute either.
        probes.remember(t0, None);
        assert_eq!(probes.recent(t0 + Duration::from_secs(1)), Some(None));
    }
}
