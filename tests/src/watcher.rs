//! A `zkwatcher run` process under test: its config (ZooKeeper, timings, the email channel of
//! a real SMTP server, optional extra tables) in a temporary directory, its log, and signals.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::bin_path;
use crate::smtp::{SmtpServer, SmtpTls};
use crate::wait::wait_until_sync;

/// A running `zkwatcher run` process and its scratch directory.
#[derive(Debug)]
pub struct WatcherProc {
    child: Child,
    dir: TempDir,
    exited: Option<ExitStatus>,
}

/// The `[email]` table that sends through `smtp` (STARTTLS/TLS trusting its CA, AUTH with its
/// credentials through `password-file`), to two recipients. `dir` receives the password file.
pub fn email_toml(smtp: &SmtpServer, dir: &Path) -> String {
    let mut t = format!(
        "[email]\nurl = {:?}\nfrom = \"zkwatchdog <alerts@example.com>\"\nto = [\"oncall@example.com\", \"team@example.com\"]\ntimeout = \"5s\"\n",
        smtp.url()
    );
    if smtp.options().tls != SmtpTls::None {
        t.push_str(&format!(
            "ca-file = {:?}\n",
            smtp.ca_file().display().to_string()
        ));
    }
    if let Some((user, password)) = smtp.credentials() {
        let file = dir.join("smtp-password");
        std::fs::write(&file, format!("{password}\n")).expect("write the password file");
        t.push_str(&format!(
            "username = {user:?}\npassword-file = {:?}\n",
            file.display().to_string()
        ));
    }
    t
}

impl WatcherProc {
    /// Starts `zkwatcher run --config FILE` where FILE holds `zk-hosts`, `session-timeout =
    /// "2s"` (unless `top_toml` sets its own), `retry-initial = "200ms"`, `retry-max = "1s"`,
    /// then `top_toml` (top-level keys such as `group-wait`), then the email table for `smtp`
    /// (if any), then `tables` (e.g. `[[webhook]]`s).
    pub fn start(zk_hosts: &str, top_toml: &str, smtp: Option<&SmtpServer>, tables: &str) -> Self {
        Self::start_with(zk_hosts, top_toml, smtp, tables, &[])
    }

    /// Like [`start`](Self::start) with extra command-line flags after `run` (e.g.
    /// `--log-format json`).
    pub fn start_with(
        zk_hosts: &str,
        top_toml: &str,
        smtp: Option<&SmtpServer>,
        tables: &str,
        flags: &[&str],
    ) -> Self {
        Self::start_with_env(zk_hosts, top_toml, smtp, tables, flags, &[])
    }

    /// Like [`start_with`](Self::start_with) with extra environment variables.
    pub fn start_with_env(
        zk_hosts: &str,
        top_toml: &str,
        smtp: Option<&SmtpServer>,
        tables: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zkwatchdog-watcher-")
            .tempdir()
            .expect("create a temporary directory");
        let email = smtp.map(|s| email_toml(s, dir.path())).unwrap_or_default();
        let session = if top_toml.contains("session-timeout") {
            ""
        } else {
            "session-timeout = \"2s\"\n"
        };
        let config = format!(
            "zk-hosts = {zk_hosts:?}\n{session}retry-initial = \"200ms\"\nretry-max = \"1s\"\n{top_toml}\n{email}\n{tables}\n"
        );
        let config_path = dir.path().join("watcher.toml");
        std::fs::write(&config_path, config).expect("write the watcher config");
        let log = File::create(dir.path().join("watcher.log")).expect("create the watcher log");
        let child = Command::new(bin_path("zkwatcher"))
            .arg("run")
            .args(flags)
            .arg("--config")
            .arg(&config_path)
            .env_remove("ZK_HOSTS")
            .env("ZKWATCHER_LOG", "debug,zookeeper_client=info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn zkwatcher");
        WatcherProc {
            child,
            dir,
            exited: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("watcher.toml")
    }

    /// The watcher's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("watcher.log")).unwrap_or_default()
    }

    /// True once the watcher has logged that it leads.
    pub fn is_leading(&self) -> bool {
        self.log().contains("leading: this watcher")
    }

    /// Waits until the watcher leads.
    pub fn wait_leading(&self, deadline: Duration) {
        wait_until_sync("the watcher to lead", deadline, || {
            self.is_leading().then_some(())
        });
    }

    /// Waits until the watcher has connected and read the registry (leading or standing by).
    pub fn wait_ready(&self, deadline: Duration) {
        wait_until_sync("the watcher to be ready", deadline, || {
            let log = self.log();
            (log.contains("leading: this watcher") || log.contains("standing by")).then_some(())
        });
    }

    pub fn signal(&self, signal: Signal) {
        if self.exited.is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
        }
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let child = &mut self.child;
        let status = wait_until_sync("zkwatcher to exit", deadline, || {
            child.try_wait().ok().flatten()
        });
        self.exited = Some(status);
        status
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }
}

impl Drop for WatcherProc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- zkwatcher log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Runs the `zkwatcher` binary with `args` (`status`, `silence`, …; `ZK_HOSTS` removed from its
/// environment), bounded by 30 s: killed and a panic if it hangs.
pub async fn zkwatcher_cli(args: &[&str]) -> std::process::Output {
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
    let run = tokio::process::Command::new(crate::bin_path("zkwatcher"))
        .args(args)
        .env_remove("ZK_HOSTS")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(DEADLINE, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run zkwatcher {args:?}: {e}"),
        Err(_) => panic!("zkwatcher {args:?} did not finish within {DEADLINE:?}"),
    }
}
