//! The JSON records stored in the registry's znodes (DESIGN.md section 1) and their decoding.
//!
//! Every record is one UTF-8 JSON object with `"v": 1`. Unknown fields are ignored when reading,
//! so newer writers stay readable; data that does not decode is an error naming the znode, never
//! a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The record format version written by this build.
pub const RECORD_VERSION: u32 = 1;

/// Largest znode payload a reader accepts (ZooKeeper's own default `jute.maxbuffer` is 1 MiB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Longest stderr line an exit record keeps, in bytes; longer lines are cut.
pub const MAX_STDERR_LINE: usize = 2000;

/// Most stderr an exit record keeps in all, in bytes (the newest lines): even JSON-escaped six
/// times over it leaves a marker far below ZooKeeper's 1 MiB `jute.maxbuffer`.
pub const MAX_STDERR_TAIL_BYTES: usize = 64 * 1024;

/// Longest free text (health detail, probe-restart reason) a reader keeps, in bytes.
pub const MAX_TEXT: usize = 2000;

/// Longest short field (id, name, host, version, session id, signal name, label key or value)
/// a reader keeps, in bytes. Ids are at most 200 bytes; host names at most 253.
pub const MAX_SHORT: usize = 256;

/// Most command-line arguments a reader keeps; the rest are summed up in one last argument.
pub const MAX_COMMAND_ARGS: usize = 64;

/// Most command-line text a reader keeps, in bytes, over all arguments.
pub const MAX_COMMAND_BYTES: usize = 8 * 1024;

/// Most labels a reader keeps.
pub const MAX_LABELS: usize = 64;

/// Bounds a command line to [`MAX_COMMAND_ARGS`] arguments of at most [`MAX_TEXT`] bytes each
/// and [`MAX_COMMAND_BYTES`] in all; what is cut is counted in a last `…(N more)` argument.
pub fn bound_command(command: &mut Vec<String>) {
    let mut total = 0;
    let mut keep = 0;
    for arg in command.iter_mut() {
        truncate_text(arg, MAX_TEXT);
        if keep == MAX_COMMAND_ARGS || total + arg.len() > MAX_COMMAND_BYTES {
            break;
        }
        total += arg.len();
        keep += 1;
    }
    let cut = command.len() - keep;
    if cut > 0 {
        command.truncate(keep);
        command.push(format!("…({cut} more)"));
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
pub fn truncate_text(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// Why a znode's data could not be decoded.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("znode {path}: data is {len} bytes, more than the {MAX_RECORD_BYTES} accepted")]
    TooLarge { path: String, len: usize },
    #[error("znode {path}: data is not a valid record")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("znode {path}: record version {found} is not supported (expected {RECORD_VERSION} or later)")]
    Version { path: String, found: u32 },
}

/// Decodes a record read from the znode at `path`.
pub fn decode<T: DeserializeOwned + Versioned>(path: &str, data: &[u8]) -> Result<T, RecordError> {
    if data.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            path: path.to_string(),
            len: data.len(),
        });
    }
    let record: T = serde_json::from_slice(data).map_err(|source| RecordError::Json {
        path: path.to_string(),
        source,
    })?;
    if record.version() < RECORD_VERSION {
        return Err(RecordError::Version {
            path: path.to_string(),
            found: record.version(),
        });
    }
    let mut record = record;
    record.bound();
    Ok(record)
}

/// Encodes a record as the znode's data.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no custom
    // serializers that return errors.
    serde_json::to_vec(record).unwrap_or_else(|_| b"{}".to_vec())
}

/// A record that carries the format version `v`.
pub trait Versioned {
    /// The record's `v` field.
    fn version(&self) -> u32;

    /// Cuts every field to its limit; [`decode`] calls it on every record it reads, so that a
    /// record written by hand (up to 1 MiB of text) cannot blow up a reader.
    fn bound(&mut self) {}
}

/// A wall-clock instant, serialized as RFC 3339 with milliseconds (`2026-11-22T03:04:05.678Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// The current time, to the millisecond: what a record holds (RFC 3339 with milliseconds),
    /// so that a timestamp compares equal to itself after a round trip through ZooKeeper (an
    /// incident's `opened_at` identifies it in the sends that carry it, across leaders).
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let ms = Duration::from_millis(since_epoch.as_millis() as u64);
        Timestamp(SystemTime::UNIX_EPOCH + ms)
    }

    /// Milliseconds since the Unix epoch (0 for earlier instants).
    pub fn unix_ms(&self) -> u64 {
        self.0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// How long ago this was (zero if in the future).
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed().unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_millis(self.0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {text:?}: {e}")))
    }
}

/// What kind of agent a watchdog supervises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    Flume,
    KafkaConnect,
    /// A Kafka broker.
    Kafka,
    Generic,
}

impl AgentKind {
    /// The name used in config files and records.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentKind::Flume => "flume",
            AgentKind::KafkaConnect => "kafka-connect",
            AgentKind::Kafka => "kafka",
            AgentKind::Generic => "generic",
        }
    }
}

/// The supervisor's state as published in the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Starting,
    Running,
    Restarting,
    Backoff,
    Fatal,
    Stopping,
}

impl AgentState {
    /// The name used in records and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Restarting => "restarting",
            AgentState::Backoff => "backoff",
            AgentState::Fatal => "fatal",
            AgentState::Stopping => "stopping",
        }
    }
}

/// How the child of one generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// When the watchdog saw the exit.
    pub at: Timestamp,
    /// The generation of the child that exited.
    pub generation: u64,
    /// Exit code, when the child exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal name (`SIGKILL`), when the child was killed by a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// How long the child ran.
    pub uptime_ms: u64,
    /// The last lines the child wrote to stderr.
    #[serde(default)]
    pub stderr_tail: Vec<String>,
    /// Present only when the watchdog itself stopped the child because its health probe failed
    /// `restart-after-failures` times in a row: the health detail that triggered the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_restart: Option<String>,
    /// True only when the watchdog itself stopped the child to reload it (SIGHUP to the watchdog
    /// under `restart.on-reload = "restart"`): a planned restart that the watcher never reports.
    /// Omitted when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reload: bool,
    /// Present only when the child exited with a success code within `restart.stable-after`
    /// while processes of its group lived on: it daemonized, which cannot be supervised. Says
    /// so and how to fix it; the watchdog stopped the leftovers and gave up (state `fatal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemonized: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl LastExit {
    /// Bounds what a record read from ZooKeeper (possibly written by hand) carries on: each
    /// stderr line to [`MAX_STDERR_LINE`], the tail to its newest [`MAX_STDERR_TAIL_BYTES`],
    /// the probe-restart and daemonize reasons to [`MAX_TEXT`].
    pub fn bound(&mut self) {
        let mut total = 0;
        let mut keep = self.stderr_tail.len();
        for (i, line) in self.stderr_tail.iter_mut().enumerate().rev() {
            truncate_text(line, MAX_STDERR_LINE);
            if total + line.len() > MAX_STDERR_TAIL_BYTES {
                break;
            }
            total += line.len();
            keep = i;
        }
        self.stderr_tail.drain(..keep);
        if let Some(signal) = &mut self.signal {
            truncate_text(signal, MAX_SHORT);
        }
        if let Some(reason) = &mut self.probe_restart {
            truncate_text(reason, MAX_TEXT);
        }
        if let Some(reason) = &mut self.daemonized {
            truncate_text(reason, MAX_TEXT);
        }
    }
}

/// `<root>/agents/<id>`: the PERSISTENT marker saying the agent is supposed to be running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub v: u32,
    pub id: String,
    pub name: String,
    pub kind: AgentKind,
    pub host: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Version of the zkwatchdog that wrote the marker.
    pub version: String,
    pub registered_at: Timestamp,
    pub updated_at: Timestamp,
    pub state: AgentState,
    /// Child starts so far (the generation of the newest child).
    pub generation: u64,
    pub restarts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// Hex id (`0x…`) of the ZooKeeper session that last wrote the marker.
    pub session_id: String,
    /// Present when this watchdog's liveness node was deleted or replaced by someone else
    /// repeatedly (another zkwatchdog with the same id, most likely): says so, for the watcher
    /// to show next to the agent. Omitted when there is nothing to report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
}

impl Marker {
    /// Bounds every field: the short ones to [`MAX_SHORT`], the command line (see
    /// [`bound_command`]), the labels to [`MAX_LABELS`], and the exit record (see
    /// [`LastExit::bound`]).
    pub fn bound(&mut self) {
        for field in [
            &mut self.id,
            &mut self.name,
            &mut self.host,
            &mut self.version,
            &mut self.session_id,
        ] {
            truncate_text(field, MAX_SHORT);
        }
        bound_command(&mut self.command);
        if self.labels.len() > MAX_LABELS
            || self
                .labels
                .iter()
                .any(|(k, v)| k.len() > MAX_SHORT || v.len() > MAX_SHORT)
        {
            self.labels = std::mem::take(&mut self.labels)
                .into_iter()
                .take(MAX_LABELS)
                .map(|(mut k, mut v)| {
                    truncate_text(&mut k, MAX_SHORT);
                    truncate_text(&mut v, MAX_SHORT);
                    (k, v)
                })
                .collect();
        }
        if let Some(conflict) = &mut self.conflict {
            truncate_text(conflict, MAX_TEXT);
        }
        if let Some(exit) = &mut self.last_exit {
            exit.bound();
        }
    }
}

impl Versioned for Marker {
    fn version(&self) -> u32 {
        self.v
    }

    fn bound(&mut self) {
        Marker::bound(self);
    }
}

/// Result of the latest health probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Unknown,
}

/// The `health` object of a liveness node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub checked_at: Option<Timestamp>,
}

impl Health {
    /// Health of an agent that has no probe configured.
    pub fn unprobed() -> Self {
        Health {
            status: HealthStatus::Unknown,
            detail: "no probe configured".to_string(),
            checked_at: None,
        }
    }
}

/// `<root>/live/<id>`: the EPHEMERAL node that exists while the agent's child runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub v: u32,
    /// Pid of the watchdog.
    pub pid: u32,
    pub child_pid: u32,
    pub generation: u64,
    pub started_at: Timestamp,
    /// Hex id (`0x…`) of the session that owns the node.
    pub session_id: String,
    pub health: Health,
}

impl Liveness {
    /// Bounds the health detail to [`MAX_TEXT`] and the session id to [`MAX_SHORT`].
    pub fn bound(&mut self) {
        truncate_text(&mut self.health.detail, MAX_TEXT);
        truncate_text(&mut self.session_id, MAX_SHORT);
    }
}

impl Versioned for Liveness {
    fn version(&self) -> u32 {
        self.v
    }

    fn bound(&mut self) {
        Liveness::bound(self);
    }
}

/// Formats a ZooKeeper session id the way records store it (`0x1a2b…`).
pub fn session_hex(id: i64) -> String {
    format!("{:#x}", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_survives_a_round_trip_through_a_record() {
        for _ in 0..100 {
            let t = Timestamp::now();
            let back: Timestamp =
                serde_json::from_slice(&serde_json::to_vec(&t).expect("encode")).expect("decode");
            assert_eq!(back, t);
        }
    }

    #[test]
    fn bound_keeps_the_newest_stderr_within_the_limits() {
        let mut exit = LastExit {
            at: Timestamp::now(),
            generation: 1,
            code: Some(1),
            signal: None,
            uptime_ms: 5,
            stderr_tail: (0..600)
                .map(|i| format!("{i} {}", "é".repeat(3000)))
                .collect(),
            probe_restart: Some("x".repeat(10_000)),
            reload: false,
            daemonized: Some("y".repeat(10_000)),
        };
        exit.bound();
        let total: usize = exit.stderr_tail.iter().map(String::len).sum();
        assert!(total <= MAX_STDERR_TAIL_BYTES, "{total}");
        assert!(exit.stderr_tail.iter().all(|l| l.len() <= MAX_STDERR_LINE));
        assert_eq!(
            exit.stderr_tail.len(),
            MAX_STDERR_TAIL_BYTES / MAX_STDERR_LINE
        );
        assert!(exit
            .stderr_tail
            .last()
            .is_some_and(|l| l.starts_with("599 ")));
        assert_eq!(exit.probe_restart.as_ref().map(String::len), Some(MAX_TEXT));
        assert_eq!(exit.daemonized.as_ref().map(String::len), Some(MAX_TEXT));
        let mut short = exit.clone();
        short.stderr_tail = vec!["a".into(), "b".into()];
        short.bound();
        assert_eq!(short.stderr_tail, ["a", "b"]);
    }

    fn marker() -> Marker {
        Marker {
            v: 1,
            id: "a@h".into(),
            name: "a".into(),
            kind: AgentKind::KafkaConnect,
            host: "h".into(),
            command: vec!["sleep".into(), "1".into()],
            labels: BTreeMap::from([("dc".into(), "x".into())]),
            version: "0.1.0".into(),
            registered_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            state: AgentState::Restarting,
            generation: 3,
            restarts: 2,
            last_exit: Some(LastExit {
                at: Timestamp::now(),
                generation: 3,
                code: None,
                signal: Some("SIGKILL".into()),
                uptime_ms: 1500,
                stderr_tail: vec!["boom".into()],
                probe_restart: None,
                reload: false,
                daemonized: None,
            }),
            session_id: session_hex(0x1234),
            conflict: None,
        }
    }

    #[test]
    fn marker_round_trip() {
        let m = marker();
        let bytes = encode(&m);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.contains(r#""kind":"kafka-connect""#), "{text}");
        assert!(text.contains(r#""state":"restarting""#), "{text}");
        assert!(text.contains(r#""session_id":"0x1234""#), "{text}");
        assert!(
            !text.contains(r#""code""#),
            "absent code is omitted: {text}"
        );
        let back: Marker = decode("/p", &bytes).expect("decodes");
        // Timestamps are kept to the millisecond.
        assert_eq!(back.registered_at.unix_ms(), m.registered_at.unix_ms());
        assert_eq!(back.last_exit.as_ref().map(|e| e.uptime_ms), Some(1500));
        assert_eq!(back.generation, 3);
        for field in ["probe_restart", "reload", "daemonized"] {
            assert!(!text.contains(field), "absent {field} is omitted: {text}");
        }
    }

    #[test]
    fn reload_and_daemonized_round_trip_and_old_records_read_without_them() {
        let mut m = marker();
        if let Some(e) = m.last_exit.as_mut() {
            e.reload = true;
            e.daemonized = Some("exited with code 0 after 5ms, leaving pid 42".into());
        }
        let bytes = encode(&m);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.contains(r#""reload":true"#), "{text}");
        let back: Marker = decode("/p", &bytes).expect("decodes");
        let exit = back.last_exit.expect("an exit");
        assert!(exit.reload);
        assert_eq!(
            exit.daemonized.as_deref(),
            Some("exited with code 0 after 5ms, leaving pid 42")
        );
        // A record written before these fields existed.
        let mut value = serde_json::to_value(marker()).expect("to value");
        if let Some(o) = value["last_exit"].as_object_mut() {
            o.remove("reload");
            o.remove("daemonized");
        }
        let old: Marker = decode("/p", &serde_json::to_vec(&value).expect("to vec")).expect("old");
        let exit = old.last_exit.expect("an exit");
        assert!(!exit.reload);
        assert_eq!(exit.daemonized, None);
    }

    #[test]
    fn probe_restart_round_trips_and_old_records_read_without_it() {
        let mut m = marker();
        if let Some(e) = m.last_exit.as_mut() {
            e.probe_restart = Some("CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)".into());
        }
        let bytes = encode(&m);
        let back: Marker = decode("/p", &bytes).expect("decodes");
        assert_eq!(
            back.last_exit.and_then(|e| e.probe_restart).as_deref(),
            Some("CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)")
        );
        let mut value = serde_json::to_value(marker()).expect("to value");
        value["last_exit"]
            .as_object_mut()
            .map(|o| o.remove("probe_restart"));
        let old: Marker = decode("/p", &serde_json::to_vec(&value).expect("to vec")).expect("old");
        assert_eq!(old.last_exit.and_then(|e| e.probe_restart), None);
    }

    #[test]
    fn unknown_fields_are_ignored_and_garbage_is_named() {
        let mut value = serde_json::to_value(marker()).expect("to value");
        value["from_the_future"] = serde_json::json!({"x": 1});
        value["v"] = serde_json::json!(2);
        let bytes = serde_json::to_vec(&value).expect("to vec");
        assert!(decode::<Marker>("/p", &bytes).is_ok());

        let err = decode::<Marker>("/zkwatchdog/agents/x", b"not json").expect_err("garbage");
        assert!(err.to_string().contains("/zkwatchdog/agents/x"), "{err}");
        let err = decode::<Liveness>("/l", br#"{"v":0}"#).expect_err("missing fields");
        assert!(err.to_string().contains("/l"));
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            decode::<Liveness>("/l", &big),
            Err(RecordError::TooLarge { .. })
        ));
    }

    /// A marker written by hand with huge fields everywhere reads back with every field
    /// within its limit, the whole far below the 1 MiB the reader accepts.
    #[test]
    fn every_field_of_a_hand_written_marker_is_bounded_when_read() {
        let huge = "h".repeat(30_000);
        let mut value = serde_json::to_value(marker()).expect("to value");
        for field in ["id", "name", "host", "version", "session_id", "conflict"] {
            value[field] = serde_json::json!(huge);
        }
        value["command"] = serde_json::json!(vec!["c".repeat(2500); 120]);
        value["labels"] = serde_json::json!((0..200)
            .map(|i| (format!("{i}{huge}"), huge.clone()))
            .take(3)
            .chain((0..200).map(|i| (format!("k{i}"), "v".to_string())))
            .collect::<BTreeMap<_, _>>());
        value["last_exit"]["signal"] = serde_json::json!(huge);
        value["last_exit"]["stderr_tail"] = serde_json::json!(vec![huge.clone(); 4]);
        let bytes = serde_json::to_vec(&value).expect("to vec");
        assert!(bytes.len() < MAX_RECORD_BYTES, "{}", bytes.len());
        let m: Marker = decode("/p", &bytes).expect("decodes");
        for field in [&m.id, &m.name, &m.host, &m.version, &m.session_id] {
            assert_eq!(field.len(), MAX_SHORT);
        }
        assert_eq!(m.conflict.as_ref().map(String::len), Some(MAX_TEXT));
        assert_eq!(m.command.len(), MAX_COMMAND_BYTES / MAX_TEXT + 1);
        assert!(m
            .command
            .iter()
            .take(m.command.len() - 1)
            .all(|a| a.len() == MAX_TEXT));
        assert_eq!(m.command.last().map(String::as_str), Some("…(116 more)"));
        assert_eq!(m.labels.len(), MAX_LABELS);
        assert!(m
            .labels
            .iter()
            .all(|(k, v)| k.len() <= MAX_SHORT && v.len() <= MAX_SHORT));
        let exit = m.last_exit.clone().expect("an exit");
        assert_eq!(exit.signal.map(|s| s.len()), Some(MAX_SHORT));
        assert!(exit.stderr_tail.iter().all(|l| l.len() <= MAX_STDERR_LINE));
        let total = encode(&Marker {
            last_exit: None,
            ..m.clone()
        })
        .len();
        assert!(total < 64 * 1024, "{total}");

        let live = serde_json::json!({
            "v": 1, "pid": 1, "child_pid": 2, "generation": 3,
            "started_at": "2026-01-01T00:00:00Z", "session_id": huge,
            "health": {"status": "ok", "detail": huge},
        });
        let l: Liveness =
            decode("/l", &serde_json::to_vec(&live).expect("to vec")).expect("decodes");
        assert_eq!(l.session_id.len(), MAX_SHORT);
        assert_eq!(l.health.detail.len(), MAX_TEXT);
    }

    #[test]
    fn a_short_command_is_kept_whole() {
        let mut c = vec!["a".to_string(), "b".to_string()];
        bound_command(&mut c);
        assert_eq!(c, ["a", "b"]);
        let mut many = vec!["x".to_string(); MAX_COMMAND_ARGS + 5];
        bound_command(&mut many);
        assert_eq!(many.len(), MAX_COMMAND_ARGS + 1);
        assert_eq!(many.last().map(String::as_str), Some("…(5 more)"));
    }

    #[test]
    fn version_zero_is_rejected() {
        let mut value = serde_json::to_value(marker()).expect("to value");
        value["v"] = serde_json::json!(0);
        let bytes = serde_json::to_vec(&value).expect("to vec");
        assert!(matches!(
            decode::<Marker>("/p", &bytes),
            Err(RecordError::Version { found: 0, .. })
        ));
    }
}
