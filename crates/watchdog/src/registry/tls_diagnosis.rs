//! Why a connection to ZooKeeper failed when TLS is (or should be) involved. The client reports a
//! failed TLS handshake only as "no available hosts" (its cause is logged at debug level and
//! dropped), so after a failed connect [`diagnose`] makes one handshake per server itself, with
//! the same CA and client certificate, and names the cause and the key to fix: an untrusted
//! server certificate (`zk-tls.ca-file`), a missing or rejected client certificate
//! (`zk-tls.cert-file`), a plaintext port where TLS was expected, or a TLS port spoken to in
//! plaintext (no `[zk-tls]`). The classification of handshake errors is pure ([`classify`]).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::access::ZkTls;

/// Bound on one probe (TCP connect, handshake and a short read), per server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// After a handshake that succeeded: how long to wait for a late alert (TLS 1.3 servers reject a
/// client certificate only after the client's side of the handshake is done).
const LATE_ALERT_WAIT: Duration = Duration::from_millis(300);
/// The error our "does it speak TLS?" verifier returns, to stop the handshake there.
const SPEAKS_TLS_MARK: &str = "zkwatchdog probe: the server sent a TLS certificate";

/// One server of a connect string, as the client speaks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tcp+tls" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The servers of `connect` (`host[:port],...[/chroot]`, each optionally `tcp://` or
/// `tcp+tls://`), spoken to over TLS by default when `tls_default` (as `secure_connect` does).
/// Entries that do not parse are left out: the client has rejected them already.
pub fn endpoints(connect: &str, tls_default: bool) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for entry in connect.split(',') {
        let entry = entry.trim();
        let (tls, rest) = if let Some(rest) = entry.strip_prefix("tcp+tls://") {
            (true, rest)
        } else if let Some(rest) = entry.strip_prefix("tcp://") {
            (false, rest)
        } else {
            (tls_default, entry)
        };
        // A chroot follows the last server.
        let address = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                continue;
            };
            (host, after.strip_prefix(':').unwrap_or(""))
        } else {
            match address.rsplit_once(':') {
                Some((host, port)) => (host, port),
                None => (address, ""),
            }
        };
        let port = if port.is_empty() {
            2181
        } else {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => continue,
            }
        };
        if !host.is_empty() {
            out.push(Endpoint {
                host: host.to_owned(),
                port,
                tls,
            });
        }
    }
    out
}

/// What a probe of one server found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The server's certificate is not signed by a CA in `zk-tls.ca-file`.
    UntrustedServer(String),
    /// The certificate does not name the host or address connected to.
    NameMismatch(String),
    /// The server wants a client certificate and none is configured.
    ClientCertRequired(String),
    /// The server rejected the configured client certificate.
    ClientCertRejected(String),
    /// TLS was expected but the server does not speak it on that port.
    NotTls(String),
    /// Plain TCP was used but the server speaks TLS on that port.
    SpeaksTls,
    /// The server is written `tcp+tls://` but there is no `[zk-tls]` table (not probed).
    TlsNotConfigured,
    /// Another TLS failure, in rustls' words.
    Other(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::UntrustedServer(e) => write!(
                f,
                "TLS handshake failed: the server's certificate is not trusted ({e}); \
                 zk-tls.ca-file must hold the CA that signed it"
            ),
            Finding::NameMismatch(e) => write!(
                f,
                "TLS handshake failed: the server's certificate does not name this host ({e}); \
                 connect by a name or address in its subjectAltName"
            ),
            Finding::ClientCertRequired(e) => write!(
                f,
                "TLS handshake failed: the server requires a client certificate ({e}); \
                 set zk-tls.cert-file and zk-tls.key-file"
            ),
            Finding::ClientCertRejected(e) => write!(
                f,
                "TLS handshake failed: the server rejected our client certificate ({e}); \
                 zk-tls.cert-file must be signed by a CA in the server's ssl.trustStore"
            ),
            Finding::NotTls(e) => write!(
                f,
                "the server does not speak TLS on this port ({e}); is it the plaintext \
                 clientPort? Use its secureClientPort, or write tcp://HOST:PORT for plain TCP"
            ),
            Finding::SpeaksTls => write!(
                f,
                "the server speaks TLS on this port (a secureClientPort): configure [zk-tls] \
                 (ca-file, and cert-file/key-file if it requires client certificates), or use \
                 its plaintext clientPort"
            ),
            Finding::TlsNotConfigured => write!(
                f,
                "written tcp+tls:// but TLS is not configured: add a [zk-tls] table (ca-file)"
            ),
            Finding::Other(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// Classifies a failed TLS handshake (or a read right after it). `with_identity`: whether a
/// client certificate was offered. `None` when the error says nothing about TLS (e.g. the
/// connection was refused).
pub fn classify(error: &io::Error, with_identity: bool) -> Option<Finding> {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return Some(classify_tls(tls, with_identity));
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Some(Finding::NotTls(format!(
            "it closed the connection during the handshake: {error}"
        ))),
        _ => None,
    }
}

fn classify_tls(e: &rustls::Error, with_identity: bool) -> Finding {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Finding::NameMismatch(e.to_string()),
        E::InvalidCertificate(
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::InvalidPurpose
            | CertificateError::ApplicationVerificationFailure,
        ) => Finding::UntrustedServer(e.to_string()),
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            | AlertDescription::HandshakeFailure,
        ) => {
            if with_identity {
                Finding::ClientCertRejected(e.to_string())
            } else {
                Finding::ClientCertRequired(e.to_string())
            }
        }
        E::General(mark) if mark == SPEAKS_TLS_MARK => Finding::SpeaksTls,
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            Finding::NotTls(format!("it answered with something else: {e}"))
        }
        _ => Finding::Other(e.to_string()),
    }
}

/// Probes every server of `hosts` (at most 3 s each, all at once) and describes
/// what is wrong with TLS, one `endpoint: finding` per server with a finding; `None` if no
/// server shows a TLS problem (it is then down, unreachable, or failing for another reason).
pub async fn diagnose(hosts: &str, tls: Option<&ZkTls>) -> Option<String> {
    let config = match tls {
        Some(tls) => match verifying_config(tls) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => return Some(format!("the [zk-tls] certificates are unusable: {e}")),
        },
        None => None,
    };
    let with_identity = tls.is_some_and(|t| t.identity.is_some());
    let mut probes = tokio::task::JoinSet::new();
    let mut found: Vec<(usize, Endpoint, Finding)> = Vec::new();
    for (i, endpoint) in endpoints(hosts, tls.is_some()).into_iter().enumerate() {
        let config = match (&config, endpoint.tls) {
            (Some(c), true) => Some(c.clone()),
            (None, true) => {
                found.push((i, endpoint, Finding::TlsNotConfigured));
                continue;
            }
            (_, false) => None,
        };
        probes.spawn(async move {
            let finding =
                tokio::time::timeout(PROBE_TIMEOUT, probe(&endpoint, config, with_identity))
                    .await
                    .ok()
                    .flatten();
            (i, endpoint, finding)
        });
    }
    while let Some(done) = probes.join_next().await {
        if let Ok((i, endpoint, Some(finding))) = done {
            found.push((i, endpoint, finding));
        }
    }
    found.sort_by_key(|(i, _, _)| *i);
    let lines: Vec<String> = found
        .into_iter()
        .map(|(_, endpoint, finding)| format!("{endpoint}: {finding}"))
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// One server: a handshake with `config` (TLS endpoints) or with a verifier that only notes
/// whether the server sends a certificate at all (plain endpoints).
async fn probe(
    endpoint: &Endpoint,
    config: Option<Arc<ClientConfig>>,
    with_identity: bool,
) -> Option<Finding> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .ok()?;
    let name = ServerName::try_from(endpoint.host.clone()).ok()?;
    let expecting_tls = config.is_some();
    let config = config.unwrap_or_else(|| Arc::new(speaks_tls_config()));
    match TlsConnector::from(config).connect(name, tcp).await {
        // A plaintext server closes the connection on a ClientHello, as it would when not
        // serving (e.g. during a leader election): for plain endpoints only a TLS answer counts.
        Err(e) if !expecting_tls => {
            classify(&e, with_identity).filter(|f| *f == Finding::SpeaksTls)
        }
        Err(e) => classify(&e, with_identity),
        Ok(_) if !expecting_tls => Some(Finding::SpeaksTls),
        Ok(mut stream) => {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(LATE_ALERT_WAIT, stream.read(&mut byte)).await {
                Ok(Err(e)) => {
                    classify(&e, with_identity).filter(|f| !matches!(f, Finding::NotTls(_)))
                }
                _ => None,
            }
        }
    }
}

/// The rustls configuration the client uses: trust the configured CA, offer the client
/// certificate if any. Same provider as the client's (see `Session::connect`).
pub(crate) fn verifying_config(tls: &ZkTls) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("zk-tls.ca-file: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("zk-tls.ca-file: {e}"))?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match &tls.identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("zk-tls.cert-file: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.expose().as_bytes())
                .map_err(|e| format!("zk-tls.key-file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("zk-tls.cert-file/key-file: {e}"))
        }
    }
}

/// A configuration whose verifier stops every handshake at the server's certificate: enough to
/// learn that the server speaks TLS, and nothing is ever sent over such a connection.
fn speaks_tls_config() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions are supported by the default provider")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(StopAtCertificate(schemes)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct StopAtCertificate(Vec<rustls::SignatureScheme>);

impl ServerCertVerifier for StopAtCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(SPEAKS_TLS_MARK.to_owned()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(SPEAKS_TLS_MARK.to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(SPEAKS_TLS_MARK.to_owned()))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tcp_tls_host_without_zk_tls_is_named_without_probing() {
        let found = diagnose("tcp+tls://zk.invalid:2281", None).await;
        assert_eq!(
            found.as_deref(),
            Some(
                "tcp+tls://zk.invalid:2281: written tcp+tls:// but TLS is not configured: \
                 add a [zk-tls] table (ca-file)"
            )
        );
    }

    /// A loopback server that accepts connections and closes each at once, as a plaintext
    /// ZooKeeper does when it receives a TLS ClientHello (or is not serving).
    async fn closing_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        port
    }

    #[tokio::test]
    async fn a_closed_connection_is_news_only_when_tls_was_expected() {
        let port = closing_server().await;
        let plain = format!("127.0.0.1:{port}");
        assert_eq!(
            diagnose(&plain, None).await,
            None,
            "plain TCP: no TLS finding"
        );
        // A configuration whose files do not parse is reported as such, before any probing.
        let junk = ZkTls {
            ca_pem: "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".into(),
            identity: None,
        };
        let found = diagnose(&plain, Some(&junk)).await.unwrap_or_default();
        assert!(found.contains("zk-tls.ca-file"), "{found}");
    }

    fn ep(host: &str, port: u16, tls: bool) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            tls,
        }
    }

    #[test]
    fn connect_strings_are_split_into_endpoints() {
        assert_eq!(
            endpoints("zk1:2281,tcp://zk2:2181,tcp+tls://zk3/chroot/x", true),
            [
                ep("zk1", 2281, true),
                ep("zk2", 2181, false),
                ep("zk3", 2181, true)
            ]
        );
        assert_eq!(
            endpoints("127.0.0.1:2181,[::1]:2182/app", false),
            [ep("127.0.0.1", 2181, false), ep("::1", 2182, false)]
        );
        assert_eq!(
            endpoints("zk1:0,zk2:x,:1,zk3", false),
            [ep("zk3", 2181, false)]
        );
        assert_eq!(ep("::1", 1, true).to_string(), "tcp+tls://[::1]:1");
    }

    fn tls_err(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn handshake_errors_are_classified() {
        let unknown = tls_err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(matches!(
            classify(&unknown, true),
            Some(Finding::UntrustedServer(_))
        ));
        let name = tls_err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert!(matches!(
            classify(&name, true),
            Some(Finding::NameMismatch(_))
        ));
        let alert = || {
            tls_err(rustls::Error::AlertReceived(
                AlertDescription::BadCertificate,
            ))
        };
        assert!(matches!(
            classify(&alert(), false),
            Some(Finding::ClientCertRequired(_))
        ));
        assert!(matches!(
            classify(&alert(), true),
            Some(Finding::ClientCertRejected(_))
        ));
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert!(matches!(classify(&eof, true), Some(Finding::NotTls(_))));
        let mark = tls_err(rustls::Error::General(SPEAKS_TLS_MARK.into()));
        assert_eq!(classify(&mark, false), Some(Finding::SpeaksTls));
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify(&refused, true), None);
    }

    #[test]
    fn findings_name_the_key_to_fix() {
        let text = |f: Finding| f.to_string();
        assert!(text(Finding::UntrustedServer("x".into())).contains("zk-tls.ca-file"));
        assert!(text(Finding::ClientCertRequired("x".into())).contains("zk-tls.cert-file"));
        assert!(text(Finding::ClientCertRejected("x".into())).contains("zk-tls.cert-file"));
        assert!(text(Finding::SpeaksTls).contains("[zk-tls]"));
        assert!(text(Finding::NotTls("x".into())).contains("tcp://"));
        assert!(text(Finding::TlsNotConfigured).contains("[zk-tls]"));
    }
}
