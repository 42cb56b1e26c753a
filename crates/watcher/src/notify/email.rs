//! The email channel: one plain-text message per notice through an SMTP relay, with `lettre`
//! over Tokio and rustls.
//!
//! The transport keeps a small pool of SMTP connections. A pooled connection is checked with
//! `NOOP` before it is reused and dropped when broken, so a relay that restarted between two
//! notices costs nothing but a reconnect: the next `send` opens a fresh connection. A transaction
//! dropped in the middle (a leader whose [lease](crate::lease) ran out) leaves its connection in
//! an unknown state, and lettre would put it back into the pool: the whole pool is then replaced,
//! and its connections closed.
//!
//! Messages are bounded ([`render::TEXT_CAP`]) and never too big for good: a batch whose agents
//! cannot all be named within the cap, or that the server refuses as too big (552, "message
//! size exceeds …"), is sent as two halves, recursively; one agent refused as too big is sent
//! once more with one line instead of its full description. Each part carries its own
//! deterministic `Message-ID` (`key.rs`); parts the server accepted are remembered, so that when
//! a later part fails and the dispatcher retries the whole batch, they are not sent again.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::settings::{EmailSettings, EmailTls};
use super::{key, render, BuildError, SendError};
use crate::notice::{Notice, NoticeItem, Origin};
use crate::notify::render::one_line;

/// At most this many agent ids go into the `X-Zkwatchdog-Agents` header.
const AGENTS_HEADER_MAX: usize = 50;

/// How many accepted `Message-ID`s the channel remembers (parts of split batches).
const ACCEPTED_MEMORY: usize = 4_096;

/// The channel's name in incident records, and in its message ids.
const CHANNEL: &str = "email";

pub(crate) struct Email {
    /// Complete transport configuration; turned into the transport on the first send, because
    /// lettre's pool spawns a Tokio task and so needs a runtime.
    builder: AsyncSmtpTransportBuilder,
    transport: Mutex<Option<AsyncSmtpTransport<Tokio1Executor>>>,
    /// `host:port`, for messages.
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
    /// `Message-ID`s the server accepted lately, oldest first.
    accepted: Mutex<VecDeque<String>>,
}

/// Why one message did not go out.
enum Refusal {
    /// The server refused it as too big: a smaller message may pass.
    TooBig(SendError),
    /// Anything else: the dispatcher retries later.
    Other(SendError),
}

/// Alive while a transaction is under way: dropped with it (the send was abandoned), it drops the
/// pool, so that no later message goes out on a connection left in the middle of a transaction.
struct Unfinished<'a>(&'a Email);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let mut slot = self.0.transport.lock().unwrap_or_else(|p| p.into_inner());
        if slot.take().is_some() {
            tracing::debug!(
                channel = CHANNEL,
                "an SMTP transaction was abandoned: its connection pool is replaced"
            );
        }
    }
}

/// What the channel sends next: a part of the notice, described in full or on one line per
/// agent.
struct Part<'a> {
    notice: Cow<'a, Notice>,
    brief: bool,
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
            let slot = self.transport.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Some(transport) = slot.take() {
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
            transport: Mutex::new(None),
            server: format!("{host}:{}", settings.port),
            from,
            to,
            subject_prefix: settings.subject_prefix.clone(),
            accepted: Mutex::new(VecDeque::new()),
        })
    }

    /// Sends `notice`, split into parts if it is too big (module documentation); `Ok` once the
    /// server accepted every part.
    pub(crate) async fn send(&self, notice: &Notice, origin: &Origin) -> Result<(), SendError> {
        // Depth first, the first half before the second: parts go out in the notice's order.
        let mut todo = vec![Part {
            notice: Cow::Borrowed(notice),
            brief: false,
        }];
        while let Some(part) = todo.pop() {
            let rendered = match part.brief {
                false => render::render(&part.notice, origin, &self.subject_prefix),
                true => render::render_brief(&part.notice, origin, &self.subject_prefix),
            };
            if rendered.unlisted > 0 {
                if let Some(halves) = halves(&part.notice) {
                    todo.extend(halves.into_iter().rev());
                    continue;
                }
            }
            let id = key::message_id(&key::notification_key(
                CHANNEL,
                &part.notice,
                SystemTime::now(),
            ));
            if self.was_accepted(&id) {
                continue;
            }
            let message = self.message(&part.notice, rendered, &id)?;
            match self.deliver(message).await {
                Ok(()) => self.remember(id),
                Err(Refusal::TooBig(err)) => match halves(&part.notice) {
                    Some(halves) => {
                        tracing::warn!(
                            channel = CHANNEL,
                            agents = part_len(&part.notice),
                            error = %err.message,
                            "the mail server refused a message as too big; sending it in two halves"
                        );
                        todo.extend(halves.into_iter().rev());
                    }
                    None if !part.brief && matches!(*part.notice, Notice::Incidents { .. }) => todo
                        .push(Part {
                            notice: part.notice,
                            brief: true,
                        }),
                    None => return Err(err),
                },
                Err(Refusal::Other(err)) => return Err(err),
            }
        }
        Ok(())
    }

    /// One SMTP transaction.
    async fn deliver(&self, message: Message) -> Result<(), Refusal> {
        let transport = self
            .transport
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| self.builder.clone().build())
            .clone();
        let unfinished = Unfinished(self);
        let result = transport.send(message).await;
        std::mem::forget(unfinished);
        match result {
            Ok(response) if response.is_positive() => Ok(()),
            Ok(response) => {
                let text = one_line(&response.message().collect::<Vec<_>>().join(" "));
                let err = SendError::new(format!(
                    "email via {}: the server answered {} after DATA: {text}",
                    self.server,
                    response.code(),
                ));
                match too_big(&response.code().to_string(), &text) {
                    true => Err(Refusal::TooBig(err)),
                    false => Err(Refusal::Other(err)),
                }
            }
            Err(e) => {
                let text = one_line(&e.to_string());
                let err = SendError::new(format!("email via {}: {text}", self.server));
                let code = e.status().map(|c| c.to_string()).unwrap_or_default();
                match e.is_permanent() && too_big(&code, &text) {
                    true => Err(Refusal::TooBig(err)),
                    false => Err(Refusal::Other(err)),
                }
            }
        }
    }

    fn was_accepted(&self, id: &str) -> bool {
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        accepted.iter().any(|a| a == id)
    }

    fn remember(&self, id: String) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        if accepted.len() >= ACCEPTED_MEMORY {
            accepted.pop_front();
        }
        accepted.push_back(id);
    }

    fn message(
        &self,
        notice: &Notice,
        rendered: render::Rendered,
        message_id: &str,
    ) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject)
            .message_id(Some(message_id.to_string()))
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

/// Whether an SMTP refusal (`code`, `text`) says the message is too big: 552 ("exceeded storage
/// allocation", what RFC 5321 prescribes for a message over the SIZE limit), or another
/// permanent code whose text says so (some servers answer 554 or 550 "message too large").
fn too_big(code: &str, text: &str) -> bool {
    if code == "552" {
        return true;
    }
    let text = text.to_ascii_lowercase();
    code.starts_with('5')
        && ["size", "too big", "too large", "too long", "too much"]
            .iter()
            .any(|w| text.contains(w))
}

/// The two halves of a grouped notice; `None` for a notice of one agent or none.
fn halves(notice: &Notice) -> Option<[Part<'static>; 2]> {
    let Notice::Incidents { items } = notice else {
        return None;
    };
    if items.len() < 2 {
        return None;
    }
    let (first, second) = items.split_at(items.len() / 2);
    let part = |items: &[NoticeItem]| Part {
        notice: Cow::Owned(Notice::Incidents {
            items: items.to_vec(),
        }),
        brief: false,
    };
    Some([part(first), part(second)])
}

fn part_len(notice: &Notice) -> usize {
    match notice {
        Notice::Incidents { items } => items.len(),
        _ => 1,
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
    fn size_refusals_are_told_apart_from_other_refusals() {
        let cases = [
            ("552", "Error: Too much mail data", true),
            (
                "552",
                "5.3.4 Message size exceeds fixed maximum message size",
                true,
            ),
            ("552", "5.2.2 Mailbox full", true),
            ("554", "5.3.4 Message too big for system", true),
            ("550", "5.3.4 Message size exceeds limit", true),
            ("554", "5.7.1 Relay access denied", false),
            ("550", "5.1.1 User unknown", false),
            ("451", "4.3.0 Message size temporarily over quota", false),
            ("421", "Too much load, try later", false),
            ("", "connection refused", false),
        ];
        for (code, text, want) in cases {
            assert_eq!(too_big(code, text), want, "{code} {text}");
        }
    }

    #[test]
    fn halves_keep_the_order_and_every_agent() {
        use crate::notify::render::tests::crashed;
        let items: Vec<_> = (0..5).map(|i| crashed(&format!("a{i}@h"))).collect();
        let [first, second] = halves(&Notice::Incidents { items }).expect("five agents split");
        let ids = |p: &Part| match &*p.notice {
            Notice::Incidents { items } => items.iter().map(|i| i.agent.clone()).collect(),
            _ => Vec::new(),
        };
        assert_eq!(ids(&first), ["a0@h", "a1@h"]);
        assert_eq!(ids(&second), ["a2@h", "a3@h", "a4@h"]);
        assert!(halves(&Notice::Incidents {
            items: vec![crashed("x@h")]
        })
        .is_none());
        assert!(halves(&Notice::Test).is_none());
    }

    #[test]
    fn the_message_carries_the_given_message_id() {
        use crate::notify::render::tests::{crashed, origin};
        let email = Email::new(&settings()).expect("email");
        let notice = Notice::Incidents {
            items: vec![crashed("x@h")],
        };
        let rendered = render::render(&notice, &origin(), "[zkwatchdog]");
        let message = email
            .message(&notice, rendered, "<0123abcd@zkwatcher>")
            .expect("message");
        let raw = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(
            raw.contains("Message-ID: <0123abcd@zkwatcher>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("X-Zkwatchdog-Agents: x@h\r\n"), "{raw}");
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
