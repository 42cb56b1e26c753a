//! The JSON of `fake-connect`: Kafka Connect's status shapes (`GET /connectors/NAME/status`,
//! `?expand=status`, the 202 restart body) and the fake's own `/control/state` and
//! `/control/requests` answers. Shared by the server and the test-side handle.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A connector's or a task's state, as Connect spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Unassigned,
    Running,
    Paused,
    Failed,
    Restarting,
    Stopped,
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase()))
            .map_err(|_| format!("unknown state {s:?}"))
    }
}

/// Whether a connector reads from Kafka (`sink`) or writes to it (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorType {
    Sink,
    Source,
}

/// `GET /connectors/NAME/status`, and each `"status"` of `GET /connectors?expand=status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    pub name: String,
    pub connector: UnitStatus,
    pub tasks: Vec<TaskStatus>,
    #[serde(rename = "type")]
    pub kind: ConnectorType,
}

/// The `"connector"` part of a status: `trace` only when FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub state: State,
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// One task of a status: `trace` only when FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// One non-control request the fake received (`GET /control/requests`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without the `?`.
    pub query: Option<String>,
}

/// `GET /control/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectState {
    pub worker_id: String,
    pub hung: bool,
    pub restart_conflicts: u32,
    pub restart_fails: bool,
    pub connectors: BTreeMap<String, ConnectorStatus>,
}
