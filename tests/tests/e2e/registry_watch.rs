//! The watcher's one-shot watch mode (`zkwatcher::registry_watch`) against a real ZooKeeper
//! 3.5.10, whatever release the other fixtures run: asked for the persistent watch, it falls
//! back to one-shot watches; it reports what a persistent recursive watch would (children
//! created and deleted, data changed); and the server holds one watch per directory and per
//! node listed, those of nodes gone being dropped (the server's count of data watches, from the
//! `wchs` four-letter word, which leaves child watches out).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use zkwatchdog::registry::server_version::WatchMode;
use zkwatchdog::registry::Layout;
use zkwatchdog_tests::zk::{self, four_letter, ZkServer};
use zkwatcher::registry_watch::RegistryWatch;
use zookeeper_client::{Acls, Client, CreateMode, EventType, WatchedEvent};

const LONG: Duration = Duration::from_secs(30);
const AGENTS: usize = 20;

async fn create(client: &Client, path: &str, mode: CreateMode) {
    let options = mode.with_acls(Acls::anyone_all());
    if let Err(e) = client.create(path, b"{}", &options).await {
        panic!("create {path}: {e}");
    }
}

/// The number of data watches (and exists watches on missing nodes) the server holds (`wchs`:
/// "Total watches:N"; 3.5 counts no child watches there).
fn server_watches(port: u16) -> Option<usize> {
    four_letter(port, "wchs")?
        .lines()
        .find_map(|l| l.trim().strip_prefix("Total watches:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Takes `watch`'s events in until `done` holds for what was taken and the server's watch
/// count (bounded by [`LONG`]); returns the events taken.
async fn take_until(
    watch: &mut RegistryWatch,
    port: u16,
    what: &str,
    done: impl Fn(&[WatchedEvent], Option<usize>, &RegistryWatch) -> bool,
) -> Vec<WatchedEvent> {
    let deadline = Instant::now() + LONG;
    let mut events = Vec::new();
    loop {
        let count = tokio::task::block_in_place(|| server_watches(port));
        if done(&events, count, watch) {
            return events;
        }
        if Instant::now() >= deadline {
            let paths = tokio::task::block_in_place(|| four_letter(port, "wchp"));
            panic!(
                "{what}: not within {LONG:?}; events {events:?}, server watches {count:?} \
                 ({paths:?}), {watch:?}"
            );
        }
        if let Ok(e) = tokio::time::timeout(Duration::from_millis(100), watch.changed()).await {
            events.push(e);
        }
    }
}

fn has(events: &[WatchedEvent], kind: EventType, path: &str) -> bool {
    events
        .iter()
        .any(|e| e.event_type == kind && e.path == path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_zookeeper_3_5_one_shot_watches_report_what_a_persistent_watch_would() {
    let server = tokio::task::spawn_blocking(|| ZkServer::start_release("3.5.10"))
        .await
        .expect("start ZooKeeper 3.5.10");
    let port = server.port();
    let layout = Layout::new("/zkwatchdog").expect("a root");
    let admin = zk::client(&server.connect_string()).await;
    let agents = zk::client(&server.connect_string()).await;
    create(&admin, layout.root(), CreateMode::Persistent).await;
    for dir in [layout.agents_dir(), layout.live_dir()] {
        create(&admin, &dir, CreateMode::Persistent).await;
    }
    for i in 0..AGENTS {
        let (marker, live) = (
            format!("{}/a-{i}", layout.agents_dir()),
            format!("{}/a-{i}", layout.live_dir()),
        );
        create(&admin, &marker, CreateMode::Persistent).await;
        create(&agents, &live, CreateMode::Ephemeral).await;
    }

    // Asked for the persistent watch, which 3.5 does not have: one-shot watches instead. The
    // directories `incidents` and `silences` do not exist: an exists watch on each.
    let watcher = zk::client(&server.connect_string()).await;
    let mut watch = RegistryWatch::arm(&watcher, &layout, WatchMode::PersistentRecursive)
        .await
        .expect("arm the registry watch");
    assert_eq!(watch.mode(), WatchMode::OneShot);
    // 2N + 4: on the server, the 2N data watches and the two directories' exists watches.
    take_until(
        &mut watch,
        port,
        "one watch per node and per directory",
        |_, count, w| w.watches() == 2 * AGENTS + 4 && count == Some(2 * AGENTS + 2),
    )
    .await;

    // A data change, a new agent (its marker and liveness node), an agent's liveness node
    // deleted, and a silence (its directory created first): each reported at its path.
    let a3 = format!("{}/a-3", layout.agents_dir());
    admin
        .set_data(&a3, b"{\"changed\":1}", None)
        .await
        .expect("set data");
    let (new_marker, new_live) = (
        format!("{}/new", layout.agents_dir()),
        format!("{}/new", layout.live_dir()),
    );
    create(&admin, &new_marker, CreateMode::Persistent).await;
    create(&agents, &new_live, CreateMode::Ephemeral).await;
    let a5 = format!("{}/a-5", layout.live_dir());
    admin
        .delete(&a5, None)
        .await
        .expect("delete a liveness node");
    create(&admin, &layout.silences_dir(), CreateMode::Persistent).await;
    let silence = format!("{}/a-7", layout.silences_dir());
    create(&admin, &silence, CreateMode::Persistent).await;
    let events = take_until(&mut watch, port, "every change reported", |events, _, _| {
        has(events, EventType::NodeDataChanged, &a3)
            && has(events, EventType::NodeCreated, &new_marker)
            && has(events, EventType::NodeCreated, &new_live)
            && has(events, EventType::NodeDeleted, &a5)
            && has(events, EventType::NodeCreated, &silence)
    })
    .await;
    let paths: BTreeSet<&str> = events.iter().map(|e| e.path.as_str()).collect();
    let expected: BTreeSet<&str> = [&a3, &new_marker, &new_live, &a5, &silence]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(paths, expected, "nothing else is reported: {events:?}");

    // After the events, every watch is set again: a data change of the same node is seen.
    admin
        .set_data(&a3, b"{\"changed\":2}", None)
        .await
        .expect("set data again");
    take_until(
        &mut watch,
        port,
        "a second change of a node",
        |events, _, _| has(events, EventType::NodeDataChanged, &a3),
    )
    .await;

    // The agents' session ends: every liveness node is reported gone, and its watch dropped,
    // on the server too (markers of 21 agents, one silence, four directories; on the server the
    // nodes' data watches and the exists watch of `incidents`).
    zk::close(agents).await;
    let after = AGENTS + 1 + 1;
    let events = take_until(
        &mut watch,
        port,
        "liveness nodes gone and their watches dropped",
        |events, count, w| {
            (0..AGENTS).filter(|i| *i != 5).all(|i| {
                has(
                    events,
                    EventType::NodeDeleted,
                    &format!("{}/a-{i}", layout.live_dir()),
                )
            }) && has(events, EventType::NodeDeleted, &new_live)
                && w.watches() == after + 4
                && count == Some(after + 1)
        },
    )
    .await;
    assert!(
        events
            .iter()
            .all(|e| e.event_type == EventType::NodeDeleted),
        "{events:?}"
    );

    drop(watch);
    zk::close(watcher).await;
    zk::close(admin).await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .expect("stop ZooKeeper");
}
