//! The schedule: which fault happens when, to which agent, for how long — a pure function of the
//! seed, the number of events and the shape of the cluster, so a run can be repeated exactly
//! (`scripts/chaos.sh --seed N --plan` prints it without running anything).
//!
//! Rules the schedule keeps (docs/chaos.md explains why):
//! - one fault at a time per agent, and the agent is given time to settle (be up again, its
//!   notices sent) before its next fault, so each notice can be matched to one fault;
//! - one infrastructure fault (watcher, ZooKeeper, SMTP) at a time;
//! - while the whole ensemble is down (and for a margin around it) only faults whose ground truth
//!   does not depend on ZooKeeper are scheduled on agents: a child crash and a watchdog SIGKILL;
//! - a partition or a freeze lasts well past the session timeout (shorter ones are unscorable);
//! - with enough events, every kind of fault happens at least once.

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// Margin kept free of ZooKeeper-dependent agent faults before and after an ensemble outage.
pub const OUTAGE_MARGIN_MS: u64 = 10_000;
/// How long the whole ensemble is down in an [`FaultKind::EnsembleOutage`].
pub const OUTAGE_MS: u64 = 30_000;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL to the agent's child; the watchdog restarts it.
    Crash,
    /// The child exits at once on every start for a while (a crash loop); one incident.
    CrashLoop,
    /// SIGTERM to the watchdog (a planned stop), started again later.
    PlannedStop,
    /// SIGKILL to the watchdog (its child dies with it), started again later.
    WatchdogKill,
    /// SIGSTOP to the watchdog for longer than its session timeout, then SIGCONT.
    WatchdogFreeze,
    /// The watchdog's network namespace is cut off from ZooKeeper for longer than its session
    /// timeout, then reconnected.
    Partition,
    /// SIGKILL to the leading watcher; a new replica is started later.
    WatcherKill,
    /// SIGSTOP to the leading watcher for longer than its session timeout, then SIGCONT (the
    /// other replica takes over meanwhile: split brain on thaw).
    WatcherFreeze,
    /// SIGKILL to the ZooKeeper ensemble's leader, restarted later.
    ZkLeaderKill,
    /// Every ZooKeeper node SIGKILLed, restarted 30 s later.
    EnsembleOutage,
    /// The SMTP server stopped for a while, then started again.
    SmtpOutage,
}

/// What the on-call should receive for a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Truth {
    /// Exactly one down notice (CRASHED, LOST, FATAL, RESTARTED…) for the agent.
    Abnormal,
    /// No down notice for the agent.
    Planned,
    /// A fault of the infrastructure: no notice of its own about any agent.
    Background,
}

impl FaultKind {
    /// Every kind, in table order.
    pub const ALL: [FaultKind; 11] = [
        FaultKind::Crash,
        FaultKind::CrashLoop,
        FaultKind::PlannedStop,
        FaultKind::WatchdogKill,
        FaultKind::WatchdogFreeze,
        FaultKind::Partition,
        FaultKind::WatcherKill,
        FaultKind::WatcherFreeze,
        FaultKind::ZkLeaderKill,
        FaultKind::EnsembleOutage,
        FaultKind::SmtpOutage,
    ];

    /// The name in tables, JSON and logs.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::CrashLoop => "crash-loop",
            FaultKind::PlannedStop => "planned-stop",
            FaultKind::WatchdogKill => "watchdog-kill",
            FaultKind::WatchdogFreeze => "watchdog-freeze",
            FaultKind::Partition => "partition",
            FaultKind::WatcherKill => "watcher-kill",
            FaultKind::WatcherFreeze => "watcher-freeze",
            FaultKind::ZkLeaderKill => "zk-leader-kill",
            FaultKind::EnsembleOutage => "ensemble-outage",
            FaultKind::SmtpOutage => "smtp-outage",
        }
    }

    /// The ground truth.
    pub fn truth(self) -> Truth {
        match self {
            FaultKind::Crash
            | FaultKind::CrashLoop
            | FaultKind::WatchdogKill
            | FaultKind::WatchdogFreeze
            | FaultKind::Partition => Truth::Abnormal,
            FaultKind::PlannedStop => Truth::Planned,
            FaultKind::WatcherKill
            | FaultKind::WatcherFreeze
            | FaultKind::ZkLeaderKill
            | FaultKind::EnsembleOutage
            | FaultKind::SmtpOutage => Truth::Background,
        }
    }

    /// Whether the fault strikes one agent (otherwise the infrastructure).
    pub fn on_agent(self) -> bool {
        self.truth() != Truth::Background
    }

    /// Whether the fault may run while the ensemble is down: its ground truth does not depend on
    /// the watchdog reaching ZooKeeper (a planned stop would leave its marker behind, a freeze or
    /// partition would not outlast a session that ZooKeeper does not time out while down).
    pub fn outage_safe(self) -> bool {
        matches!(self, FaultKind::Crash | FaultKind::WatchdogKill)
    }

    /// Relative frequency (per mille before normalisation).
    fn weight(self) -> u64 {
        match self {
            FaultKind::Crash => 200,
            FaultKind::CrashLoop => 80,
            FaultKind::PlannedStop => 160,
            FaultKind::WatchdogKill => 110,
            FaultKind::WatchdogFreeze => 90,
            FaultKind::Partition => 90,
            FaultKind::WatcherKill => 60,
            FaultKind::WatcherFreeze => 70,
            FaultKind::ZkLeaderKill => 40,
            FaultKind::EnsembleOutage => 15,
            FaultKind::SmtpOutage => 50,
        }
    }

    /// How long the fault lasts (freeze, cut, outage, time stopped) in ms, drawn from `rng`.
    fn hold(self, rng: &mut Rng) -> u64 {
        match self {
            FaultKind::Crash => 0,
            FaultKind::CrashLoop => rng.between(4_000, 8_000),
            FaultKind::PlannedStop => rng.between(1_500, 4_000),
            FaultKind::WatchdogKill => rng.between(4_000, 7_000),
            FaultKind::WatchdogFreeze | FaultKind::Partition | FaultKind::WatcherFreeze => {
                rng.between(4_000, 8_000)
            }
            FaultKind::WatcherKill => rng.between(2_000, 5_000),
            FaultKind::ZkLeaderKill => rng.between(1_000, 4_000),
            FaultKind::EnsembleOutage => OUTAGE_MS,
            FaultKind::SmtpOutage => rng.between(5_000, 20_000),
        }
    }

    /// How long the target is busy in the plan: the hold plus the time to undo the fault and
    /// settle (the agent up again and its notices sent; the service back).
    fn busy(self, hold: u64) -> u64 {
        hold + match self {
            FaultKind::Crash
            | FaultKind::CrashLoop
            | FaultKind::WatchdogKill
            | FaultKind::WatchdogFreeze
            | FaultKind::Partition => 8_000,
            FaultKind::PlannedStop => 10_000,
            FaultKind::WatcherKill | FaultKind::WatcherFreeze | FaultKind::ZkLeaderKill => 4_000,
            FaultKind::EnsembleOutage => 15_000,
            FaultKind::SmtpOutage => 3_000,
        }
    }
}

/// The cluster a plan is made for: `agents` watchdogs, the last `netns_agents` of them each in
/// its own network namespace (only those can be partitioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shape {
    pub agents: usize,
    pub netns_agents: usize,
}

impl Shape {
    fn kinds(&self) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|k| *k != FaultKind::Partition || self.netns_agents > 0)
            .collect()
    }

    /// Whether agent `i` lives in its own network namespace.
    pub fn in_netns(&self, i: usize) -> bool {
        i >= self.agents.saturating_sub(self.netns_agents)
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFault {
    /// Position in the schedule (by start time), from 1.
    pub seq: usize,
    /// Start, in ms after the run's start.
    pub at_ms: u64,
    pub kind: FaultKind,
    /// The agent's index, for agent faults.
    pub agent: Option<usize>,
    /// How long the fault lasts, in ms.
    pub hold_ms: u64,
}

/// A whole schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub seed: u64,
    pub shape: Shape,
    pub faults: Vec<PlannedFault>,
}

impl Plan {
    /// When the last fault is planned to be over (start plus busy time), in ms.
    pub fn span_ms(&self) -> u64 {
        self.faults
            .iter()
            .map(|f| f.at_ms + f.kind.busy(f.hold_ms))
            .max()
            .unwrap_or(0)
    }
}

/// The schedule of `events` faults for `shape`, from `seed`.
pub fn plan(seed: u64, events: usize, shape: Shape) -> Plan {
    assert!(shape.agents > 0, "a plan needs at least one agent");
    assert!(
        shape.netns_agents <= shape.agents,
        "more network-namespace agents than agents"
    );
    let mut rng = Rng::new(seed);
    let kinds = shape.kinds();
    // Every kind once first (in a seeded order) when there are enough events, then by weight.
    let mut sequence: Vec<FaultKind> = Vec::with_capacity(events);
    if events >= kinds.len() {
        let mut first = kinds.clone();
        for i in (1..first.len()).rev() {
            first.swap(i, rng.below(i as u64 + 1) as usize);
        }
        sequence.extend(first);
    }
    let total: u64 = kinds.iter().map(|k| k.weight()).sum();
    while sequence.len() < events {
        let mut pick = rng.below(total);
        let kind = kinds
            .iter()
            .copied()
            .find(|k| {
                if pick < k.weight() {
                    true
                } else {
                    pick -= k.weight();
                    false
                }
            })
            .unwrap_or(FaultKind::Crash);
        sequence.push(kind);
    }

    let mut cursor: u64 = 2_000;
    let mut agent_free = vec![0u64; shape.agents];
    let mut infra_free = 0u64;
    // Windows no ZooKeeper-dependent agent fault may overlap, and the busy intervals of those.
    let mut outages: Vec<(u64, u64)> = Vec::new();
    let mut restricted: Vec<(u64, u64)> = Vec::new();
    let mut faults = Vec::with_capacity(events);
    for kind in sequence {
        let hold = kind.hold(&mut rng);
        let busy = kind.busy(hold);
        let (mut at, agent) = if kind.on_agent() {
            let eligible: Vec<usize> = (0..shape.agents)
                .filter(|i| kind != FaultKind::Partition || shape.in_netns(*i))
                .collect();
            let free: Vec<usize> = eligible
                .iter()
                .copied()
                .filter(|i| agent_free[*i] <= cursor)
                .collect();
            let agent = if free.is_empty() {
                eligible
                    .iter()
                    .copied()
                    .min_by_key(|i| agent_free[*i])
                    .unwrap_or(0)
            } else {
                free[rng.below(free.len() as u64) as usize]
            };
            (cursor.max(agent_free[agent]), Some(agent))
        } else {
            (cursor.max(infra_free), None)
        };
        if kind.on_agent() && !kind.outage_safe() {
            // Bounded: each round moves past one outage window.
            for _ in 0..=outages.len() {
                match outages
                    .iter()
                    .find(|(s, e)| at < e + OUTAGE_MARGIN_MS && at + busy + OUTAGE_MARGIN_MS > *s)
                {
                    Some((_, e)) => at = e + OUTAGE_MARGIN_MS,
                    None => break,
                }
            }
            restricted.push((at, at + busy));
        }
        if kind == FaultKind::EnsembleOutage {
            let clear = restricted.iter().map(|(_, e)| *e).max().unwrap_or(0);
            at = at.max(clear + OUTAGE_MARGIN_MS);
            outages.push((at, at + busy));
        }
        match agent {
            Some(i) => agent_free[i] = at + busy,
            None => infra_free = at + busy,
        }
        faults.push(PlannedFault {
            seq: 0,
            at_ms: at,
            kind,
            agent,
            hold_ms: hold,
        });
        cursor += rng.between(2_000, 4_000);
    }
    faults.sort_by_key(|f| f.at_ms);
    for (i, f) in faults.iter_mut().enumerate() {
        f.seq = i + 1;
    }
    Plan {
        seed,
        shape,
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        agents: 8,
        netns_agents: 2,
    };

    #[test]
    fn same_seed_same_plan_other_seed_other_plan() {
        assert_eq!(plan(1, 40, SHAPE), plan(1, 40, SHAPE));
        assert_ne!(plan(1, 40, SHAPE), plan(2, 40, SHAPE));
    }

    #[test]
    fn every_kind_happens_when_there_are_enough_events() {
        let p = plan(1, 40, SHAPE);
        assert_eq!(p.faults.len(), 40);
        for kind in FaultKind::ALL {
            assert!(
                p.faults.iter().any(|f| f.kind == kind),
                "{} missing",
                kind.name()
            );
        }
        let no_netns = plan(
            1,
            40,
            Shape {
                agents: 4,
                netns_agents: 0,
            },
        );
        assert!(no_netns
            .faults
            .iter()
            .all(|f| f.kind != FaultKind::Partition));
    }

    #[test]
    fn agents_and_infrastructure_have_one_fault_at_a_time() {
        for seed in 1..20 {
            let p = plan(seed, 200, SHAPE);
            let mut ends: std::collections::HashMap<Option<usize>, u64> = Default::default();
            for f in &p.faults {
                let end = ends.entry(f.agent).or_insert(0);
                assert!(
                    f.at_ms >= *end,
                    "seed {seed}: overlapping faults at #{}",
                    f.seq
                );
                *end = f.at_ms + f.kind.busy(f.hold_ms);
                if f.kind == FaultKind::Partition {
                    assert!(f.agent.is_some_and(|a| SHAPE.in_netns(a)));
                }
            }
        }
    }

    #[test]
    fn only_crashes_and_kills_near_an_ensemble_outage() {
        for seed in 1..40 {
            let p = plan(seed, 300, SHAPE);
            let outages: Vec<(u64, u64)> = p
                .faults
                .iter()
                .filter(|f| f.kind == FaultKind::EnsembleOutage)
                .map(|f| (f.at_ms, f.at_ms + f.kind.busy(f.hold_ms)))
                .collect();
            for f in p.faults.iter().filter(|f| f.kind.on_agent()) {
                let (s, e) = (f.at_ms, f.at_ms + f.kind.busy(f.hold_ms));
                let near = outages
                    .iter()
                    .any(|(os, oe)| s < oe + OUTAGE_MARGIN_MS && e + OUTAGE_MARGIN_MS > *os);
                assert!(
                    !near || f.kind.outage_safe(),
                    "seed {seed}: {} #{} next to an outage",
                    f.kind.name(),
                    f.seq
                );
            }
        }
    }

    #[test]
    fn holds_outlast_the_session_timeout_where_they_must() {
        let p = plan(3, 300, SHAPE);
        for f in &p.faults {
            if matches!(
                f.kind,
                FaultKind::WatchdogFreeze | FaultKind::Partition | FaultKind::WatcherFreeze
            ) {
                assert!(f.hold_ms >= 4_000, "#{} too short", f.seq);
            }
        }
    }
}
