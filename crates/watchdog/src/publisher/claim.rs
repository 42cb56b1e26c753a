//! Whose liveness node is it: the publisher's decisions about a `live/<id>` node it finds in its
//! way (a create that answered `NodeExists`, or a node that changed under it), as pure code.
//! The publisher reads the node and the local process table and carries the verdicts out.
//!
//! Three things can leave a node where ours should be:
//! - **our own session**: a create that succeeded but whose answer was lost (ConnectionLoss,
//!   then `NodeExists` on the retry). The node is ours: success. Deleting and re-creating it
//!   would open a window in which a watcher sees the agent gone (issue 12, hole 7).
//! - **our own previous instance**: a watchdog killed and restarted by its service manager
//!   leaves a node that lingers until its session expires. Same host, and its pid is not a
//!   running zkwatchdog: replace it at once, as before. Anything less certain is waited for:
//!   a stale session expires within its timeout.
//! - **another live watchdog with the same id** (a copied config file): its node is still
//!   owned by the same session after the wait. That is a duplicate: refuse, naming its host and
//!   pid, rather than deleting each other's nodes (false crash alerts, and no alert when one of
//!   the two hosts dies). The same verdict is reached when a node we replaced as stale comes
//!   back: a stale node never does.

use std::time::{Duration, Instant};

/// What the publisher found at the liveness path, owned by a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The node's `ephemeralOwner` (0: not an ephemeral node at all).
    pub owner: i64,
    /// `host` from its record, when the record is readable and has one.
    pub host: Option<String>,
    /// `pid` (the watchdog's) from its record.
    pub pid: Option<u32>,
    /// Whether that pid is a running zkwatchdog on this machine (only looked up when `host` is
    /// ours; false otherwise).
    pub pid_is_watchdog: bool,
}

/// Who we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Me<'a> {
    pub session: i64,
    /// The sessions this process had before the current one.
    pub past_sessions: &'a [i64],
    pub host: &'a str,
    pub pid: u32,
}

/// What to do about a node found at the liveness path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Owned by our session: a create whose answer was lost. It is ours; nothing to replace.
    Ours,
    /// Left by an earlier instance of this watchdog (or not ephemeral at all): delete it and
    /// create ours.
    Stale,
    /// Owned by another session that may be about to expire: look again after a short pause.
    Wait,
    /// Owned by a live session of another process: refuse to fight over it.
    Duplicate(Duplicate),
}

/// The other owner of our id, as far as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub session: i64,
    pub host: Option<String>,
    pub pid: Option<u32>,
    /// How long its node outlived our wait.
    pub waited: Duration,
}

impl std::fmt::Display for Duplicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another zkwatchdog owns this id: its liveness node is held by the live session {} of \
             host {}, pid {} (still there after waiting {:?}, longer than a left-over session lives); \
             give each watchdog its own `id`",
            crate::registry::session_hex(self.session),
            self.host.as_deref().unwrap_or("(unknown: unreadable record)"),
            self.pid
                .map_or_else(|| "(unknown)".to_string(), |p| p.to_string()),
            self.waited,
        )
    }
}

/// The claim on the liveness path: how long a foreign node is waited for, and what has been
/// seen so far in this process.
#[derive(Debug, Clone)]
pub struct Claim {
    /// How long a node of another session may linger before it counts as a live duplicate:
    /// the session timeout plus a margin (expiry takes up to about 1.1 session timeouts).
    limit: Duration,
    /// The foreign session waited for, and since when.
    waiting: Option<(i64, Instant)>,
    /// A node was already replaced as stale, or ours was created, in this process: a previous
    /// instance leaves at most one node, before ours, so a foreign node seen after that is
    /// never stale again.
    settled: bool,
}

/// How long a node of another session is waited for: `session_timeout` plus half of it, plus
/// two seconds for a loaded server.
pub fn wait_limit(session_timeout: Duration) -> Duration {
    session_timeout + session_timeout / 2 + Duration::from_secs(2)
}

impl Claim {
    /// A claim that waits at most `limit` for a foreign node to go.
    pub fn new(limit: Duration) -> Self {
        Claim {
            limit,
            waiting: None,
            settled: false,
        }
    }

    /// Changes the wait limit (a new session may have negotiated another timeout).
    pub fn set_limit(&mut self, limit: Duration) {
        self.limit = limit;
    }

    /// Our node was created: from now on no foreign node is a predecessor's.
    pub fn held(&mut self) {
        self.waiting = None;
        self.settled = true;
    }

    /// The verdict on `found`, at `now`.
    pub fn judge(&mut self, found: &Found, me: Me<'_>, now: Instant) -> Verdict {
        if found.owner == me.session {
            self.waiting = None;
            return Verdict::Ours;
        }
        if found.owner == 0 || me.past_sessions.contains(&found.owner) {
            // A PERSISTENT node where an ephemeral one belongs (written by hand, it never
            // expires), or a node of a session of ours that we have given up.
            self.waiting = None;
            return Verdict::Stale;
        }
        // Our own pid on "our" host in another session is a twin in another container (same
        // host name, same pid namespace numbers), not us.
        let same_host = found.host.as_deref() == Some(me.host);
        let our_predecessor = same_host && found.pid != Some(me.pid) && !found.pid_is_watchdog;
        if our_predecessor && !self.settled {
            self.waiting = None;
            self.settled = true;
            return Verdict::Stale;
        }
        let since = match self.waiting {
            Some((session, since)) if session == found.owner => since,
            _ => {
                self.waiting = Some((found.owner, now));
                now
            }
        };
        let waited = now.saturating_duration_since(since);
        if waited < self.limit {
            return Verdict::Wait;
        }
        Verdict::Duplicate(Duplicate {
            session: found.owner,
            host: found.host.clone(),
            pid: found.pid,
            waited,
        })
    }

    /// The path was found free (or our node was created): any wait is over.
    pub fn clear(&mut self) {
        self.waiting = None;
    }
}

/// Counts interference with our liveness node while it should exist (deleted by someone else,
/// or found owned by another session) and says when it is worth reporting: the second time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interference {
    /// How many times so far.
    pub count: u32,
    /// The latest foreign owner seen, if any.
    pub last_owner: Option<i64>,
}

/// Interference is reported from this many occurrences on: once can be an operator's
/// `delete` in zkCli; again is a fight.
pub const INTERFERENCE_REPORT_AT: u32 = 2;

impl Interference {
    /// Records one occurrence; `owner` is the session found owning the node (None: deleted).
    /// True when the marker should now carry the report (from the
    /// [`INTERFERENCE_REPORT_AT`]-th occurrence on).
    pub fn record(&mut self, owner: Option<i64>) -> bool {
        self.count += 1;
        if owner.is_some() {
            self.last_owner = owner;
        }
        self.count >= INTERFERENCE_REPORT_AT
    }

    /// The report for the marker and the log, once there is one.
    pub fn report(&self, id: &str) -> Option<String> {
        (self.count >= INTERFERENCE_REPORT_AT).then(|| {
            let by = self
                .last_owner
                .map(|o| {
                    format!(
                        ", last replaced by session {}",
                        crate::registry::session_hex(o)
                    )
                })
                .unwrap_or_default();
            format!(
                "the liveness node of {id} was deleted or replaced by someone else {} times{by}: \
                 is another zkwatchdog running with the same id?",
                self.count
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Me<'static> = Me {
        session: 0x100,
        past_sessions: &[0x90],
        host: "host-a",
        pid: 4242,
    };
    const LIMIT: Duration = Duration::from_secs(5);

    fn found(owner: i64, host: Option<&str>, pid: Option<u32>, pid_is_watchdog: bool) -> Found {
        Found {
            owner,
            host: host.map(str::to_string),
            pid,
            pid_is_watchdog,
        }
    }

    fn duplicate(f: &Found, waited: Duration) -> Verdict {
        Verdict::Duplicate(Duplicate {
            session: f.owner,
            host: f.host.clone(),
            pid: f.pid,
            waited,
        })
    }

    /// One judgement on a fresh claim: what the first sight of a node means.
    ///
    /// The first row is hole 7 of issue 12. A create whose answer is lost cannot be produced on
    /// demand against a real server (the connection would have to drop after the server
    /// committed the create and before its reply arrived), so the decision is tested here; the
    /// code path is `Actor::create_live` → `NodeExists` → `Actor::inspect_live` → `AtPath::Ours`
    /// with our generation → success, where the old code deleted whatever node was in the way.
    #[test]
    fn first_sight_of_a_node() {
        let t0 = Instant::now();
        let cases = [
            (
                "our own session: a create whose answer was lost is success (hole 7)",
                found(0x100, Some("host-b"), Some(1), true),
                Verdict::Ours,
            ),
            (
                "not ephemeral at all: written by hand, replaced",
                found(0, None, None, false),
                Verdict::Stale,
            ),
            (
                "same host, its pid is no running zkwatchdog: our predecessor's, replaced",
                found(0x200, Some("host-a"), Some(17), false),
                Verdict::Stale,
            ),
            (
                "a session of ours that we gave up: replaced",
                found(0x90, Some("host-a"), Some(4242), true),
                Verdict::Stale,
            ),
            (
                "same host and our pid in another session: a twin in another container, wait",
                found(0x200, Some("host-a"), Some(4242), false),
                Verdict::Wait,
            ),
            (
                "same host, a running zkwatchdog: wait for it",
                found(0x200, Some("host-a"), Some(17), true),
                Verdict::Wait,
            ),
            (
                "another host: wait (its session may be expiring)",
                found(0x200, Some("host-b"), Some(17), false),
                Verdict::Wait,
            ),
            (
                "unreadable record: wait",
                found(0x200, None, None, false),
                Verdict::Wait,
            ),
        ];
        for (what, f, want) in cases {
            let mut claim = Claim::new(LIMIT);
            assert_eq!(claim.judge(&f, ME, t0), want, "{what}");
        }
    }

    /// A foreign node over time: gone within the limit is fine, still there after it is a
    /// duplicate; a new owner restarts the wait.
    #[test]
    fn a_foreign_node_over_time() {
        let t0 = Instant::now();
        let other = found(0x200, Some("host-b"), Some(17), false);
        let third = found(0x300, Some("host-c"), Some(18), false);
        let s = Duration::from_secs;
        let steps: [(&str, &Found, Duration, Verdict); 5] = [
            ("first sight", &other, s(0), Verdict::Wait),
            ("still inside the limit", &other, s(4), Verdict::Wait),
            (
                "past the limit: duplicate",
                &other,
                s(5),
                duplicate(&other, s(5)),
            ),
            ("another owner: a new wait", &third, s(6), Verdict::Wait),
            (
                "which ends the same way",
                &third,
                s(12),
                duplicate(&third, s(6)),
            ),
        ];
        let mut claim = Claim::new(LIMIT);
        for (what, f, at, want) in steps {
            assert_eq!(claim.judge(f, ME, t0 + at), want, "{what}");
        }
    }

    /// A stale node is replaced once; a same-host foreign node that comes back afterwards is a
    /// live fighter (e.g. a second container with the same host name), so it is waited for.
    /// The same holds once our own node was created.
    #[test]
    fn a_replaced_node_that_comes_back_is_not_stale() {
        let mut held = Claim::new(LIMIT);
        held.held();
        assert_eq!(
            held.judge(
                &found(0x200, Some("host-a"), Some(17), false),
                ME,
                Instant::now()
            ),
            Verdict::Wait
        );
        let t0 = Instant::now();
        let predecessor = found(0x200, Some("host-a"), Some(17), false);
        let back = found(0x201, Some("host-a"), Some(17), false);
        let mut claim = Claim::new(LIMIT);
        assert_eq!(claim.judge(&predecessor, ME, t0), Verdict::Stale);
        assert_eq!(claim.judge(&back, ME, t0), Verdict::Wait);
        assert_eq!(claim.judge(&back, ME, t0 + LIMIT), duplicate(&back, LIMIT));
        // Our own node is still ours.
        assert_eq!(
            claim.judge(&found(0x100, None, None, false), ME, t0),
            Verdict::Ours
        );
    }

    #[test]
    fn a_cleared_wait_starts_over() {
        let t0 = Instant::now();
        let other = found(0x200, Some("host-b"), Some(17), false);
        let mut claim = Claim::new(LIMIT);
        assert_eq!(claim.judge(&other, ME, t0), Verdict::Wait);
        claim.clear();
        assert_eq!(claim.judge(&other, ME, t0 + LIMIT), Verdict::Wait);
    }

    #[test]
    fn the_duplicate_message_names_host_pid_and_session() {
        let d = Duplicate {
            session: 0x2a,
            host: Some("host-b".into()),
            pid: Some(17),
            waited: Duration::from_secs(5),
        };
        let text = d.to_string();
        for part in ["host host-b", "pid 17", "0x2a", "own `id`"] {
            assert!(text.contains(part), "{part} in {text}");
        }
    }

    #[test]
    fn interference_is_reported_the_second_time() {
        let mut i = Interference::default();
        assert!(!i.record(None), "once can be an operator");
        assert_eq!(i.report("a@h"), None);
        assert!(i.record(Some(0x2a)));
        let report = i.report("a@h").expect("a report");
        assert!(
            report.contains("2 times") && report.contains("0x2a"),
            "{report}"
        );
        assert!(i.record(None));
        assert!(i.report("a@h").is_some_and(|r| r.contains("3 times")));
    }

    #[test]
    fn the_limit_outlasts_a_session() {
        assert_eq!(wait_limit(Duration::from_secs(2)), Duration::from_secs(5));
        assert!(wait_limit(Duration::from_secs(10)) > Duration::from_secs(11));
    }
}
