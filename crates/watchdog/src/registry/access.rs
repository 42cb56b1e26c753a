//! How a session reaches ZooKeeper beyond the connect string, validated: digest credentials
//! and TLS material. Configuration builds it ([`crate::config::zk`]); sessions, ACLs and the TLS
//! diagnosis use it.

use super::secret::Secret;

/// Digest credentials, added to every session this program opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkAuth {
    pub user: String,
    pub password: Secret,
    /// The admin digest identity (`user:hash`), if configured.
    pub admin: Option<String>,
}

impl ZkAuth {
    /// The scheme passed to ZooKeeper's `addauth`.
    pub const SCHEME: &'static str = "digest";

    /// The `user:password` bytes `addauth digest` takes.
    pub fn credentials(&self) -> Vec<u8> {
        format!("{}:{}", self.user, self.password.expose()).into_bytes()
    }
}

/// TLS to ZooKeeper: the CA that signed the servers' certificates, and optionally this client's
/// certificate and key (for servers that require client authentication). PEM text, read when the
/// configuration is validated so that a missing or unreadable file is reported with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkTls {
    pub ca_pem: String,
    pub identity: Option<ZkTlsIdentity>,
}

/// A client certificate chain and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkTlsIdentity {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// Everything beyond hosts and session timeout needed to open a session. The default is plain
/// TCP without credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZkAccess {
    pub auth: Option<ZkAuth>,
    pub tls: Option<ZkTls>,
}
