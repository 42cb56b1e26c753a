//! [`FakeFlume`]: a test's handle on a `fake-flume` agent at a known address.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::Method;

use super::client::Control;
use super::flume_model::FlumeState;
use super::process::{free_port, FakeProcess};

/// How long [`FakeFlume::start`] waits for a new fake to answer.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// The metrics as `fake-flume` serves them: `"TYPE.name"` → field → string value.
pub type FlumeMetrics = BTreeMap<String, BTreeMap<String, String>>;

/// A handle on a `fake-flume` listening (or about to) at one address. Cheap to clone; it does not
/// own the process (see [`FakeProcess`]).
#[derive(Debug, Clone)]
pub struct FakeFlume {
    control: Control,
}

impl FakeFlume {
    pub fn new(addr: SocketAddr) -> Self {
        FakeFlume {
            control: Control::new(addr),
        }
    }

    /// A handle on 127.0.0.1 at a [`free_port`].
    pub fn on_free_port() -> Self {
        Self::new(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())))
    }

    /// Picks a free port, starts `fake-flume` there with `extra` arguments, and waits until it
    /// answers (bounded by [`START_DEADLINE`]).
    pub async fn start(extra: &[&str]) -> (FakeFlume, FakeProcess) {
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

    /// `http://ADDR/metrics`, what a Flume probe polls.
    pub fn metrics_url(&self) -> String {
        self.control.url("/metrics")
    }

    /// The command line that runs this fake: `[fake-flume, --listen, ADDR, extra...]`, e.g. for a
    /// zkwatchdog config's child command.
    pub fn command(&self, extra: &[&str]) -> Vec<String> {
        let bin = crate::bin_path("fake-flume").display().to_string();
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

    /// A raw GET as a probe would make it: `(status, body)` or the transport error.
    pub async fn get(
        &self,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        self.request(Method::GET, path_and_query, timeout).await
    }

    /// A raw request: `(status, body)` or the transport error.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        self.control.request(method, path_and_query, timeout).await
    }

    /// `GET /metrics` (one step of flow); panics unless it is Flume's JSON of strings.
    pub async fn metrics(&self) -> FlumeMetrics {
        self.control.get_json("/metrics").await
    }

    /// `GET /control/state`.
    pub async fn state(&self) -> FlumeState {
        self.control.get_json("/control/state").await
    }

    pub async fn set_channel_size(&self, channel: &str, size: u64) {
        self.control
            .post(&format!("/control/channel/{channel}?size={size}"))
            .await;
    }

    /// Stalls `sink`: its counters stay flat at each step.
    pub async fn stall_sink(&self, sink: &str) {
        self.stall_sink_failing(sink, 0).await;
    }

    /// Stalls `sink`, and adds `failures_per_step` to its ConnectionFailedCount at each step.
    pub async fn stall_sink_failing(&self, sink: &str, failures_per_step: u64) {
        let path = format!("/control/sink/{sink}/stall?failures_per_step={failures_per_step}");
        self.control.post(&path).await;
    }

    pub async fn resume_sink(&self, sink: &str) {
        self.control
            .post(&format!("/control/sink/{sink}/resume"))
            .await;
    }

    pub async fn add_connection_failures(&self, sink: &str, n: u64) {
        let path = format!("/control/sink/{sink}/connection-failures?n={n}");
        self.control.post(&path).await;
    }

    /// Leaves `field` out of every component from now on.
    pub async fn omit_field(&self, field: &str) {
        self.control
            .post(&format!("/control/omit-field?field={field}"))
            .await;
    }

    /// Adds a component of an unknown type, e.g. `"OTHER.x"`.
    pub async fn add_component(&self, name: &str) {
        self.control
            .post(&format!("/control/extra-component?name={name}"))
            .await;
    }

    /// Whether `/metrics` answers an HTML error page instead of JSON (still 200).
    pub async fn set_malformed(&self, on: bool) {
        self.control
            .post(&format!("/control/malformed?on={on}"))
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
