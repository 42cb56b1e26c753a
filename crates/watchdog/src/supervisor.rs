//! The supervisor's state machine: pure, no I/O. The driver ([`crate::run`]) turns child exits,
//! timers, signals and probe verdicts into [`Event`]s and performs the [`Action`]s that come
//! back.
//!
//! A probe-triggered restart ([`Event::ProbeRestart`]) stops the child like a planned stop
//! (stop signal to the group, `stop-timeout`, SIGKILL) and starts it again as soon as it is
//! gone, whatever it exited with. It counts in `restarts` and its `last_exit` carries
//! `probe_restart`, but it is not a crash: it neither advances the crash backoff nor counts
//! towards the give-up window (a pipeline that stays degraded is restarted each time the probe
//! fails `restart-after-failures` times again, after the new child's start grace).

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;

use crate::backoff::{Backoff, RestartWindow};
use crate::config::{RestartConfig, RestartPolicy};
use crate::exit::ExitKind;
use crate::registry::{AgentState, LastExit, Timestamp, Update};

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
    /// The child exited. `sample` is a random number in `[0, 1)` for the backoff jitter.
    Exited {
        kind: ExitKind,
        stderr_tail: Vec<String>,
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
    /// Fire [`Event::StopTimeout`] after this delay.
    StopTimerAfter(Duration),
    /// Send an update to the registry.
    Publish(UpdateKind),
    /// Supervision is over.
    Finish(Outcome),
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
pub enum Outcome {
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
    Stopping,
    /// The stop signal was sent because the health probe kept failing; the child is started
    /// again as soon as it is gone.
    ProbeRestarting {
        started: Instant,
        detail: String,
    },
    Done,
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
                Phase::Running { started, .. },
                Event::Exited {
                    kind,
                    stderr_tail,
                    at,
                    wall,
                    sample,
                },
            ) => {
                let uptime = at.saturating_duration_since(*started);
                self.after_exit(kind, stderr_tail, uptime, at, wall, sample)
            }
            (Phase::Stopping, Event::Exited { .. }) => {
                self.phase = Phase::Done;
                vec![Finish(Outcome::Stopped)]
            }
            (Phase::Running { started, .. }, Event::ProbeRestart { detail }) => {
                self.phase = Phase::ProbeRestarting {
                    started: *started,
                    detail,
                };
                vec![
                    Publish(UpdateKind::State(AgentState::Restarting)),
                    Signal(self.config.stop_signal),
                    StopTimerAfter(self.config.stop_timeout),
                ]
            }
            (
                Phase::ProbeRestarting { started, detail },
                Event::Exited {
                    kind,
                    stderr_tail,
                    at,
                    wall,
                    ..
                },
            ) => {
                // We asked it to stop: however it ended, start it again at once. This is not a
                // crash, so the crash backoff and the give-up window are left alone.
                let exit = LastExit {
                    at: Timestamp(wall),
                    generation: self.generation,
                    code: kind.code(),
                    signal: kind.signal_name(),
                    uptime_ms: at.saturating_duration_since(*started).as_millis() as u64,
                    stderr_tail,
                    probe_restart: Some(detail.clone()),
                };
                self.phase = Phase::Starting;
                vec![
                    Publish(UpdateKind::Exited {
                        exit,
                        state: AgentState::Restarting,
                        restarts: self.restarts,
                    }),
                    Spawn,
                ]
            }
            (Phase::ProbeRestarting { .. }, Event::StopTimeout) => {
                vec![Signal(nix::sys::signal::Signal::SIGKILL)]
            }
            (Phase::ProbeRestarting { .. }, Event::Terminate | Event::Interrupt) => {
                // The stop signal is already on its way and the stop timer running: this is
                // now a planned stop.
                self.phase = Phase::Stopping;
                vec![Publish(UpdateKind::State(AgentState::Stopping))]
            }
            (Phase::Waiting, Event::RestartTimer) => {
                self.phase = Phase::Starting;
                vec![Publish(UpdateKind::State(AgentState::Restarting)), Spawn]
            }
            (Phase::Running { .. }, Event::Terminate | Event::Interrupt) => {
                self.phase = Phase::Stopping;
                vec![
                    Publish(UpdateKind::State(AgentState::Stopping)),
                    Signal(self.config.stop_signal),
                    StopTimerAfter(self.config.stop_timeout),
                ]
            }
            (Phase::Waiting | Phase::Starting, Event::Terminate | Event::Interrupt) => {
                self.phase = Phase::Done;
                vec![Finish(Outcome::Stopped)]
            }
            (Phase::Stopping, Event::Interrupt | Event::StopTimeout) => {
                vec![Signal(nix::sys::signal::Signal::SIGKILL)]
            }
            // A second SIGTERM, a stale timer, or anything after the end: nothing to do.
            _ => Vec::new(),
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
            return vec![Finish(Outcome::Stopped)];
        }
        let exit = LastExit {
            at: Timestamp(wall),
            generation: self.generation,
            code: kind.code(),
            signal: kind.signal_name(),
            uptime_ms: uptime.as_millis() as u64,
            stderr_tail,
            probe_restart: None,
        };
        let delay = self.backoff.next_delay(uptime, sample);
        if policy == RestartPolicy::Never || self.window.exceeded_by_restart(at) {
            self.phase = Phase::Done;
            return vec![
                Publish(UpdateKind::Exited {
                    exit,
                    state: AgentState::Fatal,
                    restarts: self.restarts,
                }),
                Finish(Outcome::Fatal),
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
        s.handle(Event::Exited {
            kind,
            stderr_tail: vec!["boom".into()],
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
                vec![Action::Finish(Outcome::Stopped)]
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
        assert_eq!(a.last(), Some(&Action::Finish(Outcome::Fatal)));
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
        assert_eq!(a.last(), Some(&Action::Finish(Outcome::Fatal)));
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
            vec![Action::Finish(Outcome::Stopped)]
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
            vec![Action::Finish(Outcome::Stopped)]
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
            vec![Action::Finish(Outcome::Stopped)]
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
}
