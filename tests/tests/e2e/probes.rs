//! Health probes end to end: `zkwatchdog run` against a real ZooKeeper, probing endpoints on
//! loopback, with the results read back from the liveness node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::{HealthStatus, Liveness};
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
