//! From probe outcomes to the published health: the start-up grace, publishing only when the
//! status or the set of failing findings changes (not when only figures move), and counting
//! consecutive failures for the optional probe-triggered restart. Pure: the caller supplies
//! the clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use super::{Check, ProbeResult};
use crate::registry::{Health, HealthStatus, Timestamp};

/// The health settings of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// An unreachable endpoint this soon after the child started is "not up yet" (unknown),
    /// and no failure in this window counts towards a restart.
    pub grace: Duration,
    /// Consecutive degraded results (after the grace) before the child is restarted; 0 = never.
    pub restart_after: u32,
    /// Which degraded results count towards `restart_after`.
    pub restart_on: RestartOn,
}

/// Which degraded results count towards a probe-triggered restart of the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartOn {
    /// Every degraded result (flume, http, command: the child is the pipeline).
    AnyFailure,
    /// Only an endpoint that does not answer or answers something unusable (kafka-connect: a
    /// FAILED task or connector is the cluster's business, fixed by restarting the task, and
    /// restarting the worker JVM would only rebalance every connector of the group).
    Unresponsive,
}

impl RestartOn {
    /// Whether a degraded `outcome` counts.
    fn counts(self, outcome: &ProbeResult) -> bool {
        match (self, outcome) {
            (RestartOn::AnyFailure, _) | (_, ProbeResult::Unreachable(_)) => true,
            (RestartOn::Unresponsive, ProbeResult::Answered(report)) => report
                .findings
                .iter()
                .any(|f| matches!(f.check, Check::Unreachable | Check::BadAnswer)),
        }
    }
}

/// What to do after one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The health as of this probe.
    pub health: Health,
    /// Whether it differs from what was published (status or failing findings).
    pub changed: bool,
    /// Restart the child, because of this detail.
    pub restart: Option<String>,
}

type Keys = BTreeSet<(String, Check)>;

/// The health of one child (start a new tracker for each child).
#[derive(Debug, Clone)]
pub struct HealthTracker {
    settings: HealthSettings,
    started: Instant,
    published: (HealthStatus, Keys),
    consecutive: u32,
    /// Probes in a row that got no answer.
    unanswered: u32,
}

impl HealthTracker {
    /// A tracker for a child started at `started`; it assumes [`initial`](Self::initial) is
    /// what the liveness node shows.
    pub fn new(settings: HealthSettings, started: Instant) -> Self {
        HealthTracker {
            settings,
            started,
            published: (HealthStatus::Unknown, Keys::new()),
            consecutive: 0,
            unanswered: 0,
        }
    }

    /// The health a new liveness node starts with, before any probe.
    pub fn initial(grace: Duration) -> Health {
        Health {
            status: HealthStatus::Unknown,
            detail: format!("starting (grace {})", humantime::format_duration(grace)),
            checked_at: None,
        }
    }

    /// Degraded results in a row after the grace.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Takes one probe's outcome.
    pub fn observe(&mut self, outcome: &ProbeResult, now: Instant, wall: SystemTime) -> Decision {
        let in_grace = now.saturating_duration_since(self.started) < self.settings.grace;
        let (status, detail, keys) = match outcome {
            ProbeResult::Unreachable(why) if in_grace => (
                HealthStatus::Unknown,
                format!("{}: {why}", Self::initial(self.settings.grace).detail),
                Keys::new(),
            ),
            // One unanswered probe of an endpoint that has answered is a blip, not news: Flume
            // restarts its monitoring server with every component on each config reload. It
            // changes nothing; the next probe unanswered too is degraded.
            ProbeResult::Unreachable(why)
                if self.unanswered == 0 && self.published.0 != HealthStatus::Unknown =>
            {
                (
                    self.published.0,
                    format!("{why} (once; degraded if the next probe gets no answer either)"),
                    self.published.1.clone(),
                )
            }
            ProbeResult::Unreachable(why) => (
                HealthStatus::Degraded,
                why.clone(),
                Keys::from([("endpoint".to_string(), Check::Unreachable)]),
            ),
            ProbeResult::Answered(report) if report.findings.is_empty() => {
                (HealthStatus::Ok, report.detail(), Keys::new())
            }
            // A server that answers but is not serving yet: a Kafka Connect worker answers 404
            // to `/connectors` until its REST resources are registered, seconds after its port
            // opens; a Flume sink on a Kafka channel takes nothing until the channel's consumer
            // has joined its group (the broker holds the first rebalance back 3 s), while the
            // source already puts. Inside the grace that is "not up yet", like a refused
            // connection; after it, the same findings are degraded.
            ProbeResult::Answered(report)
                if in_grace
                    && report
                        .findings
                        .iter()
                        .all(|f| matches!(f.check, Check::BadAnswer | Check::SinkStalled)) =>
            {
                (
                    HealthStatus::Unknown,
                    format!(
                        "{}: {}",
                        Self::initial(self.settings.grace).detail,
                        report.detail()
                    ),
                    Keys::new(),
                )
            }
            ProbeResult::Answered(report) => (
                HealthStatus::Degraded,
                report.detail(),
                report.findings.iter().map(|f| f.key()).collect(),
            ),
        };

        self.unanswered = match outcome {
            ProbeResult::Unreachable(_) => self.unanswered.saturating_add(1),
            ProbeResult::Answered(_) => 0,
        };
        self.consecutive = match status {
            HealthStatus::Degraded if in_grace => self.consecutive,
            HealthStatus::Degraded if self.settings.restart_on.counts(outcome) => {
                self.consecutive.saturating_add(1)
            }
            HealthStatus::Degraded | HealthStatus::Ok | HealthStatus::Unknown => 0,
        };
        let restart_after = self.settings.restart_after;
        let restart = (restart_after > 0 && self.consecutive >= restart_after).then(|| {
            self.consecutive = 0;
            detail.clone()
        });

        let current = (status, keys);
        let changed = current != self.published;
        if changed {
            self.published = current;
        }
        Decision {
            health: Health {
                status,
                detail,
                checked_at: Some(Timestamp(wall)),
            },
            changed,
            restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Finding, Report};

    fn settings(restart_after: u32) -> HealthSettings {
        HealthSettings {
            grace: Duration::from_secs(60),
            restart_after,
            restart_on: RestartOn::AnyFailure,
        }
    }

    fn refused() -> ProbeResult {
        ProbeResult::Unreachable("GET http://127.0.0.1:1/metrics failed: connection refused".into())
    }

    fn fill(pct: f64) -> ProbeResult {
        ProbeResult::Answered(Report {
            findings: vec![Finding::new(
                "CHANNEL.c1",
                Check::ChannelFill,
                format!("CHANNEL.c1 fill {pct:.1}% > 80.0%"),
            )],
            summary: String::new(),
            notes: vec![],
        })
    }

    fn ok(summary: &str) -> ProbeResult {
        ProbeResult::Answered(Report {
            summary: summary.into(),
            ..Report::default()
        })
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn unreachable_within_the_grace_is_unknown_and_after_it_degraded() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(0), t0);
        let d = h.observe(&refused(), at(t0, 10), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Unknown);
        assert!(
            d.health.detail.starts_with("starting (grace 1m): GET"),
            "{d:?}"
        );
        assert!(!d.changed, "still what the node was created with");
        let d = h.observe(&refused(), at(t0, 61), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Degraded);
        assert_eq!(
            d.health.detail,
            "GET http://127.0.0.1:1/metrics failed: connection refused"
        );
        assert!(d.changed);
        assert!(d.health.checked_at.is_some());
        assert_eq!(
            HealthTracker::initial(Duration::from_secs(60)).detail,
            "starting (grace 1m)"
        );
    }

    #[test]
    fn a_server_not_serving_yet_is_unknown_within_the_grace_and_degraded_after_it() {
        // What a real Kafka Connect worker answers for its first seconds.
        let not_yet = ProbeResult::Answered(Report {
            findings: vec![Finding::new(
                "http://127.0.0.1:8083/connectors",
                Check::BadAnswer,
                "GET http://127.0.0.1:8083/connectors?expand=status answered 404 Not Found",
            )],
            ..Report::default()
        });
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(1), t0);
        let d = h.observe(&not_yet, at(t0, 5), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Unknown, "{d:?}");
        assert!(
            d.health.detail.starts_with("starting (grace 1m): GET") && d.restart.is_none(),
            "{d:?}"
        );
        // A real finding inside the grace is still reported at once (it does not count towards
        // a restart until the grace is over).
        let d = h.observe(&fill(93.2), at(t0, 6), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Degraded);
        assert!(d.restart.is_none());
        let d = h.observe(&not_yet, at(t0, 61), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Degraded);
        assert!(d.restart.is_some(), "after the grace it counts: {d:?}");
    }

    #[test]
    fn a_sink_that_has_not_started_taking_is_unknown_within_the_grace_and_degraded_after_it() {
        // A real Flume agent with a Kafka channel: its sink takes nothing until the channel's
        // consumer has joined its group (the broker delays the first rebalance by 3 s), while
        // the source already puts.
        let not_taking = ProbeResult::Answered(Report {
            findings: vec![Finding::new(
                "SINK.k1",
                Check::SinkStalled,
                "SINK.k1 stalled: EventTakeSuccessCount flat at 0 for 3 probes while 86 events were put into CHANNEL.c1",
            )],
            ..Report::default()
        });
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(1), t0);
        let d = h.observe(&not_taking, at(t0, 5), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Unknown, "{d:?}");
        assert!(
            d.health
                .detail
                .starts_with("starting (grace 1m): SINK.k1 stalled"),
            "{d:?}"
        );
        let d = h.observe(&not_taking, at(t0, 61), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Degraded, "{d:?}");
        assert!(d.restart.is_some(), "after the grace it counts: {d:?}");
    }

    #[test]
    fn one_unanswered_probe_after_answers_is_a_blip_and_two_are_degraded() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(0), t0);
        assert!(
            h.observe(&ok("fine"), at(t0, 61), SystemTime::now())
                .changed
        );
        // Flume reloading its configuration: the monitoring port is closed for a moment.
        let d = h.observe(&refused(), at(t0, 62), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Ok, "{d:?}");
        assert!(!d.changed && d.health.detail.contains("once;"), "{d:?}");
        assert!(
            !h.observe(&ok("fine"), at(t0, 63), SystemTime::now())
                .changed
        );
        // Two in a row: degraded.
        h.observe(&refused(), at(t0, 64), SystemTime::now());
        let d = h.observe(&refused(), at(t0, 65), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Degraded);
        assert!(d.changed);
        // An endpoint that never answered is degraded at the first probe after the grace.
        let mut h = HealthTracker::new(settings(0), t0);
        let d = h.observe(&refused(), at(t0, 61), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Degraded);
    }

    #[test]
    fn publishes_only_when_status_or_findings_change() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(0), t0);
        assert!(
            h.observe(&ok("fill 1%"), at(t0, 1), SystemTime::now())
                .changed
        );
        assert!(
            !h.observe(&ok("fill 2%"), at(t0, 2), SystemTime::now())
                .changed
        );
        assert!(h.observe(&fill(90.0), at(t0, 3), SystemTime::now()).changed);
        let d = h.observe(&fill(95.0), at(t0, 4), SystemTime::now());
        assert!(!d.changed, "only the figures moved");
        assert!(d.health.detail.contains("95.0%"));
        // Another finding joins: changed.
        let mut two = Report {
            findings: vec![
                Finding::new("CHANNEL.c1", Check::ChannelFill, "a"),
                Finding::new("SINK.k1", Check::SinkStalled, "b"),
            ],
            ..Report::default()
        };
        assert!(
            h.observe(
                &ProbeResult::Answered(two.clone()),
                at(t0, 5),
                SystemTime::now()
            )
            .changed
        );
        two.findings.reverse();
        assert!(
            !h.observe(&ProbeResult::Answered(two), at(t0, 6), SystemTime::now())
                .changed
        );
        assert!(h.observe(&ok("fine"), at(t0, 7), SystemTime::now()).changed);
    }

    #[test]
    fn restart_after_consecutive_failures_past_the_grace() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(3), t0);
        // Failures within the grace do not count.
        for s in 0..5 {
            assert_eq!(
                h.observe(&fill(90.0), at(t0, s), SystemTime::now()).restart,
                None
            );
        }
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(
            h.observe(&fill(90.0), at(t0, 61), SystemTime::now())
                .restart,
            None
        );
        // A good probe resets the count.
        h.observe(&ok("fine"), at(t0, 62), SystemTime::now());
        assert_eq!(
            h.observe(&fill(90.0), at(t0, 63), SystemTime::now())
                .restart,
            None
        );
        assert_eq!(
            h.observe(&refused(), at(t0, 64), SystemTime::now()).restart,
            None
        );
        let d = h.observe(&fill(91.0), at(t0, 65), SystemTime::now());
        assert_eq!(d.restart.as_deref(), Some("CHANNEL.c1 fill 91.0% > 80.0%"));
        assert_eq!(h.consecutive_failures(), 0, "counting starts over");
    }

    #[test]
    fn restart_is_off_by_default() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(0), t0);
        for s in 61..200 {
            assert_eq!(
                h.observe(&fill(99.0), at(t0, s), SystemTime::now()).restart,
                None
            );
        }
    }

    fn task_failed() -> ProbeResult {
        ProbeResult::Answered(Report {
            findings: vec![Finding::new(
                "connector c task 0",
                Check::TaskFailed,
                "connector c task 0 FAILED on worker 127.0.0.1:8083",
            )],
            ..Report::default()
        })
    }

    fn bad_answer() -> ProbeResult {
        ProbeResult::Answered(Report {
            findings: vec![Finding::new(
                "http://127.0.0.1:8083/connectors?expand=status",
                Check::BadAnswer,
                "GET http://127.0.0.1:8083/connectors?expand=status answered 500",
            )],
            ..Report::default()
        })
    }

    #[test]
    fn a_worker_is_restarted_only_when_it_does_not_answer() {
        // (outcome, restart expected) with restart_after 2, past the grace.
        let table: Vec<(ProbeResult, bool)> = vec![
            (task_failed(), false),
            (task_failed(), false),
            (task_failed(), false),
            (refused(), false),
            (task_failed(), false), // the worker answered: the count starts over
            (refused(), false),
            (bad_answer(), true),
            (bad_answer(), false),
            (bad_answer(), true),
            (ok("all RUNNING"), false),
        ];
        let t0 = Instant::now();
        let mut h = HealthTracker::new(
            HealthSettings {
                restart_on: RestartOn::Unresponsive,
                ..settings(2)
            },
            t0,
        );
        for (i, (outcome, restart)) in table.into_iter().enumerate() {
            let d = h.observe(&outcome, at(t0, 61 + i as u64), SystemTime::now());
            assert_eq!(d.restart.is_some(), restart, "row {i}: {d:?}");
            assert_eq!(d.health.status == HealthStatus::Ok, i == 9, "row {i}");
        }
        // The same findings restart a flume/http/command child.
        let mut h = HealthTracker::new(settings(2), t0);
        h.observe(&task_failed(), at(t0, 61), SystemTime::now());
        assert!(h
            .observe(&task_failed(), at(t0, 62), SystemTime::now())
            .restart
            .is_some());
    }

    #[test]
    fn an_endpoint_that_is_not_up_yet_is_unknown_however_often_it_is_probed_in_the_grace() {
        // Flume's monitoring port opens only after the channels are up (2-5 s on a JVM).
        let t0 = Instant::now();
        let mut h = HealthTracker::new(settings(1), t0);
        for ms in (100..6000).step_by(100) {
            let d = h.observe(
                &refused(),
                t0 + Duration::from_millis(ms),
                SystemTime::now(),
            );
            assert_eq!(d.health.status, HealthStatus::Unknown, "at {ms} ms");
            assert!(!d.changed && d.restart.is_none(), "at {ms} ms: {d:?}");
        }
        assert_eq!(h.consecutive_failures(), 0);
        let d = h.observe(&ok("CHANNEL.c1 fill 0.0%"), at(t0, 6), SystemTime::now());
        assert_eq!(d.health.status, HealthStatus::Ok);
        assert!(d.changed);
    }
}
