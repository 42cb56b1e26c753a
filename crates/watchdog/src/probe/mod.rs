//! Health probes (DESIGN.md section 3): what a probe found, in a form the pure evaluators
//! produce and the health tracker compares.
//!
//! - [`flume`], [`connect`], [`generic`]: pure evaluators of one answer (Flume metrics JSON,
//!   Kafka Connect status JSON, an HTTP status or a command's exit);
//! - [`kafka`]: the pure evaluator of a Kafka cluster's metadata (offline and under-replicated
//!   partitions, leader imbalance), each finding reported by one broker's watchdog;
//! - [`lag`]: consumer groups' lag, by threshold and by a sliding window of offsets (a pure
//!   state machine, the clock passed in);
//! - [`remediation`]: the pure backoff/cap state machine for restarting failed Connect tasks;
//! - [`health`]: consecutive failures, start-up grace, and publishing only on change;
//! - [`driver`]: the thin I/O task that runs the probes and reports to the run loop;
//! - [`kafka_round`]: one Kafka probe round (the wire client's reads → the evaluators → metrics).

pub mod connect;
pub mod driver;
pub mod flume;
pub mod generic;
pub mod health;
pub mod kafka;
pub mod kafka_round;
pub mod lag;
pub mod remediation;

use std::fmt;

/// Longest health detail published (ZooKeeper nodes are small; a trace can be long).
pub const MAX_DETAIL: usize = 2000;

/// What a finding checks. Together with the component it identifies a finding across probes:
/// the figures in its detail may change without the finding being "new".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// A Flume channel is fuller than the threshold.
    ChannelFill,
    /// A Flume sink takes nothing while its channel holds events.
    SinkStalled,
    /// A Flume sink's `ConnectionFailedCount` grew.
    ConnectionFailures,
    /// A Flume source's failure counters (`EventReadFail`, `ChannelWriteFail`,
    /// `GenericProcessingFail`) grew.
    SourceFailures,
    /// A Flume sink's failure counters (`EventWriteFail`, `ChannelReadFail`) grew.
    SinkFailures,
    /// A Kafka Connect connector is FAILED.
    ConnectorFailed,
    /// A Kafka Connect task is FAILED.
    TaskFailed,
    /// Restarting a connector's failed tasks did not fix it (two or more restarts so far).
    RemediationFailing,
    /// Restarting a connector's failed tasks gave up (the attempt limit is reached).
    RemediationGaveUp,
    /// The endpoint did not answer (connection refused, timeout).
    Unreachable,
    /// The endpoint answered something unusable (not JSON, unexpected shape, non-2xx).
    BadAnswer,
    /// The probe command exited non-zero (or could not run).
    CommandFailed,
    /// Kafka partitions without a leader.
    OfflinePartitions,
    /// Kafka partitions with fewer replicas in sync than assigned.
    UnderReplicated,
    /// A Kafka broker leads far more partitions than its fair share.
    LeaderImbalance,
    /// A consumer group's lag on a topic is over the threshold.
    ConsumerLag,
    /// A consumer group does not commit while it has lag and no member is consuming (window
    /// rule STOP).
    ConsumerStopped,
    /// A consumer group's members are there but its committed offsets do not move while it
    /// has lag (window rule STALL).
    ConsumerStalled,
    /// A consumer group's committed offset went backwards (window rule REWIND).
    OffsetRewind,
    /// A consumer group commits but its lag grew at every probe of the window (window rule
    /// WARN).
    ConsumerFallingBehind,
}

impl Check {
    /// The check's name in logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Check::ChannelFill => "channel-fill",
            Check::SinkStalled => "sink-stalled",
            Check::ConnectionFailures => "connection-failures",
            Check::SourceFailures => "source-failures",
            Check::SinkFailures => "sink-failures",
            Check::ConnectorFailed => "connector-failed",
            Check::TaskFailed => "task-failed",
            Check::RemediationFailing => "remediation-failing",
            Check::RemediationGaveUp => "remediation-gave-up",
            Check::Unreachable => "unreachable",
            Check::BadAnswer => "bad-answer",
            Check::CommandFailed => "command-failed",
            Check::OfflinePartitions => "offline-partitions",
            Check::UnderReplicated => "under-replicated",
            Check::LeaderImbalance => "leader-imbalance",
            Check::ConsumerLag => "consumer-lag",
            Check::ConsumerStopped => "consumer-stopped",
            Check::ConsumerStalled => "consumer-stalled",
            Check::OffsetRewind => "offset-rewind",
            Check::ConsumerFallingBehind => "consumer-falling-behind",
        }
    }
}

/// One problem a probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The component it concerns (`CHANNEL.c1`, `SINK.k1`, `connector jdbc-sink task 0`, a URL).
    pub component: String,
    pub check: Check,
    /// Human-readable, with the figures (`CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)`).
    pub detail: String,
}

impl Finding {
    pub fn new(component: impl Into<String>, check: Check, detail: impl Into<String>) -> Self {
        Finding {
            component: component.into(),
            check,
            detail: detail.into(),
        }
    }

    /// What identifies this finding across probes (not its figures).
    pub fn key(&self) -> (String, Check) {
        (self.component.clone(), self.check)
    }
}

/// The result of one probe that got an answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Problems; none means healthy.
    pub findings: Vec<Finding>,
    /// One line describing the healthy figures (`CHANNEL.c1 fill 12.0%, SINK.k1 draining`).
    pub summary: String,
    /// Checks that were skipped and why (a missing or unparsable field), never a failure.
    pub notes: Vec<String>,
}

impl Report {
    /// The published detail: the findings (or the summary when there are none), then the notes.
    pub fn detail(&self) -> String {
        let mut parts: Vec<String> = if self.findings.is_empty() {
            vec![self.summary.clone()]
        } else {
            self.findings.iter().map(|f| f.detail.clone()).collect()
        };
        if !self.notes.is_empty() {
            parts.push(format!("skipped: {}", self.notes.join(", ")));
        }
        truncate(&parts.join("; "), MAX_DETAIL)
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeResult {
    /// The endpoint could not be reached (refused, timed out, reset): during the start-up grace
    /// this is "not up yet", not a failure.
    Unreachable(String),
    /// The endpoint answered; the report says what it found.
    Answered(Report),
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// `1 partition`, `0 partitions`, `2 partitions`.
pub fn count(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// Items listed one after another, at most `max` of them, then how many more there are
/// (`0 (lag 700), 1 (lag 500), and 3 more`): a finding about many partitions stays readable.
pub fn list_compact<I>(items: I, max: usize) -> String
where
    I: IntoIterator,
    I::Item: fmt::Display,
{
    let mut shown = Vec::new();
    let mut more = 0usize;
    for item in items {
        if shown.len() < max {
            shown.push(item.to_string());
        } else {
            more += 1;
        }
    }
    let mut text = shown.join(", ");
    if more > 0 {
        text.push_str(&format!(", and {more} more"));
    }
    text
}

/// A figure as people read it: whole numbers without a fraction (`1200`, not `1200.0` or
/// `1.2E3`), others with up to three decimals.
pub fn figure(value: f64) -> Figure {
    Figure(value)
}

/// See [`figure`].
#[derive(Debug, Clone, Copy)]
pub struct Figure(f64);

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 1e15 {
            write!(f, "{}", v as i64)
        } else {
            let text = format!("{v:.3}");
            write!(f, "{}", text.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_like_people_write_them() {
        assert_eq!(figure(1200.0).to_string(), "1200");
        assert_eq!(figure(1.0e7).to_string(), "10000000");
        assert_eq!(figure(0.0005).to_string(), "0.001");
        assert_eq!(figure(2.5).to_string(), "2.5");
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        assert_eq!(list_compact(1..=3, 10), "1, 2, 3");
        assert_eq!(
            list_compact(1..=13, 10),
            "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, and 3 more"
        );
        assert_eq!(list_compact(Vec::<String>::new(), 10), "");
        assert_eq!(count(1, "group"), "1 group");
        assert_eq!(count(0, "group"), "0 groups");
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 10), "abc");
        let cut = truncate("ééééé", 6);
        assert!(cut.len() <= 6 && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn detail_lists_findings_then_notes() {
        let r = Report {
            findings: vec![
                Finding::new("a", Check::ChannelFill, "A bad"),
                Finding::new("b", Check::SinkStalled, "B bad"),
            ],
            summary: "fine".into(),
            notes: vec!["CHANNEL.c2 ChannelSize missing".into()],
        };
        assert_eq!(
            r.detail(),
            "A bad; B bad; skipped: CHANNEL.c2 ChannelSize missing"
        );
        let ok = Report {
            summary: "all 2 connectors RUNNING".into(),
            ..Report::default()
        };
        assert_eq!(ok.detail(), "all 2 connectors RUNNING");
    }
}
