//! The `[probe]` table: which health probe runs against the agent, how often, and what it
//! checks; validated with every problem named by its key (`probe.interval`).

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::configfile::{parse_duration, Problems};
use crate::probe::flume::FlumeSettings;
use crate::probe::health::HealthSettings;
use crate::probe::remediation::RemediationPolicy;
use crate::registry::AgentKind;

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
}

/// What the probe talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// `GET url` (Flume's `/metrics`).
    Flume { url: Url },
    /// The Kafka Connect REST base URL (`http://host:8083`).
    KafkaConnect { url: Url },
    /// `GET url` expecting 2xx.
    Http { url: Url },
    /// A command expecting exit 0.
    Command { argv: Vec<String> },
}

impl ProbeTarget {
    /// The probe kind's name, as in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeTarget::Flume { .. } => "flume",
            ProbeTarget::KafkaConnect { .. } => "kafka-connect",
            ProbeTarget::Http { .. } => "http",
            ProbeTarget::Command { .. } => "command",
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
}

const FLUME_ONLY: [&str; 2] = ["channel-fill-threshold", "stalled-after"];
const CONNECT_ONLY: [&str; 4] = [
    "restart-failed-tasks",
    "task-restart-initial",
    "task-restart-max",
    "task-restart-limit",
];

/// Validates the `[probe]` table (absent: no probe), recording problems in `p`. The probe's
/// kind defaults from the agent's: flume → flume, kafka-connect → kafka-connect, generic →
/// http when `url` is set (command when only `command` is).
pub fn validate(raw: Option<RawProbe>, agent: AgentKind, p: &mut Problems) -> Option<ProbeConfig> {
    let r = raw?;
    let kind = match r.kind.as_deref() {
        Some(k @ ("flume" | "kafka-connect" | "http" | "command")) => k,
        Some(other) => {
            p.add(
                "probe.kind",
                format!("unknown kind {other:?}; expected \"flume\", \"kafka-connect\", \"http\" or \"command\""),
            );
            return None;
        }
        None => match agent {
            AgentKind::Flume => "flume",
            AgentKind::KafkaConnect => "kafka-connect",
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
        (Some(text), _) => p.check("probe.url", parse_url(text)),
        (None, "command") => None,
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
    ];
    for (key, set) in CONNECT_ONLY.iter().zip(connect_set) {
        if set && kind != "kafka-connect" {
            p.add(
                &format!("probe.{key}"),
                "applies only to kind = \"kafka-connect\"",
            );
        }
    }

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

    let target = match kind {
        "flume" => ProbeTarget::Flume { url: url? },
        "kafka-connect" => ProbeTarget::KafkaConnect { url: url? },
        "http" => ProbeTarget::Http { url: url? },
        _ => ProbeTarget::Command { argv },
    };
    Some(ProbeConfig {
        target,
        interval,
        timeout,
        health: HealthSettings {
            grace,
            restart_after: r.restart_after_failures.unwrap_or(0),
        },
        flume: FlumeSettings {
            fill_threshold,
            stalled_after,
        },
        remediation: r
            .restart_failed_tasks
            .unwrap_or(false)
            .then_some(RemediationPolicy {
                initial: task_initial,
                max: task_max,
                limit,
            }),
    })
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
}
