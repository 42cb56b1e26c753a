//! A real Flume 1.11 agent wrapped by `zkwatchdog` with the Flume probe on its HTTP monitoring.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use zkwatchdog::registry::HealthStatus;
use zkwatchdog_tests::agents::{
    flume_command, free_ports, instance_dir, jvm_slot, start_flume, Kafka,
};
use zkwatchdog_tests::wait::wait_until_sync;
use zkwatchdog_tests::watchdog::WatchdogProc;

use crate::common::{wait_health, write, Site, FAST_RESTART, LONG, START};

/// The watchdog config of a Flume agent probed on `metrics_port` every 500 ms.
fn flume_toml(metrics_port: u16, extra_probe: &str) -> String {
    format!(
        "kind = \"flume\"\n{FAST_RESTART}[probe]\nurl = \"http://127.0.0.1:{metrics_port}/metrics\"\n\
         interval = \"500ms\"\ntimeout = \"2s\"\nstart-grace = \"120s\"\n{extra_probe}"
    )
}

/// seq source (bounded) → memory channel → file_roll sink into `out`: every component
/// registers counters.
fn seq_to_file(out: &Path, events: u32) -> String {
    format!(
        "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
         a1.sources.r1.type = seq\na1.sources.r1.totalEvents = {events}\na1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\na1.channels.c1.capacity = 1000\n\
         a1.sinks.k1.type = file_roll\na1.sinks.k1.channel = c1\na1.sinks.k1.sink.directory = {}\n",
        out.display()
    )
}

/// A Flume agent `a1` under test: its instance directory (with `out/` for file sinks) and
/// the free port of its HTTP monitoring.
struct Agent {
    dir: TempDir,
    metrics_port: u16,
}

impl Agent {
    /// A directory with `agent.conf` written by `conf` from the path of `out/`.
    fn new(conf: impl FnOnce(&Path) -> String) -> Self {
        let dir = instance_dir("zkwatchdog-flume-");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("create the sink directory");
        write(dir.path(), "agent.conf", &conf(&out));
        let (metrics_port, _) = free_ports();
        Agent { dir, metrics_port }
    }

    fn out(&self) -> std::path::PathBuf {
        self.dir.path().join("out")
    }

    /// The foreground command line (the JVM `exec`ed).
    fn command(&self) -> Vec<String> {
        let conf = self.dir.path().join("agent.conf");
        flume_command(self.dir.path(), "a1", &conf, self.metrics_port)
    }

    /// `zkwatchdog` wrapping it, `kind = "flume"`, probed every 500 ms, plus `extra_probe`.
    fn wrap(&self, site: &Site, id: &str, extra_probe: &str) -> WatchdogProc {
        WatchdogProc::start_command(
            &site.zk.connect_string(),
            id,
            &flume_toml(self.metrics_port, extra_probe),
            &self.command(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_flume_jvm_is_one_crashed_email_then_restarted_probed_ok_and_recovered() {
    const ID: &str = "flume-kill@test";
    let _slot = jvm_slot();
    let site = Site::start();
    let agent = Agent::new(|out| seq_to_file(out, 1000));
    let wd = agent.wrap(&site, ID, "");
    let c = site.client().await;
    let first = wait_health(&wd, &c, 1, HealthStatus::Ok, START).await;
    assert!(
        first.health.detail.contains("CHANNEL.c1"),
        "the probe read the real metrics: {}",
        first.health.detail
    );

    let clock = Instant::now();
    kill(Pid::from_raw(first.child_pid as i32), Signal::SIGKILL).expect("kill the Flume JVM");
    let crash = site.mail(ID, "CRASHED").await;
    let seen = clock.elapsed();
    assert!(crash.subject.contains("SIGKILL"), "{}", crash.subject);
    eprintln!(
        "real Flume JVM kill -9 → CRASHED email seen by the test after {} ms",
        seen.as_millis()
    );

    // Restarted: a new JVM, probed ok again.
    let second = wait_health(&wd, &c, 2, HealthStatus::Ok, START).await;
    assert_ne!(second.child_pid, first.child_pid, "a new JVM");
    let recovered = site.mail(ID, "RECOVERED").await;
    // The crash and the recovery are two messages, or one saying both.
    let expected = if crash.subject.contains("RECOVERED") {
        1
    } else {
        2
    };
    assert!(recovered.subject.contains(ID), "{}", recovered.subject);
    quiet(&site, expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_flume_sink_that_cannot_deliver_fills_its_channel_degraded_then_recovered() {
    const ID: &str = "flume-fill@test";
    let _slot = jvm_slot();
    let site = Site::start();
    // The avro sink sends to a port where nothing listens (yet): the channel fills up.
    let (avro_port, _) = free_ports();
    let agent = Agent::new(|_| {
        format!(
            "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
             a1.sources.r1.type = seq\na1.sources.r1.totalEvents = 3000\na1.sources.r1.channels = c1\n\
             a1.channels.c1.type = memory\na1.channels.c1.capacity = 1000\n\
             a1.sinks.k1.type = avro\na1.sinks.k1.channel = c1\na1.sinks.k1.hostname = 127.0.0.1\n\
             a1.sinks.k1.port = {avro_port}\na1.sinks.k1.connect-timeout = 2000\n"
        )
    });
    let wd = agent.wrap(&site, ID, "channel-fill-threshold = 80.0\n");
    let c = site.client().await;
    wait_health(&wd, &c, 1, HealthStatus::Degraded, START).await;
    let degraded = site.mail(ID, "DEGRADED").await;
    for needle in ["CHANNEL.c1", "fill 100.0% > 80.0%", "(1000/1000)"] {
        assert!(
            degraded.body.contains(needle),
            "the email names {needle}:\n{}",
            degraded.body
        );
    }

    // `zkwatcher status` shows it degraded, with the finding and the open incident.
    let out = zkwatchdog_tests::watcher::zkwatcher_cli(&[
        "status",
        "--json",
        "--zk",
        &site.zk.connect_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", zkwatchdog_tests::describe(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == ID))
        .unwrap_or_else(|| panic!("no row for {ID}: {rows}"));
    assert_eq!(row["state"], "degraded", "{row}");
    assert!(
        row["health"]
            .as_str()
            .is_some_and(|h| h.contains("CHANNEL.c1"))
            && row["incident"]
                .as_str()
                .is_some_and(|i| i.contains("DEGRADED")),
        "{row}"
    );

    // Delivery restored: a real Flume agent receives on the avro port.
    let receiver_dir = instance_dir("zkwatchdog-flume-rx-");
    let (receiver_metrics, _) = free_ports();
    let receiver_conf = write(
        receiver_dir.path(),
        "receiver.conf",
        &format!(
            "rx.sources = r1\nrx.channels = c1\nrx.sinks = k1\n\
             rx.sources.r1.type = avro\nrx.sources.r1.bind = 127.0.0.1\nrx.sources.r1.port = {avro_port}\n\
             rx.sources.r1.channels = c1\nrx.channels.c1.type = memory\nrx.channels.c1.capacity = 10000\n\
             rx.sinks.k1.type = null\nrx.sinks.k1.channel = c1\n"
        ),
    );
    let _receiver = start_flume("rx", &receiver_conf, receiver_metrics);
    let recovered = site.mail(ID, "RECOVERED").await;
    assert!(
        recovered.body.contains("healthy again"),
        "{}",
        recovered.body
    );
    let live = wd.liveness(&c).await.expect("the agent is live");
    assert_eq!(live.generation, 1, "the JVM was never restarted");
    quiet(&site, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_flume_kafka_channel_has_no_capacity_and_is_never_a_fill_alarm() {
    const ID: &str = "flume-kafka-channel@test";
    let _slot = jvm_slot();
    let kafka = Kafka::start();
    kafka.create_topic("flume-channel");
    let site = Site::start();
    let agent = Agent::new(|out| {
        format!(
            "a1.sources = r1\na1.channels = c1\na1.sinks = k1\n\
             a1.sources.r1.type = seq\na1.sources.r1.totalEvents = 2000\na1.sources.r1.channels = c1\n\
             a1.channels.c1.type = org.apache.flume.channel.kafka.KafkaChannel\n\
             a1.channels.c1.kafka.bootstrap.servers = {}\na1.channels.c1.kafka.topic = flume-channel\n\
             a1.channels.c1.kafka.consumer.group.id = flume-a1\n\
             a1.sinks.k1.type = file_roll\na1.sinks.k1.channel = c1\na1.sinks.k1.sink.directory = {}\n",
            kafka.bootstrap(),
            out.display()
        )
    });
    let wd = agent.wrap(&site, ID, "channel-fill-threshold = 80.0\n");
    let c = site.client().await;
    let live = wait_health(&wd, &c, 1, HealthStatus::Ok, START).await;
    assert!(
        live.health.detail.contains("CHANNEL.c1"),
        "the channel is reported: {}",
        live.health.detail
    );
    // The sink takes nothing until the channel's consumer has joined its group (the broker
    // holds the first rebalance back 3 s): inside the start grace the probe says "starting",
    // not degraded, and no notice goes out (checked at the end). A Kafka channel counts a take
    // only once the sink's transaction has committed its offsets (a synchronous commit to the
    // broker), so the take count can stand still for a few 500 ms probes while the sink's
    // files already grow: a stall reading inside the grace is the channel's real counter, not
    // what this test is about. What it checks is that no probe, over 16 probes, ever judges
    // the fill of a channel that has no capacity.
    let out = agent.out();
    wait_until_sync(
        "the sink to write events taken from the Kafka channel",
        START,
        || (delivered_lines(&out) > 0).then_some(()),
    );
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let live = wd.liveness(&c).await.expect("the agent is live");
        let detail = &live.health.detail;
        assert!(
            live.health.status != HealthStatus::Degraded && !detail.contains("CHANNEL.c1 fill"),
            "a Kafka channel is never a fill alarm: {:?} {detail}",
            live.health.status
        );
        if live.health.status == HealthStatus::Ok {
            assert!(
                detail.contains("CHANNEL.c1 no capacity (Kafka channel): fill not judged"),
                "{detail}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live = wait_health(&wd, &c, 1, HealthStatus::Ok, START).await;
    assert!(
        live.health
            .detail
            .contains("CHANNEL.c1 no capacity (Kafka channel): fill not judged"),
        "{}",
        live.health.detail
    );

    assert!(site.subjects().is_empty(), "{:?}", site.subjects());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_real_flume_agent_restarts_its_jvm_and_alerts_nobody() {
    const ID: &str = "flume-reload@test";
    let _slot = jvm_slot();
    let site = Site::start();
    let agent = Agent::new(|out| seq_to_file(out, 1000));
    // No [restart] on-reload: for kind = "flume" the default is a planned restart (a JVM
    // treats SIGHUP as a shutdown and would exit 129).
    let wd = agent.wrap(&site, ID, "");
    let c = site.client().await;
    let first = wait_health(&wd, &c, 1, HealthStatus::Ok, START).await;

    // systemctl reload zkwatchdog@…: SIGHUP to the watchdog.
    wd.signal(Signal::SIGHUP);
    let second = wait_health(&wd, &c, 2, HealthStatus::Ok, START).await;
    assert_ne!(second.child_pid, first.child_pid, "a new JVM");
    let marker = wd.marker(&c).await.expect("the marker stays");
    let exit = marker.last_exit.expect("the reload is recorded");
    assert!(exit.reload, "{exit:?}");
    assert_eq!(exit.generation, 1);
    assert!(
        kill(Pid::from_raw(first.child_pid as i32), None).is_err(),
        "the old JVM is gone"
    );
    // Nobody is told: no CRASHED, no RESTARTED, nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(site.subjects().is_empty(), "{:?}", site.subjects());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launcher_that_daemonizes_a_real_flume_jvm_is_an_incident_not_a_silent_stop() {
    const ID: &str = "flume-daemon@test";
    let _slot = jvm_slot();
    let site = Site::start();
    let agent = Agent::new(|out| seq_to_file(out, 1000));
    let pid_file = agent.dir.path().join("daemon.pid");
    // What `kafka-server-start.sh -daemon` and many init scripts do: `nohup java … &`, then
    // exit 0 at once. The backgrounded command execs the JVM, so its pid is the JVM's.
    let mut command = vec![
        "sh".to_string(),
        "-c".to_string(),
        "pid_file=$0; shift; nohup \"$@\" >/dev/null 2>&1 </dev/null & echo $! >\"$pid_file\"; exit 0"
            .to_string(),
        pid_file.display().to_string(),
    ];
    command.extend(agent.command());
    let mut wd = WatchdogProc::start_command(
        &site.zk.connect_string(),
        ID,
        "kind = \"flume\"\n",
        &command,
    );
    let status = wd.wait_exit(LONG);
    assert_eq!(
        status.code(),
        Some(3),
        "exit 3, like a give-up:\n{}",
        wd.log()
    );
    assert!(wd.log().contains("the command daemonized"), "{}", wd.log());
    let jvm = zkwatchdog_tests::watchdog::read_pids(&pid_file);
    assert_eq!(jvm.len(), 1, "the launcher wrote the daemon's pid");
    assert!(
        !zkwatchdog_tests::watchdog::process_alive(jvm[0]),
        "the daemonized JVM (pid {}) was stopped",
        jvm[0]
    );
    let c = site.client().await;
    let marker = wd.marker(&c).await.expect("the marker stays");
    assert_eq!(marker.state, zkwatchdog::registry::AgentState::Fatal);
    let fatal = site.mail(ID, "FATAL").await;
    assert!(fatal.subject.contains("daemonized"), "{}", fatal.subject);
    assert!(fatal.body.contains("foreground"), "{}", fatal.body);
    quiet(&site, 1).await;
}

/// After the expected messages, nothing more arrives for a few seconds.
async fn quiet(site: &Site, expected: usize) {
    site.smtp.wait_for_messages(expected, LONG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        site.smtp.messages().len(),
        expected,
        "{:?}",
        site.subjects()
    );
}

/// Lines the file_roll sink has written into `dir` so far.
fn delivered_lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                .map(|text| text.lines().count())
                .sum()
        })
        .unwrap_or(0)
}
