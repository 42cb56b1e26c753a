//! The watcher's configuration: raw TOML (kebab-case keys) plus command-line overrides,
//! validated in one place into [`Config`], every problem reported at once with its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zkwatchdog::config::zk::{RawShared, ZkAccess, ZkArgs};
use zkwatchdog::configfile::{self, parse_duration, ConfigError, Problems};
use zkwatchdog::logging::LogFormat;
use zkwatchdog::registry::Layout;

use crate::notify::settings::{EmailSettings, EmailTls, WebhookKind, WebhookSettings};
use zkwatchdog::secret::read_secret as secret;

/// `[email]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawEmail {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub ca_file: Option<String>,
    pub timeout: Option<String>,
    pub subject_prefix: Option<String>,
}

/// One `[[webhook]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawWebhook {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub timeout: Option<String>,
    pub min_interval: Option<String>,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawConfig {
    pub group_wait: Option<String>,
    pub repeat_interval: Option<String>,
    pub reconcile_interval: Option<String>,
    pub zk_loss_alert_after: Option<String>,
    pub retry_initial: Option<String>,
    pub retry_max: Option<String>,
    pub email: Option<RawEmail>,
    pub webhook: Option<Vec<RawWebhook>>,
    /// The keys both programs share (`zk-hosts`, `root`, `session-timeout`, `[zk-auth]`,
    /// `[zk-tls]`, `log-format`, `metrics-addr`), read from the same file.
    #[serde(skip)]
    pub shared: RawShared,
    #[serde(skip)]
    pub unknown_keys: Vec<String>,
}

/// Values from the command line and the environment; each one, when set, wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// The shared flags (`--zk`, `--root`, `--session-timeout`).
    pub zk: ZkArgs,
    pub metrics_addr: Option<String>,
}

/// What the command needs from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Only ZooKeeper (`status`, `silence`, `unsilence`).
    Registry,
    /// At least one notification channel (`run`, `test-notify`).
    Channels,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub zk_hosts: String,
    pub layout: Layout,
    pub session_timeout: Duration,
    /// Incidents opened within this window go out as one message.
    pub group_wait: Duration,
    /// Remind about incidents still open after this long (None: never).
    pub repeat_interval: Option<Duration>,
    /// Every agent is read again this often, events or not (a safety net under the watch).
    pub reconcile_interval: Duration,
    /// Report the watcher's own ZooKeeper loss after this long.
    pub zk_loss_alert_after: Duration,
    /// First and largest delay between send attempts to a failing channel.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `log-format`, when the file sets it (the `--log-format` flag wins).
    pub log_format: Option<LogFormat>,
    pub email: Option<EmailSettings>,
    pub webhooks: Vec<WebhookSettings>,
    /// Credentials and TLS for ZooKeeper (`[zk-auth]`, `[zk-tls]`).
    pub zk_access: ZkAccess,
    /// Where `run` serves Prometheus metrics (`metrics-addr`); off when unset.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Default `reconcile-interval`.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);

/// Default `group-wait`.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(2);

impl RawConfig {
    /// Applies command-line and environment overrides.
    pub fn apply(&mut self, o: Overrides) {
        self.shared.apply(&o.zk, o.metrics_addr);
    }

    /// Validates everything, reporting all problems at once. `base` is the directory relative
    /// paths (`ca-file`, `password-file`) are resolved against.
    pub fn validate(self, origin: &str, base: &Path, needs: Needs) -> Result<Config, ConfigError> {
        let mut p = Problems::with_unknown(self.unknown_keys);
        let shared = self.shared.validate(&mut p, base);
        let dur = |p: &mut Problems, key: &str, v: Option<&str>, d: Duration| {
            p.parse(key, v, d, parse_duration)
        };
        let group_wait = dur(
            &mut p,
            "group-wait",
            self.group_wait.as_deref(),
            DEFAULT_GROUP_WAIT,
        );
        let repeat = dur(
            &mut p,
            "repeat-interval",
            self.repeat_interval.as_deref(),
            Duration::ZERO,
        );
        if !repeat.is_zero() && repeat < Duration::from_secs(1) {
            p.add(
                "repeat-interval",
                "must be at least 1s (or \"0s\" for never)",
            );
        }
        let reconcile_interval = dur(
            &mut p,
            "reconcile-interval",
            self.reconcile_interval.as_deref(),
            DEFAULT_RECONCILE_INTERVAL,
        );
        if reconcile_interval < Duration::from_secs(1) {
            p.add("reconcile-interval", "must be at least 1s");
        }
        let zk_loss_alert_after = dur(
            &mut p,
            "zk-loss-alert-after",
            self.zk_loss_alert_after.as_deref(),
            Duration::from_secs(60),
        );
        let retry_initial = dur(
            &mut p,
            "retry-initial",
            self.retry_initial.as_deref(),
            Duration::from_secs(1),
        );
        let retry_max = dur(
            &mut p,
            "retry-max",
            self.retry_max.as_deref(),
            Duration::from_secs(60),
        );
        if retry_initial.is_zero() {
            p.add("retry-initial", "must be more than 0s");
        }
        if retry_max < retry_initial {
            p.add("retry-max", "must not be less than retry-initial");
        }

        // `status`, `silence` and `unsilence` run with the same file as `run` but send nothing:
        // the channels (and the secrets they read from the environment) are not looked at.
        let (raw_email, raw_webhooks) = match needs {
            Needs::Registry => (None, None),
            Needs::Channels => (self.email, self.webhook),
        };
        let email = raw_email.and_then(|e| email(e, base, &mut p));
        let mut webhooks = Vec::new();
        for (i, w) in raw_webhooks.unwrap_or_default().into_iter().enumerate() {
            if let Some(w) = webhook(w, i, base, &mut p) {
                webhooks.push(w);
            }
        }
        let mut names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            p.add(
                "webhook.name",
                format!("{:?} is used by two webhooks", w[0]),
            );
        }
        if needs == Needs::Channels && email.is_none() && webhooks.is_empty() && p.is_empty() {
            p.add(
                "",
                "no [email] or [[webhook]] is configured: the watcher would notice crashes and tell no one",
            );
        }
        p.into_result(origin)?;
        let Some(shared) = shared else {
            return Err(ConfigError {
                origin: origin.to_string(),
                problems: Vec::new(),
            });
        };
        Ok(Config {
            zk_hosts: shared.zk_hosts,
            layout: shared.layout,
            session_timeout: shared.session_timeout,
            group_wait,
            repeat_interval: (!repeat.is_zero()).then_some(repeat),
            reconcile_interval,
            zk_loss_alert_after,
            retry_initial,
            retry_max,
            log_format: shared.log_format,
            email,
            webhooks,
            zk_access: shared.zk_access,
            metrics_addr: shared.metrics_addr,
        })
    }
}

fn email(raw: RawEmail, base: &Path, p: &mut Problems) -> Option<EmailSettings> {
    let before = p.0.len();
    let target = match raw.url.as_deref() {
        None => {
            p.add(
                "email.url",
                "is required; write e.g. \"smtp://mail.example.com:587?tls=required\"",
            );
            None
        }
        Some(url) => p.check("email.url", parse_smtp_url(url)),
    };
    let password = secret(
        p,
        "email.password-env",
        raw.password_env.as_deref(),
        "email.password-file",
        raw.password_file.as_deref(),
        base,
    );
    if password.is_some() && raw.username.is_none() {
        p.add(
            "email.username",
            "is required when a password is configured",
        );
    }
    let from = raw.from.unwrap_or_default();
    if from.trim().is_empty() {
        p.add(
            "email.from",
            "is required; write e.g. \"zkwatchdog <alerts@example.com>\"",
        );
    } else if !from.contains('@') {
        p.add("email.from", format!("{from:?} is not an email address"));
    }
    let to = raw.to.unwrap_or_default();
    if to.is_empty() {
        p.add("email.to", "needs at least one recipient");
    }
    for addr in &to {
        if !addr.contains('@') {
            p.add("email.to", format!("{addr:?} is not an email address"));
        }
    }
    let ca_file = raw.ca_file.map(|f| base.join(f));
    if let Some(f) = &ca_file {
        if !f.is_file() {
            p.add(
                "email.ca-file",
                format!("{} is not a readable file", f.display()),
            );
        }
    }
    let timeout = p.parse(
        "email.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(30),
        parse_duration,
    );
    let (host, port, tls) = target?;
    (p.0.len() == before).then(|| EmailSettings {
        host,
        port,
        tls,
        username: raw.username,
        password,
        from,
        to,
        ca_file,
        timeout,
        subject_prefix: raw
            .subject_prefix
            .unwrap_or_else(|| "[zkwatchdog]".to_string()),
    })
}

fn webhook(
    raw: RawWebhook,
    index: usize,
    base: &Path,
    p: &mut Problems,
) -> Option<WebhookSettings> {
    let before = p.0.len();
    let key = |k: &str| format!("webhook[{index}].{k}");
    let kind = match raw.kind.as_deref() {
        None => {
            p.add(
                &key("kind"),
                "is required: generic, dingtalk, feishu or slack",
            );
            None
        }
        Some("generic") => Some(WebhookKind::Generic),
        Some("dingtalk") => Some(WebhookKind::DingTalk),
        Some("feishu") | Some("lark") => Some(WebhookKind::Feishu),
        Some("slack") => Some(WebhookKind::Slack),
        Some(other) => {
            p.add(
                &key("kind"),
                format!("unknown kind {other:?}; write generic, dingtalk, feishu or slack"),
            );
            None
        }
    };
    let url = raw.url.unwrap_or_default();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        p.add(
            &key("url"),
            "is required and must start with http:// or https://",
        );
    }
    let secret = secret(
        p,
        &key("secret-env"),
        raw.secret_env.as_deref(),
        &key("secret-file"),
        raw.secret_file.as_deref(),
        base,
    );
    let timeout = p.parse(
        &key("timeout"),
        raw.timeout.as_deref(),
        Duration::from_secs(10),
        parse_duration,
    );
    let kind = kind?;
    if secret.is_some() && !matches!(kind, WebhookKind::DingTalk | WebhookKind::Feishu) {
        p.add(
            &key("secret-env"),
            "only dingtalk and feishu webhooks are signed",
        );
    }
    // DingTalk robots accept 20 messages a minute; Slack asks for about one a second.
    let default_interval = match kind {
        WebhookKind::DingTalk => Duration::from_secs(3),
        WebhookKind::Slack | WebhookKind::Feishu => Duration::from_secs(1),
        WebhookKind::Generic => Duration::ZERO,
    };
    let min_interval = p.parse(
        &key("min-interval"),
        raw.min_interval.as_deref(),
        default_interval,
        parse_duration,
    );
    let name = raw
        .name
        .unwrap_or_else(|| format!("{}-{}", kind.as_str(), index + 1));
    if name.is_empty() || name == "email" || name.contains(char::is_whitespace) {
        p.add(
            &key("name"),
            format!("{name:?} is not a usable channel name"),
        );
    }
    (p.0.len() == before).then_some(WebhookSettings {
        name,
        kind,
        url,
        secret,
        timeout,
        min_interval,
    })
}

/// Parses `smtp://host[:port][?tls=required]` or `smtps://host[:port]`.
pub fn parse_smtp_url(url: &str) -> Result<(String, u16, EmailTls), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL; write e.g. \"smtp://mail:25\""))?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.trim_end_matches('/');
    if authority.contains('@') {
        return Err("do not put credentials in the URL; use username and password-env".into());
    }
    let (mut tls, default_port) = match scheme {
        "smtp" => (EmailTls::None, 25),
        "smtps" => (EmailTls::Implicit, 465),
        other => return Err(format!("scheme {other:?} is not smtp or smtps")),
    };
    match query {
        None | Some("") => {}
        Some("tls=required") if tls == EmailTls::None => tls = EmailTls::StartTls,
        Some(q) => {
            return Err(format!(
                "unknown query {q:?}; the only option is ?tls=required (STARTTLS) on smtp://"
            ))
        }
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => (
            h,
            port.parse::<u16>()
                .map_err(|_| format!("port {port:?} is not a number"))?,
        ),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok((host.to_string(), port, tls))
}

/// Loads the config: the file if given, then overrides, then validation.
pub fn load(
    file: Option<&Path>,
    overrides: Overrides,
    needs: Needs,
) -> Result<Config, ConfigError> {
    let (mut raw, origin, base) = match file {
        Some(path) => {
            let (mut raw, shared, unknown): (RawConfig, RawShared, _) =
                configfile::read_toml_split(path)?;
            raw.shared = shared;
            raw.unknown_keys = unknown;
            let base = path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (raw, path.display().to_string(), base)
        }
        None => (
            RawConfig::default(),
            "command line".to_string(),
            PathBuf::from("."),
        ),
    };
    raw.apply(overrides);
    raw.validate(&origin, &base, needs)
}

/// Parses config text (for tests and examples).
pub fn parse(text: &str, origin: &str, needs: Needs) -> Result<Config, ConfigError> {
    let (mut raw, shared, unknown): (RawConfig, RawShared, _) =
        configfile::parse_toml_split(text, origin)?;
    raw.shared = shared;
    raw.unknown_keys = unknown;
    raw.validate(origin, Path::new("."), needs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        assert_eq!(
            parse_smtp_url("smtp://mail:25"),
            Ok(("mail".into(), 25, EmailTls::None))
        );
        assert_eq!(
            parse_smtp_url("smtp://mail.example.com:587?tls=required"),
            Ok(("mail.example.com".into(), 587, EmailTls::StartTls))
        );
        assert_eq!(
            parse_smtp_url("smtps://mail"),
            Ok(("mail".into(), 465, EmailTls::Implicit))
        );
        assert!(parse_smtp_url("http://mail").is_err());
        assert!(parse_smtp_url("smtp://u:p@mail").is_err());
        assert!(parse_smtp_url("smtp://mail:x").is_err());
        assert!(parse_smtp_url("smtps://mail?tls=required").is_err());
    }

    #[test]
    fn defaults_and_channels() {
        let c = parse(
            r#"
            group-wait = "0s"
            [email]
            url = "smtp://127.0.0.1:2525"
            from = "zkwatchdog <alerts@example.com>"
            to = ["a@example.com", "b@example.com"]
            [[webhook]]
            kind = "dingtalk"
            url = "http://127.0.0.1:1/robot/send?access_token=x"
            [[webhook]]
            kind = "slack"
            name = "ops-slack"
            url = "http://127.0.0.1:1/hook"
            "#,
            "w.toml",
            Needs::Channels,
        )
        .expect("valid");
        assert_eq!(c.group_wait, Duration::ZERO);
        assert_eq!(c.layout.root(), "/zkwatchdog");
        assert_eq!(c.repeat_interval, None);
        let email = c.email.expect("email");
        assert_eq!(email.to.len(), 2);
        assert_eq!(c.webhooks[0].name, "dingtalk-1");
        assert_eq!(c.webhooks[0].min_interval, Duration::from_secs(3));
        assert_eq!(c.webhooks[1].name, "ops-slack");
    }

    #[test]
    fn every_problem_is_named() {
        let err = parse(
            r#"
            root = "nope"
            group-wait = "a while"
            reconcile-interval = "100ms"
            retry-initial = "5s"
            retry-max = "1s"
            colour = "blue"
            [email]
            url = "http://mail"
            password-env = "ZKWATCHER_TEST_SURELY_UNSET"
            from = "nobody"
            [[webhook]]
            kind = "pager"
            url = "ftp://x"
            "#,
            "w.toml",
            Needs::Channels,
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "root",
            "group-wait",
            "reconcile-interval",
            "retry-max",
            "colour",
            "email.url",
            "email.password-env",
            "email.from",
            "email.to",
            "webhook[0].kind",
            "webhook[0].url",
        ] {
            assert!(keys.contains(&key), "{key} missing in {err}");
        }
        assert!(err.to_string().contains("w.toml"));
    }

    #[test]
    fn run_needs_a_channel_but_status_does_not() {
        let err = parse("", "w.toml", Needs::Channels).expect_err("no channel");
        assert!(err.to_string().contains("tell no one"), "{err}");
        assert!(parse("", "w.toml", Needs::Registry).is_ok());
    }

    /// `status`, `silence` and `unsilence` run with `run`'s file on a host where the channels'
    /// secrets are not in the environment.
    #[test]
    fn the_registry_commands_take_the_run_file_without_the_channels_secrets() {
        let text = r#"
            zk-hosts = "zk1:2181"
            [email]
            url = "smtp://mail.example.com:587?tls=required"
            username = "alerts"
            password-env = "ZKWATCHER_TEST_PASSWORD_THAT_IS_NOT_SET"
            from = "zkwatcher@example.com"
            to = ["oncall@example.com"]
            [[webhook]]
            name = "ops"
            kind = "generic"
            url = "https://hooks.example.com/zk"
            secret-env = "ZKWATCHER_TEST_SECRET_THAT_IS_NOT_SET"
        "#;
        let err = parse(text, "w.toml", Needs::Channels).expect_err("secrets missing");
        assert!(
            err.to_string()
                .contains("ZKWATCHER_TEST_PASSWORD_THAT_IS_NOT_SET"),
            "{err}"
        );
        let c = parse(text, "w.toml", Needs::Registry).expect("status needs no secret");
        assert_eq!(c.zk_hosts, "zk1:2181");
        assert!(c.email.is_none() && c.webhooks.is_empty());
    }
}
