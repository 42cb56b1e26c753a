//! Access control with digest credentials (`[zk-auth]`), end to end: a real ZooKeeper, real
//! `zkwatchdog` and `zkwatcher` processes each with its own identity, the real `zkCli.sh`, a
//! real SMTP capture. What a person without the credentials can and cannot do to the registry.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use zkwatchdog::registry::{AgentId, Layout, DEFAULT_ROOT};
use zkwatchdog_tests::describe;
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::{wait_until, wait_until_sync};
use zkwatchdog_tests::watchdog::{client, process_alive, WatchdogProc};
use zkwatchdog_tests::watcher::{zkwatcher_cli, WatcherProc};
use zkwatchdog_tests::zk::{self, ZkServer};
use zkwatchdog_tests::zk_tls::ZkTlsServer;
use zookeeper_client::{Acl, AuthId, Client, Error as ZkError, Permission};

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(30);

const PASSWORD_ENV: &str = "ZKWATCHDOG_TEST_ZK_PASSWORD";
const WATCHDOG_PASSWORD: &str = "wd-secret";
const WATCHER_PASSWORD: &str = "wt-secret";
const ADMIN_PASSWORD: &str = "admin-secret";

/// ZooKeeper's digest identity `user:base64(sha1("user:password"))`, computed by openssl (not
/// by the code under test).
fn digest(user: &str, password: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$1\" | openssl dgst -binary -sha1 | base64")
        .arg("sh")
        .arg(format!("{user}:{password}"))
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl failed: {out:?}");
    format!("{user}:{}", String::from_utf8_lossy(&out.stdout).trim())
}

/// The `[zk-auth]` table of the watchdogs: password from [`PASSWORD_ENV`], the admin identity.
fn watchdog_auth() -> String {
    format!(
        "[zk-auth]\nscheme = \"digest\"\nuser = \"watchdog\"\npassword-env = {PASSWORD_ENV:?}\nadmin = {:?}\n",
        digest("admin", ADMIN_PASSWORD)
    )
}

/// The `[zk-auth]` table of the watchers, with the password in a file in `dir`.
fn watcher_auth(dir: &std::path::Path, password: &str) -> String {
    let file = dir.join("zk-password");
    std::fs::write(&file, format!("{password}\n")).expect("write the zk password file");
    format!(
        "[zk-auth]\nuser = \"watcher\"\npassword-file = {:?}\nadmin = {:?}\n",
        file.display().to_string(),
        digest("admin", ADMIN_PASSWORD)
    )
}

fn start_watchdog(zk: &ZkServer, id: &str, toml: &str, password: &str) -> WatchdogProc {
    WatchdogProc::start_with_env(
        &zk.connect_string(),
        id,
        toml,
        &[],
        &[],
        &[(PASSWORD_ENV, password)],
    )
}

/// A session authenticated as `user:password`.
async fn authed_client(connect: &str, user: &str, password: &str) -> Client {
    let connect = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_auth("digest", format!("{user}:{password}").as_bytes())
        .connect(connect);
    match tokio::time::timeout(LONG, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("cannot connect as {user}: {e}"),
        Err(_) => panic!("connecting as {user} timed out"),
    }
}

/// The ACL this project gives records and directories created by `user`.
fn owned_by(user: &str, password: &str) -> Vec<Acl> {
    vec![
        Acl::new(
            Permission::ALL,
            AuthId::new("digest", &digest(user, password)),
        ),
        Acl::new(
            Permission::ALL,
            AuthId::new("digest", &digest("admin", ADMIN_PASSWORD)),
        ),
        Acl::new(Permission::READ, AuthId::anyone()),
    ]
}

async fn acl_of(client: &Client, path: &str) -> Vec<Acl> {
    match client.get_acl(path).await {
        Ok((acl, _)) => acl,
        Err(e) => panic!("getAcl {path}: {e}"),
    }
}

/// Runs the real `zkCli.sh` (through `scripts/zk.sh cli PORT`) with `script` on its standard
/// input, one command a line; returns everything it printed.
async fn zkcli(port: u16, script: &str) -> String {
    let mut child = tokio::process::Command::new("bash")
        .arg(zk::zk_script())
        .arg("cli")
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run zkCli.sh");
    let mut stdin = child.stdin.take().expect("zkCli's stdin");
    stdin
        .write_all(format!("{script}\nquit\n").as_bytes())
        .await
        .expect("write to zkCli");
    drop(stdin);
    let out = match tokio::time::timeout(LONG, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("zkCli.sh failed: {e}"),
        Err(_) => panic!("zkCli.sh did not finish within {LONG:?}"),
    };
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn subjects(mails: &[CapturedMail]) -> Vec<String> {
    mails.iter().map(|m| m.subject.clone()).collect()
}

fn layout() -> Layout {
    Layout::new(DEFAULT_ROOT).expect("the default root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_can_read_a_marker_but_not_change_or_delete_it() {
    let zk = ZkServer::start();
    let mut wd = start_watchdog(&zk, "acl@test", &watchdog_auth(), WATCHDOG_PASSWORD);
    let anon = client(&zk.connect_string()).await;
    // Reading needs no credentials: the liveness node and the marker decode.
    let live = wd.wait_live(&anon, 1, LONG).await;
    assert_eq!(live.generation, 1);
    let marker = wd.marker(&anon).await.expect("the marker is readable");
    assert_eq!(marker.id, "acl@test");

    let (marker_path, live_path) = (wd.marker_path(), wd.live_path());
    assert!(matches!(
        anon.delete(&marker_path, None).await,
        Err(ZkError::NoAuth)
    ));
    assert!(matches!(
        anon.set_data(&marker_path, b"{}", None).await,
        Err(ZkError::NoAuth)
    ));
    assert!(matches!(
        anon.delete(&live_path, None).await,
        Err(ZkError::NoAuth)
    ));
    let l = layout();
    assert!(matches!(
        anon.delete(&l.agents_dir(), None).await,
        Err(ZkError::NoAuth)
    ));

    // The ACLs, read by the admin (ZooKeeper shows digest hashes only to a session with ADMIN
    // permission on the node).
    let admin = authed_client(&zk.connect_string(), "admin", ADMIN_PASSWORD).await;
    let expected = owned_by("watchdog", WATCHDOG_PASSWORD);
    for path in [&marker_path, &live_path, &l.agents_dir(), &l.live_dir()] {
        assert_eq!(acl_of(&admin, path).await, expected, "{path}");
    }
    let mut root = expected.clone();
    root[2] = Acl::new(Permission::READ | Permission::CREATE, AuthId::anyone());
    assert_eq!(acl_of(&admin, l.root()).await, root);

    // The real zkCli.sh without credentials: get works, delete and set are refused.
    let out = zkcli(
        zk.port(),
        &format!("get {marker_path}\ndelete {marker_path}\nset {marker_path} x"),
    )
    .await;
    assert!(out.contains("\"id\":\"acl@test\""), "{out}");
    assert_eq!(
        out.matches(&format!("Insufficient permission : {marker_path}"))
            .count(),
        2,
        "{out}"
    );
    assert!(zk::exists(&anon, &marker_path).await);
    assert_eq!(
        wd.marker(&anon).await.expect("marker").state,
        marker.state,
        "unchanged"
    );

    // With the admin identity, zkCli.sh may delete it.
    let out = zkcli(
        zk.port(),
        &format!("addauth digest admin:{ADMIN_PASSWORD}\ndelete {marker_path}"),
    )
    .await;
    assert!(!out.contains("Insufficient permission"), "{out}");
    wait_until("the admin's delete", LONG, || async {
        (!zk::exists(&anon, &marker_path).await).then_some(())
    })
    .await;
    // And the admin session of the client library may delete the liveness node.
    admin
        .delete(&live_path, None)
        .await
        .expect("the admin deletes the liveness node");

    assert!(wd.is_running(), "{}", wd.log());
    wd.signal(Signal::SIGTERM);
    assert!(wd.wait_exit(LONG).success(), "{}", wd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_with_its_own_credentials_alerts_once_resolves_and_stays_quiet_on_a_planned_stop() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let scratch = tempfile::tempdir().expect("scratch dir");
    let watcher = WatcherProc::start(
        &hosts,
        "group-wait = \"0s\"",
        Some(&smtp),
        &watcher_auth(scratch.path(), WATCHER_PASSWORD),
    );
    watcher.wait_leading(LONG);
    // A slow restart keeps the incident open long enough to look at it.
    let restart = "[restart]\nbackoff-initial = \"3s\"\nbackoff-max = \"3s\"\nbackoff-jitter = 0.0\nstable-after = \"60s\"\n";
    let id = "acl-crash@test";
    let mut wd = start_watchdog(
        &zk,
        id,
        &format!("{restart}{}", watchdog_auth()),
        WATCHDOG_PASSWORD,
    );
    let anon = client(&hosts).await;
    let admin = authed_client(&hosts, "admin", ADMIN_PASSWORD).await;
    let first = wd.wait_live(&anon, 1, LONG).await;
    let l = layout();
    let agent = AgentId::new(id).expect("id");

    // Each program made its own directories, under its own identity; the root is the
    // watcher's (it started first) and let the watchdog create agents/ and live/.
    for dir in [l.incidents_dir(), l.silences_dir(), l.watchers_dir()] {
        assert_eq!(
            acl_of(&admin, &dir).await,
            owned_by("watcher", WATCHER_PASSWORD),
            "{dir}"
        );
    }
    for dir in [l.agents_dir(), l.live_dir()] {
        assert_eq!(
            acl_of(&admin, &dir).await,
            owned_by("watchdog", WATCHDOG_PASSWORD),
            "{dir}"
        );
    }
    assert!(!watcher.log().contains(" lets anyone ("), "no warning");

    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    let incident_path = l.incident(&agent);
    wait_until("the incident to be opened", LONG, || async {
        zk::get_json(&anon, &incident_path).await
    })
    .await;
    assert_eq!(
        acl_of(&admin, &incident_path).await,
        owned_by("watcher", WATCHER_PASSWORD)
    );
    assert!(matches!(
        anon.delete(&incident_path, None).await,
        Err(ZkError::NoAuth)
    ));
    let mails = smtp.wait_for_messages(1, LONG).await;
    assert!(
        mails[0].subject.contains("CRASHED") && mails[0].subject.contains(id),
        "{:?}",
        subjects(&mails)
    );
    assert!(mails[0].subject.contains("SIGKILL"), "{}", mails[0].subject);

    // The restart resolves it: one recovery message, the incident closed.
    wd.wait_live(&anon, 2, LONG).await;
    let mails = smtp.wait_for_messages(2, LONG).await;
    assert!(
        mails[1].subject.contains("RECOVERED") && mails[1].subject.contains(id),
        "{:?}",
        subjects(&mails)
    );
    wait_until("the incident to be closed", LONG, || async {
        (!zk::exists(&anon, &incident_path).await).then_some(())
    })
    .await;

    // The CLI with the watcher's credentials: silence, status, unsilence.
    let config = watcher.config_path().display().to_string();
    let out = zkwatcher_cli(&["silence", id, "--for", "1h", "--config", &config]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let silence_path = l.silence(&agent);
    assert_eq!(
        acl_of(&admin, &silence_path).await,
        owned_by("watcher", WATCHER_PASSWORD)
    );
    let out = zkwatcher_cli(&["status", "--config", &config]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(id),
        "{}",
        describe(&out)
    );
    // Without credentials, removing the silence is refused, with the znode named.
    let out = zkwatcher_cli(&["unsilence", id, "--zk", &hosts]).await;
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NoAuth") && stderr.contains(&silence_path),
        "{}",
        describe(&out)
    );
    let out = zkwatcher_cli(&["unsilence", id, "--config", &config]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!zk::exists(&anon, &silence_path).await);

    // A planned stop removes the marker (DELETE on agents/ is the watchdog identity's) and
    // sends nothing.
    wd.signal(Signal::SIGTERM);
    assert!(wd.wait_exit(LONG).success(), "{}", wd.log());
    assert!(!zk::exists(&anon, &wd.marker_path()).await, "marker gone");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 2, "{:?}", subjects(&smtp.messages()));
    assert!(!watcher.log().contains("NoAuth"), "{}", watcher.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_reported_naming_the_znode_and_the_child_keeps_running() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let scratch = tempfile::tempdir().expect("scratch dir");
    let anon = client(&hosts).await;
    let good = start_watchdog(&zk, "good@test", &watchdog_auth(), WATCHDOG_PASSWORD);
    good.wait_live(&anon, 1, LONG).await;

    // Same user, wrong password: agents/ belongs to the real watchdog identity.
    let mut bad = start_watchdog(&zk, "bad@test", &watchdog_auth(), "not-the-password");
    let child = bad.wait_for_children(1, LONG);
    let marker_path = bad.marker_path();
    let line = wait_until_sync("the watchdog to report NoAuth", LONG, || {
        bad.log()
            .lines()
            .find(|l| l.contains("NoAuth") && l.contains(&marker_path))
            .map(str::to_string)
    });
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("zk-auth"), "{line}");
    assert!(
        line.contains(&digest("watchdog", "not-the-password")),
        "{line}"
    );
    assert!(process_alive(child), "the child keeps running");
    assert!(bad.is_running(), "{}", bad.log());
    assert!(!zk::exists(&anon, &marker_path).await);

    // `zkwatchdog deregister` with the wrong password cannot remove the good agent, and says so.
    let run = tokio::process::Command::new(zkwatchdog_tests::bin_path("zkwatchdog"))
        .args(["deregister", "--id", "good@test", "--config"])
        .arg(bad.path("watchdog.toml"))
        .env(PASSWORD_ENV, "not-the-password")
        .env_remove("ZK_HOSTS")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LONG, run)
        .await
        .expect("deregister finishes")
        .expect("run zkwatchdog deregister");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("NoAuth") && stderr.contains(&good.marker_path()),
        "{}",
        describe(&out)
    );
    assert!(zk::exists(&anon, &good.marker_path()).await);

    // A watcher with the wrong password, after the real one made the watcher directories.
    let watcher = WatcherProc::start(
        &hosts,
        "",
        Some(&smtp),
        &watcher_auth(scratch.path(), WATCHER_PASSWORD),
    );
    watcher.wait_leading(LONG);
    let wrong_dir = tempfile::tempdir().expect("scratch dir");
    let wrong = WatcherProc::start(
        &hosts,
        "",
        Some(&smtp),
        &watcher_auth(wrong_dir.path(), "wrong"),
    );
    let election = format!("{}/n-", layout().watchers_dir());
    let line = wait_until_sync("the watcher to report NoAuth", LONG, || {
        wrong
            .log()
            .lines()
            .find(|l| l.contains("NoAuth") && l.contains(&election))
            .map(str::to_string)
    });
    assert!(line.contains("ERROR") && line.contains("zk-auth"), "{line}");
    // Refused, it never joined the election: the right watcher's node is the only one (beside
    // the leader's `handled` record).
    let watchers: Vec<String> = anon
        .list_children(&layout().watchers_dir())
        .await
        .expect("list the election nodes")
        .into_iter()
        .filter(|n| n.starts_with("n-"))
        .collect();
    assert_eq!(watchers.len(), 1, "{watchers:?}");
    assert!(!wrong.log().contains("standing by"), "{}", wrong.log());
    assert!(process_alive(child));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_every_node_stays_open_to_everyone() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let watcher = WatcherProc::start(&hosts, "", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let wd = WatchdogProc::start(&hosts, "open@test", "", &[]);
    let c = client(&hosts).await;
    wd.wait_live(&c, 1, LONG).await;
    let l = layout();
    let open = vec![Acl::new(Permission::ALL, AuthId::anyone())];
    let election: Vec<String> = c
        .list_children(&l.watchers_dir())
        .await
        .expect("list the election")
        .into_iter()
        .filter(|n| n.starts_with("n-"))
        .collect();
    assert_eq!(election.len(), 1, "{election:?}");
    for path in [
        l.root().to_string(),
        l.agents_dir(),
        l.live_dir(),
        l.incidents_dir(),
        l.silences_dir(),
        l.watchers_dir(),
        wd.marker_path(),
        wd.live_path(),
        format!("{}/{}", l.watchers_dir(), election[0]),
        format!("{}/handled", l.watchers_dir()),
    ] {
        assert_eq!(acl_of(&c, &path).await, open, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_registry_is_reported_with_the_set_acl_that_fixes_it() {
    let zk = ZkServer::start();
    let hosts = zk.connect_string();
    let anon = client(&hosts).await;
    // A registry made before credentials were configured: everything world:anyone ALL.
    let mut old = WatchdogProc::start(&hosts, "migrate@test", "", &[]);
    old.wait_live(&anon, 1, LONG).await;
    old.signal(Signal::SIGKILL);
    old.wait_exit(LONG);

    // With credentials it still works, and says which command closes each directory.
    let mut wd = start_watchdog(&zk, "migrate@test", &watchdog_auth(), WATCHDOG_PASSWORD);
    wd.wait_live(&anon, 2, LONG).await;
    let l = layout();
    let mut fixes = Vec::new();
    for dir in [l.root().to_string(), l.agents_dir(), l.live_dir()] {
        let line = wait_until_sync(&format!("a warning about {dir}"), LONG, || {
            wd.log()
                .lines()
                .find(|line| line.contains("WARN") && line.contains(&format!(" {dir} lets anyone")))
                .map(str::to_string)
        });
        let fix = line
            .split("with: ")
            .nth(1)
            .and_then(|rest| rest.split(" znode=").next())
            .unwrap_or_else(|| panic!("no setAcl command in {line}"))
            .to_string();
        assert!(fix.starts_with("setAcl "), "{fix}");
        fixes.push(fix);
    }
    // The marker written over the old one still has its old, open ACL until the fix.
    let marker_path = wd.marker_path();
    assert_eq!(
        acl_of(&anon, &marker_path).await,
        [Acl::new(Permission::ALL, AuthId::anyone())]
    );

    // Run the commands the log names in the real zkCli.sh, as the admin (the nodes the
    // watchdog re-created since, like its liveness node, already have the new ACL, and only
    // the watchdog's identity and the admin may set theirs).
    let out = zkcli(
        zk.port(),
        &format!(
            "addauth digest admin:{ADMIN_PASSWORD}\n{}",
            fixes.join("\n")
        ),
    )
    .await;
    assert!(
        !out.contains("Insufficient permission") && !out.contains("NoAuth"),
        "{out}"
    );
    let admin = authed_client(&hosts, "admin", ADMIN_PASSWORD).await;
    let expected = owned_by("watchdog", WATCHDOG_PASSWORD);
    for path in [&l.agents_dir(), &marker_path, &wd.live_path()] {
        assert_eq!(
            acl_of(&admin, path).await,
            expected,
            "{path} after {fixes:#?}: {out}"
        );
    }
    assert!(matches!(
        anon.delete(&marker_path, None).await,
        Err(ZkError::NoAuth)
    ));
    assert!(matches!(
        anon.set_data(&marker_path, b"{}", None).await,
        Err(ZkError::NoAuth)
    ));
    // And the watchdog, with the same identity, still stops cleanly.
    wd.signal(Signal::SIGTERM);
    assert!(wd.wait_exit(LONG).success(), "{}", wd.log());
    assert!(!zk::exists(&anon, &marker_path).await);
}

/// Both protections at once, as a locked-down deployment runs them: each program with its own
/// digest identity AND TLS (client certificates required), given only the secure port. The
/// records carry the ACLs, an unauthenticated client on the plaintext port can read but not
/// delete them, and a crash is still emailed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_over_tls_protect_the_records_and_a_crash_is_still_emailed_once() {
    let zk = ZkTlsServer::start();
    let secure = zk.secure_connect_string();
    let plain = zk.plain_connect_string();
    let smtp = SmtpServer::start(SmtpOptions::default());
    let scratch = tempfile::tempdir().expect("scratch dir");
    let watcher = WatcherProc::start(
        &secure,
        "group-wait = \"0s\"",
        Some(&smtp),
        &format!(
            "{}{}",
            watcher_auth(scratch.path(), WATCHER_PASSWORD),
            zk.good_tls_toml()
        ),
    );
    watcher.wait_leading(LONG);
    let restart = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";
    let id = "acl-tls@test";
    let mut wd = WatchdogProc::start_with_env(
        &secure,
        id,
        &format!("{restart}{}{}", watchdog_auth(), zk.good_tls_toml()),
        &["--stderr", "locked-down agent fell over"],
        &[],
        &[(PASSWORD_ENV, WATCHDOG_PASSWORD)],
    );
    let anon = client(&plain).await;
    let admin = authed_client(&plain, "admin", ADMIN_PASSWORD).await;
    let first = wd.wait_live(&anon, 1, LONG).await;

    // The marker: readable by anyone, owned by the watchdog identity (and the admin).
    let marker = wd.marker_path();
    assert_eq!(
        acl_of(&admin, &marker).await,
        owned_by("watchdog", WATCHDOG_PASSWORD)
    );
    assert!(matches!(
        anon.delete(&marker, None).await,
        Err(ZkError::NoAuth)
    ));

    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the child");
    wd.wait_live(&anon, 2, LONG).await;
    let mails = smtp.wait_for_messages(1, LONG).await;
    assert!(
        mails[0].subject.contains("CRASHED") && mails[0].subject.contains(id),
        "{:?}",
        subjects(&mails)
    );
    assert!(
        mails[0].body.contains("locked-down agent fell over"),
        "{}",
        mails[0].body
    );
    // The recovery, alone or combined with the crash; then nothing more.
    let expected = if mails[0].subject.contains("RECOVERED") {
        1
    } else {
        let mails = smtp.wait_for_messages(2, LONG).await;
        assert!(
            mails[1].subject.contains("RECOVERED"),
            "{:?}",
            subjects(&mails)
        );
        2
    };

    wd.signal(Signal::SIGTERM);
    assert!(wd.wait_exit(LONG).success(), "{}", wd.log());
    assert!(!zk::exists(&anon, &marker).await, "marker gone");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        smtp.messages().len(),
        expected,
        "{:?}",
        subjects(&smtp.messages())
    );
    for log in [wd.log(), watcher.log()] {
        assert!(
            !log.contains("NoAuth") && !log.contains("cannot connect"),
            "{log}"
        );
    }
    zk::close(anon).await;
    zk::close(admin).await;
}
