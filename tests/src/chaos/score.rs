//! Scoring: which down notice belongs to which fault, and the figures of a run (docs/chaos.md,
//! "Matching notices to faults").
//!
//! A down notice about agent X (a CRASHED/LOST/FATAL/RESTARTED/PROBE RESTART item of an accepted
//! message, not a reminder) belongs to the latest fault on X that started no later than the
//! notice's incident was opened (its `when:` field; the acceptance time if absent), plus
//! [`SLACK_MS`] for rounding, and not more than [`MATCH_WINDOW_MS`] before it. A notice with no
//! such fault is *unexplained* (an alarm the on-call cannot trace to anything that happened).
//! Then, per fault:
//! - abnormal: detected if at least one down notice belongs to it; every further one is a
//!   duplicate; its detection latency is fault → acceptance of the first;
//! - planned: a false alarm if any down notice belongs to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mail::Mail;
use super::plan::{FaultKind, Truth};

/// Rounding slack between the fault's clock reading and the incident's `opened_at`.
pub const SLACK_MS: u64 = 200;
/// A notice opened longer than this after the fault it would belong to is unexplained.
pub const MATCH_WINDOW_MS: u64 = 90_000;

/// A fault as carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    pub seq: usize,
    pub kind: FaultKind,
    /// The agent's id, for agent faults.
    pub agent: Option<String>,
    /// When the fault struck (the signal sent, the link cut…), ms since the epoch.
    pub at_ms: u64,
    /// How long it lasted as carried out, ms.
    pub held_ms: u64,
    /// Why it was not carried out (then it is not scored).
    pub skipped: Option<String>,
}

/// Figures for one kind of fault.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindScore {
    pub events: usize,
    pub skipped: usize,
    pub abnormal: usize,
    pub detected: usize,
    pub folded: usize,
    pub planned: usize,
    pub false_alarms: usize,
    pub duplicates: usize,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

/// One abnormal fault without a down notice, or one planned fault with one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub seq: usize,
    pub kind: FaultKind,
    pub agent: String,
    /// Indexes of the messages involved.
    pub mails: Vec<usize>,
}

/// The figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    pub events: usize,
    pub skipped: usize,
    pub abnormal: usize,
    /// Abnormal faults with a down notice of their own.
    pub detected: usize,
    /// Abnormal faults folded into the agent's open incident: they struck again before the
    /// on-call heard of the recovery from an announced one.
    pub folded: usize,
    /// (detected + folded) / abnormal, in percent (100 when nothing abnormal happened).
    pub recall_percent: f64,
    pub planned: usize,
    /// Planned faults with a down notice, plus unexplained down notices.
    pub false_alarms: usize,
    pub unexplained: usize,
    /// Down notices beyond the first for one fault.
    pub duplicates: usize,
    /// Of those, copies with the same Message-ID as an earlier one (a store deduplicating by
    /// Message-ID would drop them).
    pub duplicates_same_message_id: usize,
    /// Messages about agents (down, recovered, reminders) per abnormal fault.
    pub messages_per_incident: f64,
    pub messages: usize,
    pub agent_messages: usize,
    pub watcher_messages: usize,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    pub by_kind: BTreeMap<String, KindScore>,
    pub missed: Vec<Finding>,
    pub false_alarm_findings: Vec<Finding>,
    pub duplicate_findings: Vec<Finding>,
    /// `(message index, agent)` of unexplained down notices.
    pub unexplained_notices: Vec<(usize, String)>,
    /// Agents announced down after an ensemble outage with no fault of their own (their
    /// watchdog's session was lost to the outage): false alarms, listed apart (docs/chaos.md).
    pub after_outage: usize,
    /// `(outage's seq, agent, message indexes)` of those.
    pub after_outage_notices: Vec<(usize, String, Vec<usize>)>,
}

/// Whether an item's label tells the on-call that the agent is back (or was stopped).
fn is_recovery(label: &str) -> bool {
    ["RECOVERED", "RESOLVED"]
        .iter()
        .any(|r| label == *r || label.ends_with(&format!(" and {r}")))
}

/// Nearest-rank percentile `p` (0–100) of sorted `xs`.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Scores `faults` against the messages received.
pub fn score(faults: &[Executed], mails: &[Mail]) -> Score {
    // Down notices per fault index, and per (ensemble outage, agent) for agents whose sessions
    // expired when the ensemble came back.
    let mut belongs: Vec<Vec<(usize, u64, Option<String>)>> = vec![Vec::new(); faults.len()];
    let mut after_outage: BTreeMap<(usize, String), Vec<usize>> = BTreeMap::new();
    let mut unexplained_notices = Vec::new();
    let latest = |reference: u64, pred: &dyn Fn(&Executed) -> bool| {
        faults
            .iter()
            .enumerate()
            .filter(|(_, f)| f.skipped.is_none() && pred(f) && f.at_ms <= reference + SLACK_MS)
            .max_by_key(|(_, f)| f.at_ms)
            .filter(|(_, f)| reference.saturating_sub(f.at_ms) <= MATCH_WINDOW_MS)
            .map(|(i, _)| i)
    };
    let mut order: Vec<&Mail> = mails.iter().collect();
    order.sort_by_key(|m| (m.accepted_ms, m.index));
    for mail in order {
        for item in mail.items.iter().filter(|i| i.down) {
            // Placed by its incident's opening; but a crash whose reported exit happened before
            // the fault that opening points at is about an earlier failure (an old crash
            // announced again): placed by its exit.
            let opened = item.opened_ms.unwrap_or(mail.accepted_ms);
            let on_agent = |f: &Executed| f.agent.as_deref() == Some(item.agent.as_str());
            let mut reference = opened;
            if let (Some(exit), Some(o)) = (item.exit_ms, latest(opened, &on_agent)) {
                if exit + SLACK_MS < faults[o].at_ms {
                    reference = exit;
                }
            }
            let own = latest(reference, &on_agent);
            let outage = latest(reference, &|f| f.kind == FaultKind::EnsembleOutage);
            let owner = match (own, outage) {
                (Some(o), Some(out)) if faults[o].at_ms < faults[out].at_ms => {
                    // The agent's own fault came before the outage: its notice, if it has none
                    // yet and is abnormal; otherwise the outage's doing.
                    let waiting =
                        faults[o].kind.truth() == Truth::Abnormal && belongs[o].is_empty();
                    if waiting {
                        Some(o)
                    } else {
                        None
                    }
                }
                (None, Some(_)) => None,
                (own, _) => own,
            };
            match (owner, outage) {
                (Some(i), _) => {
                    belongs[i].push((mail.index, mail.accepted_ms, mail.message_id.clone()))
                }
                (None, Some(out)) => after_outage
                    .entry((faults[out].seq, item.agent.clone()))
                    .or_default()
                    .push(mail.index),
                (None, None) => unexplained_notices.push((mail.index, item.agent.clone())),
            }
        }
    }

    // Folding: an abnormal fault without a notice of its own that struck the agent again before
    // the on-call heard that it had recovered from its previous (announced) abnormal fault
    // belongs to that open incident (DESIGN.md: down again before the recovery notice went
    // out is one incident, reopened).
    let mut recoveries: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for mail in mails {
        for item in mail.items.iter().filter(|i| is_recovery(&i.label)) {
            recoveries
                .entry(item.agent.as_str())
                .or_default()
                .push(mail.accepted_ms);
        }
    }
    let mut by_time: Vec<usize> = (0..faults.len())
        .filter(|i| faults[*i].skipped.is_none())
        .collect();
    by_time.sort_by_key(|i| (faults[*i].at_ms, faults[*i].seq));
    let mut folded = vec![false; faults.len()];
    let mut last_on: BTreeMap<&str, usize> = BTreeMap::new();
    for i in by_time {
        let f = &faults[i];
        let Some(agent) = f.agent.as_deref() else {
            continue;
        };
        // The previous abnormal fault (a planned stop in between whose resolution was never
        // heard does not end the incident for the on-call either).
        if let Some(&prev) = last_on.get(agent) {
            let p = &faults[prev];
            let covered = !belongs[prev].is_empty() || folded[prev];
            let heard_back = recoveries
                .get(agent)
                .is_some_and(|r| r.iter().any(|t| *t > p.at_ms && *t <= f.at_ms));
            folded[i] = f.kind.truth() == Truth::Abnormal
                && belongs[i].is_empty()
                && covered
                && !heard_back;
        }
        if f.kind.truth() == Truth::Abnormal {
            last_on.insert(agent, i);
        }
    }

    let mut s = Score {
        events: faults.len(),
        unexplained: unexplained_notices.len(),
        unexplained_notices,
        ..Score::default()
    };
    let mut latencies = Vec::new();
    let mut kind_latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for ((f, notices), folded) in faults.iter().zip(&belongs).zip(&folded) {
        let k = s.by_kind.entry(f.kind.name().to_string()).or_default();
        k.events += 1;
        if f.skipped.is_some() {
            k.skipped += 1;
            s.skipped += 1;
            continue;
        }
        let finding = || Finding {
            seq: f.seq,
            kind: f.kind,
            agent: f.agent.clone().unwrap_or_default(),
            mails: notices.iter().map(|n| n.0).collect(),
        };
        match f.kind.truth() {
            Truth::Abnormal => {
                k.abnormal += 1;
                s.abnormal += 1;
                let mut sorted = notices.clone();
                sorted.sort_by_key(|n| n.1);
                match sorted.first() {
                    Some(first) => {
                        k.detected += 1;
                        s.detected += 1;
                        let latency = first.1.saturating_sub(f.at_ms);
                        latencies.push(latency);
                        kind_latencies
                            .entry(f.kind.name().to_string())
                            .or_default()
                            .push(latency);
                    }
                    None if *folded => {
                        k.folded += 1;
                        s.folded += 1;
                    }
                    None => s.missed.push(finding()),
                }
                if sorted.len() > 1 {
                    k.duplicates += sorted.len() - 1;
                    s.duplicates += sorted.len() - 1;
                    for (i, n) in sorted.iter().enumerate().skip(1) {
                        if n.2.is_some() && sorted[..i].iter().any(|m| m.2 == n.2) {
                            s.duplicates_same_message_id += 1;
                        }
                    }
                    s.duplicate_findings.push(finding());
                }
            }
            Truth::Planned => {
                k.planned += 1;
                s.planned += 1;
                if !notices.is_empty() {
                    k.false_alarms += 1;
                    s.false_alarms += 1;
                    s.false_alarm_findings.push(finding());
                }
            }
            Truth::Background => {}
        }
    }
    s.false_alarms += s.unexplained;
    for ((seq, agent), mails) in after_outage {
        s.after_outage += 1;
        s.false_alarms += 1;
        if mails.len() > 1 {
            s.duplicates += mails.len() - 1;
            s.duplicate_findings.push(Finding {
                seq,
                kind: FaultKind::EnsembleOutage,
                agent: agent.clone(),
                mails: mails.clone(),
            });
        }
        s.after_outage_notices.push((seq, agent, mails));
    }
    latencies.sort_unstable();
    s.latency_p50_ms = percentile(&latencies, 50.0);
    s.latency_p99_ms = percentile(&latencies, 99.0);
    for (kind, mut l) in kind_latencies {
        l.sort_unstable();
        if let Some(k) = s.by_kind.get_mut(&kind) {
            k.latency_p50_ms = percentile(&l, 50.0);
            k.latency_p99_ms = percentile(&l, 99.0);
        }
    }
    s.recall_percent = if s.abnormal == 0 {
        100.0
    } else {
        100.0 * (s.detected + s.folded) as f64 / s.abnormal as f64
    };
    s.messages = mails.len();
    s.agent_messages = mails.iter().filter(|m| !m.items.is_empty()).count();
    s.watcher_messages = mails.iter().filter(|m| m.watcher_notice).count();
    s.messages_per_incident = if s.abnormal == 0 {
        0.0
    } else {
        s.agent_messages as f64 / s.abnormal as f64
    };
    s
}

fn ms(v: Option<u64>) -> String {
    v.map(|v| format!("{:.1}s", v as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// The one table a run prints.
pub fn table(s: &Score) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>8} {:>8} {:>7} {:>7} {:>6} {:>5} {:>7} {:>7}",
        "fault",
        "events",
        "abnormal",
        "detected",
        "planned",
        "f.alarm",
        "dupl.",
        "skip",
        "p50",
        "p99"
    );
    for kind in FaultKind::ALL {
        let Some(k) = s.by_kind.get(kind.name()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7} {:>6} {:>5} {:>7} {:>7}",
            kind.name(),
            k.events,
            k.abnormal,
            k.detected,
            k.folded,
            k.planned,
            k.false_alarms,
            k.duplicates,
            k.skipped,
            ms(k.latency_p50_ms),
            ms(k.latency_p99_ms)
        );
    }
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>8} {:>8} {:>6} {:>7} {:>7} {:>6} {:>5} {:>7} {:>7}",
        "total",
        s.events,
        s.abnormal,
        s.detected,
        s.folded,
        s.planned,
        s.false_alarms,
        s.duplicates,
        s.skipped,
        ms(s.latency_p50_ms),
        ms(s.latency_p99_ms)
    );
    let _ = writeln!(
        out,
        "recall {:.1}% ({} + {} folded of {}) | false alarms {} ({} planned stops alerted, {} \
         unexplained, {} after an ensemble outage without a fault of their own) | duplicates {} \
         ({} with a repeated Message-ID) | messages {} ({} about agents, {} about watchers), {:.2} \
         per incident | detection p50 {} p99 {}",
        s.recall_percent,
        s.detected,
        s.folded,
        s.abnormal,
        s.false_alarms,
        s.false_alarms - s.unexplained - s.after_outage,
        s.unexplained,
        s.after_outage,
        s.duplicates,
        s.duplicates_same_message_id,
        s.messages,
        s.agent_messages,
        s.watcher_messages,
        s.messages_per_incident,
        ms(s.latency_p50_ms),
        ms(s.latency_p99_ms),
    );
    for f in &s.missed {
        let _ = writeln!(out, "missed: #{} {} {}", f.seq, f.kind.name(), f.agent);
    }
    for f in &s.false_alarm_findings {
        let _ = writeln!(
            out,
            "false alarm: #{} {} {} (messages {:?})",
            f.seq,
            f.kind.name(),
            f.agent,
            f.mails
        );
    }
    for f in &s.duplicate_findings {
        let _ = writeln!(
            out,
            "duplicate: #{} {} {} (messages {:?})",
            f.seq,
            f.kind.name(),
            f.agent,
            f.mails
        );
    }
    for (seq, agent, mails) in &s.after_outage_notices {
        let _ = writeln!(
            out,
            "false alarm after outage #{seq}: {agent} announced down (messages {mails:?})"
        );
    }
    for (mail, agent) in &s.unexplained_notices {
        let _ = writeln!(out, "unexplained: message {mail} about {agent}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::mail::Item;
    use super::*;

    fn fault(seq: usize, kind: FaultKind, agent: &str, at_ms: u64) -> Executed {
        Executed {
            seq,
            kind,
            agent: (!agent.is_empty()).then(|| agent.to_string()),
            at_ms,
            held_ms: 0,
            skipped: None,
        }
    }

    fn mail(index: usize, accepted_ms: u64, items: &[(&str, &str, Option<u64>)]) -> Mail {
        Mail {
            index,
            accepted_ms,
            subject: String::new(),
            message_id: Some(format!("<{index}@x>")),
            watcher_notice: false,
            items: items
                .iter()
                .map(|(agent, label, opened)| Item {
                    agent: agent.to_string(),
                    label: label.to_string(),
                    down: !label.starts_with("RECOVERED") && !label.starts_with("STILL"),
                    opened_ms: *opened,
                    exit_ms: None,
                })
                .collect(),
        }
    }

    #[test]
    fn one_notice_per_abnormal_fault_none_for_planned() {
        let faults = [
            fault(1, FaultKind::Crash, "a", 10_000),
            fault(2, FaultKind::PlannedStop, "b", 11_000),
            fault(3, FaultKind::WatchdogKill, "b", 30_000),
            fault(4, FaultKind::WatcherKill, "", 12_000),
        ];
        let mails = [
            mail(0, 10_500, &[("a", "CRASHED and RECOVERED", Some(10_020))]),
            mail(1, 33_000, &[("b", "LOST", Some(32_500))]),
            mail(2, 40_000, &[("b", "RECOVERED", Some(32_500))]),
        ];
        let s = score(&faults, &mails);
        assert_eq!((s.abnormal, s.detected, s.recall_percent), (2, 2, 100.0));
        assert_eq!((s.planned, s.false_alarms, s.duplicates), (1, 0, 0));
        assert_eq!(s.latency_p50_ms, Some(500));
        assert_eq!(s.latency_p99_ms, Some(3_000));
        assert_eq!(s.agent_messages, 3);
        assert_eq!(s.messages_per_incident, 1.5);
        assert_eq!(s.by_kind["watcher-kill"].events, 1);
    }

    #[test]
    fn a_second_down_notice_of_one_incident_is_a_duplicate_even_after_the_next_fault() {
        // The stale leader's copy arrives after the agent's next (planned) fault started: its
        // opened time ties it to the crash, so it is a duplicate, not a false alarm.
        let faults = [
            fault(1, FaultKind::Crash, "a", 10_000),
            fault(2, FaultKind::PlannedStop, "a", 20_000),
        ];
        let mails = [
            mail(0, 11_000, &[("a", "CRASHED", Some(10_050))]),
            mail(1, 25_000, &[("a", "CRASHED", Some(10_050))]),
        ];
        let s = score(&faults, &mails);
        assert_eq!((s.detected, s.duplicates, s.false_alarms), (1, 1, 0));
        assert_eq!(s.duplicate_findings[0].mails, vec![0, 1]);
    }

    #[test]
    fn missed_false_alarm_and_unexplained() {
        let faults = [
            fault(1, FaultKind::Partition, "a", 10_000),
            fault(2, FaultKind::PlannedStop, "b", 10_000),
        ];
        let mails = [
            mail(0, 12_000, &[("b", "LOST", Some(11_900))]),
            // Before any fault on c: unexplained.
            mail(1, 13_000, &[("c", "LOST", Some(12_900))]),
            // Far too late for the partition of a.
            mail(2, 200_000, &[("a", "LOST", Some(199_000))]),
            // A reminder is no down notice.
            mail(3, 14_000, &[("a", "STILL DOWN LOST", Some(11_000))]),
        ];
        let s = score(&faults, &mails);
        assert_eq!(s.recall_percent, 0.0);
        assert_eq!(s.missed.len(), 1);
        assert_eq!(s.unexplained, 2);
        assert_eq!(s.false_alarms, 3);
        assert_eq!(s.false_alarm_findings[0].agent, "b");
    }

    #[test]
    fn a_crash_loop_is_one_incident_and_skipped_faults_do_not_count() {
        let mut skipped = fault(2, FaultKind::Crash, "b", 5_000);
        skipped.skipped = Some("no child".into());
        let faults = [fault(1, FaultKind::CrashLoop, "a", 10_000), skipped];
        let mails = [
            mail(0, 10_400, &[("a", "CRASHED", Some(10_100))]),
            mail(1, 12_400, &[("a", "CRASHED", Some(12_100))]),
        ];
        let s = score(&faults, &mails);
        assert_eq!(
            (s.abnormal, s.detected, s.duplicates, s.skipped),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn notices_after_an_ensemble_outage_are_false_alarms_unless_a_fault_waits_for_one() {
        let faults = [
            fault(1, FaultKind::WatchdogKill, "a", 10_000),
            fault(2, FaultKind::WatchdogKill, "b", 25_000),
            fault(3, FaultKind::EnsembleOutage, "", 30_000),
            fault(4, FaultKind::Crash, "c", 40_000),
        ];
        let mails = [
            mail(0, 13_000, &[("a", "LOST", Some(12_500))]),
            // b's LOST could not be opened before the outage: still b's.
            // a had no fault of its own since its notice: a false alarm of the outage, not a
            // duplicate of #1.
            // c crashed during the outage: c's.
            mail(
                1,
                65_000,
                &[
                    ("b", "LOST and RECOVERED", Some(64_000)),
                    ("a", "LOST and RECOVERED", Some(64_000)),
                    ("c", "CRASHED and RECOVERED", Some(64_100)),
                ],
            ),
            // A second copy for a after the same outage is a duplicate.
            mail(2, 70_000, &[("a", "LOST", Some(64_000))]),
        ];
        let s = score(&faults, &mails);
        assert_eq!((s.abnormal, s.detected), (3, 3));
        assert_eq!(s.after_outage, 1);
        assert_eq!(
            s.after_outage_notices,
            vec![(3, "a".to_string(), vec![1, 2])]
        );
        assert_eq!((s.duplicates, s.false_alarms), (1, 1));
    }

    #[test]
    fn a_fault_before_the_recovery_was_heard_folds_into_the_open_incident() {
        let faults = [
            fault(1, FaultKind::WatchdogKill, "a", 10_000),
            // SMTP down: the recovery of #1 is not out yet when a fails again, twice.
            fault(2, FaultKind::Crash, "a", 20_000),
            fault(3, FaultKind::Partition, "a", 30_000),
            // After the recovery was heard: a new outage needs its own notice.
            fault(4, FaultKind::Crash, "a", 50_000),
            // A fault with no earlier abnormal fault on its agent never folds.
            fault(5, FaultKind::PlannedStop, "b", 10_000),
            fault(6, FaultKind::Crash, "b", 20_000),
        ];
        let mails = [
            mail(0, 12_500, &[("a", "LOST", Some(12_400))]),
            mail(1, 40_000, &[("a", "RECOVERED", Some(12_400))]),
        ];
        let s = score(&faults, &mails);
        assert_eq!((s.abnormal, s.detected, s.folded), (5, 1, 2));
        assert_eq!(s.by_kind["crash"].folded, 1);
        let missed: Vec<usize> = s.missed.iter().map(|f| f.seq).collect();
        assert_eq!(missed, vec![4, 6]);
        assert_eq!(s.recall_percent, 60.0);
    }

    #[test]
    fn an_old_crash_announced_again_after_a_planned_stop_is_a_duplicate() {
        let faults = [
            fault(1, FaultKind::Crash, "a", 40_000),
            fault(2, FaultKind::PlannedStop, "a", 48_000),
        ];
        let mut again = mail(1, 51_500, &[("a", "CRASHED and RECOVERED", Some(51_400))]);
        again.items[0].exit_ms = Some(40_010);
        let mails = [
            mail(0, 41_500, &[("a", "CRASHED and RECOVERED", Some(40_050))]),
            again,
        ];
        let s = score(&faults, &mails);
        assert_eq!((s.detected, s.duplicates, s.false_alarms), (1, 1, 0));
    }

    #[test]
    fn percentiles_nearest_rank() {
        let xs: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&xs, 50.0), Some(50));
        assert_eq!(percentile(&xs, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
