//! A `zkwatchdog` process under test: writes its config into a temporary directory, runs the
//! built binary on a `testchild`, and reads the registry through the watchdog crate's own
//! contract (paths and records).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use zkwatchdog::registry::{decode, AgentId, Layout, Liveness, Marker};
use zookeeper_client::{Client, Error as ZkError};

use crate::wait::wait_until_sync;
use crate::{bin_path, zk};

/// A running `zkwatchdog run` process and its scratch directory.
#[derive(Debug)]
pub struct WatchdogProc {
    child: Child,
    dir: TempDir,
    exited: Option<ExitStatus>,
    pub id: AgentId,
    pub layout: Layout,
}

impl WatchdogProc {
    /// Starts `zkwatchdog run --config FILE` supervising `testchild ARGS`, where FILE holds
    /// `zk-hosts`, `id`, `session-timeout = "2s"` and then `extra_toml` (top-level keys first,
    /// then tables such as `[restart]`). The child appends its pid to `child.pids`, and the pids
    /// of grandchildren it makes (`--grandchildren N`) to `grandchild.pids`.
    pub fn start(zk_hosts: &str, id: &str, extra_toml: &str, child_args: &[&str]) -> Self {
        Self::start_with(zk_hosts, id, extra_toml, child_args, &[])
    }

    /// Like [`start`](Self::start) with extra command-line flags before `--config`.
    pub fn start_with(
        zk_hosts: &str,
        id: &str,
        extra_toml: &str,
        child_args: &[&str],
        flags: &[&str],
    ) -> Self {
        Self::start_with_env(zk_hosts, id, extra_toml, child_args, flags, &[])
    }

    /// Like [`start_with`](Self::start_with) with extra environment variables (`ZK_HOSTS` is
    /// otherwise removed from the watchdog's environment).
    pub fn start_with_env(
        zk_hosts: &str,
        id: &str,
        extra_toml: &str,
        child_args: &[&str],
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = scratch_dir();
        let mut command = vec![
            bin_path("testchild").display().to_string(),
            "--pid-file".to_string(),
            dir.path().join("child.pids").display().to_string(),
            "--grandchild-file".to_string(),
            dir.path().join("grandchild.pids").display().to_string(),
        ];
        command.extend(child_args.iter().map(|a| a.to_string()));
        Self::launch(dir, zk_hosts, id, extra_toml, &command, flags, env)
    }

    /// Starts `zkwatchdog run --config FILE` supervising `command` (any program, e.g. a fake
    /// agent), with the same config file as [`start`](Self::start). `child_pids` stays empty
    /// unless the command writes `child.pids` in [`dir`](Self::dir) itself.
    pub fn start_command(zk_hosts: &str, id: &str, extra_toml: &str, command: &[String]) -> Self {
        Self::launch(scratch_dir(), zk_hosts, id, extra_toml, command, &[], &[])
    }

    /// Like [`start_command`](Self::start_command) with extra environment variables.
    pub fn start_command_with_env(
        zk_hosts: &str,
        id: &str,
        extra_toml: &str,
        command: &[String],
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(scratch_dir(), zk_hosts, id, extra_toml, command, &[], env)
    }

    fn launch(
        dir: TempDir,
        zk_hosts: &str,
        id: &str,
        extra_toml: &str,
        command: &[String],
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let config = format!(
            "zk-hosts = {zk_hosts:?}\nid = {id:?}\nsession-timeout = \"2s\"\ncommand = {command:?}\n{extra_toml}\n"
        );
        let config_path = dir.path().join("watchdog.toml");
        std::fs::write(&config_path, config).expect("write the watchdog config");
        let log = File::create(dir.path().join("watchdog.log")).expect("create the watchdog log");
        let child = Command::new(bin_path("zkwatchdog"))
            .arg("run")
            .args(flags)
            .arg("--config")
            .arg(&config_path)
            .env_remove("ZK_HOSTS")
            .env("ZKWATCHDOG_LOG", "debug,zookeeper_client=info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn zkwatchdog");
        WatchdogProc {
            child,
            dir,
            exited: None,
            id: AgentId::new(id).expect("a valid agent id"),
            layout: Layout::new(zkwatchdog::registry::DEFAULT_ROOT).expect("the default root"),
        }
    }

    /// The watchdog's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The scratch directory (config, log, `child.pids`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Pids the children wrote so far, oldest first.
    pub fn child_pids(&self) -> Vec<u32> {
        read_pids(&self.path("child.pids"))
    }

    /// Waits until `n` children have started and returns the newest one's pid.
    pub fn wait_for_children(&self, n: usize, deadline: Duration) -> u32 {
        wait_until_sync(&format!("child #{n} to start"), deadline, || {
            let pids = self.child_pids();
            (pids.len() >= n).then(|| pids[n - 1])
        })
    }

    /// Waits until the child has made `n` grandchildren and returns their pids.
    pub fn wait_for_grandchildren(&self, n: usize, deadline: Duration) -> Vec<u32> {
        wait_until_sync(&format!("{n} grandchildren to start"), deadline, || {
            let pids = read_pids(&self.path("grandchild.pids"));
            (pids.len() >= n).then_some(pids)
        })
    }

    /// Sends `signal` to the watchdog process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal the watchdog");
    }

    /// Waits for the watchdog to exit; panics (after killing it) if it does not in time.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let child = &mut self.child;
        let status = wait_until_sync("zkwatchdog to exit", deadline, || {
            child.try_wait().expect("poll the watchdog")
        });
        self.exited = Some(status);
        status
    }

    /// Whether the watchdog is still running.
    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && self.child.try_wait().expect("poll the watchdog").is_none()
    }

    /// The watchdog's log (its stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("watchdog.log")).unwrap_or_default()
    }

    /// `<root>/agents/<id>`.
    pub fn marker_path(&self) -> String {
        self.layout.marker(&self.id)
    }

    /// `<root>/live/<id>`.
    pub fn live_path(&self) -> String {
        self.layout.live(&self.id)
    }

    /// The marker, decoded with the registry contract; `None` when absent.
    pub async fn marker(&self, client: &Client) -> Option<Marker> {
        read_record(client, &self.marker_path()).await
    }

    /// The liveness node, decoded; `None` when absent.
    pub async fn liveness(&self, client: &Client) -> Option<Liveness> {
        read_record(client, &self.live_path()).await
    }

    /// Waits until the liveness node shows a generation of at least `generation`.
    pub async fn wait_live(
        &self,
        client: &Client,
        generation: u64,
        deadline: Duration,
    ) -> Liveness {
        crate::wait::wait_until(
            &format!(
                "liveness node {} at generation {generation}",
                self.live_path()
            ),
            deadline,
            || async {
                self.liveness(client)
                    .await
                    .filter(|l| l.generation >= generation)
            },
        )
        .await
    }
}

impl Drop for WatchdogProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- zkwatchdog log ({}) ----\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        if self.exited.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Children and grandchildren die with the watchdog; a failed test must not leave any
        // behind all the same.
        let grandchildren = read_pids(&self.path("grandchild.pids"));
        for pid in self.child_pids().into_iter().chain(grandchildren) {
            if process_alive(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("zkwatchdog-wd-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Reads a registry record; `None` when the node is absent. Panics on undecodable data.
pub async fn read_record<T>(client: &Client, path: &str) -> Option<T>
where
    T: serde::de::DeserializeOwned + zkwatchdog::registry::Versioned,
{
    match client.get_data(path).await {
        Ok((data, _)) => Some(decode(path, &data).unwrap_or_else(|e| panic!("{e}"))),
        Err(ZkError::NoNode) => None,
        Err(e) => panic!("get_data({path}) failed: {e}"),
    }
}

/// Pids listed one per line in `path` (missing file: none).
pub fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether `pid` names a live process (a zombie counts as dead).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Connects a test client to `connect`.
pub async fn client(connect: &str) -> Client {
    zk::client(connect).await
}
