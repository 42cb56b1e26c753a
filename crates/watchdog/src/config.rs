//! The watchdog's configuration: raw TOML (kebab-case keys) plus command-line overrides,
//! validated in one place into [`Config`], with every problem reported at once and each naming
//! its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

pub mod kafka;
pub mod probe;
pub mod zk;

use crate::backoff::{BackoffPolicy, GiveUp};
use crate::configfile::{self, Problems};
pub use crate::configfile::{parse_duration, ConfigError, Problem};
use crate::logging::LogFormat;
use crate::redact::Redactor;
use crate::registry::{AgentId, AgentKind, Layout};
pub use probe::{ProbeConfig, ProbeTarget, RawProbe};
pub use zk::{RawShared, RawZkAuth, RawZkTls, ZkAccess, ZkArgs, DEFAULT_ZK_HOSTS};

/// The `[restart]` table as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawRestart {
    pub policy: Option<String>,
    pub success_codes: Option<Vec<i64>>,
    pub stable_after: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<String>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub backoff_jitter: Option<f64>,
    pub max_restarts: Option<u32>,
    pub restart_window: Option<String>,
    pub on_reload: Option<String>,
    pub fatal_record_timeout: Option<String>,
}

/// The config file as written: every key optional, values still unparsed where parsing can fail
/// (durations, signals, enums), so that validation can report every problem at once.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawConfig {
    pub id: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub command: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stderr_tail_lines: Option<u32>,
    pub child_outlives_watchdog: Option<bool>,
    pub restart: Option<RawRestart>,
    pub probe: Option<RawProbe>,
    pub redact_patterns: Option<Vec<String>>,
    /// The keys both programs share (`zk-hosts`, `root`, `session-timeout`, `[zk-auth]`,
    /// `[zk-tls]`, `log-format`, `metrics-addr`), read from the same file.
    #[serde(skip)]
    pub shared: RawShared,
    /// Keys in the file that no setting has (reported by [`RawConfig::validate`]).
    #[serde(skip)]
    pub unknown_keys: Vec<String>,
}

/// Values from the command line and the environment; each one, when set, wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// The shared flags (`--zk`, `--root`, `--session-timeout`).
    pub zk: ZkArgs,
    pub id: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub command: Vec<String>,
    pub metrics_addr: Option<String>,
}

/// When a child that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart unless the exit code is one of the success codes (then it is a planned stop).
    OnFailure,
    /// Restart after every exit.
    Always,
    /// Never restart: a success exit is a planned stop, any other exit is fatal.
    Never,
}

/// What SIGHUP to the watchdog (`systemctl reload`) does: `restart.on-reload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReload {
    /// A planned restart of the child: stop signal to its group, `stop-timeout`, SIGKILL, start
    /// again at once. Not a crash (no backoff step, no give-up count) and never alerted.
    Restart,
    /// Pass SIGHUP on to the child's process group (for agents that reload on SIGHUP).
    Forward,
    /// Log it and do nothing else.
    Ignore,
}

impl OnReload {
    /// The default for `kind`: a JVM (Flume, Kafka Connect, a Kafka broker) exits on SIGHUP (code 129), so it
    /// is restarted instead; anything else gets the signal, as a shell would pass it on.
    pub fn default_for(kind: AgentKind) -> Self {
        match kind {
            AgentKind::Flume | AgentKind::KafkaConnect | AgentKind::Kafka => OnReload::Restart,
            AgentKind::Generic => OnReload::Forward,
        }
    }

    /// Whether the agent of `kind` is a JVM, which must never receive SIGHUP.
    pub fn is_jvm(kind: AgentKind) -> bool {
        OnReload::default_for(kind) == OnReload::Restart
    }

    /// The name used in config files and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            OnReload::Restart => "restart",
            OnReload::Forward => "forward",
            OnReload::Ignore => "ignore",
        }
    }
}

/// Restart and stop settings, validated.
#[derive(Debug, Clone)]
pub struct RestartConfig {
    pub policy: RestartPolicy,
    pub success_codes: Vec<i32>,
    pub backoff: BackoffPolicy,
    pub give_up: Option<GiveUp>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    /// What SIGHUP to the watchdog does.
    pub on_reload: OnReload,
    /// After a give-up, how long the watchdog keeps trying to record `state = "fatal"` while
    /// ZooKeeper is unreachable before it exits anyway (`restart.fatal-record-timeout`).
    pub fatal_record_timeout: Duration,
}

/// The checked configuration of one watchdog.
#[derive(Debug, Clone)]
pub struct Config {
    pub zk_hosts: String,
    pub layout: Layout,
    pub session_timeout: Duration,
    pub id: AgentId,
    pub name: String,
    pub kind: AgentKind,
    pub host: String,
    pub command: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub restart: RestartConfig,
    /// How many stderr lines are kept for `last_exit.stderr_tail`.
    pub stderr_tail_lines: usize,
    /// When false (the default) the child is killed if the watchdog dies, even by SIGKILL.
    pub child_outlives_watchdog: bool,
    /// `log-format`, when the file sets it (the `--log-format` flag wins).
    pub log_format: Option<LogFormat>,
    /// The health probe, when a `[probe]` table is present.
    pub probe: Option<ProbeConfig>,
    /// Credentials and TLS for ZooKeeper (`[zk-auth]`, `[zk-tls]`).
    pub zk_access: ZkAccess,
    /// Where to serve Prometheus metrics (`metrics-addr`); off when unset.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// What is masked in published records and logs (built-in rules plus `redact-patterns`).
    pub redact: Redactor,
}

/// Reads and parses a config file, reporting unknown keys (all of them) by name.
pub fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let (mut raw, shared, unknown): (RawConfig, RawShared, _) = configfile::read_toml_split(path)?;
    raw.shared = shared;
    raw.unknown_keys = unknown;
    Ok(raw)
}

/// Parses config text; `origin` names it in errors.
pub fn parse_raw(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let (mut raw, shared, unknown): (RawConfig, RawShared, _) =
        configfile::parse_toml_split(text, origin)?;
    raw.shared = shared;
    raw.unknown_keys = unknown;
    Ok(raw)
}

/// Parses a signal name (`SIGTERM`, `TERM`, `term`) or number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {text:?}; write e.g. \"SIGTERM\""))
}

impl RawConfig {
    /// Applies command-line and environment overrides.
    pub fn apply(&mut self, o: Overrides) {
        let set = |slot: &mut Option<String>, v: Option<String>| {
            if v.is_some() {
                *slot = v;
            }
        };
        self.shared.apply(&o.zk, o.metrics_addr);
        set(&mut self.id, o.id);
        set(&mut self.name, o.name);
        set(&mut self.kind, o.kind);
        if !o.command.is_empty() {
            self.command = Some(o.command);
        }
    }

    /// Validates everything, reporting all problems at once. `require_command` is false for
    /// commands that only talk to ZooKeeper (`deregister`).
    pub fn validate(self, origin: &str, require_command: bool) -> Result<Config, ConfigError> {
        let mut p = Problems::with_unknown(self.unknown_keys);
        // Relative file names are relative to the config file.
        let base = Path::new(origin).parent().unwrap_or(Path::new("."));
        let shared = self.shared.validate(&mut p, base);

        let command = self.command.unwrap_or_default();
        if require_command && command.is_empty() {
            p.add(
                "command",
                "no command to run: set `command = [...]` or give it after `--`",
            );
        }
        if command.first().is_some_and(|c| c.is_empty()) {
            p.add("command", "the program name is empty");
        }
        let name = match self.name {
            Some(n) => n,
            None => command
                .first()
                .and_then(|c| Path::new(c).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "agent".to_string()),
        };
        if name.trim().is_empty() {
            p.add("name", "is empty");
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_string());
        let id = p.check(
            "id",
            AgentId::new(self.id.unwrap_or_else(|| format!("{name}@{host}"))),
        );
        let kind = p.parse(
            "kind",
            self.kind.as_deref(),
            AgentKind::Generic,
            |k| match k {
                "flume" => Ok(AgentKind::Flume),
                "kafka-connect" => Ok(AgentKind::KafkaConnect),
                "kafka" => Ok(AgentKind::Kafka),
                "generic" => Ok(AgentKind::Generic),
                other => Err(format!(
                    "unknown kind {other:?}; expected \"flume\", \"kafka-connect\", \"kafka\" or \"generic\""
                )),
            },
        );

        let redact = match Redactor::new(self.redact_patterns.as_deref().unwrap_or_default()) {
            Ok(r) => r,
            Err((pattern, error)) => {
                p.add(
                    "redact-patterns",
                    format!("{pattern:?} is not a valid regular expression: {error}"),
                );
                Redactor::default()
            }
        };
        let probe = probe::validate(self.probe, kind, base, &mut p).map(|mut probe| {
            probe.redact = redact.clone();
            probe
        });

        let r = self.restart.unwrap_or_default();
        let policy = p.parse(
            "restart.policy",
            r.policy.as_deref(),
            RestartPolicy::OnFailure,
            |v| match v {
                "on-failure" => Ok(RestartPolicy::OnFailure),
                "always" => Ok(RestartPolicy::Always),
                "never" => Ok(RestartPolicy::Never),
                other => Err(format!(
                    "unknown policy {other:?}; expected \"on-failure\", \"always\" or \"never\""
                )),
            },
        );
        let mut success_codes = Vec::new();
        for code in r.success_codes.unwrap_or_else(|| vec![0]) {
            match i32::try_from(code) {
                Ok(c) if (0..=255).contains(&c) => success_codes.push(c),
                _ => p.add(
                    "restart.success-codes",
                    format!("{code} is not an exit code (0 to 255)"),
                ),
            }
        }
        let [stable_after, stop_timeout, initial, max, window, fatal_record_timeout] = [
            ("restart.stable-after", &r.stable_after, 10),
            ("restart.stop-timeout", &r.stop_timeout, 30),
            ("restart.backoff-initial", &r.backoff_initial, 1),
            ("restart.backoff-max", &r.backoff_max, 60),
            ("restart.restart-window", &r.restart_window, 300),
            ("restart.fatal-record-timeout", &r.fatal_record_timeout, 300),
        ]
        .map(|(key, value, default_secs)| {
            p.parse(
                key,
                value.as_deref(),
                Duration::from_secs(default_secs),
                parse_duration,
            )
        });
        if initial > max {
            p.add(
                "restart.backoff-initial",
                "is larger than restart.backoff-max",
            );
        }
        let jitter = r.backoff_jitter.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&jitter) {
            p.add("restart.backoff-jitter", "must be between 0.0 and 1.0");
        }
        let give_up = match r.max_restarts {
            None | Some(0) => None,
            Some(max_restarts) => Some(GiveUp {
                max_restarts,
                window,
            }),
        };
        let stop_signal = p.parse(
            "restart.stop-signal",
            r.stop_signal.as_deref(),
            Signal::SIGTERM,
            parse_signal,
        );
        if stop_signal == Signal::SIGSTOP {
            p.add("restart.stop-signal", "SIGSTOP does not stop a process");
        }
        let on_reload = p.parse(
            "restart.on-reload",
            r.on_reload.as_deref(),
            OnReload::default_for(kind),
            |v| match v {
                "restart" => Ok(OnReload::Restart),
                "forward" => Ok(OnReload::Forward),
                "ignore" => Ok(OnReload::Ignore),
                other => Err(format!(
                    "unknown value {other:?}; expected \"restart\", \"forward\" or \"ignore\""
                )),
            },
        );
        if on_reload == OnReload::Forward && OnReload::is_jvm(kind) {
            p.add(
                "restart.on-reload",
                format!(
                    "\"forward\" would send SIGHUP to a JVM (kind = {:?}), which exits on it; \
                     use \"restart\" (the default) or \"ignore\"",
                    kind.as_str()
                ),
            );
        }
        let stderr_tail_lines = self.stderr_tail_lines.unwrap_or(20) as usize;
        if stderr_tail_lines > 1000 {
            p.add("stderr-tail-lines", "must be at most 1000");
        }

        match (shared, id) {
            (Some(shared), Some(id)) if p.0.is_empty() => Ok(Config {
                zk_hosts: shared.zk_hosts,
                layout: shared.layout,
                session_timeout: shared.session_timeout,
                id,
                name,
                kind,
                host,
                command,
                labels: self.labels.unwrap_or_default(),
                restart: RestartConfig {
                    policy,
                    success_codes,
                    backoff: BackoffPolicy {
                        initial,
                        max,
                        jitter,
                        stable_after,
                    },
                    give_up,
                    stop_signal,
                    stop_timeout,
                    on_reload,
                    fatal_record_timeout,
                },
                stderr_tail_lines,
                child_outlives_watchdog: self.child_outlives_watchdog.unwrap_or(false),
                log_format: shared.log_format,
                probe,
                zk_access: shared.zk_access,
                metrics_addr: shared.metrics_addr,
                redact,
            }),
            _ => Err(ConfigError {
                origin: origin.to_string(),
                problems: p.0,
            }),
        }
    }
}

/// Loads the config: the file if given, then overrides, then validation.
pub fn load(
    file: Option<&Path>,
    overrides: Overrides,
    require_command: bool,
) -> Result<Config, ConfigError> {
    let (mut raw, origin) = match file {
        Some(path) => (read_raw(path)?, path.display().to_string()),
        None => (RawConfig::default(), "command line".to_string()),
    };
    raw.apply(overrides);
    raw.validate(&origin, require_command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<Config, ConfigError> {
        parse_raw(text, "test.toml")?.validate("test.toml", true)
    }

    #[test]
    fn minimal_and_defaults() {
        let c = validate(r#"command = ["/usr/bin/sleep", "100"]"#).expect("valid");
        assert_eq!(c.name, "sleep");
        assert!(c.id.as_str().starts_with("sleep@"));
        assert_eq!(c.zk_hosts, DEFAULT_ZK_HOSTS);
        assert_eq!(c.layout.root(), "/zkwatchdog");
        assert_eq!(c.restart.policy, RestartPolicy::OnFailure);
        assert_eq!(c.restart.success_codes, vec![0]);
        assert_eq!(c.restart.stop_signal, Signal::SIGTERM);
        assert_eq!(c.session_timeout, Duration::from_secs(10));
        assert!(!c.child_outlives_watchdog);
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let err = validate(
            r#"
            id = "a/b"
            root = "relative"
            kind = "hadoop"
            session-timeout = "soon"
            command = ["x"]
            [restart]
            policy = "sometimes"
            stop-signal = "SIGNOPE"
            stable-after = "10 parsecs"
            success-codes = [0, 300]
            backoff-jitter = 2.0
            "#,
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "id",
            "root",
            "kind",
            "session-timeout",
            "restart.policy",
            "restart.stop-signal",
            "restart.stable-after",
            "restart.success-codes",
            "restart.backoff-jitter",
        ] {
            assert!(keys.contains(&key), "{key} missing from {err}");
        }
        assert!(err.to_string().contains("test.toml"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_raw(
            "comand = [\"x\"]\nkind = \"k\"\n[restart]\npolicy = \"always\"\nbackof = \"1s\"\n",
            "f.toml",
        )
        .expect("parses")
        .validate("f.toml", false)
        .expect_err("unknown keys");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["comand", "restart.backof", "kind"]);
    }

    #[test]
    fn syntax_errors_name_the_place() {
        let err = parse_raw("command = [\"x\"\n", "f.toml").expect_err("syntax");
        assert!(err.to_string().contains("line"), "{err}");
        let err = parse_raw("stderr-tail-lines = \"many\"\n", "f.toml").expect_err("type");
        assert!(err.to_string().contains("stderr-tail-lines"), "{err}");
    }

    #[test]
    fn overrides_win() {
        let mut raw = parse_raw(
            "zk-hosts = \"a:1\"\nid = \"file@h\"\ncommand = [\"x\"]\n",
            "f",
        )
        .expect("parses");
        raw.apply(Overrides {
            zk: ZkArgs {
                zk_hosts: Some("b:2".into()),
                ..ZkArgs::default()
            },
            id: None,
            command: vec!["y".into(), "z".into()],
            ..Overrides::default()
        });
        let c = raw.validate("f", true).expect("valid");
        assert_eq!(c.zk_hosts, "b:2");
        assert_eq!(c.id.as_str(), "file@h");
        assert_eq!(c.command, vec!["y", "z"]);
    }

    #[test]
    fn signals_and_durations() {
        assert_eq!(parse_signal("term"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("SIGINT"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("SIGFOO").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn on_reload_defaults_by_kind_and_never_forwards_to_a_jvm() {
        let with = |kind: &str, on_reload: Option<&str>| {
            let restart = on_reload
                .map(|v| format!("[restart]\non-reload = {v:?}\n"))
                .unwrap_or_default();
            validate(&format!("command = [\"x\"]\nkind = {kind:?}\n{restart}"))
        };
        let on_reload = |kind, v| with(kind, v).map(|c| c.restart.on_reload);
        assert_eq!(on_reload("flume", None).ok(), Some(OnReload::Restart));
        assert_eq!(
            on_reload("kafka-connect", None).ok(),
            Some(OnReload::Restart)
        );
        assert_eq!(on_reload("generic", None).ok(), Some(OnReload::Forward));
        assert_eq!(
            on_reload("generic", Some("restart")).ok(),
            Some(OnReload::Restart)
        );
        assert_eq!(
            on_reload("flume", Some("ignore")).ok(),
            Some(OnReload::Ignore)
        );
        for (kind, value, says) in [
            ("generic", "reboot", "unknown value \"reboot\""),
            ("flume", "forward", "would send SIGHUP to a JVM"),
            ("kafka-connect", "forward", "would send SIGHUP to a JVM"),
        ] {
            let err = with(kind, Some(value)).expect_err(value);
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "restart.on-reload", "{err}");
            let text = err.to_string();
            assert!(text.contains(says) && text.contains("test.toml"), "{text}");
        }
    }

    #[test]
    fn redact_patterns_are_checked_in_one_place_and_used() {
        let err = validate("command = [\"x\"]\nredact-patterns = [\"ok\", \"(unclosed\"]\n")
            .expect_err("a bad regex");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "redact-patterns");
        let text = err.to_string();
        assert!(
            text.contains("test.toml") && text.contains("\"(unclosed\""),
            "{text}"
        );
        let c = validate("command = [\"x\"]\nredact-patterns = ['pin (\\d+)']\n").expect("valid");
        assert_eq!(c.redact.text("pin 1234 password=x"), "pin *** password=***");
        assert_eq!(c.restart.fatal_record_timeout, Duration::from_secs(300));
        let c = validate("command = [\"x\"]\n[restart]\nfatal-record-timeout = \"1m\"\n")
            .expect("valid");
        assert_eq!(c.restart.fatal_record_timeout, Duration::from_secs(60));
    }

    #[test]
    fn no_command_is_an_error_only_when_required() {
        let raw = parse_raw("", "f").expect("parses");
        let err = raw.validate("f", true).expect_err("no command");
        assert_eq!(err.problems[0].key, "command");
        assert!(parse_raw("", "f")
            .expect("parses")
            .validate("f", false)
            .is_ok());
    }
}
