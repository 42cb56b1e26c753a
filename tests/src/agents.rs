//! The real Apache Flume, Kafka and Kafka Connect, through `scripts/agents.sh` (which installs
//! them from Maven Central into a cache and runs them on loopback ports).
//!
//! - [`Kafka`]: a single-node KRaft broker in the background, stopped by its pid file on drop;
//! - [`flume_command`], [`connect_command`], [`kafka_command`], [`kafka_join_command`]: the
//!   foreground command lines an operator wraps with `zkwatchdog` (the script `exec`s the JVM,
//!   so the JVM is the watchdog's child);
//! - [`jvm_slot`]: at most [`JVM_SLOTS`] tests of this process run their JVMs at once, so that a
//!   2-core machine is not asked to start a dozen JVMs together; [`jvm_slots`] for a test that
//!   runs two.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::zk::{pick_ports, print_log_tail};
use crate::{describe, repo_root};

/// Tests of one process that may hold JVMs at the same time.
pub const JVM_SLOTS: usize = 2;

/// How long a program may take to become ready (a JVM on a loaded 2-core machine).
pub const READY_SECS: u64 = 180;

/// `scripts/agents.sh`.
pub fn agents_script() -> PathBuf {
    repo_root().join("scripts").join("agents.sh")
}

/// Runs `agents.sh ARGS`, bounded by `limit`; panics with its output if it fails.
pub fn agents(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new("bash")
        .arg(agents_script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/agents.sh");
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect agents.sh output");
                panic!(
                    "agents.sh {args:?} did not finish within {limit:?}: {}",
                    describe(&out)
                );
            }
        }
    }
    let out = child.wait_with_output().expect("collect agents.sh output");
    assert!(
        out.status.success(),
        "agents.sh {args:?} failed: {}",
        describe(&out)
    );
    out
}

/// A permit to run JVMs; released on drop.
#[derive(Debug)]
pub struct JvmSlot(());

fn slots() -> &'static (Mutex<usize>, Condvar) {
    static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
    &SLOTS
}

/// Waits (at most 30 minutes) for one of the [`JVM_SLOTS`] slots of this process.
pub fn jvm_slot() -> JvmSlot {
    let mut slots = jvm_slots(1);
    slots.pop().expect("one slot")
}

/// Waits (at most 30 minutes) until `n` (at most [`JVM_SLOTS`]) slots are free and takes them
/// together, so that two tests each holding one slot never wait for each other's second.
pub fn jvm_slots(n: usize) -> Vec<JvmSlot> {
    assert!((1..=JVM_SLOTS).contains(&n), "{n} JVM slots of {JVM_SLOTS}");
    let (lock, cv) = slots();
    let mut used = lock.lock().unwrap_or_else(|p| p.into_inner());
    let deadline = Instant::now() + Duration::from_secs(1800);
    while *used + n > JVM_SLOTS {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {n} JVM slots became free within 30 minutes"
        );
        used = cv
            .wait_timeout(used, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    *used += n;
    (0..n).map(|_| JvmSlot(())).collect()
}

impl Drop for JvmSlot {
    fn drop(&mut self) {
        let (lock, cv) = slots();
        let mut used = lock.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        // Every waiter: one needing two slots must not take the only wake-up.
        cv.notify_all();
    }
}

/// A directory for one program's instance (config, data, log, pid file).
pub fn instance_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create an instance directory")
}

/// Two free loopback ports next to each other (base, base + 1).
pub fn free_ports() -> (u16, u16) {
    let base = pick_ports(&[0, 1]);
    (base, base + 1)
}

/// A single-node Kafka broker (KRaft, broker and controller in one process) on 127.0.0.1, in
/// the background; stopped on drop.
#[derive(Debug)]
pub struct Kafka {
    agent: Background,
    port: u16,
}

impl Kafka {
    /// Starts a broker on free ports and waits until it answers a metadata request.
    pub fn start() -> Self {
        let agent = Background {
            dir: instance_dir("zkwatchdog-kafka-"),
        };
        let (port, controller) = free_ports();
        let path = agent.dir().display().to_string();
        let (p, c) = (port.to_string(), controller.to_string());
        let timeout = READY_SECS.to_string();
        agents(
            &[
                "start-kafka",
                &path,
                "--port",
                &p,
                "--controller-port",
                &c,
                "--timeout",
                &timeout,
            ],
            Duration::from_secs(READY_SECS + 30),
        );
        Kafka { agent, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The instance directory (`server.properties`, `data/`, `log`).
    pub fn dir(&self) -> &Path {
        self.agent.dir()
    }

    /// Creates `topic` with one partition.
    pub fn create_topic(&self, topic: &str) {
        let bootstrap = self.bootstrap();
        agents(
            &[
                "kafka-tool",
                "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server",
                &bootstrap,
                "--create",
                "--if-not-exists",
                "--topic",
                topic,
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            Duration::from_secs(120),
        );
    }
}

/// Stops the program of instance `dir` by its pid file (SIGTERM, SIGKILL after 30 s).
pub fn stop(dir: &Path) {
    let _ = Command::new("bash")
        .arg(agents_script())
        .arg("stop")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
}

fn script_argv(args: &[&str]) -> Vec<String> {
    let mut argv = vec!["bash".to_string(), agents_script().display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    argv
}

/// The foreground command line of a Flume agent named `name` with configuration `conf` and
/// HTTP monitoring on `metrics_port`, running in `dir`: what `zkwatchdog` wraps.
pub fn flume_command(dir: &Path, name: &str, conf: &Path, metrics_port: u16) -> Vec<String> {
    script_argv(&[
        "run-flume",
        &dir.display().to_string(),
        "--name",
        name,
        "--conf",
        &conf.display().to_string(),
        "--metrics-port",
        &metrics_port.to_string(),
    ])
}

/// The foreground command line of a distributed Kafka Connect worker with its REST API on
/// `port`, in group `group`, against `bootstrap`: what `zkwatchdog` wraps.
pub fn connect_command(dir: &Path, port: u16, bootstrap: &str, group: &str) -> Vec<String> {
    script_argv(&[
        "run-connect",
        &dir.display().to_string(),
        "--port",
        &port.to_string(),
        "--bootstrap",
        bootstrap,
        "--group",
        group,
        "--topic-prefix",
        group,
    ])
}

/// The foreground command line of a single-node Kafka broker (KRaft, broker and controller in
/// one process) listening on 127.0.0.1:`port`, its controller on `controller_port`, with its
/// data in `dir`: what `zkwatchdog` wraps. The storage is formatted at the first start only, so
/// a restarted broker keeps its topics and committed offsets.
pub fn kafka_command(dir: &Path, port: u16, controller_port: u16) -> Vec<String> {
    script_argv(&[
        "run-kafka",
        &dir.display().to_string(),
        "--port",
        &port.to_string(),
        "--controller-port",
        &controller_port.to_string(),
    ])
}

/// The foreground command line of a broker-only Kafka node with `node.id` `node_id`, listening
/// on 127.0.0.1:`port` with its data in `dir`, joining the cluster of the single node whose
/// instance directory is `first` (which must have been started once): what `zkwatchdog` wraps.
pub fn kafka_join_command(dir: &Path, port: u16, first: &Path, node_id: u32) -> Vec<String> {
    script_argv(&[
        "run-kafka",
        &dir.display().to_string(),
        "--port",
        &port.to_string(),
        "--join",
        &first.display().to_string(),
        "--node-id",
        &node_id.to_string(),
    ])
}

/// A program started in the background by `agents.sh start-*` (not wrapped); stopped by its
/// pid file on drop.
#[derive(Debug)]
pub struct Background {
    dir: TempDir,
}

impl Background {
    /// The instance directory (configuration, `log`, `agent.pid`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tail(&self.dir.path().join("log"));
        }
        stop(self.dir.path());
    }
}

/// Starts a Flume agent named `name` with configuration `conf` in the background (not
/// wrapped), and waits until its `/metrics` on `metrics_port` answers.
pub fn start_flume(name: &str, conf: &Path, metrics_port: u16) -> Background {
    let agent = Background {
        dir: instance_dir("zkwatchdog-flume-bg-"),
    };
    let path = agent.dir().display().to_string();
    let (conf, port, timeout) = (
        conf.display().to_string(),
        metrics_port.to_string(),
        READY_SECS.to_string(),
    );
    agents(
        &[
            "start-flume",
            &path,
            "--name",
            name,
            "--conf",
            &conf,
            "--metrics-port",
            &port,
            "--timeout",
            &timeout,
        ],
        Duration::from_secs(READY_SECS + 30),
    );
    agent
}
