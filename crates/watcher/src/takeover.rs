//! What a new leader writes when it takes over, as pure code: the book has just been loaded
//! from `<root>/incidents`; [`plan`] brings it in line with what the tracker knows (after a
//! complete reconcile, see [`crate::leadership`]), replays the edges this replica saw while
//! standing by ([`crate::standby_edges`]), and reports the exits that happened while no watcher
//! led ([`crate::handled`]).

use std::collections::{BTreeMap, BTreeSet};

use zkwatchdog::registry::{AgentState, Marker, Timestamp};

use crate::book::{Book, Write};
use crate::handled::{exit_generation, exit_time, Handled};
use crate::incident::{Cause, Incident};
use crate::standby_edges::SeenEdge;
use crate::tracker::{Condition, Edge, Verdict};

/// What the take-over writes, and which agents it reports for an exit no leader saw.
#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// Agents whose exit, recorded while no watcher led, is reported now.
    pub unseen: Vec<String>,
}

/// Brings `book` (just loaded) in line with `agents` (every agent the tracker knows: id,
/// condition, latest marker), replaying `standby_edges` (edges seen while standing by). `previous` is
/// the handled record the last leader left (`None`: there was none, a first deployment: nothing
/// old is reported). Incidents of agents the tracker does not know are closed as stopped: the
/// caller guarantees that the tracker has read every agent.
pub fn plan<'a>(
    book: &mut Book,
    agents: impl Iterator<Item = (&'a str, &'a Condition, Option<&'a Marker>)>,
    mut standby_edges: BTreeMap<String, Vec<SeenEdge>>,
    previous: Option<&Handled>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let mut known = BTreeSet::new();
    for (id, condition, marker) in agents {
        known.insert(id.to_string());
        let mut edges: Vec<Edge> = standby_edges
            .remove(id)
            .unwrap_or_default()
            .into_iter()
            .filter(|seen| !handled_before(id, seen, previous))
            .map(|seen| replay(seen.edge, condition))
            .collect();
        if edges.is_empty() {
            if let Some(edge) = unseen_exit(id, condition, marker, previous, book.incident(id)) {
                plan.unseen.push(id.to_string());
                edges.push(edge);
            }
        }
        let verdict = Verdict {
            condition: condition.clone(),
            edges,
            changed: false,
        };
        plan.writes.extend(book.apply(id, &verdict, now));
    }
    for id in book.ids() {
        if !known.contains(&id) {
            let gone = Verdict {
                condition: Condition::Gone,
                edges: Vec::new(),
                changed: false,
            };
            plan.writes.extend(book.apply(&id, &gone, now));
        }
    }
    plan
}

/// Whether the previous leader handled the exit `seen` reports. A replica that was frozen (or
/// cut off) while an agent crashed sees the crash when it reads the agent again, as a standby;
/// by then the leader may have announced it and closed its incident, so no incident write
/// tells the standby that it was handled. The handled record does: replaying the edge on a
/// later take-over would announce the crash a second time (the chaos suite's 1000-fault run
/// found 36 such duplicates, each a crash during one watcher freeze followed by another
/// leadership change).
///
/// Generations start over when a watchdog restarts, so the exit is matched by generation *and*
/// time: the record must have noted it at or after the exit (or, for LOST, the agent's last
/// update). Matching by generation alone dropped real crashes of a restarted watchdog (the
/// rerun of the benchmark missed 24). A bounce seen without an exit record (a watchdog killed
/// and started again) has no time of its own; it happened after this replica's previous look
/// at the agent, which showed the generation that ended running: a note of that generation's
/// end made after the look is about this very end (chaos #531: a leader frozen across a LOST
/// and its recovery saw the bounce when it thawed, and replayed it on its next take-over).
fn handled_before(id: &str, seen: &SeenEdge, previous: Option<&Handled>) -> bool {
    let (Edge::Bounced { cause, .. } | Edge::WentDown(cause)) = &seen.edge;
    let at = match cause {
        Cause::Bounced { exit: None, .. } => Some(seen.looked_before),
        cause => exit_time(cause),
    };
    match (previous, exit_generation(cause), at) {
        (Some(previous), Some(generation), Some(at)) => previous.contains_since(id, generation, at),
        _ => false,
    }
}

/// An edge a standby saw, replayed on take-over against the agent's condition now: a crash that
/// has recovered since becomes a bounce (reported as crashed and recovered).
pub fn replay(edge: Edge, now: &Condition) -> Edge {
    match (edge, now) {
        (Edge::WentDown(cause), Condition::Up { generation, .. }) => Edge::Bounced {
            cause,
            to_generation: *generation,
        },
        (edge, _) => edge,
    }
}

/// The exit of a running agent that no leader may have seen: recorded (`last_exit`, not a
/// planned reload) for an older generation than the one running, after the previous leader's
/// last write minus the skew margin, not in its handled list, and not the exit of an incident on
/// record. Reported as crashed and recovered (a bounce when generations were skipped).
fn unseen_exit(
    id: &str,
    condition: &Condition,
    marker: Option<&Marker>,
    previous: Option<&Handled>,
    incident: Option<&Incident>,
) -> Option<Edge> {
    let previous = previous?;
    let Condition::Up { generation, .. } = condition else {
        return None;
    };
    let exit = marker?.last_exit.as_ref()?;
    let covered = incident.and_then(|i| exit_generation(&i.cause)) == Some(exit.generation);
    if exit.reload
        || exit.generation >= *generation
        || !previous.after_last_write(exit.at)
        || previous.contains_since(id, exit.generation, exit.at)
        || covered
    {
        return None;
    }
    let cause = if exit.generation + 1 == *generation {
        Cause::Crashed {
            generation: exit.generation,
            exit: exit.clone(),
            state: AgentState::Restarting,
        }
    } else {
        Cause::Bounced {
            from_generation: exit.generation,
            to_generation: *generation,
            exit: Some(exit.clone()),
        }
    };
    Some(Edge::Bounced {
        cause,
        to_generation: *generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::Rules;
    use crate::incident::Resolution;
    use std::time::{Duration, UNIX_EPOCH};
    use zkwatchdog::registry::{AgentKind, LastExit};

    fn t(secs: u64) -> Timestamp {
        Timestamp(UNIX_EPOCH + Duration::from_secs(1_000_000 + secs))
    }

    fn book() -> Book {
        Book::new(Rules {
            group_wait: Duration::ZERO,
            repeat_interval: None,
            channels: vec!["email".into()],
        })
    }

    fn exit(generation: u64, at: Timestamp, reload: bool) -> LastExit {
        LastExit {
            at,
            generation,
            code: None,
            signal: Some("SIGKILL".into()),
            uptime_ms: 5,
            stderr_tail: vec![],
            probe_restart: None,
            reload,
            daemonized: None,
        }
    }

    fn marker(id: &str, generation: u64, last_exit: Option<LastExit>) -> Marker {
        Marker {
            v: 1,
            id: id.into(),
            name: "a".into(),
            kind: AgentKind::Generic,
            host: "h".into(),
            command: vec!["x".into()],
            labels: BTreeMap::new(),
            version: "0".into(),
            registered_at: t(0),
            updated_at: t(0),
            state: AgentState::Running,
            generation,
            restarts: 0,
            last_exit,
            session_id: "0x1".into(),
            conflict: None,
        }
    }

    fn looked(edge: Edge, looked_before: Timestamp) -> SeenEdge {
        SeenEdge {
            edge,
            looked_before,
        }
    }

    fn up(generation: u64) -> Condition {
        Condition::Up {
            generation,
            degraded: None,
        }
    }

    /// The previous leader's record: last written at t(1000), having handled `handled` (noted
    /// at t(1600), after the exits of the tests, at t(1500)).
    fn previous(handled: &[(&str, u64)]) -> Handled {
        previous_noted(handled, t(1600))
    }

    /// The same, the exits noted at `noted`.
    fn previous_noted(handled: &[(&str, u64)], noted: Timestamp) -> Handled {
        let mut h = Handled::new(t(1000));
        for (id, generation) in handled {
            h.exits.push(crate::handled::HandledExit {
                id: id.to_string(),
                generation: *generation,
                at: noted,
            });
        }
        h
    }

    fn run(
        book: &mut Book,
        agents: &[(&str, Condition, Marker)],
        previous: Option<&Handled>,
    ) -> Plan {
        plan(
            book,
            agents.iter().map(|(id, c, m)| (*id, c, Some(m))),
            BTreeMap::new(),
            previous,
            t(2000),
        )
    }

    fn crashed_and_recovered(plan: &Plan, id: &str) -> bool {
        plan.writes.iter().any(|w| match w {
            Write::Put(i) => {
                i.id == id
                    && matches!(i.cause, Cause::Crashed { .. })
                    && i.resolution == Some(Resolution::Recovered { generation: 2 })
            }
            Write::Delete(_) => false,
        })
    }

    #[test]
    fn exits_while_no_watcher_led() {
        let prev = previous(&[("handled", 1)]);
        let early = previous_noted(&[("handled", 1)], t(900));
        #[rustfmt::skip]
        let table: Vec<(&str, Option<&Handled>, Marker, Condition, bool)> = vec![
            ("an exit after the last write, agent back: reported",
                Some(&prev), marker("a", 2, Some(exit(1, t(1500), false))), up(2), true),
            ("within the skew margin before the last write: reported",
                Some(&prev), marker("a", 2, Some(exit(1, t(1000 - 30), false))), up(2), true),
            ("long before the last write: the previous leader watched it",
                Some(&prev), marker("a", 2, Some(exit(1, t(100), false))), up(2), false),
            ("an exit the previous leader handled: not again",
                Some(&prev), marker("handled", 2, Some(exit(1, t(1500), false))), up(2), false),
            ("the same generation handled before this exit (a restarted watchdog): reported",
                Some(&early), marker("handled", 2, Some(exit(1, t(1500), false))), up(2), true),
            ("a planned reload is no crash",
                Some(&prev), marker("a", 2, Some(exit(1, t(1500), true))), up(2), false),
            ("no record at all (first deployment): nothing old is reported",
                None, marker("a", 2, Some(exit(1, t(1500), false))), up(2), false),
            ("the exit of the running generation is no bounce",
                Some(&prev), marker("a", 2, Some(exit(2, t(1500), false))), up(2), false),
            ("an agent still down is the down rule's",
                Some(&prev), marker("a", 2, Some(exit(1, t(1500), false))), Condition::Settling, false),
            ("no exit record: nothing to report",
                Some(&prev), marker("a", 2, None), up(2), false),
        ];
        for (name, previous, marker, condition, reported) in table {
            let id = marker.id.clone();
            let mut b = book();
            let p = run(&mut b, &[(id.as_str(), condition, marker)], previous);
            assert_eq!(crashed_and_recovered(&p, &id), reported, "{name}: {p:?}");
            assert_eq!(p.unseen.len(), usize::from(reported), "{name}");
        }
    }

    #[test]
    fn several_generations_skipped_are_a_bounce_with_the_exit() {
        let prev = previous(&[]);
        let mut b = book();
        let m = marker("a", 5, Some(exit(3, t(1500), false)));
        let p = run(&mut b, &[("a", up(5), m)], Some(&prev));
        let Some(Write::Put(i)) = p.writes.first() else {
            panic!("{p:?}")
        };
        assert!(matches!(
            &i.cause,
            Cause::Bounced { from_generation: 3, to_generation: 5, exit: Some(e) } if e.generation == 3
        ));
    }

    #[test]
    fn an_exit_on_record_in_an_incident_is_not_reported_twice() {
        let prev = previous(&[]);
        let mut b = book();
        let m = marker("a", 2, Some(exit(1, t(1500), false)));
        let first = run(&mut b, &[("a", up(2), m.clone())], Some(&prev));
        assert!(crashed_and_recovered(&first, "a"));
        // The incident awaits its notice; a second take-over (the first one's writes done, a
        // later step failed) loads it and adds nothing.
        let again = run(&mut b, &[("a", up(2), m)], Some(&prev));
        assert!(again.writes.is_empty(), "{again:?}");
    }

    #[test]
    fn edges_seen_while_standing_by_win_over_the_exit_record() {
        let prev = previous(&[]);
        let mut b = book();
        let m = marker("a", 2, Some(exit(1, t(1500), false)));
        let cause = Cause::Crashed {
            generation: 1,
            exit: exit(1, t(1500), false),
            state: AgentState::Restarting,
        };
        let standby_edges = BTreeMap::from([(
            "a".to_string(),
            vec![looked(Edge::WentDown(cause), t(1400))],
        )]);
        let cond = up(2);
        let p = plan(
            &mut b,
            [("a", &cond, Some(&m))].into_iter(),
            standby_edges,
            Some(&prev),
            t(2000),
        );
        assert!(crashed_and_recovered(&p, "a"), "{p:?}");
        assert!(p.unseen.is_empty(), "replayed, not found in the gap");
        assert_eq!(p.writes.len(), 1);
    }

    /// A standby's replayed edge about an exit the previous leader handled (its incident
    /// announced and closed meanwhile) is not announced again; one the record does not hold is.
    #[test]
    fn replayed_edges_of_exits_the_previous_leader_handled_are_dropped() {
        let crash = |generation: u64| Cause::Crashed {
            generation,
            exit: exit(generation, t(1500), false),
            state: AgentState::Restarting,
        };
        let lost = Cause::Lost {
            generation: 1,
            state: AgentState::Running,
            last_update: t(1400),
        };
        let unrecorded_bounce = Edge::Bounced {
            cause: Cause::Bounced {
                from_generation: 1,
                to_generation: 2,
                exit: None,
            },
            to_generation: 2,
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Option<Handled>, Edge, bool)> = vec![
            ("a crash the previous leader handled: not again",
                Some(previous(&[("a", 1)])), Edge::WentDown(crash(1)), false),
            ("a bounce of a handled exit: not again",
                Some(previous(&[("a", 1)])), Edge::Bounced { cause: crash(1), to_generation: 2 }, false),
            ("a LOST generation the previous leader announced: not again",
                Some(previous(&[("a", 1)])), Edge::WentDown(lost.clone()), false),
            ("the same generation handled before this crash (a restarted watchdog counts anew): announced",
                Some(previous_noted(&[("a", 1)], t(900))), Edge::WentDown(crash(1)), true),
            ("a bounce without an exit record, its end noted after this replica's previous look: not again",
                Some(previous(&[("a", 1)])), unrecorded_bounce.clone(), false),
            ("a bounce without an exit record, that generation's end noted before the look (an earlier watchdog's): announced",
                Some(previous_noted(&[("a", 1)], t(1300))), unrecorded_bounce.clone(), true),
            ("another generation's exit: announced",
                Some(previous(&[("a", 0)])), Edge::WentDown(crash(1)), true),
            ("another agent's exit in the record: announced",
                Some(previous(&[("b", 1)])), Edge::WentDown(crash(1)), true),
            ("no record at all: announced",
                None, Edge::WentDown(crash(1)), true),
        ];
        for (name, prev, edge, announced) in table {
            let mut b = book();
            let m = marker("a", 2, Some(exit(1, t(1500), false)));
            // This replica had last looked at the agent at t(1400), before the exits (t(1500))
            // and before the previous leader's notes (t(1600)).
            let standby_edges = BTreeMap::from([("a".to_string(), vec![looked(edge, t(1400))])]);
            let cond = up(2);
            let p = plan(
                &mut b,
                [("a", &cond, Some(&m))].into_iter(),
                standby_edges,
                prev.as_ref(),
                t(2000),
            );
            let opened = p
                .writes
                .iter()
                .any(|w| matches!(w, Write::Put(i) if i.id == "a"));
            assert_eq!(opened, announced, "{name}: {p:?}");
        }
    }

    #[test]
    fn incidents_of_agents_the_tracker_does_not_know_are_closed_as_stopped() {
        let mut b = book();
        let lost = Cause::Lost {
            generation: 1,
            state: AgentState::Running,
            last_update: t(0),
        };
        let i: Incident = serde_json::from_value(serde_json::json!({
            "v": 1, "id": "gone", "opened_at": t(0), "cause": lost, "notified_at": t(1),
            "deliveries": {"email": {"opened": t(1), "last": t(1)}},
        }))
        .expect("an incident");
        b.load(vec![i]);
        let p = run(&mut b, &[], None);
        let Some(Write::Put(closed)) = p.writes.first() else {
            panic!("{p:?}")
        };
        assert_eq!(closed.resolution, Some(Resolution::Stopped));
    }

    #[test]
    fn a_crash_seen_while_standing_by_that_recovered_is_replayed_as_a_bounce() {
        let cause = Cause::Lost {
            generation: 1,
            state: AgentState::Running,
            last_update: t(0),
        };
        let edge = replay(Edge::WentDown(cause.clone()), &up(2));
        assert_eq!(
            edge,
            Edge::Bounced {
                cause: cause.clone(),
                to_generation: 2
            }
        );
        let still_down = replay(
            Edge::WentDown(cause.clone()),
            &Condition::Down(cause.clone()),
        );
        assert_eq!(still_down, Edge::WentDown(cause));
    }
}
