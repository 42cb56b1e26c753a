//! Registry records (markers, liveness nodes): arbitrary bytes, arbitrary JSON and mutated valid
//! records decode to a record or to an error naming the znode, never a panic; valid records
//! round-trip.

use proptest::prelude::*;
use zkwatchdog::registry::{decode, encode, Liveness, Marker, RecordError, MAX_RECORD_BYTES};

use crate::strategy::{liveness, marker, mutate, mutation, value};

const PATH: &str = "/zkwatchdog/agents/prop@test";

fn check_error(e: &RecordError) {
    let text = e.to_string();
    assert!(text.contains(PATH), "the error names the znode: {text}");
}

fn decode_all(data: &[u8]) {
    if let Err(e) = decode::<Marker>(PATH, data) {
        check_error(&e);
    }
    if let Err(e) = decode::<Liveness>(PATH, data) {
        check_error(&e);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&data);
    }

    #[test]
    fn arbitrary_json_never_panics(v in value()) {
        decode_all(&serde_json::to_vec(&v).expect("serializable"));
    }

    #[test]
    fn mutated_markers_never_panic(m in marker(), (path, change) in mutation()) {
        let mut doc = serde_json::to_value(&m).expect("a marker is JSON");
        mutate(&mut doc, &path, &change);
        decode_all(&serde_json::to_vec(&doc).expect("serializable"));
    }

    #[test]
    fn mutated_liveness_nodes_never_panic(l in liveness(), (path, change) in mutation()) {
        let mut doc = serde_json::to_value(&l).expect("a liveness node is JSON");
        mutate(&mut doc, &path, &change);
        decode_all(&serde_json::to_vec(&doc).expect("serializable"));
    }

    #[test]
    fn markers_round_trip(m in marker()) {
        let back: Marker = decode(PATH, &encode(&m)).expect("a valid marker decodes");
        prop_assert_eq!(back, m);
    }

    #[test]
    fn liveness_nodes_round_trip(l in liveness()) {
        let back: Liveness = decode(PATH, &encode(&l)).expect("a valid liveness node decodes");
        prop_assert_eq!(back, l);
    }
}

#[test]
fn oversized_data_is_refused_by_size_naming_the_znode() {
    let data = vec![b' '; MAX_RECORD_BYTES + 1];
    let err = decode::<Marker>(PATH, &data).expect_err("too large");
    assert!(matches!(err, RecordError::TooLarge { .. }), "{err}");
    check_error(&err);
}
