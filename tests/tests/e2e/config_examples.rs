//! Every example config in `config/` parses and validates.

use zkwatchdog::config::{self, RawShared};
use zkwatchdog_tests::repo_root;

#[test]
fn watchdog_example_config_is_valid_and_documents_every_key() {
    let path = repo_root().join("config/watchdog.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let raw =
        config::parse_raw(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    let c = raw
        .validate(&path.display().to_string(), true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.id.as_str(), "flume-nginx@host-a");
    // Every key the config accepts appears in the example.
    for key in [
        "zk-hosts",
        "root",
        "session-timeout",
        "[zk-tls]",
        "ca-file",
        "cert-file",
        "key-file",
        "id",
        "name",
        "kind",
        "command",
        "[labels]",
        "stderr-tail-lines",
        "child-outlives-watchdog",
        "metrics-addr",
        "log-format",
        "[restart]",
        "policy",
        "success-codes",
        "stable-after",
        "stop-signal",
        "stop-timeout",
        "backoff-initial",
        "backoff-max",
        "backoff-jitter",
        "max-restarts",
        "restart-window",
        "[probe]",
        "url",
        "interval",
        "timeout",
        "start-grace",
        "channel-fill-threshold",
        "stalled-after",
        "restart-failed-tasks",
        "task-restart-initial",
        "task-restart-max",
        "task-restart-limit",
        "restart-after-failures",
        "worker-id",
        "bootstrap",
        "broker-id",
        "consumer-groups",
        "lag-threshold",
        "lag-window",
        "lag-min-unchanged",
        "leader-imbalance-ratio",
        "leader-imbalance-min-excess",
        "[probe.lag-thresholds]",
        "username",
        "[zk-auth]",
        "scheme",
        "user",
        "password-env",
        "password-file",
        "admin",
    ] {
        assert!(
            text.contains(key),
            "{key} is not documented in {}",
            path.display()
        );
    }
}

#[test]
fn watchdog_example_probe_is_a_flume_probe() {
    let path = repo_root().join("config/watchdog.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let c = config::parse_raw(&text, "example")
        .and_then(|raw| raw.validate("example", true))
        .unwrap_or_else(|e| panic!("{e}"));
    let probe = c.probe.expect("the example has a [probe] table");
    assert_eq!(probe.target.kind(), "flume");
    assert_eq!(probe.health.restart_after, 0);
}

#[test]
fn kafka_connect_example_config_is_valid() {
    let path = repo_root().join("config/watchdog.kafka-connect.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let origin = path.display().to_string();
    let c = config::parse_raw(&text, &origin)
        .and_then(|raw| raw.validate(&origin, true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.id.as_str(), "connect-jdbc@host-b");
    assert_eq!(c.kind, zkwatchdog::registry::AgentKind::KafkaConnect);
    let probe = c.probe.expect("the example has a [probe] table");
    assert_eq!(probe.target.kind(), "kafka-connect");
    let remediation = probe.remediation.expect("restart-failed-tasks = true");
    assert_eq!(remediation.limit, 5);
    assert_eq!(probe.health.restart_after, 8);
    // A FAILED task never restarts the worker: only a worker that does not answer.
    assert_eq!(
        probe.health.restart_on,
        zkwatchdog::probe::health::RestartOn::Unresponsive
    );
    let config::ProbeTarget::KafkaConnect { worker_id, .. } = probe.target else {
        panic!("a kafka-connect probe");
    };
    assert_eq!(worker_id, "127.0.0.1:8083");
}

#[test]
fn kafka_broker_example_config_is_valid() {
    let path = repo_root().join("config/watchdog.kafka.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let origin = path.display().to_string();
    let c = config::parse_raw(&text, &origin)
        .and_then(|raw| raw.validate(&origin, true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.id.as_str(), "kafka-1@host-k1");
    assert_eq!(c.kind, zkwatchdog::registry::AgentKind::Kafka);
    let probe = c.probe.expect("the example has a [probe] table");
    assert_eq!(probe.target.kind(), "kafka");
    // A lagging group or an under-replicated partition never restarts the broker.
    assert_eq!(
        probe.health.restart_on,
        zkwatchdog::probe::health::RestartOn::Unresponsive
    );
    let kafka = probe.kafka.expect("the broker's Kafka settings");
    assert_eq!(kafka.bootstrap, "127.0.0.1:9092");
    assert_eq!(kafka.groups, config::kafka::ConsumerGroups::All);
    assert_eq!(kafka.lag.threshold, Some(1_000_000));
    assert_eq!(kafka.lag.threshold_for("nginx-logs"), Some(5_000_000));
}

/// The `[probe]` table of an example with its commented `key = value` lines uncommented.
fn probe_block_uncommented(text: &str) -> String {
    let start = text.find("[probe]").expect("a [probe] table");
    let end = text[start..]
        .find("\n# [zk-auth]")
        .map_or(text.len(), |i| start + i);
    text[start..end]
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(kv) if kv.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => kv,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_probe_credentials_are_valid_once_uncommented() {
    std::env::set_var("CONNECT_REST_PASSWORD", "example-password");
    let path = repo_root().join("config/watchdog.kafka-connect.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let head = &text[..text.find("[probe]").expect("[probe]")];
    let text = format!("{head}{}", probe_block_uncommented(&text));
    let c = config::parse_raw(&text, "connect example uncommented")
        .and_then(|raw| raw.validate("connect example uncommented", true));
    // The CA file of the example does not exist here: exactly that is reported, by key and file.
    let err = c.expect_err("/etc/kafka/ssl/ca.pem does not exist here");
    let problems: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(problems, vec!["probe.ca-file"], "{err}");
    assert!(err.to_string().contains("/etc/kafka/ssl/ca.pem"), "{err}");

    let text = text.replace("ca-file = \"/etc/kafka/ssl/ca.pem\"", "");
    let c = config::parse_raw(&text, "connect example uncommented")
        .and_then(|raw| raw.validate("connect example uncommented", true))
        .unwrap_or_else(|e| panic!("{e}"));
    let probe = c.probe.expect("[probe]");
    let auth = probe.http.auth.expect("basic auth");
    assert_eq!(auth.username, "zkwatchdog");
    assert_eq!(auth.password.expose(), "example-password");
    let config::ProbeTarget::KafkaConnect { worker_id, .. } = probe.target else {
        panic!("a kafka-connect probe");
    };
    assert_eq!(worker_id, "host-b.example.com:8083");
}

#[test]
fn watcher_example_config_is_valid_and_documents_every_key() {
    use zkwatcher::config::{load, Needs, Overrides};
    let path = repo_root().join("config/watcher.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    // The example names its secrets by environment variable; give them values for the check.
    std::env::set_var("SMTP_PASSWORD", "example-password");
    std::env::set_var("DINGTALK_SECRET", "example-secret");
    let c =
        load(Some(&path), Overrides::default(), Needs::Channels).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.webhooks.len(), 2);
    assert_eq!(c.webhooks[0].name, "dingtalk-oncall");
    assert_eq!(c.webhooks[1].name, "slack-2");
    assert!(c.email.is_some());
    for key in [
        "zk-hosts",
        "root",
        "session-timeout",
        "[zk-tls]",
        "cert-file",
        "key-file",
        "group-wait",
        "repeat-interval",
        "zk-loss-alert-after",
        "retry-initial",
        "retry-max",
        "metrics-addr",
        "log-format",
        "[email]",
        "url",
        "username",
        "password-env",
        "password-file",
        "from",
        "to",
        "ca-file",
        "timeout",
        "subject-prefix",
        "[[webhook]]",
        "name",
        "kind",
        "secret-env",
        "secret-file",
        "min-interval",
        "[zk-auth]",
        "scheme",
        "user",
        "admin",
    ] {
        assert!(
            text.contains(key),
            "{key} is not documented in {}",
            path.display()
        );
    }
}

/// The commented-out `[zk-auth]` table at the end of an example, uncommented.
fn zk_auth_block(text: &str) -> String {
    let start = text
        .find("# [zk-auth]")
        .expect("the example documents [zk-auth]");
    text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_zk_auth_tables_are_valid_once_uncommented() {
    std::env::set_var("ZKWATCHDOG_ZK_PASSWORD", "example-password");
    std::env::set_var("ZKWATCHER_ZK_PASSWORD", "example-password");
    std::env::set_var("SMTP_PASSWORD", "example-password");
    std::env::set_var("DINGTALK_SECRET", "example-secret");
    let admin = Some("admin:fvr2cB/fjGeAiX8g1aGhUm3ZICk=".to_string());

    let path = repo_root().join("config/watchdog.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let text = format!("{text}\n{}\n", zk_auth_block(&text));
    let c = config::parse_raw(&text, "watchdog example with [zk-auth]")
        .and_then(|raw| raw.validate("watchdog example with [zk-auth]", true))
        .unwrap_or_else(|e| panic!("{e}"));
    let auth = c.zk_access.auth.expect("[zk-auth] is read");
    assert_eq!(auth.user, "zkwatchdog");
    assert_eq!(auth.password.expose(), "example-password");
    assert_eq!(auth.admin, admin);

    let path = repo_root().join("config/watcher.example.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let text = format!("{text}\n{}\n", zk_auth_block(&text));
    let c = zkwatcher::config::parse(
        &text,
        "watcher example with [zk-auth]",
        zkwatcher::config::Needs::Channels,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let auth = c.zk_access.auth.expect("[zk-auth] is read");
    assert_eq!(auth.user, "zkwatcher");
    assert_eq!(auth.admin, admin);
}

/// The keys the first column of `docs/configuration.md`'s table under `## {program}` names:
/// (`[table]` or `[[table]]` header, or none for a top-level key; key). A cell such as
/// "`[email] username`, `password-env` or `password-file`" names three keys of one table; a
/// table alone ("`[labels]`") names none.
fn documented_keys(program: &str) -> Vec<(Option<String>, String)> {
    let text = std::fs::read_to_string(repo_root().join("docs/configuration.md"))
        .expect("read docs/configuration.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with(program))
        .unwrap_or_else(|| panic!("no section ## {program} in docs/configuration.md"));
    let mut keys = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = row.split('|').nth(1).unwrap_or_default();
        let mut table = None;
        for token in cell.split('`').skip(1).step_by(2) {
            let key = match token.strip_prefix('[') {
                Some(rest) => {
                    let (header, key) = rest.split_once(']').unwrap_or((rest, ""));
                    let header = header.trim_start_matches('[');
                    let array = rest.starts_with('[');
                    table = Some(if array {
                        format!("[[{header}]]")
                    } else {
                        format!("[{header}]")
                    });
                    key.trim_start_matches(']').trim()
                }
                None => token.trim(),
            };
            let is_key = !key.is_empty()
                && key.starts_with(|c: char| c.is_ascii_lowercase())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if is_key {
                keys.push((table.clone(), key.to_string()));
            }
        }
    }
    keys
}

/// Whether the program's config takes `key` (in `table`): some value of some type parses
/// (the program's own keys `T` and the shared ones together, as the program reads a file)
/// without the key being reported unknown.
fn accepted<T: serde::de::DeserializeOwned>(table: Option<&str>, key: &str) -> Result<(), String> {
    let mut last = String::new();
    for value in ["\"x\"", "1", "true", "[\"x\"]", "1.5", "[0]", "{}"] {
        let text = match table {
            Some(header) => format!("{header}\n{key} = {value}\n"),
            None => format!("{key} = {value}\n"),
        };
        match zkwatchdog::configfile::parse_toml_split::<T, RawShared>(&text, "docs") {
            Ok((_, _, unknown)) if unknown.is_empty() => return Ok(()),
            Ok((_, _, unknown)) => return Err(format!("unknown: {unknown:?}")),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[test]
fn every_key_the_configuration_reference_names_is_one_the_programs_take() {
    let mut wrong = Vec::new();
    let watchdog = documented_keys("zkwatchdog");
    let watcher = documented_keys("zkwatcher");
    assert!(
        watchdog.len() > 40 && watcher.len() > 25,
        "{watchdog:?}\n{watcher:?}"
    );
    for (table, key) in &watchdog {
        if let Err(e) = accepted::<config::RawConfig>(table.as_deref(), key) {
            wrong.push(format!("zkwatchdog {table:?} {key}: {e}"));
        }
    }
    for (table, key) in &watcher {
        if let Err(e) = accepted::<zkwatcher::config::RawConfig>(table.as_deref(), key) {
            wrong.push(format!("zkwatcher {table:?} {key}: {e}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/configuration.md names keys the programs do not take:\n{}",
        wrong.join("\n")
    );
}
