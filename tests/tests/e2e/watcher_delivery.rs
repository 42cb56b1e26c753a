//! `zkwatcher run`'s delivery guarantees end to end (DESIGN.md section 2): a planned stop never
//! alerts, a killed watchdog is one "lost" email after the session timeout, an agent that died
//! while no watcher ran is reported when one starts, two watchers send each incident once, a
//! leader killed before it could send hands its incident over, an SMTP outage delays an alert
//! without dropping it, a channel that announced a recovery hears the next outage, and a late
//! answer about an older notice never marks a newer crash as sent. Real ZooKeeper, real
//! `zkwatchdog`s and children, a real SMTP server (STARTTLS + AUTH); webhooks to wiremock.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use zkwatchdog::registry::{AgentState, HealthStatus};
use zkwatchdog_tests::fakes::FakeFlume;
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};
use zookeeper_client::Client;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// A short grouping window, so that messages go out soon after an incident opens.
const GROUP_WAIT: &str = "group-wait = \"500ms\"";

/// A crashed child is restarted after one second (no jitter): long enough that the watcher sees
/// the crash itself (not a restart it missed), short enough to see the recovery.
const ONE_SECOND_RESTART: &str =
    "[restart]\nbackoff-initial = \"1s\"\nbackoff-max = \"1s\"\nbackoff-jitter = 0.0\n";

/// A crashed child waits a minute before its restart: the agent stays down for the whole test.
const STAYS_DOWN: &str =
    "[restart]\nbackoff-initial = \"60s\"\nbackoff-max = \"60s\"\nbackoff-jitter = 0.0\n";

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

/// Messages whose subject names `agent` and contains `word`.
fn count(mails: &[CapturedMail], agent: &str, word: &str) -> usize {
    mails
        .iter()
        .filter(|m| m.subject.contains(agent) && m.subject.contains(word))
        .count()
}

/// Waits until the captured messages satisfy `done`, and returns them.
async fn wait_mails(
    smtp: &SmtpServer,
    what: &str,
    done: impl Fn(&[CapturedMail]) -> bool,
) -> Vec<CapturedMail> {
    let done = &done;
    wait_until(what, LONG, || async move {
        let mails = smtp.try_messages().ok()?;
        done(&mails).then_some(mails)
    })
    .await
}

/// `<root>/incidents/<id>` as JSON, `None` when absent.
async fn incident(c: &Client, id: &str) -> Option<Value> {
    zk::get_json(c, &format!("/zkwatchdog/incidents/{id}")).await
}

/// Waits until the incident of `id` exists and satisfies `ok`; returns it.
async fn wait_incident(c: &Client, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let ok = &ok;
    wait_until(&format!("incident {id}: {what}"), LONG, || async move {
        incident(c, id).await.filter(|i| ok(i))
    })
    .await
}

/// Whether the incident record's field is present (and not null).
fn has(incident: &Value, field: &str) -> bool {
    incident.get(field).is_some_and(|v| !v.is_null())
}

fn cause_kind(incident: &Value) -> &str {
    incident["cause"]["kind"].as_str().unwrap_or("")
}

/// Lines of the watcher's log that mention `agent` and contain `text`.
fn log_lines(w: &WatcherProc, agent: &str, text: &str) -> usize {
    w.log()
        .lines()
        .filter(|l| l.contains(agent) && l.contains(text))
        .count()
}

/// How many failed sends the watcher has logged.
fn failed_sends(w: &WatcherProc) -> usize {
    w.log().matches("notification failed").count()
}

/// How many requests the webhook receiver has had.
async fn requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .len()
}

fn kill_pid(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill the child");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_stop_sends_nothing_and_leaves_no_incident() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    watcher.wait_leading(LONG);
    let id = "planned-stop@delivery";
    let mut wd = WatchdogProc::start(&zk.connect_string(), id, "", &["--stderr", "bye"]);
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    // The watcher has seen the agent up: its stop is a change it observes, not a non-event.
    wait_until_sync("the watcher to see the agent up", LONG, || {
        (log_lines(&watcher, id, " up ") > 0).then_some(())
    });

    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(LONG);
    let exited = Instant::now();
    assert_eq!(status.code(), Some(0), "planned stop exits 0: {status:?}");
    assert!(wd.marker(&c).await.is_none(), "marker removed");
    assert!(wd.liveness(&c).await.is_none(), "liveness removed");
    wait_until_sync("the watcher to see the agent gone", LONG, || {
        (log_lines(&watcher, id, "gone from the registry") > 0).then_some(())
    });

    // Several group-waits, and longer than the settle time plus one group-wait: anything the
    // watcher concluded from the stop would have been sent by now.
    let window = Duration::from_millis(3500);
    while exited.elapsed() < window {
        let mails = smtp.messages();
        assert!(mails.is_empty(), "{:?}", subjects(&mails));
        assert!(incident(&c, id).await.is_none(), "no incident for a stop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        smtp.messages().is_empty(),
        "{:?}",
        subjects(&smtp.messages())
    );
    assert!(incident(&c, id).await.is_none(), "no incident for a stop");
    assert_eq!(
        log_lines(&watcher, id, "down"),
        0,
        "the watcher did not conclude the agent was down:\n{}",
        watcher.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_watchdog_is_one_lost_email_after_the_session_timeout() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    watcher.wait_leading(LONG);
    let id = "sigkilled-watchdog@delivery";
    let mut wd = WatchdogProc::start(&zk.connect_string(), id, "", &[]);
    let c = client(&zk.connect_string()).await;
    wd.wait_live(&c, 1, LONG).await;
    wait_until_sync("the watcher to see the agent up", LONG, || {
        (log_lines(&watcher, id, " up ") > 0).then_some(())
    });

    wd.signal(Signal::SIGKILL);
    let killed = Instant::now();
    wd.wait_exit(LONG);
    // The liveness node belongs to the dead watchdog's session: it lasts until that expires.
    assert!(
        wd.liveness(&c).await.is_some(),
        "the liveness node outlives its watchdog until the session expires"
    );

    let mails = smtp.wait_for_messages(1, LONG).await;
    let arrived = killed.elapsed();
    assert!(
        arrived >= Duration::from_millis(1500),
        "the alert came {arrived:?} after the kill, before the 2 s session could expire: {:?}",
        subjects(&mails)
    );
    assert_eq!(mails.len(), 1, "{:?}", subjects(&mails));
    let lost = &mails[0];
    assert!(
        lost.subject.contains("LOST") && lost.subject.contains(id),
        "{}",
        lost.subject
    );
    assert!(lost.body.contains(id), "{}", lost.body);
    assert!(lost.tls, "sent over STARTTLS");
    assert!(wd.liveness(&c).await.is_none(), "liveness node expired");
    let marker = wd.marker(&c).await.expect("the marker stays");
    assert_eq!(marker.state, AgentState::Running);

    let record = wait_incident(&c, id, "notified", |i| has(i, "notified_at")).await;
    assert_eq!(cause_kind(&record), "lost", "{record}");
    assert!(!has(&record, "resolved_at"), "{record}");

    // Exactly one: nothing more is sent for the same incident.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{:?}", subjects(&mails));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_again_after_a_recovery_announced_by_email_is_a_new_crashed_email() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    // A second channel held back by its rate limit: after its first message it sends nothing
    // for a minute, so it has not announced the recovery when the agent goes down again.
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let tables = format!(
        "[[webhook]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{}/hook\"\nmin-interval = \"60s\"\n",
        hook.uri()
    );
    let watcher = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), &tables);
    watcher.wait_leading(LONG);
    let id = "down-again@delivery";
    // Restarted after three seconds: the crash goes out on both channels (after the 500 ms
    // group-wait) well before the recovery, even on a loaded machine.
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        id,
        "[restart]\nbackoff-initial = \"3s\"\nbackoff-max = \"3s\"\nbackoff-jitter = 0.0\n",
        &["--stderr", "disk full"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    wait_until_sync("the watcher to see the agent up", LONG, || {
        (log_lines(&watcher, id, " up ") > 0).then_some(())
    });

    kill_pid(live.child_pid);
    let live = wd.wait_live(&c, 2, LONG).await;
    let mails = wait_mails(&smtp, "the crash and the recovery by email", |m| {
        count(m, id, "CRASHED") >= 1 && count(m, id, "RECOVERED") >= 1
    })
    .await;
    assert_eq!(count(&mails, id, "CRASHED"), 1, "{:?}", subjects(&mails));
    let record = wait_incident(&c, id, "the recovery recorded as sent by email", |i| {
        has(&i["deliveries"]["email"], "resolved")
    })
    .await;
    assert!(
        has(&record["deliveries"]["hook"], "opened")
            && !has(&record["deliveries"]["hook"], "resolved"),
        "the hook announced the crash, not yet the recovery: {record}"
    );
    assert_eq!(requests(&hook).await, 1, "the hook is held back");

    // Down again while the hook still holds the recovery back: email was told the outage had
    // ended, so it is told of the new one.
    kill_pid(live.child_pid);
    let mails = wait_mails(&smtp, "a second CRASHED email", |m| {
        count(m, id, "CRASHED") >= 2
    })
    .await;
    let second = mails
        .iter()
        .filter(|m| m.subject.contains(id) && m.subject.contains("CRASHED"))
        .nth(1)
        .expect("found above");
    assert!(second.subject.contains("SIGKILL"), "{}", second.subject);
    assert!(second.body.contains("generation 2"), "{}", second.body);
    wd.wait_live(&c, 3, LONG).await;
    let mails = wait_mails(&smtp, "the second recovery by email", |m| {
        count(m, id, "RECOVERED") >= 2
    })
    .await;
    assert_eq!(count(&mails, id, "CRASHED"), 2, "{:?}", subjects(&mails));
    assert_eq!(requests(&hook).await, 1, "the hook is still held back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_notice_answered_after_a_crash_does_not_mark_the_crash_sent() {
    let zk = ZkServer::start();
    // The only channel answers each message five seconds late: the DEGRADED notice is still in
    // flight when the agent crashes.
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&hook)
        .await;
    let tables = format!(
        "[[webhook]]\nname = \"hook\"\nkind = \"generic\"\nurl = \"{}/hook\"\ntimeout = \"20s\"\n",
        hook.uri()
    );
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", None, &tables);
    watcher.wait_leading(LONG);
    let id = "degraded-then-crashed@delivery";
    let flume = FakeFlume::on_free_port();
    let wd = WatchdogProc::start_command(
        &zk.connect_string(),
        id,
        &format!(
            "kind = \"flume\"\n[probe]\nurl = {:?}\ninterval = \"200ms\"\ntimeout = \"2s\"\n\
             start-grace = \"1s\"\nchannel-fill-threshold = 80.0\n{STAYS_DOWN}",
            flume.metrics_url()
        ),
        &flume.command(&[]),
    );
    let c = client(&zk.connect_string()).await;
    wait_until("the probe to report ok", LONG, || async {
        wd.liveness(&c)
            .await
            .filter(|l| l.health.status == HealthStatus::Ok)
    })
    .await;

    flume.set_channel_size("c1", 9_900).await;
    wait_incident(&c, id, "degraded", |i| cause_kind(i) == "degraded").await;
    wait_until_sync("the DEGRADED notice to be on its way", LONG, || {
        (log_lines(&watcher, id, "sending") > 0).then_some(())
    });
    flume.crash().await;
    wait_incident(&c, id, "crashed", |i| cause_kind(i) == "crashed").await;

    // The late answer is about the degradation; the crash is still to be sent, and is.
    let crashed = wait_until("a CRASHED message on the hook", LONG, || async {
        let got = hook.received_requests().await?;
        got.iter().find_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            body["subject"]
                .as_str()
                .is_some_and(|s| s.contains("CRASHED") && s.contains(id))
                .then_some(body)
        })
    })
    .await;
    assert_eq!(crashed["items"][0]["cause"]["kind"], "crashed", "{crashed}");
    let record = wait_incident(&c, id, "the crash recorded as sent", |i| {
        has(&i["deliveries"]["hook"], "opened")
    })
    .await;
    assert_eq!(cause_kind(&record), "crashed", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_that_died_while_no_watcher_ran_is_reported_when_one_starts() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let id = "died-unwatched@delivery";
    let mut wd = WatchdogProc::start(
        &zk.connect_string(),
        id,
        "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"100ms\"\nmax-restarts = 1\nrestart-window = \"5m\"\n",
        &[
            "--exit-after",
            "200",
            "--code",
            "3",
            "--stderr",
            "cannot bind 0.0.0.0:4141",
        ],
    );
    // The child exits with code 3, is restarted once, exits again: the watchdog gives up.
    let status = wd.wait_exit(LONG);
    assert_eq!(status.code(), Some(3), "give-up exits 3: {status:?}");
    let c = client(&zk.connect_string()).await;
    let marker = wd
        .marker(&c)
        .await
        .expect("the marker stays after a give-up");
    assert_eq!(marker.state, AgentState::Fatal);
    let exit = marker.last_exit.as_ref().expect("last_exit recorded");
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.generation, marker.generation);
    assert!(wd.liveness(&c).await.is_none());
    assert!(incident(&c, id).await.is_none(), "no watcher ran");

    let watcher = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    watcher.wait_leading(LONG);
    let mails = smtp.wait_for_messages(1, LONG).await;
    let fatal = &mails[0];
    assert!(
        fatal.subject.contains("FATAL") && fatal.subject.contains(id),
        "{:?}",
        subjects(&mails)
    );
    assert!(fatal.subject.contains("exit code 3"), "{}", fatal.subject);
    assert!(
        fatal.body.contains("cannot bind 0.0.0.0:4141"),
        "{}",
        fatal.body
    );

    let record = wait_incident(&c, id, "notified", |i| has(i, "notified_at")).await;
    assert_eq!(cause_kind(&record), "crashed", "{record}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{:?}", subjects(&mails));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watchers_send_each_incident_once() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let first = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    first.wait_leading(LONG);
    let second = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    second.wait_ready(LONG);
    assert!(!second.is_leading(), "{}", second.log());

    let ids = ["pair-a@delivery", "pair-b@delivery"];
    let wds: Vec<WatchdogProc> = ids
        .iter()
        .map(|id| {
            WatchdogProc::start(
                &zk.connect_string(),
                id,
                ONE_SECOND_RESTART,
                &["--stderr", &format!("{id} out of memory")],
            )
        })
        .collect();
    let c = client(&zk.connect_string()).await;
    for (wd, id) in wds.iter().zip(ids) {
        wd.wait_live(&c, 1, LONG).await;
        for w in [&first, &second] {
            wait_until_sync("both watchers to see the agent up", LONG, || {
                (log_lines(w, id, " up ") > 0).then_some(())
            });
        }
    }

    // One agent at a time, each through its crash and its recovery, so that nothing groups.
    for (wd, id) in wds.iter().zip(ids) {
        let live = wd.wait_live(&c, 1, LONG).await;
        kill_pid(live.child_pid);
        wd.wait_live(&c, 2, LONG).await;
        let mails = wait_mails(&smtp, &format!("crash and recovery of {id}"), |m| {
            count(m, id, "CRASHED") >= 1 && count(m, id, "RECOVERED") >= 1
        })
        .await;
        let crash = mails
            .iter()
            .find(|m| m.subject.contains(id) && m.subject.contains("CRASHED"))
            .expect("found above");
        assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
        assert!(
            crash.body.contains(&format!("{id} out of memory")),
            "{}",
            crash.body
        );
        wait_until(&format!("the incident of {id} to close"), LONG, || async {
            (!zk::exists(&c, &format!("/zkwatchdog/incidents/{id}")).await).then_some(())
        })
        .await;
    }

    // Nothing doubled, nothing late.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = smtp.messages();
    for id in ids {
        assert_eq!(count(&mails, id, "CRASHED"), 1, "{:?}", subjects(&mails));
        assert_eq!(count(&mails, id, "RECOVERED"), 1, "{:?}", subjects(&mails));
    }
    assert!(
        mails
            .iter()
            .all(|m| ids.iter().filter(|id| m.subject.contains(*id)).count() == 1),
        "one agent per message: {:?}",
        subjects(&mails)
    );
    // A crash and its recovery: one message, or two.
    assert!((2..=4).contains(&mails.len()), "{:?}", subjects(&mails));
    assert!(!second.is_leading(), "the standby never took over");
    assert_eq!(failed_sends(&first), 0, "{}", first.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_before_it_could_send_hands_the_incident_over() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let mut leader = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    leader.wait_leading(LONG);
    let standby = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    standby.wait_ready(LONG);
    assert!(!standby.is_leading(), "{}", standby.log());

    let id = "failover@delivery";
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        id,
        ONE_SECOND_RESTART,
        &["--stderr", "segfault in sink"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    for w in [&leader, &standby] {
        wait_until_sync("both watchers to see the agent up", LONG, || {
            (log_lines(w, id, " up ") > 0).then_some(())
        });
    }

    smtp.stop();
    kill_pid(live.child_pid);
    let record = wait_incident(&c, id, "crashed", |i| cause_kind(i) == "crashed").await;
    assert!(!has(&record, "notified_at"), "{record}");
    wait_until_sync("the leader to fail a send", LONG, || {
        (failed_sends(&leader) > 0).then_some(())
    });
    let record = incident(&c, id).await.expect("the incident stays");
    assert!(!has(&record, "notified_at"), "nothing was sent: {record}");
    leader.kill();

    standby.wait_leading(LONG);
    wd.wait_live(&c, 2, LONG).await;
    smtp.start_again();
    let mails = wait_mails(&smtp, "the crash and the recovery", |m| {
        count(m, id, "CRASHED") >= 1 && count(m, id, "RECOVERED") >= 1
    })
    .await;
    let crash = mails
        .iter()
        .find(|m| m.subject.contains(id) && m.subject.contains("CRASHED"))
        .expect("found above");
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    assert!(crash.body.contains("segfault in sink"), "{}", crash.body);
    wait_until(&format!("the incident of {id} to close"), LONG, || async {
        (!zk::exists(&c, &format!("/zkwatchdog/incidents/{id}")).await).then_some(())
    })
    .await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = smtp.messages();
    assert_eq!(count(&mails, id, "CRASHED"), 1, "{:?}", subjects(&mails));
    assert_eq!(count(&mails, id, "RECOVERED"), 1, "{:?}", subjects(&mails));
    assert!((1..=2).contains(&mails.len()), "{:?}", subjects(&mails));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_outage_delays_the_alert_without_dropping_it() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), GROUP_WAIT, Some(&smtp), "");
    watcher.wait_leading(LONG);
    let id = "smtp-outage@delivery";
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        id,
        STAYS_DOWN,
        &["--stderr", "connection reset by kafka"],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    wait_until_sync("the watcher to see the agent up", LONG, || {
        (log_lines(&watcher, id, " up ") > 0).then_some(())
    });

    smtp.stop();
    kill_pid(live.child_pid);
    let record = wait_incident(&c, id, "crashed", |i| cause_kind(i) == "crashed").await;
    assert!(!has(&record, "notified_at"), "{record}");
    // The server stays down a while: the watcher keeps retrying and the incident stays pending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let record = incident(&c, id).await.expect("the incident stays");
    assert!(!has(&record, "notified_at"), "nothing was sent: {record}");
    assert!(
        failed_sends(&watcher) >= 2,
        "retried with backoff:\n{}",
        watcher.log()
    );
    assert_eq!(
        wd.marker(&c).await.map(|m| m.state),
        Some(AgentState::Backoff)
    );

    smtp.start_again();
    let mails = smtp.wait_for_messages(1, LONG).await;
    let crash = &mails[0];
    assert!(
        crash.subject.contains("CRASHED") && crash.subject.contains(id),
        "{:?}",
        subjects(&mails)
    );
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    assert!(
        crash.body.contains("connection reset by kafka"),
        "{}",
        crash.body
    );
    let record = wait_incident(&c, id, "notified", |i| has(i, "notified_at")).await;
    assert!(
        has(&record["deliveries"]["email"], "opened"),
        "delivery recorded: {record}"
    );
    assert!(!has(&record, "resolved_at"), "still down: {record}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{:?}", subjects(&mails));
}
