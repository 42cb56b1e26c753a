//! Strategies shared by the property tests of both crates (the watcher's include this file):
//! arbitrary JSON biased towards the records' real key names, mutations of a document, and
//! valid registry records.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde_json::{Map, Value};
use zkwatchdog::registry::{
    AgentKind, AgentState, Health, HealthStatus, LastExit, Liveness, Marker, Timestamp,
};

/// Key names that occur in the registry's records, so that generated objects often hit real
/// fields with the wrong type.
pub const RECORD_KEYS: &[&str] = &[
    "v",
    "id",
    "name",
    "kind",
    "host",
    "command",
    "labels",
    "version",
    "registered_at",
    "updated_at",
    "state",
    "generation",
    "restarts",
    "last_exit",
    "session_id",
    "at",
    "code",
    "signal",
    "uptime_ms",
    "stderr_tail",
    "probe_restart",
    "reload",
    "daemonized",
    "pid",
    "child_pid",
    "started_at",
    "health",
    "status",
    "detail",
    "checked_at",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(RECORD_KEYS).prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        Just(Value::String("2026-11-22T03:04:05.678Z".into())),
        Just(Value::String("99999-01-01T00:00:00Z".into())),
        Just(Value::from(1)),
    ]
}

/// Any JSON value, up to a few levels deep.
pub fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A change to one place in a JSON document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replace the value at the path's end.
    Replace(Value),
    /// Remove the key at the path's end.
    Remove,
}

/// A mutation and the path (indices into objects' keys, modulo their length) it applies to.
pub fn mutation() -> impl Strategy<Value = (Vec<usize>, Mutation)> {
    (
        proptest::collection::vec(any::<usize>(), 1..4),
        prop_oneof![value().prop_map(Mutation::Replace), Just(Mutation::Remove)],
    )
}

/// Applies `m` at `path` inside `doc`: each step picks a key of an object (or an element of an
/// array); the mutation happens at the last step reached.
pub fn mutate(doc: &mut Value, path: &[usize], m: &Mutation) {
    let Some((&step, rest)) = path.split_first() else {
        if let Mutation::Replace(v) = m {
            *doc = v.clone();
        }
        return;
    };
    match doc {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(step % map.len())
                .cloned()
                .unwrap_or_default();
            let nested = map.get(&key).is_some_and(|v| v.is_object() || v.is_array());
            if rest.is_empty() || !nested {
                match m {
                    Mutation::Remove => {
                        map.remove(&key);
                    }
                    Mutation::Replace(v) => {
                        map.insert(key, v.clone());
                    }
                }
            } else if let Some(child) = map.get_mut(&key) {
                mutate(child, rest, m);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = step % items.len();
            mutate(&mut items[i], rest, m);
        }
        other => {
            if let Mutation::Replace(v) = m {
                *other = v.clone();
            }
        }
    }
}

/// Timestamps as records store them: whole milliseconds, years 1970 to 9999.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0u64..253_402_300_799_999)
        .prop_map(|ms| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

pub fn kind() -> impl Strategy<Value = AgentKind> {
    prop_oneof![
        Just(AgentKind::Flume),
        Just(AgentKind::KafkaConnect),
        Just(AgentKind::Kafka),
        Just(AgentKind::Generic)
    ]
}

pub fn state() -> impl Strategy<Value = AgentState> {
    prop_oneof![
        Just(AgentState::Starting),
        Just(AgentState::Running),
        Just(AgentState::Restarting),
        Just(AgentState::Backoff),
        Just(AgentState::Fatal),
        Just(AgentState::Stopping),
    ]
}

pub fn last_exit() -> impl Strategy<Value = LastExit> {
    (
        timestamp(),
        any::<u64>(),
        proptest::option::of(any::<i32>()),
        proptest::option::of("SIG[A-Z]{1,6}"),
        any::<u64>(),
        proptest::collection::vec(".{0,40}", 0..5),
        proptest::option::of(".{0,40}"),
        any::<bool>(),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(
            |(
                at,
                generation,
                code,
                signal,
                uptime_ms,
                stderr_tail,
                probe_restart,
                reload,
                daemonized,
            )| LastExit {
                at,
                generation,
                code,
                signal,
                uptime_ms,
                stderr_tail,
                probe_restart,
                reload,
                daemonized,
            },
        )
}

pub fn marker() -> impl Strategy<Value = Marker> {
    (
        (1u32..4, ".{0,30}", ".{0,30}", kind(), ".{0,30}"),
        proptest::collection::vec(".{0,20}", 0..4),
        proptest::collection::btree_map(".{0,10}", ".{0,10}", 0..3),
        (".{0,10}", timestamp(), timestamp(), state()),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(last_exit()),
            ".{0,20}",
        ),
    )
        .prop_map(
            |(
                (v, id, name, kind, host),
                command,
                labels,
                (version, registered_at, updated_at, state),
                (generation, restarts, last_exit, session_id),
            )| Marker {
                v,
                id,
                name,
                kind,
                host,
                command,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                version,
                registered_at,
                updated_at,
                state,
                generation,
                restarts,
                last_exit,
                session_id,
                conflict: None,
            },
        )
}

pub fn liveness() -> impl Strategy<Value = Liveness> {
    (
        (1u32..4, any::<u32>(), any::<u32>(), any::<u64>()),
        (timestamp(), ".{0,20}"),
        (
            prop_oneof![
                Just(HealthStatus::Ok),
                Just(HealthStatus::Degraded),
                Just(HealthStatus::Unknown)
            ],
            ".{0,40}",
            proptest::option::of(timestamp()),
        ),
    )
        .prop_map(
            |(
                (v, pid, child_pid, generation),
                (started_at, session_id),
                (status, detail, checked_at),
            )| {
                Liveness {
                    v,
                    pid,
                    child_pid,
                    generation,
                    started_at,
                    session_id,
                    health: Health {
                        status,
                        detail,
                        checked_at,
                    },
                }
            },
        )
}
