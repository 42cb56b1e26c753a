//! zkwatcher: tracks the zkwatchdog registry in ZooKeeper, decides which disappearances are
//! abnormal (the liveness node is gone while the marker is still there), and notifies people,
//! exactly once per incident, by email and webhooks (DESIGN.md section 2).
//!
//! Pure parts: [`tracker`] (what each observation of an agent means) and [`book`] (what the
//! leader writes into `<root>/incidents` and what is due to be sent). I/O drivers: [`watch`]
//! (sessions, reconciliation, election; [`registry_watch`], persistent or one-shot) and [`dispatch`] (sending, retry).
//! Leadership is pure too: [`leadership`] (standby, taking over, leading, deposed), [`lease`]
//! (how long a confirmed leadership lets a send go on),
//! [`takeover`] (what a new leader writes) and [`handled`] (what the last leader handled); so is
//! [`zkloss`] (when the watcher reports its own loss of ZooKeeper).

#![forbid(unsafe_code)]

pub mod book;
pub mod config;
pub mod dispatch;
pub mod election;
pub mod error;
pub mod handled;
pub mod incident;
pub mod leadership;
pub mod lease;
pub mod metrics;
pub mod notice;
pub mod notify;
pub mod read;
pub mod receipt;
pub mod registry_watch;
pub mod silence;
pub mod standby_edges;
pub mod status;
pub mod takeover;
pub mod tracker;
pub mod watch;
pub mod zkloss;
