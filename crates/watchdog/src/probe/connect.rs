//! The Kafka Connect probe's evaluator: parses `GET /connectors?expand=status` (or, from a
//! worker that ignores `expand`, the plain array of names and then each
//! `GET /connectors/NAME/status`) and reports every FAILED connector and task. Pure.

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
    pub state: String,
    pub worker_id: String,
    pub trace: Option<String>,
}

/// One task's status.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct TaskStatus {
    /// A number in Connect's answers; kept as written.
    pub id: Value,
    pub state: String,
    pub worker_id: String,
    pub trace: Option<String>,
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

/// The names of connectors that are FAILED or have a FAILED task.
pub fn failing(statuses: &[ConnectorStatus]) -> BTreeSet<String> {
    statuses
        .iter()
        .filter(|s| s.connector.state == "FAILED" || s.tasks.iter().any(|t| t.state == "FAILED"))
        .map(|s| s.name.clone())
        .collect()
}

/// Reports every FAILED connector and task, with its worker and the start of its trace.
pub fn evaluate(statuses: &[ConnectorStatus]) -> Report {
    let mut report = Report::default();
    let mut other = Vec::new();
    for s in statuses {
        let name = &s.name;
        match s.connector.state.as_str() {
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
        for t in &s.tasks {
            let id = match &t.id {
                Value::String(text) => text.clone(),
                Value::Null => "?".to_string(),
                v => v.to_string(),
            };
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
    report.summary = if n == 0 {
        "no connectors".to_string()
    } else if other.is_empty() {
        format!("all {n} {connectors} RUNNING")
    } else {
        format!("{n} {connectors}: {}", other.join(", "))
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
        let r = evaluate(&s);
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
        assert_eq!(failing(&s), BTreeSet::from(["jdbc-sink".to_string()]));
    }

    #[test]
    fn failed_connector_without_trace() {
        let s = statuses(json!({"c": {"status": {
            "connector": {"state": "FAILED", "worker_id": "w:1"}, "tasks": []
        }}}));
        let r = evaluate(&s);
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
        assert_eq!(evaluate(&[one]).summary, "all 1 connector RUNNING");
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
            evaluate(&statuses(v.clone())).summary,
            "all 2 connectors RUNNING"
        );
        v["s3-sink"]["status"]["connector"]["state"] = json!("PAUSED");
        v["s3-sink"]["status"]["tasks"][0]["state"] = json!("UNASSIGNED");
        let r = evaluate(&statuses(v));
        assert!(r.findings.is_empty());
        assert_eq!(
            r.summary,
            "2 connectors: s3-sink PAUSED, s3-sink task 0 UNASSIGNED"
        );
        assert_eq!(evaluate(&[]).summary, "no connectors");
    }

    #[test]
    fn trace_head_truncates_lines_and_count() {
        assert_eq!(trace_head("one\n\n  two  \n"), "one | two");
        let long = "x".repeat(1000);
        assert!(trace_head(&long).len() <= TRACE_LINE_MAX);
        assert_eq!(trace_head(""), "");
    }
}
