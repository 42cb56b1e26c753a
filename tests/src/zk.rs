//! A real ZooKeeper for tests: [`ZkServer`] (standalone) and [`ZkEnsemble`] (3 nodes), both
//! thin wrappers around `scripts/zk.sh`, plus small client helpers ([`client`], [`get_json`],
//! [`exists`], [`close`]).
//!
//! Servers listen on 127.0.0.1 only, in a fresh temporary directory, with `tickTime` 200 ms (so a
//! session can expire in about a second: `minSessionTimeout` is 2 ticks). Client ports are chosen
//! at random *below* the kernel's ephemeral port range and checked free by binding them: a port in
//! the ephemeral range could be taken, while the server is down, by a client's own outgoing
//! connection (even a TCP self-connect of a client retrying that very port), and the restart would
//! then fail. Ports handed out are also remembered per process, so parallel tests never share one.
//!
//! The fixtures start Debian's ZooKeeper package, or the release named by
//! `ZKWATCHDOG_TEST_ZK_VERSION` (e.g. `3.5.10`, [`TEST_ZK_VERSION_ENV`]), which `zk.sh` fetches
//! from Maven Central once (the first fixture of a test process makes sure it is there).
//!
//! The methods that start or stop servers block the calling thread (for about 0.5 s to start a
//! standalone server, 1–2 s for an ensemble): call them from a multi-threaded runtime, or before
//! the code under test starts. Everything is stopped on drop (only the processes started in the
//! fixture's own directory, by their pid files); if the thread is panicking, the tail of each
//! server log is printed first, to help debugging.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use zookeeper_client::{Client, Error as ZkError, SessionState};

use crate::wait::wait_until_sync;

/// `tickTime` of the fixtures' servers.
pub const DEFAULT_TICK_MS: u32 = 200;
/// How long [`client`] keeps trying to establish a session.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// Session timeout asked for by [`client`].
pub const CLIENT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Number of nodes of a [`ZkEnsemble`].
pub const ENSEMBLE_SIZE: usize = 3;

const START_ATTEMPTS: usize = 5;

/// Path of `scripts/zk.sh`.
pub fn zk_script() -> PathBuf {
    crate::repo_root().join("scripts").join("zk.sh")
}

/// The environment variable naming the ZooKeeper release the fixtures start (`X.Y.Z`); unset,
/// empty or `debian`: Debian's package.
pub const TEST_ZK_VERSION_ENV: &str = "ZKWATCHDOG_TEST_ZK_VERSION";

/// The release a value of [`TEST_ZK_VERSION_ENV`] names: `Ok(None)` for Debian's package,
/// `Ok(Some("3.5.10"))` for a release, `Err` for anything else.
pub fn parse_test_zk_version(value: Option<&str>) -> Result<Option<String>, String> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() || value == "debian" {
        return Ok(None);
    }
    let parts: Vec<&str> = value.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() == 3 && parts.iter().all(numeric) {
        Ok(Some(value.to_owned()))
    } else {
        Err(format!(
            "{TEST_ZK_VERSION_ENV}={value:?}: expected a ZooKeeper release X.Y.Z, or debian"
        ))
    }
}

/// The release the fixtures start (`None`: Debian's package), from [`TEST_ZK_VERSION_ENV`].
/// Panics on a value that names no release.
pub fn test_zk_version() -> Option<String> {
    let value = std::env::var(TEST_ZK_VERSION_ENV).ok();
    parse_test_zk_version(value.as_deref()).unwrap_or_else(|e| panic!("{e}"))
}

/// `zk.sh` as a command for the ZooKeeper the fixtures start ([`test_zk_version`]).
pub fn zk_command() -> Command {
    zk_command_for(test_zk_version().as_deref())
}

/// `zk.sh` as a command for `release` (`None`: Debian's package): `ZK_VERSION` set to it, or
/// removed, whatever the caller's environment says. The first call for a release fetches it
/// (`zk.sh install-version`, a no-op once cached).
pub fn zk_command_for(release: Option<&str>) -> Command {
    let mut cmd = Command::new(zk_script());
    match release {
        Some(version) => {
            ensure_release(version);
            cmd.env("ZK_VERSION", version);
        }
        None => {
            cmd.env_remove("ZK_VERSION");
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// The release the fixtures' servers run, `X.Y.Z` (Debian's package's upstream version when
/// [`TEST_ZK_VERSION_ENV`] names none), as `zk.sh version` reports it.
pub fn fixture_release() -> String {
    let out = zk_command()
        .arg("version")
        .output()
        .expect("run zk.sh version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "zk.sh version failed: {text}");
    // "debian 3.8.0 /usr/share/java" or "3.5.10 /root/.cache/…/*"
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["debian", version, ..] | [version, ..] => (*version).to_owned(),
        [] => panic!("zk.sh version printed nothing"),
    }
}

/// Fetches release `version` once per process; panics if it cannot be had.
fn ensure_release(version: &str) {
    static FETCHED: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let mut fetched = FETCHED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fetched = fetched.entry(version.to_owned()).or_insert_with(|| {
        let out = Command::new(zk_script())
            .args(["install-version", version])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run zk.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`zk.sh install-version {version}` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = fetched {
        panic!("{e}");
    }
}

/// Runs `zk.sh ARGS...` for the fixtures' release; `Ok(stdout)` on success,
/// `Err(description)` otherwise.
pub(crate) fn run_script<I, S>(args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_script_for(test_zk_version().as_deref(), args)
}

/// Like [`run_script`] for `release` (`None`: Debian's package).
pub(crate) fn run_script_for<I, S>(release: Option<&str>, args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let out = zk_command_for(release)
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", zk_script().display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`zk.sh {}` failed ({}):\n{stdout}{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Sends a four-letter word to 127.0.0.1:`port`; the answer, or `None` (bounded: ~2 s).
pub fn four_letter(port: u16, word: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    stream.write_all(word.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The mode a server on 127.0.0.1:`port` reports (`standalone`, `leader`, `follower`), or `None`
/// if it does not answer or is not serving (e.g. during a leader election).
pub fn server_mode(port: u16) -> Option<String> {
    four_letter(port, "srvr")?
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_owned())
}

/// A random number for port picking and certificate serials (std only, no `rand` needed).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Lowest port of the kernel's ephemeral range (default 32768).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Picks a base port such that `base + o` is free for every offset `o`, and reserves those ports
/// for this process.
pub(crate) fn pick_ports(offsets: &[u16]) -> u16 {
    let span = offsets.iter().copied().max().unwrap_or(0);
    let low = 15_000u16;
    let high = ephemeral_low().saturating_sub(span + 1);
    let mut used = used_ports()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..500 {
        let base = if high > low + 1000 {
            low + (random_u64() % u64::from(high - low)) as u16
        } else {
            // Odd port range configuration: fall back to a port the kernel hands out.
            let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
                continue;
            };
            match l.local_addr() {
                Ok(a) if a.port() <= u16::MAX - span => a.port(),
                _ => continue,
            }
        };
        let ports: Vec<u16> = offsets.iter().map(|o| base + o).collect();
        if ports.iter().all(|p| !used.contains(p) && port_free(*p)) {
            used.extend(ports);
            return base;
        }
    }
    panic!("could not find free loopback ports (offsets {offsets:?})");
}

pub(crate) fn new_tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory for ZooKeeper")
}

pub(crate) fn print_log_tail(path: &Path) {
    match std::fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "---- tail of {} ----\n{}\n----",
                path.display(),
                tail.join("\n")
            );
        }
        Err(e) => eprintln!("(cannot read {}: {e})", path.display()),
    }
}

/// A standalone ZooKeeper server on 127.0.0.1, in its own temporary directory.
///
/// Stopped (not deleted until the fixture is dropped) by [`stop`](Self::stop); its data survives
/// [`restart`](Self::restart) and [`start_again`](Self::start_again).
#[derive(Debug)]
pub struct ZkServer {
    dir: TempDir,
    port: u16,
    tick_ms: u32,
    /// The release it runs (`None`: Debian's package).
    release: Option<String>,
}

impl ZkServer {
    /// Starts a server (tick 200 ms) on a free port, retrying with another port if that fails.
    pub fn start() -> Self {
        Self::start_with_tick(DEFAULT_TICK_MS)
    }

    /// Like [`start`](Self::start) with another `tickTime`.
    pub fn start_with_tick(tick_ms: u32) -> Self {
        Self::start_release_with_tick(test_zk_version().as_deref(), tick_ms)
    }

    /// Like [`start`](Self::start), running ZooKeeper `release` (`X.Y.Z`, fetched from Maven
    /// Central once) whatever [`TEST_ZK_VERSION_ENV`] says: for tests of a given release.
    pub fn start_release(release: &str) -> Self {
        Self::start_release_with_tick(Some(release), DEFAULT_TICK_MS)
    }

    fn start_release_with_tick(release: Option<&str>, tick_ms: u32) -> Self {
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::reserve_with_tick(tick_ms);
            server.release = release.map(str::to_owned);
            match server.try_start() {
                Ok(()) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "could not start a standalone ZooKeeper in {START_ATTEMPTS} attempts:\n{}",
            errors.join("\n")
        );
    }

    /// Picks a port and a directory without starting anything (for "ZooKeeper is down at
    /// start" tests); start it later with [`start_again`](Self::start_again).
    pub fn reserve() -> Self {
        Self::reserve_with_tick(DEFAULT_TICK_MS)
    }

    /// Like [`reserve`](Self::reserve) with another `tickTime`.
    pub fn reserve_with_tick(tick_ms: u32) -> Self {
        let port = pick_ports(&[0]);
        ZkServer {
            dir: new_tempdir("zkwatchdog-zk-"),
            port,
            tick_ms,
            release: test_zk_version(),
        }
    }

    fn try_start(&self) -> Result<(), String> {
        run_script_for(
            self.release.as_deref(),
            [
                OsStr::new("start-standalone"),
                self.dir.path().as_os_str(),
                OsStr::new(&self.port.to_string()),
                OsStr::new(&self.tick_ms.to_string()),
            ],
        )
        .map(drop)
    }

    /// Starts the server (again) on the same port and directory, keeping its data; waits until
    /// it serves. A no-op if it is running. Panics if it cannot start.
    ///
    /// While the server was down, something else may have held its port for a moment (seen once
    /// in a full run, holder unknown); that is retried for up to 15 s, and a lasting holder is
    /// named in the panic (`ss -ltnp`).
    pub fn start_again(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.try_start() {
                Ok(()) => return,
                Err(e) if e.contains("already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) if e.contains("already in use") => {
                    let holder = Command::new("ss")
                        .args(["-ltnp", &format!("sport = :{}", self.port)])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    panic!("{e}\nlistening on the port (ss -ltnp):\n{holder}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it to exit. Data kept.
    pub fn stop(&self) {
        if let Err(e) = run_script([OsStr::new("stop"), self.dir.path().as_os_str()]) {
            panic!("{e}");
        }
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// `127.0.0.1:PORT`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory (`zoo.cfg`, `data/`, `zk.log`, `zk.pid`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server answers `Mode: standalone` right now.
    pub fn is_serving(&self) -> bool {
        server_mode(self.port).as_deref() == Some("standalone")
    }

    /// The server's log so far (empty if none).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zk.log")).unwrap_or_default()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail(&self.dir.path().join("zk.log"));
        }
        if let Err(e) = run_script([OsStr::new("stop"), self.dir.path().as_os_str()]) {
            eprintln!("ZkServer drop: {e}");
        }
    }
}

/// A 3-node ZooKeeper ensemble on 127.0.0.1, nodes numbered 1..=3, in its own temporary
/// directory (`n1/`, `n2/`, `n3/`).
#[derive(Debug)]
pub struct ZkEnsemble {
    dir: TempDir,
    base_port: u16,
}

/// Port offsets from the base port used by an ensemble (client, quorum, election ports).
const ENSEMBLE_OFFSETS: [u16; 9] = [0, 1, 2, 101, 102, 103, 201, 202, 203];

impl ZkEnsemble {
    /// Starts 3 nodes (tick 200 ms) and waits until one is leader and the others follow.
    pub fn start() -> Self {
        Self::start_with_tick(DEFAULT_TICK_MS)
    }

    /// Like [`start`](Self::start) with another `tickTime`.
    pub fn start_with_tick(tick_ms: u32) -> Self {
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let ensemble = ZkEnsemble {
                dir: new_tempdir("zkwatchdog-zkens-"),
                base_port: pick_ports(&ENSEMBLE_OFFSETS),
            };
            match run_script([
                OsStr::new("start-ensemble"),
                ensemble.dir.path().as_os_str(),
                OsStr::new(&ensemble.base_port.to_string()),
                OsStr::new(&tick_ms.to_string()),
            ]) {
                Ok(_) => return ensemble,
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "could not start a ZooKeeper ensemble in {START_ATTEMPTS} attempts:\n{}",
            errors.join("\n")
        );
    }

    fn check_node(n: usize) {
        assert!(
            (1..=ENSEMBLE_SIZE).contains(&n),
            "ensemble nodes are numbered 1..={ENSEMBLE_SIZE}, not {n}"
        );
    }

    /// Client port of node `n` (1..=3).
    pub fn client_port(&self, n: usize) -> u16 {
        Self::check_node(n);
        self.base_port + (n as u16 - 1)
    }

    /// `127.0.0.1:A,127.0.0.1:B,127.0.0.1:C`.
    pub fn connect_string(&self) -> String {
        (1..=ENSEMBLE_SIZE)
            .map(|n| format!("127.0.0.1:{}", self.client_port(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connect string naming only the nodes in `nodes`.
    pub fn connect_string_of(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", self.client_port(*n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ensemble's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Mode reported by node `n` right now (`leader`, `follower`), `None` if down or electing.
    pub fn mode(&self, n: usize) -> Option<String> {
        server_mode(self.client_port(n))
    }

    /// The node that is leader right now, if any.
    pub fn try_leader(&self) -> Option<usize> {
        let out = run_script([OsStr::new("leader"), self.dir.path().as_os_str()]).ok()?;
        out.trim().parse().ok()
    }

    /// The leader; waits (up to 30 s) while an election is going on.
    pub fn leader(&self) -> usize {
        wait_until_sync("a ZooKeeper leader", Duration::from_secs(30), || {
            self.try_leader()
        })
    }

    /// Stops node `n` (SIGTERM, SIGKILL after 10 s) and waits for it to exit.
    pub fn stop_node(&self, n: usize) {
        self.node_command("stop-node", n, None);
    }

    /// Kills node `n` with SIGKILL and waits for it to exit.
    pub fn kill_node(&self, n: usize) {
        self.node_command("stop-node", n, Some("kill"));
    }

    /// (Re)starts node `n` and waits until it is leader or follower (so a quorum must be up).
    pub fn start_node(&self, n: usize) {
        self.node_command("start-node", n, None);
    }

    /// (Re)starts node `n` without waiting for it to serve (e.g. while the quorum is lost).
    pub fn start_node_nowait(&self, n: usize) {
        self.node_command("start-node", n, Some("nowait"));
    }

    fn node_command(&self, cmd: &str, n: usize, extra: Option<&str>) {
        Self::check_node(n);
        let n = n.to_string();
        let mut args = vec![
            OsStr::new(cmd),
            self.dir.path().as_os_str(),
            OsStr::new(n.as_str()),
        ];
        args.extend(extra.map(OsStr::new));
        if let Err(e) = run_script(args) {
            panic!("{e}");
        }
    }

    /// `zk.sh status` output: one line per node.
    pub fn status(&self) -> String {
        run_script([OsStr::new("status"), self.dir.path().as_os_str()]).unwrap_or_else(|e| e)
    }

    /// The log of node `n` so far.
    pub fn log(&self, n: usize) -> String {
        Self::check_node(n);
        std::fs::read_to_string(self.dir.path().join(format!("n{n}")).join("zk.log"))
            .unwrap_or_default()
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.status());
            for n in 1..=ENSEMBLE_SIZE {
                print_log_tail(&self.dir.path().join(format!("n{n}")).join("zk.log"));
            }
        }
        if let Err(e) = run_script([OsStr::new("stop"), self.dir.path().as_os_str()]) {
            eprintln!("ZkEnsemble drop: {e}");
        }
    }
}

/// Connects to `connect` (e.g. [`ZkServer::connect_string`]) with a 10 s session timeout,
/// retrying for up to 30 s. Panics if no session could be established.
pub async fn client(connect: &str) -> Client {
    client_with_session_timeout(connect, CLIENT_SESSION_TIMEOUT).await
}

/// Like [`client`] with another session timeout (the server clamps it to 0.4–60 s).
pub async fn client_with_session_timeout(connect: &str, session_timeout: Duration) -> Client {
    let start = Instant::now();
    let mut last_error = String::from("no attempt");
    while start.elapsed() < CONNECT_DEADLINE {
        let remaining = CONNECT_DEADLINE.saturating_sub(start.elapsed());
        let attempt = Client::connector()
            .with_session_timeout(session_timeout)
            .connect(connect);
        match tokio::time::timeout(remaining, attempt).await {
            Ok(Ok(client)) => return client,
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = "timed out".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not connect to ZooKeeper at {connect} within {CONNECT_DEADLINE:?}: {last_error}");
}

/// The data of `path` parsed as JSON; `None` if the node does not exist. Panics on other errors
/// and on data that is not JSON.
pub async fn get_json(client: &Client, path: &str) -> Option<serde_json::Value> {
    match client.get_data(path).await {
        Ok((data, _stat)) => Some(serde_json::from_slice(&data).unwrap_or_else(|e| {
            panic!(
                "znode {path} does not hold JSON ({e}): {:?}",
                String::from_utf8_lossy(&data)
            )
        })),
        Err(ZkError::NoNode) => None,
        Err(e) => panic!("get_data({path}) failed: {e}"),
    }
}

/// Whether `path` exists. Panics on errors.
pub async fn exists(client: &Client, path: &str) -> bool {
    match client.check_stat(path).await {
        Ok(stat) => stat.is_some(),
        Err(e) => panic!("check_stat({path}) failed: {e}"),
    }
}

/// Drops `client` and waits (up to 10 s) until its session is closed, so its ephemeral nodes
/// are gone at once rather than at session expiry.
pub async fn close(client: Client) {
    let mut watcher = client.state_watcher();
    drop(client);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watcher.state() {
                SessionState::Closed | SessionState::Expired | SessionState::AuthFailed => break,
                _ => {
                    watcher.changed().await;
                }
            }
        }
    })
    .await;
    if closed.is_err() {
        eprintln!("zk::close: session not closed within 10 s");
    }
}

/// Writes `markers` as PERSISTENT marker nodes (open ACL) under the default root, creating the
/// registry's directories first, as watchdogs would have left them; returns their ids in order.
pub async fn put_markers(
    client: &Client,
    markers: impl IntoIterator<Item = zkwatchdog::registry::Marker>,
) -> Vec<zkwatchdog::registry::AgentId> {
    use zkwatchdog::registry::{encode, ensure_dirs, AgentId, Layout, NodeAcls, DEFAULT_ROOT};
    let layout = Layout::new(DEFAULT_ROOT).expect("the default root");
    if let Err((dir, e)) = ensure_dirs(
        client,
        &layout,
        &[layout.agents_dir(), layout.live_dir()],
        &NodeAcls::open(),
    )
    .await
    {
        panic!("mkdir {dir}: {e}");
    }
    let options =
        zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    let mut ids = Vec::new();
    for marker in markers {
        let id = AgentId::new(&marker.id).expect("a valid agent id");
        if let Err(e) = client
            .create(&layout.marker(&id), &encode(&marker), &options)
            .await
        {
            panic!("create the marker of {}: {e}", marker.id);
        }
        ids.push(id);
    }
    ids
}

/// The marker of a generic agent `id` on `host-x` whose generation 1 runs (written now), for
/// tests that write registries by hand; adjust its fields for other states.
pub fn running_marker(id: &str) -> zkwatchdog::registry::Marker {
    use zkwatchdog::registry::{AgentKind, AgentState, Marker, Timestamp, RECORD_VERSION};
    let now = Timestamp::now();
    Marker {
        v: RECORD_VERSION,
        id: id.to_string(),
        name: "agent".to_string(),
        kind: AgentKind::Generic,
        host: "host-x".to_string(),
        command: vec!["agent".into()],
        labels: std::collections::BTreeMap::new(),
        version: "0.1.0".to_string(),
        registered_at: now,
        updated_at: now,
        state: AgentState::Running,
        generation: 1,
        restarts: 0,
        last_exit: None,
        session_id: "0x1".to_string(),
        conflict: None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_test_zk_version;

    #[test]
    fn test_zk_version_values() {
        let release = |v: &str| Ok(Some(v.to_owned()));
        type Row<'a> = (Option<&'a str>, Result<Option<String>, ()>);
        let table: [Row; 10] = [
            (None, Ok(None)),
            (Some(""), Ok(None)),
            (Some("  "), Ok(None)),
            (Some("debian"), Ok(None)),
            (Some("3.5.10"), release("3.5.10")),
            (Some(" 3.9.5 "), release("3.9.5")),
            (Some("3.5"), Err(())),
            (Some("3.5.10.1"), Err(())),
            (Some("v3.5.10"), Err(())),
            (Some("3..5"), Err(())),
        ];
        for (value, expected) in table {
            assert_eq!(
                parse_test_zk_version(value).map_err(drop),
                expected,
                "value {value:?}"
            );
        }
    }
}
