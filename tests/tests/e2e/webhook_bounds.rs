//! The generic webhook under a giant outage, by `zkwatcher run` over a real ZooKeeper: 60
//! crashed agents with 64 KB stderr tails each, a receiver (wiremock) that answers 413 to bodies
//! over 150 kB. Unbounded, the one body was about 4 MB and refused forever; now the bodies are
//! bounded, the 413 splits the batch in halves, every agent is delivered and every incident is
//! recorded as sent on the webhook.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use zkwatchdog::registry::{
    AgentId, AgentKind, AgentState, LastExit, Layout, Marker, Timestamp, DEFAULT_ROOT,
};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};

/// The receiver's body limit: far below the unbounded body, above one agent's detailed item.
const LIMIT: usize = 150_000;
const AGENTS: usize = 60;

fn crashed_marker(i: usize) -> Marker {
    let now = Timestamp::now();
    let exit = LastExit {
        at: now,
        generation: 3,
        code: Some(1),
        signal: None,
        uptime_ms: 42_000,
        stderr_tail: (0..1_000)
            .map(|n| format!("{n:05} at org.apache.flume.{}", "x".repeat(40)))
            .collect(),
        probe_restart: None,
        reload: false,
        daemonized: None,
    };
    Marker {
        v: 1,
        id: format!("flume-{i:03}@host-{i:03}"),
        name: "flume".into(),
        kind: AgentKind::Flume,
        host: format!("host-{i:03}"),
        command: vec!["flume-ng".into(), "agent".into()],
        labels: BTreeMap::new(),
        version: "0.1.0".into(),
        registered_at: now,
        updated_at: now,
        state: AgentState::Backoff,
        generation: 3,
        restarts: 2,
        last_exit: Some(exit),
        session_id: "0x1".into(),
        conflict: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_giant_outage_reaches_a_webhook_that_refuses_big_bodies_in_parts() {
    let zk = ZkServer::start();
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(move |request: &Request| {
            if request.body.len() > LIMIT {
                counter.fetch_add(1, Ordering::SeqCst);
                ResponseTemplate::new(413).set_body_string("Request Entity Too Large")
            } else {
                ResponseTemplate::new(200)
            }
        })
        .mount(&receiver)
        .await;

    let c = zk::client(&zk.connect_string()).await;
    let layout = Layout::new(DEFAULT_ROOT).expect("the default root");
    let ids = zk::put_markers(&c, (0..AGENTS).map(crashed_marker)).await;

    let tables = format!(
        "[[webhook]]\nname = \"ops-hook\"\nkind = \"generic\"\nurl = \"{}/hook\"\n",
        receiver.uri()
    );
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"1s\"", None, &tables);
    watcher.wait_leading(Duration::from_secs(60));
    let (c, layout, ids_ref) = (&c, &layout, &ids);
    wait_until(
        "every incident recorded as sent on the webhook",
        Duration::from_secs(120),
        || async move {
            for id in ids_ref {
                let incident = zk::get_json(c, &layout.incident(id)).await?;
                incident["deliveries"]["ops-hook"]["opened"].as_str()?;
            }
            Some(())
        },
    )
    .await;

    let requests = receiver.received_requests().await.expect("recording is on");
    assert!(refused.load(Ordering::SeqCst) >= 1, "a body was too big");
    let accepted: Vec<Value> = requests
        .iter()
        .filter(|r| r.body.len() <= LIMIT)
        .map(|r| r.body_json().expect("JSON"))
        .collect();
    let mut agents = Vec::new();
    for body in &accepted {
        for item in body["items"].as_array().expect("items") {
            agents.push(item["agent"].as_str().unwrap_or_default().to_string());
        }
    }
    let named: HashSet<&str> = agents.iter().map(String::as_str).collect();
    let missing: Vec<&AgentId> = ids
        .iter()
        .filter(|id| !named.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "{} agents not delivered", missing.len());
    eprintln!(
        "zkwatcher run: {AGENTS} agents in {} accepted bodies of at most {} bytes, {} refused",
        accepted.len(),
        requests
            .iter()
            .map(|r| r.body.len())
            .filter(|&n| n <= LIMIT)
            .max()
            .unwrap_or(0),
        refused.load(Ordering::SeqCst)
    );
}
