//! Incidents and silences: arbitrary bytes, arbitrary JSON and mutated valid records decode to
//! a record or an error naming the znode; valid records round-trip; and whatever decodes renders
//! as a notification without panicking, however odd its text.

use std::collections::BTreeMap;

use proptest::prelude::*;
use zkwatchdog::registry::{decode, encode};
use zkwatcher::incident::{Cause, Delivery, Incident, Resolution, Silence, Since};
use zkwatcher::notice::{Notice, NoticeItem, Origin, Phase};
use zkwatcher::notify::render;

use crate::strategy::{last_exit, marker, mutate, mutation, state, timestamp, value};

const PATH: &str = "/zkwatchdog/incidents/prop@test";

fn decode_all(data: &[u8]) {
    for e in [
        decode::<Incident>(PATH, data).err(),
        decode::<Silence>(PATH, data).err(),
    ]
    .into_iter()
    .flatten()
    {
        let text = e.to_string();
        assert!(text.contains(PATH), "the error names the znode: {text}");
    }
}

/// Text with the awkward parts: multi-byte characters, control characters, markdown.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[é中😀\\*_`\\[\\]<>&\n\r\t]{0,300}",
        "[a-z]{0,10}".prop_map(|s| s.repeat(500)),
    ]
}

fn cause() -> impl Strategy<Value = Cause> {
    prop_oneof![
        (any::<u64>(), last_exit(), state()).prop_map(|(generation, exit, state)| {
            Cause::Crashed {
                generation,
                exit,
                state,
            }
        }),
        (any::<u64>(), state(), timestamp()).prop_map(|(generation, state, last_update)| {
            Cause::Lost {
                generation,
                state,
                last_update,
            }
        }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(last_exit())
        )
            .prop_map(|(from_generation, to_generation, exit)| Cause::Bounced {
                from_generation,
                to_generation,
                exit,
            }),
        text().prop_map(|detail| Cause::Degraded { detail }),
    ]
}

fn resolution() -> impl Strategy<Value = Resolution> {
    prop_oneof![
        any::<u64>().prop_map(|generation| Resolution::Recovered { generation }),
        Just(Resolution::Stopped),
        Just(Resolution::Healthy),
    ]
}

fn since() -> impl Strategy<Value = Since> {
    (timestamp(), any::<u32>()).prop_map(|(at, earlier)| Since { at, earlier })
}

fn incident() -> impl Strategy<Value = Incident> {
    (
        (1u32..3, text(), timestamp(), cause(), any::<u32>()),
        (
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
            proptest::option::of(resolution()),
            proptest::option::of(text()),
            any::<u32>(),
            proptest::option::of(since()),
        ),
        proptest::collection::btree_map(
            ".{0,8}",
            (
                proptest::option::of(timestamp()),
                proptest::option::of(timestamp()),
                proptest::option::of(timestamp()),
                proptest::option::of(since()),
            ),
            0..3,
        ),
    )
        .prop_map(
            |(
                (v, id, opened_at, cause, occurrences),
                (notified_at, resolved_at, resolution, silenced, seq, reopened),
                d,
            )| {
                Incident {
                    v,
                    id,
                    opened_at,
                    cause,
                    occurrences,
                    notified_at,
                    resolved_at,
                    resolution,
                    silenced,
                    deliveries: d
                        .into_iter()
                        .map(|(k, (opened, last, resolved, since))| {
                            (
                                k,
                                Delivery {
                                    opened,
                                    last,
                                    resolved,
                                    since,
                                },
                            )
                        })
                        .collect::<BTreeMap<_, _>>(),
                    seq,
                    reopened,
                }
            },
        )
}

fn silence() -> impl Strategy<Value = Silence> {
    (1u32..3, text(), timestamp(), text(), timestamp(), text()).prop_map(
        |(v, id, until, reason, created_at, created_by)| Silence {
            v,
            id,
            until,
            reason,
            created_at,
            created_by,
        },
    )
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Opened),
        Just(Phase::Reminder),
        Just(Phase::OpenedAndResolved),
        Just(Phase::Resolved),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&data);
    }

    #[test]
    fn arbitrary_json_never_panics(v in value()) {
        decode_all(&serde_json::to_vec(&v).expect("serializable"));
    }

    #[test]
    fn mutated_incidents_never_panic(i in incident(), (path, change) in mutation()) {
        let mut doc = serde_json::to_value(&i).expect("an incident is JSON");
        mutate(&mut doc, &path, &change);
        decode_all(&serde_json::to_vec(&doc).expect("serializable"));
    }

    #[test]
    fn mutated_silences_never_panic(s in silence(), (path, change) in mutation()) {
        let mut doc = serde_json::to_value(&s).expect("a silence is JSON");
        mutate(&mut doc, &path, &change);
        decode_all(&serde_json::to_vec(&doc).expect("serializable"));
    }

    #[test]
    fn incidents_and_silences_round_trip(i in incident(), s in silence()) {
        let back: Incident = decode(PATH, &encode(&i)).expect("a valid incident decodes");
        prop_assert_eq!(back, i);
        let back: Silence = decode(PATH, &encode(&s)).expect("a valid silence decodes");
        prop_assert_eq!(back, s);
    }

    #[test]
    fn decoded_records_render_without_panicking(
        i in incident(),
        m in proptest::option::of(marker()),
        phase in phase(),
        agent in text(),
        prefix in text(),
    ) {
        let items = vec![NoticeItem {
            agent,
            phase,
            occurrence: i.occurrence(),
            cause: i.cause.clone(),
            occurrences: i.occurrences,
            opened_at: i.opened_at,
            resolved_at: i.resolved_at,
            resolution: i.resolution.clone(),
            last_sent: None,
            marker: m,
        }];
        let origin = Origin {
            zk_hosts: "zk1:2181".into(),
            root: "/zkwatchdog".into(),
            watcher_host: "w".into(),
        };
        let out = render(&Notice::Incidents { items }, &origin, &prefix);
        prop_assert!(!out.subject.is_empty());
    }
}
