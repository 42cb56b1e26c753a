//! Consumer groups' lag, judged two ways: against a threshold, and by the way the committed
//! offsets move over a sliding window of probes (after LinkedIn Burrow's consumer lag
//! evaluation). Pure: [`LagWindows`] is a state machine fed one probe's offsets at a time, the
//! clock passed in.
//!
//! **Who judges a group** ([`Scope`], the one place this rule is written). Every broker's
//! watchdog reads the same groups, so a group is judged by the watchdog of the broker that
//! coordinates it (`GroupOffsets::coordinator`); a group whose coordinator is unknown by the
//! live broker with the lowest id. A watchdog that wraps no broker judges every group it reads.
//! Windows are kept only for the groups judged here: when a group's coordinator moves, the new
//! coordinator's watchdog starts its window afresh.
//!
//! **Lag** of a partition is log-end offset minus committed offset, never negative; a partition
//! with nothing committed counts its whole log. Figures are summed per (group, topic), and each
//! rule gives at most one finding per group, topic and rule (component `group G topic T`),
//! naming the partitions concerned and their lag.
//!
//! **Threshold.** A group's lag summed over a topic's partitions above the threshold (the
//! topic's own, else the default; none: not judged) is a finding.
//!
//! **Window rules.** For each (group, topic, partition) with a committed offset, the window
//! holds the last N probes' samples (committed offset, log-end offset, time; N = 10 by
//! default). The STOP, STALL and WARN rules are judged only once the window is full; a
//! partition with nothing committed has no window and is judged by the threshold only (a note
//! says so); a partition or group absent from a probe is forgotten, so memory is bounded by
//! what the last probe read.
//! - OK: lag 0 in any sample of the window means the group caught up within it; nothing else
//!   is judged. An idle group on an idle topic (lag 0 throughout) is always OK.
//! - STOP: the committed offset is the same in every sample, the lag is above 0 in every
//!   sample, the offset has not changed for at least `min_unchanged` (3 minutes by default,
//!   longer than Kafka Connect's 60 s offset flush plus a probe interval; the time is counted
//!   from the first probe that saw the current offset, so it is never shorter than the window's
//!   span), and the group has no consuming members: its state is anything but `Stable`
//!   (`Empty`, `Dead`, a rebalance, unknown). Nobody is consuming.
//! - STALL: the same offsets, but the group is `Stable`: members hold the partitions and do not
//!   get anywhere (a poison message, a blocked sink, a hung thread).
//! - WARN: the committed offset advanced over the window, never went back and still advances
//!   in the window's later half, yet the lag grew at every probe of the window: the group
//!   consumes more slowly than the topic is written. A consumer that died early in the window
//!   (its last commit in the first samples) is not slow but gone: the threshold judges it, then
//!   STOP once the window holds only its last offset.
//! - REWIND: the committed offset went back between two probes. Judged as soon as there are
//!   two samples; the finding stays while both samples of that step are in the window (N − 1
//!   probes), so one rewind is one incident, and it clears by itself. Caught-up does not hide
//!   it (an offset reset of a caught-up group is news too).
//!
//! How this differs from Burrow: Burrow stores one sample per commit, with the commit's time,
//! so it can tell commits that stopped arriving (STOPPED) from commits that arrive but repeat
//! the offset (STALLED). A probe sees only the committed offset (OffsetFetch carries no commit
//! time) and samples it at probe times, so a commit repeating the offset is invisible; the
//! group's state tells the two apart instead. And because the window moves with probes, not
//! commits, STOP and STALL need the offset unchanged for `min_unchanged` besides the full
//! window: probes faster than a consumer commits must not call it stopped between two commits.

pub mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{count, list_compact, Check, Finding, Report};
use crate::kafka::snapshot::{Cluster, GroupOffsets};
use window::{Sample, Verdict, Window};

/// The largest window accepted (a larger setting is treated as this).
pub const MAX_WINDOW: usize = 100;
/// Partitions listed in one finding before "and N more".
pub const LIST_MAX: usize = 10;

/// The lag checks' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSettings {
    /// A group's lag on a topic above this is a finding (`None`: no threshold).
    pub threshold: Option<i64>,
    /// Per-topic thresholds, overriding `threshold`.
    pub per_topic: BTreeMap<String, i64>,
    /// Probes in the sliding window (from 2 to [`MAX_WINDOW`]; 10 by default).
    pub window: usize,
    /// STOP and STALL need the committed offset unchanged at least this long.
    pub min_unchanged: Duration,
}

impl Default for LagSettings {
    fn default() -> Self {
        LagSettings {
            threshold: None,
            per_topic: BTreeMap::new(),
            window: 10,
            min_unchanged: Duration::from_secs(180),
        }
    }
}

impl LagSettings {
    /// The threshold for `topic`: its own, else the default.
    pub fn threshold_for(&self, topic: &str) -> Option<i64> {
        self.per_topic.get(topic).copied().or(self.threshold)
    }

    /// The window's size as used.
    pub fn capacity(&self) -> usize {
        self.window.clamp(2, MAX_WINDOW)
    }
}

/// Which groups this watchdog judges (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every group read (a watchdog that wraps no broker).
    Every,
    /// The groups coordinated by broker `me`, and those whose coordinator is unknown when `me`
    /// is the live broker with the lowest id.
    Coordinator {
        /// The wrapped broker's id.
        me: i32,
        /// Whether `me` is the live broker with the lowest id.
        lowest_live: bool,
    },
}

impl Scope {
    /// The scope of broker `me` in `cluster`.
    pub fn broker(me: i32, cluster: &Cluster) -> Self {
        Scope::Coordinator {
            me,
            lowest_live: cluster.lowest_live_broker() == Some(me),
        }
    }

    /// Whether `group` is judged here.
    pub fn judges(&self, group: &GroupOffsets) -> bool {
        match *self {
            Scope::Every => true,
            Scope::Coordinator { me, lowest_live } => match group.coordinator {
                Some(coordinator) => coordinator == me,
                None => lowest_live,
            },
        }
    }
}

/// Whether the group has members holding its partitions: its state is `Stable`.
fn consuming(group: &GroupOffsets) -> bool {
    group
        .state
        .as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("stable"))
}

/// One partition as this probe judged it.
#[derive(Debug, Clone, Copy)]
struct Judged {
    partition: i32,
    lag: i64,
    committed: bool,
    verdict: Verdict,
    rewind: Option<(i64, i64)>,
}

/// `0: 700`, marked when nothing is committed.
fn lag_item(j: &Judged) -> String {
    if j.committed {
        format!("{}: {}", j.partition, j.lag)
    } else {
        format!("{}: {} (nothing committed)", j.partition, j.lag)
    }
}

/// A duration in whole seconds, as people write it (`3m 30s`).
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// The sliding windows of the groups judged here.
#[derive(Debug, Clone)]
pub struct LagWindows {
    settings: LagSettings,
    /// Group → (topic, partition) → window.
    groups: BTreeMap<String, BTreeMap<(String, i32), Window>>,
}

impl LagWindows {
    /// No history yet.
    pub fn new(settings: LagSettings) -> Self {
        LagWindows {
            settings,
            groups: BTreeMap::new(),
        }
    }

    /// Partitions with a window (bounded by what the last probe read).
    pub fn tracked(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    /// Takes one probe's offsets of every group read, judges those in `scope`, and forgets
    /// whatever the probe no longer shows.
    pub fn observe(&mut self, groups: &[GroupOffsets], scope: Scope, now: Instant) -> Report {
        let capacity = self.settings.capacity();
        let mut previous = std::mem::take(&mut self.groups);
        let mut report = Report::default();
        let mut seen = BTreeSet::new();
        let (mut judged, mut elsewhere, mut partitions, mut total) = (0usize, 0usize, 0usize, 0i64);
        let mut fill: Option<usize> = None;
        for group in groups {
            if !scope.judges(group) {
                elsewhere += 1;
                continue;
            }
            judged += 1;
            let consuming = consuming(group);
            let mut before = previous.remove(&group.group).unwrap_or_default();
            let windows = self.groups.entry(group.group.clone()).or_default();
            let mut topics: BTreeMap<&str, Vec<Judged>> = BTreeMap::new();
            for p in &group.partitions {
                if !seen.insert((&group.group, &p.topic, p.partition)) {
                    continue; // listed twice in one probe: the first counts
                }
                partitions += 1;
                let lag = p.lag();
                total = total.saturating_add(lag);
                let key = (p.topic.clone(), p.partition);
                let mut j = Judged {
                    partition: p.partition,
                    lag,
                    committed: p.committed.is_some(),
                    verdict: Verdict::Filling,
                    rewind: None,
                };
                if let Some(committed) = p.committed {
                    let sample = Sample {
                        committed,
                        log_end: p.log_end,
                        at: now,
                    };
                    let w = match before.remove(&key) {
                        Some(mut w) => {
                            w.push(sample, capacity);
                            w
                        }
                        None => Window::new(sample),
                    };
                    j.verdict = w.judge(capacity, consuming, self.settings.min_unchanged, now);
                    j.rewind = w.rewind();
                    fill = Some(fill.map_or(w.samples().len(), |f| f.min(w.samples().len())));
                    windows.insert(key, w);
                }
                topics.entry(&p.topic).or_default().push(j);
            }
            for (topic, mut judged) in topics {
                judged.sort_by_key(|j| j.partition);
                self.topic_findings(group, topic, &judged, &mut report);
            }
        }
        self.groups.retain(|_, windows| !windows.is_empty());

        report.summary = match (judged, elsewhere) {
            (0, 0) => "no consumer groups".to_string(),
            (0, e) => format!("no groups judged here ({e} left to their coordinators)"),
            (j, e) => {
                let mut s = format!(
                    "{} judged here, {}, lag {total}",
                    count(j, "group"),
                    count(partitions, "partition")
                );
                if e > 0 {
                    s.push_str(&format!(
                        ", {} left to their coordinators",
                        count(e, "group")
                    ));
                }
                if let Some(fill) = fill {
                    s.push_str(&format!("; window {fill}/{capacity} probes"));
                }
                s
            }
        };
        report
    }

    /// The findings of one group on one topic (partitions sorted), and the note about
    /// partitions with nothing committed.
    fn topic_findings(
        &self,
        group: &GroupOffsets,
        topic: &str,
        judged: &[Judged],
        report: &mut Report,
    ) {
        let g = &group.group;
        let component = format!("group {g} topic {topic}");
        let head = format!("group {g} topic {topic}");
        let capacity = self.settings.capacity();
        let lags = |of: &[&Judged]| {
            (
                of.iter().map(|j| j.lag).fold(0i64, i64::saturating_add),
                list_compact(of.iter().map(|j| lag_item(j)), LIST_MAX),
            )
        };
        let mut push = |check, detail| {
            report
                .findings
                .push(Finding::new(&component, check, detail))
        };

        let all: Vec<&Judged> = judged.iter().collect();
        let (total, _) = lags(&all);
        if let Some(limit) = self.settings.threshold_for(topic).filter(|&l| total > l) {
            let behind: Vec<&Judged> = judged.iter().filter(|j| j.lag > 0).collect();
            let (_, list) = lags(&behind);
            push(
                Check::ConsumerLag,
                format!("{head}: lag {total} > threshold {limit} (partitions {list})"),
            );
        }

        let state = group.state.as_deref().unwrap_or("unknown");
        let unchanged = |stalled: bool| {
            let of: Vec<&Judged> = judged
                .iter()
                .filter(|j| match j.verdict {
                    Verdict::Stalled { .. } => stalled,
                    Verdict::Stopped { .. } => !stalled,
                    _ => false,
                })
                .collect();
            let shortest = of
                .iter()
                .filter_map(|j| match j.verdict {
                    Verdict::Stalled { unchanged_for } | Verdict::Stopped { unchanged_for } => {
                        Some(unchanged_for)
                    }
                    _ => None,
                })
                .min()?;
            let (sum, list) = lags(&of);
            Some(format!(
                "{head}: lag {sum} (partitions {list}), {}: committed offsets unchanged for {} while lag > 0 at each of the last {capacity} probes, group state {state}{}",
                if stalled { "STALL" } else { "STOP" },
                human(shortest),
                if stalled {
                    " (members hold the partitions, no progress)"
                } else {
                    " (no member consuming)"
                }
            ))
        };
        if let Some(detail) = unchanged(false) {
            push(Check::ConsumerStopped, detail);
        }
        if let Some(detail) = unchanged(true) {
            push(Check::ConsumerStalled, detail);
        }

        let rewound: Vec<String> = judged
            .iter()
            .filter_map(|j| {
                j.rewind
                    .map(|(a, b)| format!("{} ({a} → {b})", j.partition))
            })
            .collect();
        if !rewound.is_empty() {
            push(
                Check::OffsetRewind,
                format!(
                    "{head}: REWIND: committed offset went back on partitions {}",
                    list_compact(rewound, LIST_MAX)
                ),
            );
        }

        let behind: Vec<&Judged> = judged
            .iter()
            .filter(|j| matches!(j.verdict, Verdict::FallingBehind { .. }))
            .collect();
        if !behind.is_empty() {
            let (sum, list) = lags(&behind);
            let growth = list_compact(
                behind.iter().filter_map(|j| match j.verdict {
                    Verdict::FallingBehind { from, to } => {
                        Some(format!("{}: {from} → {to}", j.partition))
                    }
                    _ => None,
                }),
                LIST_MAX,
            );
            push(
                Check::ConsumerFallingBehind,
                format!(
                    "{head}: lag {sum} (partitions {list}), WARN: lag grew at each of the last {} probes while committed offsets advanced ({growth})",
                    capacity - 1
                ),
            );
        }

        let uncommitted: Vec<i32> = judged
            .iter()
            .filter(|j| !j.committed)
            .map(|j| j.partition)
            .collect();
        if !uncommitted.is_empty() {
            report.notes.push(format!(
                "{head} partitions {}: nothing committed, judged by threshold only",
                list_compact(uncommitted, LIST_MAX)
            ));
        }
    }
}

#[cfg(test)]
mod tests;
