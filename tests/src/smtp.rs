//! A real SMTP server for tests: [`SmtpServer`] runs `scripts/smtp-capture.py` (Debian's
//! `python3-aiosmtpd`, run with `/usr/bin/python3`) on 127.0.0.1, and reads what it captured
//! through its small HTTP JSON API ([`SmtpServer::messages`], [`SmtpServer::wait_for_messages`]).
//!
//! By default ([`SmtpOptions::default`]) the server requires STARTTLS, then AUTH (PLAIN or LOGIN,
//! user [`DEFAULT_USER`], password [`DEFAULT_PASSWORD`]) before it accepts a message, like the mail
//! relays the watcher talks to in production. Its certificate is a leaf signed by a throw-away CA
//! made with the `openssl` CLI in the fixture's directory; clients trust [`SmtpServer::ca_file`].
//!
//! Ports are chosen at random below 15000 (the ZooKeeper fixtures pick theirs at 15000 and up, so
//! the two never hand out the same port) and checked free by binding them; they stay the same
//! across [`stop`](SmtpServer::stop) / [`start_again`](SmtpServer::start_again), and captured
//! messages survive the restart (they are kept in `messages.jsonl` in the fixture's directory).
//!
//! Starting blocks the calling thread for about 0.2 s (certificates, then the Python process until
//! both of its ports answer; bounded by 20 s), stopping for about 0.05 s (bounded by 10 s, then
//! SIGKILL): call them from a multi-threaded runtime. The server is stopped on drop (only the
//! process this fixture started, by its pid); if the thread is panicking, the tail of the server's
//! log is printed first. The server also exits by itself if the test process dies
//! (`--exit-with-parent`).

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Deserialize;
use tempfile::TempDir;

use crate::wait::{wait_until, POLL_INTERVAL};
use crate::zk::random_u64;

/// The Python that has `aiosmtpd` (Debian's `python3-aiosmtpd`); not whatever `python3` is on
/// `PATH`.
pub const PYTHON: &str = "/usr/bin/python3";
/// User name of [`SmtpOptions::default`].
pub const DEFAULT_USER: &str = "alerts";
/// Password of [`SmtpOptions::default`].
pub const DEFAULT_PASSWORD: &str = "s3cret-pass";
/// How long a start waits for the server to listen on both ports.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long [`SmtpServer::stop`] waits after SIGTERM before it sends SIGKILL.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

const START_ATTEMPTS: usize = 5;
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const PORT_LOW: u16 = 10_000;
const PORT_HIGH: u16 = 15_000;

/// How the server protects the SMTP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text, no STARTTLS offered (AUTH, if configured, is offered in the clear).
    None,
    /// STARTTLS offered and required before anything else (`smtp://…?tls=required`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

impl SmtpTls {
    fn arg(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "implicit",
        }
    }
}

/// What [`SmtpServer::start`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpOptions {
    /// Session protection.
    pub tls: SmtpTls,
    /// `Some((user, password))`: AUTH PLAIN/LOGIN offered (over TLS) and required before MAIL.
    pub auth: Option<(String, String)>,
    /// `Some(bytes)`: messages larger than this are refused after DATA with `552 Error: Too
    /// much mail data`, like a relay's `message_size_limit`; `None`: aiosmtpd's default (32 MiB).
    pub data_size_limit: Option<usize>,
}

impl Default for SmtpOptions {
    /// STARTTLS required, AUTH required ([`DEFAULT_USER`] / [`DEFAULT_PASSWORD`]), aiosmtpd's
    /// size limit.
    fn default() -> Self {
        SmtpOptions {
            tls: SmtpTls::StartTls,
            auth: Some((DEFAULT_USER.to_owned(), DEFAULT_PASSWORD.to_owned())),
            data_size_limit: None,
        }
    }
}

/// One message the server accepted (a line of its `messages.jsonl`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CapturedMail {
    /// When it was accepted (RFC 3339, UTC).
    pub received_at: String,
    /// Envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// Envelope recipients (`RCPT TO`), in order.
    pub rcpt_tos: Vec<String>,
    /// The decoded `Subject:` header ("" if absent).
    pub subject: String,
    /// The decoded `From:` header ("" if absent).
    pub from: String,
    /// The decoded `To:` header ("" if absent).
    pub to: String,
    /// The `Message-ID:` header ("" if absent).
    #[serde(default)]
    pub message_id: String,
    /// The text/plain part, decoded, LF line ends ("" if none).
    pub body: String,
    /// The text/html part, decoded, LF line ends.
    pub html: Option<String>,
    /// Whether the session was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// The user that authenticated, if any.
    pub auth_user: Option<String>,
    /// The whole message as received (CRLF line ends).
    pub raw: String,
}

/// A capturing SMTP server on 127.0.0.1 (see the [module documentation](self)).
#[derive(Debug)]
pub struct SmtpServer {
    dir: TempDir,
    opts: SmtpOptions,
    smtp_port: u16,
    api_port: u16,
    child: Mutex<Option<Child>>,
}

impl SmtpServer {
    /// Makes a certificate authority and a server certificate, then starts the server on free
    /// ports and waits (up to 20 s) until it serves, retrying with other ports if that fails.
    /// Panics if it cannot start.
    pub fn start(opts: SmtpOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zkwatchdog-smtp-")
            .tempdir()
            .expect("create a temporary directory for the SMTP server");
        if let Err(e) = make_certificates(dir.path()) {
            panic!("SmtpServer: {e}");
        }
        let mut server = SmtpServer {
            dir,
            opts,
            smtp_port: 0,
            api_port: 0,
            child: Mutex::new(None),
        };
        let mut errors = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let [smtp_port, api_port] = pick_ports();
            server.smtp_port = smtp_port;
            server.api_port = api_port;
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "could not start the SMTP server in {START_ATTEMPTS} attempts:\n{}",
            errors.join("\n")
        );
    }

    /// Starts the server again on the same ports and directory (captured messages kept) and
    /// waits until it serves. A no-op if it is running. Panics if it cannot start.
    pub fn start_again(&self) {
        if self.is_running() {
            return;
        }
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL if it has not exited within 10 s; waits for it to
    /// exit. A no-op if it is not running.
    pub fn stop(&self) {
        let Some(mut child) = self.lock_child().take() else {
            return;
        };
        stop_child(&mut child);
    }

    /// Whether the server process is alive (it may still be starting or stopping).
    pub fn is_running(&self) -> bool {
        let mut guard = self.lock_child();
        let Some(child) = guard.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(_)) | Err(_) => {
                *guard = None;
                false
            }
        }
    }

    /// The SMTP port.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// The port of the HTTP JSON API.
    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    /// The URL the watcher's configuration uses for this server: `smtp://127.0.0.1:PORT`,
    /// `smtp://127.0.0.1:PORT?tls=required` (STARTTLS) or `smtps://127.0.0.1:PORT` (implicit).
    pub fn url(&self) -> String {
        match self.opts.tls {
            SmtpTls::None => format!("smtp://127.0.0.1:{}", self.smtp_port),
            SmtpTls::StartTls => format!("smtp://127.0.0.1:{}?tls=required", self.smtp_port),
            SmtpTls::Implicit => format!("smtps://127.0.0.1:{}", self.smtp_port),
        }
    }

    /// The CA certificate (PEM) that signed the server's certificate: what a client must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The options the server runs with.
    pub fn options(&self) -> &SmtpOptions {
        &self.opts
    }

    /// `(user, password)` the server requires, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.opts
            .auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The server's directory (`ca.pem`, `server.pem`, `messages.jsonl`, `smtp.log`, `smtp.pid`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (empty if none).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every message captured so far, oldest first; `Err` if the API does not answer properly.
    pub fn try_messages(&self) -> Result<Vec<CapturedMail>, String> {
        fetch_messages(self.api_port)
    }

    /// Every message captured so far, oldest first. Panics if the server does not answer.
    pub fn messages(&self) -> Vec<CapturedMail> {
        self.try_messages()
            .unwrap_or_else(|e| panic!("SmtpServer::messages: {e}"))
    }

    /// Forgets every captured message. Panics if the server does not answer.
    pub fn clear(&self) {
        match http_request(self.api_port, "DELETE", "/messages") {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("SmtpServer::clear: HTTP {status}: {body}"),
            Err(e) => panic!("SmtpServer::clear: {e}"),
        }
    }

    /// Makes every MAIL command wait until [`release`](Self::release) (each at most 120 s): a
    /// client's send stays in flight after it decided to send and before the message goes out.
    /// Panics if the server does not answer.
    pub fn hold(&self) {
        self.gate("POST", "/hold");
    }

    /// Lets held and later MAIL commands through. Panics if the server does not answer.
    pub fn release(&self) {
        self.gate("POST", "/release");
    }

    /// How many MAIL commands are held now. Panics if the server does not answer.
    pub fn held(&self) -> usize {
        let body = self.gate("GET", "/hold");
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("waiting")?.as_u64())
            .unwrap_or_else(|| panic!("SmtpServer::held: unexpected answer {body}"))
            as usize
    }

    fn gate(&self, method: &str, path: &str) -> String {
        match http_request(self.api_port, method, path) {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("SmtpServer {method} {path}: HTTP {status}: {body}"),
            Err(e) => panic!("SmtpServer {method} {path}: {e}"),
        }
    }

    /// Waits until at least `n` messages have been captured and returns all of them (oldest
    /// first). Panics if `deadline` passes first. The server may be down meanwhile (e.g. being
    /// restarted): it is polled until the deadline.
    pub async fn wait_for_messages(&self, n: usize, deadline: Duration) -> Vec<CapturedMail> {
        let port = self.api_port;
        wait_until(
            &format!(
                "{n} message(s) captured by the SMTP server on port {}",
                self.smtp_port
            ),
            deadline,
            || async move {
                let fetched = tokio::task::spawn_blocking(move || fetch_messages(port))
                    .await
                    .ok()?
                    .ok()?;
                (fetched.len() >= n).then_some(fetched)
            },
        )
        .await
    }

    /// Waits until a captured message satisfies `pred` and returns it. Panics naming `what` and
    /// the subjects received so far if `deadline` passes first.
    pub async fn wait_for_mail(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&CapturedMail) -> bool,
    ) -> CapturedMail {
        let port = self.api_port;
        let seen = std::sync::Mutex::new(Vec::new());
        let found = tokio::time::timeout(
            deadline,
            wait_until(what, deadline + Duration::from_secs(1), || async {
                let fetched = tokio::task::spawn_blocking(move || fetch_messages(port))
                    .await
                    .ok()?
                    .ok()?;
                let hit = fetched.iter().find(|m| pred(m)).cloned();
                *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                    fetched.into_iter().map(|m| m.subject).collect();
                hit
            }),
        )
        .await;
        match found {
            Ok(mail) => mail,
            Err(_) => panic!(
                "timed out after {deadline:?} waiting for {what}; received: {:?}",
                seen.lock().unwrap_or_else(|p| p.into_inner())
            ),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("smtp.log")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.path().join("smtp.pid")
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns the server process and waits until it serves; on failure it is stopped again.
    fn spawn(&self) -> Result<(), String> {
        let script = crate::repo_root().join("scripts").join("smtp-capture.py");
        if !Path::new(PYTHON).is_file() {
            panic!("{PYTHON} not found: run scripts/install-deps.sh (python3-aiosmtpd)");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open {}: {e}", self.log_path().display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate the log file handle: {e}"))?;
        let dir = self.dir.path();
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-I")
            .arg(&script)
            .args(["--host", "127.0.0.1"])
            .args(["--smtp-port", &self.smtp_port.to_string()])
            .args(["--api-port", &self.api_port.to_string()])
            .arg("--dir")
            .arg(dir)
            .args(["--tls", self.opts.tls.arg()])
            .arg("--cert")
            .arg(dir.join("server.pem"))
            .arg("--key")
            .arg(dir.join("server.key"))
            .arg("--exit-with-parent")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some((user, password)) = &self.opts.auth {
            cmd.args(["--auth-user", user, "--auth-password", password]);
        }
        if let Some(limit) = self.opts.data_size_limit {
            cmd.args(["--data-size-limit", &limit.to_string()]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {PYTHON} {}: {e}", script.display()))?;
        match self.wait_ready(&mut child) {
            Ok(()) => {
                *self.lock_child() = Some(child);
                Ok(())
            }
            Err(e) => {
                stop_child(&mut child);
                Err(format!(
                    "SMTP server (smtp port {}, api port {}): {e}\n{}",
                    self.smtp_port,
                    self.api_port,
                    log_tail(&self.log_path(), 20)
                ))
            }
        }
    }

    /// Bounded: until the process has written its pid file and both ports answer.
    fn wait_ready(&self, child: &mut Child) -> Result<(), String> {
        let start = Instant::now();
        let pid = child.id().to_string();
        let smtp = SocketAddr::from((Ipv4Addr::LOCALHOST, self.smtp_port));
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("exited at start ({status})")),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot check the process: {e}")),
            }
            let pid_written =
                std::fs::read_to_string(self.pid_path()).is_ok_and(|written| written.trim() == pid);
            if pid_written
                && health_ok(self.api_port)
                && TcpStream::connect_timeout(&smtp, Duration::from_secs(1)).is_ok()
            {
                return Ok(());
            }
            if start.elapsed() >= READY_DEADLINE {
                return Err(format!("not serving after {READY_DEADLINE:?}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", log_tail(&self.log_path(), 40));
        }
        self.stop();
    }
}

/// SIGTERM, bounded wait, SIGKILL fallback; reaps the process. Never panics.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    match i32::try_from(child.id()) {
        Ok(pid) => {
            if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
                eprintln!("SmtpServer: SIGTERM to {pid}: {e}");
            }
        }
        Err(_) => eprintln!("SmtpServer: pid {} out of range", child.id()),
    }
    let start = Instant::now();
    while start.elapsed() < STOP_DEADLINE {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(POLL_INTERVAL),
            Err(e) => {
                eprintln!("SmtpServer: waiting for pid {}: {e}", child.id());
                break;
            }
        }
    }
    eprintln!(
        "SmtpServer: pid {} still running {STOP_DEADLINE:?} after SIGTERM; killing it",
        child.id()
    );
    if let Err(e) = child.kill() {
        eprintln!("SmtpServer: SIGKILL to {}: {e}", child.id());
    }
    if let Err(e) = child.wait() {
        eprintln!("SmtpServer: reaping {}: {e}", child.id());
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(log) => {
            let all: Vec<&str> = log.lines().collect();
            format!(
                "---- tail of {} ----\n{}\n----",
                path.display(),
                all[all.len().saturating_sub(lines)..].join("\n")
            )
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Runs `openssl ARGS...` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `openssl` (is it installed?): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`openssl {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// In `dir`: `ca.pem`/`ca.key` (a self-signed CA), `server.pem`/`server.key` (a leaf it signed,
/// CA:FALSE, serverAuth, for IP:127.0.0.1 and DNS:localhost). ECDSA P-256: fast to make.
fn make_certificates(dir: &Path) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            "/CN=zkwatchdog test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    )?;
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .map_err(|e| format!("cannot write server.ext: {e}"))?;
    let serial = format!("0x{:016x}", random_u64() >> 1);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "825",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    )
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Two distinct free ports in 10000..15000, never handed out before in this process.
fn pick_ports() -> [u16; 2] {
    let mut used = used_ports()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut picked = Vec::with_capacity(2);
    for _ in 0..1000 {
        let port = PORT_LOW + (random_u64() % u64::from(PORT_HIGH - PORT_LOW)) as u16;
        if !used.contains(&port)
            && !picked.contains(&port)
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        {
            picked.push(port);
            if let [a, b] = picked[..] {
                used.extend([a, b]);
                return [a, b];
            }
        }
    }
    panic!("could not find two free loopback ports in {PORT_LOW}..{PORT_HIGH}");
}

/// A bounded HTTP/1.0 request to 127.0.0.1:`port`: `(status, body)`.
fn http_request(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{method} {path}: send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("{method} {path}: receive: {e}"))?;
    let response = String::from_utf8(response)
        .map_err(|e| format!("{method} {path}: response is not UTF-8: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: malformed response {response:?}"))?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Whether `GET /health` answers `{"ok": true}`.
fn health_ok(port: u16) -> bool {
    match http_request(port, "GET", "/health") {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .is_ok_and(|v| v.get("ok") == Some(&serde_json::Value::Bool(true))),
        _ => false,
    }
}

fn fetch_messages(port: u16) -> Result<Vec<CapturedMail>, String> {
    match http_request(port, "GET", "/messages")? {
        (200, body) => serde_json::from_str(&body)
            .map_err(|e| format!("GET /messages: not a list of messages ({e}): {body}")),
        (status, body) => Err(format!("GET /messages: HTTP {status}: {body}")),
    }
}
