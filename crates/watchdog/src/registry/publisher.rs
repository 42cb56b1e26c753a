//! The publisher: an actor that owns the watchdog's ZooKeeper session and converges the marker
//! and the liveness node on what the supervisor reports, in order, without ever blocking it.
//!
//! The supervisor sends [`Update`]s and carries on; this task applies each one (marker first,
//! then the liveness node, so an exit record is always in the marker before the liveness node
//! goes). ZooKeeper being down at start, a disconnection, or an expired session only delay the
//! registry: the actor reconnects with backoff and re-creates what the session lost.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zookeeper_client::{Client, CreateMode, Error as ZkError, SessionState};

use super::acl::{DeniedLog, NodeAcls};
use super::nodes::{delete_if_present, ensure_dirs, remove_agent};
use super::paths::{AgentId, Layout};
use super::records::{
    decode, encode, AgentKind, AgentState, Health, LastExit, Liveness, Marker, Timestamp,
    RECORD_VERSION,
};
use super::session::{session_is_gone, Session};
use crate::config::zk::ZkAccess;

/// Who the agent is: the fixed part of its marker, and where the registry is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub zk_hosts: String,
    pub session_timeout: Duration,
    /// Credentials and TLS for ZooKeeper.
    pub zk_access: ZkAccess,
    pub layout: Layout,
    pub id: AgentId,
    pub name: String,
    pub kind: AgentKind,
    pub host: String,
    pub command: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The health every new liveness node starts with (before the first probe result).
    pub initial_health: Health,
    /// Where the session state and re-registrations are counted.
    pub metrics: std::sync::Arc<crate::metrics::WatchdogMetrics>,
}

/// What the supervisor reports. Generations are the watchdog's own count (1 = first child); the
/// publisher adds the generation already recorded in an existing marker, so that generations
/// keep growing across watchdog restarts.
#[derive(Debug, Clone)]
pub enum Update {
    /// A child started: marker `state=running`, a new liveness node.
    Started {
        generation: u64,
        child_pid: u32,
        restarts: u64,
        started_at: Timestamp,
    },
    /// A child ended: `last_exit` and `state` into the marker, then the liveness node is deleted.
    Exited {
        exit: LastExit,
        state: AgentState,
        restarts: u64,
    },
    /// The supervisor changed state without a child starting or ending.
    State(AgentState),
    /// The health of the child of `generation` changed: `setData` on its liveness node (or
    /// kept for its creation). Ignored when that child is no longer the current one. The
    /// marker is not rewritten.
    Health { generation: u64, health: Health },
}

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

enum Command {
    Update(Update),
    /// Planned stop: delete marker and liveness in one transaction, close the session.
    Deregister(oneshot::Sender<()>),
    /// Give-up: write what is pending, close the session (the marker stays).
    Close(oneshot::Sender<()>),
}

/// Handle to the publisher task.
#[derive(Debug)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
    hosts: String,
}

impl Publisher {
    /// Starts the publisher task. It connects in the background.
    pub fn start(identity: Identity) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let hosts = identity.zk_hosts.clone();
        let task = tokio::spawn(Actor::new(identity).run(rx));
        Publisher { tx, task, hosts }
    }

    /// Queues an update; never blocks.
    pub fn publish(&self, update: Update) {
        let _ = self.tx.send(Command::Update(update));
    }

    /// Removes the agent from the registry (marker and liveness in one transaction) and closes
    /// the session, waiting at most `deadline`.
    pub async fn deregister(self, deadline: Duration) -> Result<(), RegistryError> {
        self.finish(Command::Deregister, deadline).await
    }

    /// Writes pending updates and closes the session, waiting at most `deadline`.
    pub async fn close(self, deadline: Duration) -> Result<(), RegistryError> {
        self.finish(Command::Close, deadline).await
    }

    async fn finish(
        self,
        make: impl FnOnce(oneshot::Sender<()>) -> Command,
        deadline: Duration,
    ) -> Result<(), RegistryError> {
        let (done, confirmed) = oneshot::channel();
        self.tx.send(make(done)).map_err(|_| RegistryError::Gone)?;
        let result = match tokio::time::timeout(deadline, confirmed).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RegistryError::Gone),
            Err(_) => Err(RegistryError::Timeout {
                hosts: self.hosts.clone(),
                waited: deadline,
            }),
        };
        self.task.abort();
        result
    }
}

/// What the registry should show, in the watchdog's own generation numbers.
#[derive(Debug)]
struct Desired {
    state: AgentState,
    generation: u64,
    restarts: u64,
    last_exit: Option<LastExit>,
    live: Option<LiveDesired>,
    /// The current child's health; survives a new session (the re-created node carries it).
    health: Health,
}

#[derive(Debug, Clone)]
struct LiveDesired {
    generation: u64,
    child_pid: u32,
    started_at: Timestamp,
}

/// What an existing marker contributed when this watchdog first connected.
#[derive(Debug, Clone, Copy)]
struct Carried {
    generation: u64,
    restarts: u64,
    registered_at: Timestamp,
}

enum Finish {
    Deregister(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

struct Actor {
    id: Identity,
    marker_path: String,
    live_path: String,
    /// The ACLs of the nodes this watchdog creates (from `[zk-auth]`).
    acls: NodeAcls,
    /// Rate limit of the error-level log of refusals of our credentials.
    denied_log: DeniedLog,
    session: Option<Session>,
    /// The published generation of the liveness node this session created, if any.
    live_written: Option<u64>,
    /// The health that node shows.
    health_written: Option<Health>,
    /// The marker needs writing (an update other than health, or a new session).
    marker_stale: bool,
    /// `agents/` and `live/` exist (checked once per session, not on every update).
    dirs_ready: bool,
    /// A liveness node of ours may exist (unknown after a new session or a failed operation).
    live_maybe: bool,
    carried: Option<Carried>,
    desired: Desired,
    dirty: bool,
    finish: Option<Finish>,
    /// A session before this one existed: the next complete sync is a re-registration.
    reregistering: bool,
    /// Some session has connected already.
    connected_once: bool,
}

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// A refusal of our credentials is logged at error level at most this often (retries go on).
const DENIED_LOG_EVERY: Duration = Duration::from_secs(60);

impl Actor {
    fn new(id: Identity) -> Self {
        let health = id.initial_health.clone();
        Actor {
            marker_path: id.layout.marker(&id.id),
            live_path: id.layout.live(&id.id),
            acls: NodeAcls::new(&id.zk_access),
            denied_log: DeniedLog::new(DENIED_LOG_EVERY),
            id,
            session: None,
            live_written: None,
            health_written: None,
            marker_stale: true,
            dirs_ready: false,
            live_maybe: true,
            carried: None,
            desired: Desired {
                state: AgentState::Starting,
                generation: 0,
                restarts: 0,
                last_exit: None,
                live: None,
                health,
            },
            dirty: true,
            finish: None,
            reregistering: false,
            connected_once: false,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut retry = RETRY_MIN;
        loop {
            if self.session.is_none() {
                match Session::connect(
                    &self.id.zk_hosts,
                    self.id.session_timeout,
                    &self.id.zk_access,
                )
                .await
                {
                    Ok(session) => {
                        tracing::info!(agent = %self.id.id, session = %session.id_hex(), "connected to zookeeper");
                        self.session = Some(session);
                        self.live_written = None;
                        self.dirs_ready = false;
                        self.live_maybe = true;
                        self.dirty = true;
                        self.marker_stale = true;
                        retry = RETRY_MIN;
                        self.id.metrics.set_zk_state(SessionState::SyncConnected);
                        self.reregistering = self.connected_once;
                        self.connected_once = true;
                    }
                    Err(e) => {
                        match self.acls.denied(self.id.layout.root(), &e.error) {
                            Some(why) => self.log_denied(&why, retry),
                            None => {
                                tracing::warn!(agent = %self.id.id, hosts = %self.id.zk_hosts, error = %e, retry_in = ?retry, "cannot connect to zookeeper; the child keeps running")
                            }
                        }
                        self.id.metrics.set_zk_connecting();
                        if !self.pause(&mut rx, retry).await {
                            return;
                        }
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }

            if self.dirty || self.finish.is_some() {
                match self.sync().await {
                    Ok(()) => {
                        self.dirty = false;
                        retry = RETRY_MIN;
                        if std::mem::take(&mut self.reregistering) {
                            self.id.metrics.reregistered();
                        }
                    }
                    Err((path, e)) => {
                        match self.acls.denied(&path, &e) {
                            Some(why) => self.log_denied(&why, retry),
                            None => {
                                tracing::warn!(agent = %self.id.id, znode = %path, error = %e, "registry update failed; will retry")
                            }
                        }
                        self.live_maybe = true;
                        if session_is_gone(&e) {
                            self.drop_session();
                        }
                        if !self.pause(&mut rx, retry).await {
                            return;
                        }
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                }
                if let Some(finish) = self.finish.take() {
                    let session = self.session.take();
                    if let Some(session) = session {
                        if !session.close(CLOSE_WAIT).await {
                            tracing::warn!(agent = %self.id.id, "zookeeper session did not report closed in time");
                        }
                    }
                    match finish {
                        Finish::Deregister(done) | Finish::Close(done) => {
                            let _ = done.send(());
                        }
                    }
                    return;
                }
            }

            let Some(session) = self.session.as_mut() else {
                continue;
            };
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.apply(command),
                    None => return,
                },
                state = session.states.changed() => match state {
                    SessionState::Expired | SessionState::Closed | SessionState::AuthFailed => {
                        self.id.metrics.set_zk_state(state);
                        tracing::warn!(agent = %self.id.id, ?state, "zookeeper session lost; opening a new one");
                        self.drop_session();
                    }
                    SessionState::Disconnected => {
                        self.id.metrics.set_zk_state(state);
                        tracing::warn!(agent = %self.id.id, "disconnected from zookeeper; riding it out");
                    }
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        self.id.metrics.set_zk_state(state);
                        tracing::info!(agent = %self.id.id, "reconnected to zookeeper");
                    }
                },
            }
        }
    }

    /// Logs a refusal of our credentials: at error level when first seen and then at most every
    /// [`DENIED_LOG_EVERY`], in between at debug level. The publisher keeps retrying (the
    /// operator may fix the ACL), and the child keeps running.
    fn log_denied(&mut self, why: &str, retry: Duration) {
        if !self.denied_log.loud(std::time::Instant::now()) {
            tracing::debug!(agent = %self.id.id, retry_in = ?retry, "{why}");
        } else {
            tracing::error!(agent = %self.id.id, retry_in = ?retry, "{why}; the child keeps running and the registry update is retried");
        }
    }

    fn drop_session(&mut self) {
        self.session = None;
        self.live_written = None;
        self.dirs_ready = false;
        self.live_maybe = true;
        self.dirty = true;
        self.marker_stale = true;
    }

    /// Waits `delay` while still taking commands, so nothing queued is lost and the newest
    /// desired state is what the next attempt writes. False when the handle is gone.
    async fn pause(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                command = rx.recv() => match command {
                    Some(command) => {
                        self.apply(command);
                        // A planned stop should not wait out a long retry delay.
                        if self.finish.is_some() {
                            return true;
                        }
                    }
                    None => return false,
                },
            }
        }
    }

    fn apply(&mut self, command: Command) {
        self.dirty = true;
        if !matches!(command, Command::Update(Update::Health { .. })) {
            self.marker_stale = true;
        }
        let d = &mut self.desired;
        match command {
            Command::Update(Update::Started {
                generation,
                child_pid,
                restarts,
                started_at,
            }) => {
                d.state = AgentState::Running;
                d.generation = generation;
                d.restarts = restarts;
                d.live = Some(LiveDesired {
                    generation,
                    child_pid,
                    started_at,
                });
                d.health = self.id.initial_health.clone();
            }
            Command::Update(Update::Exited {
                exit,
                state,
                restarts,
            }) => {
                d.state = state;
                d.restarts = restarts;
                d.last_exit = Some(exit);
                d.live = None;
            }
            Command::Update(Update::State(state)) => d.state = state,
            Command::Update(Update::Health { generation, health }) => {
                // Health alone never rewrites the marker (see above).
                if d.live.as_ref().is_some_and(|l| l.generation == generation) {
                    d.health = health;
                }
            }
            Command::Deregister(done) => self.finish = Some(Finish::Deregister(done)),
            Command::Close(done) => self.finish = Some(Finish::Close(done)),
        }
    }

    /// Brings the registry in line with `desired` (or removes the agent on a planned stop).
    async fn sync(&mut self) -> Result<(), (String, ZkError)> {
        let Some(session) = self.session.as_ref() else {
            return Err((self.id.zk_hosts.clone(), ZkError::ConnectionLoss));
        };
        let client = session.client.clone();
        let session_id = session.client.session_id().0;
        if matches!(self.finish, Some(Finish::Deregister(_))) {
            remove_agent(&client, &self.id.layout, &self.id.id)
                .await
                .map_err(|e| match e {
                    RegistryError::Zk { path, source } => (path, source),
                    other => (
                        self.marker_path.clone(),
                        ZkError::UnexpectedError(other.to_string()),
                    ),
                })?;
            tracing::info!(agent = %self.id.id, "deregistered: marker and liveness node removed");
            return Ok(());
        }
        let at = |path: &str| {
            let path = path.to_string();
            move |e| (path, e)
        };
        if !self.dirs_ready {
            // Only the directories the watchdog writes into; the watcher makes its own.
            let dirs = [self.id.layout.agents_dir(), self.id.layout.live_dir()];
            ensure_dirs(&client, &self.id.layout, &dirs, &self.acls).await?;
            self.dirs_ready = true;
        }
        let carried = match self.carried {
            Some(c) => c,
            None => {
                let c = self.read_carried(&client).await?;
                self.carried = Some(c);
                c
            }
        };

        // Marker first: an exit record must be readable before the liveness node goes.
        if self.marker_stale {
            self.write_marker(&client, carried, session_id).await?;
            self.marker_stale = false;
        }

        // Then the liveness node.
        match self.desired.live.clone() {
            None => {
                if self.live_maybe {
                    delete_if_present(&client, &self.live_path)
                        .await
                        .map_err(at(&self.live_path))?;
                    self.live_maybe = false;
                    self.live_written = None;
                    self.health_written = None;
                }
            }
            Some(live) => {
                let generation = carried.generation + live.generation;
                if self.live_written != Some(generation) {
                    if self.live_written.is_some() {
                        // Our node of an older generation: its deletion is what watchers see.
                        delete_if_present(&client, &self.live_path)
                            .await
                            .map_err(at(&self.live_path))?;
                    }
                    self.live_maybe = true;
                    let record = self.liveness(&live, generation, session_id);
                    self.create_live(&client, session_id, &encode(&record))
                        .await
                        .map_err(at(&self.live_path))?;
                    self.live_written = Some(generation);
                    self.health_written = Some(record.health);
                } else if self.health_written.as_ref() != Some(&self.desired.health) {
                    // Only the health changed: one setData on our own node.
                    let record = self.liveness(&live, generation, session_id);
                    let data = encode(&record);
                    match client.set_data(&self.live_path, &data, None).await {
                        Ok(_) => {}
                        // Someone removed our node: put it back.
                        Err(ZkError::NoNode) => self
                            .create_live(&client, session_id, &data)
                            .await
                            .map_err(at(&self.live_path))?,
                        Err(e) => return Err((self.live_path.clone(), e)),
                    }
                    self.health_written = Some(record.health);
                }
            }
        }
        Ok(())
    }

    /// The liveness record of the current child, with its current health.
    fn liveness(&self, live: &LiveDesired, generation: u64, session_id: i64) -> Liveness {
        Liveness {
            v: RECORD_VERSION,
            pid: std::process::id(),
            child_pid: live.child_pid,
            generation,
            started_at: live.started_at,
            session_id: super::records::session_hex(session_id),
            health: self.desired.health.clone(),
        }
    }

    /// Writes the marker (set, else create).
    async fn write_marker(
        &self,
        client: &Client,
        carried: Carried,
        session_id: i64,
    ) -> Result<(), (String, ZkError)> {
        let data = encode(&self.marker(carried, session_id));
        let fail = |e| (self.marker_path.clone(), e);
        match client.set_data(&self.marker_path, &data, None).await {
            Ok(_) => Ok(()),
            Err(ZkError::NoNode) => {
                let options = CreateMode::Persistent.with_acls(self.acls.node());
                match client.create(&self.marker_path, &data, &options).await {
                    Ok(_) => Ok(()),
                    Err(ZkError::NodeExists) => client
                        .set_data(&self.marker_path, &data, None)
                        .await
                        .map(|_| ())
                        .map_err(fail),
                    Err(e) => Err(fail(e)),
                }
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Creates the ephemeral liveness node, replacing a stale one left by an earlier session
    /// (of ours or of a previous watchdog for the same id) that has not expired yet.
    async fn create_live(
        &self,
        client: &Client,
        session_id: i64,
        data: &[u8],
    ) -> Result<(), ZkError> {
        let options = CreateMode::Ephemeral.with_acls(self.acls.node());
        for _ in 0..3 {
            match client.create(&self.live_path, data, &options).await {
                Ok(_) => return Ok(()),
                Err(ZkError::NodeExists) => {
                    let Some(stat) = client.check_stat(&self.live_path).await? else {
                        continue;
                    };
                    if stat.ephemeral_owner != session_id {
                        tracing::warn!(
                            agent = %self.id.id,
                            znode = %self.live_path,
                            owner = %super::records::session_hex(stat.ephemeral_owner),
                            "replacing a liveness node left by another session"
                        );
                    }
                    match client.delete(&self.live_path, Some(stat.version)).await {
                        Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(ZkError::NodeExists)
    }

    /// Reads an existing marker once, to continue its generation and restart counts.
    async fn read_carried(&self, client: &Client) -> Result<Carried, (String, ZkError)> {
        let fresh = Carried {
            generation: 0,
            restarts: 0,
            registered_at: Timestamp::now(),
        };
        match client.get_data(&self.marker_path).await {
            Ok((data, _)) => match decode::<Marker>(&self.marker_path, &data) {
                Ok(m) => Ok(Carried {
                    generation: m.generation,
                    restarts: m.restarts,
                    registered_at: m.registered_at,
                }),
                Err(e) => {
                    tracing::warn!(agent = %self.id.id, error = %e, "existing marker is unreadable; overwriting it");
                    Ok(fresh)
                }
            },
            Err(ZkError::NoNode) => Ok(fresh),
            Err(e) => Err((self.marker_path.clone(), e)),
        }
    }

    fn marker(&self, carried: Carried, session_id: i64) -> Marker {
        let d = &self.desired;
        let last_exit = d.last_exit.clone().map(|mut e| {
            e.generation += carried.generation;
            e
        });
        Marker {
            v: RECORD_VERSION,
            id: self.id.id.to_string(),
            name: self.id.name.clone(),
            kind: self.id.kind,
            host: self.id.host.clone(),
            command: self.id.command.clone(),
            labels: self.id.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            registered_at: carried.registered_at,
            updated_at: Timestamp::now(),
            state: d.state,
            generation: carried.generation + d.generation,
            restarts: carried.restarts + d.restarts,
            last_exit,
            session_id: super::records::session_hex(session_id),
        }
    }
}
