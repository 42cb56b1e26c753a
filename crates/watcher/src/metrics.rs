//! The watcher's Prometheus metrics: every metric it exports, defined once here, plus the pure
//! [`IncidentLedger`] that tells from the leader's incident writes when an incident opened or
//! was resolved. The drivers ([`crate::watch`], [`crate::dispatch`]) record; the pure tracker and
//! book know nothing of metrics. Serving is shared with the watchdog
//! ([`zkwatchdog::metrics_http`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use zkwatchdog::metrics_http::{encode, set_one_hot, zk_state_name, Render, ZK_STATES};
use zkwatchdog::registry::Timestamp;
use zookeeper_client::SessionState;

use crate::book::Write;
use crate::incident::{Cause, Incident};
use crate::notice::Phase;
use crate::tracker::Condition;

/// Agent states as the `state` label of `zkwatcher_agents`.
pub const AGENT_STATES: [&str; 6] = ["up", "degraded", "down", "settling", "orphan", "unreadable"];

/// Incident causes as the `cause` label.
pub const CAUSES: [&str; 6] = [
    "crashed",
    "probe_restart",
    "fatal",
    "lost",
    "restarted",
    "degraded",
];

/// Buckets of the detection-to-notification histogram, in seconds: group-wait (2 s by default)
/// plus a send at the fast end, SMTP outages riding out retries at the slow end.
const LATENCY_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The `state` label of an agent in `condition` (`None`: not in the registry).
pub fn agent_state(condition: &Condition) -> Option<&'static str> {
    match condition {
        Condition::Up { degraded: None, .. } => Some("up"),
        Condition::Up {
            degraded: Some(_), ..
        } => Some("degraded"),
        Condition::Down(_) => Some("down"),
        Condition::Settling => Some("settling"),
        Condition::Orphan => Some("orphan"),
        Condition::Unreadable => Some("unreadable"),
        Condition::Gone => None,
    }
}

/// The `cause` label of an incident (one of [`CAUSES`]).
pub fn cause_label(cause: &Cause) -> &'static str {
    match cause.headline() {
        "FATAL" => "fatal",
        "PROBE RESTART" => "probe_restart",
        "LOST" => "lost",
        "RESTARTED" => "restarted",
        "DEGRADED" => "degraded",
        _ => "crashed",
    }
}

/// What one incident write meant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// A new incident was opened, with this cause.
    pub opened: Option<&'static str>,
    /// An incident was resolved (or closed unresolved), with this cause.
    pub resolved: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
struct Known {
    opened_at: Timestamp,
    cause: &'static str,
    resolved: bool,
}

/// The incidents as last written or read, reduced to what the counters need: pure, fed by the
/// driver with the incidents it loads and every write that succeeded.
#[derive(Debug, Default)]
pub struct IncidentLedger {
    known: BTreeMap<String, Known>,
}

impl IncidentLedger {
    /// Forgets everything and starts from the incidents read from ZooKeeper (which were opened
    /// by an earlier leader and so are not counted again).
    pub fn load(&mut self, incidents: &[Incident]) {
        self.known = incidents.iter().map(|i| (i.id.clone(), known(i))).collect();
    }

    /// Records a write that ZooKeeper accepted and says what it changed.
    pub fn written(&mut self, write: &Write) -> Change {
        match write {
            Write::Put(incident) => {
                let now = known(incident);
                let before = self.known.insert(incident.id.clone(), now);
                let fresh = before.is_none_or(|b| b.opened_at != now.opened_at);
                Change {
                    opened: fresh.then_some(now.cause),
                    resolved: (now.resolved && (fresh || before.is_some_and(|b| !b.resolved)))
                        .then_some(now.cause),
                }
            }
            Write::Delete(i) => match self.known.remove(&i.id) {
                Some(b) if !b.resolved => Change {
                    opened: None,
                    resolved: Some(b.cause),
                },
                _ => Change::default(),
            },
        }
    }
}

fn known(i: &Incident) -> Known {
    Known {
        opened_at: i.opened_at,
        cause: cause_label(&i.cause),
        resolved: i.resolved_at.is_some(),
    }
}

/// The metrics of one watcher. Cheap to record into (atomics); shared as an `Arc`.
#[derive(Debug)]
pub struct WatcherMetrics {
    registry: Registry,
    agents: IntGaugeVec,
    opened: IntCounterVec,
    notified: IntCounterVec,
    resolved: IntCounterVec,
    attempts: IntCounterVec,
    failures: IntCounterVec,
    latency: HistogramVec,
    leader: IntGauge,
    zk_session: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl WatcherMetrics {
    /// Defines every metric, with zero series for every state, cause and channel in `channels`.
    pub fn new(channels: &[String]) -> Arc<Self> {
        let r = Registry::new();
        zkwatchdog::metrics_http::register_process_and_build(&r, "zkwatcher");
        let agents = IntGaugeVec::new(
            Opts::new(
                "zkwatcher_agents",
                "Registered agents by state, as this watcher sees them.",
            ),
            &["state"],
        )
        .expect("valid metric definition");
        r.register(Box::new(agents.clone()))
            .expect("metric names are unique");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "zkwatcher_notification_latency_seconds",
                "Seconds from opening an incident (detection) to a channel accepting its first notice.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["channel"],
        )
        .expect("valid metric definition");
        r.register(Box::new(latency.clone()))
            .expect("metric names are unique");
        let leader = IntGauge::new(
            "zkwatcher_leader",
            "1 while this watcher is the elected leader (writes incidents and notifies), else 0.",
        )
        .expect("valid metric definition");
        r.register(Box::new(leader.clone()))
            .expect("metric names are unique");
        let zk_session = IntGaugeVec::new(
            Opts::new(
                "zkwatcher_zk_session_state",
                "The ZooKeeper session's state (1 for the current one).",
            ),
            &["state"],
        )
        .expect("valid metric definition");
        r.register(Box::new(zk_session.clone()))
            .expect("metric names are unique");
        let m = WatcherMetrics {
            agents,
            opened: counter(
                &r,
                "zkwatcher_incidents_opened_total",
                "Incidents opened by this watcher while leading, by cause.",
                &["cause"],
            ),
            notified: counter(
                &r,
                "zkwatcher_incidents_notified_total",
                "Incidents whose first notice a channel accepted, by cause.",
                &["cause"],
            ),
            resolved: counter(
                &r,
                "zkwatcher_incidents_resolved_total",
                "Incidents resolved (recovered, stopped, or closed), by cause.",
                &["cause"],
            ),
            attempts: counter(
                &r,
                "zkwatcher_notification_attempts_total",
                "Messages handed to a channel (incident batches and the watcher's own notices), by channel.",
                &["channel"],
            ),
            failures: counter(
                &r,
                "zkwatcher_notification_failures_total",
                "Messages a channel did not accept (each is retried), by channel.",
                &["channel"],
            ),
            latency,
            leader,
            zk_session,
            registry: r,
        };
        for cause in CAUSES {
            for c in [&m.opened, &m.notified, &m.resolved] {
                c.with_label_values(&[cause]);
            }
        }
        for channel in channels {
            m.attempts.with_label_values(&[channel]);
            m.failures.with_label_values(&[channel]);
            m.latency.with_label_values(&[channel]);
        }
        m.set_agents(std::iter::empty());
        m.set_zk_connecting();
        Arc::new(m)
    }

    /// The scrape function for [`MetricsServer`](zkwatchdog::metrics_http::MetricsServer).
    pub fn render(self: &Arc<Self>) -> Render {
        let m = Arc::clone(self);
        Arc::new(move || encode(&m.registry))
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }

    /// Sets the agents-by-state gauges from every tracked agent's condition.
    pub fn set_agents<'a>(&self, conditions: impl Iterator<Item = &'a Condition>) {
        let mut counts = [0i64; AGENT_STATES.len()];
        for state in conditions.filter_map(agent_state) {
            if let Some(i) = AGENT_STATES.iter().position(|s| *s == state) {
                counts[i] += 1;
            }
        }
        for (state, n) in AGENT_STATES.iter().zip(counts) {
            self.agents.with_label_values(&[state]).set(n);
        }
    }

    /// Counts what an incident write changed.
    pub fn incident_written(&self, change: Change) {
        if let Some(cause) = change.opened {
            self.opened.with_label_values(&[cause]).inc();
        }
        if let Some(cause) = change.resolved {
            self.resolved.with_label_values(&[cause]).inc();
        }
    }

    /// `channel` accepted a notice about `incident` (`phase`) at `now`: counts the incident as
    /// notified if no channel had accepted it before, and observes the latency of the channel's
    /// first notice of it. Call before the book records the delivery.
    pub fn accepted(&self, channel: &str, incident: &Incident, phase: Phase, now: Timestamp) {
        if incident.notified_at.is_none() {
            self.notified
                .with_label_values(&[cause_label(&incident.cause)])
                .inc();
        }
        let delivery = incident.deliveries.get(channel);
        let first = delivery.is_none_or(|d| d.opened.is_none());
        if first && matches!(phase, Phase::Opened | Phase::OpenedAndResolved) {
            // A channel told of a new outage of a reopened incident waited since that began.
            let began = delivery
                .and_then(|d| d.since)
                .map_or(incident.opened_at, |s| s.at);
            let waited = now.0.duration_since(began.0).unwrap_or_default();
            self.latency
                .with_label_values(&[channel])
                .observe(waited.as_secs_f64());
        }
    }

    /// One message was handed to `channel`; `accepted` says how it went.
    pub fn attempt(&self, channel: &str, accepted: bool) {
        self.attempts.with_label_values(&[channel]).inc();
        if !accepted {
            self.failures.with_label_values(&[channel]).inc();
        }
    }

    /// Whether this watcher leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The ZooKeeper session changed to `state`.
    pub fn set_zk_state(&self, state: SessionState) {
        set_one_hot(&self.zk_session, &[], &ZK_STATES, zk_state_name(state));
    }

    /// No session: connecting (or reconnecting).
    pub fn set_zk_connecting(&self) {
        set_one_hot(&self.zk_session, &[], &ZK_STATES, "connecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Delivery;
    use std::time::{Duration, SystemTime};
    use zkwatchdog::registry::RECORD_VERSION;

    fn incident(id: &str, opened: u64, resolved: bool) -> Incident {
        let at = |s: u64| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        Incident {
            v: RECORD_VERSION,
            id: id.into(),
            opened_at: at(opened),
            cause: Cause::Lost {
                generation: 1,
                state: zkwatchdog::registry::AgentState::Running,
                last_update: at(opened),
            },
            occurrences: 1,
            notified_at: None,
            resolved_at: resolved.then(|| at(opened + 5)),
            resolution: None,
            silenced: None,
            deliveries: BTreeMap::new(),
            seq: 0,
            reopened: None,
        }
    }

    fn put(i: &Incident) -> Write {
        Write::Put(Box::new(i.clone()))
    }

    #[test]
    fn ledger_counts_each_opening_and_resolution_once() {
        let mut l = IncidentLedger::default();
        let open = incident("a", 100, false);
        let lost = Change {
            opened: Some("lost"),
            resolved: None,
        };
        assert_eq!(l.written(&put(&open)), lost);
        // Rewrites of the same incident (deliveries, occurrences) change nothing.
        assert_eq!(l.written(&put(&open)), Change::default());
        let resolved = incident("a", 100, true);
        assert_eq!(
            l.written(&put(&resolved)),
            Change {
                opened: None,
                resolved: Some("lost")
            }
        );
        // Deleting a resolved incident after its last notice is not a second resolution.
        let delete = |id: &str| Write::Delete(Box::new(incident(id, 100, true)));
        assert_eq!(l.written(&delete("a")), Change::default());
        // A bounce: opened and resolved in one write.
        assert_eq!(
            l.written(&put(&incident("b", 200, true))),
            Change {
                opened: Some("lost"),
                resolved: Some("lost")
            }
        );
        // A new occurrence replaces the incident record: a new opening.
        assert_eq!(l.written(&put(&incident("b", 300, false))), lost);
        // Closed without a resolution record (stopped before any notice): resolved.
        assert_eq!(l.written(&delete("b")).resolved, Some("lost"));
        assert_eq!(l.written(&delete("zz")), Change::default());
    }

    #[test]
    fn ledger_does_not_recount_incidents_an_earlier_leader_opened() {
        let mut l = IncidentLedger::default();
        l.load(&[incident("a", 100, false)]);
        assert_eq!(
            l.written(&put(&incident("a", 100, false))),
            Change::default()
        );
    }

    #[test]
    fn agents_by_state_count_every_condition_but_gone() {
        let m = WatcherMetrics::new(&["email".into()]);
        let conditions = [
            Condition::Up {
                generation: 1,
                degraded: None,
            },
            Condition::Up {
                generation: 1,
                degraded: Some("slow".into()),
            },
            Condition::Settling,
            Condition::Gone,
            Condition::Up {
                generation: 2,
                degraded: None,
            },
        ];
        m.set_agents(conditions.iter());
        let text = m.encode();
        for line in [
            "zkwatcher_agents{state=\"up\"} 2",
            "zkwatcher_agents{state=\"degraded\"} 1",
            "zkwatcher_agents{state=\"settling\"} 1",
            "zkwatcher_agents{state=\"down\"} 0",
            "zkwatcher_notification_attempts_total{channel=\"email\"} 0",
            "zkwatcher_zk_session_state{state=\"connecting\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn first_acceptance_counts_notified_once_and_observes_latency_per_channel() {
        let m = WatcherMetrics::new(&["email".into(), "slack".into()]);
        let mut i = incident("a", 100, false);
        let now = Timestamp(i.opened_at.0 + Duration::from_millis(2500));
        m.accepted("email", &i, Phase::Opened, now);
        i.notified_at = Some(now);
        i.deliveries.insert(
            "email".into(),
            Delivery {
                opened: Some(now),
                last: Some(now),
                resolved: None,
                since: None,
            },
        );
        // The second channel: latency observed, but the incident is already notified.
        m.accepted("slack", &i, Phase::Opened, now);
        // A reminder on email later: neither.
        m.accepted("email", &i, Phase::Reminder, now);
        let text = m.encode();
        for line in [
            "zkwatcher_incidents_notified_total{cause=\"lost\"} 1",
            "zkwatcher_notification_latency_seconds_count{channel=\"email\"} 1",
            "zkwatcher_notification_latency_seconds_sum{channel=\"email\"} 2.5",
            "zkwatcher_notification_latency_seconds_count{channel=\"slack\"} 1",
            "zkwatcher_notification_latency_seconds_bucket{channel=\"email\",le=\"2.5\"} 1",
            "zkwatcher_notification_latency_seconds_bucket{channel=\"email\",le=\"1\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
