//! Leadership under faults (issue 12, holes 2, 3, 4 and 8): a take-over interrupted by a
//! connection loss, a frozen leader that thaws after another replica took over, two replicas
//! with the same host name and pid, a crash while no watcher runs, and a leader stopped with a
//! send in flight.
//!
//! Everything is real: a ZooKeeper server (killed by its pid when a test needs a connection
//! loss at a precise moment), `zkwatcher` processes frozen with SIGSTOP past their session
//! timeout, real `zkwatchdog`s and children, an SMTP server; the webhook receiver that holds a
//! send in flight is wiremock.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use zkwatchdog::registry::{
    encode, ensure_dirs, AgentId, AgentState, LastExit, Layout, Marker, NodeAcls, Timestamp,
    DEFAULT_ROOT,
};
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{client, WatchdogProc};
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};
use zookeeper_client::{Acls, Client, CreateMode};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(40);

/// A crashed child is restarted after a second.
const RESTART_AFTER_1S: &str =
    "[restart]\nbackoff-initial = \"1s\"\nbackoff-max = \"1s\"\nbackoff-jitter = 0.0\n";

fn layout() -> Layout {
    Layout::new(DEFAULT_ROOT).expect("the default root")
}

fn agent_id(id: &str) -> AgentId {
    AgentId::new(id).expect("a valid agent id")
}

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

/// A marker whose child (generation 1) crashed and waits out a backoff: down, CRASHED.
fn crashed_marker(id: &str) -> Marker {
    let running = zk::running_marker(id);
    Marker {
        state: AgentState::Backoff,
        last_exit: Some(LastExit {
            at: running.updated_at,
            generation: 1,
            code: Some(3),
            signal: None,
            uptime_ms: 1000,
            stderr_tail: vec!["boom".to_string()],
            probe_restart: None,
            reload: false,
            daemonized: None,
        }),
        ..running
    }
}

async fn ensure_registry_dirs(client: &Client) {
    let l = layout();
    let dirs = [
        l.agents_dir(),
        l.live_dir(),
        l.incidents_dir(),
        l.watchers_dir(),
    ];
    if let Err((dir, e)) = ensure_dirs(client, &l, &dirs, &NodeAcls::open()).await {
        panic!("mkdir {dir}: {e}");
    }
}

async fn create(client: &Client, path: &str, data: &[u8], mode: CreateMode) -> String {
    let options = mode.with_acls(Acls::anyone_all());
    match client.create(path, data, &options).await {
        Ok((_, seq)) if mode == CreateMode::EphemeralSequential => format!("{path}{seq}"),
        Ok(_) => path.to_string(),
        Err(e) => panic!("create {path}: {e}"),
    }
}

async fn get_json(client: &Client, path: &str) -> Option<Value> {
    match client.get_data(path).await {
        Ok((data, _)) => serde_json::from_slice(&data).ok(),
        Err(_) => None,
    }
}

/// Mails whose subject names `id`.
fn mails_about(smtp: &SmtpServer, id: &str) -> Vec<CapturedMail> {
    smtp.try_messages()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subject.contains(id))
        .collect()
}

async fn wait_mails_about(smtp: &SmtpServer, id: &str, n: usize) -> Vec<CapturedMail> {
    wait_until(&format!("{n} mail(s) about {id}"), LONG, || async {
        let found = tokio::task::block_in_place(|| mails_about(smtp, id));
        (found.len() >= n).then_some(found)
    })
    .await
}

/// Waits until the watcher's log, after its `skip`th byte, has a line holding every needle.
fn wait_log_after(watcher: &WatcherProc, skip: usize, what: &str, needles: &[&str]) {
    wait_until_sync(what, LONG, || {
        let log = watcher.log();
        log.get(skip..)?
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
            .then_some(())
    });
}

/// A webhook receiver that accepts every notice after `delay`, and the `[[webhook]]` table
/// pointing at it.
async fn slow_hook(delay: Duration) -> (MockServer, String) {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay))
        .mount(&hook)
        .await;
    let table = format!(
        "[[webhook]]\nkind = \"generic\"\nurl = \"{}/hook\"\n",
        hook.uri()
    );
    (hook, table)
}

/// Writes a crashed marker for `id` and waits until the leading watcher's send of it reached
/// `hook` (it is then in flight: the receiver answers late).
async fn crash_and_wait_for_the_send(
    zk: &ZkServer,
    hook: &MockServer,
    id: &str,
) -> (Client, Layout, AgentId) {
    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let aid = agent_id(id);
    create(
        &c,
        &l.marker(&aid),
        &encode(&crashed_marker(id)),
        CreateMode::Persistent,
    )
    .await;
    wait_until("the send to start", LONG, || async {
        let n = hook.received_requests().await.unwrap_or_default().len();
        (n >= 1).then_some(())
    })
    .await;
    (c, l, aid)
}

/// Stops ZooKeeper while `w`'s send is in flight, and waits until the receiver accepted the send
/// and `w`'s session ended; returns the length of `w`'s log before the stop.
fn outage_across_the_send(zk: &ZkServer, w: &WatcherProc) -> usize {
    let skip = w.log().len();
    tokio::task::block_in_place(|| zk.stop());
    wait_log_after(
        w,
        skip,
        "the send to be accepted",
        &["notification accepted"],
    );
    wait_log_after(w, skip, "the session to end", &["zookeeper session ended"]);
    skip
}

fn freeze(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
}

fn thaw(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGCONT).expect("SIGCONT");
}

/// The pid of the test's own ZooKeeper server (from its pid file).
fn zk_pid(zk: &ZkServer) -> u32 {
    std::fs::read_to_string(zk.dir().join("zk.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        .expect("the ZooKeeper pid file")
}

/// ZooKeeper, the SMTP server, and two watchers mailing it with `top`: A leading, B standing by.
fn leader_and_standby(top: &str) -> (ZkServer, SmtpServer, WatcherProc, WatcherProc) {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let a = WatcherProc::start(&zk.connect_string(), top, Some(&smtp), "");
    a.wait_leading(LONG);
    let b = WatcherProc::start(&zk.connect_string(), top, Some(&smtp), "");
    b.wait_ready(LONG);
    assert!(!b.is_leading(), "{}", b.log());
    (zk, smtp, a, b)
}

/// Registers agent `id` as running (its marker and liveness node written by hand) and waits
/// until both watchers see it up.
async fn running_agent(
    zk: &ZkServer,
    id: &str,
    watchers: [&WatcherProc; 2],
) -> (Client, Layout, AgentId) {
    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let aid = agent_id(id);
    let mut marker = crashed_marker(id);
    marker.state = AgentState::Running;
    marker.last_exit = None;
    create(
        &c,
        &l.marker(&aid),
        &encode(&marker),
        CreateMode::Persistent,
    )
    .await;
    let live = json!({"v": 1, "pid": 1, "child_pid": 2, "generation": 1,
        "started_at": Timestamp::now(), "session_id": "0x1",
        "health": {"status": "unknown", "detail": ""}});
    create(
        &c,
        &l.live(&aid),
        live.to_string().as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    for w in watchers {
        wait_log_after(w, 0, "a watcher to see the agent up", &[" up", id]);
    }
    (c, l, aid)
}

/// Waits for the CRASHED mail about `id` and for its delivery to be recorded in the incident.
async fn crashed_mail_recorded(c: &Client, l: &Layout, id: &AgentId, smtp: &SmtpServer) {
    let first = wait_mails_about(smtp, id.as_str(), 1).await;
    assert!(first[0].subject.contains("CRASHED"), "{}", first[0].subject);
    wait_until("the delivery to be recorded", LONG, || async {
        get_json(c, &l.incident(id))
            .await
            .filter(|i| i["deliveries"]["email"]["opened"].is_string())
    })
    .await;
}

/// Thaws the frozen watcher `a`, waits until it noticed that it no longer leads and 5 s more,
/// and returns every mail about `id` then.
async fn thaw_and_settle(a: &WatcherProc, smtp: &SmtpServer, id: &str) -> Vec<CapturedMail> {
    let skip = a.log().len();
    thaw(a.pid());
    wait_until_sync("A to notice that it no longer leads", LONG, || {
        let log = a.log();
        let after = log.get(skip..)?;
        (after.contains("zookeeper session ended") || after.contains("leaving this session"))
            .then_some(())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = a.log();
    eprintln!(
        "--- A after thawing ---\n{}",
        log.get(skip..).unwrap_or_default()
    );
    tokio::task::block_in_place(|| mails_about(smtp, id))
}

// ------------------------------------------------------------------------------------------
// Hole 3: a frozen leader thaws after another replica took over and sent.
// ------------------------------------------------------------------------------------------

/// Leader A writes a crash's incident and is frozen (SIGSTOP) before `group-wait` lets it send;
/// its session expires, B takes over and sends. When A thaws, its stale book still says the
/// notice is due, and A's timer is long overdue: it must confirm in ZooKeeper that it still
/// leads before anything goes out, so the on-call gets exactly one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_that_thaws_does_not_send_what_the_new_leader_sent() {
    const ID: &str = "frozen-leader@test";
    let (zk, smtp, a, b) = leader_and_standby("group-wait = \"4s\"");
    let (c, l, id) = running_agent(&zk, ID, [&a, &b]).await;

    // The child crashes: exit record first, then the liveness node goes.
    let crashed = crashed_marker(ID);
    c.set_data(&l.marker(&id), &encode(&crashed), None)
        .await
        .expect("record the exit");
    c.delete(&l.live(&id), None)
        .await
        .expect("remove the liveness node");
    wait_until("A to open the incident", LONG, || async {
        zk::exists(&c, &l.incident(&id)).await.then_some(())
    })
    .await;
    freeze(a.pid());
    b.wait_leading(LONG);
    // B sends and records the delivery; then A thaws with its overdue timer.
    crashed_mail_recorded(&c, &l, &id, &smtp).await;
    let all = thaw_and_settle(&a, &smtp, ID).await;
    assert_eq!(
        all.len(),
        1,
        "the thawed stale leader sent again: {:?}\n--- A ---\n{}",
        subjects(&all),
        a.log()
    );
}

/// The window between the confirmation and the message going out. Leader A confirmed that it
/// leads and started its send; the mail server holds the transaction (MAIL waits) while A is
/// frozen past its session timeout. B takes over and sends; the server lets every held MAIL
/// through, A's too. When A thaws, its transaction could go on at once: A must not finish a send
/// whose leadership it can no longer show (it was confirmed before a freeze longer than the
/// session), so the on-call gets exactly one email (chaos #792: a leader frozen 1 ms after it
/// decided a send delivered it 5 s later, after the new leader had).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_in_the_middle_of_a_send_does_not_finish_it_after_thawing() {
    const ID: &str = "frozen-mid-send@test";
    let (zk, smtp, a, b) = leader_and_standby("group-wait = \"500ms\"");
    let (c, l, id) = running_agent(&zk, ID, [&a, &b]).await;

    smtp.hold();
    c.set_data(&l.marker(&id), &encode(&crashed_marker(ID)), None)
        .await
        .expect("record the exit");
    c.delete(&l.live(&id), None)
        .await
        .expect("remove the liveness node");
    wait_until_sync("A's send to be held by the mail server", LONG, || {
        (smtp.held() >= 1).then_some(())
    });
    freeze(a.pid());
    b.wait_leading(LONG);
    smtp.release();
    crashed_mail_recorded(&c, &l, &id, &smtp).await;
    let all = thaw_and_settle(&a, &smtp, ID).await;
    assert_eq!(
        all.len(),
        1,
        "the thawed leader finished its send after the new leader's: {:?}\n--- A ---\n{}",
        subjects(&all),
        a.log()
    );
}

/// Two replicas in two containers on one host can have the same host name and the same pid.
/// Re-joining the election after its session expired, a replica removes its own leftover node;
/// it must never take the other replica's node for its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_the_same_host_and_pid_never_delete_each_others_election_nodes() {
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let w = WatcherProc::start(&zk.connect_string(), "", Some(&smtp), "");
    w.wait_leading(LONG);
    let c = client(&zk.connect_string()).await;
    let dir = layout().watchers_dir();
    let names: Vec<String> = c
        .list_children(&dir)
        .await
        .expect("list the election")
        .into_iter()
        .filter(|n| n.starts_with("n-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let (data, _) = c
        .get_data(&format!("{dir}/{}", names[0]))
        .await
        .expect("the watcher's election node");
    // The other container's replica: same host, same pid, so the same bytes; unless the node
    // carries a per-process token, which differs.
    let mut twin: Value = serde_json::from_slice(&data).expect("JSON");
    let twin_data = match twin.get("token").and_then(Value::as_str) {
        Some(token) => {
            twin["token"] = Value::String(format!("{token}-other"));
            twin.to_string().into_bytes()
        }
        None => data,
    };
    let twin_path = create(
        &c,
        &format!("{dir}/n-"),
        &twin_data,
        CreateMode::EphemeralSequential,
    )
    .await;

    // The watcher's session expires while it is frozen; it then joins again.
    let skip = w.log().len();
    freeze(w.pid());
    tokio::time::sleep(Duration::from_secs(5)).await;
    thaw(w.pid());
    wait_log_after(&w, skip, "the watcher to join again", &["standing by"]);
    assert!(
        zk::exists(&c, &twin_path).await,
        "the watcher deleted the other replica's election node {twin_path}\n{}",
        w.log()
    );
}

// ------------------------------------------------------------------------------------------
// Hole 2: a connection loss while the new leader loads the incidents.
// ------------------------------------------------------------------------------------------

/// Many agents are down and already announced (their incidents carry `notified_at`). The
/// watcher wins the election and starts loading the incidents; ZooKeeper is killed right then
/// (SIGKILL by pid: a connection loss in the middle of the read) and started again within the
/// watcher's session timeout, so the session survives. The take-over must be done again from
/// scratch: no agent announced again, no `notified_at` overwritten.
///
/// The kill is real but its timing is a race won by reading many incidents: the test reports
/// whether the kill landed inside the take-over (the watcher logs the failed take-over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_loss_while_taking_over_neither_re_alerts_nor_overwrites_incidents() {
    const AGENTS: usize = 1500;
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let announced = Timestamp(std::time::SystemTime::now() - Duration::from_secs(600));
    let mut writes = Vec::new();
    for n in 0..AGENTS {
        let idn = format!("down-{n:04}@rack");
        let id = agent_id(&idn);
        let marker = crashed_marker(&idn);
        let incident = json!({
            "v": 1, "id": idn, "opened_at": announced,
            "cause": {"kind": "crashed", "generation": 1, "exit": marker.last_exit,
                      "state": "backoff"},
            "occurrences": 1, "notified_at": announced,
            "deliveries": {"email": {"opened": announced, "last": announced}}
        });
        let (c, l) = (c.clone(), l.clone());
        writes.push(async move {
            let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
            c.create(&l.marker(&id), &encode(&marker), &options)
                .await
                .map(drop)?;
            c.create(&l.incident(&id), incident.to_string().as_bytes(), &options)
                .await
                .map(drop)
        });
        if writes.len() == 200 {
            for r in join_all(std::mem::take(&mut writes)).await {
                r.expect("write the registry");
            }
        }
    }
    for r in join_all(writes).await {
        r.expect("write the registry");
    }
    let first_id = agent_id("down-0000@rack");
    let before = get_json(&c, &l.incident(&first_id))
        .await
        .expect("incident");
    zk::close(c).await;

    let w = WatcherProc::start(
        &zk.connect_string(),
        "group-wait = \"0s\"\nsession-timeout = \"10s\"",
        Some(&smtp),
        "",
    );
    // The moment it leads it loads the incidents: kill ZooKeeper then.
    wait_until_sync("the watcher to win the election", LONG, || {
        w.log()
            .contains("leading: this watcher")
            .then_some(())
            .or_else(|| w.log().contains("taking over").then_some(()))
    });
    let pid = zk_pid(&zk);
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill ZooKeeper");
    let skip = w.log().len();
    tokio::task::block_in_place(|| {
        zk.stop();
        zk.start_again();
    });
    let c = client(&zk.connect_string()).await;
    // Back: it leads after a take-over done again (or, as before the fix, it went on leading
    // with what it had and announced everything again).
    wait_until_sync("the watcher to be back and leading", LONG, || {
        let log = w.log();
        let after = log.get(skip..)?;
        let back = after.contains("reconnected to zookeeper");
        let mails = smtp.try_messages().unwrap_or_default();
        (back && (log.contains("leading: this watcher") || !mails.is_empty())).then_some(())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mails = tokio::task::block_in_place(|| smtp.try_messages()).unwrap_or_default();
    let after = get_json(&c, &l.incident(&first_id))
        .await
        .expect("incident");
    let interrupted = w.log().contains("take-over failed");
    eprintln!("the kill interrupted the take-over: {interrupted}");
    assert!(
        mails.is_empty(),
        "announced agents were announced again: {:?}",
        subjects(&mails)
    );
    assert_eq!(
        after["notified_at"], before["notified_at"],
        "the stored notified_at was overwritten"
    );
    assert_eq!(after["deliveries"], before["deliveries"]);
}

/// An agent's marker that this watcher may not read (an ACL of another identity) stops a
/// reconcile half-way. Agents after it were not read: a take-over on that partial read would
/// close their incidents as "stopped deliberately". The unreadable agent is concluded nothing
/// about, the read completes, and the agent that is really down stays down, announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_the_watcher_may_not_read_does_not_make_the_others_look_stopped() {
    const LOCKED: &str = "a-locked@test";
    const DOWN: &str = "b-down@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let announced = Timestamp(std::time::SystemTime::now() - Duration::from_secs(600));
    let marker = crashed_marker(DOWN);
    let incident = json!({
        "v": 1, "id": DOWN, "opened_at": announced,
        "cause": {"kind": "crashed", "generation": 1, "exit": marker.last_exit, "state": "backoff"},
        "occurrences": 1, "notified_at": announced,
        "deliveries": {"email": {"opened": announced, "last": announced}}
    });
    let down = agent_id(DOWN);
    create(
        &c,
        &l.marker(&down),
        &encode(&marker),
        CreateMode::Persistent,
    )
    .await;
    create(
        &c,
        &l.incident(&down),
        incident.to_string().as_bytes(),
        CreateMode::Persistent,
    )
    .await;
    let owner = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_auth("digest", b"someone-else:secret")
        .connect(&zk.connect_string())
        .await
        .expect("connect as another identity");
    let locked = agent_id(LOCKED);
    let options = CreateMode::Persistent.with_acls(Acls::creator_all());
    owner
        .create(
            &l.marker(&locked),
            &encode(&crashed_marker(LOCKED)),
            &options,
        )
        .await
        .expect("create the locked marker");

    let w = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    w.wait_leading(LONG);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mails = tokio::task::block_in_place(|| smtp.try_messages()).unwrap_or_default();
    assert!(
        mails.iter().all(|m| !m.subject.contains(DOWN)),
        "the agent that was not read was announced: {:?}",
        subjects(&mails)
    );
    let after = get_json(&c, &l.incident(&down)).await.expect("incident");
    assert!(after["resolved_at"].is_null(), "closed: {after}");
    assert_eq!(after["deliveries"], incident["deliveries"]);
}

async fn join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Spawned, so the requests are pipelined on the one connection.
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a registry write task"));
    }
    out
}

// ------------------------------------------------------------------------------------------
// Hole 4: a crash while no watcher runs.
// ------------------------------------------------------------------------------------------

/// The only watcher is stopped (an upgrade). Meanwhile agent Q crashes and its watchdog
/// restarts it: when the next watcher leads, Q is back, and only its marker's `last_exit` shows
/// the crash. It must be reported (crashed and recovered); agent P's crash, which the first
/// watcher did report, must not be reported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_no_watcher_runs_is_reported_when_one_leads_again() {
    const P: &str = "handled-before@test";
    const Q: &str = "crashed-in-gap@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let mut first =
        WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    first.wait_leading(LONG);
    let p = WatchdogProc::start(&zk.connect_string(), P, RESTART_AFTER_1S, &[]);
    let q = WatchdogProc::start(&zk.connect_string(), Q, RESTART_AFTER_1S, &[]);
    let c = client(&zk.connect_string()).await;
    let p_live = p.wait_live(&c, 1, LONG).await;
    q.wait_live(&c, 1, LONG).await;
    wait_log_after(&first, 0, "the watcher to see Q up", &[" up", Q]);

    // P crashes while the watcher leads: reported, and closed once recovered.
    kill(Pid::from_raw(p_live.child_pid as i32), Signal::SIGKILL).expect("kill P's child");
    p.wait_live(&c, 2, LONG).await;
    wait_until("P's incident to be closed", LONG, || async {
        let mails = tokio::task::block_in_place(|| mails_about(&smtp, P));
        let closed = !zk::exists(&c, &layout().incident(&agent_id(P))).await;
        (closed && !mails.is_empty()).then_some(())
    })
    .await;
    let p_mails = tokio::task::block_in_place(|| mails_about(&smtp, P)).len();

    // The only watcher stops; Q crashes and is restarted meanwhile.
    first.signal(Signal::SIGTERM);
    first.wait_exit(LONG);
    let q_live = q.wait_live(&c, 1, LONG).await;
    kill(Pid::from_raw(q_live.child_pid as i32), Signal::SIGKILL).expect("kill Q's child");
    q.wait_live(&c, 2, LONG).await;

    let second = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
    second.wait_leading(LONG);
    let q_mails = wait_mails_about(&smtp, Q, 1).await;
    assert!(
        q_mails[0].subject.contains("CRASHED"),
        "{}",
        q_mails[0].subject
    );
    assert!(
        q_mails[0].subject.contains("SIGKILL"),
        "{}",
        q_mails[0].subject
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all_p = tokio::task::block_in_place(|| mails_about(&smtp, P));
    let all_q = tokio::task::block_in_place(|| mails_about(&smtp, Q));
    assert_eq!(
        all_p.len(),
        p_mails,
        "P's crash was reported again: {:?}",
        subjects(&all_p)
    );
    assert_eq!(all_q.len(), 1, "{:?}", subjects(&all_q));
}

// ------------------------------------------------------------------------------------------
// Hole 8: a leader stopped with a send in flight.
// ------------------------------------------------------------------------------------------

/// The leader is stopped (SIGTERM, a rolling restart) while a webhook send is in flight (the
/// receiver takes 3 s to answer). It must wait for the answer and record it before it leaves,
/// so the next leader does not send the notice again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_a_send_in_flight_records_it_before_leaving() {
    const ID: &str = "in-flight@test";
    let zk = ZkServer::start();
    let (hook, table) = slow_hook(Duration::from_secs(3)).await;
    let mut first = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", None, &table);
    first.wait_leading(LONG);
    let (c, l, id) = crash_and_wait_for_the_send(&zk, &hook, ID).await;
    first.signal(Signal::SIGTERM);
    let stopped = Instant::now();
    first.wait_exit(LONG);
    eprintln!("the leader left {:?} after SIGTERM", stopped.elapsed());
    let incident = get_json(&c, &l.incident(&id)).await;
    let second = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", None, &table);
    second.wait_leading(LONG);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n = hook.received_requests().await.unwrap_or_default().len();
    assert_eq!(
        n,
        1,
        "the notice was sent again by the next leader; the incident the first left: \
         {incident:?}\n--- first ---\n{}",
        first.log()
    );
}

/// ZooKeeper goes away while a webhook send is in flight, for longer than the watcher's session
/// timeout: the receiver accepts the notice while the watcher cannot record it, and the session
/// expires. The watcher keeps the accepted send and records it in its next take-over, so the
/// notice is not sent again when ZooKeeper is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_accepted_during_a_zookeeper_outage_is_recorded_by_the_next_take_over() {
    const ID: &str = "outage-send@test";
    let zk = ZkServer::start();
    let (hook, table) = slow_hook(Duration::from_secs(2)).await;
    let w = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", None, &table);
    w.wait_leading(LONG);
    let (_c, _, _) = crash_and_wait_for_the_send(&zk, &hook, ID).await;
    let skip = outage_across_the_send(&zk, &w);
    tokio::task::block_in_place(|| zk.start_again());
    wait_log_after(
        &w,
        skip,
        "the watcher to lead again",
        &["leading: this watcher"],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n = hook.received_requests().await.unwrap_or_default().len();
    assert_eq!(n, 1, "the notice was sent again after the outage");
}

/// Found by the chaos suite (1000 faults, #78): leader A writes the incident of a crash and
/// restart and freezes before its group-wait is over; B takes over, sends it and closes the
/// record; B dies. The exit was reported, but only B's delivery showed it: the record is gone,
/// and B's list of handled exits did not have it (B never put that record, it loaded it). C,
/// taking over, must not report it again as an exit nobody reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_a_leader_reported_from_a_record_it_loaded_is_not_reported_again_by_the_next() {
    const ID: &str = "loaded-and-closed@test";
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let top = "group-wait = \"4s\"";
    let a = WatcherProc::start(&zk.connect_string(), top, Some(&smtp), "");
    a.wait_leading(LONG);
    let mut b = WatcherProc::start(&zk.connect_string(), top, Some(&smtp), "");
    b.wait_ready(LONG);
    let c3 = WatcherProc::start(&zk.connect_string(), top, Some(&smtp), "");
    c3.wait_ready(LONG);

    let c = client(&zk.connect_string()).await;
    ensure_registry_dirs(&c).await;
    let l = layout();
    let id = agent_id(ID);
    let mut marker = crashed_marker(ID);
    marker.state = AgentState::Running;
    marker.last_exit = None;
    create(&c, &l.marker(&id), &encode(&marker), CreateMode::Persistent).await;
    let live = |generation: u64| {
        json!({"v": 1, "pid": 1, "child_pid": 2, "generation": generation,
            "started_at": Timestamp::now(), "session_id": "0x1",
            "health": {"status": "unknown", "detail": ""}})
        .to_string()
    };
    create(&c, &l.live(&id), live(1).as_bytes(), CreateMode::Persistent).await;
    for w in [&a, &b, &c3] {
        wait_log_after(w, 0, "every replica to see the agent up", &[" up", ID]);
    }

    // Generation 1 crashes and generation 2 runs: exit record, liveness node gone and back.
    let mut restarted = crashed_marker(ID);
    restarted.state = AgentState::Running;
    restarted.generation = 2;
    c.set_data(&l.marker(&id), &encode(&restarted), None)
        .await
        .expect("record the exit");
    c.delete(&l.live(&id), None)
        .await
        .expect("remove the liveness node");
    create(&c, &l.live(&id), live(2).as_bytes(), CreateMode::Persistent).await;
    // A writes the record (down, then recovered) and freezes inside its group-wait.
    wait_until("A to record the crash and the recovery", LONG, || async {
        get_json(&c, &l.incident(&id))
            .await
            .filter(|i| i["resolved_at"].is_string())
    })
    .await;
    freeze(a.pid());
    // B takes over, sends it and closes the record.
    b.wait_leading(LONG);
    let first = wait_mails_about(&smtp, ID, 1).await;
    assert!(first[0].subject.contains("CRASHED"), "{}", first[0].subject);
    wait_until("B to close the record", LONG, || async {
        (!zk::exists(&c, &l.incident(&id)).await).then_some(())
    })
    .await;
    // B dies; C takes over once B's session has expired.
    b.kill();
    c3.wait_leading(LONG);
    // Longer than a group-wait: what C would send, it would have sent by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    thaw(a.pid());
    let all = tokio::task::block_in_place(|| mails_about(&smtp, ID));
    assert_eq!(
        all.len(),
        1,
        "the exit was reported again: {:?}\n--- C ---\n{}",
        subjects(&all),
        c3.log()
    );
}

/// The same outage with a second replica that leads afterwards: A's send is accepted while
/// ZooKeeper is away and A's session ends; B keeps its own (a longer session timeout) and is
/// frozen until A has connected again, so that B leads after the outage. A hands the delivery
/// over before it joins the election; B records it instead of sending the notice again (chaos
/// #374: the other replica led after an ensemble outage and sent a crash the first had sent,
/// grouped with two other agents under another Message-ID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_accepted_during_an_outage_is_not_sent_again_by_the_replica_that_leads_next() {
    const ID: &str = "handed-over@test";
    let zk = ZkServer::start();
    let (hook, table) = slow_hook(Duration::from_secs(3)).await;
    let a = WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", None, &table);
    a.wait_leading(LONG);
    let b_top = "group-wait = \"0s\"\nsession-timeout = \"30s\"";
    let b = WatcherProc::start(&zk.connect_string(), b_top, None, &table);
    b.wait_ready(LONG);
    assert!(!b.is_leading(), "{}", b.log());
    let (_c, _, _) = crash_and_wait_for_the_send(&zk, &hook, ID).await;
    let skip = outage_across_the_send(&zk, &a);
    freeze(b.pid());
    tokio::task::block_in_place(|| zk.start_again());
    wait_log_after(&a, skip, "A to join the election again", &["standing by"]);
    let skip_b = b.log().len();
    thaw(b.pid());
    wait_log_after(&b, skip_b, "B to lead", &["leading: this watcher"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n = hook.received_requests().await.unwrap_or_default().len();
    assert_eq!(
        n,
        1,
        "the replica that led after the outage sent the notice again\n--- A ---\n{}\n--- B ---\n{}",
        a.log(),
        b.log()
    );
}
