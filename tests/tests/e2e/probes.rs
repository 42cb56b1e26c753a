//! Health probes end to end: `zkwatchdog run` against a real ZooKeeper, probing endpoints on
//! loopback (the fake Flume agent and Kafka Connect worker it supervises, a closed port, a
//! listener that never answers, probe commands), with the results read back from the liveness
//! node and the marker.
//!
//! Why fakes here: these tests pin the probe's decisions to exact figures probe by probe (a
//! sink flat for exactly `stalled-after` probes, a fill that moves without a new finding, a
//! metrics port that opens after a chosen delay, an endpoint that accepts and never answers, a
//! worker older than Kafka 3.0 answering 204, restarts that keep failing until the limit), and
//! the real Flume and Kafka Connect cannot be driven into those states on purpose and on time.
//! The same checks against the real programs, where they can be driven (a channel filling up, a
//! Kafka channel, a FileStreamSink task failing on a missing directory and restarted, a killed
//! JVM, reload, a daemonizing launcher), are in `tests/real_agents/`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::{HealthStatus, Liveness};
use zkwatchdog_tests::fakes::connect_model::State as ConnectUnitState;
use zkwatchdog_tests::fakes::{FakeConnect, FakeFlume};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::zk::ZkServer;
use zookeeper_client::Client;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits until the liveness node (any generation ≥ `generation`) shows `status`.
async fn wait_health(
    wd: &WatchdogProc,
    c: &Client,
    generation: u64,
    status: HealthStatus,
) -> Liveness {
    wait_until(
        &format!("health {status:?} at generation {generation}"),
        LONG,
        || async {
            wd.liveness(c)
                .await
                .filter(|l| l.generation >= generation && l.health.status == status)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_unknown_within_the_grace_and_degraded_after_it() {
    let zk = ZkServer::start();
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/health");
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "probe-grace@test",
        &format!(
            "[probe]\nurl = {url:?}\ninterval = \"100ms\"\ntimeout = \"1s\"\nstart-grace = \"3s\"\n"
        ),
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    assert_eq!(live.health.status, HealthStatus::Unknown);
    assert_eq!(live.health.detail, "starting (grace 3s)");

    // Several probes are refused inside the grace: still unknown, nothing written.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let still = wd.liveness(&c).await.expect("liveness");
    assert_eq!(still.generation, live.generation);
    assert_eq!(still.health.status, HealthStatus::Unknown, "{still:?}");
    assert!(
        wd.log().contains("connection refused"),
        "probes were made and refused:\n{}",
        wd.log()
    );

    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    assert_eq!(degraded.generation, live.generation);
    assert_eq!(
        degraded.health.detail,
        format!("GET {url} failed: connection refused")
    );
    assert!(degraded.health.checked_at.is_some());
}

/// Accepts connections on loopback and never answers; counts them.
async fn hanging_endpoint() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_endpoint_does_not_delay_a_crash_restart() {
    let zk = ZkServer::start();
    let (port, accepted, server) = hanging_endpoint().await;
    // The probe would wait a minute for its answer; the restart must not.
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "probe-hang@test",
        &format!(
            "[probe]\nurl = \"http://127.0.0.1:{port}/metrics\"\nkind = \"flume\"\n\
             interval = \"50ms\"\ntimeout = \"60s\"\nstart-grace = \"0s\"\n{FAST_RESTART}"
        ),
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    wait_until("the probe to be hanging on the endpoint", LONG, || async {
        (accepted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;

    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    // Far less than the probe's 60s timeout.
    let second = wait_until(
        "the next generation while the probe hangs",
        Duration::from_secs(15),
        || async {
            wd.liveness(&c)
                .await
                .filter(|l| l.generation > first.generation)
        },
    )
    .await;
    assert_ne!(second.child_pid, first.child_pid);
    let marker = wd.marker(&c).await.expect("marker");
    let exit = marker.last_exit.expect("last_exit");
    assert_eq!(exit.signal.as_deref(), Some("SIGKILL"));
    assert_eq!(exit.probe_restart, None, "a crash, not a probe restart");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_triggered_restart_is_recorded_in_last_exit() {
    let zk = ZkServer::start();
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "probe-restart@test",
        "[probe]\ncommand = [\"/bin/sh\", \"-c\", \"echo pipeline stuck >&2; exit 3\"]\n\
         interval = \"100ms\"\ntimeout = \"5s\"\nstart-grace = \"0s\"\nrestart-after-failures = 3\n\
         [restart]\nstop-timeout = \"5s\"\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    let second = wd.wait_live(&c, first.generation + 1, LONG).await;
    assert_ne!(second.child_pid, first.child_pid);
    let marker = wd.marker(&c).await.expect("marker");
    let exit = marker.last_exit.expect("last_exit");
    assert_eq!(exit.generation, first.generation);
    assert_eq!(
        exit.probe_restart.as_deref(),
        Some("probe command /bin/sh exited 3: pipeline stuck")
    );
    // testchild dies of the default SIGTERM.
    assert_eq!(exit.signal.as_deref(), Some("SIGTERM"));
    assert!(marker.restarts >= 1);
    assert!(
        wd.log()
            .contains("restarting the child: its health probe kept failing"),
        "{}",
        wd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_restart_is_off_by_default() {
    let zk = ZkServer::start();
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "probe-norestart@test",
        "[probe]\ncommand = [\"/bin/false\"]\ninterval = \"50ms\"\nstart-grace = \"0s\"\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    assert_eq!(degraded.health.detail, "probe command /bin/false exited 1");
    // Many failed probes later, the same child still runs.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let later = wd.liveness(&c).await.expect("liveness");
    assert_eq!(later.generation, degraded.generation);
    assert_eq!(later.child_pid, degraded.child_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_written_only_when_findings_change_not_figures() {
    let zk = ZkServer::start();
    // Fails every time with a different line (the figures), for the same reason (the finding).
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "probe-quiet@test",
        "[probe]\ncommand = [\"/bin/sh\", \"-c\", \"echo queue depth $$ >&2; exit 1\"]\n\
         interval = \"50ms\"\nstart-grace = \"0s\"\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    let (_, before) = c.get_data(&wd.live_path()).await.expect("liveness");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, after) = c.get_data(&wd.live_path()).await.expect("liveness");
    assert_eq!(
        after.version, before.version,
        "no write while only figures move"
    );
    assert_eq!(after.mzxid, before.mzxid);
    assert!(
        wd.log()
            .matches("detail=probe command /bin/sh exited 1: queue depth")
            .count()
            >= 5,
        "several probes ran meanwhile:\n{}",
        wd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_recreates_the_liveness_node_with_the_current_health() {
    let zk = ZkServer::start();
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "probe-expiry@test",
        "[probe]\ncommand = [\"/bin/false\"]\ninterval = \"100ms\"\nstart-grace = \"0s\"\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let before = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;

    // Freeze the watchdog past its session timeout: ZooKeeper expires the session.
    wd.signal(Signal::SIGSTOP);
    let expired = tokio::time::timeout(LONG, async {
        wait_until("the frozen watchdog's session to expire", LONG, || async {
            (!zkwatchdog_tests::zk::exists(&c, &wd.live_path()).await).then_some(())
        })
        .await;
    })
    .await;
    wd.signal(Signal::SIGCONT);
    expired.expect("expiry");

    let after = wait_until("liveness re-created by a new session", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.session_id != before.session_id)
    })
    .await;
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.health.status, HealthStatus::Degraded, "{after:?}");
    assert_eq!(after.health.detail, "probe command /bin/false exited 1");
}

// ---- With the fake agents (tests/src/fakes) supervised by zkwatchdog ----

/// The `[probe]` settings every fake-agent test shares: quick probes, a start grace long enough
/// for a fake to bind on a loaded machine.
const QUICK: &str = "interval = \"100ms\"\ntimeout = \"2s\"\nstart-grace = \"20s\"\n";

/// Starts zkwatchdog supervising `fake-flume --listen ADDR extra…`, probing its metrics.
async fn flume_agent(
    zk: &ZkServer,
    id: &str,
    probe: &str,
    extra: &[&str],
) -> (FakeFlume, WatchdogProc) {
    let fake = FakeFlume::on_free_port();
    let wd = WatchdogProc::start_command(
        &zk.connect_string(),
        id,
        &format!(
            "kind = \"flume\"\n{FAST_RESTART}[probe]\nurl = {:?}\n{probe}",
            fake.metrics_url()
        ),
        &fake.command(extra),
    );
    fake.wait_ready(LONG).await;
    (fake, wd)
}

/// Starts zkwatchdog supervising `fake-connect --listen ADDR extra…`, probing its REST API.
async fn connect_worker(
    zk: &ZkServer,
    id: &str,
    probe: &str,
    extra: &[&str],
) -> (FakeConnect, WatchdogProc) {
    let fake = FakeConnect::on_free_port();
    let wd = WatchdogProc::start_command(
        &zk.connect_string(),
        id,
        &format!(
            "kind = \"kafka-connect\"\n{FAST_RESTART}[probe]\nurl = {:?}\n{probe}",
            fake.url("")
        ),
        &fake.command(extra),
    );
    fake.wait_ready(LONG).await;
    (fake, wd)
}

/// The liveness node's data version.
async fn live_version(wd: &WatchdogProc, c: &Client) -> i32 {
    c.get_data(&wd.live_path())
        .await
        .expect("liveness")
        .1
        .version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_channel_fill_over_the_threshold_is_degraded_and_back_under_is_ok() {
    let zk = ZkServer::start();
    let (fake, wd) = flume_agent(&zk, "flume-fill@test", QUICK, &[]).await;
    let c = client(&zk.connect_string()).await;
    let ok = wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    assert!(
        ok.health
            .detail
            .starts_with("CHANNEL.c1 fill 0.0%, SINK.k1 "),
        "{ok:?}"
    );

    fake.set_channel_size("c1", 9320).await;
    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    assert_eq!(
        degraded.health.detail,
        "CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)"
    );

    fake.set_channel_size("c1", 1200).await;
    let ok = wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    assert_eq!(ok.health.detail, "CHANNEL.c1 fill 12.0%, SINK.k1 draining");
    assert_eq!(
        ok.generation, degraded.generation,
        "no restart: off by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_stalled_sink_is_detected_after_n_probes() {
    let zk = ZkServer::start();
    let (fake, wd) = flume_agent(
        &zk,
        "flume-stall@test",
        // No start grace: inside it a stall alone is "starting" (a sink on a Kafka channel takes
        // nothing until its consumer has joined its group), and this test is about the stall.
        &format!(
            "{}stalled-after = 3\n",
            QUICK.replace("start-grace = \"20s\"", "start-grace = \"0s\"")
        ),
        &[],
    )
    .await;
    let c = client(&zk.connect_string()).await;
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;

    fake.set_channel_size("c1", 500).await;
    // Read before the stall: a probe answered between the stall and a read after it would make
    // the count one short.
    let before_stall = fake.state().await.steps;
    fake.stall_sink("k1").await;
    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    let detail = &degraded.health.detail;
    assert!(
        detail.starts_with("SINK.k1 stalled: EventTakeSuccessCount flat at ")
            && detail.ends_with(" for 3 probes while CHANNEL.c1 holds 500 events"),
        "{detail}"
    );
    // Three flat probes at least after the stall began.
    let steps = fake.state().await.steps;
    assert!(
        steps >= before_stall + 3,
        "{steps} probes, {before_stall} before the stall"
    );

    fake.resume_sink("k1").await;
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_connection_failures_growing_are_degraded() {
    let zk = ZkServer::start();
    let (fake, wd) = flume_agent(&zk, "flume-conn@test", QUICK, &[]).await;
    let c = client(&zk.connect_string()).await;
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    fake.add_connection_failures("k1", 4).await;
    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    assert_eq!(
        degraded.health.detail,
        "SINK.k1 ConnectionFailedCount grew 0 → 4"
    );
    // Not growing any more: healthy again.
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_health_is_written_only_when_findings_change() {
    let zk = ZkServer::start();
    let (fake, wd) = flume_agent(&zk, "flume-quiet@test", QUICK, &[]).await;
    let c = client(&zk.connect_string()).await;
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    let version = live_version(&wd, &c).await;
    // Counters move on every probe: no write.
    let steps = fake.state().await.steps;
    wait_until("five more probes", LONG, || async {
        (fake.state().await.steps >= steps + 5).then_some(())
    })
    .await;
    assert_eq!(
        live_version(&wd, &c).await,
        version,
        "figures alone are not written"
    );

    fake.set_channel_size("c1", 9000).await;
    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    let (_, stat) = c.get_data(&wd.live_path()).await.expect("liveness");
    assert_eq!(stat.version, version + 1);
    // The fill figure changes, the finding does not.
    fake.set_channel_size("c1", 9500).await;
    let steps = fake.state().await.steps;
    wait_until("five more probes", LONG, || async {
        (fake.state().await.steps >= steps + 5).then_some(())
    })
    .await;
    let (_, after) = c.get_data(&wd.live_path()).await.expect("liveness");
    assert_eq!(after.version, stat.version);
    assert_eq!(after.mzxid, stat.mzxid);
    let still = wd.liveness(&c).await.expect("liveness");
    assert_eq!(
        still.health.detail, degraded.health.detail,
        "90.0% as first published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_agent_starting_slowly_is_unknown_not_degraded() {
    let zk = ZkServer::start();
    let (_fake, wd) = flume_agent(
        &zk,
        "flume-slow@test",
        "interval = \"100ms\"\ntimeout = \"1s\"\nstart-grace = \"20s\"\n",
        &["--start-delay", "1500"],
    )
    .await;
    let c = client(&zk.connect_string()).await;
    let ok = wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    assert_eq!(ok.generation, 1);
    assert!(
        wd.log().contains("starting (grace 20s): GET"),
        "probes were refused during the start:\n{}",
        wd.log()
    );
    assert!(
        !wd.log().contains("status=Degraded"),
        "never degraded:\n{}",
        wd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flume_probe_restart_records_the_channel_in_last_exit() {
    let zk = ZkServer::start();
    let (fake, wd) = flume_agent(
        &zk,
        "flume-restart@test",
        "interval = \"100ms\"\ntimeout = \"2s\"\nstart-grace = \"1s\"\nrestart-after-failures = 3\n",
        &[],
    )
    .await;
    let c = client(&zk.connect_string()).await;
    let first = wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    fake.set_channel_size("c1", 9500).await;
    // The restarted agent starts empty, so it is healthy again.
    let second = wd.wait_live(&c, first.generation + 1, LONG).await;
    let marker = wd.marker(&c).await.expect("marker");
    let exit = marker.last_exit.expect("last_exit");
    assert_eq!(exit.generation, first.generation);
    assert_eq!(
        exit.probe_restart.as_deref(),
        Some("CHANNEL.c1 fill 95.0% > 80.0% (9500/10000)")
    );
    assert!(exit.code.is_some() || exit.signal.is_some());
    fake.wait_ready(LONG).await;
    let ok = wait_health(&wd, &c, second.generation, HealthStatus::Ok).await;
    assert_eq!(ok.generation, second.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failed_task_is_degraded_naming_connector_task_worker_and_trace() {
    let zk = ZkServer::start();
    let (fake, wd) = connect_worker(
        &zk,
        "connect-fail@test",
        QUICK,
        &["--connector", "jdbc-sink:2", "--no-expand"],
    )
    .await;
    let c = client(&zk.connect_string()).await;
    let ok = wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    assert_eq!(ok.health.detail, "all 1 connector RUNNING");

    fake.fail_task(
        "jdbc-sink",
        1,
        Some("org.apache.kafka.connect.errors.ConnectException: db down\n\tat a.B.c(B.java:1)\n\tat d.E.f(E.java:2)\n\tat g.H.i(H.java:3)"),
    )
    .await;
    let degraded = wait_health(&wd, &c, 1, HealthStatus::Degraded).await;
    assert_eq!(
        degraded.health.detail,
        format!(
            "connector jdbc-sink task 1 FAILED on worker {}: \
             org.apache.kafka.connect.errors.ConnectException: db down | at a.B.c(B.java:1) | \
             at d.E.f(E.java:2) …",
            fake.worker_id()
        )
    );
    // The worker ignores ?expand=status: statuses came one connector at a time.
    let requests = fake.requests().await;
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path == "/connectors/jdbc-sink/status"),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.method == "POST"),
        "no remediation unless enabled: {requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failed_task_is_restarted_after_a_409_and_health_returns_to_ok() {
    let zk = ZkServer::start();
    let (fake, wd) = connect_worker(
        &zk,
        "connect-remedy@test",
        &format!(
            "{QUICK}restart-failed-tasks = true\ntask-restart-initial = \"200ms\"\n\
             task-restart-max = \"2s\"\ntask-restart-limit = 5\n"
        ),
        &["--connector", "jdbc-sink:1", "--restart-ms", "100"],
    )
    .await;
    let c = client(&zk.connect_string()).await;
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    let version = live_version(&wd, &c).await;

    fake.queue_conflicts(1).await;
    fake.fail_task("jdbc-sink", 0, None).await;
    let restarts = wait_until("a 409 and then an accepted restart", LONG, || async {
        let posts: Vec<_> = fake
            .requests()
            .await
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        (posts.len() >= 2).then_some(posts)
    })
    .await;
    for r in &restarts {
        assert_eq!(r.path, "/connectors/jdbc-sink/restart");
        assert_eq!(
            r.query.as_deref(),
            Some("includeTasks=true&onlyFailed=true")
        );
    }
    wait_until("the task RUNNING again", LONG, || async {
        let s = fake.status("jdbc-sink").await;
        (s.tasks[0].state == ConnectUnitState::Running).then_some(())
    })
    .await;
    let ok = wait_until("health ok after the degraded spell", LONG, || async {
        let (_, stat) = c.get_data(&wd.live_path()).await.ok()?;
        let live = wd.liveness(&c).await?;
        (stat.version >= version + 2 && live.health.status == HealthStatus::Ok).then_some(live)
    })
    .await;
    assert_eq!(ok.health.detail, "all 1 connector RUNNING");
    assert!(
        wd.log().contains("connector jdbc-sink task 0 FAILED"),
        "the degraded health was published:\n{}",
        wd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_remediation_that_keeps_failing_gives_up_and_says_so() {
    let zk = ZkServer::start();
    let (fake, wd) = connect_worker(
        &zk,
        "connect-giveup@test",
        &format!(
            "{QUICK}restart-failed-tasks = true\ntask-restart-initial = \"100ms\"\n\
             task-restart-max = \"5s\"\ntask-restart-limit = 2\n"
        ),
        &["--connector", "jdbc-sink:1", "--restart-ms", "50"],
    )
    .await;
    let c = client(&zk.connect_string()).await;
    wait_health(&wd, &c, 1, HealthStatus::Ok).await;
    fake.restart_fails(true).await;
    fake.fail_task("jdbc-sink", 0, None).await;
    let gave_up = wait_until("remediation to give up", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.health.detail.contains("remediation gave up"))
    })
    .await;
    assert_eq!(gave_up.health.status, HealthStatus::Degraded);
    assert!(
        gave_up
            .health
            .detail
            .contains("connector jdbc-sink: remediation gave up after 2 restarts, still FAILED"),
        "{:?}",
        gave_up.health
    );
    let posts = fake
        .requests()
        .await
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2, "capped at task-restart-limit");
}

// ---- The probe driver on its own: credentials, private CAs, a cluster of Connect workers ----

/// Starts the probe driver of the `[probe]` table `probe` (quick, no grace) for a child that
/// has just started.
fn probe_driver(
    probe: &str,
) -> (
    zkwatchdog::probe::driver::ProbeDriver,
    tokio::sync::mpsc::UnboundedReceiver<zkwatchdog::probe::driver::ProbeEvent>,
) {
    let text = format!(
        "command = [\"x\"]\n[probe]\ninterval = \"100ms\"\ntimeout = \"5s\"\nstart-grace = \"0s\"\n{probe}\n"
    );
    let config = zkwatchdog::config::parse_raw(&text, "probe.toml")
        .and_then(|raw| raw.validate("probe.toml", true))
        .unwrap_or_else(|e| panic!("{e}"));
    let probe = config.probe.expect("a [probe] table");
    let (driver, events) = zkwatchdog::probe::driver::ProbeDriver::start(
        probe,
        "probe-e2e".into(),
        zkwatchdog::metrics::WatchdogMetrics::new("probe-e2e"),
    )
    .expect("driver starts");
    driver.child_started(1, std::time::Instant::now());
    (driver, events)
}

/// The next health the driver publishes.
async fn next_health(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<zkwatchdog::probe::driver::ProbeEvent>,
) -> zkwatchdog::registry::Health {
    loop {
        match tokio::time::timeout(LONG, events.recv()).await {
            Ok(Some(zkwatchdog::probe::driver::ProbeEvent::Health { health, .. })) => {
                return health
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the probe driver stopped"),
            Err(_) => panic!("no health within {LONG:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_send_basic_auth_with_the_password_from_the_environment() {
    use wiremock::matchers::{basic_auth, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    std::env::set_var("ZKWATCHDOG_E2E_PROBE_PASSWORD", "s3cret-e2e");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .and(basic_auth("watchdog", "s3cret-e2e"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&server)
        .await;
    let url = format!("{}/health", server.uri());

    let (_driver, mut events) = probe_driver(&format!(
        "kind = \"http\"\nurl = {url:?}\nusername = \"watchdog\"\npassword-env = \"ZKWATCHDOG_E2E_PROBE_PASSWORD\""
    ));
    let health = next_health(&mut events).await;
    assert_eq!(health.status, HealthStatus::Ok, "{health:?}");
    assert_eq!(health.detail, format!("GET {url} answered 200 OK"));

    // Without the right credentials the same endpoint refuses: the header is what made it work.
    let (_driver, mut events) = probe_driver(&format!(
        "kind = \"http\"\nurl = {url:?}\nusername = \"intruder\"\npassword-env = \"ZKWATCHDOG_E2E_PROBE_PASSWORD\""
    ));
    let health = next_health(&mut events).await;
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert_eq!(
        health.detail,
        format!("GET {url} answered 401 Unauthorized")
    );
    let (_driver, mut events) = probe_driver(&format!("kind = \"http\"\nurl = {url:?}"));
    assert_eq!(
        next_health(&mut events).await.status,
        HealthStatus::Degraded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_probe_judges_only_its_worker_and_restarts_task_by_task_on_a_pre_3_0_worker() {
    use wiremock::matchers::{basic_auth, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    std::env::set_var("ZKWATCHDOG_E2E_CONNECT_PASSWORD", "connect-pw");
    let server = MockServer::start().await;
    let worker = server.address().to_string();
    let other = "10.9.9.9:8083";
    let listing = serde_json::json!({
        "jdbc": {"status": {
            "name": "jdbc",
            "connector": {"state": "RUNNING", "worker_id": worker},
            "tasks": [
                {"id": 0, "state": "FAILED", "worker_id": worker, "trace": "boom here"},
                {"id": 1, "state": "FAILED", "worker_id": other, "trace": "boom there"},
                {"id": 2, "state": "UNASSIGNED", "worker_id": null}
            ],
            "type": "sink"
        }},
        "s3": {"status": {
            "name": "s3",
            "connector": {"state": "FAILED", "worker_id": other, "trace": "boom"},
            "tasks": [],
            "type": "sink"
        }}
    });
    Mock::given(method("GET"))
        .and(path("/connectors"))
        .and(query_param("expand", "status"))
        .and(basic_auth("watchdog", "connect-pw"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listing))
        .mount(&server)
        .await;
    // A worker older than Kafka 3.0: it ignores includeTasks/onlyFailed and answers 204.
    Mock::given(method("POST"))
        .and(basic_auth("watchdog", "connect-pw"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&server)
        .await;

    let (_driver, mut events) = probe_driver(&format!(
        "kind = \"kafka-connect\"\nurl = {:?}\nusername = \"watchdog\"\n\
         password-env = \"ZKWATCHDOG_E2E_CONNECT_PASSWORD\"\nrestart-failed-tasks = true\n\
         task-restart-initial = \"200ms\"\ntask-restart-max = \"1h\"\ntask-restart-limit = 1",
        server.uri()
    ));
    let health = next_health(&mut events).await;
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    // Only this worker's FAILED task: the other worker's task and connector are its own watchdog's.
    assert_eq!(
        health.detail,
        format!("connector jdbc task 0 FAILED on worker {worker}: boom here")
    );

    // One restart call for the connector, then (204: pre-3.0) the task of this worker.
    let posts = wait_until("the task restart", LONG, || async {
        let posts: Vec<String> = server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method == wiremock::http::Method::POST)
            .map(|r| {
                let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{}{query}", r.url.path())
            })
            .collect();
        (posts.len() >= 2).then_some(posts)
    })
    .await;
    assert_eq!(
        posts,
        vec![
            "/connectors/jdbc/restart?includeTasks=true&onlyFailed=true".to_string(),
            "/connectors/jdbc/tasks/0/restart".to_string(),
        ]
    );
    // Every request carried the credentials (nothing fell through to the 401).
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(requests.iter().all(|r| r
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"Basic "))));
    // A limit of one restart: no more however many probes follow.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = server.received_requests().await.unwrap_or_default();
    assert_eq!(
        later
            .iter()
            .filter(|r| r.method == wiremock::http::Method::POST)
            .count(),
        2
    );
    assert!(later.len() > requests.len(), "probes went on");
}

/// `openssl s_server -www` on loopback with the test CA's server certificate
/// (`scripts/zk-certs.sh`): a real HTTPS endpoint signed by a private CA. Killed on drop.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    certs: tempfile::TempDir,
}

impl TlsServer {
    async fn start() -> Self {
        let certs = tempfile::tempdir().expect("tempdir");
        let made = std::process::Command::new("bash")
            .arg(zkwatchdog_tests::repo_root().join("scripts/zk-certs.sh"))
            .arg(certs.path())
            .status()
            .expect("run zk-certs.sh");
        assert!(made.success(), "zk-certs.sh failed");
        let port = closed_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(certs.path().join("server.pem"))
            .arg("-key")
            .arg(certs.path().join("server.key"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = TlsServer { child, port, certs };
        wait_until("openssl s_server listening", LONG, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        server
    }

    fn cert(&self, name: &str) -> String {
        self.certs.path().join(name).display().to_string()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_is_trusted_through_ca_file_only() {
    let server = TlsServer::start().await;
    let url = format!("https://127.0.0.1:{}/", server.port);

    let (_driver, mut events) = probe_driver(&format!(
        "kind = \"http\"\nurl = {url:?}\nca-file = {:?}",
        server.cert("ca.pem")
    ));
    let health = next_health(&mut events).await;
    assert_eq!(health.status, HealthStatus::Ok, "{health:?}");
    assert!(
        health
            .detail
            .starts_with(&format!("GET {url} answered 200")),
        "{health:?}"
    );

    // Another CA, or none: the server's certificate is not trusted.
    for ca in [Some(server.cert("other-ca.pem")), None] {
        let ca_line = ca
            .as_ref()
            .map(|f| format!("ca-file = {f:?}"))
            .unwrap_or_default();
        let (_driver, mut events) =
            probe_driver(&format!("kind = \"http\"\nurl = {url:?}\n{ca_line}"));
        let health = next_health(&mut events).await;
        assert_eq!(health.status, HealthStatus::Degraded, "{ca:?}: {health:?}");
        assert!(
            health.detail.starts_with(&format!("GET {url} failed: ")),
            "{ca:?}: {health:?}"
        );
    }
}
