//! `zkwatcher status` shows a marker's `conflict` (issue 12: two watchdogs configured with the
//! same agent id delete or replace each other's liveness node; the watchdog says so in its
//! marker, and the operator must see it next to the agent).
//!
//! Real ZooKeeper, real `zkwatcher status` process; the marker is written as a watchdog writes
//! it.

use serde_json::Value;
use zkwatchdog::registry::Marker;
use zkwatchdog_tests::watchdog::client;
use zkwatchdog_tests::watcher::zkwatcher_cli;
use zkwatchdog_tests::zk::{self, ZkServer};

const CONFLICT: &str = "liveness node replaced by another session twice (0x7 at 12:00:01, \
                        0x7 at 12:00:09)";

fn marker(id: &str, conflict: Option<&str>) -> Marker {
    Marker {
        conflict: conflict.map(str::to_string),
        ..zk::running_marker(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_marker_conflict_next_to_the_agent() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let c = client(&hosts).await;
    zk::put_markers(
        &c,
        [("twin@host-x", Some(CONFLICT)), ("calm@host-x", None)]
            .map(|(id, conflict)| marker(id, conflict)),
    )
    .await;

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
