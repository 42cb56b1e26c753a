//! The watchdog's Prometheus metrics: every metric it exports, defined once here and recorded by
//! the drivers (the run loop, the publisher, the probe driver), never by the pure state machines.
//!
//! One watchdog supervises one agent, so every series carries the label `agent` (the agent id),
//! which keeps series from many hosts apart after Prometheus adds its own `instance`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};
use zookeeper_client::SessionState;

use crate::exit::ExitKind;
use crate::metrics_http::{encode, set_one_hot, zk_state_name, Render, ZK_STATES};
use crate::registry::{AgentState, HealthStatus};

/// Supervisor states, as in the marker's `state`.
pub const STATES: [AgentState; 6] = [
    AgentState::Starting,
    AgentState::Running,
    AgentState::Restarting,
    AgentState::Backoff,
    AgentState::Fatal,
    AgentState::Stopping,
];

/// Health statuses, as in the liveness node's `health.status`.
pub const HEALTH: [HealthStatus; 3] = [
    HealthStatus::Ok,
    HealthStatus::Degraded,
    HealthStatus::Unknown,
];

/// How a child ended, as the `kind` label of `zkwatchdog_child_exits_total`.
const EXIT_KINDS: [&str; 3] = ["code", "signal", "spawn_failed"];

fn health_name(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Ok => "ok",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unknown => "unknown",
    }
}

/// The metrics of one watchdog. Cheap to record into (atomics); shared as an `Arc`.
#[derive(Debug)]
pub struct WatchdogMetrics {
    registry: Registry,
    agent: String,
    restarts: IntCounterVec,
    starts: IntCounterVec,
    exits: IntCounterVec,
    state: IntGaugeVec,
    uptime: Gauge,
    probes: IntCounterVec,
    health: IntGaugeVec,
    zk_session: IntGaugeVec,
    reregistrations: IntCounterVec,
    kafka_lag: IntGaugeVec,
    kafka_partitions: IntGaugeVec,
    /// When the current child started (none while no child runs).
    child_started: Mutex<Option<Instant>>,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

impl WatchdogMetrics {
    /// Defines every metric for agent `agent`, with the series that must exist from the start
    /// (zero counters, the `starting` state, the `connecting` session).
    pub fn new(agent: &str) -> Arc<Self> {
        let r = Registry::new();
        crate::metrics_http::register_process_and_build(&r, "zkwatchdog");
        let a = ["agent"];
        let uptime = Gauge::with_opts(
            Opts::new(
                "zkwatchdog_child_uptime_seconds",
                "Seconds since the current child started (0 while no child runs).",
            )
            .const_label("agent", agent),
        )
        .expect("valid metric definition");
        r.register(Box::new(uptime.clone()))
            .expect("metric names are unique");
        let m = WatchdogMetrics {
            restarts: counter(
                &r,
                "zkwatchdog_child_restarts_total",
                "Times the child was started again after it ended (crash, probe restart).",
                &a,
            ),
            starts: counter(
                &r,
                "zkwatchdog_child_starts_total",
                "Children started, the first one included.",
                &a,
            ),
            exits: counter(
                &r,
                "zkwatchdog_child_exits_total",
                "Children that ended, by how: exit code, signal, or could not be started.",
                &["agent", "kind"],
            ),
            state: gauge(
                &r,
                "zkwatchdog_state",
                "The supervisor's state (1 for the current one), as in the marker's state.",
                &["agent", "state"],
            ),
            uptime,
            probes: counter(
                &r,
                "zkwatchdog_probe_results_total",
                "Health probe rounds, by the resulting health status.",
                &["agent", "result"],
            ),
            health: gauge(
                &r,
                "zkwatchdog_health",
                "The current child's health status (1 for the current one), as in the liveness node.",
                &["agent", "status"],
            ),
            zk_session: gauge(
                &r,
                "zkwatchdog_zk_session_state",
                "The ZooKeeper session's state (1 for the current one).",
                &["agent", "state"],
            ),
            reregistrations: counter(
                &r,
                "zkwatchdog_zk_reregistrations_total",
                "Times the agent was written into the registry again after a new ZooKeeper session (liveness node re-created).",
                &a,
            ),
            kafka_lag: gauge(
                &r,
                "zkwatchdog_kafka_consumer_lag",
                "Consumer-group lag (log-end offset minus committed offset, summed over the topic's partitions) of the groups this watchdog judges, as of the last probe.",
                &["agent", "group", "topic"],
            ),
            kafka_partitions: gauge(
                &r,
                "zkwatchdog_kafka_partitions",
                "Partitions of the Kafka cluster by condition (offline: no leader; under_replicated: fewer in-sync replicas than replicas; led: led by this broker), as of the last probe of a wrapped broker.",
                &["agent", "condition"],
            ),
            registry: r,
            agent: agent.to_string(),
            child_started: Mutex::new(None),
        };
        for c in [&m.restarts, &m.starts, &m.reregistrations] {
            c.with_label_values(&[agent]);
        }
        for kind in EXIT_KINDS {
            m.exits.with_label_values(&[agent, kind]);
        }
        for status in HEALTH {
            m.probes.with_label_values(&[agent, health_name(status)]);
        }
        m.set_state(AgentState::Starting);
        m.set_health(HealthStatus::Unknown);
        m.set_zk_connecting();
        Arc::new(m)
    }

    /// Records the lag per (group, topic) of the last probe; series of groups or topics no
    /// longer read disappear.
    pub fn set_kafka_lag(&self, lags: &[(String, String, i64)]) {
        self.kafka_lag.reset();
        for (group, topic, lag) in lags {
            self.kafka_lag
                .with_label_values(&[self.agent.as_str(), group, topic])
                .set(*lag);
        }
    }

    /// Records the cluster's partition counts of the last probe of a wrapped broker.
    pub fn set_kafka_partitions(&self, offline: usize, under_replicated: usize, led: usize) {
        for (condition, n) in [
            ("offline", offline),
            ("under_replicated", under_replicated),
            ("led", led),
        ] {
            self.kafka_partitions
                .with_label_values(&[self.agent.as_str(), condition])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The scrape function for [`MetricsServer`](crate::metrics_http::MetricsServer).
    pub fn render(self: &Arc<Self>) -> Render {
        let m = Arc::clone(self);
        Arc::new(move || m.encode())
    }

    /// The text exposition, with the uptime brought up to date.
    pub fn encode(&self) -> String {
        let started = *self
            .child_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.uptime
            .set(started.map_or(0.0, |at| at.elapsed().as_secs_f64()));
        encode(&self.registry)
    }

    /// A child started; `restart` when it is not the first.
    pub fn child_started(&self, at: Instant, restart: bool) {
        self.starts.with_label_values(&[&self.agent]).inc();
        if restart {
            self.restarts.with_label_values(&[&self.agent]).inc();
        }
        *self
            .child_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(at);
    }

    /// A child ended (`None`: it could not be started).
    pub fn child_exited(&self, kind: Option<&ExitKind>) {
        let label = match kind {
            Some(ExitKind::Code(_)) => "code",
            Some(ExitKind::Signal(_)) => "signal",
            None => "spawn_failed",
        };
        self.exits.with_label_values(&[&self.agent, label]).inc();
        *self
            .child_started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// The supervisor entered `state`.
    pub fn set_state(&self, state: AgentState) {
        let names = STATES.map(|s| s.as_str());
        set_one_hot(&self.state, &[&self.agent], &names, state.as_str());
    }

    /// A probe round ended with `status` (the health the child now has).
    pub fn probed(&self, status: HealthStatus) {
        self.probes
            .with_label_values(&[&self.agent, health_name(status)])
            .inc();
        self.set_health(status);
    }

    /// The current child's health is `status`.
    pub fn set_health(&self, status: HealthStatus) {
        let names = HEALTH.map(health_name);
        set_one_hot(&self.health, &[&self.agent], &names, health_name(status));
    }

    /// The ZooKeeper session changed to `state`.
    pub fn set_zk_state(&self, state: SessionState) {
        set_one_hot(
            &self.zk_session,
            &[&self.agent],
            &ZK_STATES,
            zk_state_name(state),
        );
    }

    /// No session: connecting (or reconnecting).
    pub fn set_zk_connecting(&self) {
        set_one_hot(&self.zk_session, &[&self.agent], &ZK_STATES, "connecting");
    }

    /// The registry was written again in full after a new session.
    pub fn reregistered(&self) {
        self.reregistrations.with_label_values(&[&self.agent]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn series_exist_from_the_start_and_follow_what_is_recorded() {
        let m = WatchdogMetrics::new("a@h");
        let text = m.encode();
        for series in [
            "zkwatchdog_child_restarts_total{agent=\"a@h\"}",
            "zkwatchdog_child_exits_total{agent=\"a@h\",kind=\"signal\"}",
            "zkwatchdog_state{agent=\"a@h\",state=\"running\"}",
            "zkwatchdog_probe_results_total{agent=\"a@h\",result=\"degraded\"}",
            "zkwatchdog_zk_session_state{agent=\"a@h\",state=\"connected\"}",
            "zkwatchdog_zk_reregistrations_total{agent=\"a@h\"}",
            "zkwatchdog_child_uptime_seconds{agent=\"a@h\"}",
        ] {
            assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
        }
        assert_eq!(
            value(&text, "zkwatchdog_state{agent=\"a@h\",state=\"starting\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "zkwatchdog_zk_session_state{agent=\"a@h\",state=\"connecting\"}"
            ),
            Some(1.0)
        );

        let t0 = Instant::now() - std::time::Duration::from_secs(3);
        m.child_started(t0, false);
        m.set_state(AgentState::Running);
        m.child_exited(Some(&ExitKind::Signal(9)));
        m.set_state(AgentState::Restarting);
        m.child_started(t0, true);
        m.set_state(AgentState::Running);
        m.probed(HealthStatus::Degraded);
        m.set_zk_state(SessionState::SyncConnected);
        let text = m.encode();
        let get = |s: &str| value(&text, s).unwrap_or(f64::NAN);
        assert_eq!(get("zkwatchdog_child_restarts_total{agent=\"a@h\"}"), 1.0);
        assert_eq!(get("zkwatchdog_child_starts_total{agent=\"a@h\"}"), 2.0);
        assert_eq!(
            get("zkwatchdog_child_exits_total{agent=\"a@h\",kind=\"signal\"}"),
            1.0
        );
        assert_eq!(
            get("zkwatchdog_state{agent=\"a@h\",state=\"running\"}"),
            1.0
        );
        assert_eq!(
            get("zkwatchdog_state{agent=\"a@h\",state=\"restarting\"}"),
            0.0
        );
        assert_eq!(
            get("zkwatchdog_health{agent=\"a@h\",status=\"degraded\"}"),
            1.0
        );
        assert_eq!(
            get("zkwatchdog_zk_session_state{agent=\"a@h\",state=\"connected\"}"),
            1.0
        );
        assert!(get("zkwatchdog_child_uptime_seconds{agent=\"a@h\"}") >= 3.0);
    }
}
