//! `zkwatchdog run` against a real ZooKeeper, with real child processes and real signals.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::AgentState;
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{client, process_alive, WatchdogProc};
use zkwatchdog_tests::zk::{self, ZkEnsemble, ZkServer};
use zookeeper_client::EventType;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// Fast restarts so crash tests do not wait for the default one-second backoff.
const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_killed_by_sigkill_is_recorded_before_liveness_goes_then_restarted() {
    let zk = ZkServer::start();
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "kill9@test",
        FAST_RESTART,
        &["--stderr", "about to be killed"],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    let marker = wd.marker(&c).await.expect("marker exists");
    assert_eq!(marker.state, AgentState::Running);
    assert_eq!(marker.generation, first.generation);
    assert!(marker.last_exit.is_none());

    // Watch the liveness node, kill the child, and read the marker as soon as the node goes:
    // the exit record must already be there.
    let (_, _, watcher) = c
        .get_and_watch_data(&wd.live_path())
        .await
        .expect("watch liveness");
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let event = tokio::time::timeout(LONG, watcher.changed())
        .await
        .expect("liveness event");
    assert_eq!(event.event_type, EventType::NodeDeleted);
    let marker = wd.marker(&c).await.expect("marker stays");
    let exit = marker
        .last_exit
        .expect("last_exit written before the liveness node was deleted");
    assert_eq!(exit.generation, first.generation);
    assert_eq!(exit.signal.as_deref(), Some("SIGKILL"));
    assert_eq!(exit.code, None);
    assert!(
        exit.stderr_tail.iter().any(|l| l == "about to be killed"),
        "{:?}",
        exit.stderr_tail
    );

    let second = wd.wait_live(&c, first.generation + 1, LONG).await;
    assert_eq!(second.generation, first.generation + 1);
    assert_ne!(second.child_pid, first.child_pid);
    assert!(!process_alive(first.child_pid));
    let marker = wd.marker(&c).await.expect("marker");
    assert_eq!(marker.restarts, 1);
    assert_eq!(marker.generation, second.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_stop_removes_marker_and_liveness_and_the_whole_process_group() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "stop@test",
        "",
        &["--grandchildren", "2"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    let grandchildren = wd.wait_for_grandchildren(2, LONG);
    assert!(grandchildren.iter().all(|p| process_alive(*p)));

    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", wd.log());
    assert!(!zk::exists(&c, &wd.marker_path()).await, "marker removed");
    assert!(!zk::exists(&c, &wd.live_path()).await, "liveness removed");
    assert!(!process_alive(live.child_pid), "child gone");
    wait_until_sync("grandchildren to be gone", LONG, || {
        grandchildren
            .iter()
            .all(|p| !process_alive(*p))
            .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_sigkilled_leaves_a_stale_marker_and_takes_its_process_group_along() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "lost@test",
        "",
        &["--grandchildren", "2"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    let grandchildren = wd.wait_for_grandchildren(2, LONG);

    wd.signal(Signal::SIGKILL);
    wd.wait_exit(LONG);
    // Session timeout 2 s; ZooKeeper removes the node at expiry. Margin for a loaded machine.
    wait_until(
        "liveness node to expire",
        Duration::from_secs(2) + Duration::from_secs(8),
        || async { (!zk::exists(&c, &wd.live_path()).await).then_some(()) },
    )
    .await;
    let marker = wd
        .marker(&c)
        .await
        .expect("the marker stays: the watcher will report 'lost'");
    assert_eq!(marker.state, AgentState::Running);
    assert!(
        marker.last_exit.is_none(),
        "nothing was recorded for the lost generation"
    );
    wait_until_sync(
        "the child and its grandchildren to die with their watchdog",
        LONG,
        || {
            let all = std::iter::once(live.child_pid).chain(grandchildren.iter().copied());
            all.into_iter().all(|p| !process_alive(p)).then_some(())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_replaced_without_restarting_the_child() {
    let zk = ZkServer::start();
    let wd = WatchdogProc::start(&zk.connect_string(), "expiry@test", "", &[]);
    let c = client(&zk.connect_string()).await;
    let before = wd.wait_live(&c, 1, LONG).await;

    // Freeze the watchdog past its session timeout: ZooKeeper expires the session.
    wd.signal(Signal::SIGSTOP);
    let result = tokio::time::timeout(LONG, async {
        wait_until("the frozen watchdog's session to expire", LONG, || async {
            (!zk::exists(&c, &wd.live_path()).await).then_some(())
        })
        .await;
    })
    .await;
    wd.signal(Signal::SIGCONT);
    result.expect("expiry");

    let after = wait_until("registration restored by a new session", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.session_id != before.session_id)
    })
    .await;
    assert_eq!(
        after.child_pid, before.child_pid,
        "the child was not restarted"
    );
    assert_eq!(after.generation, before.generation);
    assert_eq!(wd.child_pids().len(), 1);
    let marker = wd.marker(&c).await.expect("marker");
    assert_eq!(marker.session_id, after.session_id);
    assert_eq!(marker.restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_down_at_start_does_not_stop_the_child_and_registration_follows() {
    let zk = ZkServer::reserve();
    let wd = WatchdogProc::start(&zk.connect_string(), "late@test", "", &[]);
    let pid = wd.wait_for_children(1, LONG);
    assert!(process_alive(pid));
    zk.start_again();
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    assert_eq!(live.child_pid, pid);
    assert_eq!(
        wd.child_pids(),
        vec![pid],
        "no restart while ZooKeeper was down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_leader_loss_keeps_the_registration_and_the_child() {
    let ensemble = ZkEnsemble::start();
    let hosts = ensemble.connect_string();
    let wd = WatchdogProc::start(&hosts, "ensemble@test", FAST_RESTART, &[]);
    let c = client(&hosts).await;
    let before = wd.wait_live(&c, 1, LONG).await;

    let leader = ensemble.leader();
    ensemble.kill_node(leader);
    wait_until_sync("a new leader", LONG, || {
        ensemble.try_leader().filter(|n| *n != leader)
    });
    // Same session, same node, same child.
    let after = wait_until("the registry to be readable again", LONG, || async {
        match c.get_data(&wd.live_path()).await {
            Ok((data, _)) => {
                zkwatchdog::registry::decode::<zkwatchdog::registry::Liveness>("live", &data).ok()
            }
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(after.session_id, before.session_id);
    assert_eq!(after.child_pid, before.child_pid);
    assert_eq!(wd.child_pids().len(), 1, "the child was not restarted");

    // The watchdog's session still works: a crash is still recorded and published.
    kill(Pid::from_raw(before.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let next = wd.wait_live(&c, before.generation + 1, LONG).await;
    assert_eq!(next.session_id, before.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_backs_off_with_capped_delays() {
    let zk = ZkServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let started_arg = started.display().to_string();
    let restart = "[restart]\nbackoff-initial = \"200ms\"\nbackoff-max = \"800ms\"\nbackoff-jitter = 0.0\nstable-after = \"5s\"\n";
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "loop@test",
        restart,
        &[
            "--started-file",
            &started_arg,
            "--exit-after",
            "0",
            "--code",
            "1",
        ],
    );
    wd.wait_for_children(6, LONG);
    let times: Vec<u64> = std::fs::read_to_string(&started)
        .expect("start times")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    // Expected delays: 200, 400, 800, 800, 800 ms (plus the child's own short run).
    let expected = [200u64, 400, 800, 800, 800];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            *gap >= want,
            "gap {gap} ms shorter than the {want} ms backoff: {gaps:?}"
        );
        assert!(
            *gap < want + 700,
            "gap {gap} ms far above the {want} ms backoff: {gaps:?}"
        );
    }
    let c = client(&zk.connect_string()).await;
    let marker = wait_until("the marker to show the crash loop", LONG, || async {
        wd.marker(&c).await.filter(|m| m.generation >= 6)
    })
    .await;
    assert!(matches!(
        marker.state,
        AgentState::Backoff | AgentState::Running | AgentState::Restarting
    ));
    assert_eq!(marker.last_exit.as_ref().and_then(|e| e.code), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_stable_run_restarts_at_once() {
    let zk = ZkServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let started_arg = started.display().to_string();
    // The backoff would be 5 s; a child that ran past stable-after must not wait for it.
    let restart =
        "[restart]\nbackoff-initial = \"5s\"\nbackoff-max = \"5s\"\nstable-after = \"500ms\"\n";
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "stable@test",
        restart,
        &[
            "--started-file",
            &started_arg,
            "--exit-after",
            "1000",
            "--code",
            "3",
        ],
    );
    wd.wait_for_children(3, LONG);
    let times: Vec<u64> = std::fs::read_to_string(&started)
        .expect("start times")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for w in times.windows(2) {
        let gap_ms = (w[1] - w[0]) / 1_000_000;
        assert!(gap_ms >= 1000, "the child ran its full second: {gap_ms}");
        assert!(
            gap_ms < 1000 + 2000,
            "restarted well before the 5 s backoff: {gap_ms} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_exit_under_on_failure_is_a_planned_stop() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "done@test",
        "",
        &["--exit-after", "3000", "--code", "0"],
    );
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", wd.log());
    assert!(!zk::exists(&c, &wd.marker_path()).await, "no marker left");
    assert!(!zk::exists(&c, &wd.live_path()).await, "no liveness left");
    assert_eq!(wd.child_pids().len(), 1, "not restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_forwarded_and_a_second_sigint_escalates() {
    let zk = ZkServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let signals = dir.path().join("signals");
    let signals_arg = signals.display().to_string();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "signals@test",
        "[restart]\nstop-timeout = \"5m\"\n",
        &["--signal-file", &signals_arg, "--ignore-term"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    let received = |want: &str| {
        let want = want.to_string();
        let signals = signals.clone();
        move || {
            std::fs::read_to_string(&signals)
                .unwrap_or_default()
                .lines()
                .any(|l| l == want)
                .then_some(())
        }
    };
    for (signal, name) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
    ] {
        wd.signal(signal);
        wait_until_sync(
            &format!("the child to receive {name}"),
            LONG,
            received(name),
        );
    }
    assert!(process_alive(live.child_pid));

    // First SIGINT: the stop signal, which this child ignores; the stop timeout is 5 minutes.
    wd.signal(Signal::SIGINT);
    wait_until_sync("the child to receive TERM", LONG, received("TERM"));
    assert!(wd.is_running());
    // Second SIGINT: SIGKILL at once.
    wd.signal(Signal::SIGINT);
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", wd.log());
    assert!(!process_alive(live.child_pid));
    assert!(!zk::exists(&c, &wd.marker_path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeout_escalates_to_sigkill() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "stubborn@test",
        "[restart]\nstop-timeout = \"500ms\"\n",
        &["--ignore-term"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", wd.log());
    assert!(!process_alive(live.child_pid));
    assert!(wd.log().contains("did not stop in time"), "{}", wd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_leaves_a_fatal_marker_and_exits_non_zero() {
    let zk = ZkServer::start();
    let restart = "[restart]\nbackoff-initial = \"10ms\"\nbackoff-max = \"10ms\"\nmax-restarts = 2\nrestart-window = \"1m\"\n";
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "fatal@test",
        restart,
        &["--exit-after", "0", "--code", "4"],
    );
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(3), "{}", wd.log());
    assert!(wd.log().contains("gave up"), "{}", wd.log());
    let c = client(&zk.connect_string()).await;
    let marker = wd
        .marker(&c)
        .await
        .expect("the marker stays after a give-up");
    assert_eq!(marker.state, AgentState::Fatal);
    assert_eq!(marker.generation, 3);
    assert_eq!(marker.last_exit.and_then(|e| e.code), Some(4));
    assert!(!zk::exists(&c, &wd.live_path()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_watchdog_replaces_the_stale_liveness_node_and_continues_generations() {
    let zk = ZkServer::start();
    // A long session: the old node would linger for 20 s unless the new watchdog replaces it.
    let mut old = WatchdogProc::start_with(
        &zk.connect_string(),
        "again@test",
        "",
        &[],
        &["--session-timeout", "20s"],
    );
    let c = client(&zk.connect_string()).await;
    let first = old.wait_live(&c, 1, LONG).await;
    old.signal(Signal::SIGKILL);
    old.wait_exit(LONG);

    let new = WatchdogProc::start_with(
        &zk.connect_string(),
        "again@test",
        "",
        &[],
        &["--session-timeout", "20s"],
    );
    let live = wait_until("a liveness node owned by the new session", LONG, || async {
        new.liveness(&c)
            .await
            .filter(|l| l.session_id != first.session_id)
    })
    .await;
    assert_eq!(
        live.generation,
        first.generation + 1,
        "generations continue across watchdogs"
    );
    let marker = new.marker(&c).await.expect("marker");
    assert_eq!(marker.generation, live.generation);
    assert_eq!(marker.session_id, live.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_outlives_watchdog_when_configured() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "outlive@test",
        "child-outlives-watchdog = true\n",
        &["--grandchildren", "1"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    let grandchildren = wd.wait_for_grandchildren(1, LONG);
    wd.signal(Signal::SIGKILL);
    wd.wait_exit(LONG);
    // Proving that something does NOT happen needs a window: the guardian and PR_SET_PDEATHSIG
    // act within milliseconds when they are on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(process_alive(live.child_pid), "the child keeps running");
    assert!(
        process_alive(grandchildren[0]),
        "and so does its process group"
    );
    // (The fixture kills both when it is dropped.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_hosts_from_the_environment_overrides_the_config_file() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    // The file names a port nothing listens on; ZK_HOSTS names the real server.
    let wd = WatchdogProc::start_with_env(
        "127.0.0.1:9",
        "env@test",
        "",
        &[],
        &[],
        &[("ZK_HOSTS", &hosts)],
    );
    let c = client(&hosts).await;
    wd.wait_live(&c, 1, LONG).await;
}
