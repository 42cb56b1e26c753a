//! `zkwatcher status`: one row per agent, like `supervisorctl status`, read straight from the
//! registry (markers, liveness nodes, incidents, silences); `--json` for scripts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use zkwatchdog::registry::{AgentState, HealthStatus, Layout, Liveness, Marker, Timestamp};
use zookeeper_client::{Client, Error as ZkError};

use crate::incident::{Cause, Incident, Silence};
use crate::notify::one_line;
use crate::read;
use crate::tracker::{classify, Condition};

/// One agent's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub host: String,
    pub kind: String,
    /// running, degraded, crashed, backoff, fatal, lost, starting, stopping, orphan.
    pub state: String,
    pub pid: Option<u32>,
    pub generation: u64,
    pub restarts: u64,
    /// Running since (liveness `started_at`).
    pub up_since: Option<Timestamp>,
    /// Down since (the last exit, or the marker's last update for a lost agent).
    pub down_since: Option<Timestamp>,
    /// `code 1` / `SIGKILL`, with when.
    pub last_exit: Option<String>,
    pub health: Option<String>,
    /// The open incident, if any: cause, notified or not.
    pub incident: Option<String>,
    pub silenced_until: Option<Timestamp>,
    /// The marker's `conflict`: the watchdog found its liveness node deleted or replaced by
    /// someone else, most likely a second watchdog configured with the same agent id.
    pub conflict: Option<String>,
}

/// Reads the registry and builds the rows. `settle`: how long a marker may wait for its
/// liveness node before the agent counts as lost (the watcher's, [`crate::tracker::settle_time`]).
pub async fn rows(client: &Client, layout: &Layout, settle: Duration) -> Result<Vec<Row>, ZkError> {
    let mut markers: BTreeMap<String, Marker> = BTreeMap::new();
    for id in read::ids(client, &layout.agents_dir()).await? {
        if let Some(m) = read::read::<Marker>(client, &layout.marker(&id)).await? {
            markers.insert(id.to_string(), m);
        }
    }
    let mut lives: BTreeMap<String, Liveness> = BTreeMap::new();
    for id in read::ids(client, &layout.live_dir()).await? {
        if let Some(l) = read::read::<Liveness>(client, &layout.live(&id)).await? {
            lives.insert(id.to_string(), l);
        }
    }
    let incidents: BTreeMap<String, Incident> = read::incidents(client, layout)
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let now = Timestamp::now();
    let silences: BTreeMap<String, Silence> = read::silences(client, layout)
        .await?
        .into_iter()
        .filter(|s| s.active_at(now))
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut ids: Vec<String> = markers.keys().chain(lives.keys()).cloned().collect();
    ids.sort();
    ids.dedup();
    Ok(ids
        .into_iter()
        .map(|id| {
            row(
                &id,
                settle,
                markers.get(&id),
                lives.get(&id),
                incidents.get(&id),
                silences.get(&id),
            )
        })
        .collect())
}

fn row(
    id: &str,
    settle: Duration,
    marker: Option<&Marker>,
    live: Option<&Liveness>,
    incident: Option<&Incident>,
    silence: Option<&Silence>,
) -> Row {
    let exit = marker.and_then(|m| m.last_exit.as_ref());
    // A single read: a marker without its liveness node has settled once it is older than the
    // settle time.
    let settled = marker.is_some_and(|m| m.updated_at.elapsed() >= settle);
    let open_incident = incident.filter(|i| i.resolved_at.is_none());
    let state = match classify(marker, live, None, settled) {
        Condition::Orphan => "orphan".to_string(),
        Condition::Up {
            degraded: Some(_), ..
        } => "degraded".into(),
        Condition::Up { .. } if marker.is_some_and(|m| m.state == AgentState::Stopping) => {
            "stopping".into()
        }
        Condition::Up { .. } => "running".into(),
        // Down (or about to be): what the watcher concluded, when it has an open incident.
        _ if open_incident.is_some() => open_incident
            .map(|i| i.cause.headline().to_ascii_lowercase())
            .unwrap_or_default(),
        // A planned restart for a reload, between the old child and the new one.
        Condition::Settling if exit.is_some_and(|e| e.reload) => "restarting".into(),
        Condition::Settling => "starting".into(),
        Condition::Down(
            Cause::Crashed {
                state: AgentState::Fatal,
                ..
            }
            | Cause::Lost {
                state: AgentState::Fatal,
                ..
            },
        ) => "fatal".into(),
        Condition::Down(Cause::Crashed {
            state: AgentState::Backoff,
            ..
        }) => "backoff".into(),
        Condition::Down(Cause::Crashed { .. }) => "crashed".into(),
        Condition::Down(_) | Condition::Gone | Condition::Unreadable => "lost".into(),
    };
    let down_since = match (marker, live) {
        (Some(m), None) => Some(
            exit.filter(|e| e.generation >= m.generation)
                .map(|e| e.at)
                .unwrap_or(m.updated_at),
        ),
        _ => None,
    };
    Row {
        id: id.to_string(),
        host: marker.map(|m| m.host.clone()).unwrap_or_default(),
        kind: marker
            .map(|m| m.kind.as_str().to_string())
            .unwrap_or_default(),
        state,
        pid: live.map(|l| l.child_pid),
        generation: live
            .map(|l| l.generation)
            .or(marker.map(|m| m.generation))
            .unwrap_or(0),
        restarts: marker.map(|m| m.restarts).unwrap_or(0),
        up_since: live.map(|l| l.started_at),
        down_since,
        last_exit: exit.map(|e| {
            let how = match (&e.signal, e.code) {
                (Some(s), _) => s.clone(),
                (None, Some(c)) => format!("code {c}"),
                (None, None) => "unknown".into(),
            };
            format!("{how} at {}", e.at)
        }),
        health: live.map(|l| match l.health.status {
            HealthStatus::Ok => "ok".to_string(),
            HealthStatus::Unknown => "unknown".to_string(),
            HealthStatus::Degraded => format!("degraded: {}", l.health.detail),
        }),
        incident: incident.map(|i| {
            let mut s = i.cause.headline().to_string();
            if i.resolved_at.is_some() {
                s.push_str(" (resolved)");
            }
            s.push_str(match (&i.silenced, i.notified_at) {
                (Some(_), _) => ", silenced",
                (None, Some(_)) => ", notified",
                (None, None) => ", not yet notified",
            });
            s
        }),
        silenced_until: silence.map(|s| s.until),
        conflict: marker.and_then(|m| m.conflict.clone()),
    }
}

/// Formats rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let mut lines = vec![[
        "ID",
        "HOST",
        "KIND",
        "STATE",
        "SINCE",
        "RESTARTS",
        "LAST EXIT",
        "HEALTH",
        "INCIDENT",
    ]
    .map(String::from)
    .to_vec()];
    for r in rows {
        let since = match (r.up_since, r.down_since) {
            (Some(t), _) => format!("pid {}, uptime {}", r.pid.unwrap_or(0), ago(t)),
            (None, Some(t)) => format!("down {}", ago(t)),
            _ => "-".into(),
        };
        let mut incident = r.incident.clone().unwrap_or_else(|| "-".into());
        if let Some(until) = r.silenced_until {
            incident.push_str(&format!(" [silenced until {until}]"));
        }
        lines.push(vec![
            r.id.clone(),
            or_dash(&r.host),
            or_dash(&r.kind),
            r.state.clone(),
            since,
            r.restarts.to_string(),
            r.last_exit.clone().unwrap_or_else(|| "-".into()),
            r.health.clone().unwrap_or_else(|| "-".into()),
            incident,
        ]);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    // The header has no row; each agent's row is followed by its conflict, if any.
    let conflicts = std::iter::once(None).chain(rows.iter().map(|r| r.conflict.as_deref()));
    for (l, conflict) in lines.iter().zip(conflicts) {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if let Some(conflict) = conflict {
            out.push_str(&format!("  ^ CONFLICT: {}\n", one_line(conflict)));
        }
    }
    if rows.is_empty() {
        out.push_str("(no agents registered)\n");
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// `3h12m` for the time since `t`.
pub fn ago(t: Timestamp) -> String {
    let secs = t.elapsed().as_secs();
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use zkwatchdog::registry::{AgentKind, AgentState};

    use super::*;

    fn marker(id: &str, state: AgentState) -> Marker {
        Marker {
            v: 1,
            id: id.into(),
            name: "agent".into(),
            kind: AgentKind::Flume,
            host: "h".into(),
            command: vec!["flume-ng".into()],
            labels: BTreeMap::new(),
            version: "0.1.0".into(),
            registered_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            state,
            generation: 5,
            restarts: 4,
            last_exit: None,
            session_id: "0x1".into(),
            conflict: None,
        }
    }

    const SETTLE: Duration = Duration::from_secs(5);

    fn live(generation: u64, status: HealthStatus) -> Liveness {
        Liveness {
            v: 1,
            pid: 10,
            child_pid: 11,
            generation,
            started_at: Timestamp::now(),
            session_id: "0x1".into(),
            health: zkwatchdog::registry::Health {
                status,
                detail: "CHANNEL.c1 fill 93%".into(),
                checked_at: None,
            },
        }
    }

    fn exit(generation: u64, reload: bool) -> zkwatchdog::registry::LastExit {
        zkwatchdog::registry::LastExit {
            at: Timestamp::now(),
            generation,
            code: None,
            signal: Some("SIGKILL".into()),
            uptime_ms: 1000,
            stderr_tail: vec![],
            probe_restart: None,
            reload,
            daemonized: None,
        }
    }

    /// The STATE column, from the one classification the tracker uses: (what, marker state,
    /// exit (generation, reload), liveness node (health), marker updated this long ago,
    /// expected).
    #[test]
    fn the_state_column_follows_the_trackers_classification() {
        use HealthStatus::{Degraded, Ok as Healthy};
        type Case = (
            &'static str,
            Option<AgentState>,
            Option<(u64, bool)>,
            Option<HealthStatus>,
            u64,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "running",
                Some(AgentState::Running),
                None,
                Some(Healthy),
                0,
                "running",
            ),
            (
                "degraded",
                Some(AgentState::Running),
                None,
                Some(Degraded),
                0,
                "degraded",
            ),
            (
                "stopping",
                Some(AgentState::Stopping),
                None,
                Some(Healthy),
                0,
                "stopping",
            ),
            ("orphan", None, None, Some(Healthy), 0, "orphan"),
            (
                "a fresh marker",
                Some(AgentState::Starting),
                None,
                None,
                0,
                "starting",
            ),
            (
                "a marker that waited too long",
                Some(AgentState::Running),
                None,
                None,
                60,
                "lost",
            ),
            (
                "crash recorded",
                Some(AgentState::Restarting),
                Some((5, false)),
                None,
                0,
                "crashed",
            ),
            (
                "in backoff",
                Some(AgentState::Backoff),
                Some((5, false)),
                None,
                0,
                "backoff",
            ),
            (
                "gave up",
                Some(AgentState::Fatal),
                Some((5, false)),
                None,
                0,
                "fatal",
            ),
            (
                "gave up, no exit record",
                Some(AgentState::Fatal),
                None,
                None,
                60,
                "fatal",
            ),
            (
                "reload restart",
                Some(AgentState::Restarting),
                Some((5, true)),
                None,
                0,
                "restarting",
            ),
            (
                "reload that never came back",
                Some(AgentState::Restarting),
                Some((5, true)),
                None,
                60,
                "lost",
            ),
            (
                "an older exit",
                Some(AgentState::Running),
                Some((4, false)),
                None,
                60,
                "lost",
            ),
        ];
        for (what, state, last_exit, health, ago_s, expected) in cases {
            let m = state.map(|st| {
                let mut m = marker("a@h", st);
                m.last_exit = last_exit.map(|(g, reload)| exit(g, reload));
                m.updated_at =
                    Timestamp(std::time::SystemTime::now() - Duration::from_secs(*ago_s));
                m
            });
            let l = health.map(|h| live(5, h));
            let r = row("a@h", SETTLE, m.as_ref(), l.as_ref(), None, None);
            assert_eq!(r.state, *expected, "{what}");
        }
    }

    const CONFLICT: &str = "liveness node replaced by session 0x2 twice: another watchdog \
                            with the same id?";

    #[test]
    fn a_conflict_is_shown_under_the_agent_and_in_json() {
        let mut m = marker("a@h", AgentState::Running);
        m.conflict = Some(format!("{CONFLICT}\nb@h  x  running"));
        let plain = marker("b@h", AgentState::Running);
        let rows = vec![
            row("a@h", SETTLE, Some(&m), None, None, None),
            row("b@h", SETTLE, Some(&plain), None, None, None),
        ];
        assert_eq!(
            rows[0].conflict.as_deref(),
            Some(format!("{CONFLICT}\nb@h  x  running").as_str())
        );
        assert_eq!(rows[1].conflict, None);
        let table = table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[1].starts_with("a@h "), "{table}");
        // On one line, right under its agent: the text cannot forge a row.
        assert_eq!(
            lines[2],
            format!("  ^ CONFLICT: {CONFLICT} b@h x running"),
            "{table}"
        );
        assert!(lines[3].starts_with("b@h "), "{table}");
        let json = serde_json::to_value(&rows).expect("rows serialize");
        assert_eq!(
            json[0]["conflict"].as_str(),
            Some(format!("{CONFLICT}\nb@h  x  running").as_str())
        );
        assert!(json[1]["conflict"].is_null());
    }
}
