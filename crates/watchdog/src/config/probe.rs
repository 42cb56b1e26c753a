//! The `[probe]` table: which health probe runs against the agent, how often, what it checks,
//! and how HTTP probes authenticate (basic auth, a private CA); validated with every problem
//! named by its key (`probe.interval`).

use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::configfile::{parse_duration, Problems};
use crate::probe::flume::FlumeSettings;
use crate::probe::health::{HealthSettings, RestartOn};
use crate::probe::remediation::RemediationPolicy;
use crate::registry::AgentKind;
use crate::secret::{read_secret, Secret};

/// The `[probe]` table as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawProbe {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub command: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_grace: Option<String>,
    pub channel_fill_threshold: Option<f64>,
    pub stalled_after: Option<u32>,
    pub restart_failed_tasks: Option<bool>,
    pub task_restart_initial: Option<String>,
    pub task_restart_max: Option<String>,
    pub task_restart_limit: Option<u32>,
    pub restart_after_failures: Option<u32>,
    pub worker_id: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    // The Kafka keys (config/kafka.rs).
    pub bootstrap: Option<String>,
    pub broker_id: Option<i32>,
    pub consumer_groups: Option<Vec<String>>,
    pub lag_threshold: Option<i64>,
    pub lag_thresholds: Option<std::collections::BTreeMap<String, i64>>,
    pub lag_window: Option<usize>,
    pub lag_min_unchanged: Option<String>,
    pub leader_imbalance_ratio: Option<f64>,
    pub leader_imbalance_min_excess: Option<f64>,
}

/// What the probe talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// `GET url` (Flume's `/metrics`).
    Flume { url: Url },
    /// The Kafka Connect REST base URL (`http://host:8083`), and the `worker_id` under which
    /// Connect reports what runs on this worker (its advertised REST `host:port`).
    KafkaConnect { url: Url, worker_id: String },
    /// `GET url` expecting 2xx.
    Http { url: Url },
    /// A command expecting exit 0.
    Command { argv: Vec<String> },
    /// A Kafka broker, over the Kafka protocol (the address is in [`ProbeConfig::kafka`]).
    Kafka,
}

impl ProbeTarget {
    /// The probe kind's name, as in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeTarget::Flume { .. } => "flume",
            ProbeTarget::KafkaConnect { .. } => "kafka-connect",
            ProbeTarget::Http { .. } => "http",
            ProbeTarget::Command { .. } => "command",
            ProbeTarget::Kafka => "kafka",
        }
    }
}

/// The checked `[probe]` table.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub target: ProbeTarget,
    /// Time between probes.
    pub interval: Duration,
    /// Limit of each request (or of the command).
    pub timeout: Duration,
    pub health: HealthSettings,
    pub flume: FlumeSettings,
    /// Restart FAILED Kafka Connect tasks, with this policy.
    pub remediation: Option<RemediationPolicy>,
    /// Credentials and trust for the HTTP probe kinds (flume, kafka-connect, http).
    pub http: HttpAccess,
    /// The Kafka cluster read (kind kafka: the broker itself; kafka-connect and flume: the
    /// cluster their consumer groups read from, for their lag), if any.
    pub kafka: Option<super::kafka::KafkaProbe>,
    /// Masks secrets in health details (a Connect trace may quote a password) before they are
    /// logged or published; set from the watchdog's `redact-patterns`.
    pub redact: crate::redact::Redactor,
}

/// How HTTP probes authenticate and whom they trust, for every HTTP probe kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAccess {
    /// HTTP basic auth sent with every request.
    pub auth: Option<BasicAuth>,
    /// PEM certificates added to the trusted roots (a private CA), as read from `ca-file`.
    pub ca_pem: Option<Vec<u8>>,
}

/// `username` and the password read from `password-env` or `password-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

const FLUME_ONLY: [&str; 2] = ["channel-fill-threshold", "stalled-after"];
const CONNECT_ONLY: [&str; 5] = [
    "restart-failed-tasks",
    "task-restart-initial",
    "task-restart-max",
    "task-restart-limit",
    "worker-id",
];
const HTTP_ONLY: [&str; 4] = ["username", "password-env", "password-file", "ca-file"];

/// Validates the `[probe]` table (absent: no probe), recording problems in `p`. The probe's
/// kind defaults from the agent's: flume → flume, kafka-connect → kafka-connect, generic →
/// http when `url` is set (command when only `command` is).
pub fn validate(
    raw: Option<RawProbe>,
    agent: AgentKind,
    base: &Path,
    p: &mut Problems,
) -> Option<ProbeConfig> {
    let r = raw?;
    let kind = match r.kind.as_deref() {
        Some(k @ ("flume" | "kafka-connect" | "kafka" | "http" | "command")) => k,
        Some(other) => {
            p.add(
                "probe.kind",
                format!("unknown kind {other:?}; expected \"flume\", \"kafka-connect\", \"kafka\", \"http\" or \"command\""),
            );
            return None;
        }
        None => match agent {
            AgentKind::Flume => "flume",
            AgentKind::KafkaConnect => "kafka-connect",
            AgentKind::Kafka => "kafka",
            AgentKind::Generic if r.url.is_none() && r.command.is_some() => "command",
            AgentKind::Generic => "http",
        },
    };

    let url = match (&r.url, kind) {
        (Some(_), "command") => {
            p.add(
                "probe.url",
                "does not apply to kind = \"command\" (use `command`)",
            );
            None
        }
        (Some(_), "kafka") => {
            p.add(
                "probe.url",
                "does not apply to kind = \"kafka\" (use `bootstrap`)",
            );
            None
        }
        (Some(text), _) => p.check("probe.url", parse_url(text)),
        (None, "command" | "kafka") => None,
        (None, _) => {
            p.add(
                "probe.url",
                format!("is required for kind = {kind:?}; write e.g. \"http://127.0.0.1:34545/metrics\""),
            );
            None
        }
    };
    let argv = r.command.clone().unwrap_or_default();
    if kind == "command" {
        if argv.first().is_none_or(|c| c.trim().is_empty()) {
            p.add(
                "probe.command",
                "kind = \"command\" needs a command, e.g. [\"/usr/local/bin/check\"]",
            );
        }
    } else if r.command.is_some() {
        p.add(
            "probe.command",
            format!("does not apply to kind = {kind:?}"),
        );
    }
    let flume_set = [
        r.channel_fill_threshold.is_some(),
        r.stalled_after.is_some(),
    ];
    for (key, set) in FLUME_ONLY.iter().zip(flume_set) {
        if set && kind != "flume" {
            p.add(&format!("probe.{key}"), "applies only to kind = \"flume\"");
        }
    }
    let connect_set = [
        r.restart_failed_tasks.is_some(),
        r.task_restart_initial.is_some(),
        r.task_restart_max.is_some(),
        r.task_restart_limit.is_some(),
        r.worker_id.is_some(),
    ];
    for (key, set) in CONNECT_ONLY.iter().zip(connect_set) {
        if set && kind != "kafka-connect" {
            p.add(
                &format!("probe.{key}"),
                "applies only to kind = \"kafka-connect\"",
            );
        }
    }
    let http_set = [
        r.username.is_some(),
        r.password_env.is_some(),
        r.password_file.is_some(),
        r.ca_file.is_some(),
    ];
    for (key, set) in HTTP_ONLY.iter().zip(http_set) {
        if set && matches!(kind, "command" | "kafka") {
            p.add(
                &format!("probe.{key}"),
                "applies only to the HTTP kinds (flume, kafka-connect, http)",
            );
        }
    }
    let http = validate_http(&r, base, p);
    let kafka = super::kafka::validate(&r, kind, p);

    let [interval, timeout, grace, task_initial, task_max] = [
        ("probe.interval", &r.interval, 10),
        ("probe.timeout", &r.timeout, 2),
        ("probe.start-grace", &r.start_grace, 60),
        ("probe.task-restart-initial", &r.task_restart_initial, 10),
        ("probe.task-restart-max", &r.task_restart_max, 300),
    ]
    .map(|(key, value, secs)| {
        p.parse(
            key,
            value.as_deref(),
            Duration::from_secs(secs),
            parse_duration,
        )
    });
    if interval < Duration::from_millis(10) {
        p.add("probe.interval", "must be at least 10ms");
    }
    if timeout < Duration::from_millis(10) {
        p.add("probe.timeout", "must be at least 10ms");
    }
    if task_initial.is_zero() {
        p.add("probe.task-restart-initial", "must be more than 0s");
    }
    if task_initial > task_max {
        p.add(
            "probe.task-restart-initial",
            "is larger than probe.task-restart-max",
        );
    }
    let fill_threshold = r.channel_fill_threshold.unwrap_or(80.0);
    if !(fill_threshold > 0.0 && fill_threshold <= 100.0) {
        p.add(
            "probe.channel-fill-threshold",
            "must be a percentage above 0 and at most 100",
        );
    }
    let stalled_after = r.stalled_after.unwrap_or(3);
    if stalled_after == 0 {
        p.add("probe.stalled-after", "must be at least 1 probe");
    }
    let limit = r.task_restart_limit.unwrap_or(5);
    if limit == 0 {
        p.add(
            "probe.task-restart-limit",
            "must be at least 1 (or set restart-failed-tasks = false)",
        );
    }

    let worker_id = match r.worker_id.as_deref().map(str::trim) {
        Some("") => {
            p.add(
                "probe.worker-id",
                "is empty; write this worker's advertised REST host:port, e.g. \"10.0.0.5:8083\"",
            );
            None
        }
        Some(id) => Some(id.to_string()),
        None => url.as_ref().and_then(default_worker_id),
    };
    let target = match kind {
        "flume" => ProbeTarget::Flume { url: url? },
        "kafka-connect" => ProbeTarget::KafkaConnect {
            url: url?,
            worker_id: worker_id?,
        },
        "http" => ProbeTarget::Http { url: url? },
        "kafka" => {
            kafka.as_ref()?;
            ProbeTarget::Kafka
        }
        _ => ProbeTarget::Command { argv },
    };
    Some(ProbeConfig {
        target,
        interval,
        timeout,
        health: HealthSettings {
            grace,
            restart_after: r.restart_after_failures.unwrap_or(0),
            // A FAILED task never restarts the worker: only a worker that does not answer.
            // Nor does a lagging group or an under-replicated partition restart a broker.
            restart_on: if matches!(kind, "kafka-connect" | "kafka") {
                RestartOn::Unresponsive
            } else {
                RestartOn::AnyFailure
            },
        },
        flume: FlumeSettings {
            fill_threshold,
            stalled_after,
        },
        remediation: r
            .restart_failed_tasks
            .unwrap_or(false)
            .then_some(RemediationPolicy {
                first: task_initial,
                initial: task_initial,
                max: task_max,
                limit,
            }),
        http: http?,
        kafka,
        redact: crate::redact::Redactor::default(),
    })
}

/// The worker id Connect reports for the worker at `url`: its `host:port`, with the scheme's
/// default port when the URL has none.
pub fn default_worker_id(url: &Url) -> Option<String> {
    Some(format!(
        "{}:{}",
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

/// `username`, `password-env` / `password-file` and `ca-file`; relative file names are
/// relative to `base`, the config file's directory.
fn validate_http(r: &RawProbe, base: &Path, p: &mut Problems) -> Option<HttpAccess> {
    let password = read_secret(
        p,
        "probe.password-env",
        r.password_env.as_deref(),
        "probe.password-file",
        r.password_file.as_deref(),
        base,
    );
    let has_password = r.password_env.is_some() || r.password_file.is_some();
    let auth = match (&r.username, has_password) {
        (None, false) => None,
        (Some(u), _) if u.is_empty() || u.contains(':') => {
            p.add("probe.username", "must be non-empty and contain no ':'");
            return None;
        }
        (Some(_), false) => {
            p.add(
                "probe.password-env",
                "probe.username needs a password: give password-env or password-file",
            );
            return None;
        }
        (None, true) => {
            p.add(
                "probe.username",
                "is required with probe.password-env or probe.password-file",
            );
            return None;
        }
        (Some(username), true) => Some(BasicAuth {
            username: username.clone(),
            password: password?,
        }),
    };
    let ca_pem = match r.ca_file.as_deref() {
        None => None,
        Some(file) => match read_ca(&base.join(file)) {
            Ok(pem) => Some(pem),
            Err(why) => {
                p.add("probe.ca-file", why);
                return None;
            }
        },
    };
    Some(HttpAccess { auth, ca_pem })
}

/// Reads a PEM file of CA certificates, checking it holds at least one that parses.
fn read_ca(file: &Path) -> Result<Vec<u8>, String> {
    let file = file.display();
    let pem = std::fs::read(file.to_string()).map_err(|e| format!("cannot read {file}: {e}"))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(format!(
            "{file} holds no certificate (-----BEGIN CERTIFICATE-----)"
        )),
        Err(e) => Err(format!("{file} is not a PEM certificate file: {e}")),
    }
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim())
        .map_err(|e| format!("invalid URL {text:?} ({e}); write e.g. \"http://127.0.0.1:8083\""))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL {text:?} has no host"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_raw, Config, ConfigError};

    fn validate(text: &str) -> Result<Config, ConfigError> {
        parse_raw(text, "p.toml")?.validate("p.toml", true)
    }

    fn keys(err: &ConfigError) -> Vec<&str> {
        err.problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn no_table_no_probe() {
        let c = validate("command = [\"x\"]\n").expect("valid");
        assert!(c.probe.is_none());
    }

    #[test]
    fn defaults_follow_the_agent_kind() {
        let c = validate(
            "kind = \"flume\"\ncommand = [\"x\"]\n[probe]\nurl = \"http://127.0.0.1:34545/metrics\"\n",
        )
        .expect("valid");
        let probe = c.probe.expect("a probe");
        assert_eq!(probe.target.kind(), "flume");
        assert_eq!(probe.interval, Duration::from_secs(10));
        assert_eq!(probe.timeout, Duration::from_secs(2));
        assert_eq!(probe.health.grace, Duration::from_secs(60));
        assert_eq!(probe.health.restart_after, 0);
        assert_eq!(probe.flume.fill_threshold, 80.0);
        assert_eq!(probe.flume.stalled_after, 3);
        assert!(probe.remediation.is_none());

        let c = validate(
            "kind = \"kafka-connect\"\ncommand = [\"x\"]\n[probe]\nurl = \"http://127.0.0.1:8083\"\nrestart-failed-tasks = true\n",
        )
        .expect("valid");
        let probe = c.probe.expect("a probe");
        assert_eq!(probe.target.kind(), "kafka-connect");
        assert_eq!(
            probe.remediation,
            Some(RemediationPolicy {
                first: Duration::from_secs(10),
                initial: Duration::from_secs(10),
                max: Duration::from_secs(300),
                limit: 5
            })
        );

        let c = validate("command = [\"x\"]\n[probe]\nurl = \"http://127.0.0.1:1/health\"\n")
            .expect("valid");
        assert_eq!(c.probe.expect("a probe").target.kind(), "http");
        let c = validate("command = [\"x\"]\n[probe]\ncommand = [\"/bin/true\"]\n").expect("valid");
        assert_eq!(c.probe.expect("a probe").target.kind(), "command");
    }

    #[test]
    fn every_probe_problem_is_named() {
        let err = validate(
            r#"
            kind = "flume"
            command = ["x"]
            [probe]
            url = "ftp://host/metrics"
            interval = "often"
            timeout = "0s"
            channel-fill-threshold = 120.0
            stalled-after = 0
            restart-failed-tasks = true
            task-restart-initial = "1h"
            command = ["check"]
            restart-afterfailures = 3
            "#,
        )
        .expect_err("invalid");
        let keys = keys(&err);
        for key in [
            "probe.url",
            "probe.interval",
            "probe.timeout",
            "probe.channel-fill-threshold",
            "probe.stalled-after",
            "probe.restart-failed-tasks",
            "probe.task-restart-initial",
            "probe.command",
            "probe.restart-afterfailures",
        ] {
            assert!(keys.contains(&key), "{key} missing from {err}");
        }
        assert!(err.to_string().contains("p.toml"));
    }

    #[test]
    fn missing_url_and_bad_kind() {
        let err =
            validate("kind = \"kafka-connect\"\ncommand = [\"x\"]\n[probe]\ninterval = \"1s\"\n")
                .expect_err("no url");
        assert_eq!(keys(&err), vec!["probe.url"]);
        let err = validate("command = [\"x\"]\n[probe]\nkind = \"jmx\"\n").expect_err("kind");
        assert_eq!(keys(&err), vec!["probe.kind"]);
        let err = validate("command = [\"x\"]\n[probe]\nkind = \"command\"\n").expect_err("argv");
        assert_eq!(keys(&err), vec!["probe.command"]);
    }

    fn probe(text: &str) -> ProbeConfig {
        validate(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .probe
            .expect("a probe")
    }

    fn connect(probe: &str) -> String {
        format!("kind = \"kafka-connect\"\ncommand = [\"x\"]\n[probe]\n{probe}\n")
    }

    #[test]
    fn worker_id_defaults_to_the_urls_host_and_port() {
        // (probe table, worker id)
        let table = [
            ("url = \"http://127.0.0.1:8083\"", "127.0.0.1:8083"),
            (
                "url = \"http://connect-1.example.com:8083/\"",
                "connect-1.example.com:8083",
            ),
            ("url = \"http://connect-1\"", "connect-1:80"),
            ("url = \"https://connect-1/api/\"", "connect-1:443"),
            (
                "url = \"http://localhost:8083\"\nworker-id = \"10.0.0.5:8083\"",
                "10.0.0.5:8083",
            ),
        ];
        for (table, expected) in table {
            let ProbeTarget::KafkaConnect { worker_id, .. } = probe(&connect(table)).target else {
                panic!("a kafka-connect probe");
            };
            assert_eq!(worker_id, expected, "{table}");
        }
        let err = validate(&connect("url = \"http://h:1\"\nworker-id = \" \"")).expect_err("empty");
        assert_eq!(keys(&err), vec!["probe.worker-id"]);
        let err = validate(
            "kind = \"flume\"\ncommand = [\"x\"]\n[probe]\nurl = \"http://h:1/metrics\"\nworker-id = \"h:1\"\n",
        )
        .expect_err("connect only");
        assert_eq!(keys(&err), vec!["probe.worker-id"]);
    }

    #[test]
    fn only_an_unresponsive_worker_restarts_a_connect_worker() {
        let p = probe(&connect(
            "url = \"http://h:8083\"\nrestart-after-failures = 20",
        ));
        assert_eq!(p.health.restart_on, RestartOn::Unresponsive);
        assert_eq!(p.health.restart_after, 20);
        for kind in ["flume", "http"] {
            let p = probe(&format!(
                "command = [\"x\"]\n[probe]\nkind = \"{kind}\"\nurl = \"http://h:1/\"\n"
            ));
            assert_eq!(p.health.restart_on, RestartOn::AnyFailure, "{kind}");
        }
    }

    #[test]
    fn the_default_start_grace_covers_a_jvm_start() {
        use crate::probe::health::HealthTracker;
        use crate::probe::ProbeResult;
        use crate::registry::HealthStatus;
        use std::time::{Instant, SystemTime};
        // Flume opens its monitoring port only after its channels are up: 2-5 s on a JVM.
        let p = probe(
            "kind = \"flume\"\ncommand = [\"x\"]\n[probe]\nurl = \"http://h:1/metrics\"\nrestart-after-failures = 1\n",
        );
        assert!(
            p.health.grace >= Duration::from_secs(30),
            "{:?}",
            p.health.grace
        );
        let t0 = Instant::now();
        let mut h = HealthTracker::new(p.health.clone(), t0);
        let refused =
            ProbeResult::Unreachable("GET http://h:1/metrics failed: connection refused".into());
        for s in [0, 2, 5, 10, 20] {
            let d = h.observe(&refused, t0 + Duration::from_secs(s), SystemTime::now());
            assert_eq!(d.health.status, HealthStatus::Unknown, "{s}s");
            assert_eq!(d.restart, None, "{s}s");
        }
    }

    #[test]
    fn basic_auth_from_the_environment_or_a_file() {
        std::env::set_var("ZKWATCHDOG_TEST_PROBE_PASSWORD", "s3cret");
        let p = probe(&connect(
            "url = \"http://h:8083\"\nusername = \"watchdog\"\npassword-env = \"ZKWATCHDOG_TEST_PROBE_PASSWORD\"",
        ));
        let auth = p.http.auth.clone().expect("basic auth");
        assert_eq!(auth.username, "watchdog");
        assert_eq!(auth.password.expose(), "s3cret");
        assert!(!format!("{p:?}").contains("s3cret"), "never printed");

        let dir = tempdir();
        let file = dir.join("password");
        std::fs::write(&file, "from-file\n").expect("write");
        let p = probe(&format!(
            "command = [\"x\"]\n[probe]\nurl = \"http://h:1/\"\nusername = \"u\"\npassword-file = {:?}\n",
            file.display().to_string()
        ));
        assert_eq!(p.http.auth.expect("auth").password.expose(), "from-file");
    }

    fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "zkwatchdog-probe-config-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn every_http_access_problem_is_named() {
        let dir = tempdir();
        let not_pem = dir.join("not-a-ca.pem");
        std::fs::write(&not_pem, "hello\n").expect("write");
        let missing = dir.join("missing.pem");
        // (probe table lines, the key named, words in its message)
        let table: Vec<(String, &str, String)> = vec![
            (
                format!("ca-file = {:?}", not_pem.display().to_string()),
                "probe.ca-file",
                format!("{} holds no certificate", not_pem.display()),
            ),
            (
                format!("ca-file = {:?}", missing.display().to_string()),
                "probe.ca-file",
                format!("cannot read {}", missing.display()),
            ),
            (
                "ca-file = \"certs/ca.pem\"".into(),
                "probe.ca-file",
                // Relative to the config file's directory, as [zk-tls] files are.
                "cannot read certs/ca.pem".into(),
            ),
            (
                "username = \"u\"".into(),
                "probe.password-env",
                "needs a password".into(),
            ),
            (
                "password-env = \"ZKWATCHDOG_TEST_PROBE_PASSWORD\"".into(),
                "probe.username",
                "is required".into(),
            ),
            (
                "username = \"a:b\"\npassword-env = \"ZKWATCHDOG_TEST_PROBE_PASSWORD\"".into(),
                "probe.username",
                "no ':'".into(),
            ),
            (
                "username = \"u\"\npassword-env = \"ZKWATCHDOG_TEST_UNSET_VARIABLE\"".into(),
                "probe.password-env",
                "ZKWATCHDOG_TEST_UNSET_VARIABLE is not set".into(),
            ),
            (
                "username = \"u\"\npassword-env = \"ZKWATCHDOG_TEST_PROBE_PASSWORD\"\npassword-file = \"/etc/hostname\"".into(),
                "probe.password-env",
                "not both".into(),
            ),
            (
                "username = \"u\"\npassword-file = \"pw\"".into(),
                "probe.password-file",
                "pw".into(),
            ),
        ];
        std::env::set_var("ZKWATCHDOG_TEST_PROBE_PASSWORD", "s3cret");
        for (lines, key, words) in table {
            let err = validate(&connect(&format!("url = \"https://h:8083\"\n{lines}")))
                .expect_err(&lines);
            assert_eq!(keys(&err), vec![key], "{lines}: {err}");
            let text = err.to_string();
            assert!(text.contains(&words), "{lines}: {text}");
            assert!(text.contains("p.toml"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        let err = validate(
            "command = [\"x\"]\n[probe]\ncommand = [\"/bin/true\"]\nusername = \"u\"\nca-file = \"/x.pem\"\n",
        )
        .expect_err("command probes make no requests");
        let keys = keys(&err);
        assert!(
            keys.contains(&"probe.username") && keys.contains(&"probe.ca-file"),
            "{err}"
        );
    }
}
