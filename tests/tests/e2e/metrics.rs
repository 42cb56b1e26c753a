//! Prometheus metrics end to end: the real `zkwatchdog` and `zkwatcher` binaries with
//! `--metrics-addr`, real ZooKeeper, real SMTP, real SIGKILLs; every scrape is what Prometheus
//! would read, and it must pass `promtool check metrics`.

use std::net::TcpListener;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog_tests::metrics::{free_addr, promtool_check, wait_for, Scrape};
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

const STATES: [&str; 6] = [
    "starting",
    "running",
    "restarting",
    "backoff",
    "fatal",
    "stopping",
];

/// The one state whose gauge is 1 (panics unless exactly one is).
fn current(s: &Scrape, name: &str, agent: &str, key: &str, states: &[&str]) -> String {
    let on: Vec<&str> = states
        .iter()
        .copied()
        .filter(|st| s.get(name, &[("agent", agent), (key, st)]) == 1.0)
        .collect();
    assert_eq!(on.len(), 1, "{name}: {on:?} in\n{}", s.body);
    on[0].to_string()
}

/// The standard `process_*` series of the process itself, and `<program>_build_info`.
fn process_and_build(s: &Scrape, program: &str) {
    let rss = s.get("process_resident_memory_bytes", &[]);
    assert!(rss > 1e6, "resident memory {rss}");
    assert!(s.get("process_open_fds", &[]) >= 3.0);
    assert!(s.get("process_start_time_seconds", &[]) > 1.7e9);
    assert!(
        s.value("process_cpu_seconds_total", &[]).is_some(),
        "{}",
        s.body
    );
    assert_eq!(
        s.get(
            &format!("{program}_build_info"),
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_metrics_count_restarts_show_state_and_session_and_pass_promtool() {
    let zk = ZkServer::start();
    let addr = free_addr();
    let agent = "metrics@test";
    let wd = WatchdogProc::start_with(
        &zk.connect_string(),
        agent,
        FAST_RESTART,
        &[],
        &["--metrics-addr", &addr.to_string()],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    let a = [("agent", agent)];
    let s = wait_for(addr, "the first child running, connected", LONG, |s| {
        s.value(
            "zkwatchdog_state",
            &[("agent", agent), ("state", "running")],
        ) == Some(1.0)
            && s.value(
                "zkwatchdog_zk_session_state",
                &[("agent", agent), ("state", "connected")],
            ) == Some(1.0)
    })
    .await;
    promtool_check(&s.body);
    assert_eq!(s.get("zkwatchdog_child_restarts_total", &a), 0.0);
    process_and_build(&s, "zkwatchdog");
    assert_eq!(s.get("zkwatchdog_child_starts_total", &a), 1.0);

    // Two SIGKILLs, each followed by a restart.
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the first child");
    let second = wd.wait_live(&c, 2, LONG).await;
    kill(Pid::from_raw(second.child_pid as i32), Signal::SIGKILL).expect("kill the second child");
    let third = wd.wait_live(&c, 3, LONG).await;
    assert_ne!(third.child_pid, second.child_pid);

    let s = wait_for(addr, "two restarts, running again", LONG, |s| {
        s.value("zkwatchdog_child_restarts_total", &a) == Some(2.0)
            && s.value(
                "zkwatchdog_state",
                &[("agent", agent), ("state", "running")],
            ) == Some(1.0)
    })
    .await;
    promtool_check(&s.body);
    assert_eq!(
        current(&s, "zkwatchdog_state", agent, "state", &STATES),
        "running"
    );
    assert_eq!(s.get("zkwatchdog_child_starts_total", &a), 3.0);
    assert_eq!(
        s.get(
            "zkwatchdog_child_exits_total",
            &[("agent", agent), ("kind", "signal")]
        ),
        2.0
    );
    assert_eq!(
        s.get(
            "zkwatchdog_child_exits_total",
            &[("agent", agent), ("kind", "code")]
        ),
        0.0
    );
    assert_eq!(
        current(
            &s,
            "zkwatchdog_zk_session_state",
            agent,
            "state",
            &zkwatchdog::metrics_http::ZK_STATES
        ),
        "connected"
    );
    assert_eq!(s.get("zkwatchdog_zk_reregistrations_total", &a), 0.0);
    // Without a [probe] the health stays unknown and no probe runs.
    assert_eq!(
        s.get(
            "zkwatchdog_probe_results_total",
            &[("agent", agent), ("result", "ok")]
        ),
        0.0
    );
    let uptime = s.get("zkwatchdog_child_uptime_seconds", &a);
    assert!((0.0..LONG.as_secs_f64()).contains(&uptime), "{uptime}");

    // Freeze the watchdog past its session timeout: a new session re-registers the agent.
    wd.signal(Signal::SIGSTOP);
    let expired = tokio::time::timeout(LONG, async {
        wait_until("the frozen watchdog's session to expire", LONG, || async {
            (!zk::exists(&c, &wd.live_path()).await).then_some(())
        })
        .await;
    })
    .await;
    wd.signal(Signal::SIGCONT);
    expired.expect("expiry");
    wait_until("the liveness node re-created", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.session_id != third.session_id)
    })
    .await;
    let s = wait_for(addr, "one re-registration, connected", LONG, |s| {
        s.value("zkwatchdog_zk_reregistrations_total", &a) == Some(1.0)
            && s.value(
                "zkwatchdog_zk_session_state",
                &[("agent", agent), ("state", "connected")],
            ) == Some(1.0)
    })
    .await;
    // The child was not restarted by the new session.
    assert_eq!(s.get("zkwatchdog_child_restarts_total", &a), 2.0);
    promtool_check(&s.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_metrics_follow_a_crash_from_incident_to_accepted_email_and_pass_promtool() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let addr = free_addr();
    let watcher = WatcherProc::start_with(
        &zk.connect_string(),
        "group-wait = \"0s\"",
        Some(&smtp),
        "",
        &["--metrics-addr", &addr.to_string()],
    );
    watcher.wait_leading(LONG);
    let s = wait_for(addr, "the watcher leading", LONG, |s| {
        s.value("zkwatcher_leader", &[]) == Some(1.0)
    })
    .await;
    promtool_check(&s.body);
    process_and_build(&s, "zkwatcher");
    let email = [("channel", "email")];
    assert_eq!(s.get("zkwatcher_notification_attempts_total", &email), 0.0);
    assert_eq!(
        s.get("zkwatcher_notification_latency_seconds_count", &email),
        0.0
    );

    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "metrics-crash@test",
        FAST_RESTART,
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    wait_for(addr, "the agent up", LONG, |s| {
        s.value("zkwatcher_agents", &[("state", "up")]) == Some(1.0)
    })
    .await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, 2, LONG).await;
    smtp.wait_for_messages(1, LONG).await;

    let crashed = [("cause", "crashed")];
    let s = wait_for(addr, "the crash opened, notified and resolved", LONG, |s| {
        s.value("zkwatcher_incidents_opened_total", &crashed) == Some(1.0)
            && s.value("zkwatcher_incidents_notified_total", &crashed) == Some(1.0)
            && s.value("zkwatcher_incidents_resolved_total", &crashed) == Some(1.0)
            && s.value("zkwatcher_agents", &[("state", "up")]) == Some(1.0)
    })
    .await;
    promtool_check(&s.body);
    let attempts = s.get("zkwatcher_notification_attempts_total", &email);
    assert!(attempts >= 1.0, "{}", s.body);
    assert_eq!(s.get("zkwatcher_notification_failures_total", &email), 0.0);
    assert!(
        s.get("zkwatcher_notification_latency_seconds_count", &email) >= 1.0,
        "{}",
        s.body
    );
    let latency = s.get("zkwatcher_notification_latency_seconds_sum", &email);
    assert!((0.0..LONG.as_secs_f64()).contains(&latency), "{latency}");
    assert_eq!(s.get("zkwatcher_leader", &[]), 1.0);
    assert_eq!(
        s.get("zkwatcher_zk_session_state", &[("state", "connected")]),
        1.0
    );
    assert_eq!(s.get("zkwatcher_agents", &[("state", "down")]), 0.0);
    assert_eq!(
        s.get("zkwatcher_incidents_opened_total", &[("cause", "lost")]),
        0.0
    );
    drop(watcher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_metrics_address_stops_both_programs_at_start_with_exit_2_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let expected = format!("cannot serve metrics on {addr}");

    // Nothing is started: no ZooKeeper needed, and no child runs.
    let mut wd = WatchdogProc::start_with(
        "127.0.0.1:1",
        "busy@test",
        "",
        &[],
        &["--metrics-addr", &addr],
    );
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(2), "{}", wd.log());
    assert!(wd.log().contains(&expected), "{}", wd.log());
    assert!(wd.child_pids().is_empty(), "a child was started");

    let mut watcher = WatcherProc::start_with(
        "127.0.0.1:1",
        &format!("metrics-addr = {addr:?}"),
        None,
        "[[webhook]]\nkind = \"generic\"\nurl = \"http://127.0.0.1:1/hook\"\n",
        &[],
    );
    let status = watcher.wait_exit(LONG);
    assert_eq!(status.code(), Some(2), "{}", watcher.log());
    assert!(watcher.log().contains(&expected), "{}", watcher.log());
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_metrics_count_probe_results_and_show_the_current_health() {
    let zk = ZkServer::start();
    let addr = free_addr();
    let agent = "metrics-probe@test";
    let flag = tempfile::tempdir().expect("a scratch directory");
    let bad = flag.path().join("bad");
    let probe = format!(
        "[probe]\ncommand = [\"/bin/sh\", \"-c\", \"test ! -e {}\"]\ninterval = \"100ms\"\nstart-grace = \"0s\"\n",
        bad.display()
    );
    let wd = WatchdogProc::start_with(
        &zk.connect_string(),
        agent,
        &probe,
        &[],
        &["--metrics-addr", &addr.to_string()],
    );
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    let result = |r: &'static str| [("agent", agent), ("result", r)];
    let status = |st: &'static str| [("agent", agent), ("status", st)];
    let s = wait_for(addr, "two ok probes, healthy", LONG, |s| {
        s.value("zkwatchdog_probe_results_total", &result("ok"))
            .is_some_and(|n| n >= 2.0)
            && s.value("zkwatchdog_health", &status("ok")) == Some(1.0)
    })
    .await;
    promtool_check(&s.body);
    assert_eq!(
        s.get("zkwatchdog_probe_results_total", &result("degraded")),
        0.0
    );

    std::fs::write(&bad, "").expect("make the probe fail");
    let s = wait_for(addr, "a degraded probe, degraded health", LONG, |s| {
        s.value("zkwatchdog_probe_results_total", &result("degraded"))
            .is_some_and(|n| n >= 1.0)
            && s.value("zkwatchdog_health", &status("degraded")) == Some(1.0)
    })
    .await;
    assert_eq!(s.get("zkwatchdog_health", &status("ok")), 0.0);
    // The probe degrades the health; it does not restart the child (restart-after-failures 0).
    assert_eq!(
        s.get("zkwatchdog_child_restarts_total", &[("agent", agent)]),
        0.0
    );
    promtool_check(&s.body);
}
