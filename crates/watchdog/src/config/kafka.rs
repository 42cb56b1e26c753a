//! The Kafka keys of the `[probe]` table: the broker a `kind = "kafka"` probe reads, and the
//! consumer groups whose lag any probe that knows a `bootstrap` judges (a broker's groups, a
//! Connect worker's sink connectors, a Flume Kafka source's group). Validated with every
//! problem named by its key.

use std::time::Duration;

use super::probe::RawProbe;
use crate::configfile::{parse_duration, Problems};
use crate::probe::kafka::ClusterSettings;
use crate::probe::lag::{LagSettings, MAX_WINDOW};

/// Which consumer groups are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerGroups {
    /// Every group of the cluster (a broker's default; each group is judged by the watchdog of
    /// its coordinator, see [`Scope`](crate::probe::lag::Scope)).
    All,
    /// These groups (plus, for a Connect worker, its sink connectors' `connect-<name>` groups).
    Named(Vec<String>),
}

/// The checked Kafka settings of a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaProbe {
    /// `host:port` of the broker to ask (for `kind = "kafka"`, the wrapped broker itself).
    pub bootstrap: String,
    /// The wrapped broker's `node.id` (`None`: found by matching `bootstrap` in the Metadata
    /// answer's broker list).
    pub broker_id: Option<i32>,
    pub groups: ConsumerGroups,
    pub lag: LagSettings,
    pub cluster: ClusterSettings,
}

const KEYS: [&str; 9] = [
    "bootstrap",
    "broker-id",
    "consumer-groups",
    "lag-threshold",
    "lag-thresholds",
    "lag-window",
    "lag-min-unchanged",
    "leader-imbalance-ratio",
    "leader-imbalance-min-excess",
];

/// Validates the Kafka keys for a probe of `kind`, recording problems in `p`. `None` when the
/// probe reads no Kafka (no `bootstrap` outside `kind = "kafka"`) or a key is wrong.
pub fn validate(r: &RawProbe, kind: &str, p: &mut Problems) -> Option<KafkaProbe> {
    let set = [
        r.bootstrap.is_some(),
        r.broker_id.is_some(),
        r.consumer_groups.is_some(),
        r.lag_threshold.is_some(),
        r.lag_thresholds.is_some(),
        r.lag_window.is_some(),
        r.lag_min_unchanged.is_some(),
        r.leader_imbalance_ratio.is_some(),
        r.leader_imbalance_min_excess.is_some(),
    ];
    let reads_kafka = matches!(kind, "kafka" | "kafka-connect" | "flume");
    if !reads_kafka {
        for (key, set) in KEYS.iter().zip(set) {
            if set {
                p.add(
                    &format!("probe.{key}"),
                    "applies only to kind = \"kafka\", \"kafka-connect\" or \"flume\"",
                );
            }
        }
        return None;
    }
    if kind != "kafka" {
        for (key, set) in [
            ("broker-id", r.broker_id.is_some()),
            ("leader-imbalance-ratio", r.leader_imbalance_ratio.is_some()),
            (
                "leader-imbalance-min-excess",
                r.leader_imbalance_min_excess.is_some(),
            ),
        ] {
            if set {
                p.add(
                    &format!("probe.{key}"),
                    "applies only to kind = \"kafka\" (a wrapped broker)",
                );
            }
        }
    }
    let bootstrap = match r.bootstrap.as_deref().map(str::trim) {
        None if kind == "kafka" => {
            p.add(
                "probe.bootstrap",
                "is required for kind = \"kafka\": the wrapped broker's host:port, e.g. \"127.0.0.1:9092\"",
            );
            return None;
        }
        None => {
            for (key, set) in KEYS.iter().zip(set).skip(1) {
                if set {
                    p.add(
                        &format!("probe.{key}"),
                        "needs probe.bootstrap (the Kafka cluster whose consumer groups are read)",
                    );
                }
            }
            return None;
        }
        Some(text) => p.check("probe.bootstrap", parse_host_port(text))?,
    };
    if let Some(id) = r.broker_id.filter(|id| *id < 0) {
        p.add(
            "probe.broker-id",
            format!("{id} is not a broker id (the broker's node.id, 0 or more)"),
        );
    }
    let groups = match &r.consumer_groups {
        Some(names) => {
            if let Some(bad) = names.iter().find(|n| n.trim().is_empty()) {
                p.add(
                    "probe.consumer-groups",
                    format!("{bad:?} is not a group name"),
                );
            }
            ConsumerGroups::Named(names.clone())
        }
        None if kind == "kafka" => ConsumerGroups::All,
        None if kind == "flume" => {
            p.add(
                "probe.consumer-groups",
                "is required with probe.bootstrap for kind = \"flume\": the group.id of the agent's Kafka source",
            );
            ConsumerGroups::Named(Vec::new())
        }
        None => ConsumerGroups::Named(Vec::new()),
    };
    let mut lag = LagSettings::default();
    if let Some(t) = r.lag_threshold {
        if t < 1 {
            p.add("probe.lag-threshold", "must be at least 1 message");
        }
        lag.threshold = Some(t);
    }
    if let Some(per_topic) = &r.lag_thresholds {
        for (topic, t) in per_topic {
            if *t < 1 {
                p.add(
                    &format!("probe.lag-thresholds.{topic}"),
                    "must be at least 1 message",
                );
            }
        }
        lag.per_topic = per_topic.clone();
    }
    if let Some(w) = r.lag_window {
        if !(2..=MAX_WINDOW).contains(&w) {
            p.add(
                "probe.lag-window",
                format!("must be from 2 to {MAX_WINDOW} probes"),
            );
        }
        lag.window = w;
    }
    lag.min_unchanged = p.parse(
        "probe.lag-min-unchanged",
        r.lag_min_unchanged.as_deref(),
        lag.min_unchanged,
        parse_duration,
    );
    if lag.min_unchanged < Duration::from_secs(1) {
        p.add("probe.lag-min-unchanged", "must be at least 1s");
    }
    let mut cluster = ClusterSettings::default();
    if let Some(ratio) = r.leader_imbalance_ratio {
        if !(ratio > 1.0 && ratio.is_finite()) {
            p.add("probe.leader-imbalance-ratio", "must be more than 1.0");
        }
        cluster.imbalance_ratio = ratio;
    }
    if let Some(excess) = r.leader_imbalance_min_excess {
        if !(excess >= 0.0 && excess.is_finite()) {
            p.add("probe.leader-imbalance-min-excess", "must be 0 or more");
        }
        cluster.imbalance_min_excess = excess;
    }
    Some(KafkaProbe {
        bootstrap,
        broker_id: r.broker_id,
        groups,
        lag,
        cluster,
    })
}

/// `host:port`, with a port.
fn parse_host_port(text: &str) -> Result<String, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} has no port; write host:port, e.g. \"127.0.0.1:9092\""))?;
    if host.is_empty() || host.contains(',') || host.contains('/') {
        return Err(format!(
            "{text:?} is not one host:port (one broker, no scheme), e.g. \"127.0.0.1:9092\""
        ));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} in {text:?} is not a port"))?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_raw, Config, ConfigError};

    fn validate(text: &str) -> Result<Config, ConfigError> {
        parse_raw(text, "k.toml")?.validate("k.toml", true)
    }

    fn problems(text: &str) -> Vec<(String, String)> {
        validate(text)
            .expect_err("invalid")
            .problems
            .iter()
            .map(|p| (p.key.clone(), p.message.clone()))
            .collect()
    }

    #[test]
    fn a_broker_reads_every_group_by_default() {
        let c = validate(
            "kind = \"kafka\"\ncommand = [\"x\"]\n[probe]\nbootstrap = \"127.0.0.1:9092\"\n",
        )
        .expect("valid");
        let probe = c.probe.expect("a probe");
        assert_eq!(probe.target.kind(), "kafka");
        let k = probe.kafka.expect("kafka settings");
        assert_eq!(k.bootstrap, "127.0.0.1:9092");
        assert_eq!(k.groups, ConsumerGroups::All);
        assert_eq!(k.lag, LagSettings::default());
        assert_eq!(k.broker_id, None);
    }

    #[test]
    fn every_lag_key_is_read() {
        let c = validate(
            "kind = \"kafka\"\ncommand = [\"x\"]\n[probe]\nbootstrap = \"b:9092\"\nbroker-id = 3\n\
             consumer-groups = [\"billing\"]\nlag-threshold = 500\nlag-window = 6\n\
             lag-min-unchanged = \"45s\"\nleader-imbalance-ratio = 2.0\n\
             leader-imbalance-min-excess = 1\n[probe.lag-thresholds]\norders = 50\n",
        )
        .expect("valid");
        let k = c.probe.expect("a probe").kafka.expect("kafka settings");
        assert_eq!(k.broker_id, Some(3));
        assert_eq!(k.groups, ConsumerGroups::Named(vec!["billing".into()]));
        assert_eq!(k.lag.threshold, Some(500));
        assert_eq!(k.lag.threshold_for("orders"), Some(50));
        assert_eq!(k.lag.window, 6);
        assert_eq!(k.lag.min_unchanged, Duration::from_secs(45));
        assert_eq!(k.cluster.imbalance_ratio, 2.0);
        assert_eq!(k.cluster.imbalance_min_excess, 1.0);
    }

    #[test]
    fn a_connect_worker_or_flume_agent_reads_lag_only_with_a_bootstrap() {
        let c = validate(
            "kind = \"kafka-connect\"\ncommand = [\"x\"]\n[probe]\nurl = \"http://127.0.0.1:8083\"\n",
        )
        .expect("valid");
        assert!(c.probe.expect("a probe").kafka.is_none());
        let c = validate(
            "kind = \"kafka-connect\"\ncommand = [\"x\"]\n[probe]\nurl = \"http://127.0.0.1:8083\"\nbootstrap = \"127.0.0.1:9092\"\n",
        )
        .expect("valid");
        let k = c
            .probe
            .expect("a probe")
            .kafka
            .expect("lag of the sink connectors");
        assert_eq!(k.groups, ConsumerGroups::Named(vec![]));
    }

    #[test]
    fn bad_kafka_keys_are_named() {
        let cases: [(&str, &str, &str); 9] = [
            ("kind = \"kafka\"", "", "probe.bootstrap"),
            (
                "kind = \"kafka\"",
                "bootstrap = \"127.0.0.1\"",
                "probe.bootstrap",
            ),
            (
                "kind = \"kafka\"",
                "bootstrap = \"a:1,b:2\"",
                "probe.bootstrap",
            ),
            (
                "kind = \"kafka\"",
                "bootstrap = \"a:9092\"\nlag-window = 1",
                "probe.lag-window",
            ),
            (
                "kind = \"kafka\"",
                "bootstrap = \"a:9092\"\nlag-threshold = 0",
                "probe.lag-threshold",
            ),
            (
                "kind = \"kafka\"",
                "bootstrap = \"a:9092\"\nleader-imbalance-ratio = 0.5",
                "probe.leader-imbalance-ratio",
            ),
            (
                "kind = \"flume\"",
                "url = \"http://127.0.0.1:1/metrics\"\nbootstrap = \"a:9092\"",
                "probe.consumer-groups",
            ),
            (
                "kind = \"flume\"",
                "url = \"http://127.0.0.1:1/metrics\"\nlag-threshold = 5",
                "probe.lag-threshold",
            ),
            (
                "kind = \"generic\"",
                "url = \"http://127.0.0.1:1/\"\nbootstrap = \"a:9092\"",
                "probe.bootstrap",
            ),
        ];
        for (top, table, key) in cases {
            let text = format!("{top}\ncommand = [\"x\"]\n[probe]\n{table}\n");
            let found = problems(&text);
            assert!(
                found.iter().any(|(k, _)| k == key),
                "{text}: expected a problem with {key}, got {found:?}"
            );
        }
    }
}
