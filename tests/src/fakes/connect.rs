//! [`FakeConnect`]: a test's handle on a `fake-connect` worker at a known address.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::Method;

use super::client::Control;
use super::connect_model::{ConnectState, ConnectorStatus, LoggedRequest, State};
use super::process::{free_port, FakeProcess};

/// How long [`FakeConnect::start`] waits for a new fake to answer.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// A handle on a `fake-connect` listening (or about to) at one address; its worker_id is that
/// address. Cheap to clone; it does not own the process (see [`FakeProcess`]).
#[derive(Debug, Clone)]
pub struct FakeConnect {
    control: Control,
}

impl FakeConnect {
    pub fn new(addr: SocketAddr) -> Self {
        FakeConnect {
            control: Control::new(addr),
        }
    }

    /// A handle on 127.0.0.1 at a [`free_port`].
    pub fn on_free_port() -> Self {
        Self::new(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())))
    }

    /// Picks a free port, starts `fake-connect` there with `extra` arguments, and waits until it
    /// answers (bounded by [`START_DEADLINE`]).
    pub async fn start(extra: &[&str]) -> (FakeConnect, FakeProcess) {
        let fake = Self::on_free_port();
        let mut process = fake.spawn(extra);
        fake.wait_ready_process(&mut process, START_DEADLINE).await;
        (fake, process)
    }

    pub fn addr(&self) -> SocketAddr {
        self.control.addr()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The worker_id the fake reports: its listen address.
    pub fn worker_id(&self) -> String {
        self.addr().to_string()
    }

    /// `http://ADDR` + `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        self.control.url(path_and_query)
    }

    /// The command line that runs this fake: `[fake-connect, --listen, ADDR, extra...]`, e.g. for
    /// a zkwatchdog config's child command.
    pub fn command(&self, extra: &[&str]) -> Vec<String> {
        let bin = crate::bin_path("fake-connect").display().to_string();
        let mut cmd = vec![bin, "--listen".to_owned(), self.addr().to_string()];
        cmd.extend(extra.iter().map(|s| (*s).to_owned()));
        cmd
    }

    /// Starts [`command`](Self::command) as a process owned by the test (without waiting).
    pub fn spawn(&self, extra: &[&str]) -> FakeProcess {
        FakeProcess::spawn(&self.command(extra))
    }

    /// Waits up to `deadline` until the fake answers.
    pub async fn wait_ready(&self, deadline: Duration) {
        self.control.wait_ready(deadline).await;
    }

    /// Waits up to `deadline` until the fake answers; panics at once if `process` exits first.
    pub async fn wait_ready_process(&self, process: &mut FakeProcess, deadline: Duration) {
        self.control.wait_ready_process(process, deadline).await;
    }

    /// Waits up to `deadline` until nothing listens at the fake's address.
    pub async fn wait_gone(&self, deadline: Duration) {
        self.control.wait_gone(deadline).await;
    }

    /// A raw request as a probe would make it: `(status, body)` or the transport error.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        self.control.request(method, path_and_query, timeout).await
    }

    /// `GET /connectors/NAME/status`; panics unless 200.
    pub async fn status(&self, connector: &str) -> ConnectorStatus {
        self.control
            .get_json(&format!("/connectors/{connector}/status"))
            .await
    }

    /// `GET /control/state`.
    pub async fn state(&self) -> ConnectState {
        self.control.get_json("/control/state").await
    }

    /// `GET /control/requests`: every non-control request so far, in order.
    pub async fn requests(&self) -> Vec<LoggedRequest> {
        self.control.get_json("/control/requests").await
    }

    /// Task `task` of `connector` FAILED with `trace` (a default Java stack trace if `None`).
    pub async fn fail_task(&self, connector: &str, task: u32, trace: Option<&str>) {
        let path = format!("/control/connector/{connector}/task/{task}/fail");
        self.control.post(&with_trace(path, trace)).await;
    }

    /// The connector itself FAILED with `trace` (a default Java stack trace if `None`).
    pub async fn fail_connector(&self, connector: &str, trace: Option<&str>) {
        let path = format!("/control/connector/{connector}/fail");
        self.control.post(&with_trace(path, trace)).await;
    }

    /// Sets a task's state (PAUSED, UNASSIGNED, ...).
    pub async fn set_task_state(&self, connector: &str, task: u32, state: State) {
        let path = format!("/control/connector/{connector}/task/{task}/state?state={state:?}");
        self.control.post(&path).await;
    }

    /// Sets the connector's own state.
    pub async fn set_connector_state(&self, connector: &str, state: State) {
        let path = format!("/control/connector/{connector}/state?state={state:?}");
        self.control.post(&path).await;
    }

    /// The next `n` restart calls answer 409.
    pub async fn queue_conflicts(&self, n: u32) {
        self.control
            .post(&format!("/control/restart-conflicts?n={n}"))
            .await;
    }

    /// Whether restarted connectors and tasks go back to FAILED instead of RUNNING.
    pub async fn restart_fails(&self, on: bool) {
        self.control
            .post(&format!("/control/restart-fails?on={on}"))
            .await;
    }

    /// Non-control requests get no answer until [`unhang`](Self::unhang).
    pub async fn hang(&self) {
        self.control.hang().await;
    }

    pub async fn unhang(&self) {
        self.control.unhang().await;
    }

    /// The fake answers, then exits with `code`.
    pub async fn exit(&self, code: i32) {
        self.control.exit(code).await;
    }

    /// The fake SIGKILLs itself.
    pub async fn crash(&self) {
        self.control.crash().await;
    }
}

/// `path` with `?trace=` (URL-encoded) when a trace is given.
fn with_trace(path: String, trace: Option<&str>) -> String {
    match trace {
        Some(t) => {
            let q = serde_urlencoded::to_string([("trace", t)]).unwrap_or_default();
            format!("{path}?{q}")
        }
        None => path,
    }
}
