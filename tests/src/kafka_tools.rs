//! Kafka's own command-line tools (from the jars `scripts/agents.sh` installs) against a test
//! broker: create a topic, produce N keyed records, consume K of them in a consumer group that
//! commits, reset a group's offsets. Each run is bounded in time and panics with the tool's
//! output when it fails. Long-running tools ([`start_producer`], [`start_consumer`]) run in
//! the background as a [`ToolProcess`] the test stops by its pid.

use std::fs::File;
use std::io::Write;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::NamedTempFile;

use crate::agents::agents_script;
use crate::describe;

/// How long one tool (a JVM) may take on a loaded 2-core machine.
pub const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// The consumer-group protocol a consumer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupProtocol {
    /// The classic protocol (JoinGroup/SyncGroup, rebalances in the client).
    Classic,
    /// The `consumer` protocol of KIP-848 (assignment by the broker).
    Consumer,
}

/// Runs `agents.sh kafka-tool CLASS ARGS` with `stdin` (a file, or nothing), bounded by
/// [`TOOL_LIMIT`]; panics with its output unless it exits 0.
pub fn kafka_tool(class: &str, args: &[&str], stdin: Option<File>) -> Output {
    let mut child = Command::new("bash")
        .arg(agents_script())
        .arg("kafka-tool")
        .arg(class)
        .args(args)
        .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/agents.sh kafka-tool");
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > TOOL_LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the tool's output");
            panic!(
                "{class} {args:?} did not finish within {TOOL_LIMIT:?}: {}",
                describe(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect the tool's output");
    assert!(
        out.status.success(),
        "{class} {args:?} failed: {}",
        describe(&out)
    );
    out
}

/// Creates `topic` with `partitions` partitions (replication factor 1).
pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ],
        None,
    );
}

/// Creates `topic` with its replicas placed by hand: `assignment` as `TopicCommand
/// --replica-assignment` takes it, partitions separated by commas, each partition's broker ids
/// by colons, the first of them its preferred leader (`1:2,2:1`: two partitions of replication
/// factor 2, led by broker 1 and by broker 2).
pub fn create_topic_assigned(bootstrap: &str, topic: &str, assignment: &str) {
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--replica-assignment",
            assignment,
        ],
        None,
    );
}

/// Produces `n` records to `topic` with the console producer, keyed `k0`..`k{n-1}` so that
/// they spread over the partitions; returns once all are acknowledged (the tool exits).
pub fn produce(bootstrap: &str, topic: &str, n: usize) {
    let mut input = tempfile::tempfile().expect("a temporary file for the records");
    for i in 0..n {
        writeln!(input, "k{i}:v{i}").expect("write a record");
    }
    use std::io::Seek;
    input.rewind().expect("rewind the records file");
    kafka_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "key.separator=:",
            "--producer-property",
            "acks=all",
        ],
        Some(input),
    );
}

/// Consumes exactly `k` records of `topic` from the beginning in group `group` with the console
/// consumer, which commits its position when it closes. One record per poll
/// (`max.poll.records=1`), so the committed offsets add up to `k`.
pub fn consume(bootstrap: &str, topic: &str, group: &str, k: usize, protocol: GroupProtocol) {
    let k = k.to_string();
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--max-messages",
        &k,
        "--timeout-ms",
        "90000",
        "--consumer-property",
        "max.poll.records=1",
    ];
    if protocol == GroupProtocol::Consumer {
        args.extend(["--consumer-property", "group.protocol=consumer"]);
    }
    let out = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &args,
        None,
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("Processed a total of {k} messages")),
        "the console consumer did not consume {k} records: {}",
        describe(&out)
    );
}

/// Resets the committed offsets of `group` on `topic` to the earliest offsets (the group must
/// have no members), with `ConsumerGroupCommand --reset-offsets --to-earliest --execute`;
/// returns the tool's output (the table of new offsets).
pub fn reset_offsets_to_earliest(bootstrap: &str, group: &str, topic: &str) -> String {
    let out = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            bootstrap,
            "--group",
            group,
            "--topic",
            topic,
            "--reset-offsets",
            "--to-earliest",
            "--execute",
        ],
        None,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Kafka tool running in the background: `agents.sh kafka-tool` `exec`s the JVM, so
/// [`pid`](Self::pid) is the JVM's own. Its stdout and stderr go to a file. Killed (SIGKILL)
/// on drop if still running; its output is printed then if the test is failing.
#[derive(Debug)]
pub struct ToolProcess {
    what: String,
    child: Child,
    output: NamedTempFile,
    exited: Option<ExitStatus>,
}

impl ToolProcess {
    /// Starts `agents.sh kafka-tool CLASS ARGS` in the background; `what` names it in messages.
    pub fn spawn(what: &str, class: &str, args: &[&str]) -> Self {
        let output = NamedTempFile::new().expect("a file for the tool's output");
        let out = output.reopen().expect("reopen the tool's output file");
        let err = out.try_clone().expect("clone the output handle");
        let child = Command::new("bash")
            .arg(agents_script())
            .arg("kafka-tool")
            .arg(class)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("run scripts/agents.sh kafka-tool");
        ToolProcess {
            what: what.to_string(),
            child,
            output,
            exited: None,
        }
    }

    /// The JVM's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the tool wrote so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.output.path()).unwrap_or_default()
    }

    /// Whether the tool still runs.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("poll the tool");
        }
        self.exited.is_none()
    }

    /// Sends `signal` to the JVM, waits (at most `limit`) for it to exit, SIGKILLs it after
    /// that; returns how it exited.
    pub fn stop(&mut self, signal: Signal, limit: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let _ = kill(Pid::from_raw(self.pid() as i32), signal);
        let start = Instant::now();
        while self.is_running() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_running() {
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("reap the tool");
        self.exited = Some(status);
        status
    }
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let output = self.output();
            let tail: Vec<&str> = output.lines().rev().take(30).collect();
            eprintln!(
                "---- {} (last lines) ----\n{}",
                self.what,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Kafka's `VerifiableProducer` writing to `topic` without end, at most `per_second` records
/// a second (`acks=all`); one JSON line per acknowledged record in its output.
pub fn start_producer(bootstrap: &str, topic: &str, per_second: u32) -> ToolProcess {
    ToolProcess::spawn(
        &format!("the producer to {topic}"),
        "org.apache.kafka.tools.VerifiableProducer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--throughput",
            &per_second.to_string(),
            "--max-messages",
            "-1",
            "--acks",
            "-1",
        ],
    )
}

/// Records the producer has had acknowledged so far.
pub fn acknowledged(producer: &ToolProcess) -> usize {
    producer
        .output()
        .lines()
        .filter(|l| l.contains("\"producer_send_success\""))
        .count()
}

/// The console consumer reading `topic` from the beginning, without end, in classic group
/// `group`, committing its position every 100 ms (auto-commit). Its session times out 6 s
/// (the broker's minimum) after it dies, so that a killed consumer leaves the group quickly.
pub fn start_consumer(bootstrap: &str, topic: &str, group: &str) -> ToolProcess {
    ToolProcess::spawn(
        &format!("the consumer of {topic} in group {group}"),
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--consumer-property",
            "group.protocol=classic",
            "--consumer-property",
            "enable.auto.commit=true",
            "--consumer-property",
            "auto.commit.interval.ms=100",
            "--consumer-property",
            "session.timeout.ms=6000",
            "--consumer-property",
            "heartbeat.interval.ms=1000",
        ],
    )
}
