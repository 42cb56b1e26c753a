//! `zkwatcher` against the registry as it really gets used: a rack of agents lost at once, garbage
//! in znodes, silences, webhooks (generic JSON, signed DingTalk, rate-limited Slack), a ZooKeeper
//! restart under a running watcher, and the `status` / `test-notify` commands.
//!
//! Everything is real: a ZooKeeper server, `zkwatchdog` processes and their children, the
//! `zkwatcher` binary, an SMTP server with STARTTLS and AUTH, HTTP servers for the webhooks. Where
//! a test needs many agents or broken data, it writes the registry nodes itself with the
//! watchdog crate's own records and layout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use zkwatchdog::registry::{
    encode, ensure_dirs, AgentId, AgentKind, AgentState, Health, Layout, Liveness, Marker,
    NodeAcls, Timestamp, DEFAULT_ROOT, RECORD_VERSION,
};
use zkwatchdog_tests::describe;
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::{zkwatcher_cli, WatcherProc};
use zkwatchdog_tests::zk::{self, ZkServer};
use zookeeper_client::{Acls, Client, CreateMode};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

/// A crashed child is restarted after a second: long enough for the watcher to see it down (and
/// conclude CRASHED, not "restarted while unobserved") even on a loaded machine.
const RESTART_AFTER_1S: &str =
    "[restart]\nbackoff-initial = \"1s\"\nbackoff-max = \"1s\"\nbackoff-jitter = 0.0\n";

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

fn layout() -> Layout {
    Layout::new(DEFAULT_ROOT).expect("the default root")
}

fn agent_id(id: &str) -> AgentId {
    AgentId::new(id).expect("a valid agent id")
}

/// A marker as a running watchdog writes it: generation 1, state running, no exit yet.
fn running_marker(id: &str, host: &str, session_id: &str) -> Marker {
    let now = Timestamp::now();
    Marker {
        v: RECORD_VERSION,
        id: id.to_string(),
        name: "flume-agent".to_string(),
        kind: AgentKind::Flume,
        host: host.to_string(),
        command: vec!["flume-ng".into(), "agent".into()],
        labels: BTreeMap::from([("rack".to_string(), "r7".to_string())]),
        version: "0.1.0".to_string(),
        registered_at: now,
        updated_at: now,
        state: AgentState::Running,
        generation: 1,
        restarts: 0,
        last_exit: None,
        session_id: session_id.to_string(),
        conflict: None,
    }
}

/// The liveness node of generation 1 of that marker.
fn liveness(n: u32, session_id: &str) -> Liveness {
    Liveness {
        v: RECORD_VERSION,
        pid: 10_000 + n,
        child_pid: 20_000 + n,
        generation: 1,
        started_at: Timestamp::now(),
        session_id: session_id.to_string(),
        health: Health::unprobed(),
    }
}

async fn create(client: &Client, path: &str, data: &[u8], mode: CreateMode) {
    let options = mode.with_acls(Acls::anyone_all());
    if let Err(e) = client.create(path, data, &options).await {
        panic!("create {path}: {e}");
    }
}

async fn ensure_registry_dirs(client: &Client) {
    let l = layout();
    let dirs = [l.agents_dir(), l.live_dir()];
    if let Err((dir, e)) = ensure_dirs(client, &l, &dirs, &NodeAcls::open()).await {
        panic!("mkdir {dir}: {e}");
    }
}

/// Waits until `n` captured messages satisfy `pred` and returns them (oldest first); on
/// timeout, panics listing the subjects that did arrive.
async fn wait_for_mails(
    smtp: &SmtpServer,
    what: &str,
    n: usize,
    pred: impl Fn(&CapturedMail) -> bool,
) -> Vec<CapturedMail> {
    let start = Instant::now();
    loop {
        let mails = tokio::task::block_in_place(|| smtp.try_messages()).unwrap_or_default();
        let found: Vec<CapturedMail> = mails.iter().filter(|m| pred(m)).cloned().collect();
        if found.len() >= n {
            return found;
        }
        if start.elapsed() >= LONG {
            panic!(
                "timed out after {LONG:?} waiting for {what}; received: {:?}",
                subjects(&mails)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a captured message satisfies `pred` and returns it.
async fn wait_for_mail(
    smtp: &SmtpServer,
    what: &str,
    pred: impl Fn(&CapturedMail) -> bool,
) -> CapturedMail {
    let mut found = wait_for_mails(smtp, what, 1, pred).await;
    found.remove(0)
}

/// Waits until the watcher's log has a line containing every one of `needles`.
fn wait_log_line(watcher: &WatcherProc, what: &str, needles: &[&str]) {
    wait_until_sync(what, LONG, || {
        watcher
            .log()
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
            .then_some(())
    });
}

/// Waits until agent `id` has no incident record (none opened, or the last one closed), so that
/// a crash afterwards opens a new incident rather than folding into an open one.
async fn wait_no_incident(client: &Client, id: &str) {
    let path = layout().incident(&agent_id(id));
    wait_until(&format!("{path} to be closed"), LONG, || async {
        (!zk::exists(client, &path).await).then_some(())
    })
    .await;
}

/// `(connections, new sessions)` the watcher's ZooKeeper client has logged so far.
fn zk_connections(watcher: &WatcherProc) -> (usize, usize) {
    let log = watcher.log();
    (
        log.matches("succeeds to establish session").count(),
        log.matches("new session established").count(),
    )
}

/// After a ZooKeeper restart: waits until the watcher's client has connected again (`before`:
/// [`zk_connections`] before the restart) and, if its session expired meanwhile and it had to
/// open a new one, until it leads again.
fn wait_watcher_back(watcher: &WatcherProc, before: (usize, usize)) {
    wait_until_sync("the watcher to be back after the restart", LONG, || {
        let log = watcher.log();
        let connections = log.matches("succeeds to establish session").count();
        let sessions = log.matches("new session established").count();
        if connections <= before.0 {
            return None;
        }
        if sessions <= before.1 {
            return Some(());
        }
        let at = log.rfind("new session established")?;
        log[at..].contains("leading: this watcher").then_some(())
    });
}

/// A ZooKeeper session on its own thread and runtime, so that it can be cut off the way a host
/// that loses power is: the TCP connection goes away without a close request, and ZooKeeper
/// expires the session (and deletes its ephemeral nodes, all at once) after the session timeout.
struct DoomedSession {
    cut: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DoomedSession {
    /// Connects (session timeout 2 s, detached: dropping the client does not close the session)
    /// and runs `setup` with the client; returns once `setup` is done.
    fn open<F, Fut>(connect: &str, setup: F) -> Self
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let connect = connect.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the doomed session");
            let client = runtime.block_on(async move {
                let client = tokio::time::timeout(
                    LONG,
                    Client::connector()
                        .with_session_timeout(Duration::from_secs(2))
                        .with_detached()
                        .connect(&connect),
                )
                .await
                .expect("connect in time")
                .expect("connect to zookeeper");
                setup(client.clone()).await;
                let _ = ready_tx.send(());
                // Keep the session alive (pings) until the cut.
                let _ = cut_rx.await;
                client
            });
            // Drop every task of this runtime, the session's connection included, without a
            // close request; only then the client handle.
            runtime.shutdown_background();
            drop(client);
        });
        let ready = wait_until_sync("the doomed session's setup", LONG, || {
            match ready_rx.try_recv() {
                Ok(()) => Some(true),
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(false),
            }
        });
        assert!(ready, "the doomed session's setup failed (see above)");
        DoomedSession {
            cut: Some(cut_tx),
            thread: Some(thread),
        }
    }

    /// Cuts the connection; the session expires after its timeout.
    fn cut(&mut self) {
        if let Some(cut) = self.cut.take() {
            let _ = cut.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DoomedSession {
    fn drop(&mut self) {
        self.cut();
    }
}

// ------------------------------------------------------------------------------------------
// 1. A rack goes down: 50 agents lost at once are one email.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_lost_at_once_are_one_grouped_email_listing_all() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"3s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);

    let ids: Vec<String> = (0..50).map(|n| format!("rack7-{n:02}@host-r7")).collect();
    let setup_ids = ids.clone();
    let mut rack = DoomedSession::open(&zk.connect_string(), move |c| async move {
        ensure_registry_dirs(&c).await;
        let session = zkwatchdog::registry::session_hex(c.session_id().0);
        let l = layout();
        for (n, id) in setup_ids.iter().enumerate() {
            let aid = agent_id(id);
            let marker = running_marker(id, "host-r7", &session);
            create(
                &c,
                &l.marker(&aid),
                &encode(&marker),
                CreateMode::Persistent,
            )
            .await;
            let live = liveness(n as u32, &session);
            create(&c, &l.live(&aid), &encode(&live), CreateMode::Ephemeral).await;
        }
    });

    // The watcher has seen every agent up before the rack goes down.
    wait_until_sync("the watcher to see all 50 agents up", LONG, || {
        let log = watcher.log();
        let up: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" up") && l.contains("generation=1"))
            .collect();
        ids.iter()
            .all(|id| up.iter().any(|l| l.contains(id.as_str())))
            .then_some(())
    });
    assert!(smtp.messages().is_empty(), "nothing to report yet");

    let cut_at = Instant::now();
    rack.cut();
    let mails = smtp.wait_for_messages(1, LONG).await;
    let detected = cut_at.elapsed();
    let mail = &mails[0];
    assert!(
        mail.subject.contains("50 agents") && mail.subject.contains("50 LOST"),
        "{:?}",
        subjects(&mails)
    );
    for id in &ids {
        assert!(
            mail.body.contains(id.as_str()),
            "{id} missing from the body:\n{}",
            mail.body
        );
    }
    // Nothing else follows: the whole rack was one message (wait past another group-wait).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = smtp.messages();
    assert_eq!(all.len(), 1, "{:?}", subjects(&all));
    // Every agent has its incident, notified.
    let c = client(&zk.connect_string()).await;
    for id in &ids {
        let path = layout().incident(&agent_id(id));
        let incident = zk::get_json(&c, &path)
            .await
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(incident["cause"]["kind"], "lost", "{incident}");
        assert!(incident["notified_at"].is_string(), "{incident}");
    }
    eprintln!("50 lost agents reported {detected:?} after the cut");
}

// ------------------------------------------------------------------------------------------
// 2. Garbage in the registry is reported and skipped.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_nodes_are_named_in_the_log_and_do_not_stop_the_watcher() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let binary: Vec<u8> = (0..2048u32).map(|i| (i * 37 % 256) as u8).collect();
    // Before the watcher starts (found by its first reconciliation)...
    let not_json = l.marker(&agent_id("garbage-text@test"));
    create(&c, &not_json, b"not json", CreateMode::Persistent).await;
    let bare = l.marker(&agent_id("garbage-bare@test"));
    create(&c, &bare, br#"{"v":1}"#, CreateMode::Persistent).await;
    let binary_live = l.live(&agent_id("garbage-binary@test"));
    create(&c, &binary_live, &binary, CreateMode::Ephemeral).await;

    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    // ... and while it runs (seen through the watch).
    let late = l.marker(&agent_id("garbage-late@test"));
    create(&c, &late, &binary, CreateMode::Persistent).await;
    for path in [&not_json, &bare, &binary_live, &late] {
        wait_log_line(
            &watcher,
            &format!("the watcher to report {path}"),
            &["not a valid record", path.as_str()],
        );
    }

    // It keeps working: a real crash afterwards is reported.
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        "sound@test",
        RESTART_AFTER_1S,
        &["--stderr", "sound agent stderr line"],
    );
    let first = wd.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let crash = wait_for_mail(&smtp, "the crash email of sound@test", |m| {
        m.subject.contains("CRASHED") && m.subject.contains("sound@test")
    })
    .await;
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    assert!(
        crash.body.contains("sound agent stderr line"),
        "{}",
        crash.body
    );
    wd.wait_live(&c, 2, LONG).await;
    let all = smtp.messages();
    assert!(
        all.iter().all(|m| !m.subject.contains("garbage")),
        "garbage is never reported as an agent: {:?}",
        subjects(&all)
    );
    assert!(
        watcher.is_leading() && !watcher.log().contains("panicked"),
        "{}",
        watcher.log()
    );

    // `status` still lists the good agent, names the bad nodes, and succeeds.
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
    assert!(stderr.contains(&not_json), "{}", describe(&out));
    let out = zkwatcher_cli(&["status", "--json", "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", describe(&out)));
    let rows = rows.as_array().expect("an array of rows");
    let sound = rows
        .iter()
        .find(|r| r["id"] == "sound@test")
        .unwrap_or_else(|| panic!("no sound@test in {rows:?}"));
    assert_eq!(sound["state"], "running", "{sound}");
}

// ------------------------------------------------------------------------------------------
// 3. Silences mute notifications (incidents are still recorded), and expire.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_mutes_a_crash_until_it_expires_and_unsilence_removes_it() {
    const ID: &str = "muted@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    // A 4 s restart delay keeps each incident open long enough to be looked at; the 12 s
    // silence outlasts it with room for a loaded machine (the crash must be concluded while the
    // silence holds, and the recovery too).
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        ID,
        "[restart]\nbackoff-initial = \"4s\"\nbackoff-max = \"4s\"\nbackoff-jitter = 0.0\nstable-after = \"60s\"\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    let hosts = zk.connect_string();
    let l = layout();
    let silence_path = l.silence(&agent_id(ID));
    let incident_path = l.incident(&agent_id(ID));

    let out = zkwatcher_cli(&[
        "silence",
        ID,
        "--for",
        "12s",
        "--reason",
        "maintenance",
        "--zk",
        &hosts,
    ])
    .await;
    let silenced_at = Instant::now();
    assert!(out.status.success(), "{}", describe(&out));
    let silence = zk::get_json(&c, &silence_path)
        .await
        .unwrap_or_else(|| panic!("{silence_path} missing after `silence`"));
    assert_eq!(silence["reason"], "maintenance", "{silence}");
    assert_eq!(silence["id"], ID, "{silence}");

    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    // The incident is recorded, muted.
    let incident = wait_until("the incident to be recorded as silenced", LONG, || async {
        zk::get_json(&c, &incident_path)
            .await
            .filter(|i| i["silenced"].is_string())
    })
    .await;
    assert_eq!(incident["cause"]["kind"], "crashed", "{incident}");
    assert!(
        incident["silenced"]
            .as_str()
            .is_some_and(|s| s.contains("maintenance")),
        "{incident}"
    );
    assert!(incident["notified_at"].is_null(), "{incident}");
    // Nothing is sent: not while the silence lasts, not after it expired (the muted incident
    // stays muted), not for the recovery.
    let window_end = silenced_at + Duration::from_millis(13_500);
    while Instant::now() < window_end {
        let mails = smtp.messages();
        assert!(mails.is_empty(), "muted, yet: {:?}", subjects(&mails));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The child came back, which closed the muted incident.
    wd.wait_live(&c, 2, LONG).await;
    wait_until("the muted incident to be closed", LONG, || async {
        (!zk::exists(&c, &incident_path).await).then_some(())
    })
    .await;
    assert!(
        smtp.messages().is_empty(),
        "{:?}",
        subjects(&smtp.messages())
    );

    // The silence has expired: the next crash is sent.
    let second = wd.liveness(&c).await.expect("generation 2 is live");
    kill(Pid::from_raw(second.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let mail = wait_for_mail(&smtp, "the crash email after the silence", |m| {
        m.subject.contains(ID)
    })
    .await;
    assert!(mail.subject.contains("CRASHED"), "{}", mail.subject);
    assert!(mail.subject.contains("SIGKILL"), "{}", mail.subject);

    // `unsilence` removes the node.
    let out = zkwatcher_cli(&["silence", ID, "--for", "1h", "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(zk::exists(&c, &silence_path).await);
    let out = zkwatcher_cli(&["unsilence", ID, "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !zk::exists(&c, &silence_path).await,
        "{silence_path} still there"
    );
}

// ------------------------------------------------------------------------------------------
// 4. Webhooks: generic JSON, signed DingTalk, Slack with a 429.
// ------------------------------------------------------------------------------------------

/// `base64(HmacSHA256(key = secret, msg = timestamp + "\n" + secret))`, computed here
/// independently of the watcher's code.
fn dingtalk_sign(secret: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

async fn wait_requests(server: &MockServer, what: &str, n: usize) -> Vec<Request> {
    wait_until(what, LONG, || async {
        let got = requests(server).await;
        (got.len() >= n).then_some(got)
    })
    .await
}

fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or_else(|e| {
        panic!(
            "request body is not JSON ({e}): {}",
            String::from_utf8_lossy(&request.body)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_receive_generic_json_signed_dingtalk_and_slack_after_a_429() {
    const ID: &str = "hooked@test";
    const SECRET: &str = "SECd1ngtalk+test/secret=";
    let zk = ZkServer::start();

    let generic = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/generic"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&generic)
        .await;
    let dingtalk = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/robot/send"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"})),
        )
        .mount(&dingtalk)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/xyz"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_string("rate_limited"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/services/T0/B0/xyz"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(2)
        .mount(&slack)
        .await;

    let secrets = tempfile::Builder::new()
        .prefix("zkwatchdog-secrets-")
        .tempdir()
        .expect("a temporary directory");
    let secret_file = secrets.path().join("dingtalk-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret file");
    let tables = format!(
        "[[webhook]]\nkind = \"generic\"\nurl = \"{}/generic\"\n\n\
         [[webhook]]\nkind = \"dingtalk\"\nurl = \"{}/robot/send?access_token=tok123\"\nsecret-file = {:?}\n\n\
         [[webhook]]\nkind = \"slack\"\nurl = \"{}/services/T0/B0/xyz\"\n",
        generic.uri(),
        dingtalk.uri(),
        secret_file.display().to_string(),
        slack.uri()
    );
    // Webhooks only, no email.
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", None, &tables);
    watcher.wait_leading(LONG);
    // The child stays down after its crash (long backoff): one incident, one message per hook.
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        ID,
        "[restart]\nbackoff-initial = \"60s\"\nbackoff-max = \"60s\"\n",
        &["--stderr", "hook stderr line"],
    );
    let c = client(&zk.connect_string()).await;
    let first = wd.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");

    // Generic: our JSON document.
    let got = wait_requests(&generic, "the generic webhook", 1).await;
    let body = json_body(&got[0]);
    assert_eq!(body["event"], "incidents", "{body}");
    assert_eq!(body["items"][0]["agent"], ID, "{body}");
    let cause = &body["items"][0]["cause"];
    assert_eq!(cause["kind"], "crashed", "{body}");
    assert_eq!(cause["generation"], 1, "{body}");
    assert_eq!(cause["exit"]["signal"], "SIGKILL", "{body}");
    assert!(
        body["subject"].as_str().is_some_and(|s| s.contains(ID)),
        "{body}"
    );

    // DingTalk: markdown, signed with the secret; the signature is recomputed here.
    let got = wait_requests(&dingtalk, "the dingtalk webhook", 1).await;
    let request = &got[0];
    let body = json_body(request);
    assert_eq!(body["msgtype"], "markdown", "{body}");
    assert!(
        body["markdown"]["title"]
            .as_str()
            .is_some_and(|t| t.contains(ID)),
        "{body}"
    );
    assert!(
        body["markdown"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(ID) && t.contains("SIGKILL")),
        "{body}"
    );
    let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("access_token").map(String::as_str),
        Some("tok123"),
        "{}",
        request.url
    );
    let timestamp = query
        .get("timestamp")
        .unwrap_or_else(|| panic!("no timestamp in {}", request.url));
    let ms: u64 = timestamp.parse().expect("timestamp in milliseconds");
    let now_ms = Timestamp::now().unix_ms();
    assert!(
        ms <= now_ms && now_ms - ms < 60_000,
        "timestamp {ms} is not a recent time in ms (now {now_ms})"
    );
    let sign = query
        .get("sign")
        .unwrap_or_else(|| panic!("no sign in {}", request.url));
    assert_eq!(
        sign,
        &dingtalk_sign(SECRET, timestamp),
        "signature of {}",
        request.url
    );
    assert!(
        !watcher.log().contains(SECRET),
        "the secret is never logged"
    );

    // Slack: refused once with 429 + Retry-After: 1, then accepted.
    let got = wait_requests(&slack, "the slack webhook, twice", 2).await;
    let retried = json_body(&got[1]);
    let text = retried["text"].as_str().unwrap_or_default();
    assert!(text.contains(ID) && text.contains("CRASHED"), "{retried}");
    let refused = json_body(&got[0]);
    let first_line = |v: &Value| {
        v["text"]
            .as_str()
            .and_then(|t| t.lines().next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        first_line(&refused),
        first_line(&retried),
        "the same message is retried"
    );
    wait_log_line(
        &watcher,
        "the watcher to log the slack rate limit",
        &["rate limited (HTTP 429)", "retry_in=1s"],
    );

    // And nothing more: exactly one message accepted per hook.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(requests(&generic).await.len(), 1, "generic");
    assert_eq!(requests(&dingtalk).await.len(), 1, "dingtalk");
    assert_eq!(
        requests(&slack).await.len(),
        2,
        "slack: one 429, one accepted"
    );
    let incident = zk::get_json(&c, &layout().incident(&agent_id(ID)))
        .await
        .expect("the incident is open");
    let deliveries = incident["deliveries"]
        .as_object()
        .unwrap_or_else(|| panic!("no deliveries in {incident}"));
    assert_eq!(deliveries.len(), 3, "{incident}");
    assert!(
        deliveries.values().all(|d| d["opened"].is_string()),
        "{incident}"
    );
}

// ------------------------------------------------------------------------------------------
// 5. A ZooKeeper restart under a running watcher.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_a_zookeeper_restart_are_still_seen() {
    const ID: &str = "zkbounce@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let wd = WatchdogProc::start(&zk.connect_string(), ID, RESTART_AFTER_1S, &[]);
    {
        let c = client(&zk.connect_string()).await;
        wd.wait_live(&c, 1, LONG).await;
        zk::close(c).await;
    }

    let before = zk_connections(&watcher);
    tokio::task::block_in_place(|| zk.restart());
    // The watcher comes back: same session (watch re-added), or, if the restart outlasted the
    // session timeout (a loaded machine), a new one; then it must lead again.
    wait_watcher_back(&watcher, before);

    // The watchdog is back too (so that the crash below is published as it happens, not folded
    // into one catch-up write).
    wait_until_sync("the watchdog to reconnect", LONG, || {
        (wd.log().matches("connected to zookeeper").count() >= 2).then_some(())
    });
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    // Wait until the watcher is back on its feet (watch re-added, registry reconciled): it
    // reports a bad node written now. The node's id sorts after the agent's, so if the
    // reconciliation (rather than the watch) found it, the agent was reconciled before the
    // crash below, and only the watch can tell the watcher about that crash.
    let probe = layout().marker(&agent_id("zz-restart-probe"));
    create(&c, &probe, b"not json", CreateMode::Persistent).await;
    wait_log_line(
        &watcher,
        "the watcher to see a node written after the restart",
        &["not a valid record", probe.as_str()],
    );
    // Whatever the restart itself caused (a LOST and RECOVERED if the watchdog's session
    // expired) is not the point: start from a clean slate.
    wait_no_incident(&c, ID).await;
    let before = smtp.messages().len();
    kill(Pid::from_raw(live.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let crash = wait_for_mail(&smtp, "the crash email after the restart", |m| {
        m.subject.contains("CRASHED") && m.subject.contains(ID)
    })
    .await;
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    let all = smtp.messages();
    assert!(all.len() > before, "{:?}", subjects(&all));
}

/// Same, but ZooKeeper goes away while the watcher is busy: a hundred agents' health probes have
/// just reported at once (one transaction, a hundred watch events queued) when the server
/// restarts. The watcher must still notice that it was disconnected, re-add its watch and
/// reconcile, so that a crash right after the restart is reported at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_a_zookeeper_restart_during_a_burst_of_updates_are_still_seen() {
    const ID: &str = "zkburst@test";
    const FLEET: usize = 100;
    const CYCLES: u64 = 5;
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let wd = WatchdogProc::start(&zk.connect_string(), ID, RESTART_AFTER_1S, &[]);

    // The fleet's session outlives the restart by far (30 s timeout).
    let fleet =
        zk::client_with_session_timeout(&zk.connect_string(), Duration::from_secs(30)).await;
    ensure_registry_dirs(&fleet).await;
    let session = zkwatchdog::registry::session_hex(fleet.session_id().0);
    let l = layout();
    let ids: Vec<AgentId> = (0..FLEET)
        .map(|n| agent_id(&format!("probed-{n:03}@host-p")))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let marker = running_marker(id.as_str(), "host-p", &session);
        create(
            &fleet,
            &l.marker(id),
            &encode(&marker),
            CreateMode::Persistent,
        )
        .await;
        let live = liveness(n as u32, &session);
        create(&fleet, &l.live(id), &encode(&live), CreateMode::Ephemeral).await;
    }
    wd.wait_live(&fleet, 1, LONG).await;
    wait_until_sync("the watcher to see the whole fleet up", LONG, || {
        let log = watcher.log();
        let up: Vec<&str> = log.lines().filter(|l| l.contains(" up")).collect();
        ids.iter()
            .chain(std::iter::once(&agent_id(ID)))
            .all(|id| up.iter().any(|l| l.contains(id.as_str())))
            .then_some(())
    });

    // Every probe reports at once, then ZooKeeper restarts; then the agent crashes. Whether the
    // restart catches the watcher with events still queued is up to timing (and to the random
    // choice of its event loop), so the scene is played several times.
    for cycle in 1..=CYCLES {
        let before = wd.log().matches("connected to zookeeper").count();
        let watcher_before = zk_connections(&watcher);
        let started = Instant::now();
        loop {
            let mut burst = fleet.new_multi_writer();
            for (n, id) in ids.iter().enumerate() {
                let mut live = liveness(n as u32, &session);
                live.health.checked_at = Some(Timestamp::now());
                burst
                    .add_set_data(&l.live(id), &encode(&live), None)
                    .expect("queue a health update");
            }
            match burst.commit().await {
                Ok(_) => break,
                // The fleet's client may still be reconnecting after the previous restart.
                Err(e) if started.elapsed() < LONG => {
                    eprintln!("burst #{cycle}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the burst of health updates: {e}"),
            }
        }
        tokio::task::block_in_place(|| zk.restart());
        wait_until_sync("the watchdog to reconnect", LONG, || {
            (wd.log().matches("connected to zookeeper").count() > before).then_some(())
        });
        wait_watcher_back(&watcher, watcher_before);

        let c = client(&zk.connect_string()).await;
        let live = wd.wait_live(&c, cycle, LONG).await;
        wait_no_incident(&c, ID).await;
        kill(Pid::from_raw(live.child_pid as i32), Signal::SIGKILL).expect("kill the child");
        let crashes = wait_for_mails(
            &smtp,
            &format!(
                "crash email #{cycle}, after restart #{cycle} during a burst (the watcher must \
                 notice the disconnection and re-add its watch)"
            ),
            cycle as usize,
            |m| m.subject.contains("CRASHED") && m.subject.contains(ID),
        )
        .await;
        assert!(
            crashes.iter().all(|m| m.subject.contains("SIGKILL")),
            "{:?}",
            subjects(&crashes)
        );
        // Back up, and the recovery told: the incident is closed before the next round.
        wd.wait_live(&c, cycle + 1, LONG).await;
        wait_no_incident(&c, ID).await;
        zk::close(c).await;
    }
    let all = smtp.messages();
    assert!(
        all.iter().all(|m| !m.subject.contains("probed-")),
        "the fleet never went down: {:?}",
        subjects(&all)
    );
}

/// ZooKeeper stays down longer than the watcher's session timeout: the watcher's session
/// expires and it opens a new one, while the server, back up, still keeps the old session (and
/// its election node) until that session times out there too. An agent that crashes and comes
/// back right then must still be reported: the watcher is the only one, nobody else can.
///
/// The agent here is written by the test (the registry records a watchdog writes, in a session
/// that outlives the outage), so that the crash happens exactly when the watcher is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_watchers_session_expired_is_still_reported() {
    const ID: &str = "zkexpiry@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);

    let agent =
        zk::client_with_session_timeout(&zk.connect_string(), Duration::from_secs(30)).await;
    ensure_registry_dirs(&agent).await;
    let session = zkwatchdog::registry::session_hex(agent.session_id().0);
    let l = layout();
    let id = agent_id(ID);
    let mut marker = running_marker(ID, "host-x", &session);
    create(
        &agent,
        &l.marker(&id),
        &encode(&marker),
        CreateMode::Persistent,
    )
    .await;
    create(
        &agent,
        &l.live(&id),
        &encode(&liveness(0, &session)),
        CreateMode::Ephemeral,
    )
    .await;
    wait_log_line(&watcher, "the watcher to see the agent up", &[" up", ID]);

    // Down until the watcher's client gives its session up, then back.
    tokio::task::block_in_place(|| zk.stop());
    wait_log_line(
        &watcher,
        "the watcher's session to expire",
        &["zookeeper session ended"],
    );
    let sessions = zk_connections(&watcher).1;
    tokio::task::block_in_place(|| zk.start_again());
    wait_until_sync("the watcher to be back with a new session", LONG, || {
        let log = watcher.log();
        if log.matches("new session established").count() <= sessions {
            return None;
        }
        let at = log.rfind("new session established")?;
        let after = &log[at..];
        (after.contains("leading: this watcher") || after.contains("standing by")).then_some(())
    });

    // The child is killed; the watchdog records the exit, then removes the liveness node...
    let now = Timestamp::now();
    marker.state = AgentState::Restarting;
    marker.updated_at = now;
    marker.last_exit = Some(zkwatchdog::registry::LastExit {
        at: now,
        generation: 1,
        code: None,
        signal: Some("SIGKILL".to_string()),
        uptime_ms: 4000,
        stderr_tail: vec!["killed right after the outage".to_string()],
        probe_restart: None,
        reload: false,
        daemonized: None,
    });
    agent
        .set_data(&l.marker(&id), &encode(&marker), None)
        .await
        .expect("record the exit");
    agent
        .delete(&l.live(&id), None)
        .await
        .expect("remove the liveness node");
    // ... and starts generation 2 a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    marker.state = AgentState::Running;
    marker.generation = 2;
    marker.restarts = 1;
    marker.updated_at = Timestamp::now();
    agent
        .set_data(&l.marker(&id), &encode(&marker), None)
        .await
        .expect("record generation 2");
    let mut live = liveness(0, &session);
    live.generation = 2;
    live.started_at = Timestamp::now();
    create(&agent, &l.live(&id), &encode(&live), CreateMode::Ephemeral).await;

    let mail = wait_for_mail(
        &smtp,
        "the crash email (the watcher must not wait behind its own expired session's election \
         node, nor forget what it saw meanwhile)",
        |m| m.subject.contains(ID),
    )
    .await;
    assert!(mail.subject.contains("CRASHED"), "{}", mail.subject);
    assert!(mail.subject.contains("SIGKILL"), "{}", mail.subject);
}

/// Two watchers; the leader is SIGKILLed. Until ZooKeeper expires its session (2 s), nobody
/// leads; an agent that crashes and restarts in that window must still be reported by the new
/// leader ("no incident is lost on failover"): the standby watched it happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_watcher_failover_is_reported_by_the_new_leader() {
    const ID: &str = "failover@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let mut first =
        WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    first.wait_leading(LONG);
    let second = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    second.wait_ready(LONG);
    assert!(!second.is_leading(), "{}", second.log());
    let wd = WatchdogProc::start(
        &zk.connect_string(),
        ID,
        "[restart]\nbackoff-initial = \"300ms\"\nbackoff-max = \"300ms\"\nbackoff-jitter = 0.0\n",
        &[],
    );
    let c = client(&zk.connect_string()).await;
    let live = wd.wait_live(&c, 1, LONG).await;
    wait_log_line(&second, "the standby to see the agent up", &[" up", ID]);

    first.kill();
    kill(Pid::from_raw(live.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&c, 2, LONG).await;
    assert!(
        !second.is_leading(),
        "the crash and the restart happened before the standby took over"
    );
    second.wait_leading(LONG);
    let mail = wait_for_mail(&smtp, "the crash email from the new leader", |m| {
        m.subject.contains(ID)
    })
    .await;
    assert!(mail.subject.contains("CRASHED"), "{}", mail.subject);
    assert!(mail.subject.contains("SIGKILL"), "{}", mail.subject);
}

/// Sends are started after every registry event, not only when the watcher's timer wins: a
/// steady stream of updates (a large fleet's health changing) must not hold back an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_mailed_while_the_registry_is_flooded_with_updates() {
    const ID: &str = "flooded@test";
    const WRITERS: usize = 8;
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let noisy = agent_id("noisy@test");
    let marker = encode(&running_marker(noisy.as_str(), "rack-host", "0x1"));
    create(&c, &l.marker(&noisy), &marker, CreateMode::Persistent).await;
    let live = encode(&liveness(1, "0x1"));
    create(&c, &l.live(&noisy), &live, CreateMode::Persistent).await;
    let wd = WatchdogProc::start(&zk.connect_string(), ID, RESTART_AFTER_1S, &[]);
    let child = wd.wait_live(&c, 1, LONG).await;

    // Writers rewrite the noisy agent's liveness node as fast as ZooKeeper takes it; every write
    // is an event the watcher reads the agent for.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood_until = Instant::now() + Duration::from_secs(90);
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (c, stop, written) = (c.clone(), stop.clone(), written.clone());
        let (path, data) = (l.live(&noisy), live.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < flood_until {
                if c.set_data(&path, &data, None).await.is_ok() {
                    written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    wait_until("the flood to start", LONG, || async {
        (written.load(std::sync::atomic::Ordering::Relaxed) >= 500).then_some(())
    })
    .await;
    let started = (
        Instant::now(),
        written.load(std::sync::atomic::Ordering::Relaxed),
    );
    kill(Pid::from_raw(child.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let mail = wait_for_mail(&smtp, "the crash email during the flood", |m| {
        m.subject.contains(ID)
    })
    .await;
    let flooding = !stop.swap(true, std::sync::atomic::Ordering::Relaxed);
    let rate = (written.load(std::sync::atomic::Ordering::Relaxed) - started.1) as f64
        / started.0.elapsed().as_secs_f64();
    for w in writers {
        w.await.expect("a writer task");
    }
    assert!(flooding, "the flood was still running when the email came");
    assert!(mail.subject.contains("CRASHED"), "{}", mail.subject);
    eprintln!("registry writes during the flood: {rate:.0}/s");
}

// ------------------------------------------------------------------------------------------
// 6. `status` and `test-notify`.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_running_and_fatal_agents_and_test_notify_sends_a_test_email() {
    const UP: &str = "status-up@test";
    const DEAD: &str = "status-fatal@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let up = WatchdogProc::start(&zk.connect_string(), UP, RESTART_AFTER_1S, &[]);
    let mut dead = WatchdogProc::start(
        &zk.connect_string(),
        DEAD,
        "[restart]\npolicy = \"never\"\n",
        &["--stderr", "fatal agent stderr"],
    );
    let c = client(&zk.connect_string()).await;
    up.wait_live(&c, 1, LONG).await;
    let doomed = dead.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(doomed.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let status = dead.wait_exit(LONG);
    assert!(!status.success(), "a give-up exits non-zero: {status}");
    let marker = dead.marker(&c).await.expect("the marker stays");
    assert_eq!(marker.state, AgentState::Fatal);
    let fatal_mail = wait_for_mail(&smtp, "the FATAL email", |m| m.subject.contains(DEAD)).await;
    assert!(
        fatal_mail.subject.contains("FATAL"),
        "{}",
        fatal_mail.subject
    );

    let hosts = zk.connect_string();
    let out = zkwatcher_cli(&["status", "--json", "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", describe(&out)));
    let rows = rows.as_array().expect("an array of rows");
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {rows:?}"))
            .clone()
    };
    let up_row = row(UP);
    assert_eq!(up_row["state"], "running", "{up_row}");
    assert_eq!(up_row["generation"], 1, "{up_row}");
    assert!(up_row["pid"].is_u64(), "{up_row}");
    let dead_row = row(DEAD);
    assert_eq!(dead_row["state"], "fatal", "{dead_row}");
    assert!(
        dead_row["last_exit"]
            .as_str()
            .is_some_and(|e| e.contains("SIGKILL")),
        "{dead_row}"
    );
    assert_eq!(rows.len(), 2, "{rows:?}");

    let out = zkwatcher_cli(&["status", "--zk", &hosts]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"))
            .to_string()
    };
    assert!(line(UP).contains("running"), "{table}");
    assert!(line(DEAD).contains("fatal"), "{table}");
    assert!(table.starts_with("ID"), "a header first:\n{table}");

    // test-notify with the watcher's own config: one TEST email.
    let config = watcher.config_path().display().to_string();
    let out = zkwatcher_cli(&["test-notify", "--config", &config]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("email: accepted"),
        "{}",
        describe(&out)
    );
    let test = wait_for_mail(&smtp, "the TEST email", |m| m.subject.contains("TEST")).await;
    assert!(test.tls, "sent over STARTTLS");
    assert_eq!(test.rcpt_tos.len(), 2, "{:?}", test.rcpt_tos);
    let tests = smtp
        .messages()
        .into_iter()
        .filter(|m| m.subject.contains("TEST"))
        .count();
    assert_eq!(tests, 1, "{:?}", subjects(&smtp.messages()));
}
