//! Kafka's own command-line tools (from the jars `scripts/agents.sh` installs) against a test
//! broker: create a topic, produce N keyed records, consume K of them in a consumer group that
//! commits. Each run is bounded in time and panics with the tool's output when it fails.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
