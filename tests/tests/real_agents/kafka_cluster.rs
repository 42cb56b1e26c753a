//! A real two-broker Kafka 4.4 cluster, each broker wrapped by its own `zkwatchdog` (`kind =
//! "kafka"`): broker 1 is the KRaft controller and a broker, broker 2 a broker only
//! (`agents.sh run-kafka --join`). Broker 2's JVM is killed; its watchdog waits out a long
//! backoff before restarting it, and meanwhile the controller fences it: the partitions only
//! broker 2 held go offline and the replicated ones lose a replica. Each finding must be mailed
//! once, by the broker the rules of `probe/kafka.rs` name (offline: the lowest live id;
//! under-replicated: the leader), never by broker 2's watchdog; the restart recovers.

use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zkwatchdog::registry::HealthStatus;
use zkwatchdog_tests::agents::{jvm_slots, kafka_command, kafka_join_command};
use zkwatchdog_tests::kafka_tools::create_topic_assigned;

use crate::common::{wait_health, Site, FAST_RESTART, LONG, START};
use crate::kafka::{accepted_after, watch_details, Broker};

/// How long broker 2's watchdog waits before restarting it: the outage the cluster sees. The
/// controller fences a silent broker after `broker.session.timeout.ms` (9 s by default).
const OUTAGE: Duration = Duration::from_secs(30);

/// The probe log lines of `broker` whose health status is `status`.
fn probes_with_status(broker: &Broker, status: &str) -> Vec<String> {
    broker
        .wd
        .log()
        .lines()
        .filter(|l| l.contains("detail=") && l.contains(&format!("status={status}")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_is_mailed_once_by_the_broker_the_rules_name_and_its_restart_recovers() {
    const ONE: &str = "kafka-b1@test";
    const TWO: &str = "kafka-b2@test";
    let test_start = Instant::now();
    let _slots = jvm_slots(2);
    let site = Site::start();
    let c = site.client().await;
    let one = Broker::wrap(&site, ONE, FAST_RESTART, "", kafka_command);
    wait_health(&one.wd, &c, 1, HealthStatus::Ok, START).await;
    // Broker 2 joins broker 1's cluster. Its watchdog restarts it only after OUTAGE (a run of
    // any length counts as unstable, no jitter).
    let first = one.dir().to_path_buf();
    let restart = format!(
        "[restart]\nstable-after = \"1h\"\nbackoff-initial = \"{0}s\"\nbackoff-max = \"{0}s\"\n\
         backoff-jitter = 0.0\n",
        OUTAGE.as_secs()
    );
    let two = Broker::wrap(&site, TWO, &restart, "", |dir, port, _| {
        kafka_join_command(dir, port, &first, 2)
    });
    let before = wait_health(&two.wd, &c, 1, HealthStatus::Ok, START).await;
    let (stop_watching, stop) = tokio::sync::watch::channel(false);
    let two_details = watch_details(site.client().await, two.wd.live_path(), stop);
    eprintln!("cluster up after {:?}", test_start.elapsed());

    // `replicated`: replication factor 2, partitions 0 and 2 led by broker 1, 1 and 3 by
    // broker 2. `single`: replication factor 1, every partition on broker 2 only.
    let b = one.bootstrap();
    create_topic_assigned(&b, "replicated", "1:2,2:1,1:2,2:1");
    create_topic_assigned(&b, "single", "2,2,2");
    let healthy = "2 brokers, 7 partitions in 2 topics (0 internal), 0 offline, 0 under-replicated";
    for broker in [&one, &two] {
        let seen = broker.wait_probe(0, &[healthy], &[], LONG);
        eprintln!("{}: {seen}", broker.wd.id);
    }
    assert!(site.subjects().is_empty(), "{:?}", site.subjects());

    let killed_at = SystemTime::now();
    let killed = Instant::now();
    kill(Pid::from_raw(before.child_pid as i32), Signal::SIGKILL).expect("kill broker 2's JVM");
    let degraded = site.mail(ONE, "DEGRADED").await;
    eprintln!(
        "detection latency (SIGKILL of broker 2 → DEGRADED email about broker 1 accepted): \
         {:?}\nsubject: {}\nbody:\n{}",
        accepted_after(&degraded, killed_at),
        degraded.subject,
        degraded.body
    );
    // Offline: no live replica, so no leader; reported by the lowest live broker, 1.
    let offline = "topic single: 3 of 3 partitions offline (no leader): \
                   0 (replicas [2], isr [], offline replicas [2]), \
                   1 (replicas [2], isr [], offline replicas [2]), \
                   2 (replicas [2], isr [], offline replicas [2])";
    // Under-replicated: broker 1 now leads all four, alone in sync; reported by the leader.
    let under = "topic replicated: 4 of 4 partitions under-replicated, led by broker 1: \
                 0 (replicas [1, 2], isr [1], offline replicas [2]), \
                 1 (replicas [2, 1], isr [1], offline replicas [2]), \
                 2 (replicas [1, 2], isr [1], offline replicas [2]), \
                 3 (replicas [2, 1], isr [1], offline replicas [2])";
    for finding in [offline, under] {
        assert!(
            degraded.body.contains(finding),
            "{finding}\nin\n{}",
            degraded.body
        );
    }
    let crashed = site.mail(TWO, "CRASHED").await;
    eprintln!("subject: {}", crashed.subject);
    assert!(crashed.subject.contains("SIGKILL"), "{}", crashed.subject);
    let during = one.wd.liveness(&c).await.expect("broker 1 live");
    assert_eq!(
        during.health.status,
        HealthStatus::Degraded,
        "{:?}",
        during.health
    );

    // Broker 2's watchdog restarts it after OUTAGE; its partitions come back.
    two.wd.wait_live(&c, 2, OUTAGE + LONG).await;
    let restarted = killed.elapsed();
    let recovered = site.mail(ONE, "RECOVERED").await;
    eprintln!(
        "broker 2 restarted {restarted:?} after the kill; RECOVERED about broker 1 {:?} after \
         the kill\nsubject: {}\nbody:\n{}",
        accepted_after(&recovered, killed_at),
        recovered.subject,
        recovered.body
    );
    assert!(restarted >= OUTAGE, "{restarted:?}");
    assert!(
        recovered.body.contains("healthy again"),
        "{}",
        recovered.body
    );
    let after = wait_health(&two.wd, &c, 2, HealthStatus::Ok, START).await;
    assert_ne!(after.child_pid, before.child_pid);
    // Both watchdogs probe a few more times, the cluster whole again: nothing more is mailed.
    for broker in [&one, &two] {
        let seen = broker.wait_probe(broker.probes() + 3, &[healthy], &[], LONG);
        eprintln!("{} after the restart: {seen}", broker.wd.id);
    }

    let _ = stop_watching.send(true);
    let two_details = two_details.await.expect("the detail watcher");
    let subjects = site.subjects();
    eprintln!("subjects: {subjects:#?}");
    let about = |id: &str| -> Vec<&String> { subjects.iter().filter(|s| s.contains(id)).collect() };
    let of_one = about(ONE);
    assert_eq!(of_one.len(), 2, "one incident, one recovery: {subjects:?}");
    assert!(of_one[0].contains("DEGRADED"), "{subjects:?}");
    assert!(of_one[1].contains("RECOVERED"), "{subjects:?}");
    // Broker 2 is mailed about its crash (and its return), never about the partitions.
    assert!(
        about(TWO).iter().all(|s| !s.contains("DEGRADED")),
        "{subjects:?}"
    );
    assert!(
        two_details
            .iter()
            .all(|(status, _)| *status != HealthStatus::Degraded),
        "broker 2's node: {two_details:?}"
    );
    let degraded_two = probes_with_status(&two, "Degraded");
    assert!(degraded_two.is_empty(), "{degraded_two:#?}");
    let saw_urp = two
        .probe_details()
        .into_iter()
        .find(|d| d.contains(" under-replicated") && !d.contains(" 0 under-replicated"));
    eprintln!(
        "broker 2 saw the cluster under-replicated without reporting it: {}",
        saw_urp
            .as_deref()
            .unwrap_or("no (in sync by its first probe)")
    );
    assert!(!probes_with_status(&one, "Degraded").is_empty());
    eprintln!("test duration: {:?}", test_start.elapsed());
}
