//! What a notification says, before any channel formats it: the incidents one message covers
//! (one or many agents: grouping puts everything due at one moment into one message), or a
//! message about the watcher itself.

use serde::{Deserialize, Serialize};
use zkwatchdog::registry::{Marker, Timestamp};

use crate::incident::{Cause, Occurrence, Resolution};

/// Which part of an incident's life a notice item reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The incident is new (first notice on this channel).
    Opened,
    /// The incident is still open after `repeat-interval` (a reminder).
    Reminder,
    /// The incident was opened and resolved before it was first sent: one item says both
    /// ("crashed, and recovered").
    OpenedAndResolved,
    /// The incident was notified earlier and is now resolved.
    Resolved,
}

/// One agent's part of a notice.
#[derive(Debug, Clone)]
pub struct NoticeItem {
    pub agent: String,
    pub phase: Phase,
    /// Which occurrence of the agent's incident the item reports: a finished send is recorded
    /// against it (see [`NoticeKey`]).
    pub occurrence: Occurrence,
    pub cause: Cause,
    /// How many times the cause happened while the incident was open (as this channel knows
    /// the incident: counted from the outage it was last told had begun).
    pub occurrences: u32,
    /// When the outage began, as this channel knows it.
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub resolution: Option<Resolution>,
    /// When this channel last accepted a notice or reminder of the incident (its delivery's
    /// `last`, else `opened`; `None` before the first): a reminder's notification key carries
    /// it, so that successive reminders differ and a resend of one does not.
    pub last_sent: Option<Timestamp>,
    /// The agent's marker as last read (host, kind, state, restarts, last exit); `None` when
    /// the marker is gone (the agent was stopped or deregistered).
    pub marker: Option<Marker>,
}

impl NoticeItem {
    /// What a finished send of this item is recorded as.
    pub fn key(&self) -> NoticeKey {
        NoticeKey {
            agent: self.agent.clone(),
            phase: self.phase,
            occurrence: self.occurrence,
        }
    }
}

/// What one item of a send carried: the agent, the phase and the incident occurrence it
/// announced. The [`Book`](crate::book::Book) records a finished send against that occurrence,
/// never against whatever incident the agent has by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeKey {
    pub agent: String,
    pub phase: Phase,
    pub occurrence: Occurrence,
}

/// Where the registry lives, so that messages can tell people how to inspect it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// ZooKeeper connect string the watcher uses.
    pub zk_hosts: String,
    /// Registry root (`/zkwatchdog`).
    pub root: String,
    /// Host name of the watcher that sent the message.
    pub watcher_host: String,
}

/// One message to send.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Incidents of one or more agents (never empty).
    Incidents { items: Vec<NoticeItem> },
    /// The watcher has been unable to work with ZooKeeper for `down_for` (disconnected, or
    /// connected but refused); it concludes nothing about agents until it is back.
    ZkLost {
        since: Timestamp,
        down_for: std::time::Duration,
        /// The last reason it could not work with ZooKeeper.
        trouble: ZkTrouble,
    },
    /// The watcher is connected again after reporting its ZooKeeper loss.
    ZkBack {
        since: Timestamp,
        down_for: std::time::Duration,
    },
    /// `zkwatcher test-notify`.
    Test,
}

/// Why the watcher cannot work with ZooKeeper: what its loss report names, so that the operator
/// checks the servers, the certificates or the credentials, as the case may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkTrouble {
    /// No server can be reached, or the connection was lost: the client's error (`no available
    /// hosts`, …), `None` when the client reported only its state.
    Unreachable(Option<String>),
    /// The servers answer, but the TLS handshake fails: what probing them found (it names the
    /// `zk-tls` key to fix).
    Tls(String),
    /// Connected, but ZooKeeper refuses this watcher's credentials (NoAuth, AuthFailed, …): the
    /// explanation, naming the znode and the identity.
    Refused(String),
}

impl ZkTrouble {
    /// The short classification used in subjects: `unreachable`, `TLS handshake fails` or
    /// `credentials refused`.
    pub fn summary(&self) -> &'static str {
        match self {
            ZkTrouble::Unreachable(_) => "unreachable",
            ZkTrouble::Tls(_) => "TLS handshake fails",
            ZkTrouble::Refused(_) => "credentials refused",
        }
    }

    /// A stable name for machines (the generic webhook's `reason_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            ZkTrouble::Unreachable(_) => "unreachable",
            ZkTrouble::Tls(_) => "tls",
            ZkTrouble::Refused(_) => "refused",
        }
    }

    /// The full reason, one line (`None`: the client said nothing more than "disconnected").
    pub fn reason(&self) -> Option<&str> {
        match self {
            ZkTrouble::Unreachable(detail) => detail.as_deref(),
            ZkTrouble::Tls(reason) | ZkTrouble::Refused(reason) => Some(reason),
        }
    }
}
