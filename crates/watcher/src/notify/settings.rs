//! Validated settings of the notification channels, built by `config.rs` from the `[email]` and
//! `[[webhook]]` tables.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use zkwatchdog::secret::Secret;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// `smtp://host:port`: plain text (use only on loopback or a trusted network).
    None,
    /// `smtp://host:port?tls=required`: STARTTLS, refusing to continue without it.
    StartTls,
    /// `smtps://host:port`: TLS from the first byte (port 465).
    Implicit,
}

/// `[email]`.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: EmailTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `"zkwatchdog <alerts@example.com>"`.
    pub from: String,
    /// One or more recipients.
    pub to: Vec<String>,
    /// Extra CA certificate (PEM) to trust, for a server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Connect and command timeout.
    pub timeout: Duration,
    /// Prefix of every subject (`[zkwatchdog]`).
    pub subject_prefix: String,
}

/// Which service a webhook talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// Our own JSON document, for any receiver.
    Generic,
    /// DingTalk robot: markdown message, optional signature.
    DingTalk,
    /// Feishu/Lark bot: text message, optional signature.
    Feishu,
    /// Slack incoming webhook: `{"text"}`, honours 429 + Retry-After.
    Slack,
}

impl WebhookKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            WebhookKind::Generic => "generic",
            WebhookKind::DingTalk => "dingtalk",
            WebhookKind::Feishu => "feishu",
            WebhookKind::Slack => "slack",
        }
    }
}

/// One `[[webhook]]`. Its `Debug` output shows only the URL's scheme and host: the rest of a
/// webhook URL is often the secret (Slack's path, DingTalk's `access_token`).
#[derive(Clone)]
pub struct WebhookSettings {
    /// Channel name used in incident records and logs (`dingtalk-1` unless configured).
    pub name: String,
    pub kind: WebhookKind,
    pub url: String,
    /// Signing secret (DingTalk, Feishu).
    pub secret: Option<Secret>,
    pub timeout: Duration,
    /// Least time between two messages to this webhook (DingTalk allows 20 a minute).
    pub min_interval: Duration,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self
            .url
            .split_once("://")
            .map(|(scheme, rest)| {
                let host = rest.split(['/', '?']).next().unwrap_or("");
                format!("{scheme}://{host}/***")
            })
            .unwrap_or_else(|| "***".to_string());
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &shown)
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_parts_of_a_webhook_url() {
        let w = WebhookSettings {
            name: "slack-1".into(),
            kind: WebhookKind::Slack,
            url: "https://hooks.slack.com/services/T0/B0/SECRETPATH?token=SECRETQ".into(),
            secret: Some(Secret("SECRETSIGN".into())),
            timeout: Duration::from_secs(1),
            min_interval: Duration::ZERO,
        };
        let text = format!("{w:?}");
        assert!(text.contains("https://hooks.slack.com/***"), "{text}");
        for secret in ["SECRETPATH", "SECRETQ", "SECRETSIGN"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
