//! The systemd units in `config/systemd/`: `systemd-analyze verify` accepts them (it runs without
//! systemd as PID 1), and their stop and restart settings agree with the watchdog's own stop
//! sequence for every example config.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use zkwatchdog::config::{self, Overrides};
use zkwatchdog_tests::{bin_path, repo_root};

fn unit_path(name: &str) -> PathBuf {
    repo_root().join("config/systemd").join(name)
}

/// `KEY=value` settings of a unit file (comments and section headers skipped; later wins).
fn settings(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting(path: &Path, key: &str) -> String {
    settings(path)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{} has no {key}=", path.display()))
}

/// Runs `systemd-analyze verify` on a copy of unit `name` saved as `as_name`, with the
/// installed binary's path replaced by the one built for the tests (verify checks that
/// `ExecStart`'s program exists).
fn verify(name: &str, as_name: &str) -> Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = std::fs::read_to_string(unit_path(name)).expect("read the unit");
    let text = ["zkwatchdog", "zkwatcher"].iter().fold(text, |t, bin| {
        t.replace(
            &format!("/usr/local/bin/{bin} "),
            &format!("{} ", bin_path(bin).display()),
        )
    });
    let copy = dir.path().join(as_name);
    std::fs::write(&copy, text).expect("write the copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}); scripts/install-deps.sh installs systemd")
        });
    out
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    for (name, as_name) in [
        ("zkwatchdog@.service", "zkwatchdog@.service"),
        ("zkwatchdog@.service", "zkwatchdog@flume-nginx.service"),
        ("zkwatcher.service", "zkwatcher.service"),
    ] {
        let out = verify(name, as_name);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {as_name}: {}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn systemd_analyze_verify_does_reject_a_broken_unit() {
    // The check above means something: a misspelt key and a bad KillMode are reported.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let copy = dir.path().join("broken.service");
    std::fs::write(
        &copy,
        "[Service]\nExecStart=/bin/true\nKillMode=bogus\nTimeoutStopSecc=5s\n",
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kill mode") && stderr.contains("TimeoutStopSecc"),
        "{stderr}"
    );
}

fn seconds(value: &str) -> Duration {
    zkwatchdog::configfile::parse_duration(value)
        .unwrap_or_else(|e| panic!("not a duration: {value:?}: {e}"))
}

#[test]
fn watchdog_unit_stops_through_the_watchdog_and_waits_long_enough_for_every_example() {
    let unit = unit_path("zkwatchdog@.service");
    assert_eq!(setting(&unit, "KillMode"), "mixed");
    assert_eq!(setting(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(setting(&unit, "Restart"), "on-failure");
    // 2: a bad config; 3: a give-up, which a restart would undo.
    assert_eq!(setting(&unit, "RestartPreventExitStatus"), "2 3");
    assert!(
        setting(&unit, "ExecStart").ends_with("run --config /etc/zkwatchdog/%i.toml"),
        "{}",
        setting(&unit, "ExecStart")
    );
    let stop_sec = seconds(&setting(&unit, "TimeoutStopSec"));
    for example in [
        "config/watchdog.example.toml",
        "config/watchdog.kafka-connect.example.toml",
    ] {
        let path = repo_root().join(example);
        let c =
            config::load(Some(&path), Overrides::default(), true).unwrap_or_else(|e| panic!("{e}"));
        // The stop sequence: stop-timeout, then the final registry write, which the watchdog
        // bounds by max(session-timeout, 5s); a few seconds more for the SIGKILL and the exit.
        let needed = c.restart.stop_timeout
            + c.session_timeout.max(Duration::from_secs(5))
            + Duration::from_secs(5);
        assert!(
            stop_sec >= needed,
            "TimeoutStopSec={stop_sec:?} is shorter than {example}'s stop sequence ({needed:?})"
        );
    }
}

#[test]
fn watcher_unit_never_restarts_a_bad_config() {
    let unit = unit_path("zkwatcher.service");
    assert_eq!(setting(&unit, "Restart"), "on-failure");
    assert_eq!(setting(&unit, "RestartPreventExitStatus"), "2");
    assert!(setting(&unit, "ExecStart").contains("zkwatcher run --config"));
    // Room for an email send in flight (30s timeout by default).
    assert!(seconds(&setting(&unit, "TimeoutStopSec")) > Duration::from_secs(30));
}
