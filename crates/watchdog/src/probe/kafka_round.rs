//! One Kafka probe round: read the cluster and the consumer groups with the wire client, hand
//! them to the pure evaluators ([`super::kafka`], [`super::lag`]), and record the figures as
//! metrics. Used by the probe driver for a wrapped broker (`kind = "kafka"`) and, for their
//! consumer groups' lag, for a Connect worker or a Flume agent with a `bootstrap`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::kafka as cluster_checks;
use super::lag::{LagWindows, Scope};
use super::{Check, Finding, ProbeResult, Report};
use crate::config::kafka::{ConsumerGroups, KafkaProbe};
use crate::kafka::snapshot::GroupOffsets;
use crate::kafka::{Client, Groups, KafkaError};
use crate::metrics::WatchdogMetrics;

/// Probes a wrapped broker: the cluster checks this broker reports, then the lag of the groups
/// it judges (those it coordinates). A broker that does not answer is `Unreachable` (during the
/// start-up grace: not up yet); groups that cannot be read are a note, not a failure of the
/// broker (a coordinator still loading after a restart answers with a retriable error).
pub async fn broker(
    k: &KafkaProbe,
    timeout: Duration,
    lag: &mut LagWindows,
    metrics: &WatchdogMetrics,
) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    let mut client =
        match Client::connect(std::slice::from_ref(&k.bootstrap), deadline.into()).await {
            Ok(client) => client,
            Err(e) if unreachable(&e) => return ProbeResult::Unreachable(e.to_string()),
            Err(e) => return ProbeResult::Answered(bad_answer(&k.bootstrap, &e)),
        };
    let cluster = client.cluster().clone();
    let me = match k
        .broker_id
        .or((cluster.answered_by >= 0).then_some(cluster.answered_by))
    {
        Some(me) => me,
        None => {
            return ProbeResult::Answered(Report {
                findings: vec![Finding::new(
                    k.bootstrap.as_str(),
                    Check::BadAnswer,
                    format!(
                        "{}: the broker is not in its own Metadata answer under this address \
                         (brokers: {}); set probe.broker-id to the broker's node.id",
                        k.bootstrap,
                        cluster
                            .brokers
                            .iter()
                            .map(|b| format!("{} at {}:{}", b.id, b.host, b.port))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )],
                ..Report::default()
            })
        }
    };
    let mut report = cluster_checks::evaluate(&cluster, me, &k.cluster);
    let (leads, _) = cluster_checks::leadership(&cluster);
    metrics.set_kafka_partitions(
        cluster.partitions().filter(|(_, p)| p.is_offline()).count(),
        cluster
            .partitions()
            .filter(|(_, p)| p.is_under_replicated())
            .count(),
        leads.get(&me).map_or(0, |l| l.leads),
    );
    let which = match &k.groups {
        ConsumerGroups::All => Groups::All,
        ConsumerGroups::Named(names) => Groups::These(names),
    };
    let scope = Scope::broker(me, &cluster);
    match client.read_groups(which).await {
        Ok(groups) => {
            merge(&mut report, judge(&groups, scope, lag, metrics));
        }
        Err(e) => report.notes.push(format!("consumer groups not read ({e})")),
    }
    ProbeResult::Answered(report)
}

/// The lag of `groups` (plus the configured ones) in the cluster at `k.bootstrap`, for a
/// watchdog that wraps no broker: every group read is judged here. A cluster that cannot be
/// read is a finding: the lag the operator asked to watch is not watched.
pub async fn groups(
    k: &KafkaProbe,
    extra: &[String],
    timeout: Duration,
    lag: &mut LagWindows,
    metrics: &WatchdogMetrics,
) -> Report {
    let mut names: Vec<String> = match &k.groups {
        ConsumerGroups::Named(names) => names.clone(),
        ConsumerGroups::All => Vec::new(),
    };
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    if names.is_empty() && k.groups != ConsumerGroups::All {
        metrics.set_kafka_lag(&[]);
        return Report::default();
    }
    let which = match k.groups {
        ConsumerGroups::All => Groups::All,
        ConsumerGroups::Named(_) => Groups::These(&names),
    };
    let deadline = Instant::now() + timeout;
    let read = async {
        let mut client =
            Client::connect(std::slice::from_ref(&k.bootstrap), deadline.into()).await?;
        client.read_groups(which).await
    };
    match read.await {
        Ok(groups) => judge(&groups, Scope::Every, lag, metrics),
        Err(e) => Report {
            findings: vec![Finding::new(
                format!("kafka {}", k.bootstrap),
                Check::Unreachable,
                format!(
                    "consumer groups {} not read from {}: {e}",
                    names.join(", "),
                    k.bootstrap
                ),
            )],
            ..Report::default()
        },
    }
}

/// Judges the groups in `scope` and records their lag per (group, topic) as metrics.
fn judge(
    groups: &[GroupOffsets],
    scope: Scope,
    lag: &mut LagWindows,
    metrics: &WatchdogMetrics,
) -> Report {
    let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
    for g in groups.iter().filter(|g| scope.judges(g)) {
        for p in &g.partitions {
            *sums.entry((g.group.clone(), p.topic.clone())).or_default() += p.lag();
        }
    }
    let lags: Vec<(String, String, i64)> = sums.into_iter().map(|((g, t), l)| (g, t, l)).collect();
    metrics.set_kafka_lag(&lags);
    lag.observe(groups, scope, std::time::Instant::now())
}

/// Appends `more`'s findings, summary and notes to `into`.
pub fn merge(into: &mut Report, more: Report) {
    into.findings.extend(more.findings);
    if !more.summary.is_empty() {
        if into.summary.is_empty() {
            into.summary = more.summary;
        } else {
            into.summary = format!("{}; {}", into.summary, more.summary);
        }
    }
    into.notes.extend(more.notes);
}

/// Whether `e` means nobody answered (refused, timed out, closed): not up yet, or down.
fn unreachable(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::Connect { .. } | KafkaError::Timeout { .. } | KafkaError::Io { .. }
    )
}

fn bad_answer(bootstrap: &str, e: &KafkaError) -> Report {
    Report {
        findings: vec![Finding::new(
            bootstrap,
            Check::BadAnswer,
            format!("{bootstrap}: {e}"),
        )],
        ..Report::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_both_reports() {
        let mut a = Report {
            findings: vec![Finding::new("x", Check::TaskFailed, "X failed")],
            summary: "1 connector running".into(),
            notes: vec![],
        };
        merge(
            &mut a,
            Report {
                findings: vec![Finding::new("g", Check::ConsumerLag, "lag 5")],
                summary: "group g lag 5".into(),
                notes: vec!["n".into()],
            },
        );
        assert_eq!(a.findings.len(), 2);
        assert_eq!(a.summary, "1 connector running; group g lag 5");
        assert_eq!(a.notes, ["n"]);
        let mut empty = Report::default();
        merge(&mut empty, a.clone());
        assert_eq!(empty.summary, a.summary);
    }
}
