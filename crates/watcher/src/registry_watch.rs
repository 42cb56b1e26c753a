//! How the watcher learns that the registry changed: [`RegistryWatch`], either one persistent
//! recursive watch on the root (ZooKeeper 3.6 and later) or, for 3.5, one-shot watches that
//! yield the same events.
//!
//! The one-shot mode keeps, per session:
//! - a child watch on each of `agents/`, `live/`, `incidents/` and `silences/` (an exists watch
//!   on one that does not exist yet, to learn of its creation);
//! - a data watch (`exists`) on every child of those directories at their last listing.
//!
//! With N agents, I open incidents and S silences that is 2N + I + S + 4 watches: each node
//! listed has exactly one, and a node's watch is dropped (removed from the server) as soon as a
//! listing no longer shows it (a node deleted keeps an exists watch until the listing its own
//! deletion brings about). Every watch is armed again when it fires: a directory is
//! listed again (with a new child watch) and one event per child added or removed is emitted
//! (`NodeCreated` / `NodeDeleted` at the child's path, as the persistent watch would report
//! them); a node's watch is set again and its event passed on. The request re-arming a watch is
//! always sent before the event goes out, so the loop's read of the agent comes after it: a
//! change in between fires the new watch. Changes between a watch firing and its re-arm are
//! coalesced into that one read; a reconcile covers anything else (as after a reconnect, where
//! [`RegistryWatch::arm`] builds the whole set again and the client has re-sent the old ones).
//! Costs over the persistent watch: each change of a directory lists it whole (coalesced while
//! a listing is in flight), and arming sends one `exists` per node (2N requests at each session
//! start and reconnect, answered with a stat each).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use tracing::{debug, info, warn};
use zkwatchdog::registry::server_version::{watch_mode_from_add_watch, WatchMode};
use zkwatchdog::registry::Layout;
use zookeeper_client::{
    AddWatchMode, Client, Error as ZkError, EventType, OneshotWatcher, PersistentWatcher,
    WatchedEvent,
};

/// The watch that tells the session loop about changes in the registry.
pub struct RegistryWatch(Mode);

enum Mode {
    Persistent(PersistentWatcher),
    OneShot(Box<OneShot>),
}

impl RegistryWatch {
    /// Sets up the watch for a (new or reconnected) session: the one place that creates it, in
    /// either mode. A server that answers `addWatch` with UNIMPLEMENTED (a 3.5 whose release
    /// could not be asked) gets the one-shot mode; the caller keeps using the [`mode`](Self::mode)
    /// it got. In one-shot mode this returns once the directories are listed; the nodes'
    /// watches are requested by then and their answers are taken in by
    /// [`changed`](Self::changed).
    pub async fn arm(client: &Client, layout: &Layout, mode: WatchMode) -> Result<Self, ZkError> {
        if mode == WatchMode::PersistentRecursive {
            match client
                .watch(layout.root(), AddWatchMode::PersistentRecursive)
                .await
            {
                Ok(watch) => return Ok(RegistryWatch(Mode::Persistent(watch))),
                Err(e) if watch_mode_from_add_watch(Err(&e)) == Some(WatchMode::OneShot) => {
                    info!("zookeeper has no persistent watches (addWatch unimplemented: older than 3.6); following the registry with one-shot watches");
                    // The server closes the connection after that answer; the client connects
                    // again (same session): requests until then fail with ConnectionLoss.
                    let deadline = Instant::now() + client.session_timeout();
                    loop {
                        match OneShot::arm(client, layout).await {
                            Err(ZkError::ConnectionLoss) if Instant::now() < deadline => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            armed => return armed.map(Self::one_shot),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        OneShot::arm(client, layout).await.map(Self::one_shot)
    }

    fn one_shot(watch: OneShot) -> Self {
        debug!(
            watches = watch.watches(),
            "registry watched with one-shot watches"
        );
        RegistryWatch(Mode::OneShot(Box::new(watch)))
    }

    /// The mode in use.
    pub fn mode(&self) -> WatchMode {
        match &self.0 {
            Mode::Persistent(_) => WatchMode::PersistentRecursive,
            Mode::OneShot(_) => WatchMode::OneShot,
        }
    }

    /// How many watches this holds (set or being set): 1 in persistent mode; in one-shot mode,
    /// one per directory and one per node listed (see the module's header).
    pub fn watches(&self) -> usize {
        match &self.0 {
            Mode::Persistent(_) => 1,
            Mode::OneShot(w) => w.watches(),
        }
    }

    /// The next event: a node's (path relative to the chroot, as with a persistent watch), or a
    /// session's. Cancel-safe (all state lives in `self`), so it can be polled in a `select!`
    /// or with `now_or_never`.
    pub async fn changed(&mut self) -> WatchedEvent {
        match &mut self.0 {
            Mode::Persistent(w) => w.changed().await,
            Mode::OneShot(w) => w.changed().await,
        }
    }
}

impl std::fmt::Debug for RegistryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryWatch")
            .field("mode", &self.mode())
            .field("watches", &self.watches())
            .finish()
    }
}

/// A directory the one-shot mode watches, and the watches of its children.
struct Dir {
    path: String,
    /// The children at the last listing (`None`: not listed yet by this watch, which emits no
    /// events for what its first listing finds: the reconcile that follows reads it all).
    listed: Option<BTreeSet<String>>,
    /// The children whose watch is set or being set: its step's number and the handle that
    /// drops it.
    watched: HashMap<String, (u64, AbortHandle)>,
    /// A listing or the directory's watch is in flight.
    watching: bool,
}

/// The one-shot mode. Each watch is a step (a future held here, so that dropping the caller's
/// future loses nothing) that ends in an [`Out`]; taking in an `Out` starts the next step.
struct OneShot {
    client: Client,
    dirs: Vec<Dir>,
    steps: FuturesUnordered<BoxFuture<'static, Option<Out>>>,
    /// Steps that ended, not taken in yet.
    done: VecDeque<Out>,
    /// Events for the caller.
    ready: VecDeque<WatchedEvent>,
    /// Children listed whose watch is to be requested (before any event goes out).
    unwatched: VecDeque<(usize, String)>,
    next_step: u64,
}

/// While arming, node watches are requested this many at a time.
const ARM_BATCH: usize = 1024;

/// What a step ended with.
enum Out {
    /// A directory was listed (a child watch set), or found missing (an exists watch set).
    Listed {
        dir: usize,
        listing: Result<Listing, ZkError>,
    },
    /// A directory's watch fired.
    DirFired { dir: usize, event: WatchedEvent },
    /// A node's watch fired.
    NodeFired {
        dir: usize,
        name: String,
        step: u64,
        event: WatchedEvent,
    },
    /// A node's watch could not be set.
    NodeFailed {
        dir: usize,
        name: String,
        step: u64,
        error: ZkError,
    },
}

enum Listing {
    Children(Vec<String>, OneshotWatcher),
    Missing(OneshotWatcher),
}

impl OneShot {
    async fn arm(client: &Client, layout: &Layout) -> Result<Self, ZkError> {
        let paths = [
            layout.agents_dir(),
            layout.live_dir(),
            layout.incidents_dir(),
            layout.silences_dir(),
        ];
        let mut watch = OneShot {
            client: client.clone(),
            dirs: Vec::new(),
            steps: FuturesUnordered::new(),
            done: VecDeque::new(),
            ready: VecDeque::new(),
            unwatched: VecDeque::new(),
            next_step: 0,
        };
        for path in paths {
            let listing = list_dir(client, &path).await?;
            watch.dirs.push(Dir {
                path,
                listed: None,
                watched: HashMap::new(),
                watching: true,
            });
            watch.done.push_back(Out::Listed {
                dir: watch.dirs.len() - 1,
                listing: Ok(listing),
            });
        }
        // Takes the listings in, then requests every child's watch, a batch at a time: the
        // client's session task (on the same thread in `zkwatcher`) writes each batch out and
        // keeps the session's pings going meanwhile.
        watch.take_in();
        while !watch.unwatched.is_empty() {
            watch.watch_queued(ARM_BATCH);
            tokio::task::yield_now().await;
        }
        Ok(watch)
    }

    fn watches(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| usize::from(d.watching) + d.watched.len())
            .sum()
    }

    async fn changed(&mut self) -> WatchedEvent {
        loop {
            self.take_in();
            self.watch_queued(usize::MAX);
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            match self.steps.next().await {
                Some(Some(out)) => self.done.push_back(out),
                // A node's watch dropped.
                Some(None) => {}
                // Nothing is watched (every listing failed): nothing more will come.
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Takes in every step that ended, starting the steps that follow.
    fn take_in(&mut self) {
        while let Some(out) = self.done.pop_front() {
            self.take(out);
        }
    }

    fn take(&mut self, out: Out) {
        match out {
            Out::Listed { dir, listing } => {
                let (children, watcher) = match listing {
                    Ok(Listing::Children(children, watcher)) => (children, watcher),
                    Ok(Listing::Missing(watcher)) => (Vec::new(), watcher),
                    Err(e) => {
                        // Until the next session or reconnect (which arms everything again),
                        // this directory is covered by the reconciles only. A lost connection
                        // or session is followed by those anyway.
                        let path = &self.dirs[dir].path;
                        match e {
                            ZkError::ConnectionLoss
                            | ZkError::SessionExpired
                            | ZkError::ClientClosed => {
                                debug!(error = %e, path = %path, "listing a registry directory with a watch failed")
                            }
                            _ => {
                                warn!(error = %e, path = %path, "listing a registry directory with a watch failed; the reconciles cover it until the next reconnect")
                            }
                        }
                        self.dirs[dir].watching = false;
                        return;
                    }
                };
                let new: BTreeSet<String> = children.into_iter().collect();
                let d = &mut self.dirs[dir];
                let plan = plan_listing(&d.path, d.listed.as_ref(), &new, d.watched.keys());
                for name in &plan.unwatch {
                    if let Some((_, handle)) = d.watched.remove(name) {
                        handle.abort();
                    }
                }
                d.listed = Some(new);
                self.unwatched
                    .extend(plan.watch.into_iter().map(|name| (dir, name)));
                self.start(
                    async move {
                        Some(Out::DirFired {
                            dir,
                            event: watcher.changed().await,
                        })
                    }
                    .boxed(),
                );
                self.ready.extend(plan.events);
            }
            Out::DirFired { dir, event } => {
                if event.event_type == EventType::Session {
                    self.dirs[dir].watching = false;
                    self.ready.push_back(event);
                } else {
                    let (client, path) = (self.client.clone(), self.dirs[dir].path.clone());
                    self.start(
                        async move {
                            let listing = list_dir(&client, &path).await;
                            drop(client);
                            Some(Out::Listed { dir, listing })
                        }
                        .boxed(),
                    );
                }
            }
            Out::NodeFired {
                dir,
                name,
                step,
                event,
            } => {
                let current = self.dirs[dir].watched.get(&name).map(|(s, _)| *s) == Some(step);
                if current {
                    match after_node_event(&event) {
                        NodeNext::Rearm => self.watch_node(dir, name),
                        NodeNext::Drop => {
                            self.dirs[dir].watched.remove(&name);
                        }
                    }
                }
                self.ready.push_back(event);
            }
            Out::NodeFailed {
                dir,
                name,
                step,
                error,
            } => {
                let d = &mut self.dirs[dir];
                if d.watched.get(&name).map(|(s, _)| *s) == Some(step) {
                    // The next listing that shows it sets it again; a reconnect arms it all.
                    debug!(error = %error, path = %format!("{}/{name}", d.path), "watching a registry node failed");
                    d.watched.remove(&name);
                }
            }
        }
    }

    /// Requests the watches of (at most `n`) children listed.
    fn watch_queued(&mut self, n: usize) {
        for _ in 0..n {
            let Some((dir, name)) = self.unwatched.pop_front() else {
                return;
            };
            self.watch_node(dir, name);
        }
    }

    /// Sets (again) the watch on child `name` of directory `dir`.
    fn watch_node(&mut self, dir: usize, name: String) {
        self.next_step += 1;
        let step = self.next_step;
        let (handle, registration) = AbortHandle::new_pair();
        let client = self.client.clone();
        let path = format!("{}/{name}", self.dirs[dir].path);
        let key = name.clone();
        let watch = async move {
            // On a node that is gone, an exists watch (fires on its creation) until a listing
            // that no longer shows it drops it.
            let armed = client.check_and_watch_stat(&path).await;
            drop(client);
            match armed {
                Ok((_, watcher)) => Out::NodeFired {
                    dir,
                    name,
                    step,
                    event: watcher.changed().await,
                },
                Err(error) => Out::NodeFailed {
                    dir,
                    name,
                    step,
                    error,
                },
            }
        };
        if let Some((_, old)) = self.dirs[dir].watched.insert(key, (step, handle)) {
            old.abort();
        }
        self.start(Abortable::new(watch, registration).map(Result::ok).boxed());
    }

    /// Starts a step: polled once here, which sends its request now (the client sends a request
    /// when it is called, and a step calls it when first polled), before any event this step
    /// follows from goes out.
    fn start(&mut self, mut step: BoxFuture<'static, Option<Out>>) {
        match step.as_mut().now_or_never() {
            Some(Some(out)) => self.done.push_back(out),
            Some(None) => {}
            None => self.steps.push(step),
        }
    }
}

/// Lists `path` with a child watch; if it does not exist, sets an exists watch on it instead
/// (listing again if it was created in between, a bounded number of times).
async fn list_dir(client: &Client, path: &str) -> Result<Listing, ZkError> {
    for _ in 0..3 {
        match client.list_and_watch_children(path).await {
            Ok((children, watcher)) => return Ok(Listing::Children(children, watcher)),
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(e),
        }
        if let (None, watcher) = client.check_and_watch_stat(path).await? {
            return Ok(Listing::Missing(watcher));
        }
    }
    let (children, watcher) = client.list_and_watch_children(path).await?;
    Ok(Listing::Children(children, watcher))
}

/// What a new listing of a directory asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct ListingPlan {
    /// One per child added or removed since the previous listing (none for a first listing).
    pub events: Vec<WatchedEvent>,
    /// Children listed whose watch is not set: to set.
    pub watch: Vec<String>,
    /// Children watched but no longer listed: their watches to drop.
    pub unwatch: Vec<String>,
}

/// What the listing `new` of directory `dir` asks for, given the previous listing (`None`: this
/// is the first) and the children whose watch is set.
pub fn plan_listing<'a>(
    dir: &str,
    previous: Option<&BTreeSet<String>>,
    new: &BTreeSet<String>,
    watched: impl Iterator<Item = &'a String>,
) -> ListingPlan {
    let watched: BTreeSet<&String> = watched.collect();
    let events = match previous {
        None => Vec::new(),
        Some(previous) => child_events(dir, previous, new),
    };
    ListingPlan {
        events,
        watch: new
            .iter()
            .filter(|c| !watched.contains(c))
            .cloned()
            .collect(),
        unwatch: watched
            .into_iter()
            .filter(|c| !new.contains(*c))
            .cloned()
            .collect(),
    }
}

/// The events a persistent recursive watch would have reported for the children of `dir` going
/// from `old` to `new`: `NodeDeleted` for each removed, `NodeCreated` for each added.
pub fn child_events(
    dir: &str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Vec<WatchedEvent> {
    let removed = old
        .difference(new)
        .map(|c| WatchedEvent::new(EventType::NodeDeleted, format!("{dir}/{c}")));
    let added = new
        .difference(old)
        .map(|c| WatchedEvent::new(EventType::NodeCreated, format!("{dir}/{c}")));
    removed.chain(added).collect()
}

/// What follows the firing of a node's watch (its event is passed on either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeNext {
    /// Set the watch again (a node deleted gets an exists watch, dropped by the next listing).
    Rearm,
    /// The session ended: nothing more to watch.
    Drop,
}

/// What follows `event` on a node's one-shot watch.
pub fn after_node_event(event: &WatchedEvent) -> NodeNext {
    match event.event_type {
        EventType::Session => NodeNext::Drop,
        EventType::NodeCreated
        | EventType::NodeDeleted
        | EventType::NodeDataChanged
        | EventType::NodeChildrenChanged => NodeNext::Rearm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zookeeper_client::SessionState;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn ev(kind: EventType, path: &str) -> WatchedEvent {
        WatchedEvent::new(kind, path)
    }

    #[test]
    fn child_events_name_every_child_added_or_removed() {
        use EventType::{NodeCreated as C, NodeDeleted as D};
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static [(EventType, &'static str)],
        );
        let cases: &[Case] = &[
            (&[], &[], &[]),
            (&["a"], &["a"], &[]),
            (&[], &["a"], &[(C, "/r/live/a")]),
            (&["a"], &[], &[(D, "/r/live/a")]),
            (
                &["a", "b", "c"],
                &["b", "d", "e"],
                &[
                    (D, "/r/live/a"),
                    (D, "/r/live/c"),
                    (C, "/r/live/d"),
                    (C, "/r/live/e"),
                ],
            ),
        ];
        for (old, new, expected) in cases {
            let expected: Vec<WatchedEvent> = expected.iter().map(|(k, p)| ev(*k, p)).collect();
            assert_eq!(
                child_events("/r/live", &set(old), &set(new)),
                expected,
                "{old:?} -> {new:?}"
            );
        }
    }

    #[test]
    fn a_listing_watches_every_child_it_shows_and_drops_the_others() {
        use EventType::{NodeCreated as C, NodeDeleted as D};
        struct Case {
            previous: Option<&'static [&'static str]>,
            new: &'static [&'static str],
            watched: &'static [&'static str],
            events: &'static [(EventType, &'static str)],
            watch: &'static [&'static str],
            unwatch: &'static [&'static str],
        }
        let cases = [
            // First listing: every child watched, no events (the reconcile reads them).
            Case {
                previous: None,
                new: &["a", "b"],
                watched: &[],
                events: &[],
                watch: &["a", "b"],
                unwatch: &[],
            },
            // A child added and one removed.
            Case {
                previous: Some(&["a", "b"]),
                new: &["a", "c"],
                watched: &["a", "b"],
                events: &[(D, "/r/agents/b"), (C, "/r/agents/c")],
                watch: &["c"],
                unwatch: &["b"],
            },
            // Listed again, unchanged, but its watch could not be set (a failed request): set
            // again, with no child event.
            Case {
                previous: Some(&["a"]),
                new: &["a"],
                watched: &[],
                events: &[],
                watch: &["a"],
                unwatch: &[],
            },
            // Nothing changed: nothing to do.
            Case {
                previous: Some(&["a", "b"]),
                new: &["a", "b"],
                watched: &["a", "b"],
                events: &[],
                watch: &[],
                unwatch: &[],
            },
            // The directory is gone (listed as missing): every child reported and unwatched.
            Case {
                previous: Some(&["a", "b"]),
                new: &[],
                watched: &["a", "b"],
                events: &[(D, "/r/agents/a"), (D, "/r/agents/b")],
                watch: &[],
                unwatch: &["a", "b"],
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let previous = c.previous.map(set);
            let watched: Vec<String> = c.watched.iter().map(|n| n.to_string()).collect();
            let plan = plan_listing("/r/agents", previous.as_ref(), &set(c.new), watched.iter());
            let expected = ListingPlan {
                events: c.events.iter().map(|(k, p)| ev(*k, p)).collect(),
                watch: c.watch.iter().map(|n| n.to_string()).collect(),
                unwatch: c.unwatch.iter().map(|n| n.to_string()).collect(),
            };
            assert_eq!(plan, expected, "case {i}");
        }
    }

    #[test]
    fn a_node_watch_is_set_again_after_every_node_event_and_not_after_the_session_ends() {
        let cases = [
            (ev(EventType::NodeDataChanged, "/r/live/a"), NodeNext::Rearm),
            (ev(EventType::NodeDeleted, "/r/live/a"), NodeNext::Rearm),
            (ev(EventType::NodeCreated, "/r/live/a"), NodeNext::Rearm),
            (
                WatchedEvent::new_session(SessionState::Expired),
                NodeNext::Drop,
            ),
            (
                WatchedEvent::new_session(SessionState::Closed),
                NodeNext::Drop,
            ),
            (
                WatchedEvent::new_session(SessionState::AuthFailed),
                NodeNext::Drop,
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(after_node_event(&event), expected, "{event:?}");
        }
    }
}
