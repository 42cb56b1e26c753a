//! What the real-agent tests share: deadlines, the watcher with its SMTP server, and waits on
//! the liveness node's health.

use std::time::Duration;

use zkwatchdog::registry::{HealthStatus, Liveness};
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watchdog::WatchdogProc;
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::ZkServer;
use zookeeper_client::Client;

/// For registry and mail conditions once the programs run (a loaded 2-core machine).
pub const LONG: Duration = Duration::from_secs(60);

/// For a JVM to start and answer its first probe.
pub const START: Duration = Duration::from_secs(180);

/// Fast restarts, so that a crash test does not wait for the default backoff.
pub const FAST_RESTART: &str = "[restart]\nbackoff-initial = \"50ms\"\nbackoff-max = \"200ms\"\n";

/// A ZooKeeper, an SMTP server (STARTTLS, AUTH) and a leading `zkwatcher` (group-wait 0).
pub struct Site {
    pub zk: ZkServer,
    pub smtp: SmtpServer,
    /// Kept alive for the test.
    _watcher: WatcherProc,
}

impl Site {
    pub fn start() -> Self {
        let zk = ZkServer::start();
        let smtp = SmtpServer::start(SmtpOptions::default());
        let watcher =
            WatcherProc::start(&zk.connect_string(), "group-wait = \"0s\"", Some(&smtp), "");
        watcher.wait_leading(LONG);
        Site {
            zk,
            smtp,
            _watcher: watcher,
        }
    }

    pub async fn client(&self) -> Client {
        zkwatchdog_tests::watchdog::client(&self.zk.connect_string()).await
    }

    /// The first message about agent `id` whose subject contains `word`.
    pub async fn mail(&self, id: &str, word: &str) -> CapturedMail {
        self.smtp
            .wait_for_mail(&format!("a {word} email about {id}"), LONG, |m| {
                m.subject.contains(id) && m.subject.contains(word)
            })
            .await
    }

    /// Subjects of every message so far.
    pub fn subjects(&self) -> Vec<String> {
        self.smtp
            .messages()
            .into_iter()
            .map(|m| m.subject)
            .collect()
    }
}

/// Waits until the agent's liveness node, at generation `generation` or later, shows health
/// `status`.
pub async fn wait_health(
    wd: &WatchdogProc,
    c: &Client,
    generation: u64,
    status: HealthStatus,
    deadline: Duration,
) -> Liveness {
    wait_until(
        &format!("{} at generation {generation} to be {status:?}", wd.id),
        deadline,
        || async {
            wd.liveness(c)
                .await
                .filter(|l| l.generation >= generation && l.health.status == status)
        },
    )
    .await
}

/// Writes `text` into `name` in `dir` and returns its path.
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
