//! ZooKeeper that also serves TLS: a standalone server ([`ZkTlsServer`], through `scripts/zk.sh
//! start-standalone-tls`) or a 3-node ensemble ([`ZkTlsEnsemble`], `start-ensemble-tls`), with
//! certificates made by `scripts/zk-certs.sh` in the fixture's own directory ([`Certs`]: the
//! `[zk-tls]` tables and [`ZkAccess`] values that use them).
//!
//! The server keeps its plaintext client port (for readiness checks and, if a test wants, for
//! test-side clients); the programs under test are given only the secure port. Stopped by pid
//! file on drop, like [`crate::zk::ZkServer`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use zkwatchdog::config::zk::{ZkTls, ZkTlsIdentity};
use zkwatchdog::config::ZkAccess;
use zkwatchdog::secret::Secret;

use crate::zk::{new_tempdir, pick_ports, print_log_tail, run_script, zk_command, DEFAULT_TICK_MS};

/// The secure client port is the client port plus this (see `scripts/zk.sh`).
pub const TLS_PORT_OFFSET: u16 = 300;

const START_ATTEMPTS: usize = 5;

/// Whether the server asks for client certificates (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client certificate signed by the CA is required.
    Need,
    /// No client certificate is asked for.
    None,
}

impl ClientAuth {
    fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Need => "need",
            ClientAuth::None => "none",
        }
    }
}

/// A standalone ZooKeeper on 127.0.0.1 with a plaintext client port and a TLS secure client
/// port, and the certificates `scripts/zk-certs.sh` made for it (in `certs/` of its directory):
/// `ca.pem`, `client.pem` + `client.key` (signed by the CA), `other-ca.pem` and `other-client.pem`
/// + `other-client.key` (an unrelated CA and a certificate it signed).
#[derive(Debug)]
pub struct ZkTlsServer {
    dir: TempDir,
    port: u16,
}

impl ZkTlsServer {
    /// Starts a server that requires client certificates.
    pub fn start() -> Self {
        Self::start_with(ClientAuth::Need)
    }

    /// Starts a server with the given client-certificate policy, retrying on another port if
    /// that fails.
    pub fn start_with(auth: ClientAuth) -> Self {
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let server = ZkTlsServer {
                dir: new_tempdir("zkwatchdog-zktls-"),
                port: pick_ports(&[0, TLS_PORT_OFFSET]),
            };
            let zk_dir = server.zk_dir();
            let certs = server.certs_dir();
            let out = zk_command()
                .arg("start-standalone-tls")
                .arg(&zk_dir)
                .arg(server.port.to_string())
                .arg(&certs)
                .arg(DEFAULT_TICK_MS.to_string())
                .env("ZK_TLS_CLIENT_AUTH", auth.as_str())
                .output()
                .expect("run scripts/zk.sh");
            if out.status.success() {
                return server;
            }
            errors.push(format!(
                "`zk.sh start-standalone-tls` failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        panic!(
            "could not start a TLS ZooKeeper in {START_ATTEMPTS} attempts:\n{}",
            errors.join("\n")
        );
    }

    fn zk_dir(&self) -> PathBuf {
        self.dir.path().join("zk")
    }

    fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// `127.0.0.1:SECURE_PORT`: the only address the programs under test are given.
    pub fn secure_connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.secure_port())
    }

    /// `127.0.0.1:PORT`, the plaintext client port.
    pub fn plain_connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TLS port.
    pub fn secure_port(&self) -> u16 {
        self.port + TLS_PORT_OFFSET
    }

    /// The plaintext port.
    pub fn plain_port(&self) -> u16 {
        self.port
    }

    /// The certificates.
    pub fn certs(&self) -> Certs {
        Certs {
            dir: self.certs_dir(),
        }
    }

    /// See [`Certs::tls_toml`].
    pub fn tls_toml(&self, ca: &str, identity: Option<(&str, &str)>) -> String {
        self.certs().tls_toml(ca, identity)
    }

    /// See [`Certs::good_tls_toml`].
    pub fn good_tls_toml(&self) -> String {
        self.certs().good_tls_toml()
    }

    /// See [`Certs::access`].
    pub fn access(&self) -> ZkAccess {
        self.certs().access()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.zk_dir().join("zk.log")).unwrap_or_default()
    }
}

/// The files `zk-certs.sh` made in one directory.
#[derive(Debug, Clone)]
pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    /// The path of a file made by `zk-certs.sh`, e.g. `"ca.pem"`.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A `[zk-tls]` table trusting `ca` (a file name from [`cert`](Self::cert)), with a client
    /// certificate `(cert, key)` if given. Absolute paths, so it works from any config directory.
    pub fn tls_toml(&self, ca: &str, identity: Option<(&str, &str)>) -> String {
        let mut t = format!("[zk-tls]\nca-file = {:?}\n", path_str(&self.cert(ca)));
        if let Some((cert, key)) = identity {
            t.push_str(&format!(
                "cert-file = {:?}\nkey-file = {:?}\n",
                path_str(&self.cert(cert)),
                path_str(&self.cert(key))
            ));
        }
        t
    }

    /// The `[zk-tls]` table of a correctly configured client: our CA and client certificate.
    pub fn good_tls_toml(&self) -> String {
        self.tls_toml("ca.pem", Some(("client.pem", "client.key")))
    }

    /// What a correctly configured program passes to `Session::connect`.
    pub fn access(&self) -> ZkAccess {
        let read = |name: &str| {
            std::fs::read_to_string(self.cert(name))
                .unwrap_or_else(|e| panic!("read {}: {e}", self.cert(name).display()))
        };
        ZkAccess {
            tls: Some(ZkTls {
                ca_pem: read("ca.pem"),
                identity: Some(ZkTlsIdentity {
                    cert_pem: read("client.pem"),
                    key_pem: Secret(read("client.key")),
                }),
            }),
            ..ZkAccess::default()
        }
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Drop for ZkTlsServer {
    fn drop(&mut self) {
        let zk_dir = self.zk_dir();
        if std::thread::panicking() {
            print_log_tail(&zk_dir.join("zk.log"));
        }
        if let Err(e) = run_script([OsStr::new("stop"), zk_dir.as_os_str()]) {
            eprintln!("ZkTlsServer drop: {e}");
        }
    }
}

/// Port offsets from the base port of a TLS ensemble: client, quorum, election, secure ports.
const ENSEMBLE_OFFSETS: [u16; 12] = [0, 1, 2, 101, 102, 103, 201, 202, 203, 300, 301, 302];

/// A 3-node ensemble on 127.0.0.1 whose nodes (numbered 1..=3) also serve TLS, client
/// certificates required. Stopped by pid files on drop.
#[derive(Debug)]
pub struct ZkTlsEnsemble {
    dir: TempDir,
    base: u16,
}

impl ZkTlsEnsemble {
    /// Starts the 3 nodes and waits until one leads and every secure port listens.
    pub fn start() -> Self {
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let ensemble = ZkTlsEnsemble {
                dir: new_tempdir("zkwatchdog-zktlsens-"),
                base: pick_ports(&ENSEMBLE_OFFSETS),
            };
            match run_script([
                OsStr::new("start-ensemble-tls"),
                ensemble.zk_dir().as_os_str(),
                OsStr::new(&ensemble.base.to_string()),
                ensemble.certs().dir.as_os_str(),
                OsStr::new(&DEFAULT_TICK_MS.to_string()),
            ]) {
                Ok(_) => return ensemble,
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "could not start a TLS ZooKeeper ensemble in {START_ATTEMPTS} attempts:\n{}",
            errors.join("\n")
        );
    }

    fn zk_dir(&self) -> PathBuf {
        self.dir.path().join("zk")
    }

    /// The certificates.
    pub fn certs(&self) -> Certs {
        Certs {
            dir: self.dir.path().join("certs"),
        }
    }

    /// The secure port of node `n` (1..=3).
    pub fn secure_port(&self, n: usize) -> u16 {
        assert!((1..=3).contains(&n), "nodes are numbered 1..=3, not {n}");
        self.base + TLS_PORT_OFFSET + (n as u16 - 1)
    }

    /// The node whose secure port is `port`, if any.
    pub fn node_of_secure_port(&self, port: u16) -> Option<usize> {
        (1..=3).find(|n| self.secure_port(*n) == port)
    }

    /// Every node's secure port: the only connect string the programs under test get.
    pub fn secure_connect_string(&self) -> String {
        (1..=3)
            .map(|n| format!("127.0.0.1:{}", self.secure_port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's plaintext port, for test-side clients.
    pub fn plain_connect_string(&self) -> String {
        (0..3)
            .map(|i| format!("127.0.0.1:{}", self.base + i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops node `n` (SIGTERM, SIGKILL after 10 s) and waits for it to exit.
    pub fn stop_node(&self, n: usize) {
        let n = n.to_string();
        if let Err(e) = run_script([
            OsStr::new("stop-node"),
            self.zk_dir().as_os_str(),
            OsStr::new(n.as_str()),
        ]) {
            panic!("{e}");
        }
    }
}

impl Drop for ZkTlsEnsemble {
    fn drop(&mut self) {
        let zk_dir = self.zk_dir();
        if std::thread::panicking() {
            for n in 1..=3 {
                print_log_tail(&zk_dir.join(format!("n{n}")).join("zk.log"));
            }
        }
        if let Err(e) = run_script([OsStr::new("stop"), zk_dir.as_os_str()]) {
            eprintln!("ZkTlsEnsemble drop: {e}");
        }
    }
}
