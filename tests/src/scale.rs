//! The scale benchmark's registry (`scripts/bench-scale.sh`, the `scale-registry` binary): agent
//! ids, and markers and liveness records built with the watchdog's own registry types, shaped
//! like the ones `zkwatchdog run` writes for a running Flume or Kafka Connect agent.
//!
//! Two groups of agents: the *steady* ones, which stay up, and the *rack* ones, whose liveness
//! nodes all live on one session that the benchmark drops (the "lost rack"). Everything here is
//! a pure function of the agent's group and index, so that the registering process, the process
//! that watches the rack go, and the script that reads the mail agree on the ids.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use zkwatchdog::registry::{
    session_hex, AgentId, AgentKind, AgentState, Health, HealthStatus, LastExit, Liveness, Marker,
    Timestamp, RECORD_VERSION,
};

/// Host name of every agent of the lost rack (the mail is searched for `rack-NNNNNN@lost-rack`).
pub const RACK_HOST: &str = "lost-rack";

/// Steady agents per host (`agent-000041@host-0001` is the second host's second agent).
pub const AGENTS_PER_HOST: usize = 40;

/// Every this many agents, one carries an exit record of an earlier crash with a stderr tail.
pub const DEFAULT_TAIL_EVERY: usize = 10;

/// Which group an agent belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Stays up for the whole benchmark.
    Steady,
    /// On the lost rack: its liveness node goes when the rack's session expires.
    Rack,
}

impl Group {
    /// `steady` or `rack`, as on the command line.
    pub fn parse(s: &str) -> Option<Group> {
        match s {
            "steady" => Some(Group::Steady),
            "rack" => Some(Group::Rack),
            _ => None,
        }
    }
}

/// The id of agent `index` of `group`: `agent-000123@host-0003` or `rack-000123@lost-rack`.
pub fn agent_id(group: Group, index: usize) -> AgentId {
    let id = match group {
        Group::Steady => format!("agent-{index:06}@host-{:04}", index / AGENTS_PER_HOST),
        Group::Rack => format!("rack-{index:06}@{RACK_HOST}"),
    };
    // Only ASCII letters, digits, '-' and '@', well under 200 bytes: always a valid id.
    AgentId::new(id).unwrap_or_else(|e| unreachable!("generated id is invalid: {e}"))
}

/// The index of a rack agent named in a message (`rack-000123@lost-rack` → 123).
pub fn rack_index(id: &str) -> Option<usize> {
    id.strip_suffix(&format!("@{RACK_HOST}"))?
        .strip_prefix("rack-")?
        .parse()
        .ok()
}

/// What varies from one agent to the next, all derived from its index.
fn kind_of(index: usize) -> AgentKind {
    match index % 4 {
        0 | 1 => AgentKind::Flume,
        2 => AgentKind::KafkaConnect,
        _ => AgentKind::Generic,
    }
}

fn command_of(kind: AgentKind, name: &str) -> Vec<String> {
    let words: &[&str] = match kind {
        AgentKind::Flume => &[
            "/opt/flume/bin/flume-ng",
            "agent",
            "--name",
            "a1",
            "--conf",
            "/etc/flume/conf",
            "--conf-file",
            "/etc/flume/conf/nginx.conf",
            "-Dflume.monitoring.type=http",
            "-Dflume.monitoring.port=34545",
        ],
        AgentKind::KafkaConnect => &[
            "/opt/kafka/bin/connect-distributed.sh",
            "/etc/kafka/connect-distributed.properties",
        ],
        AgentKind::Kafka => &[
            "/opt/kafka/bin/kafka-server-start.sh",
            "/etc/kafka/server.properties",
        ],
        AgentKind::Generic => &["/usr/local/bin/log-shipper", "--config"],
    };
    let mut command: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    if kind == AgentKind::Generic {
        command.push(format!("/etc/log-shipper/{name}.toml"));
    }
    command
}

/// About 1 KiB of what a Flume JVM writes to stderr when a sink fails: the tail an exit record
/// of a real crash carries.
pub fn stderr_tail(index: usize) -> Vec<String> {
    let mut lines = vec![
        format!("2026-03-01 02:14:{:02},118 ERROR [SinkRunner-PollingRunner-DefaultSinkProcessor] (org.apache.flume.SinkRunner$PollingRunner.run:158) - Unable to deliver event. Exception follows.", index % 60),
        "org.apache.flume.EventDeliveryException: Failed to send events".to_string(),
        "\tat org.apache.flume.sink.AbstractRpcSink.process(AbstractRpcSink.java:398)".to_string(),
        "\tat org.apache.flume.sink.DefaultSinkProcessor.process(DefaultSinkProcessor.java:67)".to_string(),
        "\tat org.apache.flume.SinkRunner$PollingRunner.run(SinkRunner.java:145)".to_string(),
        "\tat java.base/java.lang.Thread.run(Thread.java:840)".to_string(),
        format!("Caused by: org.apache.flume.FlumeException: NettyAvroRpcClient {{ host: collector-{:02}.example.net, port: 4141 }}: RPC connection error", index % 32),
        "\tat org.apache.flume.api.NettyAvroRpcClient.connect(NettyAvroRpcClient.java:181)".to_string(),
        "\tat org.apache.flume.api.NettyAvroRpcClient.configure(NettyAvroRpcClient.java:576)".to_string(),
        "Caused by: java.io.IOException: Error connecting to collector.example.net/10.20.30.40:4141".to_string(),
        "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space".to_string(),
    ];
    lines.shrink_to_fit();
    lines
}

/// The marker `zkwatchdog` would have written for agent `index` of `group`, running on the
/// session `session_id`. Every `tail_every`-th agent (0: none) crashed once before (generation
/// 2, with a `last_exit` of generation 1 an hour ago and its stderr tail); the others run their
/// first child. `now` stamps `updated_at`; the registration is a day older.
pub fn marker(
    group: Group,
    index: usize,
    session_id: i64,
    tail_every: usize,
    now: SystemTime,
) -> Marker {
    let id = agent_id(group, index);
    let (name, host) = id
        .as_str()
        .split_once('@')
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .unwrap_or_default();
    let kind = kind_of(index);
    let crashed_before = tail_every > 0 && index % tail_every == 0;
    let ago = |secs: u64| Timestamp(now - Duration::from_secs(secs));
    let last_exit = crashed_before.then(|| LastExit {
        at: ago(3600),
        generation: 1,
        code: None,
        signal: Some("SIGKILL".to_string()),
        uptime_ms: 82_800_000,
        stderr_tail: stderr_tail(index),
        probe_restart: None,
        reload: false,
        daemonized: None,
    });
    let labels = BTreeMap::from([
        ("dc".to_string(), "eu-1".to_string()),
        (
            "team".to_string(),
            ["ingest", "billing", "search"][index % 3].to_string(),
        ),
    ]);
    Marker {
        v: RECORD_VERSION,
        id: id.to_string(),
        command: command_of(kind, &name),
        name,
        kind,
        host,
        labels,
        version: env!("CARGO_PKG_VERSION").to_string(),
        registered_at: ago(86_400),
        updated_at: Timestamp(now),
        state: AgentState::Running,
        generation: generation(index, tail_every),
        restarts: u64::from(crashed_before),
        last_exit,
        session_id: session_hex(session_id),
        conflict: None,
    }
}

/// The generation of agent `index`'s running child (see [`marker`]).
pub fn generation(index: usize, tail_every: usize) -> u64 {
    if tail_every > 0 && index % tail_every == 0 {
        2
    } else {
        1
    }
}

/// The liveness node `zkwatchdog` would have written for agent `index`, owned by `session_id`.
pub fn liveness(index: usize, session_id: i64, tail_every: usize, now: SystemTime) -> Liveness {
    let pid = 10_000 + (index % 50_000) as u32;
    let probed = kind_of(index) != AgentKind::Generic;
    Liveness {
        v: RECORD_VERSION,
        pid,
        child_pid: pid + 1,
        generation: generation(index, tail_every),
        started_at: Timestamp(now - Duration::from_secs(3000)),
        session_id: session_hex(session_id),
        health: if probed {
            Health {
                status: HealthStatus::Ok,
                detail: "SOURCE.r1 received 1204 events; CHANNEL.c1 fill 0.4% (40/10000); SINK.k1 drained 1204"
                    .to_string(),
                checked_at: Some(Timestamp(now)),
            }
        } else {
            Health::unprobed()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkwatchdog::registry::{decode, encode};

    #[test]
    fn ids_and_back() {
        let table = [
            (Group::Steady, 0, "agent-000000@host-0000"),
            (Group::Steady, 41, "agent-000041@host-0001"),
            (Group::Steady, 99_999, "agent-099999@host-2499"),
            (Group::Rack, 0, "rack-000000@lost-rack"),
            (Group::Rack, 1234, "rack-001234@lost-rack"),
        ];
        for (group, index, want) in table {
            assert_eq!(agent_id(group, index).as_str(), want);
        }
        assert_eq!(rack_index("rack-001234@lost-rack"), Some(1234));
        assert_eq!(rack_index("agent-001234@host-0030"), None);
        assert_eq!(rack_index("rack-x@lost-rack"), None);
        assert_eq!(Group::parse("rack"), Some(Group::Rack));
        assert_eq!(Group::parse("other"), None);
    }

    /// Records decode with the watchdog's own reader, unchanged by its bounds, and have the sizes
    /// the benchmark promises: about 1 KiB of stderr in every `tail_every`-th marker.
    #[test]
    fn records_read_back_as_written() {
        let now = SystemTime::now();
        for index in [0, 1, 2, 3, 10, 11] {
            let m = marker(Group::Rack, index, 0x1234, 10, now);
            let bytes = encode(&m);
            let back: Marker = decode("/m", &bytes).expect("a valid marker");
            assert_eq!(back.id, m.id);
            assert_eq!(back.session_id, "0x1234");
            assert_eq!(back.last_exit.is_some(), index % 10 == 0, "{index}");
            let tail: usize = back
                .last_exit
                .iter()
                .flat_map(|e| e.stderr_tail.iter())
                .map(|l| l.len() + 1)
                .sum();
            if index % 10 == 0 {
                assert!((900..1400).contains(&tail), "{tail}");
                assert_eq!(back.generation, 2);
                assert_eq!(back.last_exit.map(|e| e.generation), Some(1));
            } else {
                assert_eq!(tail, 0);
                assert_eq!(back.generation, 1);
            }
            let l = liveness(index, 0x1234, 10, now);
            let back: Liveness = decode("/l", &encode(&l)).expect("a valid liveness record");
            assert_eq!(back.generation, m.generation);
            assert_eq!(back.session_id, "0x1234");
        }
        // No tails at all with tail_every = 0.
        assert!(marker(Group::Steady, 0, 1, 0, now).last_exit.is_none());
    }
}
