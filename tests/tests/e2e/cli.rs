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

fn zkwatcher(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin_path("zkwatcher"))
        .args(args)
        .env_remove("ZK_HOSTS")
        .envs(env.iter().copied())
        .output()
        .expect("run zkwatcher")
}

/// `check-config` (for `ExecStartPre`, like `nginx -t`): 0 and a summary for a good file, 2
/// with every problem for a bad one; nothing is started and ZooKeeper is not contacted (the
/// connect string names a port nobody listens on).
#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "zk-hosts = \"127.0.0.1:9\"\nid = \"flume-a@h\"\ncommand = [\"sleep\", \"600\"]\n",
    )
    .expect("write config");
    let out = zkwatchdog(&["check-config", "--config", good.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok: agent flume-a@h"), "{stdout}");
    assert!(stdout.contains("\"sleep\", \"600\""), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "session-timeout = \"forever\"\nbogus = 1\n").expect("write config");
    let out = zkwatchdog(&["check-config", "--config", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["bogus: unknown key", "session-timeout:", "command:"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }

    // The watcher's: its channels are built, so a missing secret fails here, not at start.
    let watcher = dir.path().join("watcher.toml");
    std::fs::write(
        &watcher,
        "zk-hosts = \"127.0.0.1:9\"\n[email]\nurl = \"smtp://127.0.0.1:9\"\nusername = \"alerts\"\n\
         password-env = \"ZKWATCHER_CLI_TEST_SECRET\"\nfrom = \"z@example.com\"\n\
         to = [\"oncall@example.com\"]\n",
    )
    .expect("write config");
    let path = watcher.to_str().expect("utf-8");
    let out = zkwatcher(&["check-config", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ZKWATCHER_CLI_TEST_SECRET"), "{stderr}");
    let out = zkwatcher(
        &["check-config", "--config", path],
        &[("ZKWATCHER_CLI_TEST_SECRET", "s3cret")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: zookeeper 127.0.0.1:9/zkwatchdog, channels: email"),
        "{stdout}"
    );
}

/// `zkwatcher status` runs with `run`'s own file on a host where the channels' secrets are not
/// in the environment (an operator's shell): it reads the registry and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_takes_the_run_config_without_the_channels_secrets() {
    let zk = ZkServer::start();
    let wd = WatchdogProc::start(&zk.connect_string(), "status-secrets@test", "", &[]);
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("watcher.toml");
    std::fs::write(
        &config,
        format!(
            "zk-hosts = {:?}\n[email]\nurl = \"smtp://127.0.0.1:9\"\nusername = \"alerts\"\n\
             password-env = \"ZKWATCHER_CLI_TEST_PASSWORD\"\nfrom = \"z@example.com\"\n\
             to = [\"oncall@example.com\"]\n",
            zk.connect_string()
        ),
    )
    .expect("write config");
    let out = zkwatcher(
        &["status", "--config", config.to_str().expect("utf-8")],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("status-secrets@test") && l.contains("running")),
        "{stdout}"
    );
}
