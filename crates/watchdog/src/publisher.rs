//! The publisher: an actor that owns the watchdog's ZooKeeper session and converges the marker
//! and the liveness node on what the supervisor reports, in order, without ever blocking it.
//!
//! The supervisor sends [`Update`]s and carries on; this task applies each one (marker first,
//! then the liveness node, so an exit record is always in the marker before the liveness node
//! goes). ZooKeeper being down at start, a disconnection, or an expired session only delay the
//! registry: the actor reconnects with backoff and re-creates what the session lost.
//!
//! What to write next is decided by the pure [`next`](next::next); this actor only
//! performs the steps. A liveness node found in the way (a create answered `NodeExists`, or the node changed under
//! us) is judged by [`Claim`] before anything is written: our own session's
//! node is success, a predecessor's stale node is replaced, another live watchdog with our id is
//! refused ([`Publisher::refusal`]) instead of fought, and so is (on the first session) a ZooKeeper older than
//! [`MIN_SERVER_VERSION`](crate::registry::server_version::MIN_SERVER_VERSION), found on every new session. Secrets are masked ([`Redactor`]) in
//! everything the records carry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zookeeper_client::{
    Client, CreateMode, Error as ZkError, EventType, SessionInfo, SessionState, WatchedEvent,
};

pub mod claim;
pub mod next;

use claim::{Claim, Duplicate, Found, Interference, Me, Verdict};
use next::{Known, Step};

use crate::backoff::{Doubling, Retry};
use crate::redact::Redactor;
use crate::registry::session::{self, session_is_gone, PlainProbes, Session};
use crate::registry::{
    decode, encode, ensure_dirs, remove_agent, session_hex, AgentId, AgentKind, AgentState,
    DeniedLog, Health, LastExit, Layout, Liveness, Marker, NodeAcls, RegistryError, Timestamp,
    ZkAccess, RECORD_VERSION,
};

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
    /// Masks secrets in the command line and the exit records.
    pub redact: Redactor,
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
    refusal: Option<oneshot::Receiver<String>>,
}

impl Publisher {
    /// Starts the publisher task. It connects in the background.
    pub fn start(identity: Identity) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (refused, refusal) = oneshot::channel();
        let hosts = identity.zk_hosts.clone();
        let (watch_events, watched) = mpsc::unbounded_channel();
        let task = tokio::spawn(Actor::new(identity, refused, watch_events).run(rx, watched));
        Publisher {
            tx,
            task,
            hosts,
            refusal: Some(refusal),
        }
    }

    /// The receiver of the publisher's refusal, taken once: it gets the reason when another
    /// live zkwatchdog owns this id (the publisher has then written nothing of ours and
    /// stopped), and an error when the publisher ends for any other reason.
    pub fn refusal(&mut self) -> Option<oneshot::Receiver<String>> {
        self.refusal.take()
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

/// Why a sync did not complete.
#[derive(Debug)]
enum SyncError {
    /// A ZooKeeper operation on this znode failed.
    Zk(String, ZkError),
    /// Another session's liveness node is in the way and may be about to expire: look again
    /// after [`CLAIM_POLL`].
    Wait,
    /// Another live zkwatchdog owns our id.
    Duplicate(Duplicate),
}

impl From<(String, ZkError)> for SyncError {
    fn from((path, e): (String, ZkError)) -> Self {
        SyncError::Zk(path, e)
    }
}

/// What is at the liveness path once a foreign node has been dealt with.
#[derive(Debug)]
enum AtPath {
    /// Nothing.
    Free,
    /// A node of our session: its generation and health (when readable) and version.
    Ours {
        generation: Option<u64>,
        health: Option<Health>,
        version: i32,
    },
}

/// A watch on our liveness node: a task waiting for its event, which it sends with its token
/// (events of a watch that was replaced or dropped carry an old token and are ignored).
#[derive(Debug)]
struct LiveWatch {
    task: JoinHandle<()>,
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Actor {
    id: Identity,
    /// The server's release was checked (on the first session).
    version_checked: bool,
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
    /// The command line as published (secrets masked).
    command: Vec<String>,
    /// The verdicts on foreign liveness nodes.
    claim: Claim,
    /// Sessions this process had before the current one: a node of theirs is ours, left over.
    past_sessions: Vec<i64>,
    /// The session given up last, asked for again on the next connect: the client gives a
    /// session up on its own when no server answers for 1.4 session timeouts, but the servers
    /// may still hold it (after an outage of the whole ensemble they always do). Resuming it
    /// keeps our liveness node; a new session would replace it, and a watcher would see the
    /// agent vanish and come back (LOST) although it never stopped. Kept until a server answers.
    resume: Option<SessionInfo>,
    /// The liveness path was inspected in this session (before the first marker write).
    claimed: bool,
    /// Our liveness node was deleted or taken over by someone else: counted and reported.
    interference: Interference,
    /// Fires when our liveness node changes (deleted, replaced, data changed).
    live_watch: Option<LiveWatch>,
    /// The token of the current watch, and where watch events go.
    watch_token: u64,
    watch_events: mpsc::UnboundedSender<u64>,
    /// The watch fired: inspect the liveness path on the next sync.
    live_check: bool,
    /// The foreign session whose wait was announced in the log (announced once).
    wait_logged: Option<i64>,
    /// Where a refusal is reported (taken when it is sent).
    refused: Option<oneshot::Sender<String>>,
}

const RETRY_MIN: Duration = Duration::from_millis(100);
/// How often a foreign liveness node in the way is looked at again while it is waited for.
const CLAIM_POLL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The longest pause between connect attempts while a session may be resumed: a quarter of the
/// session timeout (at least [`RETRY_MIN`], at most [`RETRY_MAX`]), so that a server that is
/// back is asked within the session timeout it restarted for our session.
fn resume_retry_max(session_timeout: Duration) -> Duration {
    (session_timeout / 4).clamp(RETRY_MIN, RETRY_MAX)
}
/// A refusal of our credentials is logged at error level at most this often (retries go on).
const DENIED_LOG_EVERY: Duration = Duration::from_secs(60);

impl Actor {
    fn new(
        id: Identity,
        refused: oneshot::Sender<String>,
        watch_events: mpsc::UnboundedSender<u64>,
    ) -> Self {
        let health = id.initial_health.clone();
        Actor {
            command: id.redact.command(&id.command),
            claim: Claim::new(claim::wait_limit(id.session_timeout)),
            past_sessions: Vec::new(),
            resume: None,
            claimed: false,
            interference: Interference::default(),
            live_watch: None,
            watch_token: 0,
            watch_events,
            live_check: false,
            version_checked: false,
            wait_logged: None,
            refused: Some(refused),
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

    /// Reports a refusal to run (the caller then ends the actor): nothing of ours is in the
    /// registry, and the session closes with us.
    fn refuse(&mut self, why: String) {
        if let Some(refused) = self.refused.take() {
            let _ = refused.send(why);
        }
        if let Some(finish) = self.finish.take() {
            match finish {
                Finish::Deregister(done) | Finish::Close(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Command>,
        mut watched: mpsc::UnboundedReceiver<u64>,
    ) {
        let mut retry = Retry::new(Doubling::new(RETRY_MIN, RETRY_MAX));
        let mut probes = PlainProbes::default();
        loop {
            if self.session.is_none() {
                let resume = self.resume.clone();
                match Session::connect_resuming(
                    &self.id.zk_hosts,
                    self.id.session_timeout,
                    &self.id.zk_access,
                    resume.as_ref(),
                    &mut probes,
                )
                .await
                {
                    Ok(session) => {
                        // A server too old for the registry (3.4 answers every create with
                        // UNIMPLEMENTED) is refused like a duplicate: retrying cannot help.
                        // Asked on the first session only: a later one re-registers a running
                        // agent, which an unanswered `srvr` (up to 3 s for a blackholed server)
                        // must not hold back.
                        let checked = if std::mem::replace(&mut self.version_checked, true) {
                            Ok(crate::registry::server_version::Verdict::Unknown)
                        } else {
                            crate::registry::server_version::check(
                                &self.id.zk_hosts,
                                self.id.zk_access.tls.as_ref(),
                            )
                            .await
                        };
                        if let Err(too_old) = checked {
                            tracing::error!(agent = %self.id.id, "refusing to run: {too_old}");
                            self.refuse(format!("{}: {too_old}", self.id.id));
                            return;
                        }
                        let resumed = resume.is_some_and(|r| r.id() == session.client.session_id());
                        if resumed {
                            tracing::info!(agent = %self.id.id, session = %session.id_hex(), "connected to zookeeper again in the same session: the servers kept it, and our nodes with it");
                            self.past_sessions
                                .retain(|&s| s != session.client.session_id().0);
                        } else {
                            tracing::info!(agent = %self.id.id, session = %session.id_hex(), "connected to zookeeper");
                        }
                        self.resume = None;
                        // Wait for a foreign node at least as long as ZooKeeper keeps sessions.
                        self.claim.set_limit(claim::wait_limit(
                            session
                                .client
                                .session_timeout()
                                .max(self.id.session_timeout),
                        ));
                        self.session = Some(session);
                        self.drop_session_state();
                        retry.succeeded();
                        self.id.metrics.set_zk_state(SessionState::SyncConnected);
                        self.reregistering = self.connected_once && !resumed;
                        self.connected_once = true;
                    }
                    Err(e) if resume.is_some() && !session::no_server_answered(&e.error) => {
                        // A server answered: the session is gone (or our credentials are
                        // refused, which a new session reports). Open a new one at once.
                        tracing::info!(agent = %self.id.id, error = %e, "the previous zookeeper session is gone on the servers; opening a new one");
                        self.resume = None;
                        continue;
                    }
                    Err(e) => {
                        // While a session may be resumed, the servers give it one session
                        // timeout once they are back: ask often enough to be in time.
                        let cap = match self.resume {
                            Some(_) => resume_retry_max(self.id.session_timeout),
                            None => RETRY_MAX,
                        };
                        let delay = retry.failed().min(cap);
                        match self.acls.denied(self.id.layout.root(), &e.error) {
                            Some(why) => self.log_denied(&why, delay),
                            None => {
                                tracing::warn!(agent = %self.id.id, hosts = %self.id.zk_hosts, error = %e, retry_in = ?delay, "cannot connect to zookeeper; the child keeps running")
                            }
                        }
                        self.id.metrics.set_zk_connecting();
                        if !self.pause(&mut rx, delay).await {
                            return;
                        }
                        continue;
                    }
                }
            }

            if self.dirty || self.finish.is_some() {
                // Cleared before the round, not after it: the round itself may find more to do
                // (arming the watch finds our node deleted again meanwhile, and a watch on a
                // missing node would only fire on its creation), which must not be forgotten.
                self.dirty = false;
                match self.sync().await {
                    Ok(()) => {
                        retry.succeeded();
                        if std::mem::take(&mut self.reregistering) {
                            self.id.metrics.reregistered();
                        }
                    }
                    Err(SyncError::Wait) => {
                        self.dirty = true;
                        if !self.pause(&mut rx, CLAIM_POLL).await {
                            return;
                        }
                        continue;
                    }
                    Err(SyncError::Duplicate(d)) => {
                        tracing::error!(agent = %self.id.id, "refusing to run: {d}");
                        self.refuse(format!("{}: {d}", self.id.id));
                        return;
                    }
                    Err(SyncError::Zk(path, e)) => {
                        let delay = retry.failed();
                        match self.acls.denied(&path, &e) {
                            Some(why) => self.log_denied(&why, delay),
                            None => {
                                tracing::warn!(agent = %self.id.id, znode = %path, error = %e, "registry update failed; will retry")
                            }
                        }
                        self.dirty = true;
                        self.live_maybe = true;
                        if session_is_gone(&e) {
                            self.drop_session();
                        }
                        if !self.pause(&mut rx, delay).await {
                            return;
                        }
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
                Some(token) = watched.recv() => {
                    // Our node changed (deleted, replaced, new data): look at it.
                    if token == self.watch_token {
                        self.live_watch = None;
                        self.live_check = true;
                        self.dirty = true;
                    }
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
        if let Some(session) = self.session.take() {
            self.past_sessions.push(session.client.session_id().0);
            self.resume = Some(session.info());
        }
        self.drop_session_state();
    }

    /// Forgets what the previous session wrote.
    fn drop_session_state(&mut self) {
        self.live_written = None;
        self.health_written = None;
        self.dirs_ready = false;
        self.live_maybe = true;
        self.dirty = true;
        self.marker_stale = true;
        self.claimed = false;
        self.live_watch = None;
        self.live_check = false;
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
    async fn sync(&mut self) -> Result<(), SyncError> {
        let Some(session) = self.session.as_ref() else {
            return Err(SyncError::Zk(
                self.id.zk_hosts.clone(),
                ZkError::ConnectionLoss,
            ));
        };
        let client = session.client.clone();
        let session_id = session.client.session_id().0;
        if matches!(self.finish, Some(Finish::Deregister(_))) {
            // Never remove the registration of another live watchdog with our id.
            match self.inspect_live(&client, session_id).await {
                Ok(_) => {}
                Err(SyncError::Wait | SyncError::Duplicate(_)) => {
                    tracing::warn!(agent = %self.id.id, "planned stop: the liveness node belongs to another session, so the marker is left to it");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            self.live_watch = None;
            remove_agent(&client, &self.id.layout, &self.id.id)
                .await
                .map_err(|e| match e {
                    RegistryError::Zk { path, source } => SyncError::Zk(path, source),
                    other => SyncError::Zk(
                        self.marker_path.clone(),
                        ZkError::UnexpectedError(other.to_string()),
                    ),
                })?;
            tracing::info!(agent = %self.id.id, "deregistered: marker and liveness node removed");
            return Ok(());
        }
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

        // What to write next is decided by `next::next` (the order is the contract: the
        // liveness path is judged before anything is written, the marker before the node).
        let wanted = self
            .desired
            .live
            .as_ref()
            .map(|l| carried.generation + l.generation);
        let mut inspected = false;
        for _ in 0..next::MAX_STEPS {
            let known = Known {
                claimed: self.claimed,
                check: self.live_check,
                inspected,
                marker_stale: self.marker_stale,
                live_written: self.live_written,
                live_maybe: self.live_maybe,
                health_current: self.health_written.as_ref() == Some(&self.desired.health),
            };
            let Some(step) = next::next(&known, wanted) else {
                return Ok(());
            };
            match step {
                Step::Inspect => {
                    let believed = self.live_written.is_some();
                    let found = self.inspect_live(&client, session_id).await;
                    self.live_check = false;
                    inspected = true;
                    match found? {
                        AtPath::Free => {
                            if believed && wanted.is_some() {
                                self.interfered(None);
                            }
                            self.live_written = None;
                            self.health_written = None;
                            self.live_maybe = false;
                        }
                        AtPath::Ours {
                            generation, health, ..
                        } => {
                            // What we wrote ourselves we know better than its JSON (timestamps
                            // there are cut to milliseconds); a node we did not know about (a
                            // create whose answer was lost) shows what it holds.
                            if generation != self.live_written {
                                self.live_written = generation;
                                self.health_written = health;
                            }
                            self.live_maybe = true;
                            if self.live_watch.is_none() {
                                self.arm_watch(&client, session_id).await?;
                            }
                        }
                    }
                    self.claimed = true;
                }
                Step::WriteMarker => {
                    self.write_marker(&client, carried, session_id).await?;
                    self.marker_stale = false;
                }
                Step::DeleteOurs => {
                    self.delete_ours(&client, session_id).await?;
                    // Gone: should a create that follows lose its answer, the retry must not
                    // delete the new node as an old one.
                    self.live_written = None;
                    self.health_written = None;
                    self.live_maybe = false;
                }
                Step::Create(generation) => {
                    let Some(live) = self.desired.live.clone() else {
                        return Ok(());
                    };
                    self.live_maybe = true;
                    let record = self.liveness(&live, generation, session_id);
                    self.create_live(&client, session_id, generation, &encode(&record))
                        .await?;
                    self.live_written = Some(generation);
                    self.health_written = Some(record.health);
                    self.claim.held();
                    self.arm_watch(&client, session_id).await?;
                }
                Step::SetHealth => {
                    let (Some(live), Some(generation)) = (self.desired.live.clone(), wanted) else {
                        return Ok(());
                    };
                    let record = self.liveness(&live, generation, session_id);
                    match client
                        .set_data(&self.live_path, &encode(&record), None)
                        .await
                    {
                        Ok(_) => self.health_written = Some(record.health),
                        // Someone removed our node: look again on the next round (it is
                        // re-created, or someone else's is judged).
                        Err(ZkError::NoNode) => {
                            self.live_check = true;
                            self.live_written = None;
                            self.interfered(None);
                            return Err(SyncError::Zk(self.live_path.clone(), ZkError::NoNode));
                        }
                        Err(e) => return Err(SyncError::Zk(self.live_path.clone(), e)),
                    }
                }
            }
        }
        Err(SyncError::Zk(
            self.live_path.clone(),
            ZkError::UnexpectedError("the registry did not settle within one round".to_string()),
        ))
    }

    /// Someone else deleted or took over our liveness node (`owner`: the session now holding
    /// it). Counted; from the second time on it is an error in the log and a `conflict` in the
    /// marker. The registration is written again in full.
    fn interfered(&mut self, owner: Option<i64>) {
        let report = self.interference.record(owner);
        self.marker_stale = true;
        match owner {
            None => {
                tracing::warn!(agent = %self.id.id, znode = %self.live_path, times = self.interference.count, "our liveness node was deleted by someone else; creating it again")
            }
            Some(o) => {
                tracing::warn!(agent = %self.id.id, znode = %self.live_path, owner = %session_hex(o), times = self.interference.count, "our liveness node was replaced by another session")
            }
        }
        if report {
            if let Some(text) = self.interference.report(self.id.id.as_str()) {
                tracing::error!(agent = %self.id.id, "{text}");
            }
        }
    }

    /// Sets a watch on our liveness node, so that a deletion or take-over by someone else is
    /// noticed at once. A node that is already not ours is looked at on the next sync.
    async fn arm_watch(&mut self, client: &Client, session_id: i64) -> Result<(), SyncError> {
        let (stat, watcher) = client
            .check_and_watch_stat(&self.live_path)
            .await
            .map_err(|e| SyncError::Zk(self.live_path.clone(), e))?;
        if stat.is_none_or(|s| s.ephemeral_owner != session_id) {
            self.live_check = true;
            self.dirty = true;
        }
        self.watch_token += 1;
        let token = self.watch_token;
        let events = self.watch_events.clone();
        self.live_watch = Some(LiveWatch {
            task: tokio::spawn(async move {
                let event: WatchedEvent = watcher.changed().await;
                // Session events are the session watcher's business.
                if event.event_type != EventType::Session {
                    let _ = events.send(token);
                }
            }),
        });
        Ok(())
    }

    /// What is at the liveness path, with a foreign node dealt with: a stale one is deleted
    /// (then the path is free), one that may still expire is [`SyncError::Wait`], a live
    /// duplicate [`SyncError::Duplicate`].
    async fn inspect_live(
        &mut self,
        client: &Client,
        session_id: i64,
    ) -> Result<AtPath, SyncError> {
        let at = |path: &str| {
            let path = path.to_string();
            move |e| SyncError::Zk(path, e)
        };
        let (data, stat) = match client.get_data(&self.live_path).await {
            Ok(found) => found,
            Err(ZkError::NoNode) => {
                self.claim.clear();
                self.wait_logged = None;
                return Ok(AtPath::Free);
            }
            Err(e) => return Err(at(&self.live_path)(e)),
        };
        let record = decode::<Liveness>(&self.live_path, &data).ok();
        if stat.ephemeral_owner == session_id {
            self.claim.clear();
            return Ok(AtPath::Ours {
                generation: record.as_ref().map(|r| r.generation),
                health: record.map(|r| r.health),
                version: stat.version,
            });
        }
        if self.live_written.is_some() {
            self.interfered(Some(stat.ephemeral_owner));
            self.live_written = None;
            self.health_written = None;
        }
        // The host is in the marker, when the same session wrote it.
        let owner_hex = session_hex(stat.ephemeral_owner);
        let host = match client.get_data(&self.marker_path).await {
            Ok((data, _)) => decode::<Marker>(&self.marker_path, &data)
                .ok()
                .filter(|m| m.session_id == owner_hex)
                .map(|m| m.host),
            Err(ZkError::NoNode) => None,
            Err(e) => return Err(at(&self.marker_path)(e)),
        };
        let pid = record.as_ref().map(|r| r.pid);
        let found = Found {
            owner: stat.ephemeral_owner,
            pid_is_watchdog: host.as_deref() == Some(self.id.host.as_str())
                && pid.is_some_and(pid_is_watchdog),
            host,
            pid,
        };
        let me = Me {
            session: session_id,
            past_sessions: &self.past_sessions,
            host: &self.id.host,
            pid: std::process::id(),
        };
        match self.claim.judge(&found, me, Instant::now()) {
            Verdict::Ours => Ok(AtPath::Ours {
                generation: record.as_ref().map(|r| r.generation),
                health: record.map(|r| r.health),
                version: stat.version,
            }),
            Verdict::Stale => {
                tracing::warn!(
                    agent = %self.id.id,
                    znode = %self.live_path,
                    owner = %owner_hex,
                    host = ?found.host,
                    pid = ?found.pid,
                    "replacing a liveness node left by an earlier instance of this watchdog"
                );
                match client.delete(&self.live_path, Some(stat.version)).await {
                    Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => {}
                    Err(e) => return Err(at(&self.live_path)(e)),
                }
                Ok(AtPath::Free)
            }
            Verdict::Wait => {
                if self.wait_logged != Some(stat.ephemeral_owner) {
                    self.wait_logged = Some(stat.ephemeral_owner);
                    tracing::warn!(
                        agent = %self.id.id,
                        znode = %self.live_path,
                        owner = %owner_hex,
                        host = ?found.host,
                        pid = ?found.pid,
                        "the liveness node belongs to another session; waiting for it to expire before registering (another live zkwatchdog with this id is refused)"
                    );
                }
                Err(SyncError::Wait)
            }
            Verdict::Duplicate(d) => Err(SyncError::Duplicate(d)),
        }
    }

    /// Deletes our liveness node, if it is there and ours; a node of another session is left
    /// alone (and looked at on the next sync).
    async fn delete_ours(&mut self, client: &Client, session_id: i64) -> Result<(), SyncError> {
        self.live_watch = None;
        let fail = |e| SyncError::Zk(self.live_path.clone(), e);
        let Some(stat) = client.check_stat(&self.live_path).await.map_err(fail)? else {
            return Ok(());
        };
        if stat.ephemeral_owner != session_id {
            self.live_check = true;
            return Ok(());
        }
        match client.delete(&self.live_path, Some(stat.version)).await {
            Ok(()) | Err(ZkError::NoNode) => Ok(()),
            Err(e) => Err(fail(e)),
        }
    }

    /// The liveness record of the current child, with its current health.
    fn liveness(&self, live: &LiveDesired, generation: u64, session_id: i64) -> Liveness {
        Liveness {
            v: RECORD_VERSION,
            pid: std::process::id(),
            child_pid: live.child_pid,
            generation,
            started_at: live.started_at,
            session_id: session_hex(session_id),
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

    /// Creates the ephemeral liveness node of `generation`. A node in the way is judged (see
    /// [`inspect_live`](Self::inspect_live)): one of our own session with this generation is a
    /// create that succeeded but whose answer was lost, which is success (deleting it would
    /// show the agent as gone); one of ours with another generation is replaced.
    async fn create_live(
        &mut self,
        client: &Client,
        session_id: i64,
        generation: u64,
        data: &[u8],
    ) -> Result<(), SyncError> {
        let fail = |path: &str| {
            let path = path.to_string();
            move |e| SyncError::Zk(path, e)
        };
        for _ in 0..3 {
            let created = {
                let options = CreateMode::Ephemeral.with_acls(self.acls.node());
                client.create(&self.live_path, data, &options).await
            };
            match created {
                Ok(_) => return Ok(()),
                Err(ZkError::NodeExists) => match self.inspect_live(client, session_id).await? {
                    AtPath::Free => continue,
                    AtPath::Ours {
                        generation: found,
                        version,
                        ..
                    } if found == Some(generation) => {
                        tracing::debug!(agent = %self.id.id, znode = %self.live_path, "the liveness node exists already, created by this session: the answer to our create was lost");
                        // Same generation; make sure it carries the newest health.
                        return match client.set_data(&self.live_path, data, Some(version)).await {
                            Ok(_) | Err(ZkError::BadVersion) => Ok(()),
                            Err(e) => Err(fail(&self.live_path)(e)),
                        };
                    }
                    AtPath::Ours { version, .. } => {
                        match client.delete(&self.live_path, Some(version)).await {
                            Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => continue,
                            Err(e) => return Err(fail(&self.live_path)(e)),
                        }
                    }
                },
                Err(e) => return Err(fail(&self.live_path)(e)),
            }
        }
        Err(fail(&self.live_path)(ZkError::NodeExists))
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
        let redact = &self.id.redact;
        let last_exit = d.last_exit.clone().map(|mut e| {
            e.generation += carried.generation;
            e.stderr_tail = redact.lines(&e.stderr_tail);
            e.probe_restart = e.probe_restart.map(|t| redact.text(&t));
            e.daemonized = e.daemonized.map(|t| redact.text(&t));
            e
        });
        Marker {
            v: RECORD_VERSION,
            id: self.id.id.to_string(),
            name: self.id.name.clone(),
            kind: self.id.kind,
            host: self.id.host.clone(),
            command: self.command.clone(),
            labels: self.id.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            registered_at: carried.registered_at,
            updated_at: Timestamp::now(),
            state: d.state,
            generation: carried.generation + d.generation,
            restarts: carried.restarts + d.restarts,
            last_exit,
            session_id: session_hex(session_id),
            conflict: self.interference.report(self.id.id.as_str()),
        }
    }
}

/// Whether `pid` is a running zkwatchdog on this machine (its command name says so).
fn pid_is_watchdog(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == "zkwatchdog")
}
