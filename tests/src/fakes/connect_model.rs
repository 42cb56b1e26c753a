//! The simulated Kafka Connect worker behind `fake-connect`: connectors and tasks with their
//! states, and the restart semantics of `POST /connectors/NAME/restart` (KIP-745). The JSON it
//! answers is in [`connect_wire`](super::connect_wire) (re-exported here).
//!
//! Time is passed in (`now`), so the pure part is tested without sleeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use super::connect_wire::{
    ConnectState, ConnectorStatus, ConnectorType, LoggedRequest, State, TaskStatus, UnitStatus,
};

/// What a restart call answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    NotFound,
    Conflict,
    /// 204: both parameters false, the connector alone restarted.
    NoContent,
    /// 202 with the status right after the restart began.
    Accepted(ConnectorStatus),
}

/// The stack trace a failure gets when the test gives none.
pub const DEFAULT_TRACE: &str = "\
org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to unrecoverable exception.
\tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:618)
\tat org.apache.kafka.connect.runtime.WorkerSinkTask.poll(WorkerSinkTask.java:336)
\tat org.apache.kafka.connect.runtime.WorkerSinkTask.iteration(WorkerSinkTask.java:237)
\tat org.apache.kafka.connect.runtime.WorkerTask.run(WorkerTask.java:204)
\tat java.base/java.lang.Thread.run(Thread.java:833)
Caused by: org.apache.kafka.connect.errors.DataException: fake failure injected by the test
\tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:590)
\t... 4 more
";

#[derive(Debug, Clone)]
struct Unit {
    state: State,
    /// The last failure's trace, kept across a restart (shown only while FAILED).
    trace: Option<String>,
    restarting_until: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Connector {
    kind: ConnectorType,
    connector: Unit,
    tasks: Vec<Unit>,
}

/// The worker: its connectors and the test's knobs for restarts.
#[derive(Debug, Clone)]
pub struct Worker {
    worker_id: String,
    connectors: BTreeMap<String, Connector>,
    restart_conflicts: u32,
    restart_fails: bool,
    restart_delay: Duration,
}

impl Unit {
    fn running() -> Self {
        Unit {
            state: State::Running,
            trace: None,
            restarting_until: None,
        }
    }

    fn settle(&mut self, now: Instant, fails: bool) {
        if self.restarting_until.is_some_and(|t| t <= now) {
            self.restarting_until = None;
            if fails {
                self.state = State::Failed;
                self.trace.get_or_insert_with(|| DEFAULT_TRACE.to_owned());
            } else {
                self.state = State::Running;
                self.trace = None;
            }
        }
    }

    fn restart(&mut self, now: Instant, delay: Duration) {
        self.state = State::Restarting;
        self.restarting_until = Some(now + delay);
    }

    fn set(&mut self, state: State, trace: Option<String>) {
        self.state = state;
        self.restarting_until = None;
        if state == State::Failed {
            self.trace = Some(trace.unwrap_or_else(|| DEFAULT_TRACE.to_owned()));
        }
    }

    fn shown_trace(&self) -> Option<String> {
        (self.state == State::Failed)
            .then(|| self.trace.clone())
            .flatten()
    }
}

impl Worker {
    /// A worker whose connectors (`(name, tasks, type)`) all run; restarted units become RUNNING
    /// (or FAILED again, see [`set_restart_fails`](Self::set_restart_fails)) `restart_delay` after
    /// the restart call.
    pub fn new(
        worker_id: String,
        connectors: &[(String, u32, ConnectorType)],
        restart_delay: Duration,
    ) -> Self {
        let connectors = connectors
            .iter()
            .map(|(name, tasks, kind)| {
                let c = Connector {
                    kind: *kind,
                    connector: Unit::running(),
                    tasks: (0..*tasks).map(|_| Unit::running()).collect(),
                };
                (name.clone(), c)
            })
            .collect();
        Worker {
            worker_id,
            connectors,
            restart_conflicts: 0,
            restart_fails: false,
            restart_delay,
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }

    /// Ends the restarts whose time has come.
    fn settle(&mut self, now: Instant) {
        let fails = self.restart_fails;
        for c in self.connectors.values_mut() {
            c.connector.settle(now, fails);
            for t in &mut c.tasks {
                t.settle(now, fails);
            }
        }
    }

    pub fn status(&mut self, name: &str, now: Instant) -> Option<ConnectorStatus> {
        self.settle(now);
        self.status_unsettled(name)
    }

    fn status_unsettled(&self, name: &str) -> Option<ConnectorStatus> {
        let c = self.connectors.get(name)?;
        let worker_id = &self.worker_id;
        Some(ConnectorStatus {
            name: name.to_owned(),
            connector: UnitStatus {
                state: c.connector.state,
                worker_id: worker_id.clone(),
                trace: c.connector.shown_trace(),
            },
            tasks: (0u32..)
                .zip(&c.tasks)
                .map(|(id, t)| TaskStatus {
                    id,
                    state: t.state,
                    worker_id: worker_id.clone(),
                    trace: t.shown_trace(),
                })
                .collect(),
            kind: c.kind,
        })
    }

    /// `POST /connectors/NAME/restart?includeTasks=..&onlyFailed=..`.
    pub fn restart(
        &mut self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
        now: Instant,
    ) -> RestartOutcome {
        self.settle(now);
        let delay = self.restart_delay;
        let Some(c) = self.connectors.get_mut(name) else {
            return RestartOutcome::NotFound;
        };
        if self.restart_conflicts > 0 {
            self.restart_conflicts -= 1;
            return RestartOutcome::Conflict;
        }
        if !include_tasks && !only_failed {
            c.connector.restart(now, delay);
            return RestartOutcome::NoContent;
        }
        if !only_failed || c.connector.state == State::Failed {
            c.connector.restart(now, delay);
        }
        if include_tasks {
            for t in &mut c.tasks {
                if !only_failed || t.state == State::Failed {
                    t.restart(now, delay);
                }
            }
        }
        match self.status_unsettled(name) {
            Some(status) => RestartOutcome::Accepted(status),
            None => RestartOutcome::NotFound,
        }
    }

    /// Sets a task's state (a FAILED one gets `trace`, or [`DEFAULT_TRACE`]).
    pub fn set_task(
        &mut self,
        name: &str,
        task: u32,
        state: State,
        trace: Option<String>,
    ) -> Result<(), String> {
        let c = self.connector_mut(name)?;
        let t = usize::try_from(task)
            .ok()
            .and_then(|i| c.tasks.get_mut(i))
            .ok_or_else(|| format!("connector {name} has no task {task}"))?;
        t.set(state, trace);
        Ok(())
    }

    /// Sets the connector's own state (a FAILED one gets `trace`, or [`DEFAULT_TRACE`]).
    pub fn set_connector(
        &mut self,
        name: &str,
        state: State,
        trace: Option<String>,
    ) -> Result<(), String> {
        self.connector_mut(name)?.connector.set(state, trace);
        Ok(())
    }

    fn connector_mut(&mut self, name: &str) -> Result<&mut Connector, String> {
        self.connectors
            .get_mut(name)
            .ok_or_else(|| format!("no connector {name}"))
    }

    /// The next `n` restart calls (of known connectors) answer 409.
    pub fn queue_conflicts(&mut self, n: u32) {
        self.restart_conflicts = self.restart_conflicts.saturating_add(n);
    }

    /// Whether restarted units go back to FAILED (with their last trace) instead of RUNNING.
    pub fn set_restart_fails(&mut self, on: bool) {
        self.restart_fails = on;
    }

    pub fn snapshot(&mut self, hung: bool, now: Instant) -> ConnectState {
        self.settle(now);
        ConnectState {
            worker_id: self.worker_id.clone(),
            hung,
            restart_conflicts: self.restart_conflicts,
            restart_fails: self.restart_fails,
            connectors: self
                .connectors
                .keys()
                .filter_map(|n| Some((n.clone(), self.status_unsettled(n)?)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(300);

    fn worker() -> Worker {
        Worker::new(
            "127.0.0.1:8083".into(),
            &[("s3".into(), 3, ConnectorType::Sink)],
            DELAY,
        )
    }

    fn states(s: &ConnectorStatus) -> Vec<State> {
        s.tasks.iter().map(|t| t.state).collect()
    }

    #[test]
    fn only_failed_tasks_restart_then_run() {
        let (mut w, t0) = (worker(), Instant::now());
        w.set_task("s3", 1, State::Failed, Some("boom".into()))
            .expect("task 1 exists");
        let failed = w.status("s3", t0).expect("known");
        assert_eq!(failed.tasks[1].trace.as_deref(), Some("boom"));
        let RestartOutcome::Accepted(s) = w.restart("s3", true, true, t0) else {
            panic!("expected 202");
        };
        use State::*;
        assert_eq!(s.connector.state, Running);
        assert_eq!(states(&s), [Running, Restarting, Running]);
        assert_eq!(s.tasks[1].trace, None);
        let s = w.status("s3", t0 + DELAY).expect("known");
        assert_eq!(states(&s), [Running, Running, Running]);
    }

    #[test]
    fn restarts_that_keep_failing_keep_the_trace() {
        let (mut w, t0) = (worker(), Instant::now());
        w.set_task("s3", 0, State::Failed, Some("boom".into()))
            .expect("task 0 exists");
        w.set_restart_fails(true);
        assert!(matches!(
            w.restart("s3", true, false, t0),
            RestartOutcome::Accepted(_)
        ));
        let s = w.status("s3", t0 + DELAY).expect("known");
        assert_eq!(s.connector.state, State::Failed);
        assert_eq!(s.tasks[0].trace.as_deref(), Some("boom"));
        assert_eq!(s.tasks[2].trace.as_deref(), Some(DEFAULT_TRACE));
    }

    #[test]
    fn conflicts_no_content_and_unknown() {
        let (mut w, t0) = (worker(), Instant::now());
        w.queue_conflicts(1);
        assert_eq!(w.restart("nope", true, true, t0), RestartOutcome::NotFound);
        assert_eq!(w.restart("s3", true, true, t0), RestartOutcome::Conflict);
        assert_eq!(w.restart("s3", false, false, t0), RestartOutcome::NoContent);
        let s = w.status("s3", t0).expect("known");
        assert_eq!(s.connector.state, State::Restarting);
        assert_eq!(states(&s), [State::Running; 3]);
        assert!(w.set_task("s3", 3, State::Paused, None).is_err());
        assert!("bogus".parse::<State>().is_err());
        assert_eq!("paused".parse::<State>(), Ok(State::Paused));
    }
}
