//! The probe driver: a task that probes the current child on an interval (HTTP with reqwest,
//! or a command), feeds the pure evaluators and the health tracker, and sends what changed to
//! the run loop over a channel. It never blocks supervision: every request has a timeout, a
//! whole round is bounded, and news of a child starting or stopping cancels a round in flight.

use std::time::{Duration, Instant, SystemTime};

use reqwest::{Client, StatusCode, Url};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connect::{self, ConnectorStatus, Listing};
use super::flume::{self, FlumeHistory};
use super::generic::{self, CommandEnd};
use super::health::HealthTracker;
use super::kafka_round;
use super::lag::LagWindows;
use super::remediation::{Remediation, RestartRequest, RestartResult};
use super::{Check, Finding, ProbeResult, Report};
use crate::config::probe::HttpAccess;
use crate::config::{ProbeConfig, ProbeTarget};
use crate::registry::Health;

/// Largest answer body read from an endpoint.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What the run loop tells the driver.
#[derive(Debug, Clone)]
enum ChildNews {
    /// A child started: probe it, its grace counting from `started`.
    ChildStarted { generation: u64, started: Instant },
    /// The child is gone: stop probing until the next one starts.
    ChildStopped,
}

/// What the driver tells the run loop, always about one child (`generation`, the watchdog's
/// own count): the run loop drops news about a child that is no longer the current one.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeEvent {
    /// The health changed (status or failing findings): publish it.
    Health { generation: u64, health: Health },
    /// The probe failed `restart-after-failures` times in a row: restart the child.
    Restart { generation: u64, detail: String },
}

/// Why the driver could not start.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("cannot build the HTTP client for the {kind} probe")]
    Client {
        kind: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

/// Handle to the probe task; dropping it stops the task.
#[derive(Debug)]
pub struct ProbeDriver {
    tx: mpsc::UnboundedSender<ChildNews>,
    task: JoinHandle<()>,
}

impl ProbeDriver {
    /// Starts the probe task for agent `agent` (named in logs). It probes nothing until
    /// [`child_started`](Self::child_started).
    pub fn start(
        config: ProbeConfig,
        agent: String,
        metrics: std::sync::Arc<crate::metrics::WatchdogMetrics>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<ProbeEvent>), ProbeError> {
        let client = http_client(&config).map_err(|source| ProbeError::Client {
            kind: config.target.kind(),
            source,
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let prober = Prober {
            config,
            client,
            agent,
            metrics,
        };
        let task = tokio::spawn(prober.run(rx, events));
        Ok((ProbeDriver { tx, task }, events_rx))
    }

    /// A child started at `started`.
    pub fn child_started(&self, generation: u64, started: Instant) {
        let _ = self.tx.send(ChildNews::ChildStarted {
            generation,
            started,
        });
    }

    /// The child is gone.
    pub fn child_stopped(&self) {
        let _ = self.tx.send(ChildNews::ChildStopped);
    }
}

impl Drop for ProbeDriver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the probes of one child remember between rounds.
#[derive(Debug)]
struct Memory {
    flume: FlumeHistory,
    remediation: Option<Remediation>,
    /// The consumer groups' lag windows (when the probe reads Kafka); boxed, the windows are
    /// the bulk of what a round carries.
    lag: Option<Box<LagWindows>>,
}

/// The probed child.
#[derive(Debug)]
struct Current {
    generation: u64,
    tracker: HealthTracker,
    memory: Option<Memory>,
    next: Instant,
}

enum Step {
    ChildNews(Option<ChildNews>),
    Probed(ProbeResult, Memory),
}

struct Prober {
    config: ProbeConfig,
    client: Client,
    agent: String,
    metrics: std::sync::Arc<crate::metrics::WatchdogMetrics>,
}

impl Prober {
    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<ChildNews>,
        events: mpsc::UnboundedSender<ProbeEvent>,
    ) {
        let mut current: Option<Current> = None;
        loop {
            let step = match current.as_mut() {
                None => Step::ChildNews(rx.recv().await),
                Some(c) => {
                    let memory = c.memory.take().unwrap_or_else(|| self.memory());
                    let next = c.next;
                    tokio::select! {
                        biased;
                        control = rx.recv() => Step::ChildNews(control),
                        (outcome, memory) = async {
                            tokio::time::sleep_until(next.into()).await;
                            self.round(memory).await
                        } => Step::Probed(outcome, memory),
                    }
                }
            };
            match step {
                Step::ChildNews(None) => return,
                Step::ChildNews(Some(ChildNews::ChildStarted {
                    generation,
                    started,
                })) => {
                    tracing::debug!(agent = %self.agent, generation, probe = self.config.target.kind(), "probing the new child");
                    self.metrics
                        .set_health(HealthTracker::initial(self.config.health.grace).status);
                    current = Some(Current {
                        generation,
                        tracker: HealthTracker::new(self.config.health.clone(), started),
                        memory: None,
                        next: started + self.config.interval,
                    });
                }
                Step::ChildNews(Some(ChildNews::ChildStopped)) => current = None,
                Step::Probed(outcome, memory) => {
                    let Some(c) = current.as_mut() else {
                        continue;
                    };
                    c.memory = Some(memory);
                    c.next = Instant::now() + self.config.interval;
                    let mut d = c
                        .tracker
                        .observe(&outcome, Instant::now(), SystemTime::now());
                    // Secrets (a Connect trace quoting a password) go no further than here.
                    d.health.detail = self.config.redact.text(&d.health.detail);
                    d.restart = d.restart.map(|r| self.config.redact.text(&r));
                    let generation = c.generation;
                    self.metrics.probed(d.health.status);
                    tracing::debug!(agent = %self.agent, generation, status = ?d.health.status, detail = %d.health.detail, "probe");
                    if d.changed {
                        tracing::info!(agent = %self.agent, generation, status = ?d.health.status, detail = %d.health.detail, "health changed");
                        let _ = events.send(ProbeEvent::Health {
                            generation,
                            health: d.health,
                        });
                    }
                    if let Some(detail) = d.restart {
                        tracing::warn!(agent = %self.agent, generation, restart_after = self.config.health.restart_after, detail = %detail, "probe kept failing: asking for a restart");
                        let _ = events.send(ProbeEvent::Restart { generation, detail });
                    }
                }
            }
        }
    }

    fn memory(&self) -> Memory {
        Memory {
            flume: FlumeHistory::default(),
            remediation: self.config.remediation.clone().map(Remediation::new),
            lag: self
                .config
                .kafka
                .as_ref()
                .map(|k| Box::new(LagWindows::new(k.lag.clone()))),
        }
    }

    /// One probe round, bounded as a whole: `interval + 2 × timeout`.
    async fn round(&self, mut memory: Memory) -> (ProbeResult, Memory) {
        let limit = self.config.interval + self.config.timeout * 2;
        let outcome = match tokio::time::timeout(limit, self.probe(&mut memory)).await {
            Ok(outcome) => outcome,
            Err(_) => ProbeResult::Unreachable(format!(
                "{} probe did not finish within {}",
                self.config.target.kind(),
                humantime::format_duration(limit)
            )),
        };
        (outcome, memory)
    }

    async fn probe(&self, memory: &mut Memory) -> ProbeResult {
        match &self.config.target {
            ProbeTarget::Flume { url } => match self.get(url).await {
                Err(why) => ProbeResult::Unreachable(why),
                Ok(Err(report)) => ProbeResult::Answered(report),
                Ok(Ok(body)) => ProbeResult::Answered(match flume::parse_metrics(&body) {
                    Ok(m) => {
                        let mut report = memory.flume.evaluate(&m, &self.config.flume);
                        // The lag of its Kafka source's group, when configured.
                        self.lag_of(&[], memory, &mut report).await;
                        report
                    }
                    Err(e) => bad_answer(url, &e),
                }),
            },
            ProbeTarget::Kafka => match (&self.config.kafka, memory.lag.as_mut()) {
                (Some(k), Some(lag)) => {
                    kafka_round::broker(k, self.config.timeout, lag, &self.metrics).await
                }
                // The config makes a kafka probe with a bootstrap; never without.
                _ => ProbeResult::Unreachable("the kafka probe has no bootstrap configured".into()),
            },
            ProbeTarget::KafkaConnect { url, worker_id } => {
                self.connect(url, worker_id, memory).await
            }
            ProbeTarget::Http { url } => match self.fetch(reqwest::Method::GET, url).await {
                Err(why) => ProbeResult::Unreachable(why),
                Ok((status, _)) => ProbeResult::Answered(generic::http(
                    url.as_str(),
                    status.as_u16(),
                    status.canonical_reason(),
                )),
            },
            ProbeTarget::Command { argv } => self.command(argv).await,
        }
    }

    /// Statuses of every connector; what is FAILED on this worker is reported and, when
    /// remediation is on, restarted.
    async fn connect(&self, base: &Url, worker_id: &str, memory: &mut Memory) -> ProbeResult {
        let mut list = connectors_url(base, &[]);
        list.set_query(Some("expand=status"));
        let body = match self.get(&list).await {
            Err(why) => return ProbeResult::Unreachable(why),
            Ok(Err(report)) => return ProbeResult::Answered(report),
            Ok(Ok(body)) => body,
        };
        let statuses = match connect::parse_listing(&body) {
            Err(e) => return ProbeResult::Answered(bad_answer(&list, &e)),
            Ok(Listing::Expanded(statuses)) => statuses,
            Ok(Listing::Names(names)) => match self.statuses(base, names).await {
                Ok(statuses) => statuses,
                Err(outcome) => return outcome,
            },
        };
        let mut report = connect::evaluate(&statuses, worker_id);
        // The lag of the sink connectors this worker runs (their groups are `connect-<name>`).
        let sinks: Vec<String> = statuses
            .iter()
            .filter(|s| {
                s.kind.eq_ignore_ascii_case("sink")
                    && connect::on_worker(&s.connector.worker_id, worker_id)
            })
            .map(|s| format!("connect-{}", s.name))
            .collect();
        self.lag_of(&sinks, memory, &mut report).await;
        if let Some(remediation) = memory.remediation.as_mut() {
            let failures = connect::local_failures(&statuses, worker_id);
            let failing = connect::failing(&failures);
            let due = remediation.due(&failing, Instant::now());
            for failure in failures.iter().filter(|f| due.contains(&f.connector)) {
                let mut results = Vec::new();
                for request in remediation.plan(failure, None) {
                    let result = self.restart(base, &request).await;
                    results.push((request, result));
                }
                if let Some((_, first)) = results.first().cloned() {
                    for request in remediation.plan(failure, Some(&first)) {
                        let result = self.restart(base, &request).await;
                        results.push((request, result));
                    }
                }
                tracing::info!(agent = %self.agent, connector = %failure.connector, tasks = ?failure.tasks, results = ?results, attempt = remediation.attempts(&failure.connector) + 1, "restarted what failed on this worker");
                remediation.record_all(&failure.connector, &results, Instant::now());
            }
            report.findings.extend(remediation.findings(&failing));
        }
        ProbeResult::Answered(report)
    }

    /// Adds the lag of the configured consumer groups and of `groups` to `report`, when the
    /// probe has a Kafka `bootstrap`.
    async fn lag_of(&self, groups: &[String], memory: &mut Memory, report: &mut Report) {
        if let (Some(k), Some(lag)) = (&self.config.kafka, memory.lag.as_mut()) {
            let found =
                kafka_round::groups(k, groups, self.config.timeout, lag, &self.metrics).await;
            kafka_round::merge(report, found);
        }
    }

    /// The fallback for workers that ignore `expand`: one status request per connector.
    async fn statuses(
        &self,
        base: &Url,
        names: Vec<String>,
    ) -> Result<Vec<ConnectorStatus>, ProbeResult> {
        let mut statuses = Vec::with_capacity(names.len());
        for name in names {
            let url = connectors_url(base, &[&name, "status"]);
            match self.fetch(reqwest::Method::GET, &url).await {
                Err(why) => return Err(ProbeResult::Unreachable(why)),
                // Deleted between the two requests.
                Ok((StatusCode::NOT_FOUND, _)) => {}
                Ok((status, _)) if !status.is_success() => {
                    return Err(ProbeResult::Answered(answered(&url, status)))
                }
                Ok((_, body)) => match connect::parse_status(&body) {
                    Ok(mut s) => {
                        if s.name.is_empty() {
                            s.name = name;
                        }
                        statuses.push(s);
                    }
                    Err(e) => return Err(ProbeResult::Answered(bad_answer(&url, &e))),
                },
            }
        }
        Ok(statuses)
    }

    async fn restart(&self, base: &Url, request: &RestartRequest) -> RestartResult {
        let (segments, query) = request.path();
        let mut url = connectors_url(base, &segments);
        url.set_query(query);
        match self.fetch(reqwest::Method::POST, &url).await {
            Err(why) => RestartResult::Failed(why),
            Ok((StatusCode::NOT_FOUND, _)) => RestartResult::NotFound,
            Ok((StatusCode::CONFLICT, _)) => RestartResult::Conflict,
            Ok((status, _)) if status.is_success() => RestartResult::Accepted(status.as_u16()),
            Ok((status, _)) => RestartResult::Failed(generic::status_text(
                status.as_u16(),
                status.canonical_reason(),
            )),
        }
    }

    /// GET expecting 2xx: the body, or a report of the unexpected status, or (outer error)
    /// why the endpoint could not be reached.
    async fn get(&self, url: &Url) -> Result<Result<Vec<u8>, Report>, String> {
        let (status, body) = self.fetch(reqwest::Method::GET, url).await?;
        if status.is_success() {
            Ok(Ok(body))
        } else {
            Ok(Err(answered(url, status)))
        }
    }

    /// One request; the error says why the endpoint could not be reached.
    async fn fetch(
        &self,
        method: reqwest::Method,
        url: &Url,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let what = format!("{method} {url}");
        let fail =
            |e: reqwest::Error| format!("{what} failed: {}", describe(&e, self.config.timeout));
        let mut response = authorized(
            self.client.request(method.clone(), url.clone()),
            &self.config.http,
        )
        .send()
        .await
        .map_err(fail)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!(
                    "{what} failed: answer larger than {MAX_BODY} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    async fn command(&self, argv: &[String]) -> ProbeResult {
        let Some((program, args)) = argv.split_first() else {
            return ProbeResult::Answered(generic::command(
                "",
                &CommandEnd::SpawnFailed("empty command".into()),
                None,
            ));
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return ProbeResult::Answered(generic::command(
                    program,
                    &CommandEnd::SpawnFailed(e.to_string()),
                    None,
                ))
            }
        };
        let pid = child.id();
        match tokio::time::timeout(self.config.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => {
                let end = match crate::exit::ExitKind::from(output.status) {
                    crate::exit::ExitKind::Code(code) => CommandEnd::Code(code),
                    kind => {
                        CommandEnd::Signal(kind.signal_name().unwrap_or_else(|| kind.to_string()))
                    }
                };
                let text = |bytes: &[u8]| {
                    String::from_utf8_lossy(bytes)
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_string)
                };
                let last = text(&output.stderr).or_else(|| text(&output.stdout));
                ProbeResult::Answered(generic::command(program, &end, last.as_deref()))
            }
            Ok(Err(e)) => ProbeResult::Answered(generic::command(
                program,
                &CommandEnd::SpawnFailed(e.to_string()),
                None,
            )),
            Err(_) => {
                // The child was killed on drop; its process group may hold more.
                if let Some(pid) = pid {
                    crate::child::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                }
                ProbeResult::Unreachable(format!(
                    "probe command {program} did not finish within {}",
                    humantime::format_duration(self.config.timeout)
                ))
            }
        }
    }
}

/// The HTTP client of every HTTP probe kind: its timeouts, and the private CA of `ca-file`
/// added to the trusted roots.
fn http_client(config: &ProbeConfig) -> Result<Client, reqwest::Error> {
    let mut builder = Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .no_proxy()
        .user_agent(concat!("zkwatchdog/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &config.http.ca_pem {
        builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem)?);
    }
    builder.build()
}

/// `request` with the probe's credentials, if any.
fn authorized(request: reqwest::RequestBuilder, access: &HttpAccess) -> reqwest::RequestBuilder {
    match &access.auth {
        Some(auth) => request.basic_auth(&auth.username, Some(auth.password.expose())),
        None => request,
    }
}

/// `<base>/connectors/<segments…>`, each segment escaped (connector names may hold anything).
fn connectors_url(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("connectors").extend(segments);
    }
    url
}

fn answered(url: &Url, status: StatusCode) -> Report {
    Report {
        findings: vec![Finding::new(
            url.as_str(),
            Check::BadAnswer,
            format!(
                "GET {url} answered {}",
                generic::status_text(status.as_u16(), status.canonical_reason())
            ),
        )],
        ..Report::default()
    }
}

fn bad_answer(url: &Url, why: &str) -> Report {
    Report {
        findings: vec![Finding::new(
            url.as_str(),
            Check::BadAnswer,
            format!("GET {url}: {why}"),
        )],
        ..Report::default()
    }
}

/// Why a request failed, briefly: `connection refused`, `no answer within 2s`, or the
/// innermost cause.
fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut innermost = err.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return "connection refused".to_string(),
                ConnectionReset => return "connection reset".to_string(),
                TimedOut => {
                    return format!("no answer within {}", humantime::format_duration(timeout))
                }
                _ => {}
            }
        }
        innermost = e.to_string();
        source = e.source();
    }
    if err.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_urls_escape_names_and_keep_the_base_path() {
        let base = Url::parse("http://127.0.0.1:8083").expect("url");
        assert_eq!(
            connectors_url(&base, &["jdbc sink/1", "status"]).as_str(),
            "http://127.0.0.1:8083/connectors/jdbc%20sink%2F1/status"
        );
        let base = Url::parse("http://h:1/proxy/?x=1").expect("url");
        assert_eq!(
            connectors_url(&base, &[]).as_str(),
            "http://h:1/proxy/connectors"
        );
    }
}
