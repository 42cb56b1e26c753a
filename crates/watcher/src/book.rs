//! The leader's book of incidents (DESIGN.md section 2, "exactly one sender", "at-least-once",
//! "grouping", "silences"), as pure logic over the records in `<root>/incidents`.
//!
//! [`Book::apply`] turns the tracker's verdicts into incident writes; [`Book::due`] says what one
//! channel has to send now (everything pending, once the oldest pending item has waited
//! `group-wait`); [`Book::delivered`] records what a channel accepted. The driver performs the
//! returned [`Write`]s against ZooKeeper, in order, and reloads the book if one fails.
//!
//! Each agent has at most one record, and each channel its own view of it (its `Delivery`): a
//! record that is reopened (the agent went down again before every channel announced its
//! recovery) is a new incident for the channels that were told it had ended, and the same one
//! for the others (see `reopen`). Every notice carries the occurrence it announced
//! ([`Occurrence`](crate::incident::Occurrence)), and a finished send is recorded against that
//! occurrence, never against whatever the agent has by then.

use std::collections::BTreeMap;
use std::time::Duration;

use zkwatchdog::registry::{Marker, Timestamp, RECORD_VERSION};

use crate::incident::{Cause, Delivery, Incident, Resolution, Silence, Since};
use crate::notice::{NoticeItem, NoticeKey, Phase};
use crate::tracker::{Condition, Edge, Verdict};

/// A change to `<root>/incidents/<id>` the driver must make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Create or overwrite the node with this record.
    Put(Box<Incident>),
    /// Delete the node; this is the record as it ends (the writer notes the exit it reports as
    /// handled before the node goes).
    Delete(Box<Incident>),
}

/// One incident as the book holds it: the record and the znode version it was read or written
/// at (`None` before the first write is confirmed).
#[derive(Debug, Clone)]
struct Entry {
    incident: Incident,
}

/// What a channel is to send now.
#[derive(Debug, Clone)]
pub struct Batch {
    pub channel: String,
    pub items: Vec<NoticeItem>,
}

/// Timing rules of the book.
#[derive(Debug, Clone)]
pub struct Rules {
    pub group_wait: Duration,
    pub repeat_interval: Option<Duration>,
    /// Names of the configured channels.
    pub channels: Vec<String>,
}

/// The incidents, as the leader knows them.
#[derive(Debug)]
pub struct Book {
    rules: Rules,
    entries: BTreeMap<String, Entry>,
    silences: BTreeMap<String, Silence>,
}

impl Book {
    pub fn new(rules: Rules) -> Self {
        Book {
            rules,
            entries: BTreeMap::new(),
            silences: BTreeMap::new(),
        }
    }

    /// Replaces the book's incidents with those read from ZooKeeper.
    pub fn load(&mut self, incidents: Vec<Incident>) {
        self.entries = incidents
            .into_iter()
            .map(|incident| (incident.id.clone(), Entry { incident }))
            .collect();
    }

    /// Replaces the known silences.
    pub fn set_silences(&mut self, silences: Vec<Silence>) {
        self.silences = silences.into_iter().map(|s| (s.id.clone(), s)).collect();
    }

    /// The incident of `id`, if one is open or awaiting its last notice.
    pub fn incident(&self, id: &str) -> Option<&Incident> {
        self.entries.get(id).map(|e| &e.incident)
    }

    /// Ids with an incident record.
    pub fn ids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Applies one verdict of the tracker for agent `id`.
    pub fn apply(&mut self, id: &str, verdict: &Verdict, now: Timestamp) -> Vec<Write> {
        let mut writes = Vec::new();
        for edge in &verdict.edges {
            if let Edge::Bounced {
                cause,
                to_generation,
            } = edge
            {
                let incident = match self.entries.get(id).map(|e| &e.incident) {
                    None => Some(new_incident(id, cause.clone(), now)),
                    // Like going down, a bounce supersedes a running agent's degradation
                    // (open, or healed and not yet announced everywhere: as when open).
                    Some(i)
                        if matches!(i.cause, Cause::Degraded { .. })
                            || (matches!(i.cause, Cause::Bounced { .. })
                                && i.resolved_at.is_none()) =>
                    {
                        Some(self.successor(id, cause.clone(), now))
                    }
                    // Down and back again after a recovery some channel has still to announce:
                    // reopened (see `reopen` for what each channel says) and over again. (An
                    // edge of the outage that recovery ended, replayed, reopens nothing.)
                    Some(i) if i.resolved_at.is_some() && after_recovery(i, cause) => {
                        let mut incident = i.clone();
                        reopen(&mut incident, now);
                        incident.cause = cause.clone();
                        Some(incident)
                    }
                    // An open outage: its recovery comes with the condition below.
                    Some(_) => None,
                };
                if let Some(mut incident) = incident {
                    incident.resolved_at = Some(now);
                    incident.resolution = Some(Resolution::Recovered {
                        generation: *to_generation,
                    });
                    writes.push(self.put(incident));
                }
            }
        }
        let went_down = verdict.edges.iter().any(|e| matches!(e, Edge::WentDown(_)));
        match &verdict.condition {
            Condition::Down(cause) => writes.extend(self.down(id, cause, went_down, now)),
            Condition::Up {
                generation,
                degraded,
            } => {
                if let Some(w) = self.up(id, *generation, degraded.as_deref(), now) {
                    writes.push(w);
                }
            }
            Condition::Gone => {
                if let Some(w) = self.resolve(id, Resolution::Stopped, now, |_| true) {
                    writes.push(w);
                }
            }
            Condition::Settling | Condition::Orphan | Condition::Unreadable => {}
        }
        writes
    }

    fn down(&mut self, id: &str, cause: &Cause, went_down: bool, now: Timestamp) -> Option<Write> {
        let Some(entry) = self.entries.get(id) else {
            return Some(self.put(new_incident(id, cause.clone(), now)));
        };
        let mut incident = entry.incident.clone();
        if matches!(
            incident.cause,
            Cause::Degraded { .. } | Cause::Bounced { .. }
        ) {
            // A running agent's degradation (or a reported bounce) is superseded by the agent
            // going down: a new incident, notified on its own.
            let next = self.successor(id, cause.clone(), now);
            return Some(self.put(next));
        }
        if incident.resolved_at.is_some() {
            if went_down && after_recovery(&incident, cause) {
                // Down again before every channel announced the recovery: one record, reopened
                // (see `reopen` for what each channel then says).
                reopen(&mut incident, now);
                incident.cause = cause.clone();
                return Some(self.put(incident));
            }
            return None;
        }
        if incident.cause != *cause {
            if went_down {
                incident.occurrences += 1;
            }
            incident.cause = cause.clone();
            return Some(self.put(incident));
        }
        None
    }

    fn up(
        &mut self,
        id: &str,
        generation: u64,
        degraded: Option<&str>,
        now: Timestamp,
    ) -> Option<Write> {
        let open_degraded = self.entries.get(id).is_some_and(|e| {
            e.incident.resolved_at.is_none() && matches!(e.incident.cause, Cause::Degraded { .. })
        });
        let Some(detail) = degraded else {
            return if open_degraded {
                self.resolve(id, Resolution::Healthy, now, |_| true)
            } else {
                self.resolve(id, Resolution::Recovered { generation }, now, |_| true)
            };
        };
        let cause = Cause::Degraded {
            detail: detail.to_string(),
        };
        let Some(entry) = self.entries.get(id) else {
            return Some(self.put(new_incident(id, cause, now)));
        };
        if !matches!(entry.incident.cause, Cause::Degraded { .. }) {
            // Back from being down, but unhealthy: the down incident is over; the degradation
            // is reported once that record is closed (at the next observation).
            return self.resolve(id, Resolution::Recovered { generation }, now, |_| true);
        }
        let mut incident = entry.incident.clone();
        if incident.resolved_at.is_some() {
            // Degraded again before every channel announced the healing: one record, reopened.
            reopen(&mut incident, now);
        } else if incident.cause == cause {
            return None;
        }
        // New findings of an open degradation are recorded (status, reminders) without a new
        // notification.
        incident.cause = cause;
        Some(self.put(incident))
    }

    fn resolve(
        &mut self,
        id: &str,
        resolution: Resolution,
        now: Timestamp,
        applies: impl Fn(&Cause) -> bool,
    ) -> Option<Write> {
        let entry = self.entries.get(id)?;
        if entry.incident.resolved_at.is_some() || !applies(&entry.incident.cause) {
            return None;
        }
        let mut incident = entry.incident.clone();
        incident.resolved_at = Some(now);
        incident.resolution = Some(resolution);
        if self.finished(&incident) {
            return Some(self.delete(incident));
        }
        Some(self.put(incident))
    }

    /// Resolved and nothing left to send: the record can go.
    fn finished(&self, incident: &Incident) -> bool {
        incident.resolved_at.is_some()
            && (incident.silenced.is_some()
                || self.rules.channels.iter().all(|c| {
                    incident
                        .deliveries
                        .get(c)
                        .is_some_and(|d| d.resolved.is_some())
                }))
    }

    /// A new incident of `id` that takes the place of the record it has now (if any): its
    /// occurrence follows the old one's, so that nothing sent for the old one counts for it.
    fn successor(&self, id: &str, cause: Cause, now: Timestamp) -> Incident {
        let mut incident = new_incident(id, cause, now);
        if let Some(old) = self.entries.get(id) {
            incident.seq = old.incident.seq.wrapping_add(1);
        }
        incident
    }

    fn put(&mut self, incident: Incident) -> Write {
        self.entries.insert(
            incident.id.clone(),
            Entry {
                incident: incident.clone(),
            },
        );
        Write::Put(Box::new(incident))
    }

    fn delete(&mut self, incident: Incident) -> Write {
        self.entries.remove(&incident.id);
        Write::Delete(Box::new(incident))
    }

    /// Mutes incidents of silenced agents that have not been sent yet; returns the writes.
    pub fn apply_silences(&mut self, now: Timestamp) -> Vec<Write> {
        let mut writes = Vec::new();
        for id in self.ids() {
            let Some(silence) = self.silences.get(&id).filter(|s| s.active_at(now)) else {
                continue;
            };
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let untouched = entry.incident.silenced.is_none()
                && entry
                    .incident
                    .deliveries
                    .values()
                    .all(|d| d.opened.is_none());
            if untouched {
                let mut incident = entry.incident.clone();
                incident.silenced = Some(format!(
                    "silenced until {} ({})",
                    silence.until, silence.reason
                ));
                if self.finished(&incident) {
                    writes.push(self.delete(incident));
                } else {
                    writes.push(self.put(incident));
                }
            }
        }
        writes
    }

    /// When `channel` next has something due (None: nothing pending).
    pub fn next_due(&self, channel: &str) -> Option<Timestamp> {
        self.pending(channel).map(|(_, _, ready)| ready).min()
    }

    /// Items pending for `channel`: (id, phase, when it may be sent).
    fn pending<'a>(
        &'a self,
        channel: &'a str,
    ) -> impl Iterator<Item = (&'a str, Phase, Timestamp)> + 'a {
        let wait = |t: Timestamp| Timestamp(t.0 + self.rules.group_wait);
        self.entries.iter().filter_map(move |(id, e)| {
            let i = &e.incident;
            if i.silenced.is_some() {
                return None;
            }
            let d = i.deliveries.get(channel).cloned().unwrap_or_default();
            // Where the outage this channel is to announce began.
            let start = d.since.map_or(i.opened_at, |s| s.at);
            match (d.opened, i.resolved_at, d.resolved) {
                (None, None, _) => Some((id.as_str(), Phase::Opened, wait(start))),
                // An outage and its end in one notice, once the end has lasted `group-wait`
                // too: a child that lives for milliseconds in a crash loop is not a recovery,
                // and the next exit reopens the record before anything was sent (one down
                // notice for the whole loop).
                (None, Some(at), _) => Some((
                    id.as_str(),
                    Phase::OpenedAndResolved,
                    wait(start).max(wait(at)),
                )),
                (Some(_), Some(at), None) => Some((id.as_str(), Phase::Resolved, wait(at))),
                (Some(opened), None, _) => {
                    let repeat = self.rules.repeat_interval?;
                    let last = d.last.unwrap_or(opened);
                    Some((id.as_str(), Phase::Reminder, Timestamp(last.0 + repeat)))
                }
                (Some(_), Some(_), Some(_)) => None,
            }
        })
    }

    /// What `channel` has to send now: everything pending for it, once the oldest pending item
    /// has waited `group-wait`. `markers` gives the agents' latest markers for the message.
    pub fn due<'m>(
        &self,
        channel: &str,
        now: Timestamp,
        markers: impl Fn(&str) -> Option<&'m Marker>,
    ) -> Option<Batch> {
        let due_at = self.next_due(channel)?;
        if due_at > now {
            return None;
        }
        let items = self
            .pending(channel)
            .filter(|(_, phase, ready)| *phase != Phase::Reminder || *ready <= now)
            .filter_map(|(id, phase, _)| {
                let i = &self.entries.get(id)?.incident;
                let delivery = i.deliveries.get(channel);
                let since = delivery.and_then(|d| d.since);
                Some(NoticeItem {
                    agent: id.to_string(),
                    phase,
                    occurrence: i.occurrence(),
                    cause: i.cause.clone(),
                    occurrences: since.map_or(i.occurrences, |s| {
                        i.occurrences.saturating_sub(s.earlier).max(1)
                    }),
                    opened_at: since.map_or(i.opened_at, |s| s.at),
                    resolved_at: i.resolved_at,
                    resolution: i.resolution.clone(),
                    last_sent: delivery.and_then(|d| d.last.or(d.opened)),
                    marker: markers(id).cloned(),
                })
            })
            .collect::<Vec<_>>();
        (!items.is_empty()).then(|| Batch {
            channel: channel.to_string(),
            items,
        })
    }

    /// The incident a finished send of `key` is to be recorded on: the agent's record, if it
    /// is still the one the send announced (the same or a later occurrence of it).
    pub fn incident_of(&self, key: &NoticeKey) -> Option<&Incident> {
        let incident = &self.entries.get(&key.agent)?.incident;
        let now = incident.occurrence();
        (key.occurrence.opened_at == now.opened_at && key.occurrence.seq <= now.seq)
            .then_some(incident)
    }

    /// Records that `channel` accepted `items` at `now`, each against the occurrence it
    /// carried:
    /// - the occurrence is still current: what was sent is recorded;
    /// - the record was superseded since (a degradation or a bounce by a crash, or closed and
    ///   opened anew): nothing of the new incident was sent, nothing is recorded;
    /// - the record was reopened since (down again after its recovery): a notice of the outage
    ///   still holds (for this channel the outage never ended); a notice of its end means the
    ///   channel was told the outage had ended, so for it a new incident begins where the agent
    ///   went down again, and that is what it sends next.
    pub fn delivered(&mut self, channel: &str, items: &[NoticeKey], now: Timestamp) -> Vec<Write> {
        let mut writes = Vec::new();
        for key in items {
            let Some(incident) = self.incident_of(key) else {
                continue;
            };
            let mut incident = incident.clone();
            let current = key.occurrence.seq == incident.seq;
            let fallback = Since {
                at: now,
                earlier: incident.occurrences.saturating_sub(1),
            };
            let since = incident.reopened.unwrap_or(fallback);
            let d = incident.deliveries.entry(channel.to_string()).or_default();
            match key.phase {
                Phase::Resolved | Phase::OpenedAndResolved if !current => {
                    *d = Delivery {
                        since: Some(since),
                        ..Delivery::default()
                    };
                }
                Phase::Opened => d.opened = Some(now),
                Phase::Reminder => {}
                Phase::OpenedAndResolved => {
                    d.opened = Some(now);
                    d.resolved = Some(now);
                }
                Phase::Resolved => d.resolved = Some(now),
            }
            d.last = Some(now);
            if incident.notified_at.is_none() {
                incident.notified_at = Some(now);
            }
            if self.finished(&incident) {
                writes.push(self.delete(incident));
            } else {
                writes.push(self.put(incident));
            }
        }
        writes
    }
}

/// Opens a resolved incident again: the agent went down (or degraded) again before every
/// channel had announced the end. A new occurrence of the record begins now:
/// - a channel that already announced the end was told the incident was over: for it a new
///   incident begins now (its delivery starts afresh from here), so it sends a new down notice
///   after `group-wait`, dated now and counting occurrences from here;
/// - a channel that has not announced the end yet never heard it ended: for it the incident
///   goes on. If it has sent the first notice, it sends nothing new (a reminder when
///   `repeat-interval` says so) until the agent is back; if it has sent nothing yet, its first
///   notice covers both outages (dated at the first, counting both).
fn reopen(incident: &mut Incident, now: Timestamp) {
    let since = Since {
        at: now,
        earlier: incident.occurrences,
    };
    incident.resolved_at = None;
    incident.resolution = None;
    incident.occurrences += 1;
    incident.seq = incident.seq.wrapping_add(1);
    incident.reopened = Some(since);
    for d in incident.deliveries.values_mut() {
        if d.resolved.is_some() {
            *d = Delivery {
                since: Some(since),
                ..Delivery::default()
            };
        }
    }
}

/// Whether `cause` is an outage that began after `incident`'s recovery: the generation that
/// went down is not older than the one that came back (true when either is unknown).
fn after_recovery(incident: &Incident, cause: &Cause) -> bool {
    let down = match cause {
        Cause::Crashed { generation, .. } | Cause::Lost { generation, .. } => *generation,
        Cause::Bounced {
            from_generation, ..
        } => *from_generation,
        Cause::Degraded { .. } => return true,
    };
    match incident.resolution {
        Some(Resolution::Recovered { generation }) => down >= generation,
        _ => true,
    }
}

fn new_incident(id: &str, cause: Cause, now: Timestamp) -> Incident {
    Incident {
        v: RECORD_VERSION,
        id: id.to_string(),
        opened_at: now,
        cause,
        occurrences: 1,
        notified_at: None,
        resolved_at: None,
        resolution: None,
        silenced: None,
        deliveries: BTreeMap::new(),
        seq: 0,
        reopened: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use zkwatchdog::registry::{AgentState, LastExit};

    const GW: Duration = Duration::from_secs(2);

    fn book(channels: &[&str]) -> Book {
        Book::new(Rules {
            group_wait: GW,
            repeat_interval: None,
            channels: channels.iter().map(|c| c.to_string()).collect(),
        })
    }

    fn crashed(generation: u64) -> Cause {
        Cause::Crashed {
            generation,
            exit: LastExit {
                at: Timestamp::now(),
                generation,
                code: None,
                signal: Some("SIGKILL".into()),
                uptime_ms: 5,
                stderr_tail: vec!["boom".into()],
                probe_restart: None,
                reload: false,
                daemonized: None,
            },
            state: AgentState::Restarting,
        }
    }

    fn down(cause: Cause) -> Verdict {
        Verdict {
            condition: Condition::Down(cause.clone()),
            edges: vec![Edge::WentDown(cause)],
            changed: true,
        }
    }

    fn up(generation: u64) -> Verdict {
        Verdict {
            condition: Condition::Up {
                generation,
                degraded: None,
            },
            edges: vec![],
            changed: true,
        }
    }

    fn at(t0: Timestamp, ms: u64) -> Timestamp {
        Timestamp(t0.0 + Duration::from_millis(ms))
    }

    /// The ids of `writes` if every one of them is a delete.
    fn deleted(writes: &[Write]) -> Vec<&str> {
        writes
            .iter()
            .map(|w| match w {
                Write::Delete(i) => i.id.as_str(),
                Write::Put(i) => panic!("a put of {}, not a delete", i.id),
            })
            .collect()
    }

    fn phases(b: &Batch) -> Vec<(String, Phase)> {
        b.items.iter().map(|i| (i.agent.clone(), i.phase)).collect()
    }

    fn keys(b: &Batch) -> Vec<NoticeKey> {
        b.items.iter().map(NoticeItem::key).collect()
    }

    #[test]
    fn crash_waits_group_wait_then_recovery_follows() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        let w = b.apply("a", &down(crashed(1)), t0);
        assert!(matches!(&w[..], [Write::Put(i)] if i.id == "a"));
        assert!(
            b.due("email", at(t0, 1999), |_| None).is_none(),
            "group-wait not over"
        );
        let batch = b.due("email", at(t0, 2000), |_| None).expect("due");
        assert_eq!(phases(&batch), vec![("a".to_string(), Phase::Opened)]);
        let w = b.delivered("email", &keys(&batch), at(t0, 2100));
        assert!(matches!(&w[..], [Write::Put(i)] if i.notified_at.is_some()));
        assert!(
            b.due("email", at(t0, 9000), |_| None).is_none(),
            "sent once"
        );
        b.apply("a", &up(2), at(t0, 3000));
        assert!(b.due("email", at(t0, 4999), |_| None).is_none());
        let batch = b
            .due("email", at(t0, 5000), |_| None)
            .expect("recovery due");
        assert_eq!(phases(&batch), vec![("a".to_string(), Phase::Resolved)]);
        let w = b.delivered("email", &keys(&batch), at(t0, 5000));
        assert_eq!(deleted(&w), ["a"], "done: the record goes");
        assert!(b.ids().is_empty());
        // The record that goes is handed to the writer, which notes its exit as handled.
        let Some(Write::Delete(last)) = w.first() else {
            panic!("{w:?}");
        };
        assert!(
            matches!(last.cause, Cause::Crashed { generation: 1, .. }),
            "{:?}",
            last.cause
        );
        assert_eq!(
            last.resolution,
            Some(Resolution::Recovered { generation: 2 })
        );
    }

    #[test]
    fn crash_and_recovery_inside_group_wait_are_one_item() {
        let mut b = book(&["email", "slack"]);
        let t0 = Timestamp::now();
        b.apply("a", &down(crashed(1)), t0);
        b.apply("a", &up(2), at(t0, 500));
        assert!(
            b.due("email", at(t0, 2499), |_| None).is_none(),
            "the recovery has not lasted group-wait yet"
        );
        let batch = b.due("email", at(t0, 2500), |_| None).expect("due");
        assert_eq!(
            phases(&batch),
            vec![("a".to_string(), Phase::OpenedAndResolved)]
        );
        let w = b.delivered("email", &keys(&batch), at(t0, 2000));
        assert!(
            matches!(&w[..], [Write::Put(_)]),
            "slack has not sent yet: {w:?}"
        );
        assert!(b.due("email", at(t0, 3000), |_| None).is_none());
        let batch = b
            .due("slack", at(t0, 3000), |_| None)
            .expect("slack still due");
        let w = b.delivered("slack", &keys(&batch), at(t0, 3000));
        assert_eq!(deleted(&w), ["a"]);
    }

    #[test]
    fn a_crash_loop_is_one_down_notice_and_one_recovery_once_the_agent_stays_up() {
        // The chaos suite's crash loop: every start exits soon, restarts 300 ms – 1 s apart, each
        // child seen up for a moment (here 400 ms of every 700, and up when group-wait ends). Nothing may announce a recovery while the
        // loop goes on, and the loop is one outage.
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        let mut sent = Vec::new();
        let mut send = |b: &mut Book, ms: u64| {
            if let Some(batch) = b.due("email", at(t0, ms), |_| None) {
                b.delivered("email", &keys(&batch), at(t0, ms));
                sent.extend(phases(&batch));
            }
        };
        let mut t = 0;
        for generation in 1..=8u64 {
            b.apply("a", &down(crashed(generation)), at(t0, t));
            send(&mut b, t + 1);
            send(&mut b, t + 299);
            b.apply("a", &up(generation + 1), at(t0, t + 300));
            send(&mut b, t + 301);
            send(&mut b, t + 699);
            t += 700;
        }
        assert_eq!(
            sent,
            vec![("a".to_string(), Phase::Opened)],
            "one down notice while the loop goes on"
        );
        // The last start stays up: its recovery is announced once it has lasted group-wait.
        let up_at = t - 700 + 300;
        assert!(b.due("email", at(t0, up_at + 1999), |_| None).is_none());
        let batch = b
            .due("email", at(t0, up_at + 2000), |_| None)
            .expect("the recovery, once it held");
        assert_eq!(phases(&batch), vec![("a".to_string(), Phase::Resolved)]);
    }

    #[test]
    fn many_agents_group_into_one_batch_and_failed_channels_keep_them() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        for n in 0..50 {
            let lost = Cause::Lost {
                generation: 1,
                state: AgentState::Running,
                last_update: t0,
            };
            b.apply(&format!("agent-{n:02}"), &down(lost), at(t0, n * 10));
        }
        let batch = b.due("email", at(t0, 2000), |_| None).expect("due");
        assert_eq!(
            batch.items.len(),
            50,
            "newer items ride along with the oldest"
        );
        // Not delivered (the send failed): still due, still all 50.
        let again = b.due("email", at(t0, 60_000), |_| None).expect("still due");
        assert_eq!(again.items.len(), 50);
    }

    #[test]
    fn planned_stop_after_incident_resolves_and_reopen_folds() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        b.apply("a", &down(crashed(1)), t0);
        b.apply("a", &up(2), at(t0, 100));
        b.apply("a", &down(crashed(2)), at(t0, 200));
        let i = b.incident("a").expect("open");
        assert_eq!(i.occurrences, 2);
        assert!(i.resolved_at.is_none(), "reopened");
        let gone = Verdict {
            condition: Condition::Gone,
            edges: vec![],
            changed: true,
        };
        b.apply("a", &gone, at(t0, 300));
        assert_eq!(
            b.incident("a").and_then(|i| i.resolution.clone()),
            Some(Resolution::Stopped)
        );
        // No incident, no verdict effect: a clean stop of a healthy agent writes nothing.
        assert!(b.apply("b", &gone, t0).is_empty());
        assert!(b.apply("b", &up(1), t0).is_empty());
    }

    fn degraded(generation: u64, detail: &str) -> Verdict {
        Verdict {
            condition: Condition::Up {
                generation,
                degraded: Some(detail.to_string()),
            },
            edges: vec![],
            changed: true,
        }
    }

    #[test]
    fn degradation_is_its_own_incident_updated_reopened_and_healed() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        assert!(b.apply("a", &up(1), t0).is_empty());
        b.apply("a", &degraded(1, "CHANNEL.c1 fill 93.0% > 80.0%"), t0);
        let i = b.incident("a").expect("opened");
        assert_eq!(i.cause.headline(), "DEGRADED");
        assert_eq!(i.cause.severity(), crate::incident::Severity::Warning);
        // The same finding again writes nothing; a new one is recorded on the open incident.
        assert!(b
            .apply(
                "a",
                &degraded(1, "CHANNEL.c1 fill 93.0% > 80.0%"),
                at(t0, 10)
            )
            .is_empty());
        assert_eq!(
            b.apply(
                "a",
                &degraded(1, "CHANNEL.c1 fill 97.0% > 80.0%"),
                at(t0, 20)
            )
            .len(),
            1
        );
        let i = b.incident("a").expect("open");
        assert_eq!(i.occurrences, 1);
        assert!(matches!(&i.cause, Cause::Degraded { detail } if detail.contains("97.0%")));
        // Healthy, then degraded again before the notice went out: reopened, not lost.
        b.apply("a", &up(1), at(t0, 30));
        assert_eq!(
            b.incident("a").and_then(|i| i.resolution.clone()),
            Some(Resolution::Healthy)
        );
        b.apply("a", &degraded(1, "SINK.k1 stalled"), at(t0, 40));
        let i = b.incident("a").expect("reopened");
        assert!(i.resolved_at.is_none());
        assert_eq!(i.occurrences, 2);
        // The agent going down supersedes the degradation with a critical incident.
        b.apply("a", &down(crashed(1)), at(t0, 50));
        let i = b.incident("a").expect("crash");
        assert_eq!(i.cause.headline(), "CRASHED");
        assert_eq!(i.cause.severity(), crate::incident::Severity::Critical);
    }

    #[test]
    fn a_restart_seen_only_afterwards_supersedes_an_open_degradation() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        b.apply("a", &degraded(1, "CHANNEL.c1 fill 99.0% > 80.0%"), t0);
        // The watchdog restarted the child faster than the watcher read it: seen as a bounce.
        let bounced = Verdict {
            condition: Condition::Up {
                generation: 2,
                degraded: None,
            },
            edges: vec![Edge::Bounced {
                cause: crashed(1),
                to_generation: 2,
            }],
            changed: true,
        };
        b.apply("a", &bounced, at(t0, 100));
        let i = b.incident("a").expect("the restart's incident");
        assert_eq!(i.cause.headline(), "CRASHED");
        assert_eq!(i.resolution, Some(Resolution::Recovered { generation: 2 }));
    }

    #[test]
    fn an_unreadable_marker_leaves_an_open_incident_open() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        b.apply("a", &down(crashed(1)), t0);
        let unreadable = Verdict {
            condition: Condition::Unreadable,
            edges: vec![],
            changed: true,
        };
        assert!(b.apply("a", &unreadable, at(t0, 100)).is_empty());
        let i = b.incident("a").expect("still open");
        assert!(i.resolved_at.is_none() && i.resolution.is_none());
    }

    #[test]
    fn silence_mutes_unsent_incidents() {
        let mut b = book(&["email"]);
        let t0 = Timestamp::now();
        b.set_silences(vec![Silence {
            v: 1,
            id: "a".into(),
            until: at(t0, 60_000),
            reason: "maintenance".into(),
            created_at: t0,
            created_by: "me".into(),
        }]);
        b.apply("a", &down(crashed(1)), t0);
        b.apply("c", &down(crashed(1)), t0);
        let w = b.apply_silences(at(t0, 10));
        assert!(matches!(&w[..], [Write::Put(i)] if i.id == "a" && i.silenced.is_some()));
        let batch = b.due("email", at(t0, 5000), |_| None).expect("c is due");
        assert_eq!(phases(&batch), vec![("c".to_string(), Phase::Opened)]);
        let w = b.apply("a", &up(2), at(t0, 6000));
        assert_eq!(deleted(&w), ["a"], "muted and resolved: nothing to send");
        // After the silence ends, a new crash is sent.
        b.apply("a", &down(crashed(2)), at(t0, 70_000));
        assert!(b.apply_silences(at(t0, 70_000)).is_empty());
        assert!(b.due("email", at(t0, 72_000), |_| None).is_some());
    }

    /// What one channel has due at `now`: (phase, headline, occurrences, opened_at) per item.
    fn due_of(
        b: &Book,
        channel: &str,
        now: Timestamp,
    ) -> Option<Vec<(Phase, &'static str, u32, Timestamp)>> {
        b.due(channel, now, |_| None).map(|batch| {
            batch
                .items
                .iter()
                .map(|i| (i.phase, i.cause.headline(), i.occurrences, i.opened_at))
                .collect()
        })
    }

    /// Sends what `channel` has due at `now` and records it as accepted.
    fn send(b: &mut Book, channel: &str, now: Timestamp) -> Vec<Write> {
        let batch = b.due(channel, now, |_| None).expect("something due");
        b.delivered(channel, &keys(&batch), now)
    }

    #[test]
    fn down_again_after_a_recovery_one_channel_announced_is_a_new_down_notice_there() {
        // "email" announces the crash and the recovery; "hook" is held back (its min-interval,
        // or retry backoff) and has not announced the recovery when the agent crashes again.
        // Each row: whether hook had announced the first crash; what hook has due after the
        // second crash (None: nothing, for it the outage never ended); what it says at the end.
        type Due = Option<Vec<(Phase, &'static str, u32, u64)>>;
        let rows: [(&str, bool, Due, Due); 2] = [
            (
                "hook sent nothing yet: one outage for it, counted twice",
                false,
                Some(vec![(Phase::Opened, "CRASHED", 2, 0)]),
                Some(vec![(Phase::Resolved, "CRASHED", 2, 0)]),
            ),
            (
                "hook announced the crash: still down for it, nothing new",
                true,
                None,
                Some(vec![(Phase::Resolved, "CRASHED", 2, 0)]),
            ),
        ];
        for (what, hook_opened, hook_due, hook_end) in rows {
            let mut b = book(&["email", "hook"]);
            let t0 = Timestamp::now();
            let ms = |d: Due| {
                d.map(|v| {
                    v.into_iter()
                        .map(|(p, h, n, t)| (p, h, n, at(t0, t)))
                        .collect::<Vec<_>>()
                })
            };
            b.apply("a", &down(crashed(1)), t0);
            send(&mut b, "email", at(t0, 2000));
            if hook_opened {
                send(&mut b, "hook", at(t0, 2000));
            }
            b.apply("a", &up(2), at(t0, 3000));
            assert_eq!(
                due_of(&b, "email", at(t0, 5000)),
                Some(vec![(Phase::Resolved, "CRASHED", 1, t0)]),
                "{what}"
            );
            send(&mut b, "email", at(t0, 5000));

            b.apply("a", &down(crashed(2)), at(t0, 6000));
            assert_eq!(
                due_of(&b, "email", at(t0, 7999)),
                None,
                "{what}: email waits group-wait from the new crash"
            );
            assert_eq!(
                due_of(&b, "email", at(t0, 8000)),
                Some(vec![(Phase::Opened, "CRASHED", 1, at(t0, 6000))]),
                "{what}: email was told the outage had ended; it hears of the new one"
            );
            assert_eq!(due_of(&b, "hook", at(t0, 8000)), ms(hook_due), "{what}");
            send(&mut b, "email", at(t0, 8000));
            if !hook_opened {
                send(&mut b, "hook", at(t0, 8000));
            }

            // Both hear the end, each of the outage it was told of.
            b.apply("a", &up(3), at(t0, 9000));
            assert_eq!(
                due_of(&b, "email", at(t0, 11_000)),
                Some(vec![(Phase::Resolved, "CRASHED", 1, at(t0, 6000))]),
                "{what}"
            );
            assert_eq!(due_of(&b, "hook", at(t0, 11_000)), ms(hook_end), "{what}");
            assert!(matches!(
                &send(&mut b, "email", at(t0, 11_000))[..],
                [Write::Put(_)]
            ));
            assert_eq!(
                deleted(&send(&mut b, "hook", at(t0, 11_000))),
                ["a"],
                "{what}: every channel told: the record goes"
            );
        }
    }

    #[test]
    fn degraded_again_after_an_announced_healing_is_a_new_notice_there() {
        let mut b = book(&["email", "hook"]);
        let t0 = Timestamp::now();
        b.apply("a", &degraded(1, "SINK.k1 stalled"), t0);
        send(&mut b, "email", at(t0, 2000));
        b.apply("a", &up(1), at(t0, 3000));
        send(&mut b, "email", at(t0, 5000));
        b.apply("a", &degraded(1, "SINK.k1 stalled"), at(t0, 6000));
        assert_eq!(
            due_of(&b, "email", at(t0, 8000)),
            Some(vec![(Phase::Opened, "DEGRADED", 1, at(t0, 6000))])
        );
    }

    #[test]
    fn a_finished_send_is_recorded_against_the_occurrence_it_carried() {
        let bounced = Verdict {
            condition: Condition::Up {
                generation: 2,
                degraded: None,
            },
            edges: vec![Edge::Bounced {
                cause: Cause::Bounced {
                    from_generation: 1,
                    to_generation: 2,
                    exit: None,
                },
                to_generation: 2,
            }],
            changed: true,
        };
        // Each row: what happens before (verdicts at ms since t0, or email sending what is due
        // then); at T, when email next has something due, that batch is taken and put in
        // flight; what happens while it is (verdicts at ms after T); the send finishes at
        // T + 200 ms. Then: what email has due at T + 10 s.
        enum Before {
            Apply(Verdict, u64),
            Send(u64),
        }
        use Before::{Apply, Send};
        type During = Vec<(Verdict, u64)>;
        type Expected = Option<Vec<(Phase, &'static str)>>;
        let rows: Vec<(&str, Vec<Before>, During, Expected)> = vec![
            (
                "a degradation's notice, then a crash supersedes it: the crash is still due",
                vec![Apply(degraded(1, "CHANNEL.c1 fill 99.0% > 80.0%"), 0)],
                vec![(down(crashed(1)), 100)],
                Some(vec![(Phase::Opened, "CRASHED")]),
            ),
            (
                "a bounce's notice, then a crash: the crash is still due",
                vec![Apply(bounced.clone(), 0)],
                vec![(down(crashed(2)), 100)],
                Some(vec![(Phase::Opened, "CRASHED")]),
            ),
            (
                "a recovery notice, then down again: the new outage is due",
                vec![Apply(down(crashed(1)), 0), Send(2000), Apply(up(2), 3000)],
                vec![(down(crashed(2)), 100)],
                Some(vec![(Phase::Opened, "CRASHED")]),
            ),
            (
                "a crash-and-recovery notice, then down again: the new outage is due",
                vec![Apply(down(crashed(1)), 0), Apply(up(2), 500)],
                vec![(down(crashed(2)), 100)],
                Some(vec![(Phase::Opened, "CRASHED")]),
            ),
            (
                "a recovery notice, then down again and back: that outage is due, and its end",
                vec![Apply(down(crashed(1)), 0), Send(2000), Apply(up(2), 3000)],
                vec![(down(crashed(2)), 100), (up(3), 150)],
                Some(vec![(Phase::OpenedAndResolved, "CRASHED")]),
            ),
            (
                "a crash notice, then back and down again: still the outage email was told of",
                vec![Apply(down(crashed(1)), 0)],
                vec![(up(2), 50), (down(crashed(2)), 100)],
                None,
            ),
            (
                "a crash notice, then back: the recovery is due",
                vec![Apply(down(crashed(1)), 0)],
                vec![(up(2), 100)],
                Some(vec![(Phase::Resolved, "CRASHED")]),
            ),
        ];
        for (what, before, during, expected) in rows {
            // A second channel that never sends keeps the record from closing.
            let mut b = book(&["email", "hook"]);
            let t0 = Timestamp::now();
            for step in before {
                match step {
                    Apply(v, ms) => {
                        b.apply("a", &v, at(t0, ms));
                    }
                    Send(ms) => {
                        send(&mut b, "email", at(t0, ms));
                    }
                }
            }
            let t = b.next_due("email").expect(what);
            let in_flight = b.due("email", t, |_| None).expect(what);
            for (v, ms) in during {
                b.apply("a", &v, at(t, ms));
            }
            b.delivered("email", &keys(&in_flight), at(t, 200));
            let due = b.due("email", at(t, 10_000), |_| None).map(|batch| {
                batch
                    .items
                    .iter()
                    .map(|i| (i.phase, i.cause.headline()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(due, expected, "{what}");
        }
    }

    #[test]
    fn a_restart_seen_only_afterwards_of_a_record_one_channel_closed_is_announced_there() {
        // email announced the incident and its end; hook (held back) announced only the
        // incident. Then the agent went down and came back between two reads (a bounce).
        // Each row: the first incident (its verdicts at 0 and 3 s); what email and hook have
        // due after the bounce at 6 s: (phase, headline, occurrences, opened_at in ms).
        type Due = Option<Vec<(Phase, &'static str, u32, u64)>>;
        let rows: [(&str, Verdict, Verdict, Due, Due); 2] = [
            (
                "after a crash: email hears crashed-and-recovered; hook still owes the recovery",
                down(crashed(1)),
                up(2),
                Some(vec![(Phase::OpenedAndResolved, "CRASHED", 1, 6000)]),
                Some(vec![(Phase::Resolved, "CRASHED", 2, 0)]),
            ),
            (
                "after a degradation: a new incident for both, as for an open one",
                degraded(1, "SINK.k1 stalled"),
                up(1),
                Some(vec![(Phase::OpenedAndResolved, "CRASHED", 1, 6000)]),
                Some(vec![(Phase::OpenedAndResolved, "CRASHED", 1, 6000)]),
            ),
        ];
        for (what, first, back, email_due, hook_due) in rows {
            let mut b = book(&["email", "hook"]);
            let t0 = Timestamp::now();
            let ms = |d: Due| {
                d.map(|v| {
                    v.into_iter()
                        .map(|(p, h, n, t)| (p, h, n, at(t0, t)))
                        .collect::<Vec<_>>()
                })
            };
            b.apply("a", &first, t0);
            send(&mut b, "email", at(t0, 2000));
            send(&mut b, "hook", at(t0, 2000));
            b.apply("a", &back, at(t0, 3000));
            send(&mut b, "email", at(t0, 5000));
            let bounced = Verdict {
                condition: Condition::Up {
                    generation: 3,
                    degraded: None,
                },
                edges: vec![Edge::Bounced {
                    cause: crashed(2),
                    to_generation: 3,
                }],
                changed: true,
            };
            // The bounce that ended the first incident, replayed (a standby that took over saw
            // it too): nothing new.
            let replayed = Verdict {
                condition: back.condition.clone(),
                edges: vec![Edge::Bounced {
                    cause: crashed(1),
                    to_generation: 2,
                }],
                changed: false,
            };
            if matches!(first.condition, Condition::Down(_)) {
                assert!(b.apply("a", &replayed, at(t0, 5500)).is_empty(), "{what}");
            }
            b.apply("a", &bounced, at(t0, 6000));
            assert_eq!(due_of(&b, "email", at(t0, 8000)), ms(email_due), "{what}");
            assert_eq!(due_of(&b, "hook", at(t0, 8000)), ms(hook_due), "{what}");
        }
    }

    #[test]
    fn reminders_follow_repeat_interval() {
        let mut b = Book::new(Rules {
            group_wait: Duration::ZERO,
            repeat_interval: Some(Duration::from_secs(60)),
            channels: vec!["email".into()],
        });
        let t0 = Timestamp::now();
        b.apply("a", &down(crashed(1)), t0);
        let batch = b.due("email", t0, |_| None).expect("due");
        assert_eq!(batch.items[0].last_sent, None);
        b.delivered("email", &keys(&batch), t0);
        assert!(b.due("email", at(t0, 59_000), |_| None).is_none());
        let batch = b.due("email", at(t0, 60_000), |_| None).expect("reminder");
        assert_eq!(phases(&batch), vec![("a".to_string(), Phase::Reminder)]);
        // The reminder names the channel's last acceptance (its notification key carries it):
        // the first notice's, then the previous reminder's.
        assert_eq!(batch.items[0].last_sent, Some(t0));
        b.delivered("email", &keys(&batch), at(t0, 61_000));
        let batch = b.due("email", at(t0, 121_000), |_| None).expect("reminder");
        assert_eq!(batch.items[0].last_sent, Some(at(t0, 61_000)));
        let _ = Instant::now();
    }
}
