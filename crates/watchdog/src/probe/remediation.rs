//! Remediation of FAILED Kafka Connect tasks on this watchdog's worker: which connectors to
//! restart now, with capped exponential backoff per connector and a limit after which it gives
//! up, and which requests a restart takes. Pure: the caller supplies the clock and performs the
//! requests.
//!
//! A restart is `POST /connectors/NAME/restart?includeTasks=true&onlyFailed=true` (Kafka 3.0+,
//! KIP-745: 202 with a status body), which restarts the connector's FAILED instance and FAILED
//! tasks on whichever worker they run. Only the watchdog whose worker runs a FAILED unit asks,
//! so a FAILED task costs one call, not one per worker. A worker older than 3.0 ignores both
//! parameters, restarts only the connector instance and answers 204: then each FAILED task of
//! this worker is restarted with `POST /connectors/NAME/tasks/ID/restart`, and from then on the
//! worker is asked that way directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::connect::LocalFailure;
use super::{Check, Finding};
use crate::backoff::Doubling;

/// One restart request to the worker's REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartRequest {
    /// `POST /connectors/NAME/restart?includeTasks=true&onlyFailed=true`.
    FailedOnly { connector: String },
    /// `POST /connectors/NAME/restart`: the connector instance alone (a worker older than 3.0).
    Connector { connector: String },
    /// `POST /connectors/NAME/tasks/ID/restart`.
    Task { connector: String, task: String },
}

impl RestartRequest {
    /// The path segments after `<base>/connectors/`, and the query.
    pub fn path(&self) -> (Vec<&str>, Option<&'static str>) {
        match self {
            RestartRequest::FailedOnly { connector } => (
                vec![connector, "restart"],
                Some("includeTasks=true&onlyFailed=true"),
            ),
            RestartRequest::Connector { connector } => (vec![connector, "restart"], None),
            RestartRequest::Task { connector, task } => {
                (vec![connector, "tasks", task, "restart"], None)
            }
        }
    }
}

/// The requests that restart `failure`: `first` is how the first request answered (`None`
/// before it is made), `legacy` whether this worker is known to ignore `includeTasks` and
/// `onlyFailed` (it answered 204 before).
pub fn plan(
    failure: &LocalFailure,
    legacy: bool,
    first: Option<&RestartResult>,
) -> Vec<RestartRequest> {
    let connector = || failure.connector.clone();
    let tasks = || {
        failure.tasks.iter().map(|task| RestartRequest::Task {
            connector: connector(),
            task: task.clone(),
        })
    };
    match (legacy, first) {
        (false, None) => vec![RestartRequest::FailedOnly {
            connector: connector(),
        }],
        // An older worker restarted only the connector instance: now the tasks, one by one.
        (false, Some(RestartResult::Accepted(204))) => tasks().collect(),
        (false, Some(_)) | (true, Some(_)) => Vec::new(),
        (true, None) => failure
            .connector_failed
            .then(|| RestartRequest::Connector {
                connector: connector(),
            })
            .into_iter()
            .chain(tasks())
            .collect(),
    }
}

/// The `task-restart-*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationPolicy {
    /// Time from seeing a connector fail to its first restart: the DEGRADED notice goes out
    /// first, and a cause being fixed (a directory created, a database back) gets a moment,
    /// instead of a restart that fails again at once and spends an attempt.
    pub first: Duration,
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
    /// The worker answered 204 to a restart with `includeTasks` and `onlyFailed`: it is older
    /// than Kafka 3.0 and ignores them.
    legacy: bool,
}

impl Remediation {
    pub fn new(policy: RemediationPolicy) -> Self {
        Remediation {
            policy,
            tracks: BTreeMap::new(),
            legacy: false,
        }
    }

    /// The requests that restart `failure`, given how the first one answered (see [`plan`]).
    pub fn plan(
        &self,
        failure: &LocalFailure,
        first: Option<&RestartResult>,
    ) -> Vec<RestartRequest> {
        plan(failure, self.legacy, first)
    }

    /// Records how the requests of one restart of `name` went: a 204 to
    /// [`RestartRequest::FailedOnly`] marks the worker as older than 3.0; the restart counts as
    /// the first answer that was not accepted, or as the first answer.
    pub fn record_all(
        &mut self,
        name: &str,
        results: &[(RestartRequest, RestartResult)],
        now: Instant,
    ) {
        if results.iter().any(|(request, result)| {
            matches!(request, RestartRequest::FailedOnly { .. })
                && *result == RestartResult::Accepted(204)
        }) {
            self.legacy = true;
        }
        let result = results
            .iter()
            .find(|(_, r)| !matches!(r, RestartResult::Accepted(_)))
            .or(results.first())
            .map(|(_, r)| r.clone());
        if let Some(result) = result {
            self.record(name, result, now);
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
            let first = self.policy.first;
            let t = self.tracks.entry(name.clone()).or_insert(Track {
                attempts: 0,
                next_at: now + first,
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
            _ => Doubling::new(self.policy.initial, self.policy.max).after(t.attempts),
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
            first: Duration::ZERO,
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
    fn the_first_restart_waits_and_a_failure_fixed_meanwhile_costs_one_call() {
        let t0 = Instant::now();
        let mut r = Remediation::new(RemediationPolicy {
            first: Duration::from_secs(10),
            ..policy()
        });
        let failing = set(&["c"]);
        assert!(r.due(&failing, t0).is_empty(), "not at first sight");
        assert!(r.due(&failing, secs(t0, 9)).is_empty());
        assert_eq!(r.due(&failing, secs(t0, 10)), vec!["c"]);
        r.record("c", RestartResult::Accepted(202), secs(t0, 10));
        // Fixed by that restart: healthy from then on, nothing more is due.
        for s in 11..100 {
            assert!(r.due(&set(&[]), secs(t0, s)).is_empty());
        }
        assert_eq!(
            r.attempts("c"),
            0,
            "forgotten after staying healthy for max"
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

    fn failure(connector_failed: bool, tasks: &[&str]) -> LocalFailure {
        LocalFailure {
            connector: "c".into(),
            connector_failed,
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn failed_only() -> RestartRequest {
        RestartRequest::FailedOnly {
            connector: "c".into(),
        }
    }

    fn task(id: &str) -> RestartRequest {
        RestartRequest::Task {
            connector: "c".into(),
            task: id.into(),
        }
    }

    #[test]
    fn which_requests_restart_a_failure() {
        let connector = RestartRequest::Connector {
            connector: "c".into(),
        };
        let accepted = RestartResult::Accepted(202);
        let no_content = RestartResult::Accepted(204);
        let failed = RestartResult::Failed("500".into());
        // (failure, worker known to be older than 3.0, first answer, requests)
        let table: Vec<(
            LocalFailure,
            bool,
            Option<&RestartResult>,
            Vec<RestartRequest>,
        )> = vec![
            (
                failure(false, &["0", "2"]),
                false,
                None,
                vec![failed_only()],
            ),
            (failure(true, &[]), false, None, vec![failed_only()]),
            // 3.0+: the one call did it all.
            (failure(false, &["0", "2"]), false, Some(&accepted), vec![]),
            // Older than 3.0: it restarted only the connector instance; now each task here.
            (
                failure(false, &["0", "2"]),
                false,
                Some(&no_content),
                vec![task("0"), task("2")],
            ),
            (failure(true, &[]), false, Some(&no_content), vec![]),
            // Nothing more after an error: the backoff decides when to try again.
            (
                failure(false, &["0"]),
                false,
                Some(&RestartResult::Conflict),
                vec![],
            ),
            (
                failure(false, &["0"]),
                false,
                Some(&RestartResult::NotFound),
                vec![],
            ),
            (failure(false, &["0"]), false, Some(&failed), vec![]),
            // Known older than 3.0: straight to what failed here, the connector only if it did.
            (failure(false, &["1"]), true, None, vec![task("1")]),
            (
                failure(true, &["1"]),
                true,
                None,
                vec![connector.clone(), task("1")],
            ),
            (failure(true, &[]), true, None, vec![connector]),
            (failure(true, &["1"]), true, Some(&no_content), vec![]),
        ];
        for (i, (f, legacy, first, expected)) in table.into_iter().enumerate() {
            assert_eq!(plan(&f, legacy, first), expected, "row {i}");
        }
        assert_eq!(
            failed_only().path(),
            (
                vec!["c", "restart"],
                Some("includeTasks=true&onlyFailed=true")
            )
        );
        assert_eq!(task("3").path(), (vec!["c", "tasks", "3", "restart"], None));
    }

    #[test]
    fn from_statuses_to_requests_on_each_worker() {
        use crate::probe::connect::{local_failures, parse_listing, Listing};
        let body = serde_json::json!({"x": {"status": {
            "connector": {"state": "RUNNING", "worker_id": "a:8083"},
            "tasks": [
                {"id": 0, "state": "FAILED", "worker_id": "a:8083"},
                {"id": 1, "state": "FAILED", "worker_id": "b:8083"},
                {"id": 2, "state": "RUNNING", "worker_id": "b:8083"}
            ]
        }}});
        let Ok(Listing::Expanded(statuses)) = parse_listing(body.to_string().as_bytes()) else {
            panic!("statuses");
        };
        let x = |task: &str| RestartRequest::Task {
            connector: "x".into(),
            task: task.into(),
        };
        let all = |worker: &str, legacy: bool, first: Option<&RestartResult>| {
            local_failures(&statuses, worker)
                .iter()
                .flat_map(|f| plan(f, legacy, first))
                .collect::<Vec<_>>()
        };
        let failed_only = vec![RestartRequest::FailedOnly {
            connector: "x".into(),
        }];
        // One call per worker that hosts a FAILED task; none from a worker that hosts none.
        assert_eq!(all("a:8083", false, None), failed_only);
        assert_eq!(all("b:8083", false, None), failed_only);
        assert_eq!(all("c:8083", false, None), vec![]);
        // After a 204, each worker restarts only its own FAILED task.
        let no_content = RestartResult::Accepted(204);
        assert_eq!(all("a:8083", false, Some(&no_content)), vec![x("0")]);
        assert_eq!(all("b:8083", false, Some(&no_content)), vec![x("1")]);
        assert_eq!(all("b:8083", true, None), vec![x("1")]);
    }

    #[test]
    fn a_204_marks_the_worker_as_older_than_3_0_and_results_combine() {
        let t0 = Instant::now();
        let mut r = Remediation::new(policy());
        let failing = set(&["c"]);
        let f = failure(false, &["0"]);
        r.due(&failing, t0);
        assert_eq!(r.plan(&f, None), vec![failed_only()]);
        r.record_all(
            "c",
            &[
                (failed_only(), RestartResult::Accepted(204)),
                (task("0"), RestartResult::Conflict),
            ],
            t0,
        );
        assert_eq!(r.attempts("c"), 1);
        assert_eq!(r.plan(&f, None), vec![task("0")], "known older than 3.0");
        // The conflict is what counts: retried after the initial delay.
        assert!(r.due(&failing, secs(t0, 9)).is_empty());
        assert_eq!(r.due(&failing, secs(t0, 10)), vec!["c"]);
        r.record_all(
            "c",
            &[(task("0"), RestartResult::Accepted(204))],
            secs(t0, 10),
        );
        r.record_all(
            "c",
            &[(
                task("0"),
                RestartResult::Failed("500 Internal Server Error".into()),
            )],
            secs(t0, 30),
        );
        let found = r.findings(&failing);
        assert!(
            found[0]
                .detail
                .ends_with("(last: 500 Internal Server Error)"),
            "{found:?}"
        );
        // A 3.0+ worker stays on the one call.
        let mut r = Remediation::new(policy());
        r.due(&failing, t0);
        r.record_all("c", &[(failed_only(), RestartResult::Accepted(202))], t0);
        assert_eq!(r.plan(&f, None), vec![failed_only()]);
    }
}
