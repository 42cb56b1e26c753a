//! Tests of the SMTP fixture itself, with `lettre` as a real client: STARTTLS + AUTH capture a
//! message with its envelope and headers, a wrong password or a session without STARTTLS is
//! refused (and nothing is captured), implicit TLS and plain SMTP work, and the server can be
//! taken down and brought back with its messages kept.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use zkwatchdog_tests::smtp::{
    CapturedMail, SmtpOptions, SmtpServer, SmtpTls, DEFAULT_PASSWORD, DEFAULT_USER,
};

const WAIT: Duration = Duration::from_secs(10);
const FROM: &str = "zkwatcher@watch.example";

/// TLS parameters trusting only the fixture's CA, checking the certificate against `name`.
fn tls_params(server: &SmtpServer, name: &str) -> TlsParameters {
    let pem = std::fs::read(server.ca_file()).expect("read the fixture's CA certificate");
    let ca = Certificate::from_pem(&pem).expect("the CA file is PEM");
    TlsParameters::builder(name.to_owned())
        .add_root_certificate(ca)
        .build_rustls()
        .expect("rustls TLS parameters")
}

fn transport(
    server: &SmtpServer,
    tls: Tls,
    credentials: Option<(&str, &str)>,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.smtp_port())
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
    }
    builder.build()
}

fn mail(subject: &str, body: &str, to: &[&str]) -> Message {
    let mut builder = Message::builder()
        .from(format!("zkwatcher <{FROM}>").parse().expect("from address"))
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for rcpt in to {
        builder = builder.to(rcpt.parse().expect("recipient address"));
    }
    builder.body(body.to_owned()).expect("build the message")
}

fn subjects(mails: &[CapturedMail]) -> Vec<&str> {
    mails.iter().map(|m| m.subject.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_auth_capture_a_mail() {
    let server = SmtpServer::start(SmtpOptions::default());
    assert!(server.is_running());
    assert_eq!(
        server.url(),
        format!("smtp://127.0.0.1:{}?tls=required", server.smtp_port())
    );
    assert_eq!(server.credentials(), Some((DEFAULT_USER, DEFAULT_PASSWORD)));
    assert!(server.messages().is_empty());

    let client = transport(
        &server,
        Tls::Required(tls_params(&server, "127.0.0.1")),
        server.credentials(),
    );
    let subject = "Agent flume-1 on host-a is DOWN — no heartbeat for 30 s";
    let body = "Agent flume-1 stopped at 2024-05-01T12:00:00Z.\nLast exit: signal 9 (Killed).\n";
    let to = ["oncall@ops.example", "Team Lead <lead@ops.example>"];
    client
        .send(mail(subject, body, &to))
        .await
        .expect("send over STARTTLS with AUTH");

    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let m = &mails[0];
    assert_eq!(m.subject, subject);
    assert_eq!(m.body.trim_end(), body.trim_end());
    assert_eq!(m.html, None);
    assert_eq!(m.mail_from, FROM);
    assert_eq!(m.rcpt_tos, ["oncall@ops.example", "lead@ops.example"]);
    assert!(m.from.contains(FROM), "From: {}", m.from);
    assert!(
        m.to.contains("oncall@ops.example") && m.to.contains("lead@ops.example"),
        "To: {}",
        m.to
    );
    assert!(m.tls, "the session was encrypted");
    assert_eq!(m.auth_user.as_deref(), Some(DEFAULT_USER));
    assert!(m.raw.contains("Subject: "), "raw: {}", m.raw);
    assert!(m.received_at.ends_with('Z'), "{}", m.received_at);

    server.clear();
    assert!(server.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let server = SmtpServer::start(SmtpOptions::default());
    let client = transport(
        &server,
        Tls::Required(tls_params(&server, "127.0.0.1")),
        Some((DEFAULT_USER, "not-the-password")),
    );
    let err = client
        .send(mail("must not arrive", "x", &["oncall@ops.example"]))
        .await
        .expect_err("a wrong password must be refused");
    assert!(err.is_permanent(), "expected a 5xx refusal, got: {err}");
    // The right password on the same server works (so the refusal was about the password).
    let client = transport(
        &server,
        Tls::Required(tls_params(&server, "127.0.0.1")),
        server.credentials(),
    );
    client
        .send(mail("arrives", "y", &["oncall@ops.example"]))
        .await
        .expect("send with the right password");
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(subjects(&mails), ["arrives"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_without_starttls_is_refused() {
    let server = SmtpServer::start(SmtpOptions::default());
    // Without credentials: MAIL is refused until STARTTLS.
    let err = transport(&server, Tls::None, None)
        .send(mail("plain, no auth", "x", &["oncall@ops.example"]))
        .await
        .expect_err("a session without STARTTLS must be refused");
    assert!(err.is_permanent(), "expected a 5xx refusal, got: {err}");
    // With credentials: AUTH is not even offered before STARTTLS.
    transport(&server, Tls::None, server.credentials())
        .send(mail("plain, auth", "x", &["oncall@ops.example"]))
        .await
        .expect_err("AUTH without STARTTLS must be refused");
    assert!(server.messages().is_empty(), "{:#?}", server.messages());
    assert!(server.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_works() {
    let server = SmtpServer::start(SmtpOptions {
        tls: SmtpTls::Implicit,
        auth: Some(("watcher".to_owned(), "pw-implicit".to_owned())),
        ..SmtpOptions::default()
    });
    assert_eq!(
        server.url(),
        format!("smtps://127.0.0.1:{}", server.smtp_port())
    );
    // A plain-text client gets nowhere on a TLS port (it waits for a greeting that never comes:
    // cut it short).
    let plain = transport(&server, Tls::None, server.credentials());
    let attempt = tokio::time::timeout(
        Duration::from_secs(2),
        plain.send(mail("plain on smtps", "x", &["oncall@ops.example"])),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "plain text on an implicit-TLS port was accepted"
    );
    // Verified against the DNS name of the certificate this time.
    let client = transport(
        &server,
        Tls::Wrapper(tls_params(&server, "localhost")),
        server.credentials(),
    );
    client
        .send(mail(
            "over smtps",
            "implicit TLS body",
            &["oncall@ops.example"],
        ))
        .await
        .expect("send over implicit TLS");
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(subjects(&mails), ["over smtps"]);
    assert_eq!(mails[0].body.trim_end(), "implicit TLS body");
    assert!(mails[0].tls);
    assert_eq!(mails[0].auth_user.as_deref(), Some("watcher"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_server_without_auth() {
    let server = SmtpServer::start(SmtpOptions {
        tls: SmtpTls::None,
        auth: None,
        ..SmtpOptions::default()
    });
    assert_eq!(
        server.url(),
        format!("smtp://127.0.0.1:{}", server.smtp_port())
    );
    transport(&server, Tls::None, None)
        .send(mail("plain", "in the clear", &["oncall@ops.example"]))
        .await
        .expect("send over plain SMTP");
    let mails = server.wait_for_messages(1, WAIT).await;
    assert_eq!(subjects(&mails), ["plain"]);
    assert!(!mails[0].tls, "a plain session is not encrypted");
    assert_eq!(mails[0].auth_user, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_again_keep_messages() {
    let server = SmtpServer::start(SmtpOptions::default());
    let client = transport(
        &server,
        Tls::Required(tls_params(&server, "127.0.0.1")),
        server.credentials(),
    );
    client
        .send(mail("before the outage", "1", &["oncall@ops.example"]))
        .await
        .expect("send before stop");
    server.wait_for_messages(1, WAIT).await;

    let (smtp_port, api_port) = (server.smtp_port(), server.api_port());
    server.stop();
    assert!(!server.is_running());
    server.stop(); // stopping twice is fine
    assert!(server.try_messages().is_err(), "the API is down too");
    client
        .send(mail("during the outage", "2", &["oncall@ops.example"]))
        .await
        .expect_err("sending while the server is down");

    server.start_again();
    assert!(server.is_running());
    server.start_again(); // a no-op while running
    assert_eq!(
        (server.smtp_port(), server.api_port()),
        (smtp_port, api_port)
    );
    client
        .send(mail("after the outage", "3", &["oncall@ops.example"]))
        .await
        .expect("send after start_again");
    let mails = server.wait_for_messages(2, WAIT).await;
    assert_eq!(subjects(&mails), ["before the outage", "after the outage"]);
}
