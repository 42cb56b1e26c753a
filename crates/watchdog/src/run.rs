//! The driver: one `select!` loop that feeds child exits, timers, signals and probe results to
//! the [`Supervisor`] and performs its actions (spawn, signal, publish), then runs the shutdown
//! sequence the outcome asks for.
//!
//! Probes run in their own task ([`ProbeDriver`]); this loop only tells it when a child starts
//! or stops and receives changes of health, so a hung endpoint never delays a restart.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::child::{self, Ended, SpawnSpec};
use crate::config::{Config, OnReload};
use crate::guardian::Guardian;
use crate::metrics::WatchdogMetrics;
use crate::metrics_http::{MetricsError, MetricsServer};
use crate::probe::driver::{ProbeDriver, ProbeEvent};
use crate::probe::health::HealthTracker;
use crate::publisher::{Identity, Publisher, Update};
use crate::registry::{Health, RegistryError};
use crate::signals::SignalRequest;
use crate::supervisor::{Action, Ending, Event, Supervisor, UpdateKind};

type ChildWait = Pin<Box<dyn Future<Output = Ended>>>;

/// How often the group of a daemonized child is checked while it is being stopped.
const LEFTOVERS_POLL: Duration = Duration::from_millis(50);

/// How long the final registry write may take, ZooKeeper reachable or not. A planned stop's
/// deregistration: the session timeout, at least 5 s (a service manager waits for it, and the
/// marker left behind by a timeout is reported by the watcher as LOST, which the operator who
/// stopped it knows about). A give-up's `fatal` record: besides, until ZooKeeper comes back,
/// up to `restart.fatal-record-timeout`: without it the watcher would report the agent LOST
/// ("may still be running") instead of FATAL.
fn final_write_deadline(config: &Config, outcome: Ending) -> Duration {
    let base = config.session_timeout.max(Duration::from_secs(5));
    match outcome {
        Ending::Stopped => base,
        Ending::Fatal => base.max(config.restart.fatal_record_timeout),
    }
}

/// What `run` ended with, mapped to the exit code by `main`.
#[derive(Debug)]
pub enum RunResult {
    /// Planned stop, registry cleaned: exit 0.
    Stopped,
    /// Planned stop, but ZooKeeper could not confirm the marker's removal (the error keeps
    /// ZooKeeper's answer as its cause).
    StoppedUnregistered(RegistryError),
    /// Gave up restarting: exit 3.
    Fatal(String),
    /// The metrics address could not be bound; nothing was started: exit 2, like a bad config.
    MetricsUnavailable(MetricsError),
    /// The registry refuses this watchdog: another live zkwatchdog owns this id (the reason
    /// names its host and pid), or ZooKeeper is too old (the reason names its version and the
    /// minimum). The child was stopped and nothing was written to the registry: exit 2, like a
    /// bad config.
    Refused(String),
}

/// Supervises the configured command until a planned stop or a give-up.
///
/// Must run on a current-thread runtime driven by the main thread: the child is forked from the
/// calling thread, and `PR_SET_PDEATHSIG` is tied to that thread's life. With a `guardian`, the
/// child's whole process group dies with the watchdog, not only the child.
pub async fn run(
    config: Config,
    mut control: mpsc::UnboundedReceiver<SignalRequest>,
    mut guardian: Option<Guardian>,
) -> RunResult {
    let spec = SpawnSpec {
        command: config.command.clone(),
        stderr_tail_lines: config.stderr_tail_lines,
        outlives_watchdog: config.child_outlives_watchdog,
    };
    let metrics = WatchdogMetrics::new(config.id.as_str());
    let _metrics_server = match config.metrics_addr {
        None => None,
        Some(addr) => match MetricsServer::start(addr, metrics.render()) {
            Ok(server) => Some(server),
            Err(e) => return RunResult::MetricsUnavailable(e),
        },
    };
    let mut publisher = Publisher::start(Identity {
        zk_hosts: config.zk_hosts.clone(),
        session_timeout: config.session_timeout,
        zk_access: config.zk_access.clone(),
        layout: config.layout.clone(),
        id: config.id.clone(),
        name: config.name.clone(),
        kind: config.kind,
        host: config.host.clone(),
        command: config.command.clone(),
        labels: config.labels.clone(),
        initial_health: config
            .probe
            .as_ref()
            .map_or_else(Health::unprobed, |p| HealthTracker::initial(p.health.grace)),
        metrics: metrics.clone(),
        redact: config.redact.clone(),
    });
    let mut refusal = publisher.refusal();
    // Set when another live zkwatchdog owns the id: the child is stopped, the registry left alone.
    let mut refused: Option<String> = None;
    let agent = config.id.to_string();
    let (probes, mut probe_events) = match config
        .probe
        .clone()
        .map(|p| ProbeDriver::start(p, agent.clone(), metrics.clone()))
    {
        None => (None, None),
        Some(Ok((driver, events))) => (Some(driver), Some(events)),
        Some(Err(e)) => {
            tracing::error!(agent = %agent, error = %e, "health probe disabled");
            (None, None)
        }
    };
    let mut supervisor = Supervisor::new(config.restart.clone());
    let mut pending: std::collections::VecDeque<Action> = supervisor.start().into();
    let mut child_pid: Option<u32> = None;
    let mut child_wait: Option<ChildWait> = None;
    let mut restart_timer: Option<Pin<Box<Sleep>>> = None;
    let mut stop_timer: Option<Pin<Box<Sleep>>> = None;
    // The group of a child that daemonized, watched until none of its processes is alive.
    let mut leftovers: Option<(u32, tokio::time::Interval)> = None;
    let mut last_exit = String::new();
    // systemd: READY=1 once the first child runs, WATCHDOG=1 from this loop (WatchdogSec).
    let mut systemd = crate::systemd::Liveness::from_env();
    let mut ready_told = false;

    let outcome = 'supervise: loop {
        systemd.feed(std::time::Instant::now());
        while let Some(action) = pending.pop_front() {
            match action {
                Action::Spawn => {
                    let event = match child::spawn(&spec) {
                        Ok(running) => {
                            let pid = running.pid;
                            child_pid = Some(pid);
                            if let Some(g) = guardian.as_mut() {
                                g.watch(pid);
                            }
                            child_wait = Some(Box::pin(running.wait()));
                            let generation = supervisor.generation() + 1;
                            tracing::info!(agent = %agent, pid, generation, "child started");
                            if !std::mem::replace(&mut ready_told, true) {
                                crate::systemd::ready(&format!("supervising {agent}: child {pid}"));
                            }
                            let at = Instant::now();
                            metrics.child_started(at, generation > 1);
                            if let Some(p) = probes.as_ref() {
                                p.child_started(generation, at);
                            }
                            Event::Spawned {
                                pid,
                                at,
                                wall: SystemTime::now(),
                            }
                        }
                        Err(e) => {
                            let command = config.redact.command(&spec.command);
                            tracing::error!(agent = %agent, command = ?command, error = %e, "cannot start the child");
                            last_exit = format!("cannot start {command:?}: {e}");
                            metrics.child_exited(None);
                            Event::SpawnFailed {
                                error: e.to_string(),
                                at: Instant::now(),
                                wall: SystemTime::now(),
                            }
                        }
                    };
                    pending.extend(supervisor.handle(event));
                }
                Action::RestartAfter(delay) => {
                    tracing::info!(agent = %agent, delay = ?delay, "restart delayed (backoff)");
                    restart_timer = Some(Box::pin(tokio::time::sleep(delay)));
                }
                Action::Signal(signal) => {
                    if let Some(pid) = child_pid {
                        tracing::info!(agent = %agent, pid, %signal, "signalling the child's process group");
                        child::signal_group(pid, signal);
                    }
                }
                Action::SignalLeftovers { pgid, signal } => {
                    tracing::info!(agent = %agent, pgid, %signal, "signalling what is left of the child's process group");
                    child::signal_group(pgid, signal);
                }
                Action::AwaitLeftovers { pgid } => {
                    // Should the watchdog die now, the guardian kills them.
                    if let Some(g) = guardian.as_mut() {
                        g.watch(pgid);
                    }
                    leftovers = Some((pgid, tokio::time::interval(LEFTOVERS_POLL)));
                }
                Action::StopTimerAfter(delay) => {
                    stop_timer = Some(Box::pin(tokio::time::sleep(delay)));
                }
                Action::Publish(update) => {
                    if let UpdateKind::Exited { exit, .. } = &update {
                        if let Some(why) = &exit.daemonized {
                            tracing::error!(agent = %agent, generation = exit.generation, "{why}");
                            last_exit = why.clone();
                        }
                    }
                    metrics.set_state(match &update {
                        UpdateKind::Started { .. } => crate::registry::AgentState::Running,
                        UpdateKind::Exited { state, .. } | UpdateKind::State(state) => *state,
                    });
                    publisher.publish(update.into_update());
                }
                Action::Finish(outcome) => break 'supervise outcome,
            }
        }

        let ping_due = systemd.due(std::time::Instant::now());
        let event = tokio::select! {
            _ = tokio::time::sleep_until(ping_due.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if ping_due.is_some() => continue,
            ended = async { child_wait.as_mut().expect("guarded by the select! condition").await }, if child_wait.is_some() => {
                child_wait = None;
                child_pid = None;
                // A stop timer (probe restart) is over with the child.
                stop_timer = None;
                if let Some(g) = guardian.as_mut() {
                    g.clear();
                }
                if let Some(p) = probes.as_ref() {
                    p.child_stopped();
                }
                tracing::warn!(agent = %agent, exit = %ended.kind, generation = supervisor.generation(), "child exited");
                last_exit = format!("child {}", ended.kind);
                metrics.child_exited(Some(&ended.kind));
                if !ended.leftovers.is_empty() {
                    tracing::debug!(agent = %agent, pids = ?ended.leftovers, "processes of the child's group outlived it");
                }
                Event::Exited {
                    kind: ended.kind,
                    stderr_tail: ended.stderr_tail,
                    leftovers: ended.leftovers,
                    at: Instant::now(),
                    wall: SystemTime::now(),
                    sample: rand::random::<f64>(),
                }
            }
            _ = async { restart_timer.as_mut().expect("guarded by the select! condition").await }, if restart_timer.is_some() => {
                restart_timer = None;
                Event::RestartTimer
            }
            _ = async { stop_timer.as_mut().expect("guarded by the select! condition").await }, if stop_timer.is_some() => {
                stop_timer = None;
                tracing::warn!(agent = %agent, "child did not stop in time; killing it");
                Event::StopTimeout
            }
            _ = async { leftovers.as_mut().expect("guarded by the select! condition").1.tick().await }, if leftovers.is_some() => {
                let Some((pgid, _)) = leftovers.as_ref() else { continue };
                if !crate::group::live_members(*pgid).is_empty() {
                    continue;
                }
                tracing::info!(agent = %agent, pgid, "the daemonized processes are gone");
                leftovers = None;
                if let Some(g) = guardian.as_mut() {
                    g.clear();
                }
                Event::LeftoversGone
            }
            event = async { probe_events.as_mut().expect("guarded by the select! condition").recv().await }, if probe_events.is_some() => {
                let current = child_wait.is_some().then(|| supervisor.generation());
                match event {
                    Some(ProbeEvent::Health { generation, health }) if current == Some(generation) => {
                        publisher.publish(Update::Health { generation, health });
                        continue;
                    }
                    Some(ProbeEvent::Restart { generation, detail }) if current == Some(generation) => {
                        tracing::warn!(agent = %agent, generation, detail = %detail, "restarting the child: its health probe kept failing");
                        last_exit = format!("restarted by the health probe: {detail}");
                        Event::ProbeRestart { detail }
                    }
                    // News about a child that is gone.
                    Some(_) => continue,
                    None => {
                        probe_events = None;
                        continue;
                    }
                }
            }
            why = async { refusal.as_mut().expect("guarded by the select! condition").await }, if refusal.is_some() => {
                refusal = None;
                match why {
                    Ok(why) => {
                        tracing::error!(agent = %agent, "stopping the child: {why}");
                        refused = Some(why);
                        Event::Terminate
                    }
                    // The publisher ended for another reason; nothing to refuse.
                    Err(_) => continue,
                }
            }
            // A closed channel (nobody can ask us to stop any more) disables this arm; the loop
            // keeps supervising.
            Some(control) = control.recv() => match control {
                SignalRequest::Terminate => Event::Terminate,
                SignalRequest::Interrupt => Event::Interrupt,
                SignalRequest::Reload => {
                    let on_reload = config.restart.on_reload;
                    let generation = supervisor.generation();
                    let actions = supervisor.handle(Event::Reload);
                    match (on_reload, actions.is_empty()) {
                        (OnReload::Ignore, _) => tracing::info!(agent = %agent, "SIGHUP ignored (restart.on-reload = \"ignore\")"),
                        (_, true) => tracing::info!(agent = %agent, on_reload = on_reload.as_str(), "SIGHUP: no running child to reload, or a restart is already under way; nothing to do"),
                        (OnReload::Restart, false) => {
                            tracing::info!(agent = %agent, generation, "reload (SIGHUP): restarting the child (a planned restart, not a crash)");
                            last_exit = "restarted for a reload (SIGHUP)".to_string();
                        }
                        (OnReload::Forward, false) => tracing::info!(agent = %agent, generation, "reload (SIGHUP): forwarding it to the child's process group"),
                    }
                    pending.extend(actions);
                    continue;
                }
                SignalRequest::Forward(signal) => {
                    if let Some(pid) = child_pid {
                        tracing::info!(agent = %agent, pid, %signal, "forwarding signal");
                        child::signal_group(pid, signal);
                    }
                    continue;
                }
            },
        };
        pending.extend(supervisor.handle(event));
    };

    // The child is gone (or never ran); make sure no straggler of its group survives.
    if let (Some(pid), Some(wait)) = (child_pid, child_wait.take()) {
        child::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        wait.await;
    }
    if let Some(why) = refused {
        // The registry belongs to the other watchdog, or cannot be written: no deregistration,
        // no fatal record.
        drop(publisher);
        return RunResult::Refused(why);
    }
    let deadline = final_write_deadline(&config, outcome);
    match outcome {
        Ending::Stopped => {
            tracing::info!(agent = %agent, "planned stop: removing the agent from the registry");
            crate::systemd::stopping("planned stop: removing the agent from the registry");
            match publisher.deregister(deadline).await {
                Ok(()) => RunResult::Stopped,
                Err(e) => RunResult::StoppedUnregistered(e),
            }
        }
        Ending::Fatal => {
            // The watcher must report a give-up as such, not as a lost agent: should ZooKeeper
            // be unreachable now, keep trying to record it for a bounded time.
            tracing::error!(agent = %agent, wait_at_most = ?deadline, "giving up: the marker stays with state=fatal");
            // A stop request (systemctl stop) ends the wait: it is bounded, but not by the
            // service manager's stop timeout.
            let close = publisher.close(deadline);
            tokio::pin!(close);
            let closed = loop {
                tokio::select! {
                    r = &mut close => break Some(r),
                    c = control.recv() => match c {
                        Some(SignalRequest::Terminate | SignalRequest::Interrupt) => break None,
                        Some(_) => continue,
                        None => break Some((&mut close).await),
                    },
                }
            };
            match closed {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::error!(agent = %agent, error = %e, "could not record the fatal state")
                }
                None => {
                    tracing::error!(agent = %agent, "asked to stop while waiting for zookeeper: the fatal state may not be recorded")
                }
            }
            RunResult::Fatal(last_exit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_write_waits_longer_for_a_fatal_record() {
        let config = |extra: &str| {
            crate::config::parse_raw(&format!("command = [\"x\"]\n{extra}"), "t.toml")
                .and_then(|r| r.validate("t.toml", true))
                .expect("valid")
        };
        let s = Duration::from_secs;
        let cases = [
            ("defaults: stop", "", Ending::Stopped, s(10)),
            ("defaults: give-up", "", Ending::Fatal, s(300)),
            (
                "short session: stop",
                "session-timeout = \"2s\"\n",
                Ending::Stopped,
                s(5),
            ),
            (
                "a short fatal wait never shortens the base",
                "[restart]\nfatal-record-timeout = \"1s\"\n",
                Ending::Fatal,
                s(10),
            ),
            (
                "configured",
                "[restart]\nfatal-record-timeout = \"1m\"\n",
                Ending::Fatal,
                s(60),
            ),
        ];
        for (what, extra, outcome, want) in cases {
            assert_eq!(
                final_write_deadline(&config(extra), outcome),
                want,
                "{what}"
            );
        }
    }
}
