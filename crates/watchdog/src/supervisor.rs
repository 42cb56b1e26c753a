//! The supervisor's state machine: pure, no I/O. The driver ([`crate::run`]) turns child exits,
//! timers, signals and probe verdicts into [`Event`]s and performs the [`Action`]s that come
//! back.
//!
//! A *planned restart* stops the child like a planned stop (stop signal to the group,
//! `stop-timeout`, SIGKILL) and starts it again as soon as it is gone, whatever it exited with.
//! Two things ask for one: the health probe ([`Event::ProbeRestart`], recorded in
//! `last_exit.probe_restart`) and a reload, SIGHUP to the watchdog under
//! `restart.on-reload = "restart"` ([`Event::Reload`], recorded as `last_exit.reload`, which the
//! watcher never reports). It counts in `restarts`, but it is not a crash: it neither advances
//! the crash backoff nor counts towards the give-up window (a pipeline that stays degraded is
//! restarted each time the probe fails `restart-after-failures` times again, after the new
//! child's start grace).
//!
//! A child that exits with a success code within `restart.stable-after` while processes of its
//! process group live on has *daemonized* (`kafka-server-start.sh -daemon`, `nohup java … &`):
//! the agent now runs where nothing supervises it. That is never a planned stop: the exit is
//! recorded with `last_exit.daemonized`, the leftovers get the stop sequence, and supervision
//! ends as a give-up (`state = "fatal"`, exit 3), under every policy (`always` would start a
//! second copy of the daemon).

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use crate::backoff::{Backoff, RestartWindow};
use crate::config::{OnReload, RestartConfig, RestartPolicy};
use crate::exit::ExitKind;
use crate::publisher::Update;
use crate::registry::{AgentState, LastExit, Timestamp};

/// Something that happened to the supervisor.
#[derive(Debug, Clone)]
pub enum Event {
    /// The child was spawned.
    Spawned {
        pid: u32,
        at: Instant,
        wall: SystemTime,
    },
    /// The child could not be spawned (program missing, not executable, ...).
    SpawnFailed {
        error: String,
        at: Instant,
        wall: SystemTime,
    },
    /// The child exited. `leftovers` are the pids of processes of its process group still
    /// alive (not zombies) when it was reaped; nothing has signalled them yet. `sample` is a
    /// random number in `[0, 1)` for the backoff jitter.
    Exited {
        kind: ExitKind,
        stderr_tail: Vec<String>,
        leftovers: Vec<u32>,
        at: Instant,
        wall: SystemTime,
        sample: f64,
    },
    /// The restart delay is over.
    RestartTimer,
    /// SIGTERM: a planned stop.
    Terminate,
    /// SIGINT: a planned stop the first time; the second one kills at once.
    Interrupt,
    /// The child did not stop within `stop-timeout`.
    StopTimeout,
    /// The health probe failed `restart-after-failures` times in a row: restart the child.
    /// `detail` is the health detail that made it so, recorded in `last_exit.probe_restart`.
    ProbeRestart { detail: String },
    /// SIGHUP to the watchdog (`systemctl reload`): handled per `restart.on-reload`.
    Reload,
    /// No process of a daemonized child's group is alive any more.
    LeftoversGone,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Spawn the child now.
    Spawn,
    /// Fire [`Event::RestartTimer`] after this delay.
    RestartAfter(Duration),
    /// Send a signal to the child's process group.
    Signal(Signal),
    /// Send a signal to what is left of the process group `pgid` of a child already reaped.
    SignalLeftovers { pgid: u32, signal: Signal },
    /// Watch the process group `pgid` until none of its processes is alive, then fire
    /// [`Event::LeftoversGone`].
    AwaitLeftovers { pgid: u32 },
    /// Fire [`Event::StopTimeout`] after this delay.
    StopTimerAfter(Duration),
    /// Send an update to the registry.
    Publish(UpdateKind),
    /// Supervision is over.
    Finish(Ending),
}

/// Registry updates, in the form tests compare easily; converted by [`UpdateKind::into_update`].
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateKind {
    Started {
        generation: u64,
        child_pid: u32,
        restarts: u64,
        wall: SystemTime,
    },
    Exited {
        exit: LastExit,
        state: AgentState,
        restarts: u64,
    },
    State(AgentState),
}

impl UpdateKind {
    /// The registry update to send.
    pub fn into_update(self) -> Update {
        match self {
            UpdateKind::Started {
                generation,
                child_pid,
                restarts,
                wall,
            } => Update::Started {
                generation,
                child_pid,
                restarts,
                started_at: Timestamp(wall),
            },
            UpdateKind::Exited {
                exit,
                state,
                restarts,
            } => Update::Exited {
                exit,
                state,
                restarts,
            },
            UpdateKind::State(state) => Update::State(state),
        }
    }
}

/// How supervision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A planned stop: deregister and exit 0.
    Stopped,
    /// Gave up (or the policy forbids a restart): keep the marker, exit non-zero.
    Fatal,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// A spawn was requested.
    Starting,
    Running {
        pid: u32,
        started: Instant,
    },
    /// Waiting out a restart delay.
    Waiting,
    /// The stop signal was sent for a planned stop.
    Stopping {
        pid: u32,
    },
    /// The stop signal was sent for a planned restart; the child is started again as soon as
    /// it is gone.
    Restarting {
        pid: u32,
        started: Instant,
        why: Planned,
    },
    /// The child daemonized and was reaped; the stop sequence runs on what is left of its
    /// group. `killed`: SIGKILL was sent already.
    Daemonized {
        pgid: u32,
        killed: bool,
    },
    Done,
}

/// Why the supervisor restarts a child that did not crash.
#[derive(Debug, Clone, PartialEq)]
enum Planned {
    /// The health probe kept failing (its detail).
    Probe(String),
    /// SIGHUP to the watchdog under `on-reload = "restart"`.
    Reload,
}

/// Whether an exit means that the child daemonized: a success code within `stable-after`
/// (still its start-up) while processes of its group live on.
pub fn daemonized(
    kind: ExitKind,
    uptime: Duration,
    leftovers: &[u32],
    config: &RestartConfig,
) -> bool {
    !leftovers.is_empty()
        && kind.is_success(&config.success_codes)
        && uptime < config.backoff.stable_after
}

/// What the error log, the exit record and the watcher's email say about a child that
/// daemonized.
pub fn daemonized_reason(kind: ExitKind, uptime: Duration, leftovers: &[u32]) -> String {
    let uptime = Duration::from_millis(uptime.as_millis() as u64);
    let pids: Vec<String> = leftovers.iter().take(10).map(u32::to_string).collect();
    let more = if leftovers.len() > pids.len() {
        ", …"
    } else {
        ""
    };
    format!(
        "the command daemonized: it returned {kind} after {} while {} process{} of its process group \
         kept running (pid {}{more}); a daemon cannot be supervised, so zkwatchdog stops them \
         and gives up; run it in the foreground: e.g. kafka-server-start.sh without -daemon, \
         flume-ng agent without &, or `exec` in a wrapper script",
        humantime::format_duration(uptime),
        leftovers.len(),
        if leftovers.len() == 1 { "" } else { "es" },
        pids.join(", "),
    )
}

/// The supervisor of one child.
#[derive(Debug)]
pub struct Supervisor {
    config: RestartConfig,
    phase: Phase,
    /// Children started so far.
    generation: u64,
    restarts: u64,
    backoff: Backoff,
    window: RestartWindow,
}

impl Supervisor {
    pub fn new(config: RestartConfig) -> Self {
        Supervisor {
            backoff: Backoff::new(config.backoff.clone()),
            window: RestartWindow::new(config.give_up.clone()),
            config,
            phase: Phase::Starting,
            generation: 0,
            restarts: 0,
        }
    }

    /// The first actions: start the child.
    pub fn start(&mut self) -> Vec<Action> {
        self.phase = Phase::Starting;
        vec![Action::Spawn]
    }

    /// Children started so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Handles one event and returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        use Action::*;
        match (&self.phase, event) {
            (Phase::Starting, Event::Spawned { pid, at, wall }) => {
                self.generation += 1;
                if self.generation > 1 {
                    self.restarts += 1;
                }
                self.phase = Phase::Running { pid, started: at };
                vec![Publish(UpdateKind::Started {
                    generation: self.generation,
                    child_pid: pid,
                    restarts: self.restarts,
                    wall,
                })]
            }
            (Phase::Starting, Event::SpawnFailed { error, at, wall }) => {
                // Exit code 127, as a shell reports a command it cannot run.
                let tail = vec![format!("zkwatchdog: cannot start the command: {error}")];
                self.after_exit(ExitKind::Code(127), tail, Duration::ZERO, at, wall, 0.5)
            }
            (
                &Phase::Running { pid, started },
                Event::Exited {
                    kind,
                    stderr_tail,
                    leftovers,
                    at,
                    wall,
                    sample,
                },
            ) => {
                let uptime = at.saturating_duration_since(started);
                if daemonized(kind, uptime, &leftovers, &self.config) {
                    let mut exit = self.exit_record(kind, stderr_tail, uptime, wall);
                    exit.daemonized = Some(daemonized_reason(kind, uptime, &leftovers));
                    self.phase = Phase::Daemonized {
                        pgid: pid,
                        killed: false,
                    };
                    return vec![
                        Publish(UpdateKind::Exited {
                            exit,
                            state: AgentState::Fatal,
                            restarts: self.restarts,
                        }),
                        SignalLeftovers {
                            pgid: pid,
                            signal: self.config.stop_signal,
                        },
                        StopTimerAfter(self.config.stop_timeout),
                        AwaitLeftovers { pgid: pid },
                    ];
                }
                let mut actions = kill_leftovers(pid, &leftovers);
                actions.extend(self.after_exit(kind, stderr_tail, uptime, at, wall, sample));
                actions
            }
            (&Phase::Stopping { pid }, Event::Exited { leftovers, .. }) => {
                self.phase = Phase::Done;
                let mut actions = kill_leftovers(pid, &leftovers);
                actions.push(Finish(Ending::Stopped));
                actions
            }
            (&Phase::Running { pid, started }, Event::ProbeRestart { detail }) => {
                self.planned_restart(pid, started, Planned::Probe(detail))
            }
            (&Phase::Running { pid, started }, Event::Reload) => match self.config.on_reload {
                OnReload::Restart => self.planned_restart(pid, started, Planned::Reload),
                OnReload::Forward => vec![Signal(nix::sys::signal::Signal::SIGHUP)],
                OnReload::Ignore => Vec::new(),
            },
            // While a child is being stopped, "forward" still passes SIGHUP on (as it always
            // did); a restart is not started twice, and nothing else runs to reload.
            (Phase::Stopping { .. } | Phase::Restarting { .. }, Event::Reload) => {
                match self.config.on_reload {
                    OnReload::Forward => vec![Signal(nix::sys::signal::Signal::SIGHUP)],
                    OnReload::Restart | OnReload::Ignore => Vec::new(),
                }
            }
            (
                Phase::Restarting {
                    pid, started, why, ..
                },
                Event::Exited {
                    kind,
                    stderr_tail,
                    leftovers,
                    at,
                    wall,
                    ..
                },
            ) => {
                // We asked it to stop: however it ended, start it again at once. This is not a
                // crash, so the crash backoff and the give-up window are left alone.
                let uptime = at.saturating_duration_since(*started);
                let mut actions = kill_leftovers(*pid, &leftovers);
                let why = why.clone();
                let mut exit = self.exit_record(kind, stderr_tail, uptime, wall);
                match why {
                    Planned::Probe(detail) => exit.probe_restart = Some(detail),
                    Planned::Reload => exit.reload = true,
                }
                self.phase = Phase::Starting;
                actions.extend([
                    Publish(UpdateKind::Exited {
                        exit,
                        state: AgentState::Restarting,
                        restarts: self.restarts,
                    }),
                    Spawn,
                ]);
                actions
            }
            (Phase::Restarting { .. }, Event::StopTimeout) => {
                vec![Signal(nix::sys::signal::Signal::SIGKILL)]
            }
            (&Phase::Restarting { pid, .. }, Event::Terminate | Event::Interrupt) => {
                // The stop signal is already on its way and the stop timer running: this is
                // now a planned stop.
                self.phase = Phase::Stopping { pid };
                vec![Publish(UpdateKind::State(AgentState::Stopping))]
            }
            (Phase::Waiting, Event::RestartTimer) => {
                self.phase = Phase::Starting;
                vec![Publish(UpdateKind::State(AgentState::Restarting)), Spawn]
            }
            (&Phase::Running { pid, .. }, Event::Terminate | Event::Interrupt) => {
                self.phase = Phase::Stopping { pid };
                vec![
                    Publish(UpdateKind::State(AgentState::Stopping)),
                    Signal(self.config.stop_signal),
                    StopTimerAfter(self.config.stop_timeout),
                ]
            }
            (Phase::Waiting | Phase::Starting, Event::Terminate | Event::Interrupt) => {
                self.phase = Phase::Done;
                vec![Finish(Ending::Stopped)]
            }
            (Phase::Stopping { .. }, Event::Interrupt | Event::StopTimeout) => {
                vec![Signal(nix::sys::signal::Signal::SIGKILL)]
            }
            (Phase::Daemonized { .. }, Event::LeftoversGone) => {
                self.phase = Phase::Done;
                vec![Finish(Ending::Fatal)]
            }
            // Out of time, or the operator is in a hurry (SIGINT): SIGKILL, and wait once more.
            (
                &Phase::Daemonized {
                    pgid,
                    killed: false,
                },
                Event::StopTimeout | Event::Interrupt,
            ) => {
                self.phase = Phase::Daemonized { pgid, killed: true };
                vec![
                    SignalLeftovers {
                        pgid,
                        signal: nix::sys::signal::Signal::SIGKILL,
                    },
                    StopTimerAfter(self.config.stop_timeout),
                ]
            }
            // Still there a stop-timeout after SIGKILL (stuck in the kernel): stop waiting. The
            // guardian kills the group once the watchdog has exited.
            (Phase::Daemonized { killed: true, .. }, Event::StopTimeout) => {
                self.phase = Phase::Done;
                vec![Finish(Ending::Fatal)]
            }
            // A second SIGTERM, a stale timer, a SIGHUP with no child to reload (backoff,
            // daemonized leftovers), or anything after the end: nothing to do.
            _ => Vec::new(),
        }
    }

    /// Starts a planned restart of the running child `pid`.
    fn planned_restart(&mut self, pid: u32, started: Instant, why: Planned) -> Vec<Action> {
        self.phase = Phase::Restarting { pid, started, why };
        vec![
            Action::Publish(UpdateKind::State(AgentState::Restarting)),
            Action::Signal(self.config.stop_signal),
            Action::StopTimerAfter(self.config.stop_timeout),
        ]
    }

    /// The exit record of the current generation.
    fn exit_record(
        &self,
        kind: ExitKind,
        stderr_tail: Vec<String>,
        uptime: Duration,
        wall: SystemTime,
    ) -> LastExit {
        LastExit {
            at: Timestamp(wall),
            generation: self.generation,
            code: kind.code(),
            signal: kind.signal_name(),
            uptime_ms: uptime.as_millis() as u64,
            stderr_tail,
            probe_restart: None,
            reload: false,
            daemonized: None,
        }
    }

    fn after_exit(
        &mut self,
        kind: ExitKind,
        stderr_tail: Vec<String>,
        uptime: Duration,
        at: Instant,
        wall: SystemTime,
        sample: f64,
    ) -> Vec<Action> {
        use Action::*;
        let success = kind.is_success(&self.config.success_codes);
        let policy = self.config.policy;
        if success && policy != RestartPolicy::Always {
            // The agent finished its work: a planned stop, not a crash.
            self.phase = Phase::Done;
            return vec![Finish(Ending::Stopped)];
        }
        let exit = self.exit_record(kind, stderr_tail, uptime, wall);
        let delay = self.backoff.next_delay(uptime, sample);
        if policy == RestartPolicy::Never || self.window.exceeded_by_restart(at) {
            self.phase = Phase::Done;
            return vec![
                Publish(UpdateKind::Exited {
                    exit,
                    state: AgentState::Fatal,
                    restarts: self.restarts,
                }),
                Finish(Ending::Fatal),
            ];
        }
        if delay.is_zero() {
            self.phase = Phase::Starting;
            vec![
                Publish(UpdateKind::Exited {
                    exit,
                    state: AgentState::Restarting,
                    restarts: self.restarts,
                }),
                Spawn,
            ]
        } else {
            self.phase = Phase::Waiting;
            vec![
                Publish(UpdateKind::Exited {
                    exit,
                    state: AgentState::Backoff,
                    restarts: self.restarts,
                }),
                RestartAfter(delay),
            ]
        }
    }
}

/// SIGKILL for what is left of a reaped child's group (a wrapper's helpers that are not a
/// daemon): a restarted agent must never meet its predecessor's leftovers.
fn kill_leftovers(pgid: u32, leftovers: &[u32]) -> Vec<Action> {
    if leftovers.is_empty() {
        return Vec::new();
    }
    vec![Action::SignalLeftovers {
        pgid,
        signal: Signal::SIGKILL,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{BackoffPolicy, GiveUp};

    fn config(policy: RestartPolicy) -> RestartConfig {
        RestartConfig {
            policy,
            success_codes: vec![0],
            backoff: BackoffPolicy {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(400),
                jitter: 0.0,
                stable_after: Duration::from_secs(10),
            },
            give_up: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(5),
            on_reload: OnReload::Restart,
            fatal_record_timeout: Duration::from_secs(300),
        }
    }

    fn spawned(s: &mut Supervisor, pid: u32, at: Instant) -> Vec<Action> {
        s.handle(Event::Spawned {
            pid,
            at,
            wall: SystemTime::now(),
        })
    }

    fn exited(s: &mut Supervisor, kind: ExitKind, at: Instant) -> Vec<Action> {
        exited_leaving(s, kind, at, &[])
    }

    /// The child exited while `leftovers` of its group lived on.
    fn exited_leaving(
        s: &mut Supervisor,
        kind: ExitKind,
        at: Instant,
        leftovers: &[u32],
    ) -> Vec<Action> {
        s.handle(Event::Exited {
            kind,
            stderr_tail: vec!["boom".into()],
            leftovers: leftovers.to_vec(),
            at,
            wall: SystemTime::now(),
            sample: 0.0,
        })
    }

    fn exit_state(actions: &[Action]) -> Option<(AgentState, u64)> {
        actions.iter().find_map(|a| match a {
            Action::Publish(UpdateKind::Exited { exit, state, .. }) => {
                Some((*state, exit.generation))
            }
            _ => None,
        })
    }

    #[test]
    fn crash_after_stable_run_restarts_at_once_with_exit_record_first() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        assert_eq!(s.start(), vec![Action::Spawn]);
        let a = spawned(&mut s, 10, t0);
        assert!(matches!(
            a[0],
            Action::Publish(UpdateKind::Started {
                generation: 1,
                child_pid: 10,
                restarts: 0,
                ..
            })
        ));
        let a = exited(&mut s, ExitKind::Signal(9), t0 + Duration::from_secs(11));
        assert_eq!(exit_state(&a), Some((AgentState::Restarting, 1)));
        assert_eq!(
            a.last(),
            Some(&Action::Spawn),
            "exit published before the respawn: {a:?}"
        );
        let a = spawned(&mut s, 11, t0 + Duration::from_secs(11));
        assert!(matches!(
            a[0],
            Action::Publish(UpdateKind::Started {
                generation: 2,
                restarts: 1,
                ..
            })
        ));
    }

    #[test]
    fn crash_loop_backs_off_with_growing_capped_delays() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        let mut delays = Vec::new();
        for i in 0..5u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 10);
            spawned(&mut s, 100 + i, at);
            let a = exited(&mut s, ExitKind::Code(1), at);
            assert_eq!(exit_state(&a).map(|x| x.0), Some(AgentState::Backoff));
            let Some(Action::RestartAfter(d)) = a.last().cloned() else {
                panic!("expected a restart delay: {a:?}");
            };
            delays.push(d.as_millis());
            let a = s.handle(Event::RestartTimer);
            assert_eq!(a.last(), Some(&Action::Spawn));
        }
        assert_eq!(delays, vec![100, 200, 400, 400, 400]);
    }

    #[test]
    fn success_exit_is_a_planned_stop_under_on_failure_and_never() {
        for policy in [RestartPolicy::OnFailure, RestartPolicy::Never] {
            let t0 = Instant::now();
            let mut s = Supervisor::new(config(policy));
            s.start();
            spawned(&mut s, 1, t0);
            assert_eq!(
                exited(&mut s, ExitKind::Code(0), t0),
                vec![Action::Finish(Ending::Stopped)]
            );
        }
        // Under "always" it is restarted like any exit.
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::Always));
        s.start();
        spawned(&mut s, 1, t0);
        let a = exited(&mut s, ExitKind::Code(0), t0);
        assert_eq!(exit_state(&a).map(|x| x.0), Some(AgentState::Backoff));
    }

    #[test]
    fn never_policy_makes_a_crash_fatal() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::Never));
        s.start();
        spawned(&mut s, 1, t0);
        let a = exited(&mut s, ExitKind::Code(3), t0);
        assert_eq!(exit_state(&a).map(|x| x.0), Some(AgentState::Fatal));
        assert_eq!(a.last(), Some(&Action::Finish(Ending::Fatal)));
    }

    #[test]
    fn give_up_after_too_many_restarts() {
        let t0 = Instant::now();
        let mut c = config(RestartPolicy::OnFailure);
        c.give_up = Some(GiveUp {
            max_restarts: 2,
            window: Duration::from_secs(60),
        });
        let mut s = Supervisor::new(c);
        s.start();
        for i in 0..2 {
            spawned(&mut s, i, t0);
            exited(&mut s, ExitKind::Code(1), t0);
            s.handle(Event::RestartTimer);
        }
        spawned(&mut s, 9, t0);
        let a = exited(&mut s, ExitKind::Code(1), t0);
        assert_eq!(exit_state(&a), Some((AgentState::Fatal, 3)));
        assert_eq!(a.last(), Some(&Action::Finish(Ending::Fatal)));
    }

    #[test]
    fn stop_sequence_and_escalation() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 1, t0);
        let a = s.handle(Event::Terminate);
        assert_eq!(
            a,
            vec![
                Action::Publish(UpdateKind::State(AgentState::Stopping)),
                Action::Signal(Signal::SIGTERM),
                Action::StopTimerAfter(Duration::from_secs(5)),
            ]
        );
        assert_eq!(s.handle(Event::Terminate), vec![]);
        assert_eq!(
            s.handle(Event::Interrupt),
            vec![Action::Signal(Signal::SIGKILL)]
        );
        assert_eq!(
            s.handle(Event::StopTimeout),
            vec![Action::Signal(Signal::SIGKILL)]
        );
        // However the child ends while stopping, it is a planned stop.
        assert_eq!(
            exited(&mut s, ExitKind::Signal(9), t0),
            vec![Action::Finish(Ending::Stopped)]
        );
        assert_eq!(s.handle(Event::RestartTimer), vec![]);
    }

    #[test]
    fn stop_during_backoff_finishes_at_once() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 1, t0);
        exited(&mut s, ExitKind::Code(1), t0);
        assert_eq!(
            s.handle(Event::Terminate),
            vec![Action::Finish(Ending::Stopped)]
        );
    }

    fn exit_record(actions: &[Action]) -> Option<LastExit> {
        actions.iter().find_map(|a| match a {
            Action::Publish(UpdateKind::Exited { exit, .. }) => Some(exit.clone()),
            _ => None,
        })
    }

    #[test]
    fn probe_restart_stops_the_group_records_the_detail_and_starts_again_at_once() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 1, t0);
        let detail = "CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)".to_string();
        let a = s.handle(Event::ProbeRestart {
            detail: detail.clone(),
        });
        assert_eq!(
            a,
            vec![
                Action::Publish(UpdateKind::State(AgentState::Restarting)),
                Action::Signal(Signal::SIGTERM),
                Action::StopTimerAfter(Duration::from_secs(5)),
            ]
        );
        // A second request while stopping changes nothing; the timeout escalates.
        assert_eq!(s.handle(Event::ProbeRestart { detail: "x".into() }), vec![]);
        assert_eq!(
            s.handle(Event::StopTimeout),
            vec![Action::Signal(Signal::SIGKILL)]
        );
        // Even a "success" exit (the agent obeyed SIGTERM) is followed by a start.
        let a = exited(&mut s, ExitKind::Code(0), t0 + Duration::from_secs(2));
        let exit = exit_record(&a).expect("an exit record");
        assert_eq!(exit.probe_restart.as_deref(), Some(detail.as_str()));
        assert_eq!(exit.code, Some(0));
        assert_eq!(exit.uptime_ms, 2000);
        assert_eq!(exit_state(&a), Some((AgentState::Restarting, 1)));
        assert_eq!(a.last(), Some(&Action::Spawn), "no backoff: {a:?}");
        let a = spawned(&mut s, 2, t0 + Duration::from_secs(2));
        assert!(matches!(
            a[0],
            Action::Publish(UpdateKind::Started {
                generation: 2,
                restarts: 1,
                ..
            })
        ));
    }

    #[test]
    fn probe_restarts_do_not_escalate_the_crash_backoff_or_the_give_up() {
        let t0 = Instant::now();
        let mut c = config(RestartPolicy::OnFailure);
        c.give_up = Some(GiveUp {
            max_restarts: 2,
            window: Duration::from_secs(60),
        });
        let mut s = Supervisor::new(c);
        s.start();
        for i in 0..5 {
            spawned(&mut s, i, t0);
            s.handle(Event::ProbeRestart {
                detail: "bad".into(),
            });
            let a = exited(&mut s, ExitKind::Signal(15), t0);
            assert_eq!(a.last(), Some(&Action::Spawn), "restart {i}: {a:?}");
            assert_eq!(
                exit_record(&a).and_then(|e| e.signal),
                Some("SIGTERM".into())
            );
        }
        // The first real crash still gets the first backoff step, not a later one.
        spawned(&mut s, 9, t0);
        let a = exited(&mut s, ExitKind::Code(1), t0);
        assert_eq!(
            a.last(),
            Some(&Action::RestartAfter(Duration::from_millis(100)))
        );
        assert_eq!(exit_record(&a).and_then(|e| e.probe_restart), None);
    }

    #[test]
    fn planned_stop_during_a_probe_restart_wins() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 1, t0);
        s.handle(Event::ProbeRestart {
            detail: "bad".into(),
        });
        assert_eq!(
            s.handle(Event::Terminate),
            vec![Action::Publish(UpdateKind::State(AgentState::Stopping))]
        );
        assert_eq!(
            exited(&mut s, ExitKind::Signal(15), t0),
            vec![Action::Finish(Ending::Stopped)]
        );
    }

    #[test]
    fn probe_restart_is_ignored_when_no_child_runs() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        assert_eq!(s.handle(Event::ProbeRestart { detail: "x".into() }), vec![]);
        spawned(&mut s, 1, t0);
        exited(&mut s, ExitKind::Code(1), t0);
        assert_eq!(s.handle(Event::ProbeRestart { detail: "x".into() }), vec![]);
    }

    #[test]
    fn spawn_failure_backs_off_and_records_127() {
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        let a = s.handle(Event::SpawnFailed {
            error: "No such file or directory".into(),
            at: Instant::now(),
            wall: SystemTime::now(),
        });
        let Some(Action::Publish(UpdateKind::Exited { exit, state, .. })) = a.first() else {
            panic!("{a:?}");
        };
        assert_eq!(exit.code, Some(127));
        assert_eq!(*state, AgentState::Backoff);
        assert!(exit.stderr_tail[0].contains("No such file"));
    }

    // ---- reload (SIGHUP to the watchdog) ----

    fn with_reload(on_reload: OnReload) -> Supervisor {
        let mut c = config(RestartPolicy::OnFailure);
        c.on_reload = on_reload;
        Supervisor::new(c)
    }

    const RESTART: [Action; 3] = [
        Action::Publish(UpdateKind::State(AgentState::Restarting)),
        Action::Signal(Signal::SIGTERM),
        Action::StopTimerAfter(Duration::from_secs(5)),
    ];

    #[test]
    fn reload_restart_is_a_planned_restart_recorded_as_reload() {
        let t0 = Instant::now();
        let mut s = with_reload(OnReload::Restart);
        s.start();
        spawned(&mut s, 1, t0);
        assert_eq!(s.handle(Event::Reload), RESTART.to_vec());
        // A second SIGHUP while the restart runs starts nothing more; the timeout escalates.
        assert_eq!(s.handle(Event::Reload), vec![]);
        assert_eq!(
            s.handle(Event::StopTimeout),
            vec![Action::Signal(Signal::SIGKILL)]
        );
        // A JVM obeys SIGTERM with exit code 143: not a crash, started again at once.
        let a = exited(&mut s, ExitKind::Code(143), t0 + Duration::from_secs(3));
        let exit = exit_record(&a).expect("an exit record");
        assert!(exit.reload, "{exit:?}");
        assert_eq!(exit.probe_restart, None);
        assert_eq!((exit.code, exit.uptime_ms), (Some(143), 3000));
        assert_eq!(exit_state(&a), Some((AgentState::Restarting, 1)));
        assert_eq!(a.last(), Some(&Action::Spawn), "no backoff: {a:?}");
        let a = spawned(&mut s, 2, t0 + Duration::from_secs(3));
        assert!(matches!(
            a[0],
            Action::Publish(UpdateKind::Started {
                generation: 2,
                restarts: 1,
                ..
            })
        ));
    }

    #[test]
    fn reloads_neither_step_the_backoff_nor_count_towards_the_give_up() {
        let t0 = Instant::now();
        let mut c = config(RestartPolicy::OnFailure);
        c.give_up = Some(GiveUp {
            max_restarts: 2,
            window: Duration::from_secs(60),
        });
        let mut s = Supervisor::new(c);
        s.start();
        for i in 0..5 {
            spawned(&mut s, i, t0);
            s.handle(Event::Reload);
            let a = exited(&mut s, ExitKind::Signal(15), t0);
            assert_eq!(a.last(), Some(&Action::Spawn), "reload {i}: {a:?}");
        }
        spawned(&mut s, 9, t0);
        let a = exited(&mut s, ExitKind::Code(1), t0);
        assert_eq!(
            a.last(),
            Some(&Action::RestartAfter(Duration::from_millis(100)))
        );
        assert!(
            !exit_record(&a).expect("exit").reload,
            "a crash is no reload"
        );
    }

    #[test]
    fn reload_by_policy_and_phase() {
        let t0 = Instant::now();
        let hup = vec![Action::Signal(Signal::SIGHUP)];
        // (on-reload, phase reached by `setup`, expected actions)
        type Setup = fn(&mut Supervisor, Instant);
        let running: Setup = |s, t0| {
            spawned(s, 1, t0);
        };
        let backoff: Setup = |s, t0| {
            spawned(s, 1, t0);
            exited(s, ExitKind::Code(1), t0);
        };
        let stopping: Setup = |s, t0| {
            spawned(s, 1, t0);
            s.handle(Event::Terminate);
        };
        let probe_restarting: Setup = |s, t0| {
            spawned(s, 1, t0);
            s.handle(Event::ProbeRestart { detail: "x".into() });
        };
        let done: Setup = |s, t0| {
            spawned(s, 1, t0);
            exited(s, ExitKind::Code(0), t0);
        };
        let cases: Vec<(OnReload, &str, Setup, Vec<Action>)> = vec![
            (OnReload::Restart, "running", running, RESTART.to_vec()),
            (OnReload::Forward, "running", running, hup.clone()),
            (OnReload::Ignore, "running", running, vec![]),
            (OnReload::Restart, "backoff", backoff, vec![]),
            (OnReload::Forward, "backoff", backoff, vec![]),
            (OnReload::Ignore, "backoff", backoff, vec![]),
            (OnReload::Restart, "stopping", stopping, vec![]),
            (OnReload::Forward, "stopping", stopping, hup.clone()),
            (OnReload::Ignore, "stopping", stopping, vec![]),
            (OnReload::Restart, "probe restart", probe_restarting, vec![]),
            (OnReload::Ignore, "probe restart", probe_restarting, vec![]),
            (OnReload::Restart, "done", done, vec![]),
            (OnReload::Forward, "done", done, vec![]),
        ];
        for (on_reload, phase, setup, expected) in cases {
            let mut s = with_reload(on_reload);
            s.start();
            setup(&mut s, t0);
            assert_eq!(
                s.handle(Event::Reload),
                expected,
                "{} while {phase}",
                on_reload.as_str()
            );
        }
    }

    #[test]
    fn reload_during_backoff_or_stop_changes_nothing_that_follows() {
        let t0 = Instant::now();
        // Backoff: the restart timer still starts the child, as a crash restart.
        let mut s = with_reload(OnReload::Restart);
        s.start();
        spawned(&mut s, 1, t0);
        exited(&mut s, ExitKind::Code(1), t0);
        s.handle(Event::Reload);
        assert_eq!(s.handle(Event::RestartTimer).last(), Some(&Action::Spawn));
        // Stopping: still a planned stop.
        let mut s = with_reload(OnReload::Restart);
        s.start();
        spawned(&mut s, 1, t0);
        s.handle(Event::Terminate);
        s.handle(Event::Reload);
        assert_eq!(
            exited(&mut s, ExitKind::Signal(15), t0),
            vec![Action::Finish(Ending::Stopped)]
        );
        // A stop request during a reload wins, like during a probe restart.
        let mut s = with_reload(OnReload::Restart);
        s.start();
        spawned(&mut s, 1, t0);
        s.handle(Event::Reload);
        s.handle(Event::Terminate);
        assert_eq!(
            exited(&mut s, ExitKind::Code(143), t0),
            vec![Action::Finish(Ending::Stopped)]
        );
    }

    // ---- daemonizing launchers ----

    fn leftovers_signal(pgid: u32, signal: Signal) -> Action {
        Action::SignalLeftovers { pgid, signal }
    }

    #[test]
    fn daemonized_is_a_quick_success_exit_that_leaves_its_group_running() {
        let c = config(RestartPolicy::OnFailure);
        let quick = Duration::from_millis(30);
        let stable = Duration::from_secs(10);
        // (exit, uptime, leftovers, daemonized)
        let cases = [
            (ExitKind::Code(0), quick, &[77][..], true),
            (
                ExitKind::Code(0),
                Duration::from_millis(9_999),
                &[77, 78][..],
                true,
            ),
            (ExitKind::Code(0), stable, &[77][..], false),
            (ExitKind::Code(0), quick, &[][..], false),
            (ExitKind::Code(1), quick, &[77][..], false),
            (ExitKind::Signal(9), quick, &[77][..], false),
        ];
        for (kind, uptime, leftovers, expected) in cases {
            assert_eq!(
                daemonized(kind, uptime, leftovers, &c),
                expected,
                "{kind} after {uptime:?} leaving {leftovers:?}"
            );
        }
        let mut c143 = c.clone();
        c143.success_codes = vec![0, 143];
        assert!(daemonized(ExitKind::Code(143), quick, &[5], &c143));
        let reason = daemonized_reason(ExitKind::Code(0), quick, &[77, 78]);
        for needle in [
            "daemonized",
            "exit code 0 after 30ms",
            "2 processes",
            "pid 77, 78",
            "kafka-server-start.sh without -daemon",
            "flume-ng agent without &",
            "`exec` in a wrapper script",
        ] {
            assert!(reason.contains(needle), "{needle:?} not in {reason}");
        }
    }

    #[test]
    fn a_daemonized_child_is_fatal_under_every_policy_after_its_leftovers_are_stopped() {
        for policy in [
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
            RestartPolicy::Never,
        ] {
            let t0 = Instant::now();
            let mut s = Supervisor::new(config(policy));
            s.start();
            spawned(&mut s, 40, t0);
            let a = exited_leaving(
                &mut s,
                ExitKind::Code(0),
                t0 + Duration::from_millis(5),
                &[41],
            );
            let exit = exit_record(&a).expect("an exit record");
            assert!(
                exit.daemonized
                    .as_deref()
                    .is_some_and(|d| d.contains("pid 41")),
                "{policy:?}: {exit:?}"
            );
            assert_eq!(exit_state(&a), Some((AgentState::Fatal, 1)), "{policy:?}");
            assert_eq!(
                a[1..],
                [
                    leftovers_signal(40, Signal::SIGTERM),
                    Action::StopTimerAfter(Duration::from_secs(5)),
                    Action::AwaitLeftovers { pgid: 40 },
                ],
                "{policy:?}: no second copy is spawned"
            );
            // Nothing restarts it meanwhile: no reload, no probe, no stray timer.
            assert_eq!(s.handle(Event::Reload), vec![], "{policy:?}");
            assert_eq!(s.handle(Event::ProbeRestart { detail: "x".into() }), vec![]);
            assert_eq!(s.handle(Event::RestartTimer), vec![]);
            assert_eq!(s.handle(Event::Terminate), vec![], "already stopping");
            assert_eq!(
                s.handle(Event::LeftoversGone),
                vec![Action::Finish(Ending::Fatal)]
            );
        }
    }

    #[test]
    fn daemonized_leftovers_that_ignore_the_stop_signal_are_killed() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        exited_leaving(&mut s, ExitKind::Code(0), t0, &[41]);
        assert_eq!(
            s.handle(Event::StopTimeout),
            vec![
                leftovers_signal(40, Signal::SIGKILL),
                Action::StopTimerAfter(Duration::from_secs(5)),
            ]
        );
        // Stuck even after SIGKILL: stop waiting, still fatal.
        assert_eq!(
            s.handle(Event::StopTimeout),
            vec![Action::Finish(Ending::Fatal)]
        );
        // SIGINT hurries it the same way.
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        exited_leaving(&mut s, ExitKind::Code(0), t0, &[41]);
        assert_eq!(
            s.handle(Event::Interrupt)[0],
            leftovers_signal(40, Signal::SIGKILL)
        );
        assert_eq!(
            s.handle(Event::LeftoversGone),
            vec![Action::Finish(Ending::Fatal)]
        );
    }

    #[test]
    fn leftovers_of_other_exits_are_killed_before_anything_else() {
        let t0 = Instant::now();
        // A success after a stable run: a planned stop as before, leftovers killed.
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        assert_eq!(
            exited_leaving(
                &mut s,
                ExitKind::Code(0),
                t0 + Duration::from_secs(11),
                &[41]
            ),
            vec![
                leftovers_signal(40, Signal::SIGKILL),
                Action::Finish(Ending::Stopped)
            ]
        );
        // A crash: leftovers killed, then the usual restart.
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        let a = exited_leaving(&mut s, ExitKind::Code(1), t0, &[41]);
        assert_eq!(a[0], leftovers_signal(40, Signal::SIGKILL));
        assert_eq!(
            a.last(),
            Some(&Action::RestartAfter(Duration::from_millis(100)))
        );
        // A planned stop and a planned restart.
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        s.handle(Event::Terminate);
        assert_eq!(
            exited_leaving(&mut s, ExitKind::Code(0), t0, &[41]),
            vec![
                leftovers_signal(40, Signal::SIGKILL),
                Action::Finish(Ending::Stopped)
            ]
        );
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        s.handle(Event::Reload);
        let a = exited_leaving(&mut s, ExitKind::Code(0), t0, &[41]);
        assert_eq!(a[0], leftovers_signal(40, Signal::SIGKILL));
        assert_eq!(
            a.last(),
            Some(&Action::Spawn),
            "a reload, not a daemon: {a:?}"
        );
        // No leftovers: no signal at all.
        let mut s = Supervisor::new(config(RestartPolicy::OnFailure));
        s.start();
        spawned(&mut s, 40, t0);
        assert_eq!(
            exited(&mut s, ExitKind::Code(0), t0),
            vec![Action::Finish(Ending::Stopped)]
        );
    }
}
