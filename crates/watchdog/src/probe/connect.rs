//! The Kafka Connect probe's evaluator: parses `GET /connectors?expand=status` (or, from a
//! worker that ignores `expand`, the plain array of names and then each
//! `GET /connectors/NAME/status`) and reports every FAILED connector and task that runs on
//! this watchdog's worker. Pure.
//!
//! Every worker of a Connect cluster answers for the whole cluster, and names the worker that
//! runs each connector instance and each task by its `worker_id` (the worker's advertised REST
//! `host:port`). A watchdog judges only what runs on its own worker, so a FAILED task is one
//! finding of one watchdog however many workers are wrapped; the others count it in their
//! summary as running elsewhere.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::{Check, Finding, Report};

/// Trace lines quoted in a finding.
pub const TRACE_LINES: usize = 3;
/// Longest trace line quoted.
const TRACE_LINE_MAX: usize = 300;

/// The answer to `GET /connectors?expand=status`.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    /// The worker expanded the statuses.
    Expanded(Vec<ConnectorStatus>),
    /// The worker sent only names (it ignores `expand`): fetch each status.
    Names(Vec<String>),
}

/// `GET /connectors/NAME/status`. Missing fields read as empty, unknown ones are ignored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: State,
    pub tasks: Vec<TaskStatus>,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A connector's or a task's state.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct State {
    #[serde(deserialize_with = "null_as_empty")]
    pub state: String,
    /// Empty when the unit runs nowhere (an UNASSIGNED task has `"worker_id": null`).
    #[serde(deserialize_with = "null_as_empty")]
    pub worker_id: String,
    pub trace: Option<String>,
}

/// One task's status.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct TaskStatus {
    /// A number in Connect's answers; kept as written.
    pub id: Value,
    #[serde(deserialize_with = "null_as_empty")]
    pub state: String,
    #[serde(deserialize_with = "null_as_empty")]
    pub worker_id: String,
    pub trace: Option<String>,
}

/// A string that may be `null` (read as empty).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Parses the listing: an object keyed by connector name (each with a `status`), or an array
/// of names. An object entry without a `status` makes it a list of names to fetch one by one.
pub fn parse_listing(body: &[u8]) -> Result<Listing, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    match value {
        Value::Array(items) => Ok(Listing::Names(
            items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )),
        Value::Object(map) => {
            if map.values().any(|v| v.get("status").is_none()) {
                return Ok(Listing::Names(map.keys().cloned().collect()));
            }
            let mut statuses = Vec::with_capacity(map.len());
            for (name, entry) in map {
                let status = entry.get("status").cloned().unwrap_or(Value::Null);
                let mut status = status_from_value(status)
                    .map_err(|e| format!("status of connector {name:?}: {e}"))?;
                if status.name.is_empty() {
                    status.name = name;
                }
                statuses.push(status);
            }
            Ok(Listing::Expanded(statuses))
        }
        _ => Err("answer is neither an object nor an array of connectors".to_string()),
    }
}

/// Parses one connector's status.
pub fn parse_status(body: &[u8]) -> Result<ConnectorStatus, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    status_from_value(value)
}

fn status_from_value(value: Value) -> Result<ConnectorStatus, String> {
    if !value.is_object() {
        return Err("status is not an object".to_string());
    }
    serde_json::from_value(value).map_err(|e| format!("unexpected status: {e}"))
}

/// Whether a unit reported by `reported` runs on `worker`. Connect writes the worker id as the
/// worker advertises it; host names compare without regard to case. A unit without a worker id
/// (UNASSIGNED) runs nowhere; a FAILED one without it is judged by every watchdog rather than by
/// none.
pub fn on_worker(reported: &str, worker: &str) -> bool {
    reported.eq_ignore_ascii_case(worker)
}

/// A task's id as written (`0`), `?` when missing.
fn task_id(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        Value::Null => "?".to_string(),
        v => v.to_string(),
    }
}

/// What of one connector is FAILED on this worker: what remediation restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFailure {
    pub connector: String,
    /// The connector instance runs here and is FAILED.
    pub connector_failed: bool,
    /// The ids of the FAILED tasks that run here.
    pub tasks: Vec<String>,
}

/// Whether a FAILED unit reported by `reported` is this worker's to judge.
fn judged_here(reported: &str, worker: &str) -> bool {
    reported.is_empty() || on_worker(reported, worker)
}

/// The connectors with a FAILED connector instance or FAILED tasks on `worker`.
pub fn local_failures(statuses: &[ConnectorStatus], worker: &str) -> Vec<LocalFailure> {
    statuses
        .iter()
        .filter_map(|s| {
            let failure = LocalFailure {
                connector: s.name.clone(),
                connector_failed: s.connector.state == "FAILED"
                    && judged_here(&s.connector.worker_id, worker),
                tasks: s
                    .tasks
                    .iter()
                    .filter(|t| t.state == "FAILED" && judged_here(&t.worker_id, worker))
                    .map(|t| task_id(&t.id))
                    .collect(),
            };
            (failure.connector_failed || !failure.tasks.is_empty()).then_some(failure)
        })
        .collect()
}

/// The names of the connectors in `failures`.
pub fn failing(failures: &[LocalFailure]) -> BTreeSet<String> {
    failures.iter().map(|f| f.connector.clone()).collect()
}

/// Connector instances and tasks that run on other workers, for the summary.
#[derive(Debug, Default)]
struct Elsewhere {
    connectors: usize,
    tasks: usize,
    failed: usize,
}

impl Elsewhere {
    fn count(&mut self, state: &str, task: bool) {
        if task {
            self.tasks += 1;
        } else {
            self.connectors += 1;
        }
        if state == "FAILED" {
            self.failed += 1;
        }
    }

    /// `1 connector and 2 tasks on other workers (1 FAILED, left to their workers' watchdogs)`.
    fn describe(&self) -> Option<String> {
        let plural = |n: usize, one: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {one}s")
            }
        };
        let what = match (self.connectors, self.tasks) {
            (0, 0) => return None,
            (c, 0) => plural(c, "connector"),
            (0, t) => plural(t, "task"),
            (c, t) => format!("{} and {}", plural(c, "connector"), plural(t, "task")),
        };
        Some(if self.failed == 0 {
            format!("{what} on other workers")
        } else {
            format!(
                "{what} on other workers ({} FAILED, left to their workers' watchdogs)",
                self.failed
            )
        })
    }
}

/// Reports every FAILED connector instance and task that runs on `worker` (or names no worker),
/// with the start of its trace; what runs elsewhere is only counted in the summary.
pub fn evaluate(statuses: &[ConnectorStatus], worker: &str) -> Report {
    let mut report = Report::default();
    let mut other = Vec::new();
    let mut elsewhere = Elsewhere::default();
    for s in statuses {
        let name = &s.name;
        let state = s.connector.state.as_str();
        if !judged_here(&s.connector.worker_id, worker) {
            elsewhere.count(state, false);
        } else {
            match state {
                "FAILED" => {
                    let component = format!("connector {name}");
                    report.findings.push(Finding::new(
                        component.clone(),
                        Check::ConnectorFailed,
                        failed_detail(
                            &component,
                            &s.connector.worker_id,
                            s.connector.trace.as_deref(),
                        ),
                    ));
                }
                "RUNNING" => {}
                "" => other.push(format!("{name} state unknown")),
                state => other.push(format!("{name} {state}")),
            }
        }
        for t in &s.tasks {
            if !judged_here(&t.worker_id, worker) {
                elsewhere.count(&t.state, true);
                continue;
            }
            let id = task_id(&t.id);
            let component = format!("connector {name} task {id}");
            match t.state.as_str() {
                "FAILED" => report.findings.push(Finding::new(
                    component.clone(),
                    Check::TaskFailed,
                    failed_detail(&component, &t.worker_id, t.trace.as_deref()),
                )),
                "RUNNING" => {}
                state => other.push(format!("{name} task {id} {state}")),
            }
        }
    }
    let n = statuses.len();
    let connectors = if n == 1 { "connector" } else { "connectors" };
    let elsewhere = elsewhere.describe();
    let head = if n == 0 {
        "no connectors".to_string()
    } else if !other.is_empty() {
        format!("{n} {connectors}: {}", other.join(", "))
    } else if elsewhere.is_none() {
        format!("all {n} {connectors} RUNNING")
    } else {
        format!("{n} {connectors}, RUNNING on this worker ({worker})")
    };
    report.summary = match elsewhere {
        Some(elsewhere) => format!("{head}; {elsewhere}"),
        None => head,
    };
    report
}

fn failed_detail(component: &str, worker: &str, trace: Option<&str>) -> String {
    let worker = if worker.is_empty() { "?" } else { worker };
    match trace.map(trace_head).filter(|t| !t.is_empty()) {
        Some(trace) => format!("{component} FAILED on worker {worker}: {trace}"),
        None => format!("{component} FAILED on worker {worker}"),
    }
}

/// The first [`TRACE_LINES`] non-blank lines of a Java stack trace, trimmed and joined with
/// ` | `, ending with `…` when lines were left out.
pub fn trace_head(trace: &str) -> String {
    let mut lines = trace.lines().map(str::trim).filter(|l| !l.is_empty());
    let head: Vec<String> = lines
        .by_ref()
        .take(TRACE_LINES)
        .map(|l| super::truncate(l, TRACE_LINE_MAX))
        .collect();
    let mut text = head.join(" | ");
    if lines.next().is_some() {
        text.push_str(" …");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TRACE: &str = "org.apache.kafka.connect.errors.ConnectException: boom\n\tat io.Foo.put(Foo.java:10)\n\tat io.Bar.run(Bar.java:20)\n\tat java.lang.Thread.run(Thread.java:833)\n";

    fn expanded() -> Value {
        json!({
            "jdbc-sink": {"status": {
                "name": "jdbc-sink",
                "connector": {"state": "RUNNING", "worker_id": "10.0.0.5:8083"},
                "tasks": [
                    {"id": 0, "state": "FAILED", "worker_id": "10.0.0.5:8083", "trace": TRACE},
                    {"id": 1, "state": "RUNNING", "worker_id": "10.0.0.6:8083"}
                ],
                "type": "sink"
            }},
            "s3-sink": {"status": {
                "name": "s3-sink",
                "connector": {"state": "RUNNING", "worker_id": "10.0.0.6:8083"},
                "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "10.0.0.6:8083"}],
                "type": "sink", "future": true
            }, "info": {"config": {}}}
        })
    }

    fn statuses(v: Value) -> Vec<ConnectorStatus> {
        match parse_listing(v.to_string().as_bytes()).expect("parses") {
            Listing::Expanded(s) => s,
            other => panic!("expected statuses: {other:?}"),
        }
    }

    #[test]
    fn expanded_listing_reports_the_failed_task_with_worker_and_trace_head() {
        let s = statuses(expanded());
        assert_eq!(s.len(), 2);
        let r = evaluate(&s, "10.0.0.5:8083");
        assert_eq!(r.findings.len(), 1, "{r:?}");
        let f = &r.findings[0];
        assert_eq!(f.check, Check::TaskFailed);
        assert_eq!(f.component, "connector jdbc-sink task 0");
        assert_eq!(
            f.detail,
            "connector jdbc-sink task 0 FAILED on worker 10.0.0.5:8083: \
             org.apache.kafka.connect.errors.ConnectException: boom | \
             at io.Foo.put(Foo.java:10) | at io.Bar.run(Bar.java:20) …"
        );
        let local = local_failures(&s, "10.0.0.5:8083");
        assert_eq!(
            local,
            vec![LocalFailure {
                connector: "jdbc-sink".into(),
                connector_failed: false,
                tasks: vec!["0".into()]
            }]
        );
        assert_eq!(failing(&local), BTreeSet::from(["jdbc-sink".to_string()]));
        assert_eq!(
            r.summary,
            "2 connectors, RUNNING on this worker (10.0.0.5:8083); 1 connector and 2 tasks on other workers"
        );
    }

    #[test]
    fn failed_connector_without_trace() {
        let s = statuses(json!({"c": {"status": {
            "connector": {"state": "FAILED", "worker_id": "w:1"}, "tasks": []
        }}}));
        let r = evaluate(&s, "w:1");
        assert_eq!(r.findings[0].detail, "connector c FAILED on worker w:1");
        assert_eq!(r.findings[0].check, Check::ConnectorFailed);
        assert_eq!(s[0].name, "c", "the name comes from the key when missing");
    }

    #[test]
    fn plain_array_falls_back_to_names() {
        assert_eq!(
            parse_listing(br#"["a", "b", 3]"#),
            Ok(Listing::Names(vec!["a".into(), "b".into()]))
        );
        // An object without statuses (expand=info only) also needs per-connector calls.
        assert_eq!(
            parse_listing(br#"{"a": {"info": {}}}"#),
            Ok(Listing::Names(vec!["a".into()]))
        );
        let one = parse_status(
            json!({"name": "a", "connector": {"state": "RUNNING", "worker_id": "w"},
                   "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "w"}]})
            .to_string()
            .as_bytes(),
        )
        .expect("status");
        assert_eq!(evaluate(&[one], "w").summary, "all 1 connector RUNNING");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_listing(b"<html>").is_err());
        assert!(parse_listing(b"42").is_err());
        assert!(parse_listing(br#"{"a": {"status": "x"}}"#).is_err());
        assert!(parse_status(br#"{"connector": {"state": 5}}"#).is_err());
        assert!(parse_status(b"[]").is_err());
    }

    #[test]
    fn healthy_and_other_states_summarised() {
        let mut v = expanded();
        v["jdbc-sink"]["status"]["tasks"][0]["state"] = json!("RUNNING");
        assert_eq!(
            evaluate(&statuses(v.clone()), "10.0.0.6:8083").summary,
            "2 connectors, RUNNING on this worker (10.0.0.6:8083); 1 connector and 1 task on other workers"
        );
        for task in 0..2 {
            v["jdbc-sink"]["status"]["tasks"][task]["worker_id"] = json!("10.0.0.6:8083");
        }
        v["jdbc-sink"]["status"]["connector"]["worker_id"] = json!("10.0.0.6:8083");
        assert_eq!(
            evaluate(&statuses(v.clone()), "10.0.0.6:8083").summary,
            "all 2 connectors RUNNING"
        );
        v["s3-sink"]["status"]["connector"]["state"] = json!("PAUSED");
        // An UNASSIGNED task runs nowhere; every watchdog mentions it.
        v["s3-sink"]["status"]["tasks"][0] =
            json!({"id": 0, "state": "UNASSIGNED", "worker_id": null});
        let r = evaluate(&statuses(v.clone()), "10.0.0.6:8083");
        assert!(r.findings.is_empty());
        assert_eq!(
            r.summary,
            "2 connectors: s3-sink PAUSED, s3-sink task 0 UNASSIGNED"
        );
        let r = evaluate(&statuses(v), "10.0.0.7:8083");
        assert_eq!(
            r.summary,
            "2 connectors: s3-sink task 0 UNASSIGNED; 2 connectors and 2 tasks on other workers"
        );
        assert_eq!(evaluate(&[], "w").summary, "no connectors");
    }

    /// A cluster of three workers: `a` runs connector `x` and its task 0 (FAILED), `b` runs
    /// task 1 (FAILED) and connector `y` (FAILED), `c` runs nothing.
    fn cluster() -> Vec<ConnectorStatus> {
        statuses(json!({
            "x": {"status": {
                "connector": {"state": "RUNNING", "worker_id": "a:8083"},
                "tasks": [
                    {"id": 0, "state": "FAILED", "worker_id": "a:8083", "trace": TRACE},
                    {"id": 1, "state": "FAILED", "worker_id": "b:8083", "trace": TRACE},
                    {"id": 2, "state": "RUNNING", "worker_id": "c:8083"}
                ]
            }},
            "y": {"status": {
                "connector": {"state": "FAILED", "worker_id": "B:8083", "trace": TRACE},
                "tasks": []
            }}
        }))
    }

    #[test]
    fn each_worker_judges_only_what_runs_on_it() {
        let s = cluster();
        // (worker, findings' components, summary)
        let table: [(&str, &[&str], &str); 4] = [
            (
                "a:8083",
                &["connector x task 0"],
                "2 connectors, RUNNING on this worker (a:8083); 1 connector and 2 tasks on other workers (2 FAILED, left to their workers' watchdogs)",
            ),
            (
                "b:8083",
                &["connector x task 1", "connector y"],
                "2 connectors, RUNNING on this worker (b:8083); 1 connector and 2 tasks on other workers (1 FAILED, left to their workers' watchdogs)",
            ),
            (
                "c:8083",
                &[],
                "2 connectors, RUNNING on this worker (c:8083); 2 connectors and 2 tasks on other workers (3 FAILED, left to their workers' watchdogs)",
            ),
            (
                "d:8083",
                &[],
                "2 connectors, RUNNING on this worker (d:8083); 2 connectors and 3 tasks on other workers (3 FAILED, left to their workers' watchdogs)",
            ),
        ];
        let mut all = Vec::new();
        for (worker, components, summary) in table {
            let r = evaluate(&s, worker);
            let got: Vec<&str> = r.findings.iter().map(|f| f.component.as_str()).collect();
            assert_eq!(got, components, "{worker}");
            assert_eq!(r.summary, summary, "{worker}");
            all.extend(r.findings);
        }
        // Every FAILED unit is exactly one finding across the cluster.
        assert_eq!(all.len(), 3);
        assert_eq!(
            local_failures(&s, "b:8083"),
            vec![
                LocalFailure {
                    connector: "x".into(),
                    connector_failed: false,
                    tasks: vec!["1".into()]
                },
                LocalFailure {
                    connector: "y".into(),
                    connector_failed: true,
                    tasks: vec![]
                }
            ]
        );
        assert_eq!(local_failures(&s, "c:8083"), vec![]);
    }

    #[test]
    fn a_failed_unit_without_a_worker_is_judged_everywhere() {
        let s = statuses(json!({"x": {"status": {
            "connector": {"state": "RUNNING", "worker_id": "a:8083"},
            "tasks": [{"id": 0, "state": "FAILED"}]
        }}}));
        let r = evaluate(&s, "b:8083");
        assert_eq!(r.findings.len(), 1);
        assert_eq!(
            r.findings[0].detail,
            "connector x task 0 FAILED on worker ?"
        );
        assert_eq!(local_failures(&s, "b:8083")[0].tasks, vec!["0".to_string()]);
    }

    #[test]
    fn trace_head_truncates_lines_and_count() {
        assert_eq!(trace_head("one\n\n  two  \n"), "one | two");
        let long = "x".repeat(1000);
        assert!(trace_head(&long).len() <= TRACE_LINE_MAX);
        assert_eq!(trace_head(""), "");
    }
}
