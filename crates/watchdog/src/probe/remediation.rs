//! Remediation of FAILED Kafka Connect tasks: which connectors to restart now
//! (`POST /connectors/NAME/restart?includeTasks=true&onlyFailed=true`), with capped exponential
//! backoff per connector and a limit after which it gives up. Pure: the caller supplies the
//! clock and performs the requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{Check, Finding};

/// The `task-restart-*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationPolicy {
    /// Delay after the first restart before the next one may be tried.
    pub initial: Duration,
    /// Largest delay between restarts; also how long a connector must stay healthy before its
    /// attempts are forgotten.
    pub max: Duration,
    /// Restarts tried while the connector keeps failing before giving up.
    pub limit: u32,
}

/// How a restart request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartResult {
    /// 202 Accepted, 204 No Content (or another 2xx).
    Accepted(u16),
    /// 404: the connector is gone; nothing to restart.
    NotFound,
    /// 409: a rebalance is in progress; try again later.
    Conflict,
    /// Any other answer, or no answer.
    Failed(String),
}

impl RestartResult {
    fn describe(&self) -> String {
        match self {
            RestartResult::Accepted(code) => format!("{code} accepted"),
            RestartResult::NotFound => "404 unknown connector".to_string(),
            RestartResult::Conflict => "409 rebalance in progress".to_string(),
            RestartResult::Failed(why) => why.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    attempts: u32,
    next_at: Instant,
    last: Option<String>,
    /// The worker said 404: do not retry until the connector is seen healthy again.
    gone: bool,
    healthy_since: Option<Instant>,
}

/// Restart bookkeeping for the connectors of the current child.
#[derive(Debug, Clone)]
pub struct Remediation {
    policy: RemediationPolicy,
    tracks: BTreeMap<String, Track>,
}

impl Remediation {
    pub fn new(policy: RemediationPolicy) -> Self {
        Remediation {
            policy,
            tracks: BTreeMap::new(),
        }
    }

    /// Takes in which connectors are failing now and returns those to restart now.
    ///
    /// A connector that stays healthy (or absent) for `max` is forgotten, so a later failure
    /// starts with a fresh budget; one that fails again sooner keeps its count, so a task that
    /// fails right after every restart ends in "gave up".
    pub fn due(&mut self, failing: &BTreeSet<String>, now: Instant) -> Vec<String> {
        let max = self.policy.max;
        self.tracks.retain(|name, t| {
            if failing.contains(name) {
                return true;
            }
            let since = *t.healthy_since.get_or_insert(now);
            now.saturating_duration_since(since) < max
        });
        let mut due = Vec::new();
        for name in failing {
            let t = self.tracks.entry(name.clone()).or_insert(Track {
                attempts: 0,
                next_at: now,
                last: None,
                gone: false,
                healthy_since: None,
            });
            t.healthy_since = None;
            if !t.gone && t.attempts < self.policy.limit && now >= t.next_at {
                due.push(name.clone());
            }
        }
        due
    }

    /// Records how a restart of `name` went.
    pub fn record(&mut self, name: &str, result: RestartResult, now: Instant) {
        let Some(t) = self.tracks.get_mut(name) else {
            return;
        };
        t.last = Some(result.describe());
        if result == RestartResult::NotFound {
            t.gone = true;
            return;
        }
        t.attempts = t.attempts.saturating_add(1);
        let delay = match result {
            // A rebalance is usually over within seconds: try again soon, it still counts.
            RestartResult::Conflict => self.policy.initial,
            _ => self
                .policy
                .initial
                .checked_mul(1u32 << (t.attempts - 1).min(20))
                .unwrap_or(self.policy.max)
                .min(self.policy.max),
        };
        t.next_at = now + delay;
    }

    /// Restarts tried for `name` since it last recovered.
    pub fn attempts(&self, name: &str) -> u32 {
        self.tracks.get(name).map_or(0, |t| t.attempts)
    }

    /// Findings for failing connectors that restarts did not fix: "keeps failing" after two or
    /// more restarts, "gave up" once the limit is reached (a distinct finding, so that giving
    /// up is published).
    pub fn findings(&self, failing: &BTreeSet<String>) -> Vec<Finding> {
        let limit = self.policy.limit;
        let mut out = Vec::new();
        for name in failing {
            let Some(t) = self.tracks.get(name) else {
                continue;
            };
            let last = t.last.as_deref().unwrap_or("no answer");
            let component = format!("connector {name}");
            if t.attempts >= limit {
                out.push(Finding::new(
                    component,
                    Check::RemediationGaveUp,
                    format!(
                        "connector {name}: remediation gave up after {} restarts, still FAILED (last: {last})",
                        t.attempts
                    ),
                ));
            } else if t.attempts >= 2 {
                out.push(Finding::new(
                    component,
                    Check::RemediationFailing,
                    format!(
                        "connector {name} keeps failing after {} of {limit} restarts (last: {last})",
                        t.attempts
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RemediationPolicy {
        RemediationPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(40),
            limit: 4,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn backoff_grows_to_the_cap_then_gives_up() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let failing = set(&["c"]);
        assert_eq!(r.due(&failing, t0), vec!["c"]);
        r.record("c", RestartResult::Accepted(202), t0);
        let mut tried = vec![0];
        for s in 1..=200 {
            if !r.due(&failing, secs(t0, s)).is_empty() {
                tried.push(s);
                r.record("c", RestartResult::Accepted(204), secs(t0, s));
            }
        }
        // Delays 10s, 20s, 40s (capped), then the limit of 4 is reached.
        assert_eq!(tried, vec![0, 10, 30, 70]);
        assert_eq!(r.attempts("c"), 4);
        let f = r.findings(&failing);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, Check::RemediationGaveUp);
        assert_eq!(
            f[0].detail,
            "connector c: remediation gave up after 4 restarts, still FAILED (last: 204 accepted)"
        );
    }

    #[test]
    fn keeps_failing_is_reported_before_giving_up() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let failing = set(&["c"]);
        r.due(&failing, t0);
        r.record("c", RestartResult::Accepted(202), t0);
        assert!(
            r.findings(&failing).is_empty(),
            "one restart is not yet a pattern"
        );
        r.due(&failing, secs(t0, 10));
        r.record(
            "c",
            RestartResult::Failed("500 Internal Server Error".into()),
            secs(t0, 10),
        );
        let f = r.findings(&failing);
        assert_eq!(f[0].check, Check::RemediationFailing);
        assert!(
            f[0].detail
                .contains("keeps failing after 2 of 4 restarts (last: 500"),
            "{f:?}"
        );
    }

    #[test]
    fn conflict_is_retried_after_the_initial_delay() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let failing = set(&["c"]);
        r.due(&failing, t0);
        r.record("c", RestartResult::Accepted(202), t0);
        r.due(&failing, secs(t0, 10));
        r.record("c", RestartResult::Conflict, secs(t0, 10));
        assert!(r.due(&failing, secs(t0, 19)).is_empty());
        assert_eq!(r.due(&failing, secs(t0, 20)), vec!["c"]);
    }

    #[test]
    fn not_found_stops_retrying() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let failing = set(&["gone"]);
        r.due(&failing, t0);
        r.record("gone", RestartResult::NotFound, t0);
        assert!(r.due(&failing, secs(t0, 1000)).is_empty());
        assert!(r.findings(&failing).is_empty());
    }

    #[test]
    fn recovery_forgets_attempts_only_after_staying_healthy() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let failing = set(&["c"]);
        let none = set(&[]);
        r.due(&failing, t0);
        r.record("c", RestartResult::Accepted(202), t0);
        // Healthy briefly, then failing again: the count carries on.
        r.due(&none, secs(t0, 5));
        r.due(&failing, secs(t0, 20));
        assert_eq!(r.attempts("c"), 1);
        // Healthy for `max`: forgotten.
        r.due(&none, secs(t0, 30));
        r.due(&none, secs(t0, 70));
        assert_eq!(r.attempts("c"), 0);
        assert_eq!(r.due(&failing, secs(t0, 71)), vec!["c"]);
    }

    #[test]
    fn several_connectors_are_independent() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let both = set(&["a", "b"]);
        assert_eq!(r.due(&both, t0), vec!["a", "b"]);
        r.record("a", RestartResult::Accepted(202), t0);
        assert_eq!(r.due(&both, secs(t0, 1)), vec!["b"]);
        r.record("unknown", RestartResult::Accepted(202), t0);
    }
}
