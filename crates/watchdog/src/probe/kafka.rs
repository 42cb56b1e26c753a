//! The Kafka broker probe's cluster evaluator: from one Metadata answer ([`Cluster`]), the
//! offline partitions, the under-replicated partitions and a broker that leads far more
//! partitions than its share. Pure.
//!
//! Every broker of a cluster runs inside its own watchdog, and every one of them reads the same
//! Metadata, so a cluster-wide problem must become one finding of one watchdog, not one per
//! broker. Who reports what (the only place this rule is written):
//! - an **under-replicated** partition (a leader, fewer replicas in sync than assigned) is
//!   reported by the watchdog of its current **leader**;
//! - an **offline** partition (no leader) by the live broker with the **lowest id** (it has no
//!   leader to report it, and the lowest id is one every watchdog agrees on);
//! - **leader imbalance** by the **overloaded broker** itself.
//!
//! Findings are per topic (`topic orders`, one finding per topic and check: a new topic
//! affected is a new incident, more partitions of the same topic are not), or per broker for
//! leader imbalance. Internal topics (`__consumer_offsets`, `__transaction_state`) count like
//! any other: an offline offsets partition stops every group it coordinates. The summary gives
//! the cluster's figures whichever broker evaluates.
//!
//! A broker's fair share of leadership is not simply partitions / brokers: each led partition
//! adds `1 / n` to the share of each of its `n` in-sync live replicas (the brokers that could
//! lead it). With replicas spread evenly this is partitions / brokers; with a topic whose only
//! replica is on broker 1, that broker leading it is its fair share, not an imbalance.

use std::collections::{BTreeMap, BTreeSet};

use super::{count, list_compact, Check, Finding, Report};
use crate::kafka::snapshot::{Cluster, Partition};

/// Partitions listed in one finding before "and N more".
pub const LIST_MAX: usize = 10;

/// The cluster checks' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// A broker leading more than this multiple of its fair share is overloaded (1.4: a
    /// three-broker cluster in which one broker leads nothing puts the other two at 1.5).
    pub imbalance_ratio: f64,
    /// ... and leading at least this many partitions more than its fair share (3: three
    /// partitions all led by one of two brokers is no alarm).
    pub imbalance_min_excess: f64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            imbalance_ratio: 1.4,
            imbalance_min_excess: 3.0,
        }
    }
}

/// How many partitions a broker leads, beside what it would lead if leadership were even.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leadership {
    /// Partitions it leads.
    pub leads: usize,
    /// Its fair share (see the module doc).
    pub share: f64,
}

/// The leadership of every live broker, and the number of partitions that have a leader.
pub fn leadership(cluster: &Cluster) -> (BTreeMap<i32, Leadership>, usize) {
    let live: BTreeSet<i32> = cluster.brokers.iter().map(|b| b.id).collect();
    let mut by_broker: BTreeMap<i32, Leadership> = live
        .iter()
        .map(|&id| {
            (
                id,
                Leadership {
                    leads: 0,
                    share: 0.0,
                },
            )
        })
        .collect();
    let mut led = 0;
    for (_, p) in cluster.partitions() {
        let Some(leader) = p.leader else { continue };
        led += 1;
        let mut could_lead: Vec<i32> = p
            .isr
            .iter()
            .copied()
            .filter(|id| live.contains(id))
            .collect();
        if !could_lead.contains(&leader) {
            could_lead.push(leader);
        }
        let part = 1.0 / could_lead.len() as f64;
        for id in could_lead {
            if let Some(l) = by_broker.get_mut(&id) {
                l.share += part;
            }
        }
        if let Some(l) = by_broker.get_mut(&leader) {
            l.leads += 1;
        }
    }
    (by_broker, led)
}

/// `0 (replicas [1, 2, 3], isr [1])`, with the offline replicas when the answer names any.
fn describe(p: &Partition) -> String {
    if p.offline_replicas.is_empty() {
        format!("{} (replicas {:?}, isr {:?})", p.id, p.replicas, p.isr)
    } else {
        format!(
            "{} (replicas {:?}, isr {:?}, offline replicas {:?})",
            p.id, p.replicas, p.isr, p.offline_replicas
        )
    }
}

/// The findings broker `me` reports (see the module doc for who reports what), and the
/// cluster's figures in the summary.
pub fn evaluate(cluster: &Cluster, me: i32, settings: &ClusterSettings) -> Report {
    let mut report = Report::default();
    let lowest = cluster.lowest_live_broker();
    let (mut offline_total, mut urp_total, mut partitions) = (0, 0, 0);
    for topic in &cluster.topics {
        let n = topic.partitions.len();
        partitions += n;
        let offline: Vec<&Partition> = topic.partitions.iter().filter(|p| p.is_offline()).collect();
        let urp: Vec<&Partition> = topic
            .partitions
            .iter()
            .filter(|p| p.is_under_replicated())
            .collect();
        offline_total += offline.len();
        urp_total += urp.len();
        let component = format!("topic {}", topic.name);
        if !offline.is_empty() && lowest == Some(me) {
            report.findings.push(Finding::new(
                component.clone(),
                Check::OfflinePartitions,
                format!(
                    "topic {}: {} of {n} partitions offline (no leader): {}",
                    topic.name,
                    offline.len(),
                    list_compact(offline.iter().map(|p| describe(p)), LIST_MAX)
                ),
            ));
        }
        let mine: Vec<&Partition> = urp.into_iter().filter(|p| p.leader == Some(me)).collect();
        if !mine.is_empty() {
            report.findings.push(Finding::new(
                component,
                Check::UnderReplicated,
                format!(
                    "topic {}: {} of {n} partitions under-replicated, led by broker {me}: {}",
                    topic.name,
                    mine.len(),
                    list_compact(mine.iter().map(|p| describe(p)), LIST_MAX)
                ),
            ));
        }
    }

    let (by_broker, led) = leadership(cluster);
    let mine = by_broker.get(&me);
    if let Some(l) = mine.filter(|_| by_broker.len() > 1 && led > 0) {
        let leads = l.leads as f64;
        if leads > settings.imbalance_ratio * l.share
            && leads - l.share >= settings.imbalance_min_excess
        {
            report.findings.push(Finding::new(
                format!("broker {me}"),
                Check::LeaderImbalance,
                format!(
                    "broker {me} leads {} of {led} partitions ({:.0}%), its fair share is {:.0}% ({:.1} partitions)",
                    l.leads,
                    100.0 * leads / led as f64,
                    100.0 * l.share / led as f64,
                    l.share
                ),
            ));
        }
    }

    let internal = cluster.topics.iter().filter(|t| t.internal).count();
    let mut summary = format!(
        "{}, {} in {} ({internal} internal), {offline_total} offline, {urp_total} under-replicated",
        count(cluster.brokers.len(), "broker"),
        count(partitions, "partition"),
        count(cluster.topics.len(), "topic")
    );
    match mine {
        Some(l) => summary.push_str(&format!(
            "; broker {me} leads {} (fair share {:.1})",
            l.leads, l.share
        )),
        None => summary.push_str(&format!("; broker {me} is not among the live brokers")),
    }
    report.summary = summary;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::snapshot::{Broker, Topic};

    fn broker(id: i32) -> Broker {
        Broker {
            id,
            host: format!("b{id}"),
            port: 9092,
            rack: None,
        }
    }

    fn part(id: i32, leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> Partition {
        Partition {
            id,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: vec![],
            error_code: if leader.is_none() { 5 } else { 0 },
        }
    }

    fn topic(name: &str, partitions: Vec<Partition>) -> Topic {
        Topic {
            name: name.into(),
            internal: name.starts_with("__"),
            partitions,
        }
    }

    fn cluster(brokers: &[i32], topics: Vec<Topic>) -> Cluster {
        Cluster {
            answered_by: brokers.first().copied().unwrap_or(0),
            controller: brokers.first().copied(),
            brokers: brokers.iter().map(|&id| broker(id)).collect(),
            topics,
        }
    }

    /// Evenly led: partition i led by broker (i % n) + 1, all replicas in sync.
    fn balanced(name: &str, count: i32, brokers: &[i32]) -> Topic {
        let n = brokers.len() as i32;
        topic(
            name,
            (0..count)
                .map(|i| part(i, Some(brokers[(i % n) as usize]), brokers, brokers))
                .collect(),
        )
    }

    fn checks(r: &Report) -> Vec<(String, Check)> {
        r.findings.iter().map(Finding::key).collect()
    }

    /// A three-broker cluster with: orders-0 under-replicated (leader 2), orders-1 offline,
    /// __consumer_offsets-1 under-replicated (leader 3), everything else healthy and even.
    fn troubled() -> Cluster {
        let all = [1, 2, 3];
        cluster(
            &[3, 1, 2],
            vec![
                topic(
                    "orders",
                    vec![
                        part(0, Some(2), &[2, 3, 1], &[2, 1]),
                        part(1, None, &[1, 3, 2], &[]),
                        part(2, Some(3), &all, &all),
                    ],
                ),
                topic(
                    "__consumer_offsets",
                    vec![
                        part(0, Some(1), &all, &all),
                        part(1, Some(3), &[3, 1, 2], &[3]),
                    ],
                ),
            ],
        )
    }

    #[test]
    fn each_finding_is_reported_by_exactly_one_broker() {
        let c = troubled();
        let s = ClusterSettings::default();
        let table: [(i32, &[(&str, Check)]); 4] = [
            (1, &[("topic orders", Check::OfflinePartitions)]),
            (2, &[("topic orders", Check::UnderReplicated)]),
            (3, &[("topic __consumer_offsets", Check::UnderReplicated)]),
            (4, &[]),
        ];
        let mut all = Vec::new();
        for (me, want) in table {
            let r = evaluate(&c, me, &s);
            let want: Vec<(String, Check)> =
                want.iter().map(|(c, k)| (c.to_string(), *k)).collect();
            assert_eq!(checks(&r), want, "broker {me}");
            assert!(
                r.summary.starts_with(
                    "3 brokers, 5 partitions in 2 topics (1 internal), 1 offline, 2 under-replicated; "
                ),
                "{}",
                r.summary
            );
            all.extend(r.findings);
        }
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0].detail,
            "topic orders: 1 of 3 partitions offline (no leader): 1 (replicas [1, 3, 2], isr [])"
        );
        assert_eq!(
            all[1].detail,
            "topic orders: 1 of 3 partitions under-replicated, led by broker 2: 0 (replicas [2, 3, 1], isr [2, 1])"
        );
        assert_eq!(
            evaluate(&c, 4, &s).summary,
            "3 brokers, 5 partitions in 2 topics (1 internal), 1 offline, 2 under-replicated; broker 4 is not among the live brokers"
        );
    }

    #[test]
    fn two_brokers_seeing_the_same_metadata_report_each_finding_once() {
        // Broker 2 is down: its led partitions moved to 1 or went offline.
        let c = cluster(
            &[1, 3],
            vec![topic(
                "t",
                vec![
                    part(0, Some(1), &[1, 2], &[1]),
                    part(1, Some(3), &[2, 3], &[3]),
                    part(2, None, &[2], &[]),
                ],
            )],
        );
        let s = ClusterSettings::default();
        let (one, three) = (evaluate(&c, 1, &s), evaluate(&c, 3, &s));
        assert_eq!(
            checks(&one),
            vec![
                ("topic t".to_string(), Check::OfflinePartitions),
                ("topic t".to_string(), Check::UnderReplicated)
            ]
        );
        assert_eq!(
            checks(&three),
            vec![("topic t".to_string(), Check::UnderReplicated)]
        );
        assert!(one.findings[1]
            .detail
            .contains("led by broker 1: 0 (replicas [1, 2], isr [1])"));
        assert!(three.findings[0]
            .detail
            .contains("led by broker 3: 1 (replicas [2, 3], isr [3])"));
        assert_eq!(
            one.summary.split("; ").next(),
            three.summary.split("; ").next()
        );
    }

    #[test]
    fn many_partitions_are_listed_compactly() {
        let c = cluster(
            &[1, 2],
            vec![topic(
                "big",
                (0..14).map(|i| part(i, None, &[3], &[])).collect(),
            )],
        );
        let r = evaluate(&c, 1, &ClusterSettings::default());
        assert_eq!(
            r.findings[0].detail,
            "topic big: 14 of 14 partitions offline (no leader): 0 (replicas [3], isr []), \
             1 (replicas [3], isr []), 2 (replicas [3], isr []), 3 (replicas [3], isr []), \
             4 (replicas [3], isr []), 5 (replicas [3], isr []), 6 (replicas [3], isr []), \
             7 (replicas [3], isr []), 8 (replicas [3], isr []), 9 (replicas [3], isr []), \
             and 4 more"
        );
        assert!(evaluate(&c, 2, &ClusterSettings::default())
            .findings
            .is_empty());
    }

    #[test]
    fn offline_replicas_are_named_when_the_answer_gives_them() {
        let mut p = part(0, None, &[1, 2], &[]);
        p.offline_replicas = vec![1, 2];
        assert_eq!(
            describe(&p),
            "0 (replicas [1, 2], isr [], offline replicas [1, 2])"
        );
    }

    #[test]
    fn leader_imbalance_is_reported_by_the_overloaded_broker() {
        // 20 partitions on 3 brokers, all in sync; broker 1 leads 14, 2 leads 6, 3 none.
        let all = [1, 2, 3];
        let parts = (0..20)
            .map(|i| part(i, Some(if i < 14 { 1 } else { 2 }), &all, &all))
            .collect();
        let c = cluster(&all, vec![topic("t", parts)]);
        let s = ClusterSettings::default();
        let r = evaluate(&c, 1, &s);
        assert_eq!(
            checks(&r),
            vec![("broker 1".to_string(), Check::LeaderImbalance)]
        );
        assert_eq!(
            r.findings[0].detail,
            "broker 1 leads 14 of 20 partitions (70%), its fair share is 33% (6.7 partitions)"
        );
        assert!(evaluate(&c, 2, &s).findings.is_empty());
        assert!(evaluate(&c, 3, &s).findings.is_empty());
        assert_eq!(
            evaluate(&c, 3, &s).summary,
            "3 brokers, 20 partitions in 1 topic (0 internal), 0 offline, 0 under-replicated; broker 3 leads 0 (fair share 6.7)"
        );
    }

    #[test]
    fn leader_imbalance_table() {
        // (brokers, partitions led by each broker in order, reporting brokers)
        let table: [(&[i32], &[usize], &[i32]); 6] = [
            // Three partitions all on one of two brokers: 2x but only 1.5 over: no alarm.
            (&[1, 2], &[3, 0], &[]),
            // Twelve on one of two: 2x and 6 over.
            (&[1, 2], &[12, 0], &[1]),
            // One broker of three leads nothing after a restart: the other two carry 1.5x.
            (&[1, 2, 3], &[10, 10, 0], &[1, 2]),
            // Even.
            (&[1, 2, 3], &[7, 7, 6], &[]),
            // A single broker never reports imbalance.
            (&[1], &[50], &[]),
            // Slightly uneven (1.33x of 6): no alarm.
            (&[1, 2, 3], &[8, 6, 4], &[]),
        ];
        for (brokers, leads, want) in table {
            let mut parts = Vec::new();
            for (b, &n) in brokers.iter().zip(leads) {
                for _ in 0..n {
                    let id = parts.len() as i32;
                    parts.push(part(id, Some(*b), brokers, brokers));
                }
            }
            let c = cluster(brokers, vec![topic("t", parts)]);
            let got: Vec<i32> = brokers
                .iter()
                .copied()
                .filter(|&me| {
                    !evaluate(&c, me, &ClusterSettings::default())
                        .findings
                        .is_empty()
                })
                .collect();
            assert_eq!(got, want, "{brokers:?} leading {leads:?}");
        }
    }

    #[test]
    fn a_broker_holding_the_only_replicas_is_not_overloaded() {
        // Broker 1 holds the only replica of "solo" (12 partitions); "t" is spread evenly.
        let mut solo = balanced("solo", 12, &[1]);
        for p in &mut solo.partitions {
            p.replicas = vec![1];
            p.isr = vec![1];
        }
        let c = cluster(&[1, 2, 3], vec![solo, balanced("t", 9, &[1, 2, 3])]);
        let (by, led) = leadership(&c);
        assert_eq!(led, 21);
        assert_eq!(by[&1].leads, 15);
        assert!((by[&1].share - 15.0).abs() < 1e-9);
        assert!(evaluate(&c, 1, &ClusterSettings::default())
            .findings
            .is_empty());
    }

    #[test]
    fn empty_and_leaderless_clusters_do_not_panic() {
        let s = ClusterSettings::default();
        let r = evaluate(&Cluster::default(), 1, &s);
        assert!(r.findings.is_empty());
        assert_eq!(
            r.summary,
            "0 brokers, 0 partitions in 0 topics (0 internal), 0 offline, 0 under-replicated; broker 1 is not among the live brokers"
        );
        let c = cluster(&[1, 2], vec![topic("t", vec![part(0, None, &[], &[])])]);
        assert_eq!(
            checks(&evaluate(&c, 1, &s)),
            vec![("topic t".to_string(), Check::OfflinePartitions)]
        );
    }
}
