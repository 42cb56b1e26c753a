//! Real Kafka Connect workers (distributed mode, one cluster) against a real Kafka broker, each
//! wrapped by its own `zkwatchdog` with the Connect probe.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;
use zkwatchdog::registry::HealthStatus;
use zkwatchdog_tests::agents::{connect_command, free_ports, instance_dir, jvm_slot, Kafka};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::WatchdogProc;

use crate::common::{wait_health, Site, FAST_RESTART, LONG, START};

const CONNECTOR: &str = "file-sink";

/// A Connect worker wrapped by `zkwatchdog`, with its REST port and instance directory.
struct Worker {
    wd: WatchdogProc,
    port: u16,
    _dir: TempDir,
}

impl Worker {
    /// Starts `zkwatchdog` wrapping a worker of cluster `group`, probing it every 500 ms and
    /// restarting its failed tasks (the first restart `task-restart-initial` after the failure
    /// is seen).
    fn start(site: &Site, id: &str, kafka: &Kafka, group: &str) -> Self {
        let dir = instance_dir("zkwatchdog-connect-");
        let (port, _) = free_ports();
        let wd = WatchdogProc::start_command(
            &site.zk.connect_string(),
            id,
            &format!(
                "kind = \"kafka-connect\"\n{FAST_RESTART}[probe]\nurl = \"http://127.0.0.1:{port}\"\n\
                 interval = \"500ms\"\ntimeout = \"5s\"\nstart-grace = \"180s\"\n\
                 restart-failed-tasks = true\ntask-restart-initial = \"8s\"\ntask-restart-max = \"60s\"\n\
                 restart-after-failures = 20\n"
            ),
            &connect_command(dir.path(), port, &kafka.bootstrap(), group),
        );
        Worker {
            wd,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `host:port` as the worker advertises itself (the `worker_id` in statuses).
    fn worker_id(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests this worker received from its watchdog (its REST request log, passed through
    /// the watchdog's log, names the user agent) whose line contains `needle`. Requests one
    /// worker forwards to the leader are logged by the leader with the agent `kafka-connect`.
    fn requests(&self, needle: &str) -> usize {
        self.wd
            .log()
            .lines()
            .filter(|l| l.contains("RestServer") && l.contains("\"zkwatchdog/"))
            .filter(|l| l.contains(needle))
            .count()
    }
}

async fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

/// The connector's status from `worker`, once it has one.
async fn status(worker: &Worker) -> Option<Value> {
    let url = worker.url(&format!("/connectors/{CONNECTOR}/status"));
    let answer = http().await.get(url).send().await.ok()?;
    answer.status().is_success().then_some(())?;
    answer.json().await.ok()
}

/// Waits until task 0 of the connector is in `state` and returns its status.
async fn wait_task(worker: &Worker, state: &str) -> Value {
    wait_until(&format!("task 0 of {CONNECTOR} {state}"), LONG, || async {
        status(worker)
            .await
            .filter(|s| s["tasks"][0]["state"] == state)
    })
    .await
}

/// Creates (or reconfigures) the FileStreamSink writing to `file`, through `worker`.
async fn put_sink(worker: &Worker, file: &Path) {
    let config = json!({
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "topics": "zkw-lines",
        "file": file.display().to_string(),
    });
    let url = worker.url(&format!("/connectors/{CONNECTOR}/config"));
    wait_until("the connector to be created", LONG, || async {
        // 409 while the cluster rebalances: try again.
        let answer = http().await.put(&url).json(&config).send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_task_in_a_two_worker_cluster_is_one_incident_one_restart_call_and_no_jvm_restart(
) {
    let _slot = jvm_slot();
    let kafka = Kafka::start();
    let site = Site::start();
    let a = Worker::start(&site, "connect-a@test", &kafka, "zkw-cluster");
    let b = Worker::start(&site, "connect-b@test", &kafka, "zkw-cluster");
    let c = site.client().await;
    let live_a = wait_health(&a.wd, &c, 1, HealthStatus::Ok, START).await;
    let live_b = wait_health(&b.wd, &c, 1, HealthStatus::Ok, START).await;

    // A FileStreamSink whose file lies in a missing directory: its task fails at start.
    let files = instance_dir("zkwatchdog-connect-files-");
    let missing = files.path().join("missing");
    put_sink(&a, &missing.join("out.txt")).await;
    let failed = wait_task(&b, "FAILED").await;
    let runs_on = failed["tasks"][0]["worker_id"]
        .as_str()
        .expect("the task's worker_id")
        .to_string();
    let (owner, other) = if runs_on == a.worker_id() {
        (&a, &b)
    } else {
        assert_eq!(
            runs_on,
            b.worker_id(),
            "the task runs on one of our workers"
        );
        (&b, &a)
    };

    let degraded = site.mail(&owner.wd.id.to_string(), "DEGRADED").await;
    for needle in [
        CONNECTOR,
        "task 0",
        "FAILED",
        "Couldn't find or create file",
    ] {
        assert!(
            degraded.body.contains(needle),
            "the email names {needle}:\n{}",
            degraded.body
        );
    }
    // The directory appears; the owner's watchdog restarts the failed task once.
    std::fs::create_dir_all(&missing).expect("create the missing directory");
    wait_task(&a, "RUNNING").await;
    let recovered = site.mail(&owner.wd.id.to_string(), "RECOVERED").await;
    assert!(
        recovered.body.contains("healthy again"),
        "{}",
        recovered.body
    );

    let restart = format!("POST /connectors/{CONNECTOR}/restart?includeTasks=true&onlyFailed=true");
    assert_eq!(
        owner.requests(&restart) + other.requests(&restart),
        1,
        "one restart call for one failed task"
    );
    assert_eq!(
        other.requests("/restart"),
        0,
        "the other worker's watchdog left it alone"
    );
    // Only the owner's agent had an incident, and neither JVM was restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subjects = site.subjects();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects
            .iter()
            .all(|s| s.contains(&owner.wd.id.to_string())),
        "{subjects:?}"
    );
    for (worker, before) in [(&a, &live_a), (&b, &live_b)] {
        let now = worker.wd.liveness(&c).await.expect("live");
        assert_eq!(
            (now.generation, now.child_pid),
            (1, before.child_pid),
            "{} was not restarted",
            worker.wd.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connect_worker_is_crashed_and_a_stopped_one_is_silent() {
    const ID: &str = "connect-kill@test";
    let _slot = jvm_slot();
    let kafka = Kafka::start();
    let site = Site::start();
    let mut w = Worker::start(&site, ID, &kafka, "zkw-solo");
    let c = site.client().await;
    let first = wait_health(&w.wd, &c, 1, HealthStatus::Ok, START).await;

    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the worker JVM");
    let crash = site.mail(ID, "CRASHED").await;
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    wait_health(&w.wd, &c, 2, HealthStatus::Ok, START).await;
    site.mail(ID, "RECOVERED").await;
    let before = site.smtp.messages().len();

    // systemctl stop: SIGTERM to the watchdog. The worker stops, the agent leaves the registry,
    // and nobody is told.
    w.wd.signal(Signal::SIGTERM);
    let status = w.wd.wait_exit(LONG);
    assert!(status.success(), "a planned stop exits 0: {status:?}");
    assert!(w.wd.marker(&c).await.is_none(), "the marker is gone");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(site.smtp.messages().len(), before, "{:?}", site.subjects());
}
