//! Registry nodes written by hand with the real `zkCli.sh` (as an operator would, in any shape):
//! a garbage incident, markers with wrong types or no data, a node with an unexpected child, a
//! garbage silence, a hand-made liveness node, an incident filed under another agent's name, a
//! persistent node posing as the election's leader.
//! The watcher names each one by path in its log, skips it, and keeps working: a real crash of
//! another agent is still emailed, and `zkwatcher status` lists the real agent and names the bad
//! nodes on stderr.

use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use zkwatchdog_tests::describe;
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::{zkwatcher_cli, WatcherProc};
use zkwatchdog_tests::zk::{self, ZkServer};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

const RESTART_AFTER_1S: &str =
    "[restart]\nbackoff-initial = \"1s\"\nbackoff-max = \"1s\"\nbackoff-jitter = 0.0\n";

/// Runs `scripts/zk.sh cli PORT ARGS...` (that is `zkCli.sh -server 127.0.0.1:PORT ARGS...`),
/// bounded by [`LONG`].
async fn zkcli(port: u16, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(zk::zk_script())
        .arg("cli")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(LONG, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run zkCli.sh {args:?}: {e}"),
        Err(_) => panic!("zkCli.sh {args:?} did not finish within {LONG:?}"),
    }
}

/// `zkCli.sh create PATH [DATA]`; panics unless it says it created the node.
async fn create_by_hand(port: u16, path: &str, data: Option<&str>) {
    let mut args = vec!["create", path];
    args.extend(data);
    let out = zkcli(port, &args).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("Created {path}")),
        "zkCli.sh create {path}: {}",
        describe(&out)
    );
}

/// The watcher's JSON log lines.
fn log_lines(watcher: &WatcherProc) -> Vec<Value> {
    watcher
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the watcher logged a warning about `path` whose message contains `message`.
fn wait_warning(watcher: &WatcherProc, path: &str, message: &str) {
    wait_until_sync(
        &format!("the watcher to report {path} ({message})"),
        LONG,
        || {
            log_lines(watcher)
                .iter()
                .any(|l| {
                    l["level"] == "WARN"
                        && l["path"] == path
                        && l["message"].as_str().is_some_and(|m| m.contains(message))
                })
                .then_some(())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_written_by_hand_with_zkcli_are_reported_by_path_and_skipped() {
    let zk = ZkServer::start();
    let port = zk.port();
    let smtp = SmtpServer::start(SmtpOptions::default());
    for dir in [
        "",
        "/agents",
        "/live",
        "/incidents",
        "/silences",
        "/watchers",
    ] {
        create_by_hand(port, &format!("/zkwatchdog{dir}"), None).await;
    }
    // A persistent node with the lowest election sequence: followed, it would leave every
    // watcher standing by behind it, and nobody would send anything.
    let fake_leader = "/zkwatchdog/watchers/n-0000000000";
    create_by_hand(port, fake_leader, Some("by hand")).await;

    // Before the watcher starts (found by its first reconciliation and incident load).
    let garbage_incident = "/zkwatchdog/incidents/handmade@test";
    create_by_hand(
        port,
        garbage_incident,
        Some(r#"{"v":1,"id":"handmade@test","cause":"#),
    )
    .await;
    let wrong_types = "/zkwatchdog/agents/wrong-types@test";
    create_by_hand(
        port,
        wrong_types,
        Some(r#"{"v":1,"id":"wrong-types@test","name":5,"kind":"toaster","host":[],"generation":"many"}"#),
    )
    .await;
    let empty = "/zkwatchdog/agents/empty@test";
    create_by_hand(port, empty, None).await;
    let odd = "/zkwatchdog/agents/odd@test";
    create_by_hand(port, odd, Some("x")).await;
    create_by_hand(port, &format!("{odd}/extra"), Some("y")).await;
    let garbage_silence = "/zkwatchdog/silences/garbage@test";
    create_by_hand(port, garbage_silence, Some("[1,2,3]")).await;
    let hand_live = "/zkwatchdog/live/hand-live@test";
    create_by_hand(port, hand_live, Some(r#"{"v":1,"pid":"x"}"#)).await;
    // A well-formed incident filed under the wrong name: it says sound@test crashed and was
    // already notified. Taken for sound@test's own, it would swallow that agent's real crash.
    let misfiled = "/zkwatchdog/incidents/misfiled@test";
    let at = "2026-01-01T00:00:00.000Z";
    let incident = json!({
        "v": 1, "id": "sound@test", "opened_at": at, "notified_at": at,
        "cause": {"kind": "lost", "generation": 1, "state": "running", "last_update": at},
    });
    create_by_hand(port, misfiled, Some(&incident.to_string())).await;

    let watcher = WatcherProc::start_with(
        &zk.connect_string(),
        "group-wait = \"0s\"",
        Some(&smtp),
        "",
        &["--log-format", "json"],
    );
    watcher.wait_leading(LONG);
    // ... and while it runs (seen through its watch).
    let late = "/zkwatchdog/agents/late@test";
    create_by_hand(port, late, Some(r#"{"v": 2"#)).await;
    let odd_child = format!("{odd}/extra2");
    create_by_hand(port, &odd_child, Some("z")).await;
    // A garbage incident where the real agent's incident will go.
    create_by_hand(port, "/zkwatchdog/incidents/sound@test", Some("garbage")).await;
    // With a child of its own: closing the incident must still remove it.
    let note = "/zkwatchdog/incidents/sound@test/note";
    create_by_hand(port, note, Some("left by an operator")).await;

    const NOT_A_RECORD: &str = "not a valid record";
    for path in [garbage_incident, wrong_types, empty, odd, hand_live, late] {
        wait_warning(&watcher, path, NOT_A_RECORD);
    }
    wait_warning(&watcher, garbage_silence, NOT_A_RECORD);
    wait_warning(&watcher, misfiled, "id does not match its znode name");
    wait_warning(&watcher, &odd_child, "not an agent id");
    wait_warning(&watcher, fake_leader, "not ephemeral");

    // It keeps working: a real agent's crash is emailed, once, and its recovery.
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "sound@test",
        RESTART_AFTER_1S,
        &["--stderr", "sound agent stderr line"],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let mails = smtp.wait_for_messages(1, LONG).await;
    let crash = &mails[0];
    assert!(
        crash.subject.contains("CRASHED") && crash.subject.contains("sound@test"),
        "{}",
        crash.subject
    );
    assert!(
        crash.body.contains("sound agent stderr line"),
        "{}",
        crash.body
    );
    wd.wait_live(&c, 2, LONG).await;
    wait_until_sync("the recovery email", LONG, || {
        smtp.messages()
            .iter()
            .any(|m| m.subject.contains("sound@test") && m.subject.contains("RECOVERED"))
            .then_some(())
    });
    // The closed incident is gone, its unexpected child with it.
    wait_until("the closed incident to be removed", LONG, || async {
        (!zk::exists(&c, "/zkwatchdog/incidents/sound@test").await).then_some(())
    })
    .await;
    wait_warning(&watcher, note, "unexpected child");
    let subjects: Vec<String> = smtp.messages().iter().map(|m| m.subject.clone()).collect();
    for bad in [
        "handmade",
        "wrong-types",
        "empty@",
        "odd@",
        "late@",
        "hand-live",
        "misfiled",
    ] {
        assert!(
            subjects.iter().all(|s| !s.contains(bad)),
            "a hand-made node was reported as an agent: {subjects:?}"
        );
    }
    assert!(!watcher.log().contains("panicked"), "{}", watcher.log());
    assert!(watcher.is_leading());

    // `status` lists the real agent, names each bad node on stderr, and succeeds.
    let hosts = zk.connect_string();
    let out = zkwatcher_cli(&["status", "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("sound@test"))
        .unwrap_or_else(|| panic!("no row for sound@test:\n{}", describe(&out)));
    assert!(row.contains("running"), "{row}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        garbage_incident,
        wrong_types,
        empty,
        odd,
        hand_live,
        late,
        misfiled,
    ] {
        assert!(
            stderr.contains(path),
            "status names {path}: {}",
            describe(&out)
        );
    }
    let out = zkwatcher_cli(&["status", "--json", "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", describe(&out)));
    let ids: Vec<&str> = rows
        .as_array()
        .expect("an array of rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["sound@test"], "only the real agent has a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_written_under_a_running_agents_marker_does_not_spoil_its_planned_stop() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(&zk.connect_string(), "stopped@test", "", &[]);
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    let note = format!("{}/note", wd.marker_path());
    create_by_hand(zk.port(), &note, Some("left by an operator")).await;

    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(0), "{}", wd.log());
    assert!(!zk::exists(&c, &wd.marker_path()).await, "marker removed");
    assert!(!zk::exists(&c, &wd.live_path()).await, "liveness removed");
    assert!(
        wd.log()
            .lines()
            .any(|l| l.contains("removing an unexpected child of the marker") && l.contains(&note)),
        "{}",
        wd.log()
    );
}
