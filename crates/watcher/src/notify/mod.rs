//! The notification channels: one email channel (SMTP) and any number of webhooks (generic JSON,
//! DingTalk, Feishu, Slack). A [`Channel`] is built once from its settings and then sends
//! [`Notice`]s; `send` succeeds only when the receiving server accepted the message, so the
//! dispatcher can keep an incident un-notified and retry (DESIGN.md section 2, at-least-once).

mod email;
mod escape;
mod key;
pub(crate) mod render;
pub(crate) use render::one_line;
pub mod settings;
pub mod sign;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use render::{humanize, render, Rendered, DEFAULT_SUBJECT_PREFIX, MARKDOWN_CAP, TEXT_CAP};

use crate::notice::{Notice, Origin};
use settings::{EmailSettings, WebhookSettings};

/// A message the channel did not get accepted. The message is one line naming the channel and
/// the reason; it never contains a password, a signing secret or a webhook URL's token.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// The receiver asked us to wait this long before the next attempt (HTTP 429
    /// `Retry-After`, DingTalk's rate limit).
    pub retry_after: Option<Duration>,
}

impl SendError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Settings that cannot make a working channel.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("email: invalid {field} address {value:?}")]
    Address {
        field: &'static str,
        value: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("email: no recipient (`to` is empty)")]
    NoRecipients,
    #[error("email: cannot read ca-file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("email: ca-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("email: cannot set up TLS for {host}")]
    Tls {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The URL itself is not shown: webhook URLs carry access tokens.
    #[error("webhook {name}: invalid url: {reason}")]
    Url { name: String, reason: String },
    #[error("webhook {name}: cannot build the HTTP client")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One notification channel. Cheap to clone: clones share the SMTP connection pool or the HTTP
/// client.
#[derive(Debug, Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
enum Inner {
    /// Both boxed: the variants differ in size.
    Email(Box<email::Email>),
    Webhook(Box<webhook::Webhook>),
}

impl Channel {
    /// The email channel. Checks the addresses and reads the CA file now; the SMTP connection
    /// is opened by the first `send`.
    pub fn email(settings: &EmailSettings) -> Result<Channel, BuildError> {
        Ok(Channel {
            inner: Arc::new(Inner::Email(Box::new(email::Email::new(settings)?))),
        })
    }

    /// One webhook channel.
    pub fn webhook(settings: &WebhookSettings) -> Result<Channel, BuildError> {
        Ok(Channel {
            inner: Arc::new(Inner::Webhook(Box::new(webhook::Webhook::new(settings)?))),
        })
    }

    /// `email`, or the webhook's configured name; the key of this channel in incident records.
    pub fn name(&self) -> &str {
        match &*self.inner {
            Inner::Email(_) => "email",
            Inner::Webhook(w) => w.name(),
        }
    }

    /// Least time between two messages on this channel (zero for email).
    pub fn min_interval(&self) -> Duration {
        match &*self.inner {
            Inner::Email(_) => Duration::ZERO,
            Inner::Webhook(w) => w.min_interval(),
        }
    }

    /// Sends one notice; `Ok` only once the server accepted it (SMTP 250 after DATA; HTTP 2xx
    /// and, for DingTalk and Feishu, a zero error code in the reply).
    pub async fn send(&self, notice: &Notice, origin: &Origin) -> Result<(), SendError> {
        match &*self.inner {
            Inner::Email(e) => e.send(notice, origin).await,
            Inner::Webhook(w) => w.send(notice, origin).await,
        }
    }
}
