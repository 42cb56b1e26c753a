//! The settings both programs share, written once: where ZooKeeper is and how to reach it
//! (`zk-hosts`, `root`, `session-timeout`, digest credentials in `[zk-auth]`, TLS in
//! `[zk-tls]`), how the program logs (`log-format`) and where it serves metrics
//! (`metrics-addr`). [`RawShared`] is those keys as written (parsed from the same file as each
//! program's own keys, see [`crate::configfile::parse_toml_split`]), [`ZkArgs`] their command-line
//! flags, and [`RawShared::validate`] the one validation, every problem named by its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::configfile::{parse_duration, Problems};
use crate::logging::LogFormat;
use crate::registry::{Layout, DEFAULT_ROOT};
pub use crate::registry::{ZkAccess, ZkAuth, ZkTls, ZkTlsIdentity};
use crate::secret::{read_secret, Secret};

/// Default `zk-hosts`.
pub const DEFAULT_ZK_HOSTS: &str = "127.0.0.1:2181";

/// Default `session-timeout`.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The shared keys as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawShared {
    pub zk_hosts: Option<String>,
    pub root: Option<String>,
    pub session_timeout: Option<String>,
    pub zk_auth: Option<RawZkAuth>,
    pub zk_tls: Option<RawZkTls>,
    pub log_format: Option<String>,
    pub metrics_addr: Option<String>,
}

/// The shared keys, validated.
#[derive(Debug, Clone)]
pub struct Shared {
    pub zk_hosts: String,
    pub layout: Layout,
    pub session_timeout: Duration,
    /// Credentials and TLS (`[zk-auth]`, `[zk-tls]`).
    pub zk_access: ZkAccess,
    /// `log-format`, when the file sets it (the `--log-format` flag wins).
    pub log_format: Option<LogFormat>,
    /// Where the program serves Prometheus metrics (`metrics-addr`); off when unset.
    pub metrics_addr: Option<SocketAddr>,
}

/// The shared flags of both command lines (flattened into each subcommand that reads the
/// config); each one, when given, wins over the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ZkArgs {
    /// Config file (TOML); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// ZooKeeper connect string, e.g. "zk1:2181,zk2:2181[/chroot]".
    #[arg(long = "zk", value_name = "HOSTS", env = "ZK_HOSTS")]
    pub zk_hosts: Option<String>,
    /// Registry root znode [default: /zkwatchdog].
    #[arg(long, value_name = "PATH")]
    pub root: Option<String>,
    /// ZooKeeper session timeout, e.g. "10s".
    #[arg(long, value_name = "DURATION")]
    pub session_timeout: Option<String>,
}

impl ZkArgs {
    /// Where the config comes from, as errors name it: the file, or `command line`.
    pub fn origin(&self) -> String {
        self.config
            .as_deref()
            .map_or_else(|| "command line".to_string(), |p| p.display().to_string())
    }
}

impl RawShared {
    /// Applies the flags (and `metrics_addr`, a flag of the commands that serve metrics).
    pub fn apply(&mut self, args: &ZkArgs, metrics_addr: Option<String>) {
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                slot.clone_from(v);
            }
        };
        set(&mut self.zk_hosts, &args.zk_hosts);
        set(&mut self.root, &args.root);
        set(&mut self.session_timeout, &args.session_timeout);
        set(&mut self.metrics_addr, &metrics_addr);
    }

    /// Validates the shared keys, recording every problem in `p`; relative file names are
    /// resolved against `base` (the config file's directory). `None` when the root is invalid
    /// (its problem is recorded).
    pub fn validate(self, p: &mut Problems, base: &Path) -> Option<Shared> {
        let zk_hosts = self
            .zk_hosts
            .unwrap_or_else(|| DEFAULT_ZK_HOSTS.to_string());
        if zk_hosts.trim().is_empty() {
            p.add("zk-hosts", "is empty; write e.g. \"zk1:2181,zk2:2181\"");
        }
        let root = self.root.unwrap_or_else(|| DEFAULT_ROOT.to_string());
        let layout = p.check("root", Layout::new(&root));
        let session_timeout = p.parse(
            "session-timeout",
            self.session_timeout.as_deref(),
            DEFAULT_SESSION_TIMEOUT,
            parse_duration,
        );
        if session_timeout < Duration::from_millis(100) {
            p.add("session-timeout", "must be at least 100ms");
        }
        let zk_access = validate(p, self.zk_auth, self.zk_tls, base);
        let log_format = self
            .log_format
            .as_deref()
            .and_then(|v| p.check("log-format", v.parse::<LogFormat>()));
        let metrics_addr = self
            .metrics_addr
            .as_deref()
            .and_then(|a| p.check("metrics-addr", crate::metrics_http::parse_addr(a)));
        Some(Shared {
            zk_hosts,
            layout: layout?,
            session_timeout,
            zk_access,
            log_format,
            metrics_addr,
        })
    }
}

/// `[zk-auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawZkAuth {
    pub scheme: Option<String>,
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    /// A digest identity (`user:BASE64(SHA1(user:password))`) that gets full rights on every
    /// node this program creates.
    pub admin: Option<String>,
}

/// `[zk-tls]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawZkTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// Validates `[zk-auth]` and `[zk-tls]`; relative file names are resolved against `base` (the
/// config file's directory).
pub fn validate(
    p: &mut Problems,
    auth: Option<RawZkAuth>,
    tls: Option<RawZkTls>,
    base: &Path,
) -> ZkAccess {
    ZkAccess {
        auth: auth.and_then(|a| validate_auth(p, a, base)),
        tls: tls.and_then(|t| validate_tls(p, t, base)),
    }
}

fn validate_auth(p: &mut Problems, a: RawZkAuth, base: &Path) -> Option<ZkAuth> {
    let scheme = a.scheme.as_deref().unwrap_or(ZkAuth::SCHEME);
    if scheme != ZkAuth::SCHEME {
        p.add(
            "zk-auth.scheme",
            format!("unsupported scheme {scheme:?}; only \"digest\" is supported"),
        );
    }
    let user = match a.user {
        Some(u) if !u.trim().is_empty() && !u.contains(':') => Some(u),
        Some(_) => {
            p.add("zk-auth.user", "must be non-empty and contain no ':'");
            None
        }
        None => {
            p.add("zk-auth.user", "is required in [zk-auth]");
            None
        }
    };
    let password = read_secret(
        p,
        "zk-auth.password-env",
        a.password_env.as_deref(),
        "zk-auth.password-file",
        a.password_file.as_deref(),
        base,
    );
    if a.password_env.is_none() && a.password_file.is_none() {
        p.add(
            "zk-auth.password-env",
            "give password-env or password-file in [zk-auth]",
        );
    }
    let admin = a.admin.filter(|admin| match check_digest_id(admin) {
        Ok(()) => true,
        Err(why) => {
            p.add("zk-auth.admin", why);
            false
        }
    });
    Some(ZkAuth {
        user: user?,
        password: password?,
        admin,
    })
}

/// Checks a digest identity as ZooKeeper's ACLs name it: `user:BASE64(SHA1("user:password"))`.
pub fn check_digest_id(id: &str) -> Result<(), String> {
    let hint = "write it as USER:HASH, HASH being base64(sha1(\"USER:PASSWORD\")), e.g. from \
                `printf %s admin:secret | openssl dgst -binary -sha1 | base64`";
    match id.split_once(':') {
        Some((user, hash))
            if !user.is_empty()
                && hash.len() == 28
                && hash.ends_with('=')
                && hash[..27]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') =>
        {
            Ok(())
        }
        _ => Err(format!("{id:?} is not a digest identity; {hint}")),
    }
}

/// What a `[zk-tls]` file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PemKind {
    Certificates,
    PrivateKey,
}

/// Checks that `text` holds what `kind` needs: one or more certificates (`BEGIN CERTIFICATE`),
/// or one private key (PKCS#8, PKCS#1 or SEC1). The reason when not.
fn check_pem(text: &str, kind: PemKind) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    match kind {
        PemKind::Certificates => {
            let certs = CertificateDer::pem_slice_iter(text.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("bad PEM: {e}"))?;
            if certs.is_empty() {
                return Err("holds no certificate (-----BEGIN CERTIFICATE-----)".into());
            }
            Ok(())
        }
        PemKind::PrivateKey => PrivateKeyDer::from_pem_slice(text.as_bytes())
            .map(drop)
            .map_err(|e| format!("holds no usable private key (PKCS#8, RSA or EC PEM): {e}")),
    }
}

fn validate_tls(p: &mut Problems, t: RawZkTls, base: &Path) -> Option<ZkTls> {
    let read = |p: &mut Problems, key: &str, file: &Option<String>| -> Option<String> {
        let path = base.join(file.as_deref()?);
        let kind = if key == "zk-tls.key-file" {
            PemKind::PrivateKey
        } else {
            PemKind::Certificates
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => match check_pem(&text, kind) {
                Ok(()) => Some(text),
                Err(why) => {
                    p.add(key, format!("{} {why}", path.display()));
                    None
                }
            },
            Err(e) => {
                p.add(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    };
    if t.ca_file.is_none() {
        p.add(
            "zk-tls.ca-file",
            "is required in [zk-tls]: the CA certificate (PEM) that signed the servers' certificates",
        );
    }
    let ca_pem = read(p, "zk-tls.ca-file", &t.ca_file);
    let identity = match (&t.cert_file, &t.key_file) {
        (None, None) => None,
        (Some(_), None) => {
            p.add("zk-tls.key-file", "is required with zk-tls.cert-file");
            return None;
        }
        (None, Some(_)) => {
            p.add("zk-tls.cert-file", "is required with zk-tls.key-file");
            return None;
        }
        (Some(_), Some(_)) => {
            let cert = read(p, "zk-tls.cert-file", &t.cert_file);
            let key = read(p, "zk-tls.key-file", &t.key_file);
            Some(ZkTlsIdentity {
                cert_pem: cert?,
                key_pem: Secret(key?),
            })
        }
    };
    Some(ZkTls {
        ca_pem: ca_pem?,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ids_are_checked() {
        assert!(check_digest_id("admin:x1nq8J5GOJVPY6zgBh+o9nGwGqU=").is_ok());
        for bad in [
            "admin",
            "admin:",
            ":x1nq8J5GOJVPY6zgBh+o9nGwGqU=",
            "admin:secret",
        ] {
            assert!(check_digest_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn auth_problems_name_their_keys() {
        let mut p = Problems::default();
        let raw = RawZkAuth {
            scheme: Some("sasl".into()),
            user: None,
            admin: Some("nope".into()),
            ..RawZkAuth::default()
        };
        assert!(validate_auth(&mut p, raw, Path::new(".")).is_none());
        let keys: Vec<_> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "zk-auth.scheme",
                "zk-auth.user",
                "zk-auth.password-env",
                "zk-auth.admin"
            ]
        );
    }

    #[test]
    fn tls_files_must_hold_the_right_pem() {
        let dir = tempfile_dir();
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.join("cert.pem"), cert).expect("write a test file");
        std::fs::write(dir.join("key.pem"), key).expect("write a test file");
        std::fs::write(dir.join("junk.pem"), "-----BEGIN nothing\n").expect("write a test file");
        // Swapped: a key where certificates belong and the other way round.
        let mut p = Problems::default();
        let raw = RawZkTls {
            ca_file: Some("key.pem".into()),
            cert_file: Some("junk.pem".into()),
            key_file: Some("cert.pem".into()),
        };
        assert!(validate_tls(&mut p, raw, &dir).is_none());
        let keys: Vec<_> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["zk-tls.ca-file", "zk-tls.cert-file", "zk-tls.key-file"]
        );
        assert!(p.0[0].message.contains("holds no certificate"), "{:?}", p.0);
        assert!(p.0[2].message.contains("private key"), "{:?}", p.0);
        // The right files pass.
        let mut p = Problems::default();
        let raw = RawZkTls {
            ca_file: Some("cert.pem".into()),
            cert_file: Some("cert.pem".into()),
            key_file: Some("key.pem".into()),
        };
        let tls = validate_tls(&mut p, raw, &dir).expect("valid");
        assert!(p.0.is_empty(), "{:?}", p.0);
        assert!(tls.identity.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "zkwatchdog-zk-tls-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("create a test directory");
        dir
    }

    #[test]
    fn tls_files_are_read_and_named_when_missing() {
        let dir = std::env::temp_dir();
        let mut p = Problems::default();
        let raw = RawZkTls {
            ca_file: Some("no-such-ca-zkwatchdog.pem".into()),
            cert_file: Some("c.pem".into()),
            key_file: None,
        };
        assert!(validate_tls(&mut p, raw, &dir).is_none());
        let keys: Vec<_> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["zk-tls.ca-file", "zk-tls.key-file"]);
    }
}
