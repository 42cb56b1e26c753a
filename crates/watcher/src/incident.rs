//! `<root>/incidents/<id>`: the record of one agent's open incident, written only by the leading
//! watcher (DESIGN.md section 2). It carries what happened (`cause`), when it was opened and
//! resolved, and, per notification channel, what has been delivered, so that a new leader resumes
//! where the old one stopped: nothing is lost and nothing accepted is sent again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zkwatchdog::registry::{AgentState, LastExit, Timestamp, Versioned};

/// Why an incident was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cause {
    /// The child exited abnormally and the watchdog recorded it (`last_exit` of the generation
    /// whose liveness node vanished). `state` is the marker's state when the watcher looked
    /// (`restarting`, `backoff`, `fatal`).
    Crashed {
        generation: u64,
        exit: LastExit,
        state: AgentState,
    },
    /// The liveness node vanished with no exit record for its generation: the watchdog was
    /// killed, its host is down, or it is partitioned from ZooKeeper.
    Lost {
        generation: u64,
        /// The marker's state as last written by the watchdog.
        state: AgentState,
        /// When the watchdog last wrote the marker.
        last_update: Timestamp,
    },
    /// The generation jumped while no watcher observed it: the agent restarted unobserved.
    Bounced {
        from_generation: u64,
        to_generation: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<LastExit>,
    },
    /// The agent runs but its health probe reports it degraded.
    Degraded { detail: String },
}

impl Cause {
    /// Short upper-case word for subjects and tables (`CRASHED`, `LOST`, `FATAL`, `PROBE
    /// RESTART` when the watchdog restarted an unhealthy child, ...).
    pub fn headline(&self) -> &'static str {
        match self {
            Cause::Crashed {
                state: AgentState::Fatal,
                ..
            } => "FATAL",
            Cause::Crashed { exit, .. } if exit.probe_restart.is_some() => "PROBE RESTART",
            Cause::Crashed { .. } => "CRASHED",
            Cause::Lost { .. } => "LOST",
            Cause::Bounced { .. } => "RESTARTED",
            Cause::Degraded { .. } => "DEGRADED",
        }
    }

    /// How urgent the incident is: an agent that is not running is critical; one that runs
    /// but is unhealthy, or restarted on its own, is a warning.
    pub fn severity(&self) -> Severity {
        match self {
            // The watchdog restarted an unhealthy agent on purpose (unless it then gave up).
            Cause::Crashed {
                exit,
                state: AgentState::Restarting | AgentState::Running | AgentState::Starting,
                ..
            } if exit.probe_restart.is_some() => Severity::Warning,
            Cause::Crashed { .. } | Cause::Lost { .. } => Severity::Critical,
            Cause::Bounced { .. } | Cause::Degraded { .. } => Severity::Warning,
        }
    }
}

/// How urgent an incident is, named in every notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// How an incident ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resolution {
    /// A liveness node is back (generation of the child now running).
    Recovered { generation: u64 },
    /// The marker was removed: a planned stop or `zkwatchdog deregister`.
    Stopped,
    /// The health probe reports ok again.
    Healthy,
}

/// What one channel has delivered for an incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// When the channel accepted the first notice of the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<Timestamp>,
    /// When the channel last accepted a notice or reminder of the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Timestamp>,
    /// When the channel accepted the resolution notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Timestamp>,
    /// Set when this channel had announced the end of the incident and the agent went down
    /// again before every channel had: for this channel a new incident began then, and its
    /// notices count from there (absent: from `opened_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
}

/// Where an outage began within an incident record that was reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    /// When the agent went down again.
    pub at: Timestamp,
    /// How many occurrences the incident had counted before.
    pub earlier: u32,
}

/// The identity of one occurrence of an incident: which record (`opened_at`) and which of its
/// outages (`seq`). A notice carries it, so that a send that finishes after the incident moved
/// on is recorded against what it announced, not against whatever the agent has now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub opened_at: Timestamp,
    pub seq: u32,
}

/// `<root>/incidents/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub v: u32,
    pub id: String,
    pub opened_at: Timestamp,
    pub cause: Cause,
    /// How many times the cause happened while this incident was open (a crash loop folds into
    /// one incident).
    #[serde(default = "one")]
    pub occurrences: u32,
    /// When the first channel accepted the incident's notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Set when a silence muted the incident: it is kept, but nothing is sent for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced: Option<String>,
    /// Per channel name, what was delivered.
    #[serde(default)]
    pub deliveries: BTreeMap<String, Delivery>,
    /// Counts the record's outages: raised each time the incident is reopened (down again after
    /// its recovery, degraded again after its healing) or superseded. With `opened_at` it names
    /// the occurrence a notice is about (0 in records written before it existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u32,
    /// When and after how many occurrences the incident was last reopened (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened: Option<Since>,
}

impl Incident {
    /// The occurrence the record is at now.
    pub fn occurrence(&self) -> Occurrence {
        Occurrence {
            opened_at: self.opened_at,
            seq: self.seq,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn one() -> u32 {
    1
}

impl Versioned for Incident {
    fn version(&self) -> u32 {
        self.v
    }
}

/// `<root>/silences/<id>`: mute notifications for one agent until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub v: u32,
    pub id: String,
    pub until: Timestamp,
    #[serde(default)]
    pub reason: String,
    pub created_at: Timestamp,
    /// Who set it (`user@host` of the `zkwatcher silence` command).
    #[serde(default)]
    pub created_by: String,
}

impl Versioned for Silence {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Silence {
    /// True while the silence mutes notifications.
    pub fn active_at(&self, now: Timestamp) -> bool {
        now < self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkwatchdog::registry::{decode, encode};

    const PATH: &str = "/zkwatchdog/incidents/a";

    #[test]
    fn a_record_written_before_occurrences_had_an_identity_still_reads() {
        let old = br#"{"v":1,"id":"a","opened_at":"2026-11-22T04:26:00.575Z",
            "cause":{"kind":"lost","generation":1,"state":"running",
                     "last_update":"2026-11-22T04:25:58.000Z"},
            "occurrences":1,"resolved_at":"2026-11-22T04:27:00.000Z",
            "resolution":{"kind":"recovered","generation":2},
            "deliveries":{"email":{"opened":"2026-11-22T04:26:00.629Z",
                                   "resolved":"2026-11-22T04:27:00.100Z"}}}"#;
        let i: Incident = decode(PATH, old).expect("an old record decodes");
        assert_eq!(i.seq, 0);
        assert_eq!(i.reopened, None);
        assert_eq!(i.deliveries["email"].since, None);
        assert_eq!(i.occurrence().opened_at, i.opened_at);
        // Written back unchanged: the new fields stay out of a record that does not use them.
        let text = String::from_utf8(encode(&i)).expect("UTF-8");
        for field in ["seq", "reopened", "since"] {
            assert!(!text.contains(field), "{field} in {text}");
        }
    }
}
