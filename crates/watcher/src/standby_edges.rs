//! What a standby saw that no leader may have handled.
//!
//! A leader that dies keeps its election node until its session expires, so for up to a session
//! timeout nobody leads. A crash and restart in that gap would leave no trace a new leader could
//! find (the agent is up again, the incident was never written), so every replica that is not
//! leading keeps the edges it sees and the new leader replays them on take-over.
//!
//! An edge is dropped when a leader is seen writing or closing that agent's incident (it handled
//! it), and once it is older than the longest a dead leader can keep its node (two session
//! timeouts plus a margin): the edge was then seen while a live leader was watching too.
//!
//! A standby that missed the leader's incident write (it was frozen or disconnected at that
//! moment) still holds the edge; the take-over drops it if the last leader's handled record
//! noted that exit ([`crate::takeover`]). Each edge keeps, for that, when this replica had last
//! looked at the agent before the read that showed it: an edge seen on the first read after a
//! freeze spans the freeze, and the leader may have announced the exit during it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use zkwatchdog::registry::Timestamp;

use crate::tracker::Edge;

/// An edge a standby saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEdge {
    pub edge: Edge,
    /// When this replica had last looked at the agent before the read that showed the edge
    /// (wall clock); the edge happened after that.
    pub looked_before: Timestamp,
}

/// At most this many edges are kept per agent (a crash loop collapses into one incident anyway).
const PER_AGENT: usize = 8;

/// Edges seen while not leading, per agent, with when they were seen.
#[derive(Debug)]
pub struct StandbyEdges {
    keep_for: Duration,
    edges: BTreeMap<String, Vec<(Instant, SeenEdge)>>,
}

/// The wall-clock time of `then`, an instant at or before `now` (which is `now_wall`); `None`
/// (never looked) is `now_wall`.
pub fn wall_clock(then: Option<Instant>, now: Instant, now_wall: Timestamp) -> Timestamp {
    let ago = then.map_or(Duration::ZERO, |then| now.saturating_duration_since(then));
    Timestamp(now_wall.0.checked_sub(ago).unwrap_or(now_wall.0))
}

impl StandbyEdges {
    /// `session_timeout`: the watchers' session timeout.
    pub fn new(session_timeout: Duration) -> Self {
        StandbyEdges {
            keep_for: session_timeout * 2 + Duration::from_secs(5),
            edges: BTreeMap::new(),
        }
    }

    /// Keeps `edges` seen for agent `id` at `now`, on a read after one at `looked_before`.
    pub fn record(&mut self, id: &str, edges: &[Edge], looked_before: Timestamp, now: Instant) {
        self.expire(now);
        if edges.is_empty() {
            return;
        }
        let kept = self.edges.entry(id.to_string()).or_default();
        kept.extend(edges.iter().map(|edge| {
            let seen = SeenEdge {
                edge: edge.clone(),
                looked_before,
            };
            (now, seen)
        }));
        let excess = kept.len().saturating_sub(PER_AGENT);
        kept.drain(..excess);
    }

    /// A leader wrote or closed `id`'s incident: what we saw of it is handled.
    pub fn handled(&mut self, id: &str) {
        self.edges.remove(id);
    }

    /// Everything still unhandled at `now`, oldest first per agent. The store keeps it: a
    /// take-over that fails before its writes are done replays it on the next attempt; only a
    /// completed take-over [`clear`](Self::clear)s it.
    pub fn pending(&mut self, now: Instant) -> BTreeMap<String, Vec<SeenEdge>> {
        self.expire(now);
        self.edges
            .iter()
            .map(|(id, edges)| (id.clone(), edges.iter().map(|(_, e)| e.clone()).collect()))
            .collect()
    }

    /// A take-over wrote everything: nothing is left unhandled.
    pub fn clear(&mut self) {
        self.edges.clear();
    }

    fn expire(&mut self, now: Instant) {
        let keep_for = self.keep_for;
        self.edges.retain(|_, edges| {
            edges.retain(|(at, _)| now.saturating_duration_since(*at) <= keep_for);
            !edges.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Cause;

    fn went_down(generation: u64) -> Edge {
        Edge::WentDown(Cause::Lost {
            generation,
            state: zkwatchdog::registry::AgentState::Running,
            last_update: EPOCH,
        })
    }

    const EPOCH: Timestamp = Timestamp(std::time::UNIX_EPOCH);

    fn seen(generation: u64) -> SeenEdge {
        SeenEdge {
            edge: went_down(generation),
            looked_before: EPOCH,
        }
    }

    #[test]
    fn a_look_is_dated_on_the_wall_clock() {
        let t0 = Instant::now();
        let wall = Timestamp(std::time::UNIX_EPOCH + Duration::from_secs(1_000));
        let at = |secs| Timestamp(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        let now = t0 + Duration::from_secs(30);
        assert_eq!(wall_clock(Some(t0), now, wall), at(970));
        assert_eq!(wall_clock(Some(now), now, wall), at(1_000));
        assert_eq!(wall_clock(None, now, wall), at(1_000));
        // An instant after `now` (not expected) counts as now.
        assert_eq!(
            wall_clock(Some(now + Duration::from_secs(5)), now, wall),
            at(1_000)
        );
    }

    #[test]
    fn edges_are_kept_until_a_take_over_has_written_them() {
        let t0 = Instant::now();
        let mut u = StandbyEdges::new(Duration::from_secs(2));
        u.record("a", &[went_down(1)], EPOCH, t0);
        u.record("b", &[], EPOCH, t0);
        let taken = u.pending(t0 + Duration::from_secs(3));
        assert_eq!(taken.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(taken["a"], vec![seen(1)]);
        // A failed take-over: the next attempt sees them again.
        assert_eq!(u.pending(t0 + Duration::from_secs(3)), taken);
        u.clear();
        assert!(u.pending(t0 + Duration::from_secs(3)).is_empty());
    }

    #[test]
    fn an_incident_written_by_a_leader_clears_the_agent() {
        let t0 = Instant::now();
        let mut u = StandbyEdges::new(Duration::from_secs(2));
        u.record("a", &[went_down(1)], EPOCH, t0);
        u.record("b", &[went_down(4)], EPOCH, t0);
        u.handled("a");
        assert_eq!(u.pending(t0).keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn edges_older_than_two_session_timeouts_and_a_margin_expire() {
        let t0 = Instant::now();
        let mut u = StandbyEdges::new(Duration::from_secs(2));
        u.record("a", &[went_down(1)], EPOCH, t0);
        u.record("a", &[went_down(2)], EPOCH, t0 + Duration::from_secs(5));
        let taken = u.pending(t0 + Duration::from_secs(10));
        assert_eq!(taken["a"], vec![seen(2)]);
    }

    #[test]
    fn at_most_eight_edges_per_agent_are_kept() {
        let t0 = Instant::now();
        let mut u = StandbyEdges::new(Duration::from_secs(2));
        for g in 1..=20 {
            u.record("a", &[went_down(g)], EPOCH, t0);
        }
        let taken = u.pending(t0);
        assert_eq!(taken["a"].len(), 8);
        assert_eq!(taken["a"][0], seen(13));
    }
}
