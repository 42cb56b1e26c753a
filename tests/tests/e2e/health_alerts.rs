//! Health probes as the on-call operator sees them, for states the real programs cannot be
//! driven into on purpose: a fake Kafka Connect worker that answers 409 (a rebalance) to the
//! first restart calls, and a fake Flume agent whose channel stays over the threshold for a
//! probe-triggered restart with exact figures. Under a real `zkwatchdog`, a real ZooKeeper, the
//! `zkwatcher` binary and a real SMTP server with STARTTLS and AUTH. A filling channel, a failed
//! task and its restart with the real Flume and Kafka Connect are in `tests/real_agents/`.

use std::time::Duration;

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
