//! `<root>/watchers/handled`: what the leading watcher has handled, so that the next leader can
//! tell an exit nobody reported from one that was (issue 12, hole 4).
//!
//! A crash and restart while no watcher leads (the only watcher is being upgraded) leaves one
//! trace: the marker's `last_exit`, of a generation older than the liveness node now running. A
//! new leader cannot know from that alone whether its predecessor reported it. So the leader
//! keeps this small record: when it was last written (the predecessor was watching until then)
//! and the abnormal exits it handled lately, as `(agent id, generation)`. It is written at
//! take-over, every [`REWRITE_EVERY`], on shutdown, and before an incident reporting an exit not
//! yet in the written record is deleted (while the incident exists it shows the exit was
//! handled, so a flood of crashes does not rewrite the record once per crash); a take-over reports every
//! exit of a running agent recorded after the last write (minus a clock-skew margin) that is
//! neither in the list nor covered by an incident (see [`crate::takeover`]).

use serde::{Deserialize, Serialize};
use std::time::Duration;
use zkwatchdog::registry::{Timestamp, Versioned, RECORD_VERSION};

use crate::incident::{Cause, Incident, Resolution};

/// Exits handled longer ago than this are dropped from the record: by then the record has been
/// rewritten many times ([`REWRITE_EVERY`]) and a take-over looks back only [`SKEW`] before the
/// last write.
pub const KEEP: Duration = Duration::from_secs(15 * 60);

/// At most this many exits are kept (the newest), so the node stays far below ZooKeeper's 1 MiB
/// (about 100 bytes each).
pub const MAX_EXITS: usize = 2000;

/// How often a leader rewrites the record even when it handled nothing.
pub const REWRITE_EVERY: Duration = Duration::from_secs(30);

/// Exit times come from the agents' hosts, the last write's time from the watcher's: exits up to
/// this long before the last write count as possibly unseen too (the list filters out those the
/// predecessor did handle).
pub const SKEW: Duration = Duration::from_secs(60);

/// One abnormal exit a leader handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandledExit {
    pub id: String,
    /// The generation of the child that exited (`last_exit.generation`).
    pub generation: u64,
    /// When the leader handled it.
    pub at: Timestamp,
}

/// The record at `<root>/watchers/handled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handled {
    pub v: u32,
    /// When a leader last wrote the record: it was watching until then.
    pub written_at: Timestamp,
    #[serde(default)]
    pub exits: Vec<HandledExit>,
}

impl Versioned for Handled {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Handled {
    /// An empty record written at `now`.
    pub fn new(now: Timestamp) -> Self {
        Handled {
            v: RECORD_VERSION,
            written_at: now,
            exits: Vec::new(),
        }
    }

    /// Notes the exit an incident reports, if it reports one; true if the record changed. An
    /// entry of the same agent and generation noted before this exit happened is an earlier
    /// watchdog instance's (generations start over when a watchdog restarts): it is renewed.
    ///
    /// A recovery at generation `g` ends the whole outage: the exit of generation `g - 1`, the
    /// last child of a crash loop whose exit the cause may not name (it went and the next one
    /// came between two reads), is noted too.
    pub fn note(&mut self, incident: &Incident, now: Timestamp) -> bool {
        let Some(generation) = exit_generation(&incident.cause) else {
            return false;
        };
        let happened = exit_time(&incident.cause).unwrap_or(incident.opened_at);
        let last_of_the_outage = match incident.resolution {
            Some(Resolution::Recovered { generation: back }) if back > generation + 1 => {
                Some(back - 1)
            }
            _ => None,
        };
        let mut changed = false;
        for generation in std::iter::once(generation).chain(last_of_the_outage) {
            changed |= self.note_exit(&incident.id, generation, happened, now);
        }
        changed
    }

    /// Notes `id`'s exit of `generation` (which happened at `happened` or later).
    fn note_exit(
        &mut self,
        id: &str,
        generation: u64,
        happened: Timestamp,
        now: Timestamp,
    ) -> bool {
        match self
            .exits
            .iter_mut()
            .find(|e| e.id == id && e.generation == generation)
        {
            Some(e) if e.at.0 >= happened.0 => false,
            Some(e) => {
                e.at = now;
                true
            }
            None => {
                self.exits.push(HandledExit {
                    id: id.to_string(),
                    generation,
                    at: now,
                });
                true
            }
        }
    }

    /// Whether the exit of `id`'s generation `generation` was handled.
    pub fn contains(&self, id: &str, generation: u64) -> bool {
        self.exits
            .iter()
            .any(|e| e.id == id && e.generation == generation)
    }

    /// Whether the exit of `id`'s generation `generation` that happened at `at` was handled:
    /// noted at `at` or later. Generations start over when a watchdog is restarted, so an
    /// earlier instance's exit of the same generation, handled before this one happened, is
    /// another exit. (A watcher whose clock is behind the agent's host may note an exit
    /// "before" it happened: then it counts as not handled, and is announced again rather than
    /// missed.)
    pub fn contains_since(&self, id: &str, generation: u64, at: Timestamp) -> bool {
        self.exits
            .iter()
            .any(|e| e.id == id && e.generation == generation && e.at.0 >= at.0)
    }

    /// The record as it is to be written at `now`: stamped, old and excess exits dropped.
    pub fn stamp(&mut self, now: Timestamp) {
        self.written_at = now;
        self.exits
            .retain(|e| now.0.duration_since(e.at.0).unwrap_or_default() <= KEEP);
        let excess = self.exits.len().saturating_sub(MAX_EXITS);
        self.exits.drain(..excess);
    }

    /// Exits recorded at `at` may have happened while no leader watched.
    pub fn after_last_write(&self, at: Timestamp) -> bool {
        self.written_at
            .0
            .checked_sub(SKEW)
            .is_none_or(|from| at.0 >= from)
    }
}

/// When the end a cause announces happened, as far as the records say: a crash's or a recorded
/// bounce's exit time, a LOST agent's last update; `None` for a bounce seen without an exit
/// record and for a degradation.
pub fn exit_time(cause: &Cause) -> Option<Timestamp> {
    match cause {
        Cause::Crashed { exit, .. }
        | Cause::Bounced {
            exit: Some(exit), ..
        } => Some(exit.at),
        Cause::Lost { last_update, .. } => Some(*last_update),
        Cause::Bounced { exit: None, .. } | Cause::Degraded { .. } => None,
    }
}

/// The generation whose end an incident's cause announced: a crash's or a recorded bounce's
/// exit; the generation a LOST incident lost (the exit record its watchdog may write later is
/// the same outage); for a bounce seen without an exit record, the generation before the one
/// that came back (the exit the marker will show). A degradation ends no generation.
pub fn exit_generation(cause: &Cause) -> Option<u64> {
    match cause {
        Cause::Crashed { exit, .. }
        | Cause::Bounced {
            exit: Some(exit), ..
        } => Some(exit.generation),
        Cause::Lost { generation, .. } => Some(*generation),
        Cause::Bounced {
            exit: None,
            to_generation,
            ..
        } => to_generation.checked_sub(1),
        Cause::Degraded { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;
    use zkwatchdog::registry::{AgentState, LastExit};

    fn t(secs: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(1_000_000 + secs))
    }

    fn exit(generation: u64) -> LastExit {
        LastExit {
            at: t(0),
            generation,
            code: Some(1),
            signal: None,
            uptime_ms: 5,
            stderr_tail: vec![],
            probe_restart: None,
            reload: false,
            daemonized: None,
        }
    }

    /// Built from JSON, the way it is read, so fields added with defaults do not matter here.
    fn incident(id: &str, cause: Cause) -> Incident {
        serde_json::from_value(serde_json::json!({
            "v": 1, "id": id, "opened_at": t(0), "cause": cause,
        }))
        .expect("an incident")
    }

    fn crashed(generation: u64) -> Cause {
        Cause::Crashed {
            generation,
            exit: exit(generation),
            state: AgentState::Restarting,
        }
    }

    #[test]
    fn every_end_of_a_generation_is_noted_once_a_degradation_not() {
        let mut h = Handled::new(t(0));
        assert!(h.note(&incident("a", crashed(3)), t(1)));
        assert!(!h.note(&incident("a", crashed(3)), t(2)), "noted twice");
        let bounce = Cause::Bounced {
            from_generation: 1,
            to_generation: 3,
            exit: Some(exit(2)),
        };
        assert!(h.note(&incident("b", bounce), t(1)));
        let blind = Cause::Bounced {
            from_generation: 1,
            to_generation: 3,
            exit: None,
        };
        // A bounce seen without an exit record: the exit the marker shows later is that of the
        // generation before the one that came back.
        assert!(h.note(&incident("c", blind), t(1)));
        // A LOST incident announced the end of that generation: the exit record its watchdog
        // writes when it reaches ZooKeeper again is the same outage (chaos: after an ensemble
        // outage the next leader announced it a second time as "an exit while no watcher led").
        let lost = Cause::Lost {
            generation: 1,
            state: AgentState::Running,
            last_update: t(0),
        };
        assert!(h.note(&incident("d", lost), t(1)));
        let degraded = Cause::Degraded { detail: "x".into() };
        assert!(!h.note(&incident("e", degraded), t(1)));
        assert!(h.contains("a", 3));
        assert!(h.contains("b", 2));
        assert!(h.contains("c", 2));
        assert!(h.contains("d", 1));
        assert!(!h.contains("a", 2));
        assert_eq!(h.exits.len(), 4);
    }

    /// Chaos #218: a crash loop's incident names the exit of generation 6, the agent came back
    /// at generation 8; generation 7 went and 8 came between two reads. The next leader must
    /// not take generation 7's exit for one nobody reported.
    #[test]
    fn a_recovery_notes_the_last_exit_of_the_outage_too() {
        let mut h = Handled::new(t(0));
        let mut looped = incident("a", crashed(6));
        looped.resolved_at = Some(t(2));
        looped.resolution = Some(Resolution::Recovered { generation: 8 });
        assert!(h.note(&looped, t(3)));
        assert!(h.contains("a", 6) && h.contains("a", 7));
        assert!(!h.contains("a", 8), "the running child has not exited");
        // Back at the very next generation: nothing more to note.
        let mut once = incident("b", crashed(2));
        once.resolution = Some(Resolution::Recovered { generation: 3 });
        assert!(h.note(&once, t(3)));
        assert!(h.contains("b", 2) && !h.contains("b", 1));
        // A stop ends no generation of its own.
        let mut stopped = incident("c", crashed(4));
        stopped.resolution = Some(Resolution::Stopped);
        assert!(h.note(&stopped, t(3)));
        assert_eq!(h.exits.len(), 4);
    }

    #[test]
    fn stamping_drops_old_exits_and_keeps_the_newest_within_the_cap() {
        let mut h = Handled::new(t(0));
        h.note(&incident("old", crashed(1)), t(0));
        for g in 0..(MAX_EXITS as u64 + 5) {
            h.note(&incident("loop", crashed(g)), t(KEEP.as_secs()));
        }
        h.stamp(t(KEEP.as_secs() + 1));
        assert_eq!(h.written_at, t(KEEP.as_secs() + 1));
        assert!(!h.contains("old", 1), "older than KEEP");
        assert_eq!(h.exits.len(), MAX_EXITS);
        assert!(!h.contains("loop", 4), "the oldest go first");
        assert!(h.contains("loop", 5));
    }

    /// A restarted watchdog counts generations anew: its gen-3 crash, after an earlier
    /// instance's gen-3 crash was noted, renews the entry (before: skipped as already noted, so
    /// the new crash looked unhandled to the next leader and was announced at every take-over).
    #[test]
    fn the_same_generation_of_a_later_watchdog_instance_renews_its_entry() {
        let mut h = Handled::new(t(0));
        assert!(h.note(&incident("a", crashed(3)), t(1)));
        let later = Cause::Crashed {
            generation: 3,
            exit: LastExit {
                at: t(500),
                ..exit(3)
            },
            state: AgentState::Restarting,
        };
        assert!(!h.contains_since("a", 3, t(500)), "the old note is older");
        assert!(h.note(&incident("a", later.clone()), t(501)), "renewed");
        assert!(h.contains_since("a", 3, t(500)));
        assert!(!h.note(&incident("a", later), t(502)), "noted once");
        assert_eq!(h.exits.len(), 1);
    }

    #[test]
    fn exits_after_the_last_write_minus_the_skew_may_be_unseen() {
        let h = Handled::new(t(1000));
        assert!(h.after_last_write(t(1001)));
        assert!(h.after_last_write(t(1000 - SKEW.as_secs())));
        assert!(!h.after_last_write(t(999 - SKEW.as_secs())));
    }

    #[test]
    fn the_record_reads_back_and_tolerates_unknown_fields() {
        let mut h = Handled::new(t(5));
        h.note(&incident("a", crashed(2)), t(5));
        let data = zkwatchdog::registry::encode(&h);
        let back: Handled = zkwatchdog::registry::decode("/h", &data).expect("decode");
        assert_eq!(back, h);
        let newer = br#"{"v":1,"written_at":"2026-01-01T00:00:00Z","exits":[],"extra":1}"#;
        assert!(zkwatchdog::registry::decode::<Handled>("/h", newer).is_ok());
    }
}
