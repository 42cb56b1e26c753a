//! The watcher with a large registry (issue 14): a reconcile reads every agent, thousands of
//! them, in batches, and what happens meanwhile is not held back until it is over.
//!
//! The fleet is written by the test itself with the watchdog crate's own records and layout
//! (markers persistent, liveness nodes ephemeral on the test's session); one agent is a real
//! `zkwatchdog` with a real child, SIGKILLed while a reconcile runs.

use std::time::{Duration, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::{encode, ensure_dirs, Layout, NodeAcls, DEFAULT_ROOT};
use zkwatchdog_tests::scale::{self, Group, DEFAULT_TAIL_EVERY};
use zkwatchdog_tests::smtp::{SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until_sync;
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;
use zookeeper_client::{Acls, Client, CreateMode};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(60);

/// Written per round trip while the fleet is registered.
const CREATE_BATCH: usize = 1000;

/// Writes `n` running agents (marker and liveness node each, as `scripts/bench-scale.sh` does:
/// every 10th with an earlier crash and its stderr tail), `CREATE_BATCH` agents at a time.
async fn register_fleet(c: &Client, n: usize) {
    let layout = Layout::new(DEFAULT_ROOT).expect("the default root");
    let dirs = [layout.agents_dir(), layout.live_dir()];
    if let Err((dir, e)) = ensure_dirs(c, &layout, &dirs, &NodeAcls::open()).await {
        panic!("mkdir {dir}: {e}");
    }
    let session = c.session_id().0;
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    let indexes: Vec<usize> = (0..n).collect();
    for batch in indexes.chunks(CREATE_BATCH) {
        let now = SystemTime::now();
        let nodes: Vec<(String, Vec<u8>, String, Vec<u8>)> = batch
            .iter()
            .map(|&i| {
                let id = scale::agent_id(Group::Steady, i);
                let marker = scale::marker(Group::Steady, i, session, DEFAULT_TAIL_EVERY, now);
                let live = scale::liveness(i, session, DEFAULT_TAIL_EVERY, now);
                (
                    layout.marker(&id),
                    encode(&marker),
                    layout.live(&id),
                    encode(&live),
                )
            })
            .collect();
        let mut asked = Vec::with_capacity(nodes.len() * 2);
        for (marker_path, marker, live_path, live) in &nodes {
            asked.push(c.create(marker_path, marker, &persistent));
            asked.push(c.create(live_path, live, &ephemeral));
        }
        for (answer, path) in asked.into_iter().zip(
            nodes
                .iter()
                .flat_map(|(m, _, l, _)| [m.as_str(), l.as_str()]),
        ) {
            if let Err(e) = answer.await {
                panic!("create {path}: {e}");
            }
        }
    }
}

/// Index of the first line of `lines` at or after `from` containing every one of `needles`.
fn find(lines: &[&str], from: usize, needles: &[&str]) -> Option<usize> {
    (from..lines.len()).find(|&i| needles.iter().all(|n| lines[i].contains(n)))
}

/// Whether a line of the watcher's log is its conclusion that `id` went down (not "still down").
fn went_down(line: &str, id: &str) -> bool {
    line.contains(id) && line.contains(" down") && !line.contains("still down")
}

/// What the log says of the `nth` crash of `id` (1-based): `None` until its email's acceptance
/// is logged; then whether it was seen while a reconcile ran, and if so whether the email was
/// accepted before that reconcile ended.
fn crash_in_log(log: &str, id: &str, nth: usize) -> Option<CrashSeen> {
    let lines: Vec<&str> = log.lines().collect();
    let down = (0..lines.len())
        .filter(|&i| went_down(lines[i], id))
        .nth(nth - 1)?;
    let accepted = find(&lines, down, &["notification accepted", id])?;
    let Some(pass_start) = (0..down).rev().find(|&i| lines[i].contains("reconciling")) else {
        return Some(CrashSeen::BetweenReconciles);
    };
    let ended = find(&lines, pass_start, &["reconciled: every agent read"]);
    Some(match ended {
        Some(end) if end < down => CrashSeen::BetweenReconciles,
        Some(end) if end < accepted => CrashSeen::EmailWaited(format!(
            "{}\n{}\n{}",
            lines[down], lines[end], lines[accepted]
        )),
        _ => CrashSeen::EmailFirst,
    })
}

#[derive(Debug)]
enum CrashSeen {
    /// Not inside a reconcile: this attempt says nothing.
    BetweenReconciles,
    /// Seen inside one, and mailed before it ended.
    EmailFirst,
    /// Seen inside one, and mailed only after it ended (the lines that show it).
    EmailWaited(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_reconcile_of_thousands_of_agents_is_mailed_before_the_reconcile_ends() {
    const ID: &str = "crash-in-pass@test";
    const FLEET: usize = 20_000;
    // A crash is caused the moment a reconcile starts; whether the watcher sees it before that
    // reconcile ends depends on the machine (a reconcile of 20,000 agents takes about a second).
    // One that falls between two reconciles proves nothing, so the child is crashed again, up
    // to this many times.
    const ATTEMPTS: usize = 5;
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let c = client(&hosts).await;
    register_fleet(&c, FLEET).await;
    // Reconciles follow each other without a pause (each one takes longer than the interval),
    // so a crash is likely to fall inside one.
    let watcher = WatcherProc::start(
        &hosts,
        "group-wait = \"0s\"\nreconcile-interval = \"1s\"",
        Some(&smtp),
        "",
    );
    watcher.wait_leading(LONG);
    let wd = WatchdogProc::start(
        &hosts,
        ID,
        "[restart]\nbackoff-initial = \"1s\"\nbackoff-max = \"1s\"\nbackoff-jitter = 0.0\n",
        &[],
    );
    for attempt in 1..=ATTEMPTS {
        let live = wd.wait_live(&c, attempt as u64, LONG).await;
        let generation = format!("generation={attempt}");
        wait_until_sync("the watcher to see the agent up", LONG, || {
            watcher
                .log()
                .lines()
                .any(|l| l.contains(ID) && l.contains(" up") && l.contains(&generation))
                .then_some(())
        });
        // The moment a reconcile starts, the child is killed.
        let started = watcher.log().matches("reconciling").count();
        wait_until_sync("a reconcile to start", LONG, || {
            (watcher.log().matches("reconciling").count() > started).then_some(())
        });
        kill(Pid::from_raw(live.child_pid as i32), Signal::SIGKILL).expect("kill the child");
        let mail = smtp
            .wait_for_mail("the first crash email", LONG, |m| {
                m.subject.contains("CRASHED") && m.subject.contains(ID)
            })
            .await;
        assert!(mail.subject.contains("SIGKILL"), "{}", mail.subject);
        // Read in the watcher's log (it logs the acceptance right after the server's answer,
        // which may come after the test has seen the message).
        let seen = wait_until_sync("the watcher to log the acceptance", LONG, || {
            crash_in_log(&watcher.log(), ID, attempt)
        });
        match seen {
            CrashSeen::BetweenReconciles => {
                eprintln!("attempt {attempt}: the crash was seen between two reconciles; again");
            }
            CrashSeen::EmailWaited(lines) => {
                panic!("the crash email waited for the reconcile to end:\n{lines}")
            }
            CrashSeen::EmailFirst => {
                let log = watcher.log();
                if let Some(took) = log
                    .lines()
                    .find(|l| l.contains("reconciled: every agent read"))
                {
                    eprintln!("{FLEET} agents: {took}");
                }
                return;
            }
        }
    }
    panic!(
        "in {ATTEMPTS} attempts no crash was seen while a reconcile of {FLEET} agents ran: \
         the reconciles are too short here to test this (raise FLEET)"
    );
}

/// Issue 14's mass loss: a rack of 1,000 agents whose watchdogs all die at once (one session,
/// SIGKILLed: it expires on the server and its 1,000 liveness nodes go in one transaction) is
/// named in full in at most two messages (two when the loss straddles a group-wait boundary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_of_a_thousand_agents_lost_at_once_is_named_in_full_in_at_most_two_messages() {
    const RACK: usize = 1000;
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&hosts, "group-wait = \"1s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let mut rack = std::process::Command::new(zkwatchdog_tests::bin_path("scale-registry"))
        .args(["register", "--zk", &hosts, "--group", "rack"])
        .args(["--count", &RACK.to_string(), "--sessions", "1"])
        .args(["--session-timeout-ms", "2000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start scale-registry");
    let mut out = std::io::BufReader::new(rack.stdout.take().expect("its stdout"));
    let mut ready = String::new();
    tokio::task::block_in_place(|| std::io::BufRead::read_line(&mut out, &mut ready))
        .expect("read its first line");
    assert!(ready.starts_with("ready count=1000"), "{ready}");
    wait_until_sync("the watcher to see the whole rack up", LONG, || {
        let log = watcher.log();
        let up = log
            .lines()
            .filter(|l| l.contains(" up") && l.contains(scale::RACK_HOST))
            .count();
        (up >= RACK).then_some(())
    });
    // The rack's watchdogs die: their session is left to expire.
    rack.kill().expect("SIGKILL the rack's session holder");
    let _ = rack.wait();
    let mut named = std::collections::BTreeSet::new();
    let mails = smtp.wait_for_messages(1, LONG).await;
    let deadline = std::time::Instant::now() + LONG;
    let mut mails = mails;
    while named.len() < RACK && std::time::Instant::now() < deadline {
        named = mails
            .iter()
            .flat_map(|m| m.body.split_whitespace())
            .filter_map(|w| {
                scale::rack_index(
                    w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '@'),
                )
            })
            .collect();
        if named.len() < RACK {
            tokio::time::sleep(Duration::from_millis(200)).await;
            mails = smtp.messages();
        }
    }
    assert_eq!(
        named.len(),
        RACK,
        "every lost agent named; {} messages",
        mails.len()
    );
    // Nothing more comes about the rack (wait past another group-wait).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = smtp.messages();
    assert!(
        all.len() <= 2,
        "{} messages: {:?}",
        all.len(),
        all.iter().map(|m| m.subject.clone()).collect::<Vec<_>>()
    );
}
