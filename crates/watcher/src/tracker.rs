//! What each observation of an agent means (DESIGN.md section 2), as a pure state machine.
//!
//! The driver reads an agent's marker and liveness node (after a watch event, or for every
//! agent during reconciliation) and hands them to [`Tracker::observe`]. The tracker remembers
//! what it saw before (the generation of the last liveness node, the agent's condition) and
//! returns the agent's condition now plus the edges worth reporting. It never does I/O and never
//! looks at a clock of its own: `now` is an argument, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use zkwatchdog::registry::{AgentState, HealthStatus, Liveness, Marker};

use crate::incident::Cause;

/// An agent's marker and liveness node as read from ZooKeeper (`None`: the node is absent, or
/// its data did not decode and was reported).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub marker: Option<Marker>,
    pub live: Option<Liveness>,
    /// One of the two nodes exists but its data is not a valid record: nothing can be concluded.
    pub unreadable: bool,
}

/// What the watcher concludes about an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The child runs (liveness node present). `degraded` carries the probe's detail.
    Up {
        generation: u64,
        degraded: Option<String>,
    },
    /// The marker is there but no liveness node: crashed, in backoff, fatal, or lost.
    Down(Cause),
    /// The marker was written for a child that has no liveness node yet: either the node is
    /// about to be created, or the watchdog died in between. Decided after the settle time.
    Settling,
    /// Neither marker nor liveness node: never registered, stopped cleanly or deregistered.
    Gone,
    /// A liveness node without a marker: a misconfiguration (or a hand-deleted marker).
    Orphan,
    /// The marker or the liveness node holds data that is not a valid record (hand-edited or
    /// written by something else): no conclusion either way, an open incident stays open.
    Unreadable,
}

/// An edge worth reporting that the condition alone does not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// The generation jumped without the watcher seeing the agent down: it went down and came
    /// back between two observations (a restart faster than the read after the watch event, or
    /// one during a disconnection). The cause is `Crashed` when the marker holds the exit record
    /// of the generation that vanished, `Bounced` when it does not.
    Bounced { cause: Cause, to_generation: u64 },
    /// The agent went from some other condition to down: a new occurrence of its cause.
    WentDown(Cause),
}

/// The result of one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub condition: Condition,
    pub edges: Vec<Edge>,
    /// The condition changed since the previous observation.
    pub changed: bool,
}

#[derive(Debug, Clone)]
struct Known {
    /// Generation of the last liveness node seen.
    live_generation: Option<u64>,
    condition: Condition,
    /// When the agent entered `Settling`.
    settling_since: Option<Instant>,
    /// When it was last observed.
    seen_at: Instant,
    marker: Option<Marker>,
    live: Option<Liveness>,
}

/// Every agent the watcher has seen, and what it concluded.
#[derive(Debug)]
pub struct Tracker {
    agents: BTreeMap<String, Known>,
    /// The agents whose condition is `Settling` (kept with `agents`: the loop asks often, and
    /// a fleet has far more agents than settling ones).
    settling: BTreeSet<String>,
    settle: Duration,
}

impl Tracker {
    /// `settle`: how long a marker may wait for its first liveness node before the agent counts
    /// as lost.
    pub fn new(settle: Duration) -> Self {
        Tracker {
            agents: BTreeMap::new(),
            settling: BTreeSet::new(),
            settle,
        }
    }

    /// How long a `Settling` agent waits before it is observed again.
    pub fn settle_time(&self) -> Duration {
        self.settle
    }

    /// Feeds what was just read for agent `id`.
    pub fn observe(&mut self, id: &str, obs: Observation, now: Instant) -> Verdict {
        // What the decisions below need of what was known (not the records: they may carry
        // stderr tails, and a reconcile observes every agent).
        let previous = self.agents.get(id);
        let seen_generation = previous.and_then(|k| k.live_generation);
        let previous_settling = previous.and_then(|k| k.settling_since);
        let was_down = matches!(previous.map(|k| &k.condition), Some(Condition::Down(_)));
        let mut edges = Vec::new();
        let mut settling_since = None;

        if obs.unreadable {
            // Keep what was known (generation, last good records) for when the data is readable
            // again; conclude nothing now.
            let changed = previous.map(|k| &k.condition) != Some(&Condition::Unreadable);
            let known = self.agents.entry(id.to_string()).or_insert(Known {
                live_generation: None,
                condition: Condition::Unreadable,
                settling_since: None,
                seen_at: now,
                marker: None,
                live: None,
            });
            known.condition = Condition::Unreadable;
            known.settling_since = None;
            known.seen_at = now;
            self.settling.remove(id);
            return Verdict {
                condition: Condition::Unreadable,
                edges,
                changed,
            };
        }

        let since = previous_settling.unwrap_or(now);
        let settled = now.saturating_duration_since(since) >= self.settle;
        let condition = classify(
            obs.marker.as_ref(),
            obs.live.as_ref(),
            seen_generation,
            settled,
        );
        if condition == Condition::Settling {
            settling_since = Some(since);
        }
        if let (Some(marker), Some(live), Some(seen)) = (&obs.marker, &obs.live, seen_generation) {
            if live.generation > seen && !was_down && !reloaded(marker, seen, live) {
                // The agent went down and came back between two observations.
                let exit = marker
                    .last_exit
                    .clone()
                    .filter(|e| e.generation >= seen && e.generation < live.generation);
                let cause = match exit {
                    // The exit of the child we saw is recorded: a crash, seen late.
                    Some(exit) if exit.generation == seen => Cause::Crashed {
                        generation: seen,
                        exit,
                        state: AgentState::Restarting,
                    },
                    exit => Cause::Bounced {
                        from_generation: seen,
                        to_generation: live.generation,
                        exit,
                    },
                };
                edges.push(Edge::Bounced {
                    cause,
                    to_generation: live.generation,
                });
            }
        }

        if let Condition::Down(cause) = &condition {
            let new_occurrence = match self.agents.get(id).map(|k| &k.condition) {
                Some(Condition::Down(old)) => cause_generation(old) != cause_generation(cause),
                _ => true,
            };
            if new_occurrence {
                edges.push(Edge::WentDown(cause.clone()));
            }
        }

        // An agent the tracker does not know is `Gone` (both nodes of a planned stop vanish in one
        // transaction and raise two events: only the first is a change).
        let changed = self
            .agents
            .get(id)
            .map_or(Condition::Gone != condition, |k| k.condition != condition);
        let live_generation = obs.live.as_ref().map(|l| l.generation).or(seen_generation);
        if condition == Condition::Settling {
            self.settling.insert(id.to_string());
        } else {
            self.settling.remove(id);
        }
        if condition == Condition::Gone {
            self.agents.remove(id);
        } else {
            self.agents.insert(
                id.to_string(),
                Known {
                    live_generation,
                    condition: condition.clone(),
                    settling_since,
                    seen_at: now,
                    marker: obs.marker,
                    live: obs.live,
                },
            );
        }
        Verdict {
            condition,
            edges,
            changed,
        }
    }

    /// The agents known now (ids in order), with their condition, marker and liveness node.
    pub fn agents(
        &self,
    ) -> impl Iterator<Item = (&str, &Condition, Option<&Marker>, Option<&Liveness>)> {
        self.agents.iter().map(|(id, k)| {
            (
                id.as_str(),
                &k.condition,
                k.marker.as_ref(),
                k.live.as_ref(),
            )
        })
    }

    /// The agents whose condition is `Settling`, in order.
    pub fn settling(&self) -> impl Iterator<Item = &str> {
        self.settling.iter().map(String::as_str)
    }

    /// When `id` was last observed (`None`: never, or it was gone).
    pub fn seen_at(&self, id: &str) -> Option<Instant> {
        self.agents.get(id).map(|k| k.seen_at)
    }

    /// The marker last read for `id`.
    pub fn marker(&self, id: &str) -> Option<&Marker> {
        self.agents.get(id).and_then(|k| k.marker.as_ref())
    }

    /// The condition of `id` (`Gone` if unknown).
    pub fn condition(&self, id: &str) -> Condition {
        self.agents
            .get(id)
            .map(|k| k.condition.clone())
            .unwrap_or(Condition::Gone)
    }

    /// Ids of every known agent.
    pub fn ids(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }
}

/// How long a marker may wait for its liveness node before the agent counts as lost: the
/// watchers' session timeout, within 1 to 5 s.
pub fn settle_time(session_timeout: Duration) -> Duration {
    session_timeout.clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// What an agent's marker and liveness node say: the one classification, the tracker's and
/// `zkwatcher status`'s. `seen` is the generation of the liveness node seen before (`None` for
/// a single read); `settled`, whether a marker without its liveness node has waited the settle
/// time (a single read tells it by the marker's `updated_at`).
pub fn classify(
    marker: Option<&Marker>,
    live: Option<&Liveness>,
    seen: Option<u64>,
    settled: bool,
) -> Condition {
    match (marker, live) {
        (None, None) => Condition::Gone,
        (None, Some(_)) => Condition::Orphan,
        (Some(_), Some(live)) => Condition::Up {
            generation: live.generation,
            degraded: (live.health.status == HealthStatus::Degraded)
                .then(|| live.health.detail.clone()),
        },
        (Some(marker), None) => match down_cause(marker, seen) {
            Some(cause) => Condition::Down(cause),
            None if settled => Condition::Down(lost(marker, marker.generation)),
            None => Condition::Settling,
        },
    }
}

/// Whether the jump from generation `seen` to the liveness node `live` is exactly one planned
/// restart for a reload: the next generation, and the exit record of `seen` says `reload`. Any
/// other jump (more than one generation, or no such record) is still a bounce worth reporting.
fn reloaded(marker: &Marker, seen: u64, live: &Liveness) -> bool {
    live.generation == seen + 1
        && marker
            .last_exit
            .as_ref()
            .is_some_and(|e| e.reload && e.generation == seen)
}

/// Why a marker without a liveness node is down, or `None` while that is not yet known.
///
/// `seen` is the generation of the liveness node the watcher saw last. The watchdog writes
/// `last_exit` into the marker before it deletes the liveness node, so an exit record for that
/// generation means the child crashed; no record means the watchdog itself went away.
///
/// An exit record marked `reload` is a planned restart, not a crash: the watchdog starts the
/// next child at once, so it is `None` (settling) like a marker waiting for its first liveness
/// node. If the next child does not come back, the usual rules take over: a failed start or
/// a crash writes a new exit record (and `backoff`/`fatal`), and no liveness node within the
/// settle time is `Lost`.
fn down_cause(marker: &Marker, seen: Option<u64>) -> Option<Cause> {
    let vanished = seen.unwrap_or(marker.generation);
    if let Some(exit) = &marker.last_exit {
        let restarting = matches!(
            marker.state,
            AgentState::Restarting | AgentState::Starting | AgentState::Running
        );
        if exit.reload && restarting && exit.generation >= vanished {
            return None;
        }
        if exit.generation >= vanished {
            return Some(Cause::Crashed {
                generation: exit.generation,
                exit: exit.clone(),
                state: marker.state,
            });
        }
    }
    match marker.state {
        // A watchdog that gave up or waits out a backoff has an exit record; without one the
        // marker is stale, so this is the watchdog itself gone.
        AgentState::Fatal | AgentState::Backoff | AgentState::Stopping => {
            Some(lost(marker, vanished))
        }
        // The liveness node of `seen` vanished with no exit record: lost.
        _ if seen.is_some() && seen >= Some(marker.generation) => Some(lost(marker, vanished)),
        // The marker names a child whose liveness node the watcher never saw: it may be about to
        // appear (the watchdog writes the marker first), so wait for the settle time.
        _ => None,
    }
}

fn lost(marker: &Marker, generation: u64) -> Cause {
    Cause::Lost {
        generation,
        state: marker.state,
        last_update: marker.updated_at,
    }
}

fn cause_generation(cause: &Cause) -> Option<u64> {
    match cause {
        Cause::Crashed { generation, .. } | Cause::Lost { generation, .. } => Some(*generation),
        Cause::Bounced { to_generation, .. } => Some(*to_generation),
        Cause::Degraded { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zkwatchdog::registry::{AgentKind, Health, LastExit, Timestamp};

    fn marker(generation: u64, state: AgentState, exit_gen: Option<u64>) -> Marker {
        Marker {
            v: 1,
            id: "a@h".into(),
            name: "a".into(),
            kind: AgentKind::Generic,
            host: "h".into(),
            command: vec!["x".into()],
            labels: BTreeMap::new(),
            version: "0".into(),
            registered_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            state,
            generation,
            restarts: generation.saturating_sub(1),
            last_exit: exit_gen.map(|g| LastExit {
                at: Timestamp::now(),
                generation: g,
                code: Some(1),
                signal: None,
                uptime_ms: 10,
                stderr_tail: vec![],
                probe_restart: None,
                reload: false,
                daemonized: None,
            }),
            session_id: "0x1".into(),
            conflict: None,
        }
    }

    fn live(generation: u64, degraded: bool) -> Liveness {
        Liveness {
            v: 1,
            pid: 1,
            child_pid: 2,
            generation,
            started_at: Timestamp::now(),
            session_id: "0x1".into(),
            health: if degraded {
                Health {
                    status: HealthStatus::Degraded,
                    detail: "channel full".into(),
                    checked_at: None,
                }
            } else {
                Health::unprobed()
            },
        }
    }

    fn obs(m: Option<Marker>, l: Option<Liveness>) -> Observation {
        Observation {
            marker: m,
            live: l,
            unreadable: false,
        }
    }

    const SETTLE: Duration = Duration::from_secs(2);

    #[test]
    fn unreadable_data_concludes_nothing_and_keeps_the_generation() {
        let mut t = Tracker::new(SETTLE);
        let now = Instant::now();
        let running = || Some(marker(1, AgentState::Running, None));
        t.observe("a", obs(running(), Some(live(1, false))), now);
        let garbage = Observation {
            marker: None,
            live: Some(live(1, false)),
            unreadable: true,
        };
        let v = t.observe("a", garbage.clone(), now);
        assert_eq!(v.condition, Condition::Unreadable);
        assert!(v.changed && v.edges.is_empty(), "{v:?}");
        assert!(!t.observe("a", garbage, now).changed);
        // Readable again, one generation on, with the exit of the first recorded: the crash
        // that happened meanwhile is still reported.
        let v = t.observe(
            "a",
            obs(
                Some(marker(2, AgentState::Running, Some(1))),
                Some(live(2, false)),
            ),
            now,
        );
        assert!(
            matches!(
                v.edges[..],
                [Edge::Bounced {
                    cause: Cause::Crashed { generation: 1, .. },
                    to_generation: 2
                }]
            ),
            "{v:?}"
        );
        // An agent first seen with garbage data is tracked as unreadable, not as gone.
        let v = t.observe(
            "b",
            Observation {
                unreadable: true,
                ..Observation::default()
            },
            now,
        );
        assert_eq!(v.condition, Condition::Unreadable);
        assert_eq!(t.condition("b"), Condition::Unreadable);
    }

    #[test]
    fn the_last_look_at_an_agent_is_remembered_until_it_is_gone() {
        let mut t = Tracker::new(SETTLE);
        let t0 = Instant::now();
        let running = || Some(marker(1, AgentState::Running, None));
        assert_eq!(t.seen_at("a"), None);
        t.observe("a", obs(running(), Some(live(1, false))), t0);
        assert_eq!(t.seen_at("a"), Some(t0));
        let later = t0 + Duration::from_secs(5);
        t.observe("a", obs(running(), Some(live(1, false))), later);
        assert_eq!(t.seen_at("a"), Some(later));
        let garbage = Observation {
            marker: None,
            live: Some(live(1, false)),
            unreadable: true,
        };
        let latest = later + Duration::from_secs(1);
        t.observe("a", garbage, latest);
        assert_eq!(t.seen_at("a"), Some(latest));
        t.observe("a", obs(None, None), latest);
        assert_eq!(t.seen_at("a"), None);
    }

    #[test]
    fn crash_then_recovery() {
        let mut t = Tracker::new(SETTLE);
        let now = Instant::now();
        let v = t.observe(
            "a",
            obs(
                Some(marker(1, AgentState::Running, None)),
                Some(live(1, false)),
            ),
            now,
        );
        assert_eq!(
            v.condition,
            Condition::Up {
                generation: 1,
                degraded: None
            }
        );
        assert!(v.edges.is_empty());
        // The liveness node of generation 1 vanished; the marker already moved on to
        // generation 2 (restart in progress) but holds the exit of generation 1: crashed.
        let v = t.observe(
            "a",
            obs(Some(marker(2, AgentState::Running, Some(1))), None),
            now,
        );
        assert!(
            matches!(
                v.condition,
                Condition::Down(Cause::Crashed { generation: 1, .. })
            ),
            "{v:?}"
        );
        assert!(matches!(v.edges[..], [Edge::WentDown(_)]));
        let v = t.observe(
            "a",
            obs(
                Some(marker(2, AgentState::Running, Some(1))),
                Some(live(2, false)),
            ),
            now,
        );
        assert_eq!(
            v.condition,
            Condition::Up {
                generation: 2,
                degraded: None
            }
        );
        assert!(
            v.edges.is_empty(),
            "a seen crash is not also a bounce: {v:?}"
        );
    }

    #[test]
    fn vanished_without_exit_record_is_lost() {
        let mut t = Tracker::new(SETTLE);
        let now = Instant::now();
        t.observe(
            "a",
            obs(
                Some(marker(3, AgentState::Running, Some(2))),
                Some(live(3, false)),
            ),
            now,
        );
        let v = t.observe(
            "a",
            obs(Some(marker(3, AgentState::Running, Some(2))), None),
            now,
        );
        assert!(
            matches!(
                v.condition,
                Condition::Down(Cause::Lost { generation: 3, .. })
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_fresh_marker_settles_before_it_counts_as_lost() {
        let mut t = Tracker::new(SETTLE);
        let t0 = Instant::now();
        let m = marker(1, AgentState::Running, None);
        let v = t.observe("a", obs(Some(m.clone()), None), t0);
        assert_eq!(v.condition, Condition::Settling);
        assert!(v.edges.is_empty());
        let v = t.observe("a", obs(Some(m.clone()), None), t0 + Duration::from_secs(1));
        assert_eq!(v.condition, Condition::Settling);
        assert_eq!(t.settling().collect::<Vec<_>>(), ["a"]);
        let v = t.observe(
            "a",
            obs(Some(m.clone()), Some(live(1, false))),
            t0 + Duration::from_millis(1500),
        );
        assert!(matches!(v.condition, Condition::Up { .. }));
        assert_eq!(t.settling().count(), 0, "no longer settling");
        // And one that never gets its liveness node is lost after the settle time.
        let mut t = Tracker::new(SETTLE);
        t.observe("b", obs(Some(m.clone()), None), t0);
        let v = t.observe("b", obs(Some(m), None), t0 + SETTLE);
        assert!(
            matches!(v.condition, Condition::Down(Cause::Lost { .. })),
            "{v:?}"
        );
        assert_eq!(t.settling().count(), 0, "lost, not settling");
        assert!(matches!(v.edges[..], [Edge::WentDown(_)]));
    }

    #[test]
    fn down_at_first_sight_uses_the_marker() {
        let mut t = Tracker::new(SETTLE);
        let now = Instant::now();
        let v = t.observe(
            "a",
            obs(Some(marker(4, AgentState::Backoff, Some(4))), None),
            now,
        );
        assert!(matches!(
            v.condition,
            Condition::Down(Cause::Crashed {
                generation: 4,
                state: AgentState::Backoff,
                ..
            })
        ));
        let v = t.observe(
            "a",
            obs(Some(marker(4, AgentState::Fatal, Some(4))), None),
            now,
        );
        assert!(matches!(
            v.condition,
            Condition::Down(Cause::Crashed {
                state: AgentState::Fatal,
                ..
            })
        ));
        assert!(v.changed);
        assert!(v.edges.is_empty(), "same occurrence, new state: {v:?}");
        // A stale marker in backoff without any exit record: the watchdog is gone.
        let mut t = Tracker::new(SETTLE);
        let v = t.observe(
            "b",
            obs(Some(marker(1, AgentState::Backoff, None)), None),
            now,
        );
        assert!(matches!(v.condition, Condition::Down(Cause::Lost { .. })));
    }

    #[test]
    fn generation_jump_is_a_bounce() {
        let mut t = Tracker::new(SETTLE);
        let now = Instant::now();
        let running = |g, e| {
            obs(
                Some(marker(g, AgentState::Running, e)),
                Some(live(g, false)),
            )
        };
        t.observe("a", running(3, Some(2)), now);
        // 3 -> 5 with the exit of 4 recorded: the agent bounced twice unobserved.
        let v = t.observe("a", running(5, Some(4)), now);
        match &v.edges[..] {
            [Edge::Bounced {
                cause:
                    Cause::Bounced {
                        from_generation: 3,
                        to_generation: 5,
                        exit: Some(e),
                    },
                to_generation: 5,
            }] => assert_eq!(e.generation, 4),
            other => panic!("expected a bounce, got {other:?}"),
        }
        // 5 -> 6 with the exit of 5 recorded: a crash whose absence of liveness was too short
        // to read (an immediate restart); it is reported as the crash it was.
        let v = t.observe("a", running(6, Some(5)), now);
        match &v.edges[..] {
            [Edge::Bounced {
                cause: Cause::Crashed { generation: 5, .. },
                to_generation: 6,
            }] => {}
            other => panic!("expected a late-seen crash, got {other:?}"),
        }
    }

    #[test]
    fn clean_stop_orphan_and_degraded() {
        let mut t = Tracker::new(SETTLE);
        let now = Instant::now();
        t.observe(
            "a",
            obs(
                Some(marker(1, AgentState::Running, None)),
                Some(live(1, false)),
            ),
            now,
        );
        let v = t.observe("a", obs(None, None), now);
        assert_eq!(v.condition, Condition::Gone);
        assert!(v.edges.is_empty());
        assert!(t.ids().is_empty());
        let v = t.observe("b", obs(None, Some(live(1, false))), now);
        assert_eq!(v.condition, Condition::Orphan);
        let v = t.observe(
            "c",
            obs(
                Some(marker(1, AgentState::Running, None)),
                Some(live(1, true)),
            ),
            now,
        );
        assert_eq!(
            v.condition,
            Condition::Up {
                generation: 1,
                degraded: Some("channel full".into())
            }
        );
    }

    /// A marker whose exit record (of `exit_gen`) is a reload.
    fn reloaded_marker(generation: u64, state: AgentState, exit_gen: u64) -> Marker {
        let mut m = marker(generation, state, Some(exit_gen));
        if let Some(e) = m.last_exit.as_mut() {
            e.reload = true;
            e.code = Some(143);
        }
        m
    }

    #[test]
    fn a_reload_is_a_planned_restart_never_an_edge() {
        let t0 = Instant::now();
        // Every order in which the watcher may read the steps of a reload of generation 1:
        // (marker, live) pairs after the first "up at generation 1".
        let sequences: Vec<(&str, Vec<Observation>)> = vec![
            (
                "each step seen",
                vec![
                    // Stop requested.
                    obs(
                        Some(marker(1, AgentState::Restarting, None)),
                        Some(live(1, false)),
                    ),
                    // Exit recorded, liveness node gone.
                    obs(Some(reloaded_marker(1, AgentState::Restarting, 1)), None),
                    // New child in the marker, its liveness node not yet read.
                    obs(Some(reloaded_marker(2, AgentState::Running, 1)), None),
                    obs(
                        Some(reloaded_marker(2, AgentState::Running, 1)),
                        Some(live(2, false)),
                    ),
                ],
            ),
            (
                "only the result seen",
                vec![obs(
                    Some(reloaded_marker(2, AgentState::Running, 1)),
                    Some(live(2, false)),
                )],
            ),
        ];
        for (name, steps) in sequences {
            let mut t = Tracker::new(SETTLE);
            t.observe(
                "a",
                obs(
                    Some(marker(1, AgentState::Running, None)),
                    Some(live(1, false)),
                ),
                t0,
            );
            for (i, step) in steps.into_iter().enumerate() {
                let v = t.observe("a", step, t0 + Duration::from_millis(10 * i as u64));
                assert!(v.edges.is_empty(), "{name}, step {i}: {v:?}");
                assert!(
                    !matches!(v.condition, Condition::Down(_)),
                    "{name}, step {i}: {v:?}"
                );
            }
            assert_eq!(
                t.condition("a"),
                Condition::Up {
                    generation: 2,
                    degraded: None
                },
                "{name}"
            );
        }
    }

    #[test]
    fn a_reload_whose_next_child_fails_is_down_by_the_usual_rules() {
        let t0 = Instant::now();
        let up = |t: &mut Tracker| {
            t.observe(
                "a",
                obs(
                    Some(marker(1, AgentState::Running, None)),
                    Some(live(1, false)),
                ),
                t0,
            )
        };
        // The new child crashed at once: its own exit record, backoff.
        let mut t = Tracker::new(SETTLE);
        up(&mut t);
        t.observe(
            "a",
            obs(Some(reloaded_marker(1, AgentState::Restarting, 1)), None),
            t0,
        );
        let v = t.observe(
            "a",
            obs(Some(marker(2, AgentState::Backoff, Some(2))), None),
            t0,
        );
        assert!(
            matches!(
                v.condition,
                Condition::Down(Cause::Crashed {
                    generation: 2,
                    state: AgentState::Backoff,
                    ..
                })
            ),
            "{v:?}"
        );
        assert!(matches!(v.edges[..], [Edge::WentDown(_)]), "{v:?}");
        // The new child never got a liveness node (the watchdog died meanwhile): lost after
        // the settle time.
        let mut t = Tracker::new(SETTLE);
        up(&mut t);
        let m = || Some(reloaded_marker(1, AgentState::Restarting, 1));
        assert_eq!(
            t.observe("a", obs(m(), None), t0).condition,
            Condition::Settling
        );
        let v = t.observe("a", obs(m(), None), t0 + SETTLE);
        assert!(
            matches!(v.condition, Condition::Down(Cause::Lost { .. })),
            "{v:?}"
        );
        assert!(matches!(v.edges[..], [Edge::WentDown(_)]));
        // A reload record left in a marker that says fatal or backoff is no excuse.
        let mut t = Tracker::new(SETTLE);
        up(&mut t);
        let v = t.observe(
            "a",
            obs(Some(reloaded_marker(1, AgentState::Fatal, 1)), None),
            t0,
        );
        assert!(matches!(v.condition, Condition::Down(_)), "{v:?}");
    }

    #[test]
    fn a_jump_past_a_reload_is_still_a_bounce() {
        let t0 = Instant::now();
        let mut t = Tracker::new(SETTLE);
        t.observe(
            "a",
            obs(
                Some(marker(1, AgentState::Running, None)),
                Some(live(1, false)),
            ),
            t0,
        );
        // Generation 1 ended unobserved (how is unknown), then 2 was reloaded into 3.
        let v = t.observe(
            "a",
            obs(
                Some(reloaded_marker(3, AgentState::Running, 2)),
                Some(live(3, false)),
            ),
            t0,
        );
        assert!(
            matches!(
                v.edges[..],
                [Edge::Bounced {
                    cause: Cause::Bounced {
                        from_generation: 1,
                        to_generation: 3,
                        ..
                    },
                    ..
                }]
            ),
            "{v:?}"
        );
    }
}
