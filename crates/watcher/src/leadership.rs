//! Whether this watcher may write incidents and send, as a pure state machine (issue 12, holes
//! 2 and 3).
//!
//! Winning the election is not leading. A replica whose election node is the lowest is
//! [`Role::Elected`]: before it writes or sends anything it must take over, which needs a
//! complete reconcile of this session (every agent read; a partial read would make agents it
//! did not read look stopped) and then loading the incidents and bringing them in line. A
//! take-over that fails (a connection loss in the middle) is retried from scratch after a
//! backoff; the book it had is never trusted. A leader whose incident write fails is back to
//! [`Role::Elected`]: its book may no longer say what ZooKeeper holds. A leader that cannot show
//! that its election node exists and belongs to its session is [`Role::Deposed`]: it leaves the
//! session and joins the election again.
//!
//! The driver ([`crate::watch`]) reports [`Event`]s and carries out the [`Step`] each returns;
//! `now` is an argument, nothing here does I/O.

use std::time::{Duration, Instant};

use zkwatchdog::backoff::Doubling;

/// First retry delay of a failed take-over (doubling up to [`RETRY_MAX`]).
pub const RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Longest delay between take-over attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where this replica stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not the lowest election node (or not known yet): writes nothing, sends nothing, keeps the
    /// edges it sees for a future take-over.
    Standby,
    /// The lowest election node, not yet taken over: the next attempt is due at `retry_at`
    /// (`failures` attempts failed so far).
    Elected { failures: u32, retry_at: Instant },
    /// Took over: the book was loaded from ZooKeeper and reconciled with a complete read. Writes
    /// are allowed; each send still confirms the election node first.
    Leading,
    /// Our election node is gone or no longer ours: leave this session, join again.
    Deposed,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new session: nothing carries over from the last one.
    SessionStarted,
    /// The connection dropped (the session may survive): events were missed.
    Disconnected,
    /// A reconcile read every agent (`complete`), or stopped at an error.
    Reconciled { complete: bool },
    /// The election check found our node the lowest.
    Lowest,
    /// The election check found a predecessor.
    NotLowest,
    /// The take-over read and wrote everything.
    TakeOverDone,
    /// The take-over stopped at an error.
    TakeOverFailed,
    /// A leader's incident write failed.
    WriteFailed,
    /// ZooKeeper says our election node is gone or belongs to another session.
    Unconfirmed,
}

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Read every agent again, then report [`Event::Reconciled`].
    Reconcile,
    /// Load the incidents, bring them in line, write; then report [`Event::TakeOverDone`] or
    /// [`Event::TakeOverFailed`].
    TakeOver,
    /// Was leading, now standing by (log it).
    SteppedDown,
    /// Leave the session (deleting our election node) and start a new one.
    Rejoin,
}

/// This replica's leadership.
#[derive(Debug, Clone)]
pub struct Leadership {
    role: Role,
    /// Every agent was read in this session since the last disconnection.
    reconciled: bool,
}

impl Default for Leadership {
    fn default() -> Self {
        Self::new()
    }
}

impl Leadership {
    pub fn new() -> Self {
        Leadership {
            role: Role::Standby,
            reconciled: false,
        }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// True once taken over: incidents may be written and (confirmed) sends started.
    pub fn leading(&self) -> bool {
        self.role == Role::Leading
    }

    /// When the next take-over attempt is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        match self.role {
            Role::Elected { retry_at, .. } => Some(retry_at),
            _ => None,
        }
    }

    /// Applies `event` at `now`.
    pub fn handle(&mut self, event: Event, now: Instant) -> Step {
        match (event, &self.role) {
            (Event::SessionStarted, _) => {
                self.role = Role::Standby;
                self.reconciled = false;
                Step::Nothing
            }
            (_, Role::Deposed) => Step::Rejoin,
            (Event::Disconnected, _) => {
                self.reconciled = false;
                Step::Nothing
            }
            (Event::Reconciled { complete }, role) => {
                self.reconciled = complete;
                match role {
                    Role::Elected { .. } if complete => self.tick(now),
                    Role::Elected { failures, .. } => {
                        self.role = elected(failures + 1, now);
                        Step::Nothing
                    }
                    _ => Step::Nothing,
                }
            }
            (Event::Lowest, Role::Standby) => {
                self.role = Role::Elected {
                    failures: 0,
                    retry_at: now,
                };
                self.tick(now)
            }
            (Event::Lowest, Role::Elected { .. }) => self.tick(now),
            (Event::Lowest, _) => Step::Nothing,
            (Event::NotLowest, Role::Leading) => {
                self.role = Role::Standby;
                Step::SteppedDown
            }
            (Event::NotLowest, _) => {
                self.role = Role::Standby;
                Step::Nothing
            }
            (Event::TakeOverDone, Role::Elected { .. }) => {
                self.role = Role::Leading;
                Step::Nothing
            }
            (Event::TakeOverFailed, Role::Elected { failures, .. }) => {
                self.role = elected(failures + 1, now);
                Step::Nothing
            }
            (Event::TakeOverDone | Event::TakeOverFailed, _) => Step::Nothing,
            (Event::WriteFailed, Role::Leading) => {
                self.role = elected(0, now);
                Step::Nothing
            }
            (Event::WriteFailed, _) => Step::Nothing,
            (Event::Unconfirmed, _) => {
                self.role = Role::Deposed;
                Step::Rejoin
            }
        }
    }

    /// What a pending take-over needs at `now` (call when [`due`](Self::due) has come).
    pub fn tick(&mut self, now: Instant) -> Step {
        match self.role {
            Role::Elected { retry_at, .. } if retry_at <= now => {
                if self.reconciled {
                    Step::TakeOver
                } else {
                    Step::Reconcile
                }
            }
            Role::Deposed => Step::Rejoin,
            _ => Step::Nothing,
        }
    }
}

/// Elected, next attempt after the backoff of `failures` failed attempts.
fn elected(failures: u32, now: Instant) -> Role {
    let delay = Doubling::new(RETRY_INITIAL, RETRY_MAX).after(failures);
    Role::Elected {
        failures,
        retry_at: now + delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A replica in `role`, with or without a complete reconcile.
    fn at(role: Role, reconciled: bool) -> Leadership {
        Leadership { role, reconciled }
    }

    #[test]
    fn transitions() {
        let t = Instant::now();
        let due = |failures| Role::Elected {
            failures,
            retry_at: t,
        };
        let later = |failures, after| Role::Elected {
            failures,
            retry_at: t + ms(after),
        };
        use Event::*;
        #[rustfmt::skip]
        let table: Vec<(&str, Role, bool, Event, Role, Step)> = vec![
            ("lowest after a complete read: take over",
                Role::Standby, true, Lowest, due(0), Step::TakeOver),
            ("lowest before a complete read: read everything first",
                Role::Standby, false, Lowest, due(0), Step::Reconcile),
            ("the read completes: take over",
                due(0), false, Reconciled { complete: true }, due(0), Step::TakeOver),
            ("the read stops at an error: retry after a backoff",
                due(0), false, Reconciled { complete: false }, later(1, 200), Step::Nothing),
            ("take-over done: leading",
                due(0), true, TakeOverDone, Role::Leading, Step::Nothing),
            ("take-over failed: retried from scratch after a backoff",
                due(0), true, TakeOverFailed, later(1, 200), Step::Nothing),
            ("failing again doubles the backoff",
                due(2), true, TakeOverFailed, later(3, 800), Step::Nothing),
            ("the backoff is capped",
                due(30), true, TakeOverFailed, later(31, 5000), Step::Nothing),
            ("a leader's write fails: its book is not trusted, take over again",
                Role::Leading, true, WriteFailed, due(0), Step::Nothing),
            ("a standby's write failure means nothing",
                Role::Standby, true, WriteFailed, Role::Standby, Step::Nothing),
            ("a predecessor appears while leading: step down",
                Role::Leading, true, NotLowest, Role::Standby, Step::SteppedDown),
            ("a predecessor appears while taking over: stand by",
                due(1), true, NotLowest, Role::Standby, Step::Nothing),
            ("lowest again while leading: nothing to do",
                Role::Leading, true, Lowest, Role::Leading, Step::Nothing),
            ("a disconnection keeps a leader leading (same session, same node)",
                Role::Leading, true, Disconnected, Role::Leading, Step::Nothing),
            ("our node is gone: leave the session",
                Role::Leading, true, Unconfirmed, Role::Deposed, Step::Rejoin),
            ("deposed stays deposed until a new session",
                Role::Deposed, true, Lowest, Role::Deposed, Step::Rejoin),
            ("a new session starts from standby",
                Role::Deposed, true, SessionStarted, Role::Standby, Step::Nothing),
            ("a late take-over result of a standby is ignored",
                Role::Standby, true, TakeOverDone, Role::Standby, Step::Nothing),
        ];
        for (name, role, reconciled, event, want_role, want_step) in table {
            let mut l = at(role, reconciled);
            let step = l.handle(event, t);
            assert_eq!((l.role, step), (want_role, want_step), "{name}");
        }
    }

    #[test]
    fn a_disconnection_requires_a_new_complete_read_before_a_take_over() {
        let t = Instant::now();
        let mut l = at(Role::Standby, true);
        l.handle(Event::Disconnected, t);
        assert_eq!(l.handle(Event::Lowest, t), Step::Reconcile);
        assert_eq!(
            l.handle(Event::Reconciled { complete: true }, t),
            Step::TakeOver
        );
    }

    #[test]
    fn a_new_session_forgets_the_read_and_the_role() {
        let t = Instant::now();
        let mut l = at(Role::Leading, true);
        l.handle(Event::SessionStarted, t);
        assert!(!l.leading());
        assert_eq!(l.handle(Event::Lowest, t), Step::Reconcile);
    }

    #[test]
    fn a_retry_is_due_only_after_its_backoff() {
        let t = Instant::now();
        let mut l = at(Role::Standby, true);
        assert_eq!(l.handle(Event::Lowest, t), Step::TakeOver);
        l.handle(Event::TakeOverFailed, t);
        assert_eq!(l.due(), Some(t + ms(200)));
        assert_eq!(l.tick(t + ms(199)), Step::Nothing);
        assert_eq!(l.handle(Event::Lowest, t + ms(100)), Step::Nothing);
        assert_eq!(l.tick(t + ms(200)), Step::TakeOver);
        assert!(!l.leading(), "leading only once the take-over is done");
        l.handle(Event::TakeOverDone, t + ms(300));
        assert!(l.leading());
        assert_eq!(l.due(), None);
    }
}
