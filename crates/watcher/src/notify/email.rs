//! The email channel: one plain-text message per notice through an SMTP relay, with `lettre`
//! over Tokio and rustls.
//!
//! The transport keeps a small pool of SMTP connections. A pooled connection is checked with
//! `NOOP` before it is reused and dropped when broken, so a relay that restarted between two
//! notices costs nothing but a reconnect: the next `send` opens a fresh connection.

use std::fmt;
use std::sync::OnceLock;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::{EmailSettings, EmailTls};
use super::{render, BuildError, SendError};
use crate::notice::{Notice, Origin};

/// At most this many agent ids go into the `X-Zkwatchdog-Agents` header.
const AGENTS_HEADER_MAX: usize = 50;

pub(crate) struct Email {
    /// Complete transport configuration; turned into the transport on the first send, because
    /// lettre's pool spawns a Tokio task and so needs a runtime.
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    /// `host:port`, for messages.
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Email {
    fn drop(&mut self) {
        // lettre's pool spawns a Tokio task when it is dropped, which panics outside a runtime
        // (a channel dropped after the runtime ended). Then there is nothing left to close
        // politely anyway: leak the idle connections instead.
        if tokio::runtime::Handle::try_current().is_err() {
            if let Some(transport) = self.transport.take() {
                std::mem::forget(transport);
            }
        }
    }
}

impl Email {
    pub(crate) fn new(settings: &EmailSettings) -> Result<Email, BuildError> {
        let from = parse_mailbox("from", &settings.from)?;
        let to = settings
            .to
            .iter()
            .map(|to| parse_mailbox("to", to))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(BuildError::NoRecipients);
        }

        let host = settings.host.clone();
        let tls = match settings.tls {
            EmailTls::None => None,
            EmailTls::StartTls => Some(Tls::Required(tls_parameters(settings)?)),
            EmailTls::Implicit => Some(Tls::Wrapper(tls_parameters(settings)?)),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(settings.port)
            .timeout(Some(settings.timeout));
        if let Some(tls) = tls {
            builder = builder.tls(tls);
        }
        if let Some(username) = &settings.username {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default();
            builder = builder
                .credentials(Credentials::new(username.clone(), password))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }

        Ok(Email {
            builder,
            transport: OnceLock::new(),
            server: format!("{host}:{}", settings.port),
            from,
            to,
            subject_prefix: settings.subject_prefix.clone(),
        })
    }

    pub(crate) async fn send(&self, notice: &Notice, origin: &Origin) -> Result<(), SendError> {
        let rendered = render::render(notice, origin, &self.subject_prefix);
        let message = self.message(notice, rendered)?;
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        match transport.send(message).await {
            Ok(response) if response.is_positive() => Ok(()),
            Ok(response) => Err(SendError::new(format!(
                "email via {}: the server answered {} after DATA: {}",
                self.server,
                response.code(),
                one_line(&response.message().collect::<Vec<_>>().join(" "))
            ))),
            Err(err) => Err(SendError::new(format!(
                "email via {}: {}",
                self.server,
                one_line(&err.to_string())
            ))),
        }
    }

    fn message(&self, notice: &Notice, rendered: render::Rendered) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        if let Notice::Incidents { items } = notice {
            let mut ids: Vec<&str> = items.iter().map(|i| i.agent.as_str()).collect();
            if !ids.is_empty() {
                let more = ids.len().saturating_sub(AGENTS_HEADER_MAX);
                ids.truncate(AGENTS_HEADER_MAX);
                let mut value = ids.join(", ");
                if more > 0 {
                    value.push_str(&format!(", and {more} more"));
                }
                builder = builder.header(AgentsHeader(value));
            }
        }
        builder
            .body(rendered.text)
            .map_err(|err| SendError::new(format!("email: cannot build the message: {err}")))
    }
}

fn parse_mailbox(field: &'static str, value: &str) -> Result<Mailbox, BuildError> {
    value.parse().map_err(|source| BuildError::Address {
        field,
        value: value.to_string(),
        source,
    })
}

fn tls_parameters(settings: &EmailSettings) -> Result<TlsParameters, BuildError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| BuildError::CaFile {
            path: path.clone(),
            source,
        })?;
        // lettre reads a file without any PEM block as zero certificates, silently.
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(BuildError::NoCertificate { path: path.clone() });
        }
        let certificate = Certificate::from_pem(&pem).map_err(|source| BuildError::Tls {
            host: settings.host.clone(),
            source,
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|source| BuildError::Tls {
        host: settings.host.clone(),
        source,
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `X-Zkwatchdog-Agents: id1, id2`: lets mail filters and scripts see which agents a message is
/// about without parsing the body.
#[derive(Debug, Clone)]
struct AgentsHeader(String);

impl Header for AgentsHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Zkwatchdog-Agents")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AgentsHeader(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::notify::settings::Secret;
    use crate::notify::Channel;

    fn settings() -> EmailSettings {
        EmailSettings {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: EmailTls::None,
            username: Some("alerts".into()),
            password: Some(Secret("hunter2-smtp".into())),
            from: "zkwatchdog <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into(), "Ops <ops@example.com>".into()],
            ca_file: None,
            timeout: Duration::from_secs(5),
            subject_prefix: "[zkwatchdog]".into(),
        }
    }

    #[test]
    fn good_settings_build_a_channel_without_a_runtime() {
        let channel = Channel::email(&settings()).expect("valid settings");
        assert_eq!(channel.name(), "email");
        assert_eq!(channel.min_interval(), Duration::ZERO);
        let debug = format!("{channel:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        // Dropped here, outside any runtime: must not panic.
    }

    #[test]
    fn tls_modes_build() {
        for tls in [EmailTls::StartTls, EmailTls::Implicit] {
            let mut s = settings();
            s.tls = tls;
            Channel::email(&s).expect("tls settings build");
        }
    }

    #[test]
    fn bad_from_address_is_named() {
        let mut s = settings();
        s.from = "zkwatchdog <not an address>".into();
        let err = Channel::email(&s).expect_err("bad from");
        assert!(
            matches!(err, BuildError::Address { field: "from", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("not an address"), "{err}");

        let mut s = settings();
        s.to.push("nobody".into());
        let err = Channel::email(&s).expect_err("bad to");
        assert!(
            err.to_string().contains("invalid to address \"nobody\""),
            "{err}"
        );

        let mut s = settings();
        s.to.clear();
        assert!(matches!(
            Channel::email(&s).expect_err("no recipients"),
            BuildError::NoRecipients
        ));
    }

    #[test]
    fn unreadable_or_empty_ca_file_is_named() {
        let mut s = settings();
        s.tls = EmailTls::StartTls;
        s.ca_file = Some(PathBuf::from("/nonexistent/zkwatchdog-ca.pem"));
        let err = Channel::email(&s).expect_err("missing ca file");
        assert!(matches!(err, BuildError::CaFile { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/zkwatchdog-ca.pem"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("zkwatcher-email-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("not-a-cert.pem");
        std::fs::write(&path, "hello\n").expect("write");
        s.ca_file = Some(path.clone());
        let err = Channel::email(&s).expect_err("no certificate");
        assert!(matches!(err, BuildError::NoCertificate { .. }), "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn refused_connection_is_a_send_error_naming_the_server() {
        // A port nobody listens on: bind, learn the port, close.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mut s = settings();
        s.port = port;
        let channel = Channel::email(&s).expect("channel");
        let origin = Origin {
            zk_hosts: "127.0.0.1:2181".into(),
            root: "/zkwatchdog".into(),
            watcher_host: "w1".into(),
        };
        let err = channel
            .send(&Notice::Test, &origin)
            .await
            .expect_err("nobody listens");
        assert!(
            err.message.contains(&format!("127.0.0.1:{port}")),
            "{}",
            err.message
        );
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(!err.message.contains('\n'));
    }
}
