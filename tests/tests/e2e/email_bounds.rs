//! The email channel against a real SMTP server (aiosmtpd, STARTTLS + AUTH) with a message size
//! limit: a giant batch (a thousand crashed agents with Java stack traces in their stderr tails)
//! is delivered in parts that each pass the limit, naming every agent, instead of being refused
//! and retried forever, by the channel alone and by `zkwatcher run` over a real ZooKeeper; and
//! every send of the same notification carries the same deterministic `Message-ID`, so that a
//! resend by the next leader is recognisable.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use zkwatchdog::registry::{
    AgentId, AgentKind, AgentState, LastExit, Layout, Marker, Timestamp, DEFAULT_ROOT,
};
use zkwatchdog_tests::smtp::{CapturedMail, SmtpOptions, SmtpServer};
use zkwatchdog_tests::wait::wait_until;
use zkwatchdog_tests::watcher::WatcherProc;
use zkwatchdog_tests::zk::{self, ZkServer};
use zkwatcher::incident::Cause;
use zkwatcher::notice::{Notice, NoticeItem, Origin, Phase};
use zkwatcher::notify::settings::{EmailSettings, EmailTls, Secret};
use zkwatcher::notify::Channel;

/// Generous: these tests must pass on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(60);

/// The server's size limit in the giant-batch test: far below the unbounded message (about 64 MB)
/// and below the bounded one (about 230 kB), well above one agent's full description.
const SIZE_LIMIT: usize = 120_000;

fn settings(smtp: &SmtpServer) -> EmailSettings {
    let (user, password) = smtp
        .credentials()
        .expect("the default server requires AUTH");
    EmailSettings {
        host: "127.0.0.1".into(),
        port: smtp.smtp_port(),
        tls: EmailTls::StartTls,
        username: Some(user.into()),
        password: Some(Secret(password.into())),
        from: "zkwatchdog <alerts@example.com>".into(),
        to: vec!["oncall@example.com".into()],
        ca_file: Some(smtp.ca_file()),
        timeout: Duration::from_secs(20),
        subject_prefix: "[zkwatchdog]".into(),
    }
}

fn origin() -> Origin {
    Origin {
        zk_hosts: "127.0.0.1:2181".into(),
        root: "/zkwatchdog".into(),
        watcher_host: "w1".into(),
    }
}

fn ago(secs: u64) -> Timestamp {
    Timestamp(SystemTime::now() - Duration::from_secs(secs))
}

/// 64 KB of a Java stack trace (the most a watchdog keeps of a stderr tail).
fn java_trace(n: usize) -> Vec<String> {
    let mut lines = vec![format!(
        "Exception in thread \"SinkRunner-PollingRunner-{n}\" org.apache.flume.ChannelException: \
         Unable to put event on required channel: org.apache.flume.channel.MemoryChannel"
    )];
    let mut i = 0;
    while lines.iter().map(|l| l.len()).sum::<usize>() < 64 * 1024 - 200 {
        lines.push(format!(
            "\tat org.apache.flume.channel.ChannelProcessor.processEventBatch(ChannelProcessor.\
             java:{})",
            200 + i
        ));
        i += 1;
    }
    lines
}

fn crashed(i: usize) -> NoticeItem {
    let id = format!("flume-agent-{i:04}@rack-{:02}-host-{i:04}", i % 40);
    let exit = LastExit {
        at: ago(5),
        generation: 3,
        code: Some(1),
        signal: None,
        uptime_ms: 42_000,
        stderr_tail: java_trace(i),
        probe_restart: None,
        reload: false,
        daemonized: None,
    };
    let marker = Marker {
        v: 1,
        id: id.clone(),
        name: "flume-agent".into(),
        kind: AgentKind::Flume,
        host: format!("rack-{:02}-host-{i:04}", i % 40),
        command: vec!["flume-ng".into(), "agent".into()],
        labels: BTreeMap::new(),
        version: "0.1.0".into(),
        registered_at: ago(86_400),
        updated_at: ago(5),
        state: AgentState::Backoff,
        generation: 3,
        restarts: 2,
        last_exit: Some(exit.clone()),
        session_id: "0x1".into(),
        conflict: None,
    };
    NoticeItem {
        agent: id,
        phase: Phase::Opened,
        occurrence: zkwatcher::incident::Occurrence {
            opened_at: ago(10),
            seq: 0,
        },
        cause: Cause::Crashed {
            generation: 3,
            exit,
            state: AgentState::Backoff,
        },
        occurrences: 1,
        opened_at: ago(10),
        resolved_at: None,
        resolution: None,
        last_sent: None,
        marker: Some(marker),
    }
}

/// Every whitespace-separated word of the bodies, without a trailing `:`.
fn words(mails: &[CapturedMail]) -> HashSet<String> {
    mails
        .iter()
        .flat_map(|m| m.body.split_whitespace())
        .map(|w| w.trim_end_matches(':').to_string())
        .collect()
}

fn is_zkwatcher_message_id(id: &str) -> bool {
    id.strip_prefix('<')
        .and_then(|s| s.strip_suffix("@zkwatcher>"))
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_big_for_the_mail_server_is_delivered_in_parts() {
    let smtp = SmtpServer::start(SmtpOptions {
        data_size_limit: Some(SIZE_LIMIT),
        ..SmtpOptions::default()
    });
    let channel = Channel::email(&settings(&smtp)).expect("email channel");
    let items: Vec<NoticeItem> = (0..1000).map(crashed).collect();
    let ids: Vec<String> = items.iter().map(|i| i.agent.clone()).collect();
    let notice = Notice::Incidents { items };

    // One call of the channel, as the dispatcher makes it: accepted means every part went out.
    // On a thread of its own, so that the deadline holds even while the call is busy formatting
    // (an unbounded message of 64 MB takes minutes).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = tx.send(runtime.block_on(channel.send(&notice, &origin())));
    });
    let sent = tokio::task::spawn_blocking(move || rx.recv_timeout(LONG))
        .await
        .expect("join")
        .unwrap_or_else(|_| {
            panic!(
                "the send did not finish within {LONG:?}; captured: {}",
                smtp.messages().len()
            )
        });
    if let Err(e) = &sent {
        panic!(
            "the giant batch was refused ({}); captured: {}",
            e.message,
            smtp.messages().len()
        );
    }
    let mails = smtp.messages();
    assert!(mails.len() >= 2, "split into parts: {}", mails.len());
    eprintln!(
        "delivered in {} parts of at most {} bytes",
        mails.len(),
        mails.iter().map(|m| m.raw.len()).max().unwrap_or(0)
    );
    for mail in &mails {
        assert!(
            mail.raw.len() <= SIZE_LIMIT,
            "{} bytes: {}",
            mail.raw.len(),
            mail.subject
        );
        assert!(
            mail.subject.starts_with("[zkwatchdog] "),
            "{}",
            mail.subject
        );
        assert!(mail.subject.contains(" CRASHED"), "{}", mail.subject);
        assert!(
            is_zkwatcher_message_id(&mail.message_id),
            "{:?}",
            mail.message_id
        );
    }
    let distinct: HashSet<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(distinct.len(), mails.len(), "one Message-ID per part");
    // The parts together name every agent, and say how many each covers.
    let seen = words(&mails);
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "{} agents not named", missing.len());
    let covered: usize = mails
        .iter()
        .map(|m| {
            m.subject
                .split_once(" agents: ")
                .and_then(|(head, _)| head.rsplit(' ').next()?.parse().ok())
                .unwrap_or(1)
        })
        .sum();
    assert_eq!(covered, 1000, "the parts' subjects add up to the batch");
    // The stack traces are trimmed: the last lines, not 64 KB per agent.
    assert!(
        mails[0]
            .body
            .contains("stderr tail (generation 3, last 40 of "),
        "{}",
        &mails[0].body[..2000.min(mails[0].body.len())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_of_the_same_notification_carries_the_same_message_id() {
    let smtp = SmtpServer::start(SmtpOptions::default());
    let notice = Notice::Incidents {
        items: vec![crashed(1), crashed(2)],
    };
    // The leader that sent it died before it could record the acceptance: the next one (a new
    // channel, a new process in real life) sends the same notification again.
    for _leader in 0..2 {
        let channel = Channel::email(&settings(&smtp)).expect("email channel");
        channel
            .send(&notice, &origin())
            .await
            .expect("the server accepts it");
    }
    // The next phase of the same incidents is another notification.
    let mut resolved = notice.clone();
    if let Notice::Incidents { items } = &mut resolved {
        for item in items {
            item.phase = Phase::Resolved;
            item.resolved_at = Some(ago(1));
        }
    }
    Channel::email(&settings(&smtp))
        .expect("email channel")
        .send(&resolved, &origin())
        .await
        .expect("the server accepts it");

    let mails = smtp.wait_for_messages(3, LONG).await;
    assert_eq!(mails.len(), 3);
    let [first, again, next] = [&mails[0], &mails[1], &mails[2]];
    assert!(
        is_zkwatcher_message_id(&first.message_id),
        "{:?}",
        first.message_id
    );
    assert!(
        first
            .raw
            .contains(&format!("Message-ID: {}", first.message_id)),
        "the header as sent:\n{}",
        &first.raw[..first.raw.find("\r\n\r\n").unwrap_or(first.raw.len())]
    );
    assert_eq!(
        again.message_id, first.message_id,
        "a resend is recognisable"
    );
    assert_ne!(
        next.message_id, first.message_id,
        "another phase, another id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_delivers_a_giant_outage_in_parts_and_records_every_incident() {
    const AGENTS: usize = 300;
    let zk = ZkServer::start();
    let smtp = SmtpServer::start(SmtpOptions {
        data_size_limit: Some(SIZE_LIMIT),
        ..SmtpOptions::default()
    });
    // 300 agents down with 64 KB of stack trace each, found by the watcher when it starts:
    // unbounded, one message of about 20 MB.
    let c = zk::client(&zk.connect_string()).await;
    let layout = Layout::new(DEFAULT_ROOT).expect("the default root");
    let ids = zk::put_markers(
        &c,
        (0..AGENTS).map(|i| crashed(i).marker.expect("crashed() has a marker")),
    )
    .await;

    let watcher = WatcherProc::start(&zk.connect_string(), "group-wait = \"1s\"", Some(&smtp), "");
    watcher.wait_leading(LONG);
    let (c, layout, ids_ref) = (&c, &layout, &ids);
    wait_until(
        "every incident recorded as sent by email",
        Duration::from_secs(120),
        || async move {
            for id in ids_ref {
                let incident = zk::get_json(c, &layout.incident(id)).await?;
                incident["deliveries"]["email"]["opened"].as_str()?;
            }
            Some(())
        },
    )
    .await;

    let mails = smtp.messages();
    assert!(mails.len() >= 2, "split into parts: {}", mails.len());
    for mail in &mails {
        assert!(mail.raw.len() <= SIZE_LIMIT, "{} bytes", mail.raw.len());
        assert!(
            is_zkwatcher_message_id(&mail.message_id),
            "{:?}",
            mail.message_id
        );
    }
    let seen = words(&mails);
    let missing: Vec<&AgentId> = ids
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "{} agents not named", missing.len());
    eprintln!(
        "zkwatcher run: {AGENTS} agents in {} messages of at most {} bytes",
        mails.len(),
        mails.iter().map(|m| m.raw.len()).max().unwrap_or(0)
    );
}
