//! `zkwatchdog run` under faults of its own registry, against a real ZooKeeper (issue 12):
//! two watchdogs with the same id (hole 6), a liveness node deleted under a running watchdog,
//! a give-up while ZooKeeper is down (hole 10), and secrets that must not reach the records.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::AgentState;
use zkwatchdog_tests::bin_path;
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::{client, process_alive, read_pids, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// Hole 6: a copied config file starts a second watchdog with the id of a running one. The
/// second one must see the first one's live session in the liveness node, wait out the time a
/// left-over session could live, and then refuse (exit 2) naming the first one's host and pid,
/// without ever deleting its liveness node or overwriting its marker. Before the fix it
/// replaced the node at once and fought on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_watchdog_with_the_same_id_refuses_naming_the_first() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let first = WatchdogProc::start(&hosts, "dup@test", "", &[]);
    let c = client(&hosts).await;
    let live = first.wait_live(&c, 1, LONG).await;
    let marker = first.marker(&c).await.expect("the first one's marker");
    // Any deletion or change of the first one's liveness node fires this watch.
    let (_, _, changed) = c
        .get_and_watch_data(&first.live_path())
        .await
        .expect("watch the liveness node");

    let mut second = WatchdogProc::start(&hosts, "dup@test", "", &[]);
    let status = second.wait_exit(LONG);
    let log = second.log();
    assert_eq!(status.code(), Some(2), "{log}");
    let pid = format!("pid {}", first.pid());
    let host = format!("host {}", marker.host);
    assert!(
        log.contains(&pid) && log.contains(&host),
        "the refusal names the first one's {host} and {pid}: {log}"
    );
    // The second one's child was stopped with it.
    for child in second.child_pids() {
        wait_until("the second one's child to be gone", LONG, || async {
            (!process_alive(child)).then_some(())
        })
        .await;
    }

    // The first one was left alone: same node (never deleted or rewritten), same marker.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), changed.changed())
            .await
            .is_err(),
        "the first one's liveness node was touched"
    );
    let after = first
        .liveness(&c)
        .await
        .expect("the first one's liveness node");
    assert_eq!(after, live);
    let marker_after = first.marker(&c).await.expect("marker");
    assert_eq!(marker_after.session_id, marker.session_id);
    assert_eq!(marker_after.updated_at, marker.updated_at);
}

/// Hole 6, the case that is NOT a duplicate: the previous watchdog is frozen (its pid is a
/// live zkwatchdog on this host, so its node cannot be judged stale at sight) and its session
/// expires within the wait. The new watchdog waits for the node to go and then registers; it
/// does not refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_session_expires_within_the_wait_is_waited_for_not_refused() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let old = WatchdogProc::start(&hosts, "frozen@test", "", &[]);
    let c = client(&hosts).await;
    let before = old.wait_live(&c, 1, LONG).await;
    old.signal(Signal::SIGSTOP);
    let mut new = WatchdogProc::start(&hosts, "frozen@test", "", &[]);
    let live = wait_until("the new watchdog's liveness node", LONG, || async {
        new.liveness(&c)
            .await
            .filter(|l| l.session_id != before.session_id)
    })
    .await;
    assert_eq!(live.pid, new.pid());
    assert!(new.is_running(), "{}", new.log());
    assert!(
        new.log().contains("waiting for it to expire"),
        "the node was waited for, not replaced at once: {}",
        new.log()
    );
    let marker = new.marker(&c).await.expect("marker");
    assert_eq!(marker.session_id, live.session_id);
    assert_eq!(marker.generation, before.generation + 1);
    // (The frozen watchdog is killed by its fixture.)
}

/// Hole 6, while running: someone deletes a running watchdog's liveness node (an old
/// watchdog with the same id, an operator). It is put back at once, and the second time the
/// marker carries a `conflict` for the watcher to show, and the log says so at error level.
/// Before the fix the node stayed gone until the child's next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liveness_node_deleted_repeatedly_is_put_back_and_reported() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let wd = WatchdogProc::start(&hosts, "fought@test", "", &[]);
    let c = client(&hosts).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    for round in 1..=2 {
        let stat = c
            .check_stat(&wd.live_path())
            .await
            .expect("stat")
            .expect("the liveness node exists");
        c.delete(&wd.live_path(), None)
            .await
            .expect("delete the liveness node by hand");
        wait_until(
            &format!("the liveness node to be put back (round {round})"),
            LONG,
            || async {
                c.check_stat(&wd.live_path())
                    .await
                    .ok()
                    .flatten()
                    .filter(|s| s.czxid != stat.czxid)
            },
        )
        .await;
    }
    let again = wd.liveness(&c).await.expect("liveness");
    assert_eq!(
        again.child_pid, live.child_pid,
        "the child was not restarted"
    );
    assert_eq!(again.generation, live.generation);
    let marker = wait_until("the marker to report the conflict", LONG, || async {
        wd.marker(&c).await.filter(|m| m.conflict.is_some())
    })
    .await;
    let conflict = marker.conflict.unwrap_or_default();
    assert!(conflict.contains("2 times"), "{conflict}");
    assert!(wd.log().contains("ERROR"), "{}", wd.log());
}

/// Hole 10: the child gives up while ZooKeeper is down. The `fatal` state must be recorded
/// when ZooKeeper returns (within `restart.fatal-record-timeout`), so that the watcher reports
/// a give-up, not a lost agent. Before the fix the watchdog exited after 5 s without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_up_while_zookeeper_is_down_is_recorded_when_it_returns() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let restart = "[restart]\nbackoff-initial = \"10ms\"\nbackoff-max = \"10ms\"\nmax-restarts = 2\nrestart-window = \"1m\"\nfatal-record-timeout = \"60s\"\n";
    let mut wd = WatchdogProc::start(
        &hosts,
        "fatal-offline@test",
        restart,
        &["--exit-after", "1500", "--code", "4"],
    );
    {
        let c = client(&hosts).await;
        wd.wait_live(&c, 1, LONG).await;
        zk::close(c).await;
    }
    zk.stop();
    wait_until("the watchdog to give up", LONG, || async {
        wd.log().contains("giving up").then_some(())
    })
    .await;
    // Longer than the old final-write deadline (max(session timeout, 5 s)).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        wd.is_running(),
        "the watchdog waits for ZooKeeper to record the give-up: {}",
        wd.log()
    );
    zk.start_again();
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(3), "{}", wd.log());
    let c = client(&hosts).await;
    let marker = wd.marker(&c).await.expect("the marker stays");
    assert_eq!(marker.state, AgentState::Fatal, "{}", wd.log());
    assert_eq!(marker.last_exit.and_then(|e| e.code), Some(4));
    assert!(!zk::exists(&c, &wd.live_path()).await);
}

/// An outage of ZooKeeper longer than the watchdog's session, with the agent running through
/// it. The client gives its session up after 1.4 session timeouts without a server, but the
/// server restores every session from disk when it comes back and restarts its clock: the
/// watchdog must ask for the same session again, keeping its liveness node, and the watcher must
/// announce nothing. Before the fix the watchdog opened a new session, replaced its own node (a
/// delete, then a create) and the watcher announced `LOST and RECOVERED` about an agent that
/// never stopped; the chaos suite saw it after every whole-ensemble outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_running_through_a_zookeeper_outage_keeps_its_session_and_is_not_announced() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    // The watcher's own loss report is not what this test is about: far beyond the test.
    let watcher = WatcherProc::start(
        &hosts,
        "group-wait = \"0s\"\nzk-loss-alert-after = \"10m\"",
        Some(&smtp),
        "",
    );
    watcher.wait_leading(LONG);
    let wd = WatchdogProc::start(&hosts, "outage@test", "", &[]);
    let before = {
        let c = client(&hosts).await;
        let live = wd.wait_live(&c, 1, LONG).await;
        zk::close(c).await;
        live
    };

    zk.stop();
    wait_until(
        "the watchdog's client to give its session up",
        LONG,
        || async { wd.log().contains("zookeeper session lost").then_some(()) },
    )
    .await;
    zk.start_again();
    wait_until(
        "the watchdog to be connected in its old session",
        LONG,
        || async {
            wd.log()
                .contains("connected to zookeeper again in the same session")
                .then_some(())
        },
    )
    .await;
    watcher.wait_leading(LONG);
    let c = client(&hosts).await;
    let after = wd.wait_live(&c, 1, LONG).await;
    assert_eq!(after.session_id, before.session_id, "{}", wd.log());
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.child_pid, before.child_pid);
    // A sleep only to prove that nothing arrives: longer than two session timeouts (when a
    // replaced session would expire) plus the watcher's settle time.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let about_agents: Vec<String> = smtp
        .messages()
        .iter()
        .filter(|m| m.subject.contains("outage@test"))
        .map(|m| m.subject.clone())
        .collect();
    assert!(
        about_agents.is_empty(),
        "{about_agents:?}\n{}",
        watcher.log()
    );
}

/// Secrets: a child started with secret arguments (`--password x`, `--password=x`, a URL with
/// a password, a configured pattern) that prints secrets to stderr and then crashes. Neither
/// the command line nor the stderr tail in its marker, as read from ZooKeeper, carries them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_arguments_and_stderr_never_reach_the_marker() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("child.pids");
    let testchild = bin_path("testchild").display().to_string();
    // The shell execs testchild (so the child pid is testchild's); the arguments after the
    // script are secret-bearing arguments as a real agent would get them.
    let script = format!(
        "exec {testchild} --pid-file {} --stderr 'connecting with token=s3cr3t-err1' \
         --stderr 'key AKIAABCDEFGHIJKLMNOP' --stderr '{{\"password\": \"s3cr3t-err2\"}}' \
         --stdout --db-password=s3cr3t-arg1",
        pids.display()
    );
    let command: Vec<String> = [
        "/bin/sh",
        "-c",
        &script,
        "agent",
        "--password",
        "s3cr3t-arg2",
        "jdbc:postgresql://bob:s3cr3t-arg3@db/x",
        "-Dsasl.jaas.config=PlainLoginModule required username=\"u\" password=\"s3cr3t-arg4\";",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let wd = WatchdogProc::start_command(
        &hosts,
        "secret@test",
        "redact-patterns = [\"AKIA[0-9A-Z]{16}\"]\n[restart]\nbackoff-initial = \"50ms\"\n",
        &command,
    );
    let c = client(&hosts).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    wait_until("the child to write its pid", LONG, || async {
        (!read_pids(&pids).is_empty()).then_some(())
    })
    .await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, first.generation + 1, LONG).await;
    let (data, _) = c.get_data(&wd.marker_path()).await.expect("marker");
    let text = String::from_utf8_lossy(&data);
    let marker = wd.marker(&c).await.expect("marker");
    let exit = marker.last_exit.expect("the crash is recorded");
    assert!(
        exit.stderr_tail.iter().any(|l| l.contains("token=***")),
        "the stderr tail is there, masked: {:?}",
        exit.stderr_tail
    );
    assert!(
        marker.command.iter().any(|a| a == "--password"),
        "{:?}",
        marker.command
    );
    for secret in ["s3cr3t", "AKIAABCDEFGHIJKLMNOP"] {
        assert!(!text.contains(secret), "{secret} in the marker: {text}");
    }
    let (live, _) = c.get_data(&wd.live_path()).await.expect("liveness");
    assert!(!String::from_utf8_lossy(&live).contains("s3cr3t"));
}

/// Secrets in health details: a probe whose failure output quotes a password (as a Connect
/// trace can) publishes a detail with the value masked in the liveness node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_a_probe_failure_is_masked_in_the_liveness_node() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let wd = WatchdogProc::start(
        &hosts,
        "probe-secret@test",
        "[probe]\ncommand = [\"/bin/sh\", \"-c\", \"echo login failed for password=s3cr3t-probe >&2; exit 1\"]\n\
         interval = \"50ms\"\nstart-grace = \"0s\"\n",
        &[],
    );
    let c = client(&hosts).await;
    let live = wait_until("a degraded health", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.health.status == zkwatchdog::registry::HealthStatus::Degraded)
    })
    .await;
    assert!(
        live.health.detail.contains("password=***"),
        "{}",
        live.health.detail
    );
    let (data, _) = c.get_data(&wd.live_path()).await.expect("liveness");
    assert!(!String::from_utf8_lossy(&data).contains("s3cr3t"));
    assert!(!wd.log().contains("s3cr3t-probe"), "{}", wd.log());
}
