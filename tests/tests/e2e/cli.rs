//! The command line: bad configs and ids exit 2 naming the key; `deregister` removes an agent.

use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use zkwatchdog_tests::bin_path;
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::zk::{self, ZkServer};

const LONG: Duration = Duration::from_secs(30);

fn zkwatchdog(args: &[&str]) -> Output {
    Command::new(bin_path("zkwatchdog"))
        .args(args)
        .env_remove("ZK_HOSTS")
        .output()
        .expect("run zkwatchdog")
}

#[test]
fn bad_config_exits_2_listing_every_problem_with_its_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "command = [\"sleep\", \"10\"]\nsession-timeout = \"forever\"\nkind = \"hadoop\"\nrestart-policy = \"always\"\n[restart]\npolicy = \"sometimes\"\n",
    )
    .expect("write config");
    let out = zkwatchdog(&["run", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(path.to_str().expect("utf-8")), "{stderr}");
    for key in [
        "restart-policy: unknown key",
        "session-timeout:",
        "kind:",
        "restart.policy:",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}

#[test]
fn invalid_id_exits_2_naming_the_key() {
    for id in ["a/b", "..", "bad\tid"] {
        let out = zkwatchdog(&["run", "--id", id, "--", "sleep", "10"]);
        assert_eq!(out.status.code(), Some(2), "id {id:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("id:"), "{stderr}");
    }
    let long = "x".repeat(201);
    let out = zkwatchdog(&["run", "--id", &long, "--", "sleep", "10"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_command_exits_2() {
    let out = zkwatchdog(&["run", "--id", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("command:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_removes_a_stale_agent_for_good() {
    let zk = ZkServer::start();
    let mut wd = WatchdogProc::start(&zk.connect_string(), "gone@test", "", &[]);
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    wd.signal(Signal::SIGKILL);
    wd.wait_exit(LONG);
    assert!(zk::exists(&c, &wd.marker_path()).await);

    let hosts = zk.connect_string();
    let deregister = || zkwatchdog(&["deregister", "--zk", &hosts, "--id", "gone@test"]);
    let out = deregister();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!zk::exists(&c, &wd.marker_path()).await);
    assert!(!zk::exists(&c, &wd.live_path()).await);

    let out = deregister();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent gone@test"));
}
