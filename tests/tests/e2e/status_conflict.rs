//! `zkwatcher status` shows a marker's `conflict` (issue 12: two watchdogs configured with the
//! same agent id delete or replace each other's liveness node; the watchdog says so in its
//! marker, and the operator must see it next to the agent).
//!
//! Real ZooKeeper, real `zkwatcher status` process; the marker is written as a watchdog writes
//! it.

use std::collections::BTreeMap;

use serde_json::Value;
use zkwatchdog::registry::{
    encode, ensure_dirs, AgentKind, AgentState, Layout, Marker, NodeAcls, Timestamp, DEFAULT_ROOT,
    RECORD_VERSION,
};
use zkwatchdog_tests::watchdog::client;
use zkwatchdog_tests::watcher::zkwatcher_cli;
use zkwatchdog_tests::zk::ZkServer;
use zookeeper_client::{Acls, CreateMode};

const CONFLICT: &str = "liveness node replaced by another session twice (0x7 at 12:00:01, \
                        0x7 at 12:00:09)";

fn marker(id: &str, conflict: Option<&str>) -> Marker {
    let now = Timestamp::now();
    Marker {
        v: RECORD_VERSION,
        id: id.to_string(),
        name: "agent".to_string(),
        kind: AgentKind::Generic,
        host: "host-x".to_string(),
        command: vec!["agent".into()],
        labels: BTreeMap::new(),
        version: "0.1.0".to_string(),
        registered_at: now,
        updated_at: now,
        state: AgentState::Running,
        generation: 1,
        restarts: 0,
        last_exit: None,
        session_id: "0x1".to_string(),
        conflict: conflict.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_marker_conflict_next_to_the_agent() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let c = client(&hosts).await;
    let l = Layout::new(DEFAULT_ROOT).expect("the default root");
    let dirs = [l.agents_dir(), l.live_dir(), l.incidents_dir()];
    if let Err((dir, e)) = ensure_dirs(&c, &l, &dirs, &NodeAcls::open()).await {
        panic!("mkdir {dir}: {e}");
    }
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for (id, conflict) in [("twin@host-x", Some(CONFLICT)), ("calm@host-x", None)] {
        let agent = zkwatchdog::registry::AgentId::new(id).expect("a valid id");
        let data = encode(&marker(id, conflict));
        if let Err(e) = c.create(&l.marker(&agent), &data, &options).await {
            panic!("create the marker of {id}: {e}");
        }
    }

    let out = zkwatcher_cli(&["status", "--zk", &hosts]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let twin = lines
        .iter()
        .position(|l| l.starts_with("twin@host-x "))
        .unwrap_or_else(|| panic!("no row for twin@host-x:\n{stdout}"));
    assert_eq!(
        lines.get(twin + 1).copied(),
        Some(format!("  ^ CONFLICT: {CONFLICT}").as_str()),
        "{stdout}"
    );
    assert_eq!(stdout.matches("CONFLICT").count(), 1, "{stdout}");

    let out = zkwatcher_cli(&["status", "--json", "--zk", &hosts]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let by_id = |id: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no row for {id}: {rows}"))
    };
    assert_eq!(by_id("twin@host-x")["conflict"], CONFLICT);
    assert!(by_id("calm@host-x")["conflict"].is_null(), "{rows}");
}
