//! SIGHUP to `zkwatchdog` (`systemctl reload`) end to end, per `restart.on-reload`: under
//! `kind = "flume"` the child (which would die of SIGHUP, like a JVM) is restarted as a planned
//! restart that the watcher never reports; `"forward"` passes the signal on; `"ignore"` drops it.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::AgentState;
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until_sync;
use zkwatchdog_tests::watchdog::{client, process_alive, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// How long nothing may arrive after the reload has completed. The watcher (group-wait 0s)
/// mails a crash within a few hundred milliseconds, as the control at the end of the test shows.
const QUIET: Duration = Duration::from_secs(4);

/// Waits until the watcher has logged agent `id` up at `generation`: it has seen that child, so
/// a later vanishing of it is something it judges (not a first sight of the next one).
fn wait_watcher_saw_up(watcher: &WatcherProc, id: &str, generation: u64) {
    let needle = format!("generation={generation}");
    wait_until_sync(
        &format!("the watcher to see {id} up at generation {generation}"),
        LONG,
        || {
            watcher
                .log()
                .lines()
                .any(|l| l.contains(" up ") && l.contains(id) && l.contains(&needle))
                .then_some(())
        },
    );
}

/// The signal names a `testchild --signal-file` recorded.
fn signals_received(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_restarts_a_flume_child_as_a_planned_restart_without_any_alert() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let id = "reload-flume@test";
    // No --signal-file: SIGHUP keeps its default action and kills testchild, as it makes a JVM
    // exit with 129. The default on-reload of kind "flume" must never let it reach the child.
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        id,
        "kind = \"flume\"\n[restart]\nstop-timeout = \"10s\"\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    wait_watcher_saw_up(&watcher, id, 1);

    wd.signal(Signal::SIGHUP);
    let second = wd.wait_live(&c, 2, LONG).await;
    assert_eq!(second.generation, 2, "one restart");
    assert_ne!(second.child_pid, first.child_pid, "a new child");
    assert!(!process_alive(first.child_pid), "the old child is gone");
    assert!(process_alive(second.child_pid));
    let marker = wd.marker(&c).await.expect("the marker stays");
    assert_eq!(marker.state, AgentState::Running);
    assert_eq!((marker.generation, marker.restarts), (2, 1));
    let exit = marker.last_exit.expect("the reload's exit is recorded");
    assert!(exit.reload, "last_exit says reload: {exit:?}");
    assert_eq!(exit.generation, 1);
    // testchild has no SIGTERM handler without --signal-file: the stop signal killed it.
    assert_eq!(exit.signal.as_deref(), Some("SIGTERM"), "{exit:?}");
    let log = wd.log();
    assert!(
        log.lines()
            .any(|l| l.contains("reload (SIGHUP): restarting the child") && l.contains(id)),
        "the reload is logged with the agent id:\n{log}"
    );

    // The watcher has seen the new child and stays quiet.
    wait_watcher_saw_up(&watcher, id, 2);
    tokio::time::sleep(QUIET).await;
    let mails = smtp.messages();
    assert!(
        mails.is_empty(),
        "no notice for a reload: {:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let incident = format!("/zkwatchdog/incidents/{id}");
    assert!(!zk::exists(&c, &incident).await, "no incident was opened");
    assert!(
        !watcher.log().contains("went down and came back"),
        "no bounce either:\n{}",
        watcher.log()
    );

    // Control: the same watcher does report a real crash of the new child, and that is the
    // first and only alert (nothing about the reload arrives late).
    kill(Pid::from_raw(second.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let crash = smtp
        .wait_for_mail("the crash of generation 2", LONG, |m| {
            m.subject.contains("CRASHED") && m.subject.contains(id)
        })
        .await;
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    assert!(
        crash.body.contains("generation 2"),
        "the crash is of the reloaded child: {}",
        crash.body
    );
    // A recovery of generation 3 may follow; nothing else.
    let subjects: Vec<String> = smtp.messages().into_iter().map(|m| m.subject).collect();
    assert!(
        subjects[0].contains("CRASHED")
            && subjects
                .iter()
                .all(|s| s.contains("CRASHED") || s.contains("RECOVERED")),
        "{subjects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_reload_forward_passes_sighup_on_and_ignore_drops_it() {
    let zk = ZkServer::start();
    let c = client(&zk.connect_string()).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // "forward": the child receives SIGHUP and is not restarted.
    let forwarded = dir.path().join("forwarded");
    let forwarded_arg = forwarded.display().to_string();
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "reload-forward@test",
        "kind = \"generic\"\n[restart]\non-reload = \"forward\"\n",
        &["--signal-file", &forwarded_arg],
    );
    let live = wd.wait_live(&c, 1, LONG).await;
    wd.signal(Signal::SIGHUP);
    wait_until_sync("the child to receive HUP", LONG, || {
        signals_received(&forwarded)
            .contains(&"HUP".to_string())
            .then_some(())
    });
    let still = wd.liveness(&c).await.expect("still live");
    assert_eq!(
        (still.generation, still.child_pid),
        (1, live.child_pid),
        "not restarted"
    );
    assert!(
        wd.marker(&c).await.expect("marker").last_exit.is_none(),
        "no exit recorded"
    );

    // "ignore": logged, nothing reaches the child, nothing restarts.
    let ignored = dir.path().join("ignored");
    let ignored_arg = ignored.display().to_string();
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "reload-ignore@test",
        "kind = \"flume\"\n[restart]\non-reload = \"ignore\"\n",
        &["--signal-file", &ignored_arg],
    );
    let live = wd.wait_live(&c, 1, LONG).await;
    wd.signal(Signal::SIGHUP);
    wait_until_sync("the watchdog to log the ignored SIGHUP", LONG, || {
        wd.log().contains("SIGHUP ignored").then_some(())
    });
    // The log line comes after the decision; give a wrongly sent signal time to land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        signals_received(&ignored).is_empty(),
        "{:?}",
        signals_received(&ignored)
    );
    let still = wd.liveness(&c).await.expect("still live");
    assert_eq!((still.generation, still.child_pid), (1, live.child_pid));
}
