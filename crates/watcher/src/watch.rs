//! The watcher's driver: sessions, the registry watch, reconciliation, election,
//! and the loop that feeds the [`Tracker`], the [`Book`] and the [`Dispatcher`].
//!
//! One task owns everything; it never blocks on a send (sends run in their own tasks and report
//! back). While disconnected from ZooKeeper it concludes nothing about agents; after
//! `zk-loss-alert-after` it reports its own loss through the channels directly.
//!
//! Leadership is decided by [`Leadership`] (pure): winning the election starts a take-over
//! that needs a complete reconcile of the session and is retried from scratch when it fails;
//! only a leader that took over writes incidents, and each round of sends first confirms in
//! ZooKeeper that our election node still exists and is our session's; the sends go on only
//! under that confirmation's [lease](crate::lease). On shutdown, sends in
//! flight are waited for (bounded) and recorded before the session closes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};
use zkwatchdog::backoff::{Doubling, Retry};
use zkwatchdog::registry::server_version::WatchMode;
use zkwatchdog::registry::session::PlainProbes;
use zkwatchdog::registry::{
    encode, ensure_dirs, AgentId, DeniedLog, Layout, NodeAcls, Session, Timestamp,
};
use zookeeper_client::{Client, Error as ZkError, EventType, SessionState, WatchedEvent};

use crate::book::{Book, Rules, Write};
use crate::config::Config;
use crate::dispatch::{Dispatcher, Sent};
use crate::election::{self, Candidate, Standing};
use crate::handled::{self, Handled};
use crate::leadership::{Event as Lead, Leadership, Role, Step};
use crate::lease::{Fence, Lease};
use crate::metrics::{IncidentLedger, WatcherMetrics};
use crate::notice::{Notice, Origin, ZkTrouble};
use crate::notify::Channel;
use crate::read;
use crate::receipt;
use crate::registry_watch::RegistryWatch;
use crate::standby_edges::{self, StandbyEdges};
use crate::takeover;
use crate::tracker::{Condition, Observation, Tracker, Verdict};
use crate::zkloss::ZkLoss;

/// Registry events handled in a row before the loop turns to its other work (the next batch
/// of a reconcile, sends, timers).
const EVENT_BURST: usize = 1024;

/// The agents-by-condition gauge is refreshed at most this often.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// A session that lasted this long had worked: when it ends, a new one is opened at once.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// A refusal of the watcher's credentials is logged at error level at most this often.
const DENIED_LOG_EVERY: Duration = Duration::from_secs(60);

/// On shutdown, sends in flight are waited for (and recorded) at most this long.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// After a leadership confirmation that could not be made (no answer), sends wait this long.
const CONFIRM_RETRY: Duration = Duration::from_millis(500);

/// At most this many accepted sends wait for a take-over to record them.
const UNRECORDED_MAX: usize = 1024;

/// A future that completes with a watch event (election predecessor, our own node).
type NodeWatch = std::pin::Pin<Box<dyn Future<Output = WatchedEvent> + Send>>;

/// Runs the watcher until `shutdown` completes, recording into `metrics`, following the
/// registry with watches of `mode` (what the server's release allows).
pub async fn run(
    config: Config,
    channels: Vec<Channel>,
    metrics: std::sync::Arc<WatcherMetrics>,
    mode: WatchMode,
    shutdown: impl Future<Output = ()>,
) {
    let zk_loss = ZkLoss::starting(
        std::time::Instant::now(),
        Timestamp::now(),
        config.zk_loss_alert_after,
    );
    let origin = Origin {
        zk_hosts: config.zk_hosts.clone(),
        root: config.layout.root().to_string(),
        watcher_host: host(),
    };
    let (dispatcher, results) = Dispatcher::new(
        channels,
        origin,
        config.retry_initial,
        config.retry_max,
        metrics.clone(),
    );
    let rules = Rules {
        group_wait: config.group_wait,
        repeat_interval: config.repeat_interval,
        channels: dispatcher.names(),
    };
    let settle = crate::tracker::settle_time(config.session_timeout);
    let standby_edges = StandbyEdges::new(config.session_timeout);
    let mut w = Watcher {
        layout: config.layout.clone(),
        acls: NodeAcls::new(&config.zk_access),
        denied_log: DeniedLog::new(DENIED_LOG_EVERY),
        tracker: Tracker::new(settle),
        book: Book::new(rules),
        dispatcher,
        results,
        lead: Leadership::new(),
        token: election::new_token(),
        own_node: None,
        confirm_hold: None,
        handled: Handled::new(Timestamp::now()),
        handled_written: None,
        handled_dirty: false,
        unrecorded: Vec::new(),
        config,
        zk_loss,
        trouble: ZkTrouble::Unreachable(None),
        standby_edges,
        metrics,
        ledger: IncidentLedger::default(),
        pass: None,
        reads: read::Reads::Multi,
        mode,
        systemd: zkwatchdog::systemd::Liveness::from_env(),
    };
    // Ready once the loop runs: without ZooKeeper too, the watcher works (it reports the loss).
    zkwatchdog::systemd::ready("watching the registry");
    tokio::pin!(shutdown);
    let mut probes = PlainProbes::default();
    let mut retry = Retry::new(Doubling::new(
        Duration::from_millis(100),
        Duration::from_secs(5),
    ));
    loop {
        w.metrics.set_zk_connecting();
        w.metrics.set_leader(false);
        let session = tokio::select! {
            _ = &mut shutdown => return,
            s = Session::connect_resuming(&w.config.zk_hosts, w.config.session_timeout, &w.config.zk_access, None, &mut probes) => s,
        };
        match session {
            Ok(session) => {
                let began = Instant::now();
                let end = w.session(session, &mut shutdown).await;
                if matches!(end, SessionEnd::Shutdown) {
                    return;
                }
                // Either way the watcher is blind now, as when disconnected.
                w.disconnected();
                w.check_zk_loss();
                // After a session that worked for a while, reconnect at once. One that was
                // refused (ACLs), or that ended right after it began (its set-up failed: a chroot
                // that does not exist, a server without persistent watches; or AuthFailed), would
                // fail the same way again: back off, as when no server answers.
                if matches!(end, SessionEnd::Lost) && began.elapsed() >= STABLE_SESSION {
                    retry.succeeded();
                    continue;
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = w.pump_sends_while_down(retry.failed()) => {}
                }
            }
            Err(e) => {
                w.trouble = if let Some(why) = w.acls.denied(w.layout.root(), &e.error) {
                    w.log_denied(&why);
                    ZkTrouble::Refused(why)
                } else if let Some(diagnosis) = &e.diagnosis {
                    // A TLS problem is a configuration error to fix, not an outage to wait out.
                    warn!(hosts = %w.config.zk_hosts, error = %e, "cannot connect to zookeeper");
                    ZkTrouble::Tls(diagnosis.clone())
                } else {
                    debug!(error = %e, "zookeeper not reachable");
                    ZkTrouble::Unreachable(Some(e.error.to_string()))
                };
                w.disconnected();
                w.check_zk_loss();
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = w.pump_sends_while_down(retry.failed()) => {}
                }
            }
        }
    }
}

enum SessionEnd {
    Shutdown,
    Lost,
    /// ZooKeeper refused this watcher's credentials while setting up the session.
    Refused,
}

struct Watcher {
    config: Config,
    layout: Layout,
    /// The ACLs of the nodes this watcher creates (from `[zk-auth]`).
    acls: NodeAcls,
    /// Rate limit of the error-level log of refusals of our credentials.
    denied_log: DeniedLog,
    tracker: Tracker,
    book: Book,
    dispatcher: Dispatcher,
    results: tokio::sync::mpsc::Receiver<Sent>,
    /// Standby, elected (taking over), leading, or deposed.
    lead: Leadership,
    /// Drawn once per process, written into our election node (see [`election`]).
    token: String,
    /// Our election node in the current session.
    own_node: Option<Candidate>,
    /// Sends wait until then after a confirmation that got no answer.
    confirm_hold: Option<Instant>,
    /// What this leader has handled (`<root>/watchers/handled`, see [`handled`]).
    handled: Handled,
    /// When the handled record was last written (`None`: not yet by this leader).
    handled_written: Option<Instant>,
    /// The record holds exits not written yet. It must be written before an incident it covers
    /// is deleted (while the incident exists, the incident itself shows the exit was handled).
    handled_dirty: bool,
    /// Sends a channel accepted whose delivery could not be recorded (not leading, or the
    /// write failed): the next take-over of this replica records them before anything is sent.
    unrecorded: Vec<(String, Vec<crate::notice::NoticeKey>)>,
    /// When the watcher's own loss of ZooKeeper (and its return) is reported.
    zk_loss: ZkLoss,
    /// The last reason this watcher could not work with ZooKeeper (what a loss report names).
    trouble: ZkTrouble,
    /// Edges seen while not leading that no leader has handled yet (see [`StandbyEdges`]).
    standby_edges: StandbyEdges,
    metrics: std::sync::Arc<WatcherMetrics>,
    /// What the incident counters compare each write with.
    ledger: IncidentLedger,
    /// The reconcile in progress, read [`read::READ_BATCH`] agents at a time between the
    /// loop's other work (always of the current connection: a disconnection drops it).
    pass: Option<Pass>,
    /// Whether the server takes multi-reads (until it says it does not).
    reads: read::Reads,
    /// How the registry is watched (see [`RegistryWatch`]): one-shot from the first server
    /// found without persistent watches on.
    mode: WatchMode,
    /// systemd's `WatchdogSec`: fed from the session loop and between connection attempts.
    systemd: zkwatchdog::systemd::Liveness,
}

/// A reconcile in progress: the agents still to read.
struct Pass {
    queue: std::collections::VecDeque<AgentId>,
    agents: usize,
    started: Instant,
}

/// Writes a receipt for each accepted send whose delivery is not recorded ([`receipt`]).
async fn hand_over(
    client: &Client,
    layout: &Layout,
    acls: &NodeAcls,
    unrecorded: &[(String, Vec<crate::notice::NoticeKey>)],
) -> Result<(), ZkError> {
    if unrecorded.is_empty() {
        return Ok(());
    }
    let options = zookeeper_client::CreateMode::PersistentSequential.with_acls(acls.node());
    for (channel, items) in unrecorded {
        let data = encode(&receipt::Receipt::new(channel, items));
        client
            .create(&receipt::prefix(layout), &data, &options)
            .await?;
    }
    info!(
        sends = unrecorded.len(),
        "handed over accepted sends this replica could not record, for whoever leads"
    );
    Ok(())
}

/// Deletes applied receipts (and garbage ones, reported when read); one that cannot be deleted
/// is applied again later, which changes nothing.
async fn delete_receipts(client: &Client, receipts: &[(String, Option<receipt::Receipt>)]) {
    for (path, _) in receipts {
        match client.delete(path, None).await {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(e) => warn!(error = %e, znode = %path, "deleting a receipt failed"),
        }
    }
}

/// The next thing the session loop reacts to.
enum Wake {
    Node(WatchedEvent),
    State(SessionState),
    Election,
    OwnNode,
    Sent(Sent),
    Tick,
    Shutdown,
}

impl Watcher {
    async fn session(
        &mut self,
        session: Session,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> SessionEnd {
        // Leadership never carries over from an earlier session: this one must win it again
        // (before then, nothing is written and nothing is sent).
        self.lead
            .handle(Lead::SessionStarted, std::time::Instant::now());
        self.own_node = None;
        self.pass = None;
        let Session { client, mut states } = session;
        info!(session = %zkwatchdog::registry::session_hex(client.session_id().0), "connected to zookeeper");
        let setup = async {
            // Only the directories the watcher writes into: `agents` and `live` are the
            // watchdogs' (and may not exist yet; reading treats them as empty).
            let dirs = [
                self.layout.incidents_dir(),
                self.layout.silences_dir(),
                self.layout.watchers_dir(),
                receipt::dir(&self.layout),
            ];
            ensure_dirs(&client, &self.layout, &dirs, &self.acls).await?;
            let root = self.layout.root();
            let at = |path: &str| {
                let path = path.to_string();
                move |e| (path, e)
            };
            // Before joining the election (see `receipt`): removing our own stale node there may
            // make the other replica leader at once.
            hand_over(&client, &self.layout, &self.acls, &self.unrecorded)
                .await
                .map_err(at(&receipt::prefix(&self.layout)))?;
            let watch = RegistryWatch::arm(&client, &self.layout, self.mode)
                .await
                .map_err(at(root))?;
            let me = election::node_data(&host(), std::process::id(), &self.token);
            let watchers = self.layout.watchers_dir();
            let candidate = Candidate::join(&client, &watchers, &me, &self.token, &self.acls)
                .await
                .map_err(at(&format!("{watchers}/n-")))?;
            Ok::<_, (String, ZkError)>((watch, candidate))
        };
        let (mut watch, candidate) = match setup.await {
            Ok((watch, candidate)) => {
                self.mode = watch.mode();
                self.unrecorded.clear();
                (watch, candidate)
            }
            Err((path, e)) => {
                close(client).await;
                if let Some(why) = self.acls.denied(&path, &e) {
                    self.log_denied(&why);
                    self.trouble = ZkTrouble::Refused(why);
                    return SessionEnd::Refused;
                }
                warn!(error = %e, znode = %path, "zookeeper session setup failed; reconnecting");
                self.trouble =
                    ZkTrouble::Unreachable(Some(format!("session setup failed on {path}: {e}")));
                return SessionEnd::Lost;
            }
        };
        self.connected();
        self.metrics.set_zk_state(SessionState::SyncConnected);
        let mut election = None;
        self.own_node = Some(candidate.clone());
        self.reconcile_step(&client).await;
        match self.stand(&client, &candidate).await {
            Ok(w) => election = w,
            Err(e) => warn!(error = %e, "election check failed"),
        }
        let mut own = self.watch_own(&client, &candidate).await;
        let mut next_reconcile = Instant::now() + self.config.reconcile_interval;
        let mut metrics_at = Instant::now();
        let mut connected = true;
        loop {
            if *self.lead.role() == Role::Deposed {
                warn!(node = %candidate.path(), "our election node is gone or not ours: leaving this session and joining again");
                let _ = client.delete(&candidate.path(), None).await;
                drop(watch); // in one-shot mode it holds a handle of the client
                close(client).await;
                self.lead = Leadership::new();
                self.trouble = ZkTrouble::Unreachable(Some(
                    "the election node of this watcher's session was gone".to_string(),
                ));
                self.disconnected();
                return SessionEnd::Lost;
            }
            self.metrics.set_leader(self.lead.leading());
            // Counting every agent's condition is O(agents): not at every event.
            if metrics_at <= Instant::now() {
                metrics_at = Instant::now() + METRICS_EVERY;
                self.metrics
                    .set_agents(self.tracker.agents().map(|(_, c, _, _)| c));
            }
            self.systemd.feed(std::time::Instant::now());
            let wake_at = self.wake_at(connected).min(next_reconcile);
            let wake = tokio::select! {
                _ = shutdown.as_mut() => Wake::Shutdown,
                e = watch.changed() => Wake::Node(e),
                s = states.changed() => Wake::State(s),
                _ = async { match election.as_mut() { Some(w) => { w.await; } None => std::future::pending::<()>().await } } => Wake::Election,
                _ = async { match own.as_mut() { Some(w) => { w.await; } None => std::future::pending::<()>().await } } => Wake::OwnNode,
                Some(sent) = self.results.recv() => Wake::Sent(sent),
                _ = sleep_until(wake_at) => Wake::Tick,
            };
            match wake {
                Wake::Shutdown => {
                    info!("shutting down");
                    self.finish_sends(&client).await;
                    if self.lead.leading() {
                        if let Err(e) = self.write_handled(&client).await {
                            warn!(error = %e, "recording what this leader handled failed");
                        }
                    }
                    if let Err(e) =
                        hand_over(&client, &self.layout, &self.acls, &self.unrecorded).await
                    {
                        warn!(error = %e, sends = self.unrecorded.len(), "handing over accepted sends that are not recorded failed (the next leader sends them again)");
                    }
                    self.lead = Leadership::new();
                    let _ = client.delete(&candidate.path(), None).await;
                    drop(watch);
                    close(client).await;
                    return SessionEnd::Shutdown;
                }
                Wake::Node(event) => {
                    // This event and those already queued behind it (at most EVENT_BURST), before
                    // the next batch of a reconcile: a crash raises several events in a row.
                    let mut next = Some(event);
                    let mut handled = 0;
                    let mut agents = Vec::new();
                    while let Some(event) = next.take() {
                        if event.event_type == EventType::Session {
                            if is_terminal(event.session_state) {
                                warn!(state = ?event.session_state, "zookeeper session ended");
                                self.lead = Leadership::new();
                                self.session_ended(event.session_state);
                                self.disconnected();
                                return SessionEnd::Lost;
                            }
                            break;
                        }
                        if !connected {
                            break;
                        }
                        if let Err(e) = self.on_event(&client, &event, &mut agents).await {
                            warn!(error = %e, path = %event.path, "handling a registry event failed");
                        }
                        handled += 1;
                        if handled < EVENT_BURST {
                            next = watch.changed().now_or_never();
                        }
                    }
                    if let Err(e) = self.observe_all(&client, &agents).await {
                        warn!(error = %e, agents = agents.len(), "reading agents after registry events failed");
                    }
                }
                Wake::State(state) => {
                    self.metrics.set_zk_state(state);
                    match state {
                        SessionState::Disconnected => {
                            warn!("disconnected from zookeeper; drawing no conclusions until reconnected");
                            connected = false;
                            self.pass = None;
                            self.lead
                                .handle(Lead::Disconnected, std::time::Instant::now());
                            self.trouble = ZkTrouble::Unreachable(Some(
                                "the connection to the server was lost; the client is reconnecting"
                                    .to_string(),
                            ));
                            self.disconnected();
                        }
                        SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                            // The state watcher reports changes only, and a short disconnection can
                            // come and go between two polls: any "connected" it reports follows a
                            // disconnection, seen or not, so the watch is re-added either way.
                            info!("reconnected to zookeeper; re-adding the watch and reconciling");
                            connected = true;
                            self.connected();
                            // The client does not re-establish persistent watches: add it again
                            // (one-shot ones it re-sends, but a listing is due after a gap).
                            match RegistryWatch::arm(&client, &self.layout, self.mode).await {
                                Ok(w) => {
                                    self.mode = w.mode();
                                    watch = w;
                                }
                                Err(e) => {
                                    warn!(error = %e, "re-adding the watch failed; starting a new session");
                                    self.trouble = ZkTrouble::Unreachable(Some(format!(
                                        "re-adding the watch failed: {e}"
                                    )));
                                    drop(watch);
                                    close(client).await;
                                    return SessionEnd::Lost;
                                }
                            }
                            self.reconcile_step(&client).await;
                            match self.stand(&client, &candidate).await {
                                Ok(w) => election = w,
                                Err(e) => warn!(error = %e, "election check failed"),
                            }
                            own = self.watch_own(&client, &candidate).await;
                        }
                        s if is_terminal(s) => {
                            warn!(state = ?s, "zookeeper session ended; starting a new one");
                            self.lead = Leadership::new();
                            self.session_ended(s);
                            self.disconnected();
                            return SessionEnd::Lost;
                        }
                        _ => {}
                    }
                }
                Wake::Election => {
                    election = None;
                    if connected {
                        match self.stand(&client, &candidate).await {
                            Ok(w) => election = w,
                            Err(e) => warn!(error = %e, "election check failed"),
                        }
                    }
                }
                Wake::OwnNode => {
                    own = None;
                    if connected {
                        own = self.watch_own(&client, &candidate).await;
                    }
                }
                Wake::Sent(sent) => self.on_sent(Some(&client), sent).await,
                Wake::Tick => {}
            }
            // Timed work runs whenever it is due, not only when the timer wins the select!: a
            // steady stream of registry events would otherwise starve it (and every send).
            if Instant::now() < wake_at {
                continue;
            }
            if !connected {
                self.check_zk_loss();
                continue;
            }
            if Instant::now() >= next_reconcile && self.pass.is_none() {
                next_reconcile = Instant::now() + self.config.reconcile_interval;
                self.reconcile_step(&client).await;
            }
            if self.pass.is_some() {
                self.pass_step(&client).await;
            }
            if let Err(e) = self.settle(&client).await {
                warn!(error = %e, "re-reading settling agents failed");
            }
            // A take-over that failed is retried once its backoff is over.
            let step = self.lead.tick(std::time::Instant::now());
            self.drive(&client, step).await;
            if self.lead.leading() && self.handled_due() {
                if let Err(e) = self.write_handled(&client).await {
                    warn!(error = %e, "recording what this leader handled failed");
                }
            }
            self.dispatch(&client).await;
        }
    }

    /// Logs a refusal of our credentials: at error level when first seen and then at most every
    /// [`DENIED_LOG_EVERY`], in between at debug level. The watcher keeps retrying.
    fn log_denied(&mut self, why: &str) {
        if self.denied_log.loud(std::time::Instant::now()) {
            error!("{why}; retrying");
        } else {
            debug!("{why}; retrying");
        }
    }

    /// Determines leadership (and, elected, takes over); returns the predecessor watch of a
    /// follower.
    async fn stand(
        &mut self,
        client: &Client,
        candidate: &Candidate,
    ) -> Result<Option<NodeWatch>, ZkError> {
        let now = std::time::Instant::now();
        match candidate.check(client).await {
            Ok(Standing::Leader) => {
                let step = self.lead.handle(Lead::Lowest, now);
                self.drive(client, step).await;
                Ok(None)
            }
            Ok(Standing::Follower { predecessor, watch }) => {
                if self.lead.handle(Lead::NotLowest, now) == Step::SteppedDown {
                    warn!("no longer leading");
                }
                info!(node = %candidate.path(), watching = %predecessor, "standing by");
                Ok(Some(Box::pin(watch.changed())))
            }
            Err(ZkError::NoNode) => {
                self.lead.handle(Lead::Unconfirmed, now);
                Err(ZkError::NoNode)
            }
            Err(e) => Err(e),
        }
    }

    /// Watches our own election node; a node gone or not ours deposes us.
    async fn watch_own(&mut self, client: &Client, candidate: &Candidate) -> Option<NodeWatch> {
        match candidate.watch_own(client).await {
            Ok(Some(watch)) => Some(Box::pin(watch.changed())),
            Ok(None) => {
                self.lead
                    .handle(Lead::Unconfirmed, std::time::Instant::now());
                None
            }
            Err(e) => {
                debug!(error = %e, "cannot watch our election node now");
                None
            }
        }
    }

    /// Carries out what [`Leadership`] asks for, until it asks for nothing more (bounded: each
    /// round either succeeds or schedules a retry).
    async fn drive(&mut self, client: &Client, mut step: Step) {
        for _ in 0..4 {
            let now = std::time::Instant::now();
            step = match step {
                Step::Nothing | Step::Rejoin => return,
                Step::SteppedDown => {
                    warn!("no longer leading");
                    return;
                }
                // The pass in progress reports when it is complete.
                Step::Reconcile if self.pass.is_some() => return,
                Step::Reconcile => {
                    info!("elected; reading every agent before taking over");
                    match self.start_pass(client).await {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(error = %e, "reconciliation failed; the take-over waits for a complete one");
                            self.lead.handle(Lead::Reconciled { complete: false }, now)
                        }
                    }
                }
                Step::TakeOver => match self.take_over(client).await {
                    Ok(()) => {
                        let step = self.lead.handle(Lead::TakeOverDone, now);
                        let node = self
                            .own_node
                            .as_ref()
                            .map(Candidate::path)
                            .unwrap_or_default();
                        info!(node = %node, "leading: this watcher writes incidents and sends notifications");
                        step
                    }
                    Err(e) => {
                        let step = self.lead.handle(Lead::TakeOverFailed, now);
                        let retry_in = self
                            .lead
                            .due()
                            .map(|at| at.saturating_duration_since(now))
                            .unwrap_or_default();
                        warn!(error = %e, retry_in = ?retry_in, "take-over failed; nothing written or sent until it is done again from scratch");
                        step
                    }
                },
            };
        }
    }

    /// Starts a reconcile (a pass over every agent, see [`Self::pass_step`]); a failure to list
    /// the agents tells [`Leadership`] at once that the reconcile is not complete.
    async fn reconcile_step(&mut self, client: &Client) {
        if let Err(e) = self.start_pass(client).await {
            warn!(error = %e, "reconciliation failed");
            let step = self.lead.handle(
                Lead::Reconciled { complete: false },
                std::time::Instant::now(),
            );
            self.drive(client, step).await;
        }
    }

    /// Lists every agent (markers, live nodes, and those the tracker knows, so that deleted
    /// ones are seen gone) into a new pass.
    async fn start_pass(&mut self, client: &Client) -> Result<(), ZkError> {
        let mut ids: BTreeSet<AgentId> = read::ids(client, &self.layout.agents_dir())
            .await?
            .into_iter()
            .collect();
        ids.extend(read::ids(client, &self.layout.live_dir()).await?);
        for known in self.tracker.ids() {
            if let Ok(id) = AgentId::new(known) {
                ids.insert(id);
            }
        }
        debug!(agents = ids.len(), "reconciling: reading every agent");
        self.pass = Some(Pass {
            agents: ids.len(),
            queue: ids.into_iter().collect(),
            started: Instant::now(),
        });
        Ok(())
    }

    /// Reads the next [`read::READ_BATCH`] agents of the pass (pipelined, answers in flight bounded) and feeds
    /// them to the tracker in order; the loop serves events, sends and timers between two
    /// batches. The last batch completes the reconcile and tells [`Leadership`]; a failed
    /// read ends the pass incomplete.
    async fn pass_step(&mut self, client: &Client) {
        let Some(pass) = self.pass.as_mut() else {
            return;
        };
        let n = pass.queue.len().min(read::READ_BATCH);
        let batch: Vec<AgentId> = pass.queue.drain(..n).collect();
        let done = pass.queue.is_empty();
        let result = async {
            let observations = self.read_agents(client, &batch).await?;
            self.apply_all(client, batch.iter().zip(observations))
                .await?;
            if done && self.lead.leading() {
                self.book
                    .set_silences(read::silences(client, &self.layout).await?);
            }
            Ok::<_, ZkError>(())
        }
        .await;
        let complete = match result {
            Ok(()) if !done => return,
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "reconciliation failed");
                false
            }
        };
        if let Some(pass) = self.pass.take() {
            if complete {
                info!(
                    agents = pass.agents,
                    elapsed_ms = pass.started.elapsed().as_millis() as u64,
                    "reconciled: every agent read"
                );
            }
        }
        let step = self
            .lead
            .handle(Lead::Reconciled { complete }, std::time::Instant::now());
        self.drive(client, step).await;
    }

    /// A new leader loads the incidents and brings them in line with what it sees (a complete
    /// reconcile of this session). Every step reads afresh: a failed attempt leaves nothing a
    /// later one relies on. The edges this replica saw while standing by are dropped only once
    /// everything is written.
    async fn take_over(&mut self, client: &Client) -> Result<(), ZkError> {
        info!("elected; taking over: loading the incidents");
        let incidents = read::incidents(client, &self.layout).await?;
        let silences = read::silences(client, &self.layout).await?;
        let previous: Option<Handled> = read::read(client, &self.handled_path()).await?;
        self.ledger.load(&incidents);
        self.book.load(incidents);
        self.book.set_silences(silences);
        let now = Timestamp::now();
        self.handled = previous.clone().unwrap_or_else(|| Handled::new(now));
        self.handled_written = None;
        self.handled_dirty = false;
        let standby_edges = self.standby_edges.pending(std::time::Instant::now());
        let mut plan = takeover::plan(
            &mut self.book,
            self.tracker.agents().map(|(id, c, m, _)| (id, c, m)),
            standby_edges,
            previous.as_ref(),
            now,
        );
        for (channel, items) in &self.unrecorded {
            plan.writes.extend(self.book.delivered(channel, items, now));
        }
        let receipts = read::receipts(client, &receipt::dir(&self.layout)).await?;
        for r in receipts.iter().filter_map(|(_, r)| r.as_ref()) {
            plan.writes
                .extend(self.book.delivered(&r.channel, &r.items, now));
        }
        if previous.is_none() {
            info!("no record of an earlier leader (first start): exits recorded before now are not reported");
        }
        for id in &plan.unseen {
            warn!(agent = %id, "an exit recorded while no watcher was leading; reporting it");
        }
        self.write(client, plan.writes).await?;
        self.write_handled(client).await?;
        delete_receipts(client, &receipts).await;
        self.standby_edges.clear();
        self.unrecorded.clear();
        let open = self.book.ids().len();
        info!(open_incidents = open, "incidents loaded");
        Ok(())
    }

    /// `<root>/watchers/handled`.
    fn handled_path(&self) -> String {
        format!("{}/handled", self.layout.watchers_dir())
    }

    /// Whether the handled record is to be rewritten now (not written for a while).
    fn handled_due(&self) -> bool {
        self.handled_written
            .is_none_or(|at| at.elapsed() >= handled::REWRITE_EVERY)
    }

    /// Writes the handled record, stamped now.
    async fn write_handled(&mut self, client: &Client) -> Result<(), ZkError> {
        self.handled.stamp(Timestamp::now());
        let path = self.handled_path();
        zkwatchdog::registry::put_persistent(client, &path, &encode(&self.handled), &self.acls)
            .await?;
        self.handled_written = Some(Instant::now());
        self.handled_dirty = false;
        Ok(())
    }

    /// Shutting down: waits (at most [`SHUTDOWN_DRAIN`]) for the sends in flight and records
    /// what they delivered, so that the next leader does not send it again.
    async fn finish_sends(&mut self, client: &Client) {
        let deadline = Instant::now() + SHUTDOWN_DRAIN;
        if self.dispatcher.busy() {
            info!("waiting for the sends in flight before leaving");
        }
        while self.dispatcher.busy() {
            match tokio::time::timeout_at(deadline, self.results.recv()).await {
                Ok(Some(sent)) => self.on_sent(Some(client), sent).await,
                Ok(None) => break,
                Err(_) => {
                    warn!(waited = ?SHUTDOWN_DRAIN, "sends still in flight; leaving without their results (the next leader sends them again)");
                    break;
                }
            }
        }
    }

    /// Records the deliveries other replicas handed over ([`receipt`]) and deletes their
    /// receipts. True if there were any, or if they could not be read (then sends wait a moment):
    /// what is due must be decided again.
    async fn take_receipts(&mut self, client: &Client) -> bool {
        let receipts = match read::receipts(client, &receipt::dir(&self.layout)).await {
            Ok(receipts) if receipts.is_empty() => return false,
            Ok(receipts) => receipts,
            Err(e) => {
                warn!(error = %e, "cannot read the receipts of other replicas now: not sending yet");
                self.confirm_hold = Some(Instant::now() + CONFIRM_RETRY);
                return true;
            }
        };
        let now = Timestamp::now();
        let mut writes = Vec::new();
        for r in receipts.iter().filter_map(|(_, r)| r.as_ref()) {
            writes.extend(self.book.delivered(&r.channel, &r.items, now));
        }
        match self.write(client, writes).await {
            Ok(()) => {
                info!(
                    receipts = receipts.len(),
                    "recorded the deliveries another replica saw accepted"
                );
                delete_receipts(client, &receipts).await;
            }
            Err(e) => {
                warn!(error = %e, "recording the deliveries another replica saw accepted failed")
            }
        }
        true
    }

    /// Confirms in ZooKeeper, right before sends go out, that we still lead: our election node
    /// exists and is our session's. A node gone or not ours deposes us; no answer holds the
    /// sends for a moment. Never true on what we merely remember.
    /// A yes comes with the [`Fence`] the sends carry: its lease runs from the asking.
    async fn confirm_leading(&mut self, client: &Client) -> Option<Fence> {
        let candidate = self.own_node.clone()?;
        let asked = Instant::now();
        let answer =
            tokio::time::timeout(self.config.session_timeout, candidate.confirm(client)).await;
        match answer {
            Ok(Ok(true)) => Some(Fence {
                lease: Lease::new(asked, client.session_timeout()),
                client: client.clone(),
                node: candidate,
            }),
            Ok(Ok(false))
            | Ok(Err(ZkError::SessionExpired | ZkError::ClientClosed | ZkError::NoNode)) => {
                warn!(node = %candidate.path(), "leadership not confirmed (our election node is gone or not ours): not sending");
                self.lead
                    .handle(Lead::Unconfirmed, std::time::Instant::now());
                None
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cannot confirm leadership now: not sending yet");
                self.confirm_hold = Some(Instant::now() + CONFIRM_RETRY);
                None
            }
            Err(_) => {
                warn!("no answer confirming leadership: not sending yet");
                self.confirm_hold = Some(Instant::now() + CONFIRM_RETRY);
                None
            }
        }
    }

    /// Re-reads agents that are settling once their settle time may be over.
    async fn settle(&mut self, client: &Client) -> Result<(), ZkError> {
        let settling: Vec<String> = self.tracker.settling().map(str::to_string).collect();
        let ids: Vec<AgentId> = settling
            .into_iter()
            .filter_map(|id| AgentId::new(id).ok())
            .collect();
        self.observe_all(client, &ids).await
    }

    /// Handles a registry event; an event about an agent's nodes is added to `agents`, the
    /// agents to read (together, once the burst of events is taken in).
    async fn on_event(
        &mut self,
        client: &Client,
        event: &WatchedEvent,
        agents: &mut Vec<AgentId>,
    ) -> Result<(), ZkError> {
        let root = self.layout.root().trim_end_matches('/');
        let Some(rest) = event
            .path
            .strip_prefix(root)
            .map(|r| r.trim_start_matches('/'))
        else {
            return Ok(());
        };
        let mut parts = rest.splitn(2, '/');
        let (dir, name) = (parts.next().unwrap_or(""), parts.next());
        match (dir, name) {
            ("agents" | "live", Some(name)) => match AgentId::new(name) {
                Ok(id) => {
                    if !agents.contains(&id) {
                        agents.push(id);
                    }
                }
                Err(e) => {
                    warn!(path = %event.path, error = %e, "skipping a znode that is not an agent id")
                }
            },
            // A leader wrote (or closed) this agent's incident: it has handled what we saw.
            ("incidents", Some(name)) if !self.lead.leading() => self.standby_edges.handled(name),
            ("silences", Some(_)) if self.lead.leading() => {
                self.book
                    .set_silences(read::silences(client, &self.layout).await?);
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads agents ([`read::READ_BATCH`] at a time, each batch pipelined), updates
    /// the tracker, and (leading) the incidents.
    async fn observe_all(&mut self, client: &Client, ids: &[AgentId]) -> Result<(), ZkError> {
        for batch in ids.chunks(read::READ_BATCH) {
            let observations = self.read_agents(client, batch).await?;
            self.apply_all(client, batch.iter().zip(observations))
                .await?;
        }
        Ok(())
    }

    /// Reads some agents' nodes: by multi-reads while the server takes them, else (the first
    /// "unimplemented" answer, ZooKeeper 3.5) one request per node from then on.
    async fn read_agents(
        &mut self,
        client: &Client,
        ids: &[AgentId],
    ) -> Result<Vec<Observation>, ZkError> {
        if self.reads == read::Reads::Multi {
            match read::observe_all(client, &self.layout, ids, read::Reads::Multi).await {
                Err(ZkError::Unimplemented) => {
                    warn!("zookeeper does not answer multi-reads (a release before 3.6): reading each node on its own");
                    self.reads = read::Reads::Single;
                }
                other => return other,
            }
        }
        read::observe_all(client, &self.layout, ids, read::Reads::Single).await
    }

    /// Updates the tracker with what was read of some agents, and (leading) the incidents, all
    /// of their writes together.
    async fn apply_all(
        &mut self,
        client: &Client,
        read: impl Iterator<Item = (&AgentId, Observation)>,
    ) -> Result<(), ZkError> {
        let leading = self.lead.leading();
        let mut writes = Vec::new();
        let mut verdicts = Vec::new();
        for (id, obs) in read {
            let now = std::time::Instant::now();
            let looked =
                standby_edges::wall_clock(self.tracker.seen_at(id.as_str()), now, Timestamp::now());
            let verdict = self.tracker.observe(id.as_str(), obs, now);
            log_verdict(id.as_str(), &verdict);
            if leading {
                writes.extend(self.book.apply(id.as_str(), &verdict, Timestamp::now()));
                verdicts.push((id.clone(), verdict, looked));
            } else {
                self.standby_edges
                    .record(id.as_str(), &verdict.edges, looked, now);
            }
        }
        if let Err(e) = self.write(client, writes).await {
            // Not recorded: kept for the take-over that follows a failed write (replaying an
            // edge whose incident was written is harmless: the book folds it in).
            for (id, verdict, looked) in verdicts {
                self.standby_edges.record(
                    id.as_str(),
                    &verdict.edges,
                    looked,
                    std::time::Instant::now(),
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Performs incident writes (noting the exits they handle), all in flight together: what
    /// ZooKeeper must end up holding is each incident's last write. First the records written
    /// (and the exits they show noted as handled), then, the handled record written if it
    /// changed, the records deleted (the handled record must show an exit before the incident
    /// that shows it goes: the next leader would report it again). On failure the book may no
    /// longer say what ZooKeeper holds: a leader takes over again, from scratch.
    async fn write(&mut self, client: &Client, writes: Vec<Write>) -> Result<(), ZkError> {
        let mut last: BTreeMap<&str, &Write> = BTreeMap::new();
        for w in &writes {
            last.insert(write_id(w), w);
        }
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (id, w) in last {
            let Ok(agent) = AgentId::new(id) else {
                continue;
            };
            let path = self.layout.incident(&agent);
            match w {
                Write::Put(incident) => puts.push((path, encode(incident))),
                Write::Delete(_) => deletes.push(path),
            }
        }
        let written = zkwatchdog::registry::put_persistent_all(client, &puts, &self.acls).await;
        for ((path, _), result) in puts.iter().zip(written) {
            result.map_err(|e| self.write_failed(path, e))?;
        }
        // Every exit a record reports is noted as handled, the records put and those about to
        // be deleted (one loaded at take-over and closed by this leader was never put by it:
        // once it is gone, only this note says the exit was reported).
        for w in &writes {
            let (Write::Put(incident) | Write::Delete(incident)) = w;
            if self.handled.note(incident, Timestamp::now()) {
                self.handled_dirty = true;
            }
        }
        if !deletes.is_empty() && self.handled_dirty {
            let path = self.handled_path();
            self.write_handled(client)
                .await
                .map_err(|e| self.write_failed(&path, e))?;
        }
        let deleted = zkwatchdog::registry::delete_trees(client, &deletes).await;
        for (path, result) in deletes.iter().zip(deleted) {
            result.map_err(|e| self.write_failed(path, e))?;
        }
        for w in &writes {
            self.metrics.incident_written(self.ledger.written(w));
            match w {
                Write::Put(i) => {
                    debug!(agent = %i.id, cause = i.cause.headline(), resolved = i.resolved_at.is_some(), "incident written")
                }
                Write::Delete(i) => debug!(agent = %i.id, "incident closed"),
            }
        }
        Ok(())
    }

    /// A write to `path` failed: logged, and leadership must be taken over again.
    fn write_failed(&mut self, path: &str, e: ZkError) -> ZkError {
        match self.acls.denied(path, &e) {
            Some(why) => error!(znode = %path, "{why}"),
            None => {
                error!(error = %e, znode = %path, "writing an incident failed; taking over again (reloading incidents)")
            }
        }
        self.lead
            .handle(Lead::WriteFailed, std::time::Instant::now());
        e
    }

    /// Starts sends for every channel that is free and has something due.
    async fn dispatch(&mut self, client: &Client) {
        if !self.lead.leading() {
            return;
        }
        if self
            .confirm_hold
            .is_some_and(|until| Instant::now() < until)
        {
            return;
        }
        let mut fence: Option<Fence> = None;
        let now_ts = Timestamp::now();
        let writes = self.book.apply_silences(now_ts);
        if let Err(e) = self.write(client, writes).await {
            warn!(error = %e, "recording a silence failed");
        }
        for channel in self.dispatcher.ready(Instant::now()) {
            let tracker = &self.tracker;
            if let Some(batch) = self.book.due(&channel, now_ts, |id| tracker.marker(id)) {
                let ids: Vec<&str> = batch.items.iter().map(|i| i.agent.as_str()).collect();
                // Decided; before it goes out, ZooKeeper must confirm that we still lead, and
                // the send goes on only under that confirmation's lease.
                let fence = match &fence {
                    Some(fence) => fence.clone(),
                    None => {
                        if self.take_receipts(client).await {
                            // Something was recorded or could not be read: decide again.
                            return;
                        }
                        match self.confirm_leading(client).await {
                            Some(confirmed) => fence.insert(confirmed).clone(),
                            None => return,
                        }
                    }
                };
                match ids.as_slice() {
                    [one] => info!(channel = %channel, agent = %one, agents = 1, "sending"),
                    _ => info!(channel = %channel, agents = ids.len(), ids = ?ids, "sending"),
                }
                self.dispatcher.send(batch, fence);
            }
        }
    }

    async fn on_sent(&mut self, client: Option<&Client>, sent: Sent) {
        let accepted = self.dispatcher.finished(&sent);
        if !accepted {
            return;
        }
        if !self.lead.leading() {
            // Accepted while this replica is not (or no longer) leading: recorded by its next
            // take-over, so that it does not send it again.
            self.unrecorded(&sent);
            return;
        }
        let now = Timestamp::now();
        // Only what is still the incident the send announced counts (see `Book::delivered`).
        for item in &sent.items {
            if let Some(incident) = self.book.incident_of(item) {
                self.metrics
                    .accepted(&sent.channel, incident, item.phase, now);
            }
        }
        let writes = self
            .book
            .delivered(&sent.channel, &sent.items, Timestamp::now());
        match client {
            Some(client) => {
                if let Err(e) = self.write(client, writes).await {
                    warn!(error = %e, "recording a delivery failed; recorded at the next take-over");
                    self.unrecorded(&sent);
                }
            }
            None => self.unrecorded(&sent),
        }
    }

    /// Keeps an accepted send whose delivery is not recorded (bounded: the oldest go first).
    fn unrecorded(&mut self, sent: &Sent) {
        self.unrecorded
            .push((sent.channel.clone(), sent.items.clone()));
        let excess = self.unrecorded.len().saturating_sub(UNRECORDED_MAX);
        self.unrecorded.drain(..excess);
    }

    /// The earliest moment something has to happen.
    fn wake_at(&self, connected: bool) -> Instant {
        let now = Instant::now();
        let mut at = now + self.config.reconcile_interval;
        if let Some(due) = self.systemd.due(now.into_std()) {
            at = at.min(Instant::from_std(due));
        }
        if let Some(due) = self.zk_loss.due() {
            at = at.min(Instant::from_std(due));
        }
        if !connected {
            return at;
        }
        if self.pass.is_some() {
            return now;
        }
        if self.tracker.settling().next().is_some() {
            at = at.min(now + self.tracker.settle_time() / 4);
        }
        if let Some(due) = self.lead.due() {
            at = at.min(Instant::from_std(due));
        }
        if let Some(hold) = self.confirm_hold.filter(|h| *h > now) {
            at = at.min(hold);
        }
        if self.lead.leading() {
            // Changed (an exit handled): written at once; else rewritten periodically.
            let next = self
                .handled_written
                .map_or(now, |written| written + handled::REWRITE_EVERY);
            at = at.min(next);
            if let Some(free) = self.dispatcher.next_free(now) {
                at = at.min(free);
            }
            let sys_now = Timestamp::now();
            for channel in self.dispatcher.ready(now) {
                if let Some(due) = self.book.next_due(&channel) {
                    let wait = due.0.duration_since(sys_now.0).unwrap_or_default();
                    at = at.min(now + wait);
                }
            }
        }
        at
    }

    fn disconnected(&mut self) {
        self.zk_loss
            .disconnected(std::time::Instant::now(), Timestamp::now());
    }

    /// Records why a session ended (`Expired`, `Closed`, `AuthFailed`).
    fn session_ended(&mut self, state: SessionState) {
        self.trouble = match state {
            SessionState::AuthFailed => ZkTrouble::Refused(
                self.acls
                    .denied(self.layout.root(), &ZkError::AuthFailed)
                    .unwrap_or_else(|| "zookeeper rejected the credentials (AuthFailed)".into()),
            ),
            s => ZkTrouble::Unreachable(Some(format!("the zookeeper session ended ({s:?})"))),
        };
    }

    fn connected(&mut self) {
        self.trouble = ZkTrouble::Unreachable(None);
        if let Some(back) = self.zk_loss.connected(std::time::Instant::now()) {
            info!(down_for = %humantime::format_duration(round(back.down_for)), "zookeeper is back");
            self.dispatcher.broadcast(Notice::ZkBack {
                since: back.since,
                down_for: back.down_for,
            });
        }
    }

    /// Reports the watcher's own ZooKeeper loss once it has lasted `zk-loss-alert-after`, with
    /// the last reason it could not work with ZooKeeper.
    fn check_zk_loss(&mut self) {
        let Some(lost) = self.zk_loss.check(std::time::Instant::now()) else {
            return;
        };
        let trouble = self.trouble.clone();
        error!(
            hosts = %self.config.zk_hosts,
            down_for = %humantime::format_duration(round(lost.down_for)),
            reason = trouble.reason().unwrap_or("disconnected"),
            "cannot work with zookeeper ({}); reporting it",
            trouble.summary()
        );
        self.dispatcher.broadcast(Notice::ZkLost {
            since: lost.since,
            down_for: lost.down_for,
            trouble,
        });
    }

    /// Between connection attempts: drain send results, so lanes free up.
    async fn pump_sends_while_down(&mut self, delay: Duration) {
        let until = Instant::now() + delay;
        loop {
            self.systemd.feed(std::time::Instant::now());
            let wake = self
                .systemd
                .due(std::time::Instant::now())
                .map_or(until, |due| until.min(Instant::from_std(due)));
            tokio::select! {
                _ = sleep_until(wake) => {
                    if Instant::now() >= until {
                        return;
                    }
                }
                Some(sent) = self.results.recv() => self.on_sent(None, sent).await,
            }
        }
    }
}

/// The agent a write is about.
fn write_id(w: &Write) -> &str {
    let (Write::Put(i) | Write::Delete(i)) = w;
    i.id.as_str()
}

fn log_verdict(id: &str, v: &Verdict) {
    if !v.changed {
        return;
    }
    let went_down = v
        .edges
        .iter()
        .any(|e| matches!(e, crate::tracker::Edge::WentDown(_)));
    match &v.condition {
        Condition::Up {
            generation,
            degraded: None,
        } => info!(agent = id, generation, "up"),
        Condition::Up {
            generation,
            degraded: Some(d),
        } => {
            warn!(agent = id, generation, detail = %d, "up but degraded")
        }
        Condition::Down(cause) if went_down => {
            warn!(agent = id, cause = cause.headline(), detail = ?cause, "down")
        }
        // Same occurrence, new details (e.g. the marker's state went from backoff to running).
        Condition::Down(cause) => debug!(agent = id, ?cause, "still down"),
        Condition::Settling => debug!(agent = id, "marker without liveness node yet; settling"),
        Condition::Gone => info!(
            agent = id,
            "gone from the registry (clean stop or deregistered)"
        ),
        Condition::Orphan => warn!(
            agent = id,
            "liveness node without a marker: misconfigured or hand-edited registry"
        ),
        Condition::Unreadable => warn!(
            agent = id,
            "marker or liveness node unreadable: no conclusion until it is valid again"
        ),
    }
    for edge in &v.edges {
        if let crate::tracker::Edge::Bounced { cause, .. } = edge {
            warn!(
                agent = id,
                cause = cause.headline(),
                ?cause,
                "went down and came back between two reads"
            );
        }
    }
}

fn is_terminal(s: SessionState) -> bool {
    matches!(
        s,
        SessionState::Expired | SessionState::Closed | SessionState::AuthFailed
    )
}

async fn close(client: Client) {
    let states = client.state_watcher();
    let session = Session { client, states };
    session.close(Duration::from_secs(2)).await;
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// This machine's host name.
pub fn host() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
