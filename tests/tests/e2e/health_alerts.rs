//! Health probes as the on-call operator sees them: a fake Flume agent or Kafka Connect worker
//! under a real `zkwatchdog` (probing it), a real ZooKeeper, the `zkwatcher` binary and a real
//! SMTP server with STARTTLS and AUTH. A degradation is one email of its own severity, and its
//! end is one "healthy again" notice; both are visible in `zkwatcher status`.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use zkwatchdog::registry::HealthStatus;
use zkwatchdog_tests::fakes::connect_wire::State;
use zkwatchdog_tests::fakes::{FakeConnect, FakeFlume};
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

async fn wait_for_mail(
    smtp: &SmtpServer,
    what: &str,
    pred: impl Fn(&CapturedMail) -> bool,
) -> CapturedMail {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let mails = smtp.messages();
        if let Some(m) = mails.iter().find(|m| pred(m)) {
            return m.clone();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "timed out after {LONG:?} waiting for {what}; received: {:?}",
                subjects(&mails)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn zkwatcher_status_json(zk_hosts: &str) -> Vec<Value> {
    let run = tokio::process::Command::new(zkwatchdog_tests::bin_path("zkwatcher"))
        .args(["status", "--json", "--zk", zk_hosts])
        .env_remove("ZK_HOSTS")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out: Output = match tokio::time::timeout(LONG, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run zkwatcher status: {e}"),
        Err(_) => panic!("zkwatcher status did not finish within {LONG:?}"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("status --json is not an array: {other:?}"),
    }
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row for {id} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flume_channel_filling_up_is_one_degraded_email_then_a_healthy_notice() {
    const ID: &str = "flume-fill@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let flume = FakeFlume::on_free_port();
    let wd = WatchdogProc::start_command(
        &zk.connect_string(),
        ID,
        &format!(
            "kind = \"flume\"\n[probe]\nurl = {:?}\ninterval = \"200ms\"\ntimeout = \"2s\"\n\
             start-grace = \"10s\"\nchannel-fill-threshold = 80.0\n",
            flume.metrics_url()
        ),
        &flume.command(&["--channel", "c1:10000"]),
    );
    let c = client(&zk.connect_string()).await;
    wait_until("the probe to report ok", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.health.status == HealthStatus::Ok)
    })
    .await;

    flume.set_channel_size("c1", 9_320).await;
    let degraded = wait_for_mail(&smtp, "the degraded email", |m| m.subject.contains(ID)).await;
    assert!(
        degraded.subject.contains("DEGRADED"),
        "{}",
        degraded.subject
    );
    for needle in ["CHANNEL.c1", "93.2%", "80.0%", "severity:    warning"] {
        assert!(
            degraded.body.contains(needle),
            "the email names {needle}:\n{}",
            degraded.body
        );
    }
    let rows = zkwatcher_status_json(&zk.connect_string()).await;
    let r = row(&rows, ID);
    assert_eq!(r["state"], "degraded", "{r}");
    assert!(
        r["health"]
            .as_str()
            .is_some_and(|h| h.contains("CHANNEL.c1")),
        "{r}"
    );
    assert!(
        r["incident"]
            .as_str()
            .is_some_and(|i| i.contains("DEGRADED")),
        "{r}"
    );

    // The figure moves while the finding stays: no second email.
    flume.set_channel_size("c1", 9_700).await;
    flume.set_channel_size("c1", 100).await;
    let healthy = wait_for_mail(&smtp, "the healthy-again notice", |m| {
        m.subject.contains(ID) && !m.subject.contains("DEGRADED")
    })
    .await;
    assert!(healthy.subject.contains("RECOVERED"), "{}", healthy.subject);
    assert!(healthy.body.contains("healthy again"), "{}", healthy.body);
    // Exactly those two, and the incident is closed once both are sent.
    wait_until("the incident record to be deleted", LONG, || async {
        let path = format!("/zkwatchdog/incidents/{ID}");
        (!zkwatchdog_tests::zk::exists(&c, &path).await).then_some(())
    })
    .await;
    let all = smtp.messages();
    assert_eq!(all.len(), 2, "{:?}", subjects(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_task_is_mailed_restarted_only_failed_through_409s_and_recovers() {
    const ID: &str = "connect-task@test";
    const CONNECTOR: &str = "jdbc-sink";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let connect = FakeConnect::on_free_port();
    let wd = WatchdogProc::start_command(
        &zk.connect_string(),
        ID,
        &format!(
            "kind = \"kafka-connect\"\n[probe]\nurl = {:?}\ninterval = \"200ms\"\n\
             timeout = \"2s\"\nstart-grace = \"10s\"\nrestart-failed-tasks = true\n\
             task-restart-initial = \"1s\"\ntask-restart-max = \"1s\"\n",
            connect.url("")
        ),
        &connect.command(&["--connector", &format!("{CONNECTOR}:2")]),
    );
    let c = client(&zk.connect_string()).await;
    wait_until("the probe to report ok", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.health.status == HealthStatus::Ok)
    })
    .await;

    // The first two restart calls meet a rebalance (409) and must be retried.
    connect.queue_conflicts(2).await;
    connect
        .fail_task(
            CONNECTOR,
            1,
            Some(
                "org.apache.kafka.connect.errors.ConnectException: connection to db1:5432 refused\n\
                 \tat io.confluent.connect.jdbc.sink.JdbcSinkTask.put(JdbcSinkTask.java:120)\n\
                 \tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:587)",
            ),
        )
        .await;
    let first = wait_for_mail(&smtp, "the degraded email", |m| m.subject.contains(ID)).await;
    assert!(first.subject.contains("DEGRADED"), "{}", first.subject);
    for needle in [CONNECTOR, "task 1", "FAILED", "ConnectException"] {
        assert!(
            first.body.contains(needle),
            "the email names {needle}:\n{}",
            first.body
        );
    }

    // The watchdog restarts only the failed tasks, through the 409s, and the task runs again.
    wait_until("the task to run again", LONG, || async {
        let status = connect.status(CONNECTOR).await;
        status
            .tasks
            .iter()
            .all(|t| t.state == State::Running)
            .then_some(())
    })
    .await;
    let restarts: Vec<_> = connect
        .requests()
        .await
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(restarts.len() >= 3, "two 409s, then accepted: {restarts:?}");
    for r in &restarts {
        assert_eq!(r.path, format!("/connectors/{CONNECTOR}/restart"), "{r:?}");
        let query = r.query.as_deref().unwrap_or_default();
        let mut params: Vec<&str> = query.split('&').collect();
        params.sort_unstable();
        assert_eq!(params, ["includeTasks=true", "onlyFailed=true"], "{r:?}");
    }

    // The recovery: a notice of its own, or the first message already said both.
    if !first.subject.contains("RECOVERED") {
        let healthy = wait_for_mail(&smtp, "the healthy-again notice", |m| {
            m.subject.contains(ID) && m.subject.contains("RECOVERED")
        })
        .await;
        assert!(healthy.body.contains("healthy again"), "{}", healthy.body);
    }
    wait_until("the probe to report ok again", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.health.status == HealthStatus::Ok)
    })
    .await;
    let all = smtp.messages();
    assert!(
        all.len() <= 2 && all.iter().all(|m| m.subject.contains(ID)),
        "{:?}",
        subjects(&all)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_triggered_restart_is_mailed_with_its_reason_and_the_fresh_child_is_healthy() {
    const ID: &str = "flume-restart@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let flume = FakeFlume::on_free_port();
    let wd = WatchdogProc::start_command(
        &zk.connect_string(),
        ID,
        &format!(
            "kind = \"flume\"\n[probe]\nurl = {:?}\ninterval = \"200ms\"\ntimeout = \"2s\"\n\
             start-grace = \"1s\"\nchannel-fill-threshold = 80.0\nrestart-after-failures = 3\n\
             [restart]\nstop-timeout = \"5s\"\n",
            flume.metrics_url()
        ),
        &flume.command(&[]),
    );
    let c = client(&zk.connect_string()).await;
    wait_until("the probe to report ok", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.generation == 1 && l.health.status == HealthStatus::Ok)
    })
    .await;

    // A full channel stays full: after three degraded probes the watchdog restarts the agent
    // (the fake's new process starts with an empty channel).
    flume.set_channel_size("c1", 9_900).await;
    let restarted = wait_for_mail(&smtp, "the probe-restart email", |m| {
        m.subject.contains(ID) && m.subject.contains("PROBE RESTART")
    })
    .await;
    assert!(
        restarted.body.contains("CHANNEL.c1 fill 99.0%"),
        "{}",
        restarted.body
    );
    assert!(restarted.body.contains("SIGTERM"), "{}", restarted.body);
    let marker = wd.marker(&c).await.expect("the marker");
    let exit = marker.last_exit.expect("an exit record");
    assert_eq!(exit.generation, 1);
    assert!(
        exit.probe_restart
            .as_deref()
            .is_some_and(|why| why.contains("CHANNEL.c1")),
        "{exit:?}"
    );
    wait_until("generation 2 to be healthy", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.generation == 2 && l.health.status == HealthStatus::Ok)
    })
    .await;
    let all = smtp.messages();
    assert!(
        all.iter().all(|m| m.subject.contains(ID)),
        "{:?}",
        subjects(&all)
    );
}
