//! `--log-format json`: the real `zkwatchdog` and `zkwatcher` binaries write one JSON object per
//! line (the watchdog's with its agent id on every line, the child's stderr included), and the
//! human default stays plain text.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until_sync;
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

/// Every line of `log` as a JSON object; panics naming the first line that is not one.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => v,
            _ => panic!("not a JSON object: {line:?}\n---- whole log ----\n{log}"),
        })
        .collect()
}

fn messages(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_json_logs_name_the_agent_on_every_line_through_crash_restart_and_stop() {
    let zk = ZkServer::start();
    let id = "json-logs@test";
    let mut wd = WatchdogProc::start_with(
        &zk.connect_string(),
        id,
        FAST_RESTART,
        &[
            "--stderr",
            "hello from the child",
            "--stderr",
            "{\"looks\": \"like json\"}",
        ],
        &["--log-format", "json"],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, 2, LONG).await;
    // The second child's stderr lines are in the log before it is stopped.
    wait_until_sync("the second child's stderr", LONG, || {
        (wd.log().matches("hello from the child").count() >= 2).then_some(())
    });
    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", wd.log());

    let log = wd.log();
    let lines = json_lines(&log);
    for line in &lines {
        assert_eq!(line["agent"], id, "every line names the agent: {line}");
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let msgs = messages(&lines);
    let has = |m: &str| msgs.iter().filter(|x| x.as_str() == m).count();
    assert_eq!(has("child started"), 2, "{msgs:?}");
    assert_eq!(
        has("child exited"),
        2,
        "the crash and the planned stop: {msgs:?}"
    );
    assert_eq!(
        has("planned stop: removing the agent from the registry"),
        1,
        "{msgs:?}"
    );
    let crash = lines
        .iter()
        .find(|l| l["message"] == "child exited")
        .expect("the crash");
    assert_eq!(crash["level"], "WARN");
    assert_eq!(crash["exit"], "killed by SIGKILL", "{crash}");
    assert_eq!(crash["generation"], 1, "numbers stay numbers: {crash}");

    // The child's stderr lines are events of their own, with the line as a string field (a line
    // that looks like JSON is not spliced in).
    let stderr: Vec<&Value> = lines.iter().filter(|l| l["stream"] == "stderr").collect();
    let texts: Vec<&str> = stderr.iter().filter_map(|l| l["line"].as_str()).collect();
    assert_eq!(
        texts
            .iter()
            .filter(|t| **t == "hello from the child")
            .count(),
        2,
        "{texts:?}"
    );
    assert!(texts.contains(&"{\"looks\": \"like json\"}"), "{texts:?}");
    // The ZooKeeper client's own events (the tests run it at info) carry the agent as well.
    assert!(
        lines.iter().any(|l| l["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("zookeeper_client"))),
        "a zookeeper_client event in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_human_logs_stay_plain_text_with_the_child_stderr_as_written() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "human-logs@test",
        "",
        &["--stderr", "plain line from the child"],
    );
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    wait_until_sync("the child's stderr", LONG, || {
        wd.log().contains("plain line from the child").then_some(())
    });
    wd.signal(Signal::SIGTERM);
    assert_eq!(wd.wait_exit(LONG).code(), Some(0), "{}", wd.log());
    let log = wd.log();
    assert!(
        log.lines().any(|l| l == "plain line from the child"),
        "passed through unchanged:\n{log}"
    );
    let started = log
        .lines()
        .find(|l| l.contains("child started"))
        .expect("a start line");
    assert!(
        serde_json::from_str::<Value>(started).is_err() && started.contains("human-logs@test"),
        "{started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_json_logs_parse_and_name_the_agent_in_agent_events() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let mut watcher = WatcherProc::start_with(
        &zk.connect_string(),
        "group-wait = \"0s\"",
        Some(&smtp),
        "",
        &["--log-format", "json"],
    );
    watcher.wait_leading(LONG);
    let id = "watched-json@test";
    let wd = WatchdogProc::start(&zk.connect_string(), id, FAST_RESTART, &[]);
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, 2, LONG).await;
    smtp.wait_for_messages(1, LONG).await;
    // The SMTP server has the message before the watcher reads its reply: wait for the
    // watcher's own "accepted" too, or the SIGTERM below can come between the two.
    wait_until_sync(
        "the watcher to log the crash, the recovery and the accepted notification",
        LONG,
        || {
            let log = watcher.log();
            (log.contains("\"down\"")
                && log.contains("\"up\"")
                && log.contains("\"notification accepted\""))
            .then_some(())
        },
    );
    watcher.signal(Signal::SIGTERM);
    assert_eq!(watcher.wait_exit(LONG).code(), Some(0), "{}", watcher.log());

    let log = watcher.log();
    let lines = json_lines(&log);
    let down = lines
        .iter()
        .find(|l| l["message"] == "down")
        .expect("a down event");
    assert_eq!(down["agent"], id, "{down}");
    assert_eq!(down["level"], "WARN", "{down}");
    let up: Vec<&Value> = lines.iter().filter(|l| l["message"] == "up").collect();
    assert!(up.iter().all(|l| l["agent"] == id), "{up:?}");
    // A notification about one agent names it too.
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "notification accepted")
        .unwrap_or_else(|| panic!("no accepted notification in\n{log}"));
    assert_eq!(accepted["agent"], id, "{accepted}");
    assert_eq!(accepted["channel"], "email", "{accepted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_from_the_config_file_and_the_flag_winning_over_it() {
    let zk = ZkServer::start();
    // From the file.
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "file-json@test",
        "log-format = \"json\"",
        &["--stderr", "from the child"],
    );
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    // The child writes its line after it started: wait for it before stopping the child.
    wait_until_sync("the child's stderr line", LONG, || {
        wd.log().contains("from the child").then_some(())
    });
    wd.signal(Signal::SIGTERM);
    assert_eq!(wd.wait_exit(LONG).code(), Some(0), "{}", wd.log());
    let lines = json_lines(&wd.log());
    assert!(lines.iter().all(|l| l["agent"] == "file-json@test"));
    assert!(lines.iter().any(|l| l["line"] == "from the child"));

    // The flag wins.
    let mut wd = WatchdogProc::start_with(
        &zk.connect_string(),
        "flag-human@test",
        "log-format = \"json\"",
        &[],
        &["--log-format", "human"],
    );
    wd.wait_live(&c, 1, LONG).await;
    wd.signal(Signal::SIGTERM);
    assert_eq!(wd.wait_exit(LONG).code(), Some(0), "{}", wd.log());
    let log = wd.log();
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "{log}"
    );

    // A bad value is a config error naming the key.
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        "bad-format@test",
        "log-format = \"xml\"",
        &[],
    );
    assert_eq!(wd.wait_exit(LONG).code(), Some(2), "{}", wd.log());
    assert!(
        wd.log().contains("log-format: unknown log format \"xml\""),
        "{}",
        wd.log()
    );
}
